//! The gateway's own metrics and the one registry the admin `/metrics` renders.
//!
//! [`RequestMetrics`] holds the series recorded on the request path: requests by route and status
//! with their latency, upstream calls by outcome, retries by reason, spent retry budgets,
//! ejections, health transitions and limit overflows by upstream (and endpoint URL), plugin hooks by plugin and phase with their
//! latency and failures by kind, and plugins' `kv`/`outbound` calls. One lives in the runtime's
//! `Services`, so series survive reloads; they are bounded by the configuration (routes,
//! upstreams, plugins) and by status codes, never by what a client sends.
//!
//! [`scrape`] renders one `prometheus-client` [`Registry`]: these families, the counters kept
//! elsewhere ([`Elsewhere`]: plugin instantiations and failures, reloads, span export, dropped
//! log lines) and the plugins' own series (the `metrics` capability's collector), in the
//! Prometheus text format 0.0.4 ([`CONTENT_TYPE`]). [`FAMILIES`] lists every family the gateway
//! exports; the plugins' registry keeps clear of the names derived from it.
//!
//! Label values are interned `Arc<str>`s, so recording into an existing series allocates
//! nothing.

use dashmap::DashSet;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// A family the gateway exports: its name as registered (a counter's without the `_total` the
/// encoder appends), its help (the encoder appends a full stop) and its type.
#[derive(Debug)]
pub(crate) struct Desc {
    pub(crate) name: &'static str,
    help: &'static str,
    pub(crate) kind: MetricType,
}

const fn counter(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        kind: MetricType::Counter,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        kind: MetricType::Gauge,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        kind: MetricType::Histogram,
    }
}

const REQUESTS: Desc = counter("weir_requests", "Requests answered, by route and status");
const REQUEST_DURATION: Desc = histogram(
    "weir_request_duration_seconds",
    "Time to the response head, by route",
);
const UPSTREAM: Desc = counter(
    "weir_upstream_requests",
    "Upstream calls by final outcome (ok: an HTTP answer of any status), retries not counted",
);
const RETRIES: Desc = counter(
    "weir_upstream_retries",
    "Upstream tries after the first, by reason (connect, reset, timeout, status, stale-connection)",
);
const RETRY_BUDGET_EXHAUSTED: Desc = counter(
    "weir_upstream_retry_budget_exhausted",
    "Retries not made because the upstream's retry budget was spent",
);
const EJECTIONS: Desc = counter(
    "weir_upstream_ejections",
    "Endpoints ejected by outlier detection",
);
const HEALTH_TRANSITIONS: Desc = counter(
    "weir_upstream_health_transitions",
    "Endpoints turning healthy or unhealthy by active health checks",
);
const OVERFLOW: Desc = counter(
    "weir_upstream_overflow",
    "Requests refused with 503 by an upstream's concurrency limit, by limit",
);
const HOOK_DURATION: Desc = histogram(
    "weir_plugin_hook_duration_seconds",
    "Plugin hook calls, by plugin and phase",
);
const HOOK_FAILURES: Desc = counter(
    "weir_plugin_hook_failures",
    "Plugin hook failures by kind (trap, timeout, memory, decision, instantiate)",
);
const KV_CALLS: Desc = counter(
    "weir_plugin_kv_calls",
    "Plugin `kv` calls by operation and outcome",
);
const OUTBOUND_CALLS: Desc = counter(
    "weir_plugin_outbound_calls",
    "Plugin `outbound` calls by operation and outcome",
);
const INSTANTIATIONS: Desc = counter("weir_plugin_instantiations", "Plugin instances created");
const PLUGIN_FAILURES: Desc = counter(
    "weir_plugin_failures",
    "Plugin hook failures (traps, timeouts, memory limit, invalid decisions)",
);
const RELOADS: Desc = counter(
    "weir_config_reloads",
    "Configurations activated after the first",
);
const RELOAD_FAILURES: Desc = counter(
    "weir_config_reload_failures",
    "Reloads refused (the previous configuration kept serving)",
);
const SPANS_EXPORTED: Desc = counter(
    "weir_telemetry_spans_exported",
    "Spans the OTLP collector accepted",
);
const SPANS_DROPPED: Desc = counter(
    "weir_telemetry_spans_dropped",
    "Spans lost because an export to the collector failed",
);
const LOG_LINES_DROPPED: Desc = counter(
    "weir_log_lines_dropped",
    "Access and audit log lines dropped because the writer fell behind",
);

const REQUESTS_SHED: Desc = counter(
    "weir_requests_shed",
    "Requests answered 503 without running plugins because the gateway was overloaded, by reason",
);
const CONNECTIONS_OPEN: Desc = gauge(
    "weir_connections_open",
    "Client connections open, by listener (`admin` for the admin API)",
);
const CONNECTIONS_REFUSED: Desc = counter(
    "weir_connections_refused",
    "Client connections closed at once because the listener had `max_connections` open",
);
const ACCEPT_ERRORS: Desc = counter(
    "weir_accept_errors",
    "Failed accepts by kind (fd_limit: EMFILE/ENFILE, no_memory: ENOBUFS/ENOMEM, other)",
);
const CONNECTION_TIMEOUTS: Desc = counter(
    "weir_connection_timeouts",
    "Connections closed or requests answered 408 by a timeout (header_read, idle, request_body)",
);
const KV_BREAKER_STATE: Desc = gauge(
    "weir_kv_breaker_state",
    "The Redis kv circuit breaker: 0 closed, 1 open (calls fail at once), 2 half-open (probing)",
);
const KV_BREAKER_TRANSITIONS: Desc = counter(
    "weir_kv_breaker_transitions",
    "Times the Redis kv circuit breaker entered each state",
);

/// Every family the gateway registers. The plugins' series (`weir_plugin_<name>`) must not take
/// these names nor the sample names derived from them.
pub(crate) const FAMILIES: [&Desc; 26] = [
    &REQUESTS,
    &REQUEST_DURATION,
    &UPSTREAM,
    &RETRIES,
    &RETRY_BUDGET_EXHAUSTED,
    &EJECTIONS,
    &HEALTH_TRANSITIONS,
    &OVERFLOW,
    &HOOK_DURATION,
    &HOOK_FAILURES,
    &KV_CALLS,
    &OUTBOUND_CALLS,
    &INSTANTIATIONS,
    &PLUGIN_FAILURES,
    &RELOADS,
    &RELOAD_FAILURES,
    &SPANS_EXPORTED,
    &SPANS_DROPPED,
    &LOG_LINES_DROPPED,
    &REQUESTS_SHED,
    &CONNECTIONS_OPEN,
    &CONNECTIONS_REFUSED,
    &ACCEPT_ERRORS,
    &CONNECTION_TIMEOUTS,
    &KV_BREAKER_STATE,
    &KV_BREAKER_TRANSITIONS,
];

fn register(registry: &mut Registry, desc: &Desc, metric: impl Metric) {
    debug_assert_eq!(metric.metric_type(), desc.kind, "{}", desc.name);
    registry.register(desc.name, desc.help, metric);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamOutcome {
    upstream: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamReason {
    upstream: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamOnly {
    upstream: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamEndpoint {
    upstream: Arc<str>,
    endpoint: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamTransition {
    upstream: Arc<str>,
    endpoint: Arc<str>,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLimit {
    upstream: Arc<str>,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginPhase {
    plugin: Arc<str>,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginKind {
    plugin: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCall {
    plugin: Arc<str>,
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Listener {
    listener: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerKind {
    listener: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerReason {
    listener: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct To {
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Plugin {
    plugin: Arc<str>,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A route's request series, kept with the route and resolved on first use: a family lookup
/// hashes the labels and takes the family's lock, which every worker shares, on every
/// request otherwise. Series are created when first recorded, as with a lookup, so the
/// exposition does not change.
#[derive(Debug)]
pub(crate) struct RouteSeries {
    route: Arc<str>,
    latency: OnceLock<Histogram>,
    /// Counters by status, 100 to 599.
    statuses: Box<[OnceLock<Counter>]>,
}

impl RouteSeries {
    pub(crate) fn new(route: Arc<str>) -> RouteSeries {
        RouteSeries {
            route,
            latency: OnceLock::new(),
            statuses: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// An upstream's `ok` outcome series, resolved on first use (the others are rare).
#[derive(Debug)]
pub(crate) struct UpstreamSeries {
    upstream: Arc<str>,
    ok: OnceLock<Counter>,
}

impl UpstreamSeries {
    pub(crate) fn new(upstream: Arc<str>) -> UpstreamSeries {
        UpstreamSeries {
            upstream,
            ok: OnceLock::new(),
        }
    }
}

/// A plugin's hook latency series by phase, resolved on first use.
#[derive(Debug, Default)]
pub(crate) struct HookSeries {
    plugin: Arc<str>,
    latency: [OnceLock<Histogram>; 4],
}

impl HookSeries {
    pub(crate) fn new(plugin: Arc<str>) -> HookSeries {
        HookSeries {
            plugin,
            latency: Default::default(),
        }
    }
}

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The gateway's own series. Recorded through the snapshot's `Observer` (requests, upstreams,
/// hooks) and the plugins' capability calls; rendered by [`scrape`].
#[derive(Debug)]
pub struct RequestMetrics {
    /// Route, upstream and plugin names, interned: a series is found without allocating.
    names: DashSet<Arc<str>>,
    requests: Family<RouteStatus, Counter>,
    request_latency: Histograms<Route>,
    upstream: Family<UpstreamOutcome, Counter>,
    retries: Family<UpstreamReason, Counter>,
    budget_exhausted: Family<UpstreamOnly, Counter>,
    ejections: Family<UpstreamEndpoint, Counter>,
    health_transitions: Family<UpstreamTransition, Counter>,
    overflow: Family<UpstreamLimit, Counter>,
    hook_latency: Histograms<PluginPhase>,
    hook_failures: Family<PluginKind, Counter>,
    kv_calls: Family<PluginCall, Counter>,
    outbound_calls: Family<PluginCall, Counter>,
    shed: Family<Reason, Counter>,
    connections_open: Family<Listener, Gauge>,
    connections_refused: Family<ListenerReason, Counter>,
    accept_errors: Family<ListenerKind, Counter>,
    connection_timeouts: Family<ListenerKind, Counter>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            names: DashSet::new(),
            requests: Family::default(),
            request_latency: Family::new_with_constructor(latency),
            upstream: Family::default(),
            retries: Family::default(),
            budget_exhausted: Family::default(),
            ejections: Family::default(),
            health_transitions: Family::default(),
            overflow: Family::default(),
            hook_latency: Family::new_with_constructor(latency),
            hook_failures: Family::default(),
            kv_calls: Family::default(),
            outbound_calls: Family::default(),
            shed: Family::default(),
            connections_open: Family::default(),
            connections_refused: Family::default(),
            accept_errors: Family::default(),
            connection_timeouts: Family::default(),
        }
    }
}

impl RequestMetrics {
    /// `name` as a shared string: the interned one once seen, so only a name's first sample
    /// allocates.
    fn name(&self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.key().clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }

    /// A request answered on a route whose series are resolved in `series` as they are first
    /// used, so later requests find them without a lookup.
    pub(crate) fn request_on(&self, series: &RouteSeries, status: u16, elapsed: Duration) {
        let latency = series.latency.get_or_init(|| {
            let route = series.route.clone();
            self.request_latency.get_or_create(&Route { route }).clone()
        });
        latency.observe(elapsed.as_secs_f64());
        let lookup = || {
            let route = series.route.clone();
            self.requests
                .get_or_create(&RouteStatus { route, status })
                .clone()
        };
        let slot = usize::from(status)
            .checked_sub(100)
            .and_then(|i| series.statuses.get(i));
        match slot {
            Some(slot) => slot.get_or_init(lookup).inc(),
            None => lookup().inc(),
        };
    }

    /// A request answered on `route` with `status`, its head after `elapsed`.
    pub(crate) fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let route = self.name(route);
        self.request_latency
            .get_or_create(&Route {
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
    }

    /// An upstream call's outcome, the `ok` series resolved once in `series`.
    pub(crate) fn upstream_on(&self, series: &UpstreamSeries, outcome: &'static str) {
        if outcome != "ok" {
            return self.upstream(&series.upstream, outcome);
        }
        let ok = series.ok.get_or_init(|| {
            let upstream = self.name(&series.upstream);
            self.upstream
                .get_or_create(&UpstreamOutcome { upstream, outcome })
                .clone()
        });
        ok.inc();
    }

    /// An upstream attempt: `ok` (any HTTP answer), `timeout` or `error`.
    pub(crate) fn upstream(&self, name: &str, outcome: &'static str) {
        let upstream = self.name(name);
        self.upstream
            .get_or_create(&UpstreamOutcome { upstream, outcome })
            .inc();
    }

    /// A retry to `upstream` (its labels: names from the config and fixed reasons).
    pub(crate) fn retry(&self, upstream: &str, reason: &'static str) {
        let upstream = self.name(upstream);
        self.retries
            .get_or_create(&UpstreamReason { upstream, reason })
            .inc();
    }

    pub(crate) fn retry_budget_exhausted(&self, upstream: &str) {
        let upstream = self.name(upstream);
        self.budget_exhausted
            .get_or_create(&UpstreamOnly { upstream })
            .inc();
    }

    /// An endpoint (its URL from the config) ejected by outlier detection.
    pub(crate) fn ejection(&self, upstream: &str, endpoint: &str) {
        let (upstream, endpoint) = (self.name(upstream), self.name(endpoint));
        self.ejections
            .get_or_create(&UpstreamEndpoint { upstream, endpoint })
            .inc();
    }

    /// An endpoint turned `healthy` or `unhealthy` by active checks.
    pub(crate) fn health_transition(&self, upstream: &str, endpoint: &str, to: &'static str) {
        let (upstream, endpoint) = (self.name(upstream), self.name(endpoint));
        let labels = UpstreamTransition {
            upstream,
            endpoint,
            to,
        };
        self.health_transitions.get_or_create(&labels).inc();
    }

    /// A request refused by `limit` of `upstream`.
    pub(crate) fn overflow(&self, upstream: &str, limit: &'static str) {
        let upstream = self.name(upstream);
        self.overflow
            .get_or_create(&UpstreamLimit { upstream, limit })
            .inc();
    }

    /// One hook call of `plugin`, and its failure kind if it failed.
    pub(crate) fn hook(
        &self,
        plugin: &str,
        phase: &'static str,
        elapsed: Duration,
        failure: Option<&'static str>,
    ) {
        let plugin = self.name(plugin);
        if let Some(kind) = failure {
            let labels = PluginKind {
                plugin: plugin.clone(),
                kind,
            };
            self.hook_failures.get_or_create(&labels).inc();
        }
        self.hook_latency
            .get_or_create(&PluginPhase { plugin, phase })
            .observe(elapsed.as_secs_f64());
    }

    /// One hook call of phase `name` (slot `index` in `series`, whose latency series is
    /// resolved once there). A failure is counted by kind (rare: looked up each time).
    pub(crate) fn hook_on(
        &self,
        series: &HookSeries,
        (index, name): (usize, &'static str),
        elapsed: Duration,
        failure: Option<&'static str>,
    ) {
        let Some(slot) = series.latency.get(index) else {
            return self.hook(&series.plugin, name, elapsed, failure);
        };
        if let Some(kind) = failure {
            let plugin = self.name(&series.plugin);
            self.hook_failures
                .get_or_create(&PluginKind { plugin, kind })
                .inc();
        }
        let latency = slot.get_or_init(|| {
            let plugin = self.name(&series.plugin);
            let labels = PluginPhase {
                plugin,
                phase: name,
            };
            self.hook_latency.get_or_create(&labels).clone()
        });
        latency.observe(elapsed.as_secs_f64());
    }

    /// A `kv` or `outbound` call by `plugin` (another `capability` is not counted).
    pub(crate) fn capability_call(
        &self,
        capability: &'static str,
        plugin: &str,
        op: &'static str,
        outcome: &'static str,
    ) {
        let family = match capability {
            "kv" => &self.kv_calls,
            "outbound" => &self.outbound_calls,
            _ => return,
        };
        let plugin = self.name(plugin);
        family
            .get_or_create(&PluginCall {
                plugin,
                op,
                outcome,
            })
            .inc();
    }

    /// A request answered 503 before any plugin ran, because of `reason` (a fixed word).
    pub(crate) fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&Reason { reason }).inc();
    }

    /// A connection opened (`+1`) or closed (`-1`) on `listener`.
    pub(crate) fn connection_open(&self, listener: &str, delta: i64) {
        let listener = self.name(listener);
        self.connections_open
            .get_or_create(&Listener { listener })
            .inc_by(delta);
    }

    /// A connection closed at once on `listener`, because of `reason`.
    pub(crate) fn connection_refused(&self, listener: &str, reason: &'static str) {
        let listener = self.name(listener);
        self.connections_refused
            .get_or_create(&ListenerReason { listener, reason })
            .inc();
    }

    /// A failed `accept` on `listener`, of `kind`.
    pub(crate) fn accept_error(&self, listener: &str, kind: &'static str) {
        let listener = self.name(listener);
        self.accept_errors
            .get_or_create(&ListenerKind { listener, kind })
            .inc();
    }

    /// A connection or request on `listener` ended by the timeout `kind`.
    pub(crate) fn connection_timeout(&self, listener: &str, kind: &'static str) {
        let listener = self.name(listener);
        self.connection_timeouts
            .get_or_create(&ListenerKind { listener, kind })
            .inc();
    }

    /// Registers every family (the registry shares the series, it does not copy them).
    fn register(&self, registry: &mut Registry) {
        register(registry, &REQUESTS, self.requests.clone());
        register(registry, &REQUEST_DURATION, self.request_latency.clone());
        register(registry, &UPSTREAM, self.upstream.clone());
        register(registry, &RETRIES, self.retries.clone());
        register(
            registry,
            &RETRY_BUDGET_EXHAUSTED,
            self.budget_exhausted.clone(),
        );
        register(registry, &EJECTIONS, self.ejections.clone());
        register(
            registry,
            &HEALTH_TRANSITIONS,
            self.health_transitions.clone(),
        );
        register(registry, &OVERFLOW, self.overflow.clone());
        register(registry, &HOOK_DURATION, self.hook_latency.clone());
        register(registry, &HOOK_FAILURES, self.hook_failures.clone());
        register(registry, &KV_CALLS, self.kv_calls.clone());
        register(registry, &OUTBOUND_CALLS, self.outbound_calls.clone());
        register(registry, &REQUESTS_SHED, self.shed.clone());
        register(registry, &CONNECTIONS_OPEN, self.connections_open.clone());
        register(
            registry,
            &CONNECTIONS_REFUSED,
            self.connections_refused.clone(),
        );
        register(registry, &ACCEPT_ERRORS, self.accept_errors.clone());
        register(
            registry,
            &CONNECTION_TIMEOUTS,
            self.connection_timeouts.clone(),
        );
    }
}

/// Counters the gateway keeps elsewhere (the snapshot's plugins, the reload status, the span
/// exporter, the log writers), read when `/metrics` is scraped.
#[derive(Debug, Default)]
pub(crate) struct Elsewhere {
    /// Each plugin of the active snapshot: name, instances created, hook failures.
    pub(crate) plugins: Vec<(Arc<str>, u64, u64)>,
    pub(crate) reloads: u64,
    pub(crate) reload_failures: u64,
    pub(crate) spans_exported: u64,
    pub(crate) spans_dropped: u64,
    pub(crate) log_lines_dropped: u64,
    /// The Redis kv circuit breaker: its state (0 closed, 1 open, 2 half-open) and how many
    /// times it entered each (closed, open, half-open). All zero without Redis.
    pub(crate) kv_breaker: (i64, [u64; 3]),
}

impl Elsewhere {
    /// Registers each value as a counter set to it.
    fn register(&self, registry: &mut Registry) {
        let instantiations = Family::<Plugin, Counter>::default();
        let failures = Family::<Plugin, Counter>::default();
        for (plugin, created, failed) in &self.plugins {
            let labels = Plugin {
                plugin: plugin.clone(),
            };
            instantiations.get_or_create(&labels).inc_by(*created);
            failures.get_or_create(&labels).inc_by(*failed);
        }
        register(registry, &INSTANTIATIONS, instantiations);
        register(registry, &PLUGIN_FAILURES, failures);
        let scalars = [
            (&RELOADS, self.reloads),
            (&RELOAD_FAILURES, self.reload_failures),
            (&SPANS_EXPORTED, self.spans_exported),
            (&SPANS_DROPPED, self.spans_dropped),
            (&LOG_LINES_DROPPED, self.log_lines_dropped),
        ];
        for (desc, value) in scalars {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            register(registry, desc, c);
        }
        let (state, entered) = self.kv_breaker;
        let g = Gauge::<i64>::default();
        g.set(state);
        register(registry, &KV_BREAKER_STATE, g);
        let transitions = Family::<To, Counter>::default();
        for (to, n) in ["closed", "open", "half_open"].into_iter().zip(entered) {
            transitions.get_or_create(&To { to }).inc_by(n);
        }
        register(registry, &KV_BREAKER_TRANSITIONS, transitions);
    }
}

/// The whole `/metrics` body, in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]): one
/// registry with the gateway's families and the plugins' series (the `metrics` capability's
/// collector, passed in so that this module does not depend on the capability, which depends
/// on [`FAMILIES`]).
pub(crate) fn scrape(
    requests: &RequestMetrics,
    elsewhere: &Elsewhere,
    plugins: Box<dyn prometheus_client::collector::Collector>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    elsewhere.register(&mut registry);
    requests.register(&mut registry);
    registry.register_collector(plugins);
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The name a family's `# TYPE` line carries in the 0.0.4 format.
    fn exposed(d: &Desc) -> String {
        match d.kind {
            MetricType::Counter => format!("{}_total", d.name),
            _ => d.name.to_string(),
        }
    }

    fn typed(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn renders_every_family_and_nothing_unlisted() {
        /// No plugin series.
        #[derive(Debug)]
        struct NoSeries;
        impl prometheus_client::collector::Collector for NoSeries {
            fn encode(
                &self,
                _: prometheus_client::encoding::DescriptorEncoder,
            ) -> Result<(), std::fmt::Error> {
                Ok(())
            }
        }

        let m = RequestMetrics::default();
        m.request("api", 200, Duration::from_millis(3));
        m.request("api", 200, Duration::from_millis(30));
        m.request("a\"b", 404, Duration::from_millis(1));
        m.upstream("app", "ok");
        m.retry("app", "status");
        m.retry_budget_exhausted("app");
        m.ejection("app", "http://127.0.0.1:1");
        m.health_transition("app", "http://127.0.0.1:1", "unhealthy");
        m.overflow("app", "max_requests");
        m.hook("p", "request", Duration::from_micros(200), Some("trap"));
        m.capability_call("kv", "p", "get", "ok");
        m.capability_call("outbound", "p", "call", "timeout");
        m.capability_call("other", "p", "x", "ok");
        m.shed("max_requests_per_worker");
        m.connection_open("main", 1);
        m.connection_refused("main", "max_connections");
        m.accept_error("main", "fd_limit");
        m.connection_timeout("main", "idle");
        let elsewhere = Elsewhere {
            plugins: vec![(Arc::from("p"), 3, 1)],
            reloads: 2,
            kv_breaker: (1, [0, 2, 1]),
            ..Elsewhere::default()
        };
        let text = scrape(&m, &elsewhere, Box::new(NoSeries)).expect("renders");
        let listed: BTreeSet<String> = FAMILIES.iter().map(|d| exposed(d)).collect();
        assert_eq!(typed(&text), listed, "{text}");
        for line in [
            "# HELP weir_requests_total Requests answered, by route and status.\n",
            "# TYPE weir_requests_total counter\n",
            "weir_requests_total{route=\"api\",status=\"200\"} 2\n",
            "weir_requests_total{route=\"a\\\"b\",status=\"404\"} 1\n",
            "# TYPE weir_request_duration_seconds histogram\n",
            "weir_request_duration_seconds_bucket{route=\"api\",le=\"0.0025\"} 0\n",
            "weir_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 1\n",
            "weir_request_duration_seconds_bucket{route=\"api\",le=\"10\"} 2\n",
            "weir_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 2\n",
            "weir_request_duration_seconds_count{route=\"api\"} 2\n",
            "weir_upstream_requests_total{upstream=\"app\",outcome=\"ok\"} 1\n",
            "weir_plugin_hook_failures_total{plugin=\"p\",kind=\"trap\"} 1\n",
            "weir_upstream_retries_total{upstream=\"app\",reason=\"status\"} 1\n",
            "weir_upstream_retry_budget_exhausted_total{upstream=\"app\"} 1\n",
            "weir_upstream_ejections_total{upstream=\"app\",endpoint=\"http://127.0.0.1:1\"} 1\n",
            "weir_upstream_health_transitions_total{upstream=\"app\",endpoint=\"http://127.0.0.1:1\",to=\"unhealthy\"} 1\n",
            "weir_upstream_overflow_total{upstream=\"app\",limit=\"max_requests\"} 1\n",
            "weir_plugin_hook_duration_seconds_bucket{plugin=\"p\",phase=\"request\",le=\"0.0005\"} 1\n",
            "weir_plugin_kv_calls_total{plugin=\"p\",op=\"get\",outcome=\"ok\"} 1\n",
            "weir_plugin_outbound_calls_total{plugin=\"p\",op=\"call\",outcome=\"timeout\"} 1\n",
            "weir_plugin_instantiations_total{plugin=\"p\"} 3\n",
            "weir_plugin_failures_total{plugin=\"p\"} 1\n",
            "weir_config_reloads_total 2\n",
            "weir_telemetry_spans_dropped_total 0\n",
            "weir_requests_shed_total{reason=\"max_requests_per_worker\"} 1\n",
            "weir_connections_open{listener=\"main\"} 1\n",
            "weir_connections_refused_total{listener=\"main\",reason=\"max_connections\"} 1\n",
            "weir_accept_errors_total{listener=\"main\",kind=\"fd_limit\"} 1\n",
            "weir_connection_timeouts_total{listener=\"main\",kind=\"idle\"} 1\n",
            "weir_kv_breaker_state 1\n",
            "weir_kv_breaker_transitions_total{to=\"open\"} 2\n",
            "weir_kv_breaker_transitions_total{to=\"half_open\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("weir_request_duration_seconds_sum{route=\"api\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("sum");
        assert!((sum - 0.033).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn names_are_interned() {
        let m = RequestMetrics::default();
        let a = m.name("route");
        assert!(Arc::ptr_eq(&a, &m.name("route")));
    }
}
