//! `probe`: a test fixture, not for production. Each config key switches on one behaviour, so
//! the end-to-end tests can exercise every part of the plugin contract through the real gateway.

use serde::Deserialize;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;
use weir_sdk::{
    BodyAccess, BodyEnd, Decision, Direction, Info, LocalResponse, Plugin, ResponseDecision,
    context, log, request, response,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Appended to request header `x-chain` and (response hook) to response header `x-chain`.
    tag: Option<String>,
    /// Answer locally with this status.
    respond: Option<u16>,
    /// Route to this upstream.
    route_to: Option<String>,
    /// Context attributes to set.
    #[serde(default)]
    set_context: BTreeMap<String, String>,
    set_principal: Option<String>,
    /// Apply `set_context` and `set_principal` only to requests that carry this request header;
    /// other requests only read (`echo_context`). So one chain entry, one instance pool, can set
    /// the context on some requests and check on the next ones that it did not stay behind.
    set_when_header: Option<String>,
    /// Context attributes (or `principal`) to copy into request headers `x-ctx-<key>`, after
    /// this entry's own `set_context`/`set_principal`.
    #[serde(default)]
    echo_context: Vec<String>,
    /// Misbehave: `trap`, `loop` (logging "probe is looping until its hook timeout" first),
    /// `sleep` (wait an hour without running: only a wall-clock limit sees it), `grow`, or
    /// `bad-status`.
    fail: Option<String>,
    /// Where to misbehave: `request` (default), `response`, or `chunk` (in the response body
    /// stream).
    fail_in: Option<String>,
    /// Refuse the config with this message.
    reject: Option<String>,
    /// A fixed amount of CPU work in the request hook: this many rounds of a counted loop, or
    /// as many as request header `x-probe-rounds` says (the number done goes upstream in
    /// `x-probe-work`).
    work: Option<u64>,
    /// The same in `init`, for every new instance.
    init_work: Option<u64>,
    /// Buffer the request body and upper-case it.
    #[serde(default)]
    upper_body: bool,
    /// Buffer the response body and append this.
    response_suffix: Option<String>,
    /// Put the number of requests this instance has served in `x-probe-count`.
    #[serde(default)]
    count: bool,
    /// Copy what the plugin sees as authority, scheme and method into `x-seen-*` headers.
    #[serde(default)]
    echo_request: bool,
    /// Mark the request and the response with this build's variant (`x-probe-variant`).
    #[serde(default)]
    variant: bool,
    /// Stream the request body and upper-case each chunk.
    #[serde(default)]
    upper_stream: bool,
    /// Stream the response body; at its end append this and add trailer `x-probe-trailer`.
    stream_tag: Option<String>,
    /// Try to leave the sandbox and answer 200 with what happened: `fs` (read a file), `net`
    /// (connect to this `host:port`), `env` (read environment variables).
    escape: Option<String>,
    /// The file or address `escape` tries.
    escape_target: Option<String>,
    /// Set the request path to this; `x-probe-set-path` says `ok` or the error.
    set_path: Option<String>,
    /// Count each request in `probe_requests_total{value}`, the label taken from this request
    /// header, as an operator's plugin might. Only in the `probe-metrics` build (which needs
    /// the `metrics` grant).
    count_by: Option<String>,
}

/// Which build this is (`probe` or `probe-b`); shown in `x-probe-variant` when `variant` is set.
const VARIANT: &str = if cfg!(feature = "variant-b") {
    "b"
} else {
    "a"
};

thread_local! {
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

struct Probe(Config);

/// Counts the request under the value of request header `name`.
#[cfg(feature = "count-by")]
fn count_by(name: &str) {
    let value = request::header(name).unwrap_or_default();
    weir_sdk::metrics::counter_add("probe_requests", 1, &[("value", &value)]);
}

#[cfg(not(feature = "count-by"))]
fn count_by(_: &str) {}

fn misbehave(how: &str) -> Decision {
    match how {
        "trap" => panic!("probe was asked to trap"),
        "loop" => {
            // Logged as it happens (not after the hook), so a test can wait for the loop to run.
            log::info("probe is looping until its hook timeout");
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Decision::Continue
        }
        "bad-status" => Decision::Respond(LocalResponse::new(1000)),
        _ => Decision::Continue,
    }
}

/// `rounds` of work the optimiser cannot remove; returns a value that depends on all of them.
fn work(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..rounds {
        x = black_box(x.rotate_left(7) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

/// Tries one way out of the sandbox; says whether it worked.
fn escape(how: &str, target: Option<&str>) -> String {
    let target = target.unwrap_or_default();
    match how {
        "fs" => match std::fs::read(target) {
            Ok(bytes) => format!("allowed: read {} bytes", bytes.len()),
            Err(e) => format!("denied: {e}"),
        },
        "net" => match std::net::TcpStream::connect(target) {
            Ok(_) => "allowed: connected".into(),
            Err(e) => format!("denied: {e}"),
        },
        "env" => match std::env::vars().count() {
            0 => "denied: no environment".into(),
            n => format!("allowed: {n} variables"),
        },
        other => format!("unknown escape {other:?}"),
    }
}

impl Plugin for Probe {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if let Some(reason) = &config.reject {
            return Err(reason.clone());
        }
        if config.count_by.is_some() && !cfg!(feature = "count-by") {
            return Err("`count_by` needs the `probe-metrics` build".into());
        }
        if config.upper_body && config.upper_stream {
            return Err("`upper_body` and `upper_stream` exclude each other".into());
        }
        if let Some(rounds) = config.init_work {
            black_box(work(rounds));
        }
        Ok(Probe(config))
    }

    fn info(&self) -> Info {
        Info {
            response_hook: self.0.tag.is_some()
                || self.0.variant
                || self.0.response_suffix.is_some()
                || self.0.fail_in.as_deref() == Some("response"),
            request_body: if self.0.upper_body {
                BodyAccess::Buffered(1 << 20)
            } else if self.0.upper_stream {
                BodyAccess::Streamed
            } else {
                BodyAccess::None
            },
            response_body: if self.0.response_suffix.is_some() {
                BodyAccess::Buffered(1 << 20)
            } else if self.0.stream_tag.is_some() || self.0.fail_in.as_deref() == Some("chunk") {
                BodyAccess::Streamed
            } else {
                BodyAccess::None
            },
        }
    }

    fn on_request(&mut self) -> Decision {
        let c = &self.0;
        if let (Some(how), None | Some("request")) = (&c.fail, c.fail_in.as_deref()) {
            return misbehave(how);
        }
        if let Some(rounds) = c.work {
            let rounds = request::header("x-probe-rounds")
                .and_then(|r| r.parse().ok())
                .unwrap_or(rounds);
            black_box(work(rounds));
            let _ = request::set_header("x-probe-work", &rounds.to_string());
        }
        if let Some(tag) = &c.tag {
            let chain = match request::header("x-chain") {
                Some(prev) => format!("{prev},{tag}"),
                None => tag.clone(),
            };
            let _ = request::set_header("x-chain", &chain);
        }
        let set = c
            .set_when_header
            .as_deref()
            .is_none_or(|name| request::header(name).is_some());
        if set {
            for (k, v) in &c.set_context {
                context::set(k, v);
            }
            if let Some(p) = &c.set_principal {
                context::set_principal(p);
            }
        }
        for key in &c.echo_context {
            let value = if key == "principal" {
                context::principal()
            } else {
                context::get(key)
            };
            let _ = request::set_header(
                &format!("x-ctx-{key}"),
                value.as_deref().unwrap_or("<none>"),
            );
        }
        if c.upper_body
            && let Some(body) = request::body()
        {
            let _ = request::set_body(&body.to_ascii_uppercase());
        }
        if c.variant {
            let _ = request::set_header("x-probe-variant", VARIANT);
        }
        if c.echo_request {
            let authority = request::authority().unwrap_or_else(|| "<none>".into());
            let _ = request::set_header("x-seen-authority", &authority);
            let _ = request::set_header("x-seen-scheme", &request::scheme());
            let _ = request::set_header("x-seen-method", &request::method());
            let _ = request::set_header("x-seen-route", &request::route());
            let _ = request::set_header("x-seen-path", &request::path());
        }
        if let Some(name) = &c.count_by {
            count_by(name);
        }
        if let Some(path) = &c.set_path {
            let outcome = match request::set_path(path) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("{e:?}"),
            };
            let _ = request::set_header("x-probe-set-path", &outcome);
        }
        if c.count {
            SERVED.with(|s| s.set(s.get() + 1));
            let _ = request::set_header("x-probe-count", &SERVED.with(Cell::get).to_string());
        }
        if let Some(how) = &c.escape {
            return Decision::Respond(
                LocalResponse::new(200).text(escape(how, c.escape_target.as_deref())),
            );
        }
        if let Some(status) = c.respond {
            let tag = c.tag.as_deref().unwrap_or("probe");
            return Decision::Respond(
                LocalResponse::new(status)
                    .header("x-responder", tag)
                    .text(format!("answered by {tag}")),
            );
        }
        if let Some(up) = &c.route_to {
            return Decision::Route(up.clone());
        }
        Decision::Continue
    }

    fn on_response(&mut self) -> ResponseDecision {
        let c = &self.0;
        if let (Some(how), Some("response")) = (&c.fail, c.fail_in.as_deref()) {
            return match misbehave(how) {
                Decision::Respond(r) => ResponseDecision::Replace(r),
                _ => ResponseDecision::Continue,
            };
        }
        if let Some(tag) = &c.tag {
            let _ = response::append_header("x-chain", tag);
        }
        if c.variant {
            let _ = response::set_header("x-probe-variant", VARIANT);
        }
        if let Some(suffix) = &c.response_suffix
            && let Some(mut body) = response::body()
        {
            body.extend_from_slice(suffix.as_bytes());
            let _ = response::set_body(&body);
        }
        ResponseDecision::Continue
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        let c = &self.0;
        match direction {
            Direction::Request if c.upper_stream => chunk.to_ascii_uppercase(),
            Direction::Response => {
                if let (Some(how), Some("chunk")) = (&c.fail, c.fail_in.as_deref()) {
                    misbehave(how);
                }
                chunk
            }
            Direction::Request => chunk,
        }
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        match (direction, &self.0.stream_tag) {
            (Direction::Response, Some(tag)) => BodyEnd {
                tail: tag.as_bytes().to_vec(),
                trailers: vec![("x-probe-trailer".into(), tag.clone())],
            },
            _ => BodyEnd::default(),
        }
    }
}

weir_sdk::plugin!(Probe);
