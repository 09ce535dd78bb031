//! One live plugin instance: a store, its bindings, and the calls into it. Every call runs under
//! the plugin's CPU deadline; failures are classified for the `on_error` policy and for logs.

use super::LoadedPlugin;
use super::bindings::{
    BodyAccess, BodyEnd, Direction, Plugin, PluginInfo, RequestDecision, ResponseDecision,
};
use super::host::{DeadlineExceeded, HostState, MemoryLimitExceeded};
use crate::exchange::Exchange;
use std::fmt;
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};

/// Why a plugin call did not return a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookFailure {
    /// Instantiation failed (e.g. the instance pool is exhausted).
    Instantiate(String),
    /// `init` returned an error for this configuration.
    Rejected(String),
    /// The guest trapped (panic, unreachable, out-of-bounds...).
    Trap(String),
    /// The hook ran past its CPU deadline and was interrupted.
    Timeout,
    /// The guest tried to grow its memory past the plugin's limit.
    MemoryLimit(String),
    /// The guest returned something the host cannot act on (e.g. an invalid status code).
    BadDecision(String),
}

impl HookFailure {
    /// A short name of the kind of failure, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HookFailure::Instantiate(_) => "instantiate",
            HookFailure::Rejected(_) => "rejected",
            HookFailure::Trap(_) => "trap",
            HookFailure::Timeout => "timeout",
            HookFailure::MemoryLimit(_) => "memory",
            HookFailure::BadDecision(_) => "decision",
        }
    }
}

impl fmt::Display for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookFailure::Instantiate(e) => write!(f, "instantiation failed: {e}"),
            HookFailure::Rejected(e) => write!(f, "rejected its config: {e}"),
            HookFailure::Trap(e) => write!(f, "trapped: {e}"),
            HookFailure::Timeout => f.write_str("exceeded its hook timeout"),
            HookFailure::MemoryLimit(e) => write!(f, "{e}"),
            HookFailure::BadDecision(e) => write!(f, "returned an invalid decision: {e}"),
        }
    }
}

impl std::error::Error for HookFailure {}

/// Logs what the guest printed during the last call: at warn level when the call failed (a
/// panic message explains a trap), at info level otherwise.
fn log_output(store: &Store<HostState>, failed: bool) {
    let data = store.data();
    if let Some(text) = data.output.take() {
        let plugin = &*data.plugin;
        if failed {
            tracing::warn!(plugin, output = ?text, "plugin output before failure");
        } else {
            tracing::info!(plugin, output = ?text, "plugin output");
        }
    }
}

fn classify(err: wasmtime::Error) -> HookFailure {
    if let Some(m) = err.downcast_ref::<MemoryLimitExceeded>() {
        return HookFailure::MemoryLimit(m.to_string());
    }
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return HookFailure::Timeout;
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => HookFailure::Timeout,
        Some(trap) => HookFailure::Trap(trap.to_string()),
        None => HookFailure::Trap(format!("{err:#}").lines().next().unwrap_or("").to_string()),
    }
}

/// A plugin instance, initialised with one chain entry's config.
pub struct PluginInstance {
    store: Store<HostState>,
    bindings: Plugin,
    pub(crate) info: PluginInfo,
    hook_timeout: Duration,
    /// Requests served (for pool recycling).
    pub(crate) uses: u64,
    /// Set after any failure: the instance must not be reused.
    pub(crate) poisoned: bool,
}

impl PluginInstance {
    /// Instantiates `plugin` and runs `init(config)`.
    pub async fn new(plugin: &LoadedPlugin, config: &str) -> Result<PluginInstance, HookFailure> {
        let hook_timeout = plugin.settings.hook_timeout;
        plugin
            .stats
            .instantiations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut store = Store::new(
            &plugin.engine,
            HostState::new(
                plugin.name.clone(),
                plugin.settings.memory_limit,
                plugin.caps.clone(),
            ),
        );
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick: past the deadline, end the hook; otherwise let other tasks run.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.data_mut().deadline = crate::deadline::after(Instant::now(), hook_timeout);
        store.set_epoch_deadline(1);
        let bindings =
            plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| match classify(e) {
                    HookFailure::Trap(t) => HookFailure::Instantiate(t),
                    other => other,
                })?;
        let info = bindings
            .call_init(&mut store, config)
            .await
            .map_err(classify);
        log_output(&store, !matches!(info, Ok(Ok(_))));
        let info = info?.map_err(HookFailure::Rejected)?;
        Ok(PluginInstance {
            store,
            bindings,
            info,
            hook_timeout,
            uses: 0,
            poisoned: false,
        })
    }

    /// The largest linear memory this instance has grown to, in bytes.
    pub(crate) fn memory_peak(&self) -> usize {
        self.store.data().limiter.peak
    }

    fn lend(&mut self, exchange: Box<Exchange>) {
        let body_access = (
            matches!(self.info.request_body, BodyAccess::Buffered(_)),
            matches!(self.info.response_body, BodyAccess::Buffered(_)),
        );
        let data = self.store.data_mut();
        data.route = exchange.route.clone();
        data.late_trace = Some(exchange.late_trace.clone());
        data.exchange = Some(exchange);
        data.body_access = body_access;
        data.deadline = crate::deadline::after(Instant::now(), self.hook_timeout);
        self.store.set_epoch_deadline(1);
    }

    /// Runs `on-request` with the exchange lent to the instance; always gives the exchange back.
    pub async fn on_request(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<RequestDecision, HookFailure>) {
        self.lend(exchange);
        let result = self
            .bindings
            .call_on_request(&mut self.store)
            .await
            .map_err(classify);
        self.finish(result)
    }

    /// Runs `on-response` with the exchange lent to the instance; always gives the exchange back.
    pub async fn on_response(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<ResponseDecision, HookFailure>) {
        self.lend(exchange);
        let result = self
            .bindings
            .call_on_response(&mut self.store)
            .await
            .map_err(classify);
        self.finish(result)
    }

    /// Runs `on-body-chunk` on one chunk of a streamed body. No exchange is lent: request and
    /// response accessors read as empty while a body streams.
    pub(crate) async fn on_body_chunk(
        &mut self,
        direction: Direction,
        chunk: &[u8],
    ) -> Result<Vec<u8>, HookFailure> {
        self.arm();
        let result = self
            .bindings
            .call_on_body_chunk(&mut self.store, direction, chunk)
            .await
            .map_err(classify);
        self.settle(result)
    }

    /// Runs `on-body-end` for a streamed body.
    pub(crate) async fn on_body_end(
        &mut self,
        direction: Direction,
    ) -> Result<BodyEnd, HookFailure> {
        self.arm();
        let result = self
            .bindings
            .call_on_body_end(&mut self.store, direction)
            .await
            .map_err(classify);
        self.settle(result)
    }

    fn arm(&mut self) {
        self.store.data_mut().deadline = crate::deadline::after(Instant::now(), self.hook_timeout);
        self.store.set_epoch_deadline(1);
    }

    fn settle<T>(&mut self, result: Result<T, HookFailure>) -> Result<T, HookFailure> {
        if result.is_err() {
            self.poisoned = true;
        }
        log_output(&self.store, result.is_err());
        result
    }

    fn finish<T>(
        &mut self,
        result: Result<T, HookFailure>,
    ) -> (Box<Exchange>, Result<T, HookFailure>) {
        if result.is_err() {
            self.poisoned = true;
        }
        log_output(&self.store, result.is_err());
        // `lend` put the exchange in and only this takes it out, so it is always there.
        let exchange = self
            .store
            .data_mut()
            .exchange
            .take()
            .expect("exchange lent to the plugin store");
        (exchange, result)
    }
}
