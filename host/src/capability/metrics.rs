//! The `metrics` capability: counters and histograms recorded by plugins, exported at the admin
//! listener's `/metrics` next to the gateway's own series. The registry is a `prometheus-client`
//! [`Collector`]: the scrape's registry asks it for its families (names and label sets chosen
//! by plugins at run time). It outlives reloads, so counters stay monotonic.
//!
//! A family is `weir_plugin_<name>`, shared by every plugin granted `metrics` (the `plugin`
//! label tells them apart): a counter's name is kept without `_total` (the encoder appends it),
//! so `x` and `x_total` are the same counter.
//!
//! No two families may share a sample name (Prometheus derives `_total`, `_created`, `_bucket`,
//! `_sum` and `_count` from family names; one name with two meanings makes a scraper drop the
//! whole `/metrics`): the names the gateway's own families occupy ([`FAMILIES`]) are refused, and
//! so is a plugin family whose names meet another's.
//!
//! Recording never fails a request: an invalid or colliding name, an invalid value or label, a
//! name used with another type, or a plugin past its series limit is dropped and logged by the
//! caller.

use crate::request_metrics::FAMILIES;
use dashmap::DashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Histogram bucket bounds, suited to durations in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Series (name + label values) one plugin may create; beyond, new series are dropped.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;
const MAX_LABELS: usize = 8;
/// Every plugin family is `weir_plugin_<name>`.
const PREFIX: &str = "weir_plugin_";
const HELP: &str = "Recorded by plugins.";

/// A series' labels: the plugin that recorded it, then its own labels sorted by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SeriesLabels {
    plugin: Arc<str>,
    labels: Vec<(String, String)>,
}

impl EncodeLabelSet for SeriesLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabel::encode(&("plugin", &*self.plugin), encoder.encode_label())?;
        for (k, v) in &self.labels {
            EncodeLabel::encode(&(k.as_str(), v.as_str()), encoder.encode_label())?;
        }
        Ok(())
    }
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// One `weir_plugin_<name>` family (cloning shares it).
#[derive(Clone, Debug)]
enum PluginFamily {
    Counter(Family<SeriesLabels, Counter>),
    Histogram(Family<SeriesLabels, Histogram, fn() -> Histogram>),
}

/// A value to record: it decides the family's type.
#[derive(Clone, Copy)]
enum Value {
    Counter(u64),
    Histogram(f64),
}

impl Value {
    fn kind(self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Histogram(_) => MetricType::Histogram,
        }
    }
}

impl PluginFamily {
    fn new(kind: MetricType) -> PluginFamily {
        if kind == MetricType::Histogram {
            PluginFamily::Histogram(Family::new_with_constructor(histogram))
        } else {
            PluginFamily::Counter(Family::default())
        }
    }

    fn kind(&self) -> MetricType {
        match self {
            PluginFamily::Counter(_) => MetricType::Counter,
            PluginFamily::Histogram(_) => MetricType::Histogram,
        }
    }

    fn contains(&self, labels: &SeriesLabels) -> bool {
        match self {
            PluginFamily::Counter(f) => f.get(labels).is_some(),
            PluginFamily::Histogram(f) => f.get(labels).is_some(),
        }
    }

    /// Creates the series `labels` (empty) if it does not exist.
    fn create(&self, labels: &SeriesLabels) {
        match self {
            PluginFamily::Counter(f) => drop(f.get_or_create(labels)),
            PluginFamily::Histogram(f) => drop(f.get_or_create(labels)),
        }
    }

    /// Records `value` in the series `labels`; a value of another type is ignored (the caller
    /// checked the type).
    fn record(&self, labels: &SeriesLabels, value: Value) {
        match (self, value) {
            (PluginFamily::Counter(f), Value::Counter(v)) => {
                f.get_or_create(labels).inc_by(v);
            }
            (PluginFamily::Histogram(f), Value::Histogram(v)) => {
                f.get_or_create(labels).observe(v);
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            PluginFamily::Counter(f) => EncodeMetric::is_empty(f),
            PluginFamily::Histogram(f) => EncodeMetric::is_empty(f),
        }
    }
}

/// Every name a family registered as `name` occupies: its own and each sample name Prometheus
/// derives from it (a counter's family is `name` in OpenMetrics, `name_total` in the 0.0.4
/// format).
fn occupied(name: &str, kind: MetricType) -> impl Iterator<Item = String> {
    let suffixes: &[&str] = match kind {
        MetricType::Counter => &["", "_total", "_created"],
        MetricType::Histogram => &["", "_bucket", "_sum", "_count", "_created"],
        _ => &[""],
    };
    suffixes.iter().map(move |s| format!("{name}{s}"))
}

/// Who occupies a name: the gateway, or the plugin family registered under that full name.
enum Owner {
    Gateway,
    Plugin(Arc<str>),
}

/// The plugins' series, by family.
pub struct MetricsRegistry {
    /// Families by name without the `weir_plugin_` prefix (a counter's without `_total`).
    families: DashMap<Arc<str>, PluginFamily>,
    /// Series each plugin created.
    per_plugin: DashMap<Arc<str>, usize>,
    /// Recordings each plugin lost to its series limit (`weir_metrics_series_dropped_total`).
    dropped: DashMap<Arc<str>, u64>,
    /// Every name a family occupies, the gateway's and the plugins'. Held while a series or a
    /// family is created, so limits and names are checked once.
    admitting: Mutex<HashMap<String, Owner>>,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        let gateway = FAMILIES
            .iter()
            .flat_map(|f| occupied(f.name, f.kind))
            .map(|n| (n, Owner::Gateway))
            .collect();
        MetricsRegistry {
            families: DashMap::new(),
            per_plugin: DashMap::new(),
            dropped: DashMap::new(),
            admitting: Mutex::new(gateway),
        }
    }
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("families", &self.families.len())
            .finish_non_exhaustive()
    }
}

/// Why a recording was dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error(
        "invalid metric name {0:?}: use [a-z_][a-z0-9_]*, at most 64 bytes, not one the gateway exports nor one whose samples would share a name with the gateway's (`_total`, `_created`, `_bucket`, `_sum`, `_count`)"
    )]
    InvalidName(String),
    #[error(
        "metric {name:?} would share the sample name {sample:?} with the plugin metric {other:?}"
    )]
    Collision {
        name: String,
        sample: String,
        other: String,
    },
    #[error(
        "invalid label {0:?}: use [a-z_][a-z0-9_]* once each, not `plugin`, `le` (histograms) or a `__` prefix, at most {MAX_LABELS} labels"
    )]
    InvalidLabel(String),
    #[error("metric {0:?} is already registered with another type")]
    TypeConflict(String),
    #[error("histogram {0:?}: the value is not a finite number")]
    NotFinite(String),
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

/// The plugin's labels checked and sorted, with the `plugin` label.
fn series_labels(
    plugin: &Arc<str>,
    mut labels: Vec<(String, String)>,
    kind: MetricType,
) -> Result<SeriesLabels, MetricError> {
    if labels.len() > MAX_LABELS {
        return Err(MetricError::InvalidLabel(format!(
            "{} labels",
            labels.len()
        )));
    }
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, _)) in labels.iter().enumerate() {
        let repeated = i > 0 && labels[i - 1].0 == *k;
        if !valid_ident(k)
            || k == "plugin"
            || k.starts_with("__")
            || (k == "le" && kind == MetricType::Histogram)
            || repeated
        {
            return Err(MetricError::InvalidLabel(k.clone()));
        }
    }
    Ok(SeriesLabels {
        plugin: plugin.clone(),
        labels,
    })
}

impl MetricsRegistry {
    /// Adds `value` to the counter `name` (`_total` appended unless it ends with it).
    pub fn counter_add(
        &self,
        plugin: &Arc<str>,
        name: &str,
        value: u64,
        labels: Vec<(String, String)>,
    ) -> Result<(), MetricError> {
        let family = name.strip_suffix("_total").unwrap_or(name);
        self.record(plugin, name, family, labels, Value::Counter(value))
    }

    /// Records one observation in the histogram `name`.
    pub fn histogram_record(
        &self,
        plugin: &Arc<str>,
        name: &str,
        value: f64,
        labels: Vec<(String, String)>,
    ) -> Result<(), MetricError> {
        if !value.is_finite() {
            // It would turn the series' sum into NaN or infinity for good.
            return Err(MetricError::NotFinite(name.into()));
        }
        self.record(plugin, name, name, labels, Value::Histogram(value))
    }

    fn record(
        &self,
        plugin: &Arc<str>,
        name: &str,
        family: &str,
        labels: Vec<(String, String)>,
        value: Value,
    ) -> Result<(), MetricError> {
        if !valid_ident(name) {
            return Err(MetricError::InvalidName(name.into()));
        }
        let labels = series_labels(plugin, labels, value.kind())?;
        let found = self.families.get(family).map(|f| f.value().clone());
        let family = match found {
            Some(f) if f.kind() != value.kind() => {
                return Err(MetricError::TypeConflict(name.into()));
            }
            Some(f) if f.contains(&labels) => f,
            _ => self
                .admit(name, family, value.kind(), &labels)
                .inspect_err(|e| {
                    if *e == MetricError::TooManySeries {
                        *self.dropped.entry(plugin.clone()).or_insert(0) += 1;
                    }
                })?,
        };
        family.record(&labels, value);
        Ok(())
    }

    /// The family `family`, created if new, holding the series `labels`, created if new within
    /// the plugin's limit. One admission at a time, so each check holds until the series exists.
    fn admit(
        &self,
        name: &str,
        family: &str,
        kind: MetricType,
        labels: &SeriesLabels,
    ) -> Result<PluginFamily, MetricError> {
        let mut taken = self
            .admitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let found = self.families.get(family).map(|f| f.value().clone());
        let full = format!("{PREFIX}{family}");
        match &found {
            Some(f) if f.kind() != kind => return Err(MetricError::TypeConflict(name.into())),
            Some(f) if f.contains(labels) => return Ok(f.clone()),
            Some(_) => {}
            None => {
                if let Some((sample, owner)) =
                    occupied(&full, kind).find_map(|n| taken.get(&n).map(|o| (n, o)))
                {
                    return Err(match owner {
                        Owner::Gateway => MetricError::InvalidName(name.into()),
                        Owner::Plugin(other) => MetricError::Collision {
                            name: name.into(),
                            sample,
                            other: other.to_string(),
                        },
                    });
                }
            }
        }
        {
            let mut n = self.per_plugin.entry(labels.plugin.clone()).or_insert(0);
            if *n >= MAX_SERIES_PER_PLUGIN {
                return Err(MetricError::TooManySeries);
            }
            *n += 1;
        }
        let f = found.unwrap_or_else(|| {
            let f = PluginFamily::new(kind);
            self.families.insert(Arc::from(family), f.clone());
            let owner: Arc<str> = match kind {
                MetricType::Counter => Arc::from(format!("{full}_total")),
                _ => Arc::from(full.as_str()),
            };
            taken.extend(occupied(&full, kind).map(|n| (n, Owner::Plugin(owner.clone()))));
            f
        });
        f.create(labels);
        Ok(f)
    }
}

impl MetricsRegistry {
    /// How many recordings `plugin` has lost to its series limit.
    pub fn series_dropped(&self, plugin: &str) -> u64 {
        self.dropped.get(plugin).map_or(0, |n| *n)
    }

    /// `weir_metrics_series_dropped_total{plugin}` (once anything was dropped): recordings
    /// refused by the series limit. Its name is outside `weir_plugin_`, so no plugin family can
    /// take it.
    fn encode_dropped(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.dropped.is_empty() {
            return Ok(());
        }
        let dropped = Family::<SeriesLabels, Counter>::default();
        for e in self.dropped.iter() {
            let labels = SeriesLabels {
                plugin: e.key().clone(),
                labels: Vec::new(),
            };
            dropped.get_or_create(&labels).inc_by(*e.value());
        }
        let metric = encoder.encode_descriptor(
            "weir_metrics_series_dropped",
            "Plugin metric recordings dropped because the plugin reached its series limit.",
            None,
            MetricType::Counter,
        )?;
        dropped.encode(metric)
    }
}

impl Collector for MetricsRegistry {
    /// Every family with a series, as `weir_plugin_<name>`, sorted by name, then the count of
    /// recordings the series limit dropped.
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut families: Vec<(Arc<str>, PluginFamily)> = self
            .families
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        families.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, family) in families.iter().filter(|(_, f)| !f.is_empty()) {
            let name = format!("weir_plugin_{name}");
            let metric = encoder.encode_descriptor(&name, HELP, None, family.kind())?;
            match family {
                PluginFamily::Counter(f) => f.encode(metric)?,
                PluginFamily::Histogram(f) => f.encode(metric)?,
            }
        }
        self.encode_dropped(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_metrics::{Elsewhere, RequestMetrics, scrape};
    use prometheus_client::registry::Registry;

    fn l(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    fn render(m: &Arc<MetricsRegistry>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(m.clone()));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("renders");
        out
    }

    #[test]
    fn renders_counters_and_histograms() {
        let m = Arc::new(MetricsRegistry::default());
        let p: Arc<str> = Arc::from("p");
        m.counter_add(&p, "events", 2, vec![l("route", "r\"1")])
            .expect("counter");
        // `events_total` is the same counter.
        m.counter_add(&p, "events_total", 3, vec![l("route", "r\"1")])
            .expect("counter");
        m.histogram_record(&p, "latency_seconds", 0.02, vec![])
            .expect("histogram");
        let out = render(&m);
        for line in [
            "# HELP weir_plugin_events_total Recorded by plugins.\n",
            "# TYPE weir_plugin_events_total counter\n",
            "weir_plugin_events_total{plugin=\"p\",route=\"r\\\"1\"} 5\n",
            "# TYPE weir_plugin_latency_seconds histogram\n",
            "weir_plugin_latency_seconds_bucket{plugin=\"p\",le=\"0.01\"} 0\n",
            "weir_plugin_latency_seconds_bucket{plugin=\"p\",le=\"0.025\"} 1\n",
            "weir_plugin_latency_seconds_bucket{plugin=\"p\",le=\"60\"} 1\n",
            "weir_plugin_latency_seconds_bucket{plugin=\"p\",le=\"+Inf\"} 1\n",
            "weir_plugin_latency_seconds_sum{plugin=\"p\"} 0.02\n",
            "weir_plugin_latency_seconds_count{plugin=\"p\"} 1\n",
        ] {
            assert!(out.contains(line), "{line} missing from:\n{out}");
        }
        assert_eq!(out.matches("# TYPE").count(), 2, "{out}");
    }

    #[test]
    fn labels_are_sorted_after_the_plugin_label() {
        let m = Arc::new(MetricsRegistry::default());
        let p: Arc<str> = Arc::from("p");
        m.counter_add(&p, "x", 1, vec![l("b", "2"), l("a", "1")])
            .expect("counter");
        m.counter_add(&p, "x", 1, vec![l("a", "1"), l("b", "2")])
            .expect("same series");
        assert!(
            render(&m).contains("weir_plugin_x_total{plugin=\"p\",a=\"1\",b=\"2\"} 2\n"),
            "{}",
            render(&m)
        );
    }

    #[test]
    fn refuses_bad_names_labels_values_and_conflicts() {
        let m = MetricsRegistry::default();
        let (p, q): (Arc<str>, Arc<str>) = (Arc::from("p"), Arc::from("q"));
        for name in ["Bad-Name", "failures", "", "9lives"] {
            assert!(
                matches!(
                    m.counter_add(&p, name, 1, vec![]),
                    Err(MetricError::InvalidName(_))
                ),
                "{name}"
            );
        }
        for labels in [
            vec![l("plugin", "spoof")],
            vec![l("a", "1"), l("a", "2")],
            vec![l("__name__", "x")],
            vec![l("Route", "x")],
            (0..=MAX_LABELS).map(|i| l(&format!("l{i}"), "v")).collect(),
        ] {
            assert!(
                matches!(
                    m.counter_add(&p, "x", 1, labels.clone()),
                    Err(MetricError::InvalidLabel(_))
                ),
                "{labels:?}"
            );
        }
        assert!(matches!(
            m.histogram_record(&p, "h", 1.0, vec![l("le", "1")]),
            Err(MetricError::InvalidLabel(_))
        ));
        m.counter_add(&p, "le_ok", 1, vec![l("le", "1")])
            .expect("`le` is only the histograms'");
        for v in [f64::NAN, f64::INFINITY] {
            assert_eq!(
                m.histogram_record(&p, "h", v, vec![]),
                Err(MetricError::NotFinite("h".into()))
            );
        }
        m.counter_add(&p, "x", 1, vec![]).expect("counter");
        assert!(matches!(
            m.histogram_record(&p, "x", 1.0, vec![]),
            Err(MetricError::TypeConflict(_))
        ));
        // One family for every plugin: another plugin cannot change its type either.
        assert!(matches!(
            m.histogram_record(&q, "x", 1.0, vec![l("other", "labels")]),
            Err(MetricError::TypeConflict(_))
        ));
    }

    #[test]
    fn each_plugin_has_its_own_series_limit() {
        let m = MetricsRegistry::default();
        let (p, q): (Arc<str>, Arc<str>) = (Arc::from("p"), Arc::from("q"));
        for i in 0..MAX_SERIES_PER_PLUGIN {
            m.counter_add(&p, "many", 1, vec![l("i", &i.to_string())])
                .expect("under the limit");
        }
        assert_eq!(
            m.counter_add(&p, "many", 1, vec![l("i", "last")]),
            Err(MetricError::TooManySeries)
        );
        assert_eq!(
            m.histogram_record(&p, "new_family", 1.0, vec![]),
            Err(MetricError::TooManySeries)
        );
        m.counter_add(&p, "many", 1, vec![l("i", "0")])
            .expect("an existing series still counts");
        m.counter_add(&q, "many", 1, vec![]).expect("other plugin");
        assert_eq!(m.series_dropped("p"), 2);
        let out = render(&Arc::new(m));
        assert!(
            !out.contains("new_family"),
            "a refused family is not exported"
        );
        assert!(
            out.contains("weir_metrics_series_dropped_total{plugin=\"p\"} 2\n"),
            "{out}"
        );
    }

    /// The whole `/metrics` body from the gateway's series and the plugins'.
    fn full_scrape(requests: &RequestMetrics, plugins: &Arc<MetricsRegistry>) -> String {
        scrape(requests, &Elsewhere::default(), Box::new(plugins.clone())).expect("renders")
    }

    /// Checks what a Prometheus scraper refuses and `prometheus-parse` lets through: a family
    /// typed twice.
    fn assert_one_group_per_family(text: &str) {
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(
                    typed.insert(name.to_string()),
                    "family {name} appears twice in the scrape:\n{text}"
                );
            }
        }
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("the scrape parses");
    }

    /// `outbound_calls_total` is the gateway's own `weir_plugin_outbound_calls_total`: a plugin
    /// counter of that name must be refused, not exported as a second family of the same name
    /// (which makes a scraper drop the whole `/metrics`).
    #[test]
    fn a_plugin_counter_never_duplicates_a_gateway_family() {
        let requests = RequestMetrics::default();
        requests.capability_call("outbound", "p", "call", "ok");
        let plugins = Arc::new(MetricsRegistry::default());
        let p: Arc<str> = Arc::from("p");
        let recorded = plugins.counter_add(&p, "outbound_calls_total", 1, vec![]);
        assert_one_group_per_family(&full_scrape(&requests, &plugins));
        assert!(
            matches!(recorded, Err(MetricError::InvalidName(_))),
            "{recorded:?}"
        );
    }

    /// Every name a gateway family under `weir_plugin_` occupies: refused as a histogram, and as
    /// a counter with and without `_total`; the scrape stays valid.
    #[test]
    fn every_name_derived_from_a_gateway_family_is_refused() {
        let requests = RequestMetrics::default();
        let plugins = Arc::new(MetricsRegistry::default());
        let p: Arc<str> = Arc::from("p");
        let mut tried = 0;
        for family in FAMILIES {
            for full in occupied(family.name, family.kind) {
                let Some(name) = full.strip_prefix(PREFIX) else {
                    continue;
                };
                tried += 1;
                assert_eq!(
                    plugins.histogram_record(&p, name, 1.0, vec![]),
                    Err(MetricError::InvalidName(name.into()))
                );
                for name in [name.to_string(), format!("{name}_total")] {
                    assert_eq!(
                        plugins.counter_add(&p, &name, 1, vec![]),
                        Err(MetricError::InvalidName(name.clone()))
                    );
                }
            }
        }
        assert_eq!(tried, 5 * 3 + 5, "six families under the prefix");
        for name in [
            "outbound_calls",
            "kv_calls_created",
            "hook_duration_seconds_bucket",
        ] {
            assert!(plugins.counter_add(&p, name, 1, vec![]).is_err(), "{name}");
        }
        plugins
            .counter_add(&p, "outbound_requests", 1, vec![])
            .expect("a name of its own");
        let text = full_scrape(&requests, &plugins);
        assert_one_group_per_family(&text);
        assert!(text.contains("weir_plugin_outbound_requests_total{plugin=\"p\"} 1\n"));
    }

    /// Two plugin families may not share a sample name either, whichever plugin records them.
    #[test]
    fn plugin_families_that_would_share_a_sample_name_are_refused() {
        let plugins = Arc::new(MetricsRegistry::default());
        let (p, q): (Arc<str>, Arc<str>) = (Arc::from("p"), Arc::from("q"));
        plugins
            .histogram_record(&p, "latency", 0.1, vec![])
            .expect("histogram");
        plugins.counter_add(&p, "jobs", 1, vec![]).expect("counter");
        for (name, sample) in [
            ("latency_count", "weir_plugin_latency_count"),
            ("latency_sum_total", "weir_plugin_latency_sum"),
            ("jobs_created", "weir_plugin_jobs_created"),
        ] {
            assert_eq!(
                plugins.counter_add(&q, name, 1, vec![]),
                Err(MetricError::Collision {
                    name: name.into(),
                    sample: sample.into(),
                    other: if name.starts_with("jobs") {
                        "weir_plugin_jobs_total".into()
                    } else {
                        "weir_plugin_latency".into()
                    },
                })
            );
        }
        assert!(matches!(
            plugins.histogram_record(&q, "jobs_total", 1.0, vec![]),
            Err(MetricError::Collision { .. })
        ));
        assert!(matches!(
            plugins.histogram_record(&q, "latency_bucket", 1.0, vec![]),
            Err(MetricError::Collision { .. })
        ));
        plugins
            .counter_add(&q, "jobs_total", 2, vec![])
            .expect("the same counter as `jobs`");
        plugins
            .histogram_record(&q, "latency_seconds", 0.1, vec![])
            .expect("a name of its own");
        let text = full_scrape(&RequestMetrics::default(), &plugins);
        assert_one_group_per_family(&text);
        assert!(
            text.contains("weir_plugin_jobs_total{plugin=\"q\"} 2\n"),
            "{text}"
        );
    }
}
