//! The `metrics` capability: counters and histograms recorded by plugins, rendered in the
//! Prometheus text format (next to the gateway's own metrics) at the admin listener's `/metrics`.
//! The registry outlives reloads, so counters stay monotonic.
//!
//! Recording never fails a request: an invalid name or label, a name reused with another type,
//! or a plugin past its series limit is dropped and logged.

use dashmap::DashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Histogram bucket bounds, suited to durations in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Series (name + label values) one plugin may create; beyond, new series are dropped.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;
const MAX_LABELS: usize = 8;
/// Names the gateway itself exports under `weir_plugin_`; plugins cannot take them.
const RESERVED: [&str; 10] = [
    "instantiations",
    "instantiations_total",
    "failures",
    "failures_total",
    "hook_duration_seconds",
    "hook_failures",
    "hook_failures_total",
    "kv_calls",
    "kv_calls_total",
    "outbound_calls",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    plugin: String,
    labels: Vec<(String, String)>,
}

enum Series {
    Counter(AtomicU64),
    Histogram(Mutex<Histogram>),
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct MetricsRegistry {
    series: DashMap<SeriesKey, Series>,
    per_plugin: DashMap<String, usize>,
}

/// Why a recording was dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error(
        "invalid metric name {0:?}: use [a-z_][a-z0-9_]*, at most 64 bytes, not one the gateway exports"
    )]
    InvalidName(String),
    #[error("invalid label {0:?}: use [a-z_][a-z0-9_]*, not `plugin`, at most {MAX_LABELS} labels")]
    InvalidLabel(String),
    #[error("metric {0:?} is already registered with another type")]
    TypeConflict(String),
    #[error("plugin has reached its limit of {MAX_SERIES_PER_PLUGIN} series")]
    TooManySeries,
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl MetricsRegistry {
    fn key(
        &self,
        plugin: &str,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<SeriesKey, MetricError> {
        if !valid_ident(name) || RESERVED.contains(&name) {
            return Err(MetricError::InvalidName(name.into()));
        }
        if labels.len() > MAX_LABELS {
            return Err(MetricError::InvalidLabel(format!(
                "{} labels",
                labels.len()
            )));
        }
        if let Some((k, _)) = labels
            .iter()
            .find(|(k, _)| !valid_ident(k) || k == "plugin")
        {
            return Err(MetricError::InvalidLabel(k.clone()));
        }
        let mut labels = labels.to_vec();
        labels.sort();
        Ok(SeriesKey {
            name: name.into(),
            plugin: plugin.into(),
            labels,
        })
    }

    fn with_series(
        &self,
        key: SeriesKey,
        make: impl FnOnce() -> Series,
        f: impl FnOnce(&Series) -> Result<(), MetricError>,
    ) -> Result<(), MetricError> {
        if let Some(s) = self.series.get(&key) {
            return f(&s);
        }
        {
            let mut n = self.per_plugin.entry(key.plugin.clone()).or_insert(0);
            if *n >= MAX_SERIES_PER_PLUGIN {
                return Err(MetricError::TooManySeries);
            }
            *n += 1;
        }
        let s = self.series.entry(key).or_insert_with(make);
        f(&s)
    }

    pub fn counter_add(
        &self,
        plugin: &str,
        name: &str,
        value: u64,
        labels: &[(String, String)],
    ) -> Result<(), MetricError> {
        let key = self.key(plugin, name, labels)?;
        self.with_series(
            key,
            || Series::Counter(AtomicU64::new(0)),
            |s| match s {
                Series::Counter(c) => {
                    c.fetch_add(value, Ordering::Relaxed);
                    Ok(())
                }
                Series::Histogram(_) => Err(MetricError::TypeConflict(name.into())),
            },
        )
    }

    pub fn histogram_record(
        &self,
        plugin: &str,
        name: &str,
        value: f64,
        labels: &[(String, String)],
    ) -> Result<(), MetricError> {
        let key = self.key(plugin, name, labels)?;
        self.with_series(
            key,
            || Series::Histogram(Mutex::new(Histogram::default())),
            |s| match s {
                Series::Histogram(h) => {
                    if let Ok(mut h) = h.lock() {
                        for (i, bound) in BUCKETS.iter().enumerate() {
                            if value <= *bound {
                                h.counts[i] += 1;
                            }
                        }
                        h.count += 1;
                        if value.is_finite() {
                            h.sum += value;
                        }
                    }
                    Ok(())
                }
                Series::Counter(_) => Err(MetricError::TypeConflict(name.into())),
            },
        )
    }

    /// All plugin series in the Prometheus text format (version 0.0.4), sorted by name.
    pub fn render(&self, out: &mut String) {
        let mut keys: Vec<SeriesKey> = self.series.iter().map(|e| e.key().clone()).collect();
        keys.sort();
        let mut last_name = String::new();
        for key in keys {
            let Some(series) = self.series.get(&key) else {
                continue;
            };
            let mut metric = format!("weir_plugin_{}", key.name);
            if matches!(*series, Series::Counter(_)) && !metric.ends_with("_total") {
                metric.push_str("_total");
            }
            if metric != last_name {
                let kind = match *series {
                    Series::Counter(_) => "counter",
                    Series::Histogram(_) => "histogram",
                };
                let _ = writeln!(out, "# HELP {metric} Recorded by plugins.");
                let _ = writeln!(out, "# TYPE {metric} {kind}");
                last_name = metric.clone();
            }
            let mut labels = vec![("plugin".to_string(), key.plugin.clone())];
            labels.extend(key.labels.iter().cloned());
            match &*series {
                Series::Counter(c) => {
                    let _ = writeln!(
                        out,
                        "{metric}{} {}",
                        label_set(&labels, None),
                        c.load(Ordering::Relaxed)
                    );
                }
                Series::Histogram(h) => {
                    let Ok(h) = h.lock() else { continue };
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        let le = bound.to_string();
                        let _ = writeln!(
                            out,
                            "{metric}_bucket{} {}",
                            label_set(&labels, Some(&le)),
                            h.counts[i]
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{metric}_bucket{} {}",
                        label_set(&labels, Some("+Inf")),
                        h.count
                    );
                    let _ = writeln!(out, "{metric}_sum{} {}", label_set(&labels, None), h.sum);
                    let _ = writeln!(
                        out,
                        "{metric}_count{} {}",
                        label_set(&labels, None),
                        h.count
                    );
                }
            }
        }
    }
}

/// `{a="x",b="y"}` with Prometheus escaping, plus `le` for histogram buckets.
pub fn label_set(labels: &[(String, String)], le: Option<&str>) -> String {
    let mut s = String::from("{");
    let mut first = true;
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (k, v) in all {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn renders_counters_and_histograms() {
        let m = MetricsRegistry::default();
        m.counter_add("p", "events", 2, &[l("route", "r\"1")])
            .expect("counter");
        m.counter_add("p", "events", 3, &[l("route", "r\"1")])
            .expect("counter");
        m.histogram_record("p", "latency_seconds", 0.02, &[])
            .expect("histogram");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("# TYPE weir_plugin_events_total counter\n"));
        assert!(out.contains("weir_plugin_events_total{plugin=\"p\",route=\"r\\\"1\"} 5\n"));
        assert!(out.contains("weir_plugin_latency_seconds_bucket{plugin=\"p\",le=\"0.01\"} 0\n"));
        assert!(out.contains("weir_plugin_latency_seconds_bucket{plugin=\"p\",le=\"0.025\"} 1\n"));
        assert!(out.contains("weir_plugin_latency_seconds_count{plugin=\"p\"} 1\n"));
    }

    #[test]
    fn refuses_bad_names_conflicts_and_too_many_series() {
        let m = MetricsRegistry::default();
        assert!(matches!(
            m.counter_add("p", "Bad-Name", 1, &[]),
            Err(MetricError::InvalidName(_))
        ));
        assert!(matches!(
            m.counter_add("p", "failures", 1, &[]),
            Err(MetricError::InvalidName(_))
        ));
        assert!(matches!(
            m.counter_add("p", "x", 1, &[l("plugin", "spoof")]),
            Err(MetricError::InvalidLabel(_))
        ));
        m.counter_add("p", "x", 1, &[]).expect("counter");
        assert!(matches!(
            m.histogram_record("p", "x", 1.0, &[]),
            Err(MetricError::TypeConflict(_))
        ));
        for i in 1..MAX_SERIES_PER_PLUGIN {
            m.counter_add("p", "many", 1, &[l("i", &i.to_string())])
                .expect("under the limit");
        }
        assert_eq!(
            m.counter_add("p", "many", 1, &[l("i", "last")]),
            Err(MetricError::TooManySeries)
        );
        // Another plugin has its own budget.
        m.counter_add("q", "many", 1, &[]).expect("other plugin");
    }
}
