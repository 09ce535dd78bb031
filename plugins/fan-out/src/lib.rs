//! `fan-out`: a **handler** plugin. It answers the request itself by calling several named
//! upstreams at once through the `outbound` capability and merging their answers into one JSON
//! object keyed by upstream name:
//!
//! ```json
//! {"a": {...a's JSON...}, "b": "b's body, if not JSON", "c": {"error": "timeout"}}
//! ```
//!
//! Each call is a `GET` of `path` (default: the client request's path and query) carrying the
//! `forward_headers` the client sent. All calls are started before any is awaited, so the answer
//! takes about as long as the slowest upstream, not the sum. A 2xx answer is embedded as JSON, or
//! as a string when its body is not JSON. A failed call becomes `{"error": <text>}`: `"not
//! granted: <name>"` (the upstream is not in the grant), `"timeout"`, the connection error, or,
//! with `"status": <code>`, the first KiB of a non-2xx answer's body or a body over 1 MiB.
//! `x-weir-fan-out: <ok>/<total>` says how many succeeded; the status is 200, or 502 if every call
//! failed. Its route needs no `upstream`.
//!
//! Config: `upstreams` (names, at least one, required), `path` (default: the request's path and
//! query), `timeout_ms` (per call; default: each upstream's `request_timeout`),
//! `forward_headers` (request headers copied to each call, default `["accept"]`).
//! Needs `capabilities = { outbound = [<the same names>] }`.

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_sdk::outbound::{self, OutboundError};
use weir_sdk::{Decision, LocalResponse, Plugin, request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    upstreams: Vec<String>,
    path: Option<String>,
    timeout_ms: Option<u32>,
    #[serde(default = "default_forward")]
    forward_headers: Vec<String>,
}

fn default_forward() -> Vec<String> {
    vec!["accept".into()]
}

/// The most of each upstream's body kept in the merged answer.
const MAX_BODY: u32 = 1 << 20;

struct FanOut(Config);

fn describe(e: &OutboundError) -> String {
    match e {
        OutboundError::NotGranted(u) => format!("not granted: {u}"),
        OutboundError::InvalidRequest(m) => format!("invalid request: {m}"),
        OutboundError::Timeout => "timeout".into(),
        OutboundError::Failed(m) => m.clone(),
        OutboundError::TooLarge(n) => format!("body larger than {n} bytes"),
        OutboundError::AlreadyConsumed => "already consumed".into(),
    }
}

/// The start of an error body, as text, for the merged answer.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 1024;
    let mut text = String::from_utf8_lossy(&body[..body.len().min(MAX)]).into_owned();
    if body.len() > MAX {
        text.push('…');
    }
    text
}

/// Whether `s` is a valid HTTP field name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The merged entry of a failed call: `{"error": message, "status": status}`.
fn error(message: String, status: Option<u16>) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), Value::String(message));
    if let Some(s) = status {
        m.insert("status".into(), Value::from(s));
    }
    Value::Object(m)
}

impl Plugin for FanOut {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.upstreams.is_empty() {
            return Err("`upstreams` is empty".into());
        }
        for (i, u) in config.upstreams.iter().enumerate() {
            if u.is_empty() {
                return Err("`upstreams` contains an empty name".into());
            }
            if config.upstreams[..i].contains(u) {
                return Err(format!("`upstreams` names {u:?} twice"));
            }
        }
        if config.timeout_ms == Some(0) {
            return Err("`timeout_ms` must be greater than 0".into());
        }
        if let Some(h) = config.forward_headers.iter().find(|h| !is_token(h)) {
            return Err(format!("`forward_headers`: invalid header name {h:?}"));
        }
        if let Some(p) = &config.path
            && !p.starts_with('/')
        {
            return Err(format!("`path` must start with '/', got {p:?}"));
        }
        Ok(FanOut(config))
    }

    fn on_request(&mut self) -> Decision {
        let c = &self.0;
        let path = c.path.clone().unwrap_or_else(request::path);
        let headers: Vec<(String, String)> = c
            .forward_headers
            .iter()
            .filter_map(|h| Some((h.clone(), request::header(h)?)))
            .collect();
        // Start every call first: they run concurrently in the host.
        let calls: Vec<_> = c
            .upstreams
            .iter()
            .map(|u| {
                let mut req = outbound::Request::get(u, &path);
                req.headers = headers.clone();
                req.timeout_ms = c.timeout_ms;
                outbound::start(req)
            })
            .collect();
        let mut merged = Map::new();
        let mut ok = 0;
        for (name, call) in c.upstreams.iter().zip(calls) {
            let value = match call.and_then(|pending| outbound::wait(&pending)) {
                Err(e) => error(describe(&e), None),
                Ok(resp) => {
                    let status = resp.status();
                    match resp.read_body(MAX_BODY) {
                        Err(e) => error(describe(&e), Some(status)),
                        Ok(body) if (200..300).contains(&status) => {
                            ok += 1;
                            serde_json::from_slice(&body).unwrap_or_else(|_| {
                                Value::String(String::from_utf8_lossy(&body).into_owned())
                            })
                        }
                        Ok(body) => error(excerpt(&body), Some(status)),
                    }
                }
            };
            merged.insert(name.clone(), value);
        }
        let status = if ok == 0 { 502 } else { 200 };
        Decision::Respond(
            LocalResponse::new(status)
                .header("x-weir-fan-out", format!("{ok}/{}", c.upstreams.len()))
                .json(&Value::Object(merged)),
        )
    }
}

weir_sdk::plugin!(FanOut);
