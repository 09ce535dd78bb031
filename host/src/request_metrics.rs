//! The gateway's own metrics, for the admin `/metrics` (Prometheus text): requests by route and
//! status with their latency, upstream attempts by outcome, plugin hooks by plugin and phase
//! with their latency and failures by kind, and plugins' `kv`/`outbound` calls. One
//! [`RequestMetrics`] lives in the runtime's `Services`, so series survive reloads; they are
//! bounded by the configuration (routes, upstreams, plugins) and by status codes, never by what
//! a client sends.
//!
//! Series are found by the name (`&str`) first, so recording allocates only for a name's first
//! sample, not on every request.

use dashmap::DashMap;
use std::fmt::Write as _;
use std::hash::Hash;
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
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Values (counters or histograms) by a name and a small key.
struct Family<K, V>(DashMap<String, DashMap<K, V>>);

impl<K: Eq + Hash, V> Default for Family<K, V> {
    fn default() -> Self {
        Family(DashMap::new())
    }
}

impl<K: Eq + Hash + Copy + Ord, V: Default> Family<K, V> {
    fn with(&self, name: &str, key: K, f: impl FnOnce(&V)) {
        if let Some(inner) = self.0.get(name) {
            match inner.get(&key) {
                Some(v) => f(&v),
                None => f(&inner.entry(key).or_default()),
            }
            return;
        }
        let inner = self.0.entry(name.to_string()).or_default();
        f(&inner.entry(key).or_default());
    }

    /// Calls `f` on every series, ordered by name then key.
    fn each(&self, mut f: impl FnMut(&str, K, &V)) {
        let mut keys: Vec<(String, K)> = self
            .0
            .iter()
            .flat_map(|outer| {
                let name = outer.key().clone();
                outer
                    .value()
                    .iter()
                    .map(|e| (name.clone(), *e.key()))
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort();
        for (name, key) in keys {
            if let Some(inner) = self.0.get(&name)
                && let Some(v) = inner.get(&key)
            {
                f(&name, key, &v);
            }
        }
    }
}

type Counters<K> = Family<K, AtomicU64>;
type Histograms<K> = Family<K, Histogram>;

/// The gateway's own series. Recorded through the snapshot's `Observer` (requests, upstreams,
/// hooks) and the plugins' capability calls; rendered by the admin `/metrics`.
#[derive(Default)]
pub struct RequestMetrics {
    requests: Counters<u16>,
    request_latency: Histograms<()>,
    upstream: Counters<&'static str>,
    hook_latency: Histograms<&'static str>,
    hook_failures: Counters<&'static str>,
    /// By plugin: (capability, operation, outcome).
    capability: Counters<(&'static str, &'static str, &'static str)>,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl RequestMetrics {
    /// A request answered on `route` with `status`, its head after `elapsed`.
    pub(crate) fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests.with(route, status, inc);
        self.request_latency.with(route, (), |h| h.observe(elapsed));
    }

    /// An upstream attempt: `ok` (any HTTP answer), `timeout` or `error`.
    pub(crate) fn upstream(&self, name: &str, outcome: &'static str) {
        self.upstream.with(name, outcome, inc);
    }

    /// One hook call of `plugin`, and its failure kind if it failed.
    pub(crate) fn hook(
        &self,
        plugin: &str,
        phase: &'static str,
        elapsed: Duration,
        failure: Option<&'static str>,
    ) {
        self.hook_latency
            .with(plugin, phase, |h| h.observe(elapsed));
        if let Some(kind) = failure {
            self.hook_failures.with(plugin, kind, inc);
        }
    }

    /// A `kv` or `outbound` call by `plugin`.
    pub(crate) fn capability_call(
        &self,
        capability: &'static str,
        plugin: &str,
        op: &'static str,
        outcome: &'static str,
    ) {
        self.capability.with(plugin, (capability, op, outcome), inc);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A counter family: `labels` renders a row's labels from its name and key.
fn counters<K: Eq + Hash + Copy + Ord>(
    out: &mut String,
    name: &str,
    help: &str,
    family: &Counters<K>,
    labels: impl Fn(&str, K) -> String,
) {
    header(out, name, "counter", help);
    family.each(|n, k, v| {
        let v = v.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{{}}} {v}", labels(&escape(n), k));
    });
}

impl RequestMetrics {
    /// Appends every family in Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        let m = self;
        counters(
            out,
            "weir_requests_total",
            "Requests answered, by route and status.",
            &m.requests,
            |route, status| format!("route=\"{route}\",status=\"{status}\""),
        );
        let name = "weir_request_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time to the response head, by route.",
        );
        m.request_latency.each(|route, (), h| {
            h.render(out, name, &format!("route=\"{}\"", escape(route)));
        });
        counters(
            out,
            "weir_upstream_requests_total",
            "Upstream attempts by outcome (ok: an HTTP answer of any status).",
            &m.upstream,
            |upstream, outcome| format!("upstream=\"{upstream}\",outcome=\"{outcome}\""),
        );
        let name = "weir_plugin_hook_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Plugin hook calls, by plugin and phase.",
        );
        m.hook_latency.each(|plugin, phase, h| {
            let labels = format!("plugin=\"{}\",phase=\"{phase}\"", escape(plugin));
            h.render(out, name, &labels);
        });
        counters(
            out,
            "weir_plugin_hook_failures_total",
            "Plugin hook failures by kind (trap, timeout, memory, decision, instantiate).",
            &m.hook_failures,
            |plugin, kind| format!("plugin=\"{plugin}\",kind=\"{kind}\""),
        );
        for cap in ["kv", "outbound"] {
            let name = format!("weir_plugin_{cap}_calls_total");
            header(
                out,
                &name,
                "counter",
                &format!("Plugin `{cap}` calls by operation and outcome."),
            );
            m.capability.each(|plugin, (c, op, outcome), n| {
                if c == cap {
                    let (plugin, n) = (escape(plugin), n.load(Ordering::Relaxed));
                    let _ = writeln!(
                        out,
                        "{name}{{plugin=\"{plugin}\",op=\"{op}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            });
        }
    }
}
