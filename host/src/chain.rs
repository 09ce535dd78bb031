//! Running a route's plugin chain for one request.
//!
//! Request hooks run in chain order. A local response stops the request phase; the response
//! hooks of the plugins whose request hook ran then still run, in reverse order. Every hook of
//! one request runs on the same instance of that plugin. A failing plugin (trap, timeout, memory
//! limit, invalid decision) is handled by its entry's `on_error`: `fail-closed` answers 500
//! naming the plugin, `fail-open` skips it (its response hook does not run).

use crate::config::{InstancePolicy, OnError};
use crate::exchange::Exchange;
use crate::plugin::{
    BodyAccess, HookFailure, InstancePool, LoadedPlugin, LocalResponse, PluginInfo, PluginInstance,
    RequestDecision, ResponseDecision,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;

/// One plugin in one route's chain, with that route's config.
pub struct ChainEntry {
    pub plugin: Arc<LoadedPlugin>,
    pub config: Arc<str>,
    pub on_error: OnError,
    /// What the plugin declared at load time for this config.
    pub info: PluginInfo,
    pool: Option<InstancePool>,
}

impl ChainEntry {
    /// Validates `config` by instantiating the plugin and calling `init`; the instance seeds
    /// the pool of a pooled plugin.
    pub async fn new(
        plugin: Arc<LoadedPlugin>,
        config: Arc<str>,
        on_error: OnError,
    ) -> Result<ChainEntry, HookFailure> {
        let first = PluginInstance::new(&plugin, &config).await?;
        let info = first.info;
        let pool = (plugin.settings.policy == InstancePolicy::Pooled).then(|| {
            let pool = InstancePool::new(plugin.clone(), config.clone());
            pool.seed(first);
            pool
        });
        Ok(ChainEntry {
            plugin,
            config,
            on_error,
            info,
            pool,
        })
    }

    async fn instance(&self) -> Result<PluginInstance, HookFailure> {
        match &self.pool {
            Some(pool) => pool.take().await,
            None => PluginInstance::new(&self.plugin, &self.config).await,
        }
    }

    fn release(&self, instance: PluginInstance) {
        if let Some(pool) = &self.pool {
            pool.give_back(instance);
        }
    }
}

/// A route's chain.
pub struct Chain {
    pub entries: Vec<ChainEntry>,
    /// Buffer the request body up to this size (the largest any plugin asked for).
    pub request_body_limit: Option<u64>,
    /// Buffer the response body up to this size (the largest any plugin asked for).
    pub response_body_limit: Option<u64>,
}

fn buffered(access: &BodyAccess) -> Option<u32> {
    match access {
        BodyAccess::Buffered(n) => Some(*n),
        _ => None,
    }
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>) -> Chain {
        let request_body_limit = entries
            .iter()
            .filter_map(|e| buffered(&e.info.request_body))
            .max()
            .map(u64::from);
        let response_body_limit = entries
            .iter()
            .filter(|e| e.info.response_hook)
            .filter_map(|e| buffered(&e.info.response_body))
            .max()
            .map(u64::from);
        Chain {
            entries,
            request_body_limit,
            response_body_limit,
        }
    }
}

impl ChainEntry {
    /// Whether this entry's instance is needed after its request hook.
    fn needed_later(&self) -> bool {
        self.info.response_hook
            || matches!(self.info.request_body, BodyAccess::Streamed)
            || matches!(self.info.response_body, BodyAccess::Streamed)
    }
}

/// An instance kept after its request hook for later calls (response hook, body chunks),
/// possibly from two places at once (a request body still streaming up while the response
/// arrives). The last holder gives it back to its pool.
pub struct Held {
    route: Arc<crate::snapshot::Route>,
    pub index: usize,
    pub instance: tokio::sync::Mutex<Option<PluginInstance>>,
}

impl Held {
    pub fn entry(&self) -> &ChainEntry {
        &self.route.chain.entries[self.index]
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.get_mut().take() {
            self.route.chain.entries[self.index].release(instance);
        }
    }
}

/// A response built by the gateway or a plugin, body in memory.
pub struct Local {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Local {
    pub fn text(status: StatusCode, body: String) -> Local {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Local {
            status,
            headers,
            body: Bytes::from(body),
        }
    }

    fn from_plugin(r: LocalResponse) -> Result<Local, HookFailure> {
        let status = StatusCode::from_u16(r.status)
            .map_err(|_| HookFailure::BadDecision(format!("invalid status {}", r.status)))?;
        let mut headers = http::HeaderMap::new();
        for (k, v) in r.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| HookFailure::BadDecision(format!("invalid header name {k:?}")))?;
            let value = HeaderValue::from_str(&v)
                .map_err(|_| HookFailure::BadDecision(format!("invalid value for {k}")))?;
            headers.append(name, value);
        }
        Ok(Local {
            status,
            headers,
            body: Bytes::from(r.body),
        })
    }
}

/// What the request phase decided.
pub enum RequestOutcome {
    /// Forward upstream; to this upstream if a plugin routed the request.
    Forward { upstream: Option<String> },
    /// Answer with this response (a plugin's, or a fail-closed error).
    Respond(Local),
}

/// The state of one request's chain: the instances of plugins that ran and are needed later.
pub struct ChainRun {
    route: Arc<crate::snapshot::Route>,
    /// Plugins that ran and want a response hook or a streamed body, in chain order.
    ran: Vec<Arc<Held>>,
}

impl ChainRun {
    pub fn new(route: Arc<crate::snapshot::Route>) -> ChainRun {
        ChainRun {
            route,
            ran: Vec::new(),
        }
    }

    /// Whether any plugin is still needed after the request phase.
    pub fn is_active(&self) -> bool {
        !self.ran.is_empty()
    }

    pub fn has_response_hooks(&self) -> bool {
        self.ran.iter().any(|h| h.entry().info.response_hook)
    }

    /// The plugins that stream the request body, in chain order.
    pub fn request_streamers(&self) -> Vec<Arc<Held>> {
        self.ran
            .iter()
            .filter(|h| matches!(h.entry().info.request_body, BodyAccess::Streamed))
            .cloned()
            .collect()
    }

    /// Runs the request hooks in order. `upstream_exists` checks a plugin's `route` target.
    pub async fn request_phase(
        &mut self,
        mut ex: Box<Exchange>,
        upstream_exists: impl Fn(&str) -> bool,
    ) -> (Box<Exchange>, RequestOutcome) {
        let route = self.route.clone();
        let mut upstream = None;
        for (i, entry) in route.chain.entries.iter().enumerate() {
            let mut instance = match entry.instance().await {
                Ok(instance) => instance,
                Err(failure) => match self.failed(entry, failure) {
                    Some(local) => return (ex, RequestOutcome::Respond(local)),
                    None => continue,
                },
            };
            let span = crate::telemetry::hook(
                &ex.trace,
                &entry.plugin.name,
                &entry.plugin.digest,
                "on_request",
            );
            let started = std::time::Instant::now();
            let (back, result) = instance.on_request(ex).await;
            ex = back;
            crate::request_metrics::hook(
                &entry.plugin.name,
                "on_request",
                started.elapsed(),
                result.as_ref().err().map(HookFailure::kind),
            );
            crate::telemetry::end_hook(
                span,
                match &result {
                    Ok(RequestDecision::Continue) => Ok("continue".into()),
                    Ok(RequestDecision::Respond(r)) => Ok(format!("respond {}", r.status)),
                    Ok(RequestDecision::Route(u)) => Ok(format!("route {u}")),
                    Err(e) => Err(e.to_string()),
                },
            );
            let result = result.and_then(|decision| match decision {
                RequestDecision::Continue => Ok(None),
                RequestDecision::Respond(r) => Local::from_plugin(r).map(Some),
                RequestDecision::Route(name) if upstream_exists(&name) => {
                    upstream = Some(name);
                    Ok(None)
                }
                RequestDecision::Route(name) => Err(HookFailure::BadDecision(format!(
                    "routed to unknown upstream \"{name}\""
                ))),
            });
            match result {
                Ok(respond) => {
                    self.keep(i, instance);
                    if let Some(local) = respond {
                        return (ex, RequestOutcome::Respond(local));
                    }
                }
                Err(failure) => {
                    drop(instance);
                    if let Some(local) = self.failed(entry, failure) {
                        return (ex, RequestOutcome::Respond(local));
                    }
                }
            }
        }
        (ex, RequestOutcome::Forward { upstream })
    }

    /// Runs the response hooks in reverse order on `ex.response`. A `replace` decision or a
    /// fail-closed error replaces the response head and sets `ex.response_body`. Returns the
    /// plugins that stream the response body, in the order the body passes them (reverse chain
    /// order), minus any whose response hook failed.
    pub async fn response_phase(
        &mut self,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Vec<Arc<Held>>) {
        let mut streamers = Vec::new();
        while let Some(held) = self.ran.pop() {
            let entry = held.entry();
            let streams = matches!(entry.info.response_body, BodyAccess::Streamed);
            if !entry.info.response_hook {
                if streams {
                    streamers.push(held);
                }
                continue;
            }
            let mut slot = held.instance.lock().await;
            let Some(instance) = slot.as_mut() else {
                continue;
            };
            let span = crate::telemetry::hook(
                &ex.trace,
                &entry.plugin.name,
                &entry.plugin.digest,
                "on_response",
            );
            let started = std::time::Instant::now();
            let (back, result) = instance.on_response(ex).await;
            ex = back;
            crate::request_metrics::hook(
                &entry.plugin.name,
                "on_response",
                started.elapsed(),
                result.as_ref().err().map(HookFailure::kind),
            );
            crate::telemetry::end_hook(
                span,
                match &result {
                    Ok(ResponseDecision::Continue) => Ok("continue".into()),
                    Ok(ResponseDecision::Replace(r)) => Ok(format!("replace {}", r.status)),
                    Err(e) => Err(e.to_string()),
                },
            );
            let result = result.and_then(|d| match d {
                ResponseDecision::Continue => Ok(None),
                ResponseDecision::Replace(r) => Local::from_plugin(r).map(Some),
            });
            let replacement = match result {
                Ok(r) => r,
                Err(failure) => {
                    // A failed instance is never reused; nor does it see the body.
                    slot.take();
                    self.failed(entry, failure)
                }
            };
            let keep = streams && slot.is_some();
            drop(slot);
            if keep {
                streamers.push(held.clone());
            }
            if let Some(local) = replacement {
                replace_response(&mut ex, local);
            }
        }
        (ex, streamers)
    }

    fn keep(&mut self, i: usize, instance: PluginInstance) {
        let entry = &self.route.chain.entries[i];
        if entry.needed_later() {
            self.ran.push(Arc::new(Held {
                route: self.route.clone(),
                index: i,
                instance: tokio::sync::Mutex::new(Some(instance)),
            }));
        } else {
            entry.release(instance);
        }
    }

    /// Applies `on_error`: a 500 to answer with (fail-closed), or `None` to skip (fail-open).
    fn failed(&self, entry: &ChainEntry, failure: HookFailure) -> Option<Local> {
        failed(&self.route.name, entry, failure)
    }
}

/// Applies an entry's `on_error` to a failure: a 500 to answer with (fail-closed), or `None` to
/// skip the plugin (fail-open). Counts the failure for the plugin's health.
pub fn failed(route: &str, entry: &ChainEntry, failure: HookFailure) -> Option<Local> {
    let plugin = &*entry.plugin.name;
    if entry
        .plugin
        .stats
        .record_failure(&entry.plugin.settings.health)
    {
        tracing::warn!(
            plugin,
            route,
            "plugin is now unhealthy: too many recent failures"
        );
    }
    match entry.on_error {
        OnError::FailOpen => {
            tracing::warn!(plugin, route, %failure, "plugin failed; skipped (fail-open)");
            None
        }
        OnError::FailClosed => {
            tracing::error!(plugin, route, %failure, "plugin failed; request refused (fail-closed)");
            let mut local = Local::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("weir: plugin \"{plugin}\" on route \"{route}\" {failure}\n"),
            );
            local
                .headers
                .insert("x-weir-error", HeaderValue::from_static("plugin"));
            Some(local)
        }
    }
}

/// Puts a local response into the exchange as the current response.
pub fn replace_response(ex: &mut Exchange, local: Local) {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = local.status;
    parts.headers = local.headers;
    ex.response = Some(parts);
    ex.response_body = Some(local.body);
}
