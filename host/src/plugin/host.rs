//! The store data of a plugin instance and the host side of the `weir:plugin` imports.
//!
//! WASI 0.2 is linked because every guest toolchain's standard library imports it, but the
//! `WasiCtx` grants nothing: no environment, arguments, preopened directories or sockets;
//! stdout and stderr go to the gateway's log (see `output.rs`).

use super::bindings::EditError;
use super::bindings::weir::plugin::{context, log, request, response, types};
use crate::capability::PluginCapabilities;
use crate::exchange::{Exchange, Phase};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Raised from `memory.grow` when an instance would exceed its plugin's `memory_limit`.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (wanted {desired} bytes)")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) limit: usize,
    pub(crate) desired: usize,
}

/// Tracks and bounds linear memory growth of one instance.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    /// Largest size any memory of this instance has grown to.
    pub(crate) peak: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded {
                limit: self.limit,
                desired,
            }
            .into());
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// What a plugin instance's host calls operate on.
pub(crate) struct HostState {
    /// The guest's stdout and stderr, logged after each hook.
    pub(crate) output: super::output::GuestOutput,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// The exchange lent for the duration of one hook call; `None` during `init`.
    pub(crate) exchange: Option<Box<Exchange>>,
    /// Whether this plugin asked to see the request/response body.
    pub(crate) body_access: (bool, bool),
    pub(crate) plugin: Arc<str>,
    /// The running call's execution budget and backstop; checked at every epoch tick.
    pub(crate) call: super::budget::CallLimits,
    /// What the plugin was granted (kv, outbound, metrics, secrets).
    pub(crate) caps: Arc<PluginCapabilities>,
    /// Outbound calls started and not yet dropped.
    pub(crate) calls_in_flight: usize,
    /// The route of the request this instance serves, kept after the exchange is given back
    /// so the log lines of body hooks still name it.
    pub(crate) route: Arc<str>,
    /// Where body hooks' `trace.*` context attributes go (the request span is still open).
    pub(crate) late_trace: Option<crate::exchange::LateAttributes>,
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        memory_limit: usize,
        caps: Arc<PluginCapabilities>,
    ) -> Self {
        let output = super::output::GuestOutput::default();
        HostState {
            wasi: WasiCtx::builder()
                .stdout(output.clone())
                .stderr(output.clone())
                .build(),
            output,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: memory_limit,
                peak: 0,
            },
            exchange: None,
            body_access: (false, false),
            plugin,
            call: Default::default(),
            caps,
            calls_in_flight: 0,
            route: Arc::from(""),
            late_trace: None,
        }
    }

    fn route(&self) -> &str {
        self.exchange.as_deref().map_or(&self.route, |e| &e.route)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let (plugin, route) = (&*self.plugin, self.route());
        let trace_id = self
            .exchange
            .as_deref()
            .and_then(|e| crate::telemetry::trace_id(&e.trace));
        let trace = trace_id.as_deref().unwrap_or("");
        match level {
            log::Level::Trace => tracing::trace!(plugin, route, trace_id = trace, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, route, trace_id = trace, "{message}"),
            log::Level::Info => tracing::info!(plugin, route, trace_id = trace, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, route, trace_id = trace, "{message}"),
            log::Level::Error => tracing::error!(plugin, route, trace_id = trace, "{message}"),
        }
        if let Some(record) = crate::access_log::audit_record(&message) {
            crate::access_log::audit(plugin, route, trace_id.as_deref(), record);
        }
    }
}

impl context::Host for HostState {
    fn principal(&mut self) -> Option<String> {
        self.exchange.as_ref()?.context.principal.clone()
    }
    fn set_principal(&mut self, principal: String) {
        if let Some(e) = self.exchange.as_mut() {
            e.context.principal = Some(principal);
        }
    }
    fn get(&mut self, key: String) -> Option<String> {
        self.exchange
            .as_ref()?
            .context
            .attributes
            .get(&key)
            .cloned()
    }
    fn set(&mut self, key: String, value: String) {
        if let Some(e) = self.exchange.as_mut() {
            e.context.attributes.insert(key, value);
        } else if key.starts_with("trace.")
            && let Some(late) = &self.late_trace
        {
            // A body hook: the message is gone, but the request's span is still open.
            late.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key, value));
        }
    }
    fn remove(&mut self, key: String) {
        if let Some(e) = self.exchange.as_mut() {
            e.context.attributes.remove(&key);
        }
    }
}

fn value_string(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn first(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(value_string)
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers.get_all(name).iter().map(value_string).collect()
}

fn list(headers: &HeaderMap) -> Vec<(String, String)> {
    crate::headers::to_fields(headers)
}

fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), EditError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| EditError::InvalidHeaderName(name.to_string()))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| EditError::InvalidHeaderValue(value.to_string()))?;
    Ok((n, v))
}

enum Edit<'a> {
    Set(&'a str, &'a str),
    Append(&'a str, &'a str),
    Remove(&'a str),
}

fn edit(headers: &mut HeaderMap, edit: Edit<'_>) -> Result<(), EditError> {
    match edit {
        Edit::Set(n, v) => {
            let (n, v) = parse_header(n, v)?;
            headers.insert(n, v);
        }
        Edit::Append(n, v) => {
            let (n, v) = parse_header(n, v)?;
            headers.append(n, v);
        }
        Edit::Remove(n) => {
            let n = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| EditError::InvalidHeaderName(n.to_string()))?;
            headers.remove(n);
        }
    }
    Ok(())
}

impl HostState {
    fn req(&self) -> Option<&Exchange> {
        self.exchange.as_deref()
    }
    /// The exchange if the request may be changed now (request phase).
    fn req_mut(&mut self) -> Result<&mut Exchange, EditError> {
        match self.exchange.as_deref_mut() {
            Some(e) if e.phase == Phase::Request => Ok(e),
            _ => Err(EditError::ReadOnly),
        }
    }
    fn resp_mut(&mut self) -> Result<&mut http::response::Parts, EditError> {
        match self.exchange.as_deref_mut() {
            Some(e) if e.phase == Phase::Response => e.response.as_mut().ok_or(EditError::ReadOnly),
            _ => Err(EditError::ReadOnly),
        }
    }
    fn resp(&self) -> Option<&http::response::Parts> {
        self.exchange.as_deref()?.response.as_ref()
    }
}

impl request::Host for HostState {
    fn method(&mut self) -> String {
        self.req()
            .map_or_else(String::new, |e| e.request.method.to_string())
    }
    fn path(&mut self) -> String {
        self.req()
            .and_then(|e| e.request.uri.path_and_query())
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string())
    }
    fn authority(&mut self) -> Option<String> {
        self.req()?.authority.clone()
    }
    fn scheme(&mut self) -> String {
        self.req().map_or("http", |e| e.scheme).to_string()
    }
    fn client_addr(&mut self) -> String {
        self.req()
            .map_or_else(String::new, |e| e.client_addr.to_string())
    }
    fn route(&mut self) -> String {
        HostState::route(self).to_string()
    }
    fn header(&mut self, name: String) -> Option<String> {
        first(&self.req()?.request.headers, &name.to_ascii_lowercase())
    }
    fn header_all(&mut self, name: String) -> Vec<String> {
        self.req()
            .map(|e| all(&e.request.headers, &name.to_ascii_lowercase()))
            .unwrap_or_default()
    }
    fn headers(&mut self) -> Vec<(String, String)> {
        self.req()
            .map(|e| list(&e.request.headers))
            .unwrap_or_default()
    }
    fn set_header(&mut self, name: String, value: String) -> Result<(), EditError> {
        edit(
            &mut self.req_mut()?.request.headers,
            Edit::Set(&name, &value),
        )
    }
    fn append_header(&mut self, name: String, value: String) -> Result<(), EditError> {
        edit(
            &mut self.req_mut()?.request.headers,
            Edit::Append(&name, &value),
        )
    }
    fn remove_header(&mut self, name: String) -> Result<(), EditError> {
        edit(&mut self.req_mut()?.request.headers, Edit::Remove(&name))
    }
    /// The new path is made canonical like the client's (a plugin cannot hand later plugins
    /// and the upstream a spelling they would read differently); one without a canonical form
    /// is `invalid-path`.
    fn set_path(&mut self, path: String) -> Result<(), EditError> {
        let e = self.req_mut()?;
        e.set_path(&path).map_err(|()| EditError::InvalidPath(path))
    }
    fn body(&mut self) -> Option<Vec<u8>> {
        if !self.body_access.0 {
            return None;
        }
        self.req()?.request_body.as_ref().map(|b| b.to_vec())
    }
    fn set_body(&mut self, body: Vec<u8>) -> Result<(), EditError> {
        if !self.body_access.0 {
            return Err(EditError::ReadOnly);
        }
        self.req_mut()?.request_body = Some(Bytes::from(body));
        Ok(())
    }
}

impl response::Host for HostState {
    fn status(&mut self) -> u16 {
        self.resp().map_or(0, |r| r.status.as_u16())
    }
    fn set_status(&mut self, status: u16) -> Result<(), EditError> {
        let r = self.resp_mut()?;
        r.status =
            http::StatusCode::from_u16(status).map_err(|_| EditError::InvalidStatus(status))?;
        Ok(())
    }
    fn header(&mut self, name: String) -> Option<String> {
        first(&self.resp()?.headers, &name.to_ascii_lowercase())
    }
    fn header_all(&mut self, name: String) -> Vec<String> {
        self.resp()
            .map(|r| all(&r.headers, &name.to_ascii_lowercase()))
            .unwrap_or_default()
    }
    fn headers(&mut self) -> Vec<(String, String)> {
        self.resp().map(|r| list(&r.headers)).unwrap_or_default()
    }
    fn set_header(&mut self, name: String, value: String) -> Result<(), EditError> {
        edit(&mut self.resp_mut()?.headers, Edit::Set(&name, &value))
    }
    fn append_header(&mut self, name: String, value: String) -> Result<(), EditError> {
        edit(&mut self.resp_mut()?.headers, Edit::Append(&name, &value))
    }
    fn remove_header(&mut self, name: String) -> Result<(), EditError> {
        edit(&mut self.resp_mut()?.headers, Edit::Remove(&name))
    }
    fn body(&mut self) -> Option<Vec<u8>> {
        if !self.body_access.1 {
            return None;
        }
        self.req()?.response_body.as_ref().map(|b| b.to_vec())
    }
    fn set_body(&mut self, body: Vec<u8>) -> Result<(), EditError> {
        if !self.body_access.1 {
            return Err(EditError::ReadOnly);
        }
        self.resp_mut()?;
        if let Some(e) = self.exchange.as_deref_mut() {
            e.response_body = Some(Bytes::from(body));
        }
        Ok(())
    }
}
