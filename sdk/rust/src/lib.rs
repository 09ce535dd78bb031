//! Write Weir gateway plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`] plus one [`plugin!`] line:
//!
//! ```no_run
//! use weir_sdk::{Decision, LocalResponse, Plugin, request};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { header: String }
//!
//! struct RequireHeader(Config);
//!
//! impl Plugin for RequireHeader {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> { Ok(RequireHeader(config)) }
//!     fn on_request(&mut self) -> Decision {
//!         match request::header(&self.0.header) {
//!             Some(_) => Decision::Continue,
//!             None => Decision::Respond(LocalResponse::new(400).text("missing header")),
//!         }
//!     }
//! }
//!
//! weir_sdk::plugin!(RequireHeader);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`). The host
//! calls `new` with the chain entry's `config` table once per instance; an `Err` refuses the
//! gateway configuration at load time with your message, naming the route and plugin.

#![deny(unsafe_code)]

/// The raw bindings generated from `wit/` (the `weir:plugin` world). Prefer the wrappers below.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "weir_sdk::bindings",
    });
}

use bindings::weir::plugin::types;
pub use types::EditError;

/// Re-exported for plugins without their own `serde` dependency: derive with
/// `#[derive(weir_sdk::serde::Deserialize)]` plus `#[serde(crate = "weir_sdk::serde")]`.
pub use serde;

/// How the plugin sees a body; see `body-access` in the WIT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyAccess {
    /// The body passes untouched (the default).
    #[default]
    None,
    /// Read the whole body, up to this many bytes, before the hook; see [`request::body`].
    Buffered(u32),
    /// The hook runs on the headers; the body then arrives through
    /// [`Plugin::on_body_chunk`] and [`Plugin::on_body_end`].
    Streamed,
}

/// Which body a chunk belongs to.
pub use types::Direction;

/// What the plugin tells the host at `init`; see `plugin-info` in the WIT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// Call [`Plugin::on_response`] for this plugin.
    pub response_hook: bool,
    /// How this plugin sees the request body.
    pub request_body: BodyAccess,
    /// How this plugin sees the response body.
    pub response_body: BodyAccess,
}

/// What a streaming plugin adds when a body ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyEnd {
    /// Bytes to send after everything else.
    pub tail: Vec<u8>,
    /// Trailer fields to add.
    pub trailers: Vec<(String, String)>,
}

/// A response produced by the plugin instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a plain-text body.
    pub fn text(self, body: impl Into<String>) -> Self {
        let mut r = self.header("content-type", "text/plain; charset=utf-8");
        r.body = body.into().into_bytes();
        r
    }

    /// Sets a JSON body.
    pub fn json(self, body: &impl serde::Serialize) -> Self {
        let mut r = self.header("content-type", "application/json");
        r.body = serde_json::to_vec(body).unwrap_or_default();
        r
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn into_wit(self) -> types::LocalResponse {
        types::LocalResponse {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// What [`Plugin::on_request`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on to the next plugin, then the upstream.
    Continue,
    /// Answer now; later plugins and the upstream are skipped.
    Respond(LocalResponse),
    /// Send the request to this named upstream instead of the route's.
    Route(String),
}

/// What [`Plugin::on_response`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDecision {
    Continue,
    /// Replace the response entirely.
    Replace(LocalResponse),
}

/// A Weir plugin. One value lives per instance, created by [`Plugin::new`] from the route's
/// config. Depending on the operator's instance policy it may serve one request or many (one at
/// a time), so never rely on state surviving between requests.
pub trait Plugin: Sized + 'static {
    /// The per-route configuration, deserialised from the chain entry's `config` table.
    /// Use `#[serde(deny_unknown_fields)]` so typos are refused at load time.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its config; `Err` refuses the configuration.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// What this plugin needs from the host (response hook, bodies).
    fn info(&self) -> Info {
        Info::default()
    }

    /// The request hook.
    fn on_request(&mut self) -> Decision {
        Decision::Continue
    }

    /// The response hook; only called if [`Info::response_hook`] is set.
    fn on_response(&mut self) -> ResponseDecision {
        ResponseDecision::Continue
    }

    /// One chunk of a body this plugin asked to see [`BodyAccess::Streamed`]. Return the bytes
    /// to pass on: `chunk` itself, a changed version, or nothing to hold them back.
    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        let _ = direction;
        chunk
    }

    /// The end of a streamed body: bytes to append and trailers to add.
    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        let _ = direction;
        BodyEnd::default()
    }
}

/// Exports a [`Plugin`] type as the component's `weir:plugin/plugin` world.
#[macro_export]
macro_rules! plugin {
    ($plugin:ty) => {
        struct __WeirPluginExport;
        impl $crate::bindings::Guest for __WeirPluginExport {
            fn init(config: String) -> Result<$crate::bindings::PluginInfo, String> {
                $crate::__private::init::<$plugin>(&config)
            }
            fn on_request() -> $crate::bindings::RequestDecision {
                $crate::__private::on_request::<$plugin>()
            }
            fn on_response() -> $crate::bindings::ResponseDecision {
                $crate::__private::on_response::<$plugin>()
            }
            fn on_body_chunk(
                direction: $crate::Direction,
                chunk: Vec<u8>,
            ) -> Vec<u8> {
                $crate::__private::on_body_chunk::<$plugin>(direction, chunk)
            }
            fn on_body_end(direction: $crate::Direction) -> $crate::bindings::BodyEnd {
                $crate::__private::on_body_end::<$plugin>(direction)
            }
        }
        $crate::bindings::export_plugin!(__WeirPluginExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn with<P: Plugin, R>(f: impl FnOnce(&mut P) -> R, missing: R) -> R {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            match s.as_mut().and_then(|b| b.downcast_mut::<P>()) {
                Some(p) => f(p),
                None => missing,
            }
        })
    }

    /// serde_json positions refer to the JSON the host made, not the user's TOML: drop them.
    fn config_error(e: serde_json::Error) -> String {
        let msg = e.to_string();
        match msg.find(" at line ") {
            Some(i) => format!("invalid config: {}", &msg[..i]),
            None => format!("invalid config: {msg}"),
        }
    }

    pub fn init<P: Plugin>(config: &str) -> Result<bindings::PluginInfo, String> {
        let config: P::Config = serde_json::from_str(config).map_err(config_error)?;
        let plugin = P::new(config)?;
        let info = plugin.info();
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(plugin)));
        Ok(bindings::PluginInfo {
            response_hook: info.response_hook,
            request_body: access(info.request_body),
            response_body: access(info.response_body),
        })
    }

    fn access(a: BodyAccess) -> types::BodyAccess {
        match a {
            BodyAccess::None => types::BodyAccess::None,
            BodyAccess::Buffered(n) => types::BodyAccess::Buffered(n),
            BodyAccess::Streamed => types::BodyAccess::Streamed,
        }
    }

    pub fn on_body_chunk<P: Plugin>(direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            match s.as_mut().and_then(|b| b.downcast_mut::<P>()) {
                Some(p) => p.on_body_chunk(direction, chunk),
                None => chunk,
            }
        })
    }

    pub fn on_body_end<P: Plugin>(direction: Direction) -> bindings::BodyEnd {
        let end = with::<P, _>(|p| p.on_body_end(direction), BodyEnd::default());
        bindings::BodyEnd {
            tail: end.tail,
            trailers: end.trailers,
        }
    }

    pub fn on_request<P: Plugin>() -> bindings::RequestDecision {
        let d = with::<P, _>(
            |p| p.on_request(),
            Decision::Respond(LocalResponse::new(500).text("plugin not initialised")),
        );
        match d {
            Decision::Continue => bindings::RequestDecision::Continue,
            Decision::Respond(r) => bindings::RequestDecision::Respond(r.into_wit()),
            Decision::Route(u) => bindings::RequestDecision::Route(u),
        }
    }

    pub fn on_response<P: Plugin>() -> bindings::ResponseDecision {
        match with::<P, _>(|p| p.on_response(), ResponseDecision::Continue) {
            ResponseDecision::Continue => bindings::ResponseDecision::Continue,
            ResponseDecision::Replace(r) => bindings::ResponseDecision::Replace(r.into_wit()),
        }
    }
}

/// The request being processed (see the `request` interface in the WIT).
pub mod request {
    pub use super::EditError;
    use super::bindings::weir::plugin::request as wit;

    pub fn method() -> String {
        wit::method()
    }
    /// Path and query, e.g. `/v1/items?limit=10`.
    pub fn path() -> String {
        wit::path()
    }
    pub fn authority() -> Option<String> {
        wit::authority()
    }
    pub fn scheme() -> String {
        wit::scheme()
    }
    pub fn client_addr() -> String {
        wit::client_addr()
    }
    /// The name of the matched route.
    pub fn route() -> String {
        wit::route()
    }
    pub fn header(name: &str) -> Option<String> {
        wit::header(name)
    }
    pub fn header_all(name: &str) -> Vec<String> {
        wit::header_all(name)
    }
    pub fn headers() -> Vec<(String, String)> {
        wit::headers()
    }
    pub fn set_header(name: &str, value: &str) -> Result<(), EditError> {
        wit::set_header(name, value)
    }
    pub fn append_header(name: &str, value: &str) -> Result<(), EditError> {
        wit::append_header(name, value)
    }
    pub fn remove_header(name: &str) -> Result<(), EditError> {
        wit::remove_header(name)
    }
    pub fn set_path(path: &str) -> Result<(), EditError> {
        wit::set_path(path)
    }
    /// The buffered body, if [`super::Info::request_body`] is [`super::BodyAccess::Buffered`].
    pub fn body() -> Option<Vec<u8>> {
        wit::body()
    }
    pub fn set_body(body: &[u8]) -> Result<(), EditError> {
        wit::set_body(body)
    }
}

/// The response being processed (only meaningful in [`super::Plugin::on_response`]).
pub mod response {
    pub use super::EditError;
    use super::bindings::weir::plugin::response as wit;

    pub fn status() -> u16 {
        wit::status()
    }
    pub fn set_status(status: u16) -> Result<(), EditError> {
        wit::set_status(status)
    }
    pub fn header(name: &str) -> Option<String> {
        wit::header(name)
    }
    pub fn header_all(name: &str) -> Vec<String> {
        wit::header_all(name)
    }
    pub fn headers() -> Vec<(String, String)> {
        wit::headers()
    }
    pub fn set_header(name: &str, value: &str) -> Result<(), EditError> {
        wit::set_header(name, value)
    }
    pub fn append_header(name: &str, value: &str) -> Result<(), EditError> {
        wit::append_header(name, value)
    }
    pub fn remove_header(name: &str) -> Result<(), EditError> {
        wit::remove_header(name)
    }
    pub fn body() -> Option<Vec<u8>> {
        wit::body()
    }
    pub fn set_body(body: &[u8]) -> Result<(), EditError> {
        wit::set_body(body)
    }
}

/// The per-request context shared by the plugins of one chain.
pub mod context {
    use super::bindings::weir::plugin::context as wit;

    /// The authenticated principal set by an earlier plugin.
    pub fn principal() -> Option<String> {
        wit::principal()
    }
    pub fn set_principal(principal: &str) {
        wit::set_principal(principal)
    }
    pub fn get(key: &str) -> Option<String> {
        wit::get(key)
    }
    pub fn set(key: &str, value: &str) {
        wit::set(key, value)
    }
    pub fn remove(key: &str) {
        wit::remove(key)
    }
}

/// Logging into the gateway's log, tagged with plugin and route.
pub mod log {
    use super::bindings::weir::plugin::log::{Level, log};

    pub fn trace(msg: &str) {
        log(Level::Trace, msg)
    }
    pub fn debug(msg: &str) {
        log(Level::Debug, msg)
    }
    pub fn info(msg: &str) {
        log(Level::Info, msg)
    }
    pub fn warn(msg: &str) {
        log(Level::Warn, msg)
    }
    pub fn error(msg: &str) {
        log(Level::Error, msg)
    }
}

/// Key-value state shared across instances (and, with the Redis backend, across gateway
/// replicas). Needs the grant `kv = "<namespace>"`; see the `kv` interface in the WIT.
pub mod kv {
    use super::bindings::weir::plugin::kv as wit;
    pub use super::bindings::weir::plugin::kv::KvError;
    use std::time::Duration;

    fn ms(ttl: Option<Duration>) -> Option<u64> {
        ttl.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
    }

    /// The value of `key`, if present and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        wit::get(key)
    }
    /// Sets `key`, with an optional time to live.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        wit::set(key, value, ms(ttl))
    }
    /// Removes `key`; returns whether it was there.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        wit::delete(key)
    }
    /// Atomically adds `delta`; `ttl` applies when this call creates the key.
    pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
        wit::increment(key, delta, ms(ttl))
    }
    /// Sets `key` to `new` only if it currently holds `expected` (`None`: absent).
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        wit::compare_and_swap(key, expected, new, ms(ttl))
    }
}

/// HTTP calls to the gateway's named upstreams. Needs the grant `outbound = ["name", ...]`.
///
/// ```no_run
/// use weir_sdk::outbound;
///
/// # fn fan_out() -> Result<(), outbound::OutboundError> {
/// // Fan out: start every call, then wait for each; they run concurrently.
/// let calls: Vec<_> = ["a", "b"]
///     .iter()
///     .map(|u| outbound::start(outbound::Request::get(u, "/status")))
///     .collect();
/// for call in calls {
///     let resp = outbound::wait(&call?)?;
///     let _status = resp.status();
/// }
/// # Ok(())
/// # }
/// ```
pub mod outbound {
    use super::bindings::weir::plugin::outbound as wit;
    pub use super::bindings::weir::plugin::outbound::{
        IncomingResponse, OutboundError, PendingResponse,
    };

    /// A request to a named upstream.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Request {
        pub upstream: String,
        pub method: String,
        pub path: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        pub timeout_ms: Option<u32>,
    }

    impl Request {
        pub fn new(method: &str, upstream: &str, path: &str) -> Request {
            Request {
                upstream: upstream.into(),
                method: method.into(),
                path: path.into(),
                ..Request::default()
            }
        }
        pub fn get(upstream: &str, path: &str) -> Request {
            Request::new("GET", upstream, path)
        }
        pub fn post(upstream: &str, path: &str, body: impl Into<Vec<u8>>) -> Request {
            Request {
                body: body.into(),
                ..Request::new("POST", upstream, path)
            }
        }
        pub fn header(mut self, name: &str, value: &str) -> Request {
            self.headers.push((name.into(), value.into()));
            self
        }
        pub fn timeout_ms(mut self, ms: u32) -> Request {
            self.timeout_ms = Some(ms);
            self
        }
        fn into_wit(self) -> wit::OutgoingRequest {
            wit::OutgoingRequest {
                upstream: self.upstream,
                method: self.method,
                path: self.path,
                headers: self.headers,
                body: self.body,
                timeout_ms: self.timeout_ms,
            }
        }
    }

    /// Starts a call and returns at once.
    pub fn start(request: Request) -> Result<PendingResponse, OutboundError> {
        wit::start(&request.into_wit())
    }
    /// Waits for the response head of a started call.
    pub fn wait(call: &PendingResponse) -> Result<IncomingResponse, OutboundError> {
        wit::wait(call)
    }
    /// Starts a call and waits for its response head.
    pub fn send(request: Request) -> Result<IncomingResponse, OutboundError> {
        wit::send(&request.into_wit())
    }

    /// Makes the event streams these calls answer with follow this request's answer, merged
    /// event by event, each tagged `weir-source: N` (N counting `calls` from 0); takes effect
    /// when `on_request` then returns `Decision::Respond`. See `answer-with-events` in the WIT.
    pub fn answer_with_events(calls: Vec<PendingResponse>) -> Result<(), OutboundError> {
        wit::answer_with_events(calls)
    }
}

/// Plugin metrics, exported as `weir_plugin_<name>`. Needs the grant `metrics = true`.
pub mod metrics {
    use super::bindings::weir::plugin::metrics as wit;

    /// Adds `value` to a counter.
    pub fn counter_add(name: &str, value: u64, labels: &[(&str, &str)]) {
        wit::counter_add(name, value, &owned(labels))
    }
    /// Records one observation in a histogram.
    pub fn histogram_record(name: &str, value: f64, labels: &[(&str, &str)]) {
        wit::histogram_record(name, value, &owned(labels))
    }
    fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Secrets mapped by the operator. Needs the grant `secrets = ["NAME", ...]`.
pub mod secrets {
    pub use super::bindings::weir::plugin::secrets::SecretError;

    /// The value of a granted secret.
    pub fn get(name: &str) -> Result<String, SecretError> {
        super::bindings::weir::plugin::secrets::get(name)
    }
}
