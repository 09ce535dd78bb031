//! One live plugin instance: a store, its bindings, and the calls into it. Every call runs under
//! the plugin's execution budget and backstop (`budget.rs`); failures are classified for the
//! `on_error` policy and for logs.

use super::LoadedPlugin;
use super::bindings::PluginPre;
use super::bindings::{
    BodyAccess, BodyEnd, Direction, Plugin, PluginInfo, RequestDecision, ResponseDecision,
};
use super::budget::{BackstopPassed, BudgetExceeded, CallLimits, Meter, metered};
use super::host::{HostState, MemoryLimitExceeded};
use super::proxy_wasm::FilterRun;
use crate::config::Metering;
use crate::exchange::Exchange;
use std::fmt;
use std::time::Duration;
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
    /// The call used its execution budget (CPU time) and was interrupted.
    Budget(Duration),
    /// The call ran past its wall-clock backstop (`hook_timeout`) and was interrupted.
    Timeout(Duration),
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
            HookFailure::Budget(_) => "budget",
            HookFailure::Timeout(_) => "timeout",
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
            HookFailure::Budget(b) if b.is_zero() => {
                f.write_str("used up its execution budget (fuel)")
            }
            HookFailure::Budget(b) => {
                write!(f, "used up its execution budget ({b:?} of CPU time)")
            }
            HookFailure::Timeout(t) => write!(f, "exceeded its hook timeout ({t:?}, wall clock)"),
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

pub(super) fn classify(err: wasmtime::Error) -> HookFailure {
    if let Some(m) = err.downcast_ref::<MemoryLimitExceeded>() {
        return HookFailure::MemoryLimit(m.to_string());
    }
    if let Some(BudgetExceeded(b)) = err.downcast_ref() {
        return HookFailure::Budget(*b);
    }
    if let Some(BackstopPassed(t)) = err.downcast_ref() {
        return HookFailure::Timeout(*t);
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => HookFailure::Budget(Duration::ZERO),
        Some(trap) => HookFailure::Trap(trap.to_string()),
        None => HookFailure::Trap(format!("{err:#}").lines().next().unwrap_or("").to_string()),
    }
}

/// An error from instantiation, as opposed to `init` (both run under one meter).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Instantiation(wasmtime::Error);

/// A plugin instance, initialised with one chain entry's config.
pub struct PluginInstance {
    code: Code,
    pub(crate) info: PluginInfo,
    /// Each hook call's execution budget and wall-clock backstop.
    hook: Bounds,
    /// Requests served (for pool recycling).
    pub(crate) uses: u64,
    /// Set after any failure: the instance must not be reused.
    pub(crate) poisoned: bool,
}

/// The instance itself, of either kind of plugin.
enum Code {
    Component(Component),
    Filter(Box<FilterRun>),
}

/// A component instance: its store and bindings.
struct Component {
    store: Store<HostState>,
    bindings: Plugin,
}

/// One call's execution budget and wall-clock backstop, as the runtime meters them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    metering: Metering,
    budget: Duration,
    backstop: Duration,
}

/// Fuel units per millisecond of `hook_budget` under `metering = "fuel"` (a nominal rate).
const FUEL_PER_MS: u64 = 1_000_000;

impl Bounds {
    fn of(plugin: &LoadedPlugin, budget: Duration, backstop: Duration) -> Bounds {
        Bounds {
            metering: plugin.metering,
            budget,
            backstop,
        }
    }

    /// The call's meter and backstop, unless calls are unmetered.
    pub(super) fn meter(self, call: &CallLimits) -> Option<(std::sync::Arc<Meter>, Duration)> {
        (self.metering != Metering::Off).then(|| call.meter())
    }
}

impl PluginInstance {
    /// Instantiates `plugin` and runs `init(config)` on the request path: instantiation and
    /// `init` together get one hook's budget (`hook_budget`) and backstop (`hook_timeout`).
    pub async fn new(plugin: &LoadedPlugin, config: &str) -> Result<PluginInstance, HookFailure> {
        let s = &plugin.settings;
        let bounds = Bounds::of(plugin, s.hook_budget, s.hook_timeout);
        Self::create(plugin, config, bounds).await
    }

    /// Instantiates `plugin` and runs `init(config)` while a configuration loads: with the
    /// plugin's `init_budget` and a backstop no busy machine reaches ([`LOAD_BACKSTOP`]), so a
    /// slow machine never makes a configuration fail; a plugin that loops is still stopped.
    pub async fn at_load(
        plugin: &LoadedPlugin,
        config: &str,
    ) -> Result<PluginInstance, HookFailure> {
        let bounds = Bounds::of(plugin, plugin.settings.init_budget, LOAD_BACKSTOP);
        Self::create(plugin, config, bounds).await
    }

    async fn create(
        plugin: &LoadedPlugin,
        config: &str,
        bounds: Bounds,
    ) -> Result<PluginInstance, HookFailure> {
        plugin
            .stats
            .instantiations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (code, info) = match &plugin.code {
            super::Code::Component(pre) => {
                let (c, info) = Component::create(plugin, pre, config, bounds).await?;
                (Code::Component(c), info)
            }
            super::Code::Filter(filter) => {
                let run = FilterRun::create(plugin, filter, config, bounds).await?;
                let info = filter.info();
                (Code::Filter(Box::new(run)), info)
            }
        };
        let s = &plugin.settings;
        Ok(PluginInstance {
            code,
            info,
            hook: Bounds::of(plugin, s.hook_budget, s.hook_timeout),
            uses: 0,
            poisoned: false,
        })
    }

    /// Instantiates `plugin` without calling `init` and drops the instance: for the benchmark
    /// that shows instantiation and `init` apart (components only).
    #[doc(hidden)]
    pub async fn instantiate_only(plugin: &LoadedPlugin) -> Result<(), HookFailure> {
        let super::Code::Component(pre) = &plugin.code else {
            return Ok(());
        };
        let state = HostState::new(
            plugin.name.clone(),
            plugin.settings.memory_limit,
            plugin.caps.clone(),
        );
        let mut store = Store::new(&plugin.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(1)));
        store.set_epoch_deadline(1);
        pre.instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// The largest linear memory this instance has grown to, in bytes.
    pub(crate) fn memory_peak(&self) -> usize {
        match &self.code {
            Code::Component(c) => c.store.data().limiter.peak,
            Code::Filter(f) => f.memory_peak(),
        }
    }

    /// How often a proxy-wasm filter's root context asked to be ticked (`None`: never, and
    /// always for components).
    pub(crate) fn tick_period(&self) -> Option<Duration> {
        match &self.code {
            Code::Filter(f) => f.tick_period(),
            Code::Component(_) => None,
        }
    }

    /// Ticks a proxy-wasm filter's root context under the hook budget.
    pub(crate) async fn tick(&mut self) -> Result<(), HookFailure> {
        let hook = self.hook;
        let result = match &mut self.code {
            Code::Filter(f) => f.tick(hook).await,
            Code::Component(_) => Ok(()),
        };
        self.settle(result)
    }

    /// Marks the instance for recycling after a failure.
    fn settle<T>(&mut self, result: Result<T, HookFailure>) -> Result<T, HookFailure> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Runs `on-request` with the exchange lent to the instance; always gives the exchange back.
    pub async fn on_request(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<RequestDecision, HookFailure>) {
        let hook = self.hook;
        let (exchange, result) = match &mut self.code {
            Code::Component(c) => {
                c.lend(exchange, &self.info, hook);
                let meter = hook.meter(&c.store.data().call);
                let call = c.bindings.call_on_request(&mut c.store);
                let result = metered(meter, call).await.map_err(classify);
                c.take_back(result)
            }
            Code::Filter(f) => f.on_request(hook, exchange).await,
        };
        (exchange, self.settle(result))
    }

    /// Runs `on-response` with the exchange lent to the instance; always gives the exchange back.
    pub async fn on_response(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<ResponseDecision, HookFailure>) {
        let hook = self.hook;
        let (exchange, result) = match &mut self.code {
            Code::Component(c) => {
                c.lend(exchange, &self.info, hook);
                let meter = hook.meter(&c.store.data().call);
                let call = c.bindings.call_on_response(&mut c.store);
                let result = metered(meter, call).await.map_err(classify);
                c.take_back(result)
            }
            Code::Filter(f) => f.on_response(hook, exchange).await,
        };
        (exchange, self.settle(result))
    }

    /// Runs `on-body-chunk` on one chunk of a streamed body. No exchange is lent: request and
    /// response accessors read as empty while a body streams.
    pub(crate) async fn on_body_chunk(
        &mut self,
        direction: Direction,
        chunk: &[u8],
    ) -> Result<Vec<u8>, HookFailure> {
        let hook = self.hook;
        let result = match &mut self.code {
            Code::Component(c) => {
                arm(&mut c.store, hook);
                let meter = hook.meter(&c.store.data().call);
                let call = c
                    .bindings
                    .call_on_body_chunk(&mut c.store, direction, chunk);
                let result = metered(meter, call).await.map_err(classify);
                log_output(&c.store, result.is_err());
                result
            }
            Code::Filter(f) => f.on_body_chunk(hook, direction, chunk).await,
        };
        self.settle(result)
    }

    /// Runs `on-body-end` for a streamed body.
    /// `trailers` are the body's own (a proxy-wasm filter's trailers callback sees and may
    /// change them; a component adds its own through `BodyEnd`).
    pub(crate) async fn on_body_end(
        &mut self,
        direction: Direction,
        trailers: &mut http::HeaderMap,
    ) -> Result<BodyEnd, HookFailure> {
        let hook = self.hook;
        let result = match &mut self.code {
            Code::Component(c) => {
                arm(&mut c.store, hook);
                let meter = hook.meter(&c.store.data().call);
                let call = c.bindings.call_on_body_end(&mut c.store, direction);
                let result = metered(meter, call).await.map_err(classify);
                log_output(&c.store, result.is_err());
                result
            }
            Code::Filter(f) => f.on_body_end(hook, direction, trailers).await,
        };
        self.settle(result)
    }
}

impl Component {
    /// Instantiates the component and calls `init(config)`, metered as one call.
    async fn create(
        plugin: &LoadedPlugin,
        pre: &PluginPre<HostState>,
        config: &str,
        bounds: Bounds,
    ) -> Result<(Component, PluginInfo), HookFailure> {
        let mut store = Store::new(
            &plugin.engine,
            HostState::new(
                plugin.name.clone(),
                plugin.settings.memory_limit,
                plugin.caps.clone(),
            ),
        );
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick: over budget or past the backstop, end the call; otherwise let
        // other tasks run.
        store.epoch_deadline_callback(|ctx| {
            ctx.data().call.check()?;
            Ok(UpdateDeadline::Yield(1))
        });
        arm(&mut store, bounds);
        let meter = bounds.meter(&store.data().call);
        let started = async {
            let bindings = pre.instantiate_async(&mut store).await;
            let bindings = bindings.map_err(Instantiation)?;
            let info = bindings.call_init(&mut store, config).await?;
            Ok((bindings, info))
        };
        let started = metered(meter, started).await;
        log_output(&store, !matches!(started, Ok((_, Ok(_)))));
        let (bindings, info) = started.map_err(|e| match e.downcast::<Instantiation>() {
            Ok(Instantiation(e)) => match classify(e) {
                HookFailure::Trap(t) => HookFailure::Instantiate(t),
                other => other,
            },
            Err(e) => classify(e),
        })?;
        let info = info.map_err(HookFailure::Rejected)?;
        Ok((Component { store, bindings }, info))
    }

    fn lend(&mut self, exchange: Box<Exchange>, info: &PluginInfo, hook: Bounds) {
        let body_access = (
            matches!(info.request_body, BodyAccess::Buffered(_)),
            matches!(info.response_body, BodyAccess::Buffered(_)),
        );
        let data = self.store.data_mut();
        data.route = exchange.route.clone();
        data.late_trace = Some(exchange.late_trace.clone());
        data.exchange = Some(exchange);
        data.body_access = body_access;
        arm(&mut self.store, hook);
    }

    fn take_back<T>(
        &mut self,
        result: Result<T, HookFailure>,
    ) -> (Box<Exchange>, Result<T, HookFailure>) {
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

/// How long a configuration's `init` may wait for its thread before it is called stuck; large
/// enough that only a plugin blocked for good reaches it.
const LOAD_BACKSTOP: Duration = Duration::from_secs(300);

/// Starts a call's budget and backstop, and the epoch deadline that checks them every tick.
fn arm(store: &mut Store<HostState>, bounds: Bounds) {
    arm_with(store, bounds, |s| &mut s.call);
}

/// [`arm`] for any store whose data holds the call's limits at `limits`.
pub(super) fn arm_with<D>(
    store: &mut Store<D>,
    bounds: Bounds,
    limits: impl Fn(&mut D) -> &mut CallLimits,
) {
    let Bounds {
        metering,
        budget,
        backstop,
    } = bounds;
    match metering {
        Metering::Off => return,
        Metering::CpuTime => limits(store.data_mut()).start(Some(budget), backstop),
        Metering::Fuel => {
            // The backstop only: the budget is the fuel.
            limits(store.data_mut()).start(None, backstop);
            let units = u64::try_from(budget.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(FUEL_PER_MS);
            // Cannot fail: fuel is enabled on the engine whenever metering is `fuel`.
            let _ = store.set_fuel(units);
            let _ = store.fuel_async_yield_interval(Some(FUEL_PER_MS));
        }
    }
    store.set_epoch_deadline(1);
}
