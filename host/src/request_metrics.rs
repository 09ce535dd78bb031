//! The gateway's own metrics, for the admin `/metrics` (Prometheus text): requests by route and
//! status with their latency, upstream attempts by outcome, and plugin hooks by plugin and phase
//! with their latency and failures by kind. Process-wide, like a Prometheus default registry:
//! they survive reloads, and series are bounded by the configuration (routes, upstreams,
//! plugins) and by status codes.

use dashmap::DashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[derive(Default)]
struct Registry {
    requests: DashMap<(String, u16), AtomicU64>,
    request_latency: DashMap<String, Histogram>,
    upstream: DashMap<(String, &'static str), AtomicU64>,
    hook_latency: DashMap<(String, &'static str), Histogram>,
    hook_failures: DashMap<(String, &'static str), AtomicU64>,
    /// (capability, plugin, operation, outcome)
    capability: DashMap<(&'static str, String, &'static str, &'static str), AtomicU64>,
}

static METRICS: LazyLock<Registry> = LazyLock::new(Registry::default);

/// A request answered on `route` with `status`, its head after `elapsed`.
pub fn request(route: &str, status: u16, elapsed: Duration) {
    METRICS
        .requests
        .entry((route.to_string(), status))
        .or_default()
        .fetch_add(1, Ordering::Relaxed);
    METRICS
        .request_latency
        .entry(route.to_string())
        .or_default()
        .observe(elapsed);
}

/// An upstream attempt: `ok` (any HTTP answer), `timeout` or `error`.
pub fn upstream(name: &str, outcome: &'static str) {
    METRICS
        .upstream
        .entry((name.to_string(), outcome))
        .or_default()
        .fetch_add(1, Ordering::Relaxed);
}

/// One hook call of `plugin`, and its failure kind if it failed.
pub fn hook(plugin: &str, phase: &'static str, elapsed: Duration, failure: Option<&'static str>) {
    METRICS
        .hook_latency
        .entry((plugin.to_string(), phase))
        .or_default()
        .observe(elapsed);
    if let Some(kind) = failure {
        METRICS
            .hook_failures
            .entry((plugin.to_string(), kind))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// A `kv` or `outbound` call by `plugin`.
pub fn capability_call(
    capability: &'static str,
    plugin: &str,
    op: &'static str,
    outcome: &'static str,
) {
    METRICS
        .capability
        .entry((capability, plugin.to_string(), op, outcome))
        .or_default()
        .fetch_add(1, Ordering::Relaxed);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends every family in Prometheus text format.
pub fn render(out: &mut String) {
    let mut rows: Vec<_> = METRICS
        .requests
        .iter()
        .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
        .collect();
    rows.sort();
    let _ = writeln!(
        out,
        "# HELP weir_requests_total Requests answered, by route and status.\n# TYPE weir_requests_total counter"
    );
    for ((route, status), n) in rows {
        let _ = writeln!(
            out,
            "weir_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
            escape(&route)
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_request_duration_seconds Time to the response head, by route.\n# TYPE weir_request_duration_seconds histogram"
    );
    let mut routes: Vec<String> = METRICS
        .request_latency
        .iter()
        .map(|e| e.key().clone())
        .collect();
    routes.sort();
    for r in routes {
        if let Some(h) = METRICS.request_latency.get(&r) {
            h.render(
                out,
                "weir_request_duration_seconds",
                &format!("route=\"{}\"", escape(&r)),
            );
        }
    }
    let mut ups: Vec<_> = METRICS
        .upstream
        .iter()
        .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
        .collect();
    ups.sort();
    let _ = writeln!(
        out,
        "# HELP weir_upstream_requests_total Upstream attempts by outcome (ok: an HTTP answer of any status).\n# TYPE weir_upstream_requests_total counter"
    );
    for ((name, outcome), n) in ups {
        let _ = writeln!(
            out,
            "weir_upstream_requests_total{{upstream=\"{}\",outcome=\"{outcome}\"}} {n}",
            escape(&name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_plugin_hook_duration_seconds Plugin hook calls, by plugin and phase.\n# TYPE weir_plugin_hook_duration_seconds histogram"
    );
    let mut hooks: Vec<_> = METRICS
        .hook_latency
        .iter()
        .map(|e| e.key().clone())
        .collect();
    hooks.sort();
    for k in hooks {
        if let Some(h) = METRICS.hook_latency.get(&k) {
            h.render(
                out,
                "weir_plugin_hook_duration_seconds",
                &format!("plugin=\"{}\",phase=\"{}\"", escape(&k.0), k.1),
            );
        }
    }
    let mut calls: Vec<_> = METRICS
        .capability
        .iter()
        .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
        .collect();
    calls.sort();
    for cap in ["kv", "outbound"] {
        let name = format!("weir_plugin_{cap}_calls_total");
        let _ = writeln!(
            out,
            "# HELP {name} Plugin `{cap}` calls by operation and outcome.\n# TYPE {name} counter"
        );
        for ((c, plugin, op, outcome), n) in calls.iter().filter(|(k, _)| k.0 == cap) {
            let _ = c;
            let _ = writeln!(
                out,
                "{name}{{plugin=\"{}\",op=\"{op}\",outcome=\"{outcome}\"}} {n}",
                escape(plugin)
            );
        }
    }
    let mut fails: Vec<_> = METRICS
        .hook_failures
        .iter()
        .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
        .collect();
    fails.sort();
    let _ = writeln!(
        out,
        "# HELP weir_plugin_hook_failures_total Plugin hook failures by kind (trap, timeout, memory, decision, instantiate).\n# TYPE weir_plugin_hook_failures_total counter"
    );
    for ((plugin, kind), n) in fails {
        let _ = writeln!(
            out,
            "weir_plugin_hook_failures_total{{plugin=\"{}\",kind=\"{kind}\"}} {n}",
            escape(&plugin)
        );
    }
}
