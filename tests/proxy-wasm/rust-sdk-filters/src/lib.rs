//! One filter covering what the proxy-wasm Rust SDK's published examples cover, each behaviour
//! switched on by a key of the JSON plugin configuration (unknown keys refuse the configuration):
//!
//! - `"add_header": ["name", "value"]` (http_headers): sets that request header, removes the
//!   request header `x-remove-me`, and adds `x-rust-sdk: <name>` to every response.
//! - `"auth": {"cluster": "auth", "path": "/check"}` (http_auth_random): asks the cluster with an
//!   HTTP call (passing the request's `x-token`) and pauses the request; a 200 answer resumes it
//!   with `x-auth-user: <answer body>` (and the property `weir.principal` set to it), any other
//!   answer refuses it with 403.
//! - `"body": {"forbidden": "word", "redact": "word2"}` (http_body): buffers the request body to
//!   its end and refuses it with 400 if it holds `forbidden`; buffers the response body to its
//!   end and replaces each `redact` in it with `****`.
//! - `"tick_ms": N` (hello_world): a tick every N ms counts `ticks` in shared data; each request
//!   gets `x-ticks: <ticks>`.
//! - `"properties": true`: request headers `x-route`, `x-plugin`, `x-source`, `x-method` and
//!   `x-principal` from the host's properties, each only when the host has it.
//! - `"misbehave": "loop" | "trap" | "grow"`: a request carrying `x-misbehave: yes` makes the
//!   filter spin forever, panic, or allocate without end (what a buggy filter does).
//! - `"trailer": ["name", "value"]`: adds that response trailer when the response has trailers,
//!   and `x-trailers-seen: <how many it had>`.
//! - always: a shared-data counter `requests` (compare-and-swap loop) exposed as
//!   `x-request-count`, and a counter metric `rust_sdk_requests`, one per request.

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use serde::Deserialize;
use std::rc::Rc;
use std::time::Duration;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Config {
    add_header: Option<(String, String)>,
    auth: Option<AuthConfig>,
    body: Option<BodyConfig>,
    tick_ms: Option<u64>,
    #[serde(default)]
    properties: bool,
    misbehave: Option<Misbehave>,
    trailer: Option<(String, String)>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Misbehave {
    Loop,
    Trap,
    Grow,
}

/// What a buggy filter does; never returns.
fn misbehave(how: Misbehave) -> ! {
    match how {
        Misbehave::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Misbehave::Trap => panic!("misbehaving on purpose"),
        Misbehave::Grow => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&held);
            }
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AuthConfig {
    cluster: String,
    path: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct BodyConfig {
    forbidden: Option<String>,
    redact: Option<String>,
}

impl Config {
    fn forbidden(&self) -> Option<&str> {
        self.body.as_ref()?.forbidden.as_deref()
    }

    fn redact(&self) -> Option<&str> {
        self.body.as_ref()?.redact.as_deref()
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Adds one to the number kept in shared data under `key`: read it with its CAS number, write the
/// sum back with that CAS number, and start again if another context wrote in between.
fn bump<C: Context + ?Sized>(ctx: &C, key: &str) -> u64 {
    loop {
        let (value, cas) = ctx.get_shared_data(key);
        let n = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        match ctx.set_shared_data(key, Some(n.to_string().as_bytes()), cas) {
            Ok(()) => return n,
            Err(Status::CasMismatch) => continue,
            Err(e) => {
                error!("shared data {key}: {e:?}");
                return 0;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `body` with every occurrence of `word` replaced by `****`, or None when there is none.
fn redacted(body: &[u8], word: &[u8]) -> Option<Vec<u8>> {
    let mut at = find(body, word)?;
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"****");
        rest = &rest[at + word.len()..];
        match find(rest, word) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(rest);
    Some(out)
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
    metric: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = if bytes.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    error!("bad configuration: {e}");
                    return false;
                }
            }
        };
        if config.forbidden() == Some("") || config.redact() == Some("") {
            error!("bad configuration: body words must not be empty");
            return false;
        }
        if self.metric.is_none() {
            match hostcalls::define_metric(MetricType::Counter, "rust_sdk_requests") {
                Ok(id) => self.metric = Some(id),
                Err(e) => error!("define_metric: {e:?}"),
            }
        }
        match config.tick_ms {
            Some(ms) => self.set_tick_period(Duration::from_millis(ms)),
            None if self.config.tick_ms.is_some() => self.set_tick_period(Duration::ZERO),
            None => {}
        }
        info!("configured: {config:?}");
        // To stderr too: built for wasm32-wasip1 that is WASI's fd_write (a no-op on
        // wasm32-unknown-unknown).
        eprintln!("rust-sdk-filters: configured");
        self.config = Rc::new(config);
        true
    }

    fn on_tick(&mut self) {
        let ticks = bump(self, "ticks");
        info!("tick {ticks}");
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            config: self.config.clone(),
            metric: self.metric,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    context_id: u32,
    config: Rc<Config>,
    metric: Option<u32>,
}

impl Http {
    fn property(&self, path: Vec<&str>) -> Option<String> {
        self.get_property(path)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let status = self
            .get_http_call_response_headers()
            .into_iter()
            .find(|(name, _)| name == ":status")
            .map(|(_, value)| value);
        if status.as_deref() == Some("200") {
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            let user = String::from_utf8_lossy(&body).trim().to_string();
            info!("#{} access granted to {user:?}", self.context_id);
            self.set_http_request_header("x-auth-user", Some(&user));
            // The host's principal property: the plugins after this one see who it is.
            self.set_property(vec!["weir", "principal"], Some(user.as_bytes()));
            self.resume_http_request();
        } else {
            info!(
                "#{} access denied (auth answered {status:?})",
                self.context_id
            );
            self.send_http_response(
                403,
                vec![("x-denied-by", "rust-sdk-filters")],
                Some(b"denied\n"),
            );
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(how) = self.config.misbehave
            && self.get_http_request_header("x-misbehave").as_deref() == Some("yes")
        {
            misbehave(how);
        }
        let count = bump(self, "requests");
        self.set_http_request_header("x-request-count", Some(&count.to_string()));
        if let Some(id) = self.metric
            && let Err(e) = hostcalls::increment_metric(id, 1)
        {
            warn!("increment_metric: {e:?}");
        }
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        info!("#{} request {count}: {method} {path}", self.context_id);

        if let Some((name, value)) = &self.config.add_header {
            self.set_http_request_header(name, Some(value));
            self.remove_http_request_header("x-remove-me");
        }
        if self.config.tick_ms.is_some() {
            let ticks = self
                .get_shared_data("ticks")
                .0
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "0".to_string());
            self.set_http_request_header("x-ticks", Some(&ticks));
        }
        if self.config.properties {
            for (header, path) in [
                ("x-route", vec!["route_name"]),
                ("x-plugin", vec!["plugin_name"]),
                ("x-source", vec!["source", "address"]),
                ("x-method", vec!["request", "method"]),
                ("x-principal", vec!["weir", "principal"]),
            ] {
                if let Some(value) = self.property(path) {
                    self.set_http_request_header(header, Some(&value));
                }
            }
        }

        if let Some(auth) = &self.config.auth {
            let token = self.get_http_request_header("x-token").unwrap_or_default();
            match self.dispatch_http_call(
                &auth.cluster,
                vec![
                    (":method", "GET"),
                    (":path", &auth.path),
                    (":authority", &auth.cluster),
                    ("x-token", &token),
                ],
                None,
                vec![],
                Duration::from_secs(5),
            ) {
                Ok(token_id) => {
                    info!(
                        "#{} asked {} (call {token_id})",
                        self.context_id, auth.cluster
                    );
                    return Action::Pause;
                }
                Err(e) => {
                    error!(
                        "#{} dispatch_http_call to {}: {e:?}",
                        self.context_id, auth.cluster
                    );
                    self.send_http_response(
                        503,
                        vec![("x-denied-by", "rust-sdk-filters")],
                        Some(b"auth unavailable\n"),
                    );
                    return Action::Pause;
                }
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(forbidden) = self.config.forbidden() else {
            return Action::Continue;
        };
        if !end_of_stream {
            // Wait: we are called again once the host has buffered the whole body.
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size)
            && find(&body, forbidden.as_bytes()).is_some()
        {
            info!("#{} forbidden request body", self.context_id);
            self.send_http_response(400, vec![], Some(b"forbidden body\n"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some((name, _)) = &self.config.add_header {
            self.add_http_response_header("x-rust-sdk", name);
        }
        if self.config.redact().is_some() {
            // The body may change length below, and response headers can no longer be changed
            // then: drop Content-Length now, as the SDK's http_body example does.
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, count: usize) -> Action {
        if let Some((name, value)) = &self.config.trailer {
            self.add_http_response_trailer(name, value);
            self.add_http_response_trailer("x-trailers-seen", &count.to_string());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(word) = self.config.redact() else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_response_body(0, body_size)
            && let Some(new_body) = redacted(&body, word.as_bytes())
        {
            info!("#{} response body redacted", self.context_id);
            self.set_http_response_body(0, body_size, &new_body);
        }
        Action::Continue
    }
}
