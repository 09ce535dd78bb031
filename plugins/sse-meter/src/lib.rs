//! `sse-meter`: counts the Server-Sent Events of a streamed response without holding them back.
//!
//! The response body is seen chunk by chunk (`streamed`): each chunk passes on unchanged at once,
//! and the plugin counts event terminators (a blank line, `\n\n` or `\r\n\r\n`, also across chunk
//! boundaries). At the end of the stream it adds a trailer with the count and adds the count to
//! the counter `weir_plugin_<metric>_total{plugin, route}`. Responses that are not
//! `text/event-stream` pass untouched and are not counted.
//!
//! The trailer reaches clients over HTTP/2, and over HTTP/1.1 when they sent `te: trailers`. The
//! counter is only added to when the stream ends normally (not when the client or the upstream
//! goes away mid-stream).
//!
//! Config: `trailer` (a header name, default `x-weir-sse-events`), `metric` (`[a-z_][a-z0-9_]*`,
//! default `sse_events`). Needs `capabilities = { metrics = true }`.

use serde::Deserialize;
use weir_sdk::{
    BodyAccess, BodyEnd, Direction, Info, Plugin, ResponseDecision, metrics, request, response,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_trailer")]
    trailer: String,
    #[serde(default = "default_metric")]
    metric: String,
}

fn default_trailer() -> String {
    "x-weir-sse-events".into()
}
fn default_metric() -> String {
    "sse_events".into()
}

struct SseMeter {
    config: Config,
    route: String,
    metering: bool,
    events: u64,
    /// A line end at the end of the previous chunk, to find terminators split across chunks.
    pending: u8,
}

/// Counts event terminators (two line ends in a row; `\r` is ignored, so `\r\n\r\n` counts) in
/// `chunk`, given the line ends pending from the previous chunk; returns the new pending count.
fn count_terminators(mut pending: u8, chunk: &[u8]) -> (u64, u8) {
    let mut n = 0;
    for &b in chunk {
        match b {
            b'\n' if pending == 1 => {
                n += 1;
                pending = 0;
            }
            b'\n' => pending = 1,
            b'\r' => {}
            _ => pending = 0,
        }
    }
    (n, pending)
}

impl Plugin for SseMeter {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let t = &config.trailer;
        if t.is_empty()
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(format!("`trailer`: invalid header name {t:?}"));
        }
        let m = &config.metric;
        let valid = m.len() <= 64
            && m.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && m.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || m == "instantiations" || m == "failures" {
            return Err(format!(
                "`metric` must match [a-z_][a-z0-9_]*, be at most 64 bytes and not be \
                 `instantiations` or `failures`; got {m:?}"
            ));
        }
        Ok(SseMeter {
            config,
            route: String::new(),
            metering: false,
            events: 0,
            pending: 0,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            response_body: BodyAccess::Streamed,
            ..Info::default()
        }
    }

    fn on_request(&mut self) -> weir_sdk::Decision {
        self.route = request::route();
        self.metering = false;
        self.events = 0;
        self.pending = 0;
        weir_sdk::Decision::Continue
    }

    fn on_response(&mut self) -> ResponseDecision {
        self.metering = response::header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"));
        ResponseDecision::Continue
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        if self.metering && direction == Direction::Response {
            let (n, pending) = count_terminators(self.pending, &chunk);
            self.events += n;
            self.pending = pending;
        }
        chunk
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        if !self.metering || direction != Direction::Response {
            return BodyEnd::default();
        }
        metrics::counter_add(&self.config.metric, self.events, &[("route", &self.route)]);
        BodyEnd {
            tail: Vec::new(),
            trailers: vec![(self.config.trailer.clone(), self.events.to_string())],
        }
    }
}

weir_sdk::plugin!(SseMeter);
