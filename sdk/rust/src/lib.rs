//! Write Weir gateway plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`] plus one [`plugin!`] line:
//!
//! ```ignore
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

/// What the plugin tells the host at `init`; see `plugin-info` in the WIT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// Call [`Plugin::on_response`] for this plugin.
    pub response_hook: bool,
    /// Buffer the request body up to this many bytes and make it readable ([`request::body`]).
    pub request_body_limit: Option<u32>,
    /// Buffer the response body up to this many bytes ([`response::body`]).
    pub response_body_limit: Option<u32>,
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
            request_body_limit: info.request_body_limit,
            response_body_limit: info.response_body_limit,
        })
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
    /// The buffered body, if [`super::Info::request_body_limit`] was set.
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
