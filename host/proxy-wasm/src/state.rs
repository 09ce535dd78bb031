//! What the host holds for one filter instance, and the services its embedder lends it: shared
//! data, metrics and the clusters HTTP calls may reach.

use crate::abi::{self, MetricKind, Status};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Header fields, in order; names lower-case. Pseudo-headers (`:method`, `:path`,
/// `:authority`, `:scheme`, `:status`) come first, as Envoy passes them.
pub type Headers = Vec<(String, String)>;

/// A boxed future, for the services' async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A shared value and its CAS number.
pub type Versioned = (Vec<u8>, u32);

/// Where `proxy_get_shared_data` / `proxy_set_shared_data` go: values with CAS numbers that
/// change on every write. One store is shared by every instance of a filter.
pub trait SharedStore: Send + Sync {
    /// The value of `key` and its CAS number; `Ok(None)` when absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, Status>>;
    /// Sets `key` unless `cas` is non-zero and is not the value's current CAS number
    /// (`CasMismatch`).
    fn set(&self, key: String, value: Vec<u8>, cas: u32) -> BoxFuture<'_, Status>;
}

/// Where the filter's metrics go (`proxy_define_metric` and the calls on its id).
pub trait MetricSink: Send + Sync {
    /// Records `delta` on a counter or gauge, or `value` into a histogram.
    fn record(&self, kind: MetricKind, name: &str, value: i64);
}

/// The properties of one request (`proxy_get_property`), read only when the filter asks: the
/// embedder computes a value from its request on demand.
pub trait PropertySource: Send + Sync + 'static {
    /// The value at `path` (its parts joined with `.`, e.g. `request.path`).
    fn get(&self, path: &str) -> Option<Vec<u8>>;
}

/// A fixed list of properties (for tests and simple embedders).
impl PropertySource for Vec<(String, Vec<u8>)> {
    fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.iter().find(|(k, _)| k == path).map(|(_, v)| v.clone())
    }
}

/// The services one instance uses, given by the embedder.
#[derive(Clone)]
pub struct Env {
    pub shared: Arc<dyn SharedStore>,
    pub metrics: Arc<dyn MetricSink>,
    /// The clusters `proxy_http_call` may name (anything else is refused with `BadArgument`).
    pub clusters: Arc<[String]>,
}

impl Default for Env {
    /// In-process shared data, metrics kept nowhere, no clusters.
    fn default() -> Self {
        Env {
            shared: Arc::new(SharedData::default()),
            metrics: Arc::new(NoMetrics),
            clusters: Arc::from([]),
        }
    }
}

/// Metrics recorded nowhere (the values the filter reads back are still kept per instance).
pub struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _: MetricKind, _: &str, _: i64) {}
}

/// Shared data in this process: one map for every instance given the same handle.
#[derive(Clone, Default)]
pub struct SharedData(Arc<Mutex<HashMap<String, Versioned>>>);

impl SharedData {
    pub(crate) fn get_now(&self, key: &str) -> Option<Versioned> {
        self.0.lock().ok()?.get(key).cloned()
    }

    pub(crate) fn set_now(&self, key: String, value: Vec<u8>, cas: u32) -> Status {
        let Ok(mut map) = self.0.lock() else {
            return Status::InternalFailure;
        };
        let current = map.get(&key).map(|(_, c)| *c);
        if cas != 0 && current != Some(cas) {
            return Status::CasMismatch;
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        map.insert(key, (value, next));
        Status::Ok
    }
}

impl SharedStore for SharedData {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, Status>> {
        Box::pin(async move { Ok(self.get_now(key)) })
    }

    fn set(&self, key: String, value: Vec<u8>, cas: u32) -> BoxFuture<'_, Status> {
        Box::pin(async move { self.set_now(key, value, cas) })
    }
}

/// What `proxy_send_local_response` asked to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// An HTTP call the filter dispatched (`proxy_http_call`), for the embedder to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub cluster: String,
    /// With the pseudo-headers `:method`, `:path` and `:authority` first.
    pub headers: Headers,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// The response to an [`HttpCall`]; `None` in its place means it failed (Envoy then calls
/// back with no headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    /// With `:status` first.
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// What one instance may accumulate in the host, whatever the filter does in a loop within its
/// CPU budget: past these, host calls answer an error status (or, for logs, lines are counted
/// and dropped), so a filter cannot grow the gateway's memory without bound.
pub(crate) const MAX_LOG_LINES: usize = 1_000;
pub(crate) const MAX_PENDING_CALLS: usize = 64;
pub(crate) const MAX_METRICS: usize = 1_000;
pub(crate) const MAX_PROPERTIES: usize = 1_000;
pub(crate) const MAX_FIELDS: usize = 1_000;

/// A metric the filter defined: its kind, name and the value it reads back.
struct Metric {
    kind: MetricKind,
    name: String,
    value: i64,
}

/// The host's side of one instance.
pub struct State<T> {
    /// The embedder's own data (limits, accounting).
    pub user: T,
    pub(crate) env: Env,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) request_headers: Headers,
    pub(crate) request_trailers: Headers,
    pub(crate) response_headers: Headers,
    pub(crate) response_trailers: Headers,
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_body: Vec<u8>,
    /// The HTTP call response being delivered (`proxy_on_http_call_response`).
    pub(crate) call_response: CallResponse,
    pub(crate) local: Option<LocalResponse>,
    /// `proxy_continue_stream` was called for the request (0) or the response (1).
    pub(crate) resumed: [bool; 2],
    pub(crate) logs: Vec<(u32, String)>,
    /// Log lines dropped past [`MAX_LOG_LINES`] since the logs were last taken.
    pub(crate) logs_dropped: usize,
    pub(crate) tick_ms: u32,
    /// Properties set for this request (by the filter, or the embedder's additions), by path,
    /// the parts joined with `.`; they hide the source's.
    pub(crate) properties: HashMap<String, Vec<u8>>,
    /// The request's own properties.
    pub(crate) source: Option<Box<dyn PropertySource>>,
    /// The `plugin_root_id` property.
    pub(crate) root_id: Vec<u8>,
    /// HTTP calls dispatched and not yet taken by the embedder.
    pub(crate) calls: Vec<HttpCall>,
    pub(crate) next_token: u32,
    metrics: Vec<Metric>,
}

impl<T> State<T> {
    pub(crate) fn new(user: T, env: Env, vm_config: Vec<u8>, plugin_config: Vec<u8>) -> Self {
        State {
            user,
            env,
            vm_config,
            plugin_config,
            request_headers: Vec::new(),
            request_trailers: Vec::new(),
            response_headers: Vec::new(),
            response_trailers: Vec::new(),
            request_body: Vec::new(),
            response_body: Vec::new(),
            call_response: CallResponse::default(),
            local: None,
            resumed: [false; 2],
            logs: Vec::new(),
            logs_dropped: 0,
            tick_ms: 0,
            properties: HashMap::new(),
            source: None,
            root_id: Vec::new(),
            calls: Vec::new(),
            next_token: 1,
            metrics: Vec::new(),
        }
    }

    pub(crate) fn map(&mut self, map: u32) -> Option<&mut Headers> {
        match map {
            abi::MAP_REQUEST_HEADERS => Some(&mut self.request_headers),
            abi::MAP_REQUEST_TRAILERS => Some(&mut self.request_trailers),
            abi::MAP_RESPONSE_HEADERS => Some(&mut self.response_headers),
            abi::MAP_RESPONSE_TRAILERS => Some(&mut self.response_trailers),
            abi::MAP_HTTP_CALL_RESPONSE_HEADERS => Some(&mut self.call_response.headers),
            abi::MAP_HTTP_CALL_RESPONSE_TRAILERS => Some(&mut self.call_response.trailers),
            _ => None,
        }
    }

    /// A property: one set for this request, else the root id, else the request's own.
    pub(crate) fn property(&self, path: &str) -> Option<Vec<u8>> {
        if let Some(v) = self.properties.get(path) {
            return Some(v.clone());
        }
        if path == "plugin_root_id" {
            return Some(self.root_id.clone());
        }
        self.source.as_ref()?.get(path)
    }

    /// The header map of one side of the stream.
    pub(crate) fn head(&mut self, side: crate::Side) -> &mut Headers {
        match side {
            crate::Side::Request => &mut self.request_headers,
            crate::Side::Response => &mut self.response_headers,
        }
    }

    /// The trailers of one side of the stream.
    pub(crate) fn trailers(&mut self, side: crate::Side) -> &mut Headers {
        match side {
            crate::Side::Request => &mut self.request_trailers,
            crate::Side::Response => &mut self.response_trailers,
        }
    }

    /// The body buffer of one side of the stream.
    pub(crate) fn body(&mut self, side: crate::Side) -> &mut Vec<u8> {
        match side {
            crate::Side::Request => &mut self.request_body,
            crate::Side::Response => &mut self.response_body,
        }
    }

    /// A buffer the filter may read (and, for bodies, change).
    pub(crate) fn buffer(&mut self, kind: u32) -> Option<&mut Vec<u8>> {
        match kind {
            abi::BUFFER_REQUEST_BODY => Some(&mut self.request_body),
            abi::BUFFER_RESPONSE_BODY => Some(&mut self.response_body),
            abi::BUFFER_HTTP_CALL_RESPONSE_BODY => Some(&mut self.call_response.body),
            abi::BUFFER_VM_CONFIGURATION => Some(&mut self.vm_config),
            abi::BUFFER_PLUGIN_CONFIGURATION => Some(&mut self.plugin_config),
            _ => None,
        }
    }

    /// Keeps a log line, unless [`MAX_LOG_LINES`] are waiting already.
    pub(crate) fn log(&mut self, level: u32, message: String) {
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push((level, message));
        } else {
            self.logs_dropped += 1;
        }
    }

    /// Defines a metric (the same name and kind again gets the same id); `None` past
    /// [`MAX_METRICS`].
    pub(crate) fn define_metric(&mut self, kind: MetricKind, name: String) -> Option<u32> {
        let found = self
            .metrics
            .iter()
            .position(|m| m.kind == kind && m.name == name);
        let index = match found {
            Some(i) => i,
            None if self.metrics.len() >= MAX_METRICS => return None,
            None => {
                self.metrics.push(Metric {
                    kind,
                    name,
                    value: 0,
                });
                self.metrics.len() - 1
            }
        };
        Some(index as u32)
    }

    /// Adds `delta` (counters, gauges) or records `value` (histograms, gauges set).
    pub(crate) fn metric(&mut self, id: u32, value: i64, set: bool) -> Status {
        let Some(m) = self.metrics.get_mut(id as usize) else {
            return Status::NotFound;
        };
        let delta = match (m.kind, set) {
            (MetricKind::Histogram, _) => value,
            (MetricKind::Counter, true) => value.saturating_sub(m.value).max(0),
            (_, true) => value.saturating_sub(m.value),
            (_, false) => value,
        };
        if m.kind == MetricKind::Counter && delta < 0 {
            return Status::BadArgument;
        }
        m.value = match m.kind {
            MetricKind::Histogram => value,
            _ => m.value.saturating_add(delta),
        };
        self.env.metrics.record(m.kind, &m.name, delta);
        Status::Ok
    }

    pub(crate) fn metric_value(&self, id: u32) -> Option<i64> {
        self.metrics.get(id as usize).map(|m| m.value)
    }

    /// Starts an HTTP call; its token.
    pub(crate) fn dispatch(&mut self, mut call: HttpCall) -> Result<u32, Status> {
        if !self.env.clusters.contains(&call.cluster) {
            self.log(
                abi::LOG_WARN,
                format!(
                    "proxy_http_call to cluster \"{}\" refused: not granted (outbound)",
                    call.cluster
                ),
            );
            return Err(Status::BadArgument);
        }
        let has = |name: &str| call.headers.iter().any(|(k, _)| k == name);
        if !has(":method") || !has(":path") {
            return Err(Status::BadArgument);
        }
        if self.calls.len() >= MAX_PENDING_CALLS {
            return Err(Status::InternalFailure);
        }
        call.token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        let token = call.token;
        self.calls.push(call);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_refuses_a_write_with_a_stale_cas() {
        let d = SharedData::default();
        assert_eq!(
            d.set_now("k".into(), b"1".to_vec(), 7),
            Status::CasMismatch,
            "absent key, cas 7"
        );
        assert_eq!(d.set_now("k".into(), b"1".to_vec(), 0), Status::Ok);
        let (v, cas) = d.get_now("k").expect("set");
        assert_eq!((v.as_slice(), cas), (&b"1"[..], 1));
        assert_eq!(d.set_now("k".into(), b"2".to_vec(), cas), Status::Ok);
        assert_eq!(
            d.set_now("k".into(), b"3".to_vec(), cas),
            Status::CasMismatch,
            "stale"
        );
        assert_eq!(d.get_now("k"), Some((b"2".to_vec(), 2)));
    }

    #[test]
    fn counters_only_grow_and_gauges_are_set() {
        let mut s = State::new((), Env::default(), Vec::new(), Vec::new());
        let c = s
            .define_metric(MetricKind::Counter, "c".into())
            .expect("defined");
        assert_eq!(s.define_metric(MetricKind::Counter, "c".into()), Some(c));
        assert_eq!(s.metric(c, 2, false), Status::Ok);
        assert_eq!(s.metric(c, -1, false), Status::BadArgument);
        assert_eq!(s.metric_value(c), Some(2));
        let g = s
            .define_metric(MetricKind::Gauge, "g".into())
            .expect("defined");
        assert_eq!(s.metric(g, 5, true), Status::Ok);
        assert_eq!(s.metric(g, 3, true), Status::Ok);
        assert_eq!(s.metric_value(g), Some(3));
        assert_eq!(s.metric(99, 1, false), Status::NotFound);
    }

    #[test]
    fn calls_go_only_to_granted_clusters_with_a_method_and_path() {
        let env = Env {
            clusters: Arc::from(["auth".to_string()]),
            ..Env::default()
        };
        let mut s = State::new((), env, Vec::new(), Vec::new());
        let call = |cluster: &str, headers: &[(&str, &str)]| HttpCall {
            token: 0,
            cluster: cluster.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        let ok = [(":method", "GET"), (":path", "/")];
        assert_eq!(s.dispatch(call("other", &ok)), Err(Status::BadArgument));
        assert_eq!(
            s.dispatch(call("auth", &[(":path", "/")])),
            Err(Status::BadArgument)
        );
        assert_eq!(s.dispatch(call("auth", &ok)), Ok(1));
        assert_eq!(s.dispatch(call("auth", &ok)), Ok(2));
        assert_eq!(s.calls.len(), 2);
        for _ in 2..MAX_PENDING_CALLS {
            assert!(s.dispatch(call("auth", &ok)).is_ok());
        }
        assert_eq!(
            s.dispatch(call("auth", &ok)),
            Err(Status::InternalFailure),
            "past the pending calls' bound"
        );
    }

    #[test]
    fn what_a_filter_piles_up_in_the_host_is_bounded() {
        let mut s = State::new((), Env::default(), Vec::new(), Vec::new());
        for i in 0..MAX_LOG_LINES + 5 {
            s.log(2, format!("line {i}"));
        }
        assert_eq!((s.logs.len(), s.logs_dropped), (MAX_LOG_LINES, 5));
        for i in 0..MAX_METRICS {
            assert!(
                s.define_metric(MetricKind::Counter, format!("m{i}"))
                    .is_some()
            );
        }
        assert_eq!(
            s.define_metric(MetricKind::Counter, "one more".into()),
            None
        );
        assert_eq!(s.define_metric(MetricKind::Counter, "m0".into()), Some(0));
    }
}
