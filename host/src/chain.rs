//! Running a route's plugin chain for one request.
//!
//! Request hooks run in chain order. A local response stops the request phase; the response
//! hooks of the plugins whose request hook ran then still run, in reverse order. Every hook of
//! one request runs on the same instance of that plugin. A failing plugin (trap, timeout, memory
//! limit, invalid decision) is handled by its entry's `on_error`: `fail-closed` answers 500
//! naming the plugin, `fail-open` skips it (its response hook does not run).

use crate::config::{InstancePolicy, OnError};
use crate::exchange::Exchange;
use crate::observe::Observer;
pub(crate) use crate::plugin::Hook;
use crate::plugin::{
    BodyAccess, HookFailure, InstancePool, LoadedPlugin, LocalResponse, PluginInfo, PluginInstance,
    RequestDecision, ResponseDecision,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;

/// One plugin in one route's chain, with that route's config.
pub(crate) struct ChainEntry {
    pub(crate) plugin: Arc<LoadedPlugin>,
    config: Arc<str>,
    on_error: OnError,
    /// What the plugin declared at load time for this config.
    pub(crate) info: PluginInfo,
    pool: Option<InstancePool>,
    /// The timer of a proxy-wasm filter that asked for ticks; stops with the entry.
    _ticker: Option<Ticker>,
}

/// Ticks one instance of a proxy-wasm filter kept for that (Envoy ticks each worker's root
/// context; here one root context per chain entry ticks, and its effects reach the request
/// instances through shared data). A failed tick is counted like a failed hook and the next
/// tick gets a new instance.
struct Ticker(tokio::task::JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Ticker {
    fn start(plugin: Arc<LoadedPlugin>, config: Arc<str>) -> Option<Ticker> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(Ticker(runtime.spawn(async move {
            let mut instance = None;
            loop {
                if instance.is_none() {
                    instance = PluginInstance::new(&plugin, &config).await.ok();
                }
                let period = instance.as_ref().and_then(PluginInstance::tick_period);
                tokio::time::sleep(period.unwrap_or(std::time::Duration::from_secs(1))).await;
                let Some(i) = instance.as_mut().filter(|_| period.is_some()) else {
                    continue;
                };
                if let Err(failure) = i.tick().await {
                    let plugin_name = &*plugin.name;
                    tracing::warn!(plugin = plugin_name, %failure, "proxy_on_tick failed");
                    plugin.stats.record_failure(
                        &plugin.settings.health,
                        "(tick)",
                        failure.to_string(),
                    );
                    instance = None;
                }
            }
        })))
    }
}

/// What one hook call came to, once the entry's `on_error` has been applied.
pub(crate) enum Invoked<T> {
    /// The hook returned this.
    Done(T),
    /// No call: the hook failed and `fail-open` skips the plugin (or its instance was already
    /// gone after an earlier failure).
    Skipped,
    /// The hook failed and `fail-closed` answers with this 500.
    Refused(Local),
}

/// Where a hook call reports: the route (for errors), the request's trace (body hooks run after
/// the request span's hooks and get none), and the snapshot's observer.
pub(crate) struct HookSite<'a> {
    pub(crate) route: &'a str,
    pub(crate) trace: Option<&'a opentelemetry::Context>,
    pub(crate) observer: &'a Observer,
}

impl ChainEntry {
    /// Validates `config` by instantiating the plugin and calling `init`; the instance seeds
    /// the pool of a pooled plugin.
    pub(crate) async fn new(
        plugin: Arc<LoadedPlugin>,
        config: Arc<str>,
        on_error: OnError,
    ) -> Result<ChainEntry, HookFailure> {
        let first = PluginInstance::at_load(&plugin, &config).await?;
        let info = first.info;
        let ticker = match first.tick_period() {
            Some(_) => Ticker::start(plugin.clone(), config.clone()),
            None => None,
        };
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
            _ticker: ticker,
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

    /// The one hook-call ritual, for all four hooks: a span and a timer around `call` on the
    /// instance in `slot`, then the latency and failure counted. A failed instance is taken
    /// out of `slot` (never reused, and it sees nothing more of this request) and the failure
    /// goes through `on_error`. `carry` (the exchange, for the head hooks) goes in and comes
    /// back whatever happens.
    pub(crate) async fn invoke<C, T>(
        &self,
        site: &HookSite<'_>,
        hook: Hook,
        slot: &mut Option<PluginInstance>,
        carry: C,
        call: impl AsyncFnOnce(&mut PluginInstance, C) -> (C, Result<T, HookFailure>),
        describe: impl FnOnce(&T) -> String,
    ) -> (C, Invoked<T>) {
        let Some(instance) = slot.as_mut() else {
            return (carry, Invoked::Skipped);
        };
        let started = site.observer.hook_started(site.trace, &self.plugin, hook);
        let (carry, result) = call(instance, carry).await;
        site.observer
            .hook_finished(started, &self.plugin, hook, &result, describe);
        let invoked = match result {
            Ok(value) => Invoked::Done(value),
            Err(failure) => {
                slot.take();
                match self.on_failure(site.route, failure) {
                    Some(local) => Invoked::Refused(local),
                    None => Invoked::Skipped,
                }
            }
        };
        (carry, invoked)
    }

    /// Applies `on_error` to a failure: a 500 to answer with (fail-closed), or `None` to skip
    /// the plugin (fail-open). Counts the failure for the plugin's health.
    pub(crate) fn on_failure(&self, route: &str, failure: HookFailure) -> Option<Local> {
        let plugin = &*self.plugin.name;
        if self.plugin.stats.record_failure(
            &self.plugin.settings.health,
            route,
            failure.to_string(),
        ) {
            tracing::warn!(
                plugin,
                route,
                "plugin is now unhealthy: too many recent failures"
            );
        }
        match self.on_error {
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
}

/// A route's chain.
pub(crate) struct Chain {
    pub(crate) entries: Vec<Arc<ChainEntry>>,
    /// Buffer the request body up to this size (the largest any plugin asked for).
    pub(crate) request_body_limit: Option<u64>,
    /// Buffer the response body up to this size (the largest any plugin asked for).
    pub(crate) response_body_limit: Option<u64>,
}

fn buffered(access: &BodyAccess) -> Option<u32> {
    match access {
        BodyAccess::Buffered(n) => Some(*n),
        _ => None,
    }
}

impl Chain {
    pub(crate) fn new(entries: Vec<ChainEntry>) -> Chain {
        let entries: Vec<Arc<ChainEntry>> = entries.into_iter().map(Arc::new).collect();
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
pub(crate) struct Held {
    pub(crate) entry: Arc<ChainEntry>,
    pub(crate) instance: tokio::sync::Mutex<Option<PluginInstance>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.get_mut().take() {
            self.entry.release(instance);
        }
    }
}

/// A response built by the gateway or a plugin, body in memory.
pub(crate) struct Local {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
    /// The gateway's own error (not a plugin's answer): its body is re-rendered in the route's
    /// `error_format`.
    own: bool,
}

/// Marks a response head as the gateway's own error answer (see [`Local`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnAnswer;

impl Local {
    pub(crate) fn text(status: StatusCode, body: String) -> Local {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Local {
            status,
            headers,
            body: Bytes::from(body),
            own: true,
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
            own: false,
        })
    }
}

/// What the request phase decided.
pub(crate) enum RequestOutcome {
    /// Forward upstream; to this upstream if a plugin routed the request.
    Forward { upstream: Option<String> },
    /// Answer with this response (a plugin's, or a fail-closed error).
    Respond(Local),
}

/// A request hook's decision, checked: what the chain does next.
enum RequestStep {
    Continue,
    Respond(Local),
    Route(String),
}

impl RequestStep {
    fn check(
        d: RequestDecision,
        upstream_exists: &impl Fn(&str) -> bool,
    ) -> Result<Self, HookFailure> {
        Ok(match d {
            RequestDecision::Continue => RequestStep::Continue,
            RequestDecision::Respond(r) => RequestStep::Respond(Local::from_plugin(r)?),
            RequestDecision::Route(name) if upstream_exists(&name) => RequestStep::Route(name),
            RequestDecision::Route(name) => {
                return Err(HookFailure::BadDecision(format!(
                    "routed to unknown upstream \"{name}\""
                )));
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            RequestStep::Continue => "continue".into(),
            RequestStep::Respond(l) => format!("respond {}", l.status.as_u16()),
            RequestStep::Route(u) => format!("route {u}"),
        }
    }
}

fn describe_replacement(r: &Option<Local>) -> String {
    match r {
        None => "continue".into(),
        Some(l) => format!("replace {}", l.status.as_u16()),
    }
}

/// The state of one request's chain: the instances of plugins that ran and are needed later.
pub(crate) struct ChainRun {
    chain: Arc<Chain>,
    route: Arc<str>,
    observer: Arc<Observer>,
    /// Plugins that ran and want a response hook or a streamed body, in chain order.
    ran: Vec<Arc<Held>>,
}

impl ChainRun {
    pub(crate) fn new(chain: Arc<Chain>, route: Arc<str>, observer: Arc<Observer>) -> ChainRun {
        ChainRun {
            chain,
            route,
            observer,
            ran: Vec::new(),
        }
    }

    /// Whether any plugin is still needed after the request phase.
    pub(crate) fn is_active(&self) -> bool {
        !self.ran.is_empty()
    }

    pub(crate) fn has_response_hooks(&self) -> bool {
        self.ran.iter().any(|h| h.entry.info.response_hook)
    }

    /// The plugins that stream the request body, in chain order.
    pub(crate) fn request_streamers(&self) -> Vec<Arc<Held>> {
        self.ran
            .iter()
            .filter(|h| matches!(h.entry.info.request_body, BodyAccess::Streamed))
            .cloned()
            .collect()
    }

    fn site<'a>(&'a self, trace: &'a opentelemetry::Context) -> HookSite<'a> {
        HookSite {
            route: &self.route,
            trace: Some(trace),
            observer: &self.observer,
        }
    }

    /// Runs the request hooks in order. `upstream_exists` checks a plugin's `route` target.
    pub(crate) async fn request_phase(
        &mut self,
        mut ex: Box<Exchange>,
        upstream_exists: impl Fn(&str) -> bool,
    ) -> (Box<Exchange>, RequestOutcome) {
        let chain = self.chain.clone();
        let trace = ex.trace.clone();
        let mut upstream = None;
        for entry in &chain.entries {
            let mut slot = match entry.instance().await {
                Ok(instance) => Some(instance),
                Err(failure) => match entry.on_failure(&self.route, failure) {
                    Some(local) => return (ex, RequestOutcome::Respond(local)),
                    None => continue,
                },
            };
            let step;
            (ex, step) = entry
                .invoke(
                    &self.site(&trace),
                    Hook::Request,
                    &mut slot,
                    ex,
                    async |i, ex| {
                        let (ex, d) = i.on_request(ex).await;
                        let step = d.and_then(|d| RequestStep::check(d, &upstream_exists));
                        (ex, step)
                    },
                    RequestStep::describe,
                )
                .await;
            if let Some(instance) = slot {
                self.keep(entry, instance);
            }
            match step {
                Invoked::Done(RequestStep::Continue) | Invoked::Skipped => {}
                Invoked::Done(RequestStep::Route(name)) => upstream = Some(name),
                Invoked::Done(RequestStep::Respond(local)) | Invoked::Refused(local) => {
                    return (ex, RequestOutcome::Respond(local));
                }
            }
        }
        (ex, RequestOutcome::Forward { upstream })
    }

    /// Runs the response hooks in reverse order on `ex.response`. A `replace` decision or a
    /// fail-closed error replaces the response head and sets `ex.response_body`. Returns the
    /// plugins that stream the response body, in the order the body passes them (reverse chain
    /// order), minus any whose response hook failed.
    pub(crate) async fn response_phase(
        &mut self,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Vec<Arc<Held>>) {
        let trace = ex.trace.clone();
        let mut streamers = Vec::new();
        while let Some(held) = self.ran.pop() {
            let entry = &held.entry;
            let streams = matches!(entry.info.response_body, BodyAccess::Streamed);
            if !entry.info.response_hook {
                if streams {
                    streamers.push(held);
                }
                continue;
            }
            let mut slot = held.instance.lock().await;
            let replaced;
            (ex, replaced) = entry
                .invoke(
                    &self.site(&trace),
                    Hook::Response,
                    &mut slot,
                    ex,
                    async |i, ex| {
                        let (ex, d) = i.on_response(ex).await;
                        let replacement = d.and_then(|d| match d {
                            ResponseDecision::Continue => Ok(None),
                            ResponseDecision::Replace(r) => Local::from_plugin(r).map(Some),
                        });
                        (ex, replacement)
                    },
                    describe_replacement,
                )
                .await;
            // A failed instance was dropped from its slot: it does not see the body.
            let keep = streams && slot.is_some();
            drop(slot);
            if keep {
                streamers.push(held.clone());
            }
            if let Invoked::Done(Some(local)) | Invoked::Refused(local) = replaced {
                replace_response(&mut ex, local);
            }
        }
        (ex, streamers)
    }

    fn keep(&mut self, entry: &Arc<ChainEntry>, instance: PluginInstance) {
        if entry.needed_later() {
            self.ran.push(Arc::new(Held {
                entry: entry.clone(),
                instance: tokio::sync::Mutex::new(Some(instance)),
            }));
        } else {
            entry.release(instance);
        }
    }
}

/// Puts a local response into the exchange as the current response.
pub(crate) fn replace_response(ex: &mut Exchange, local: Local) {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = local.status;
    parts.headers = local.headers;
    if local.own {
        parts.extensions.insert(OwnAnswer);
    }
    ex.response = Some(parts);
    ex.response_body = Some(local.body);
}
