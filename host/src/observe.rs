//! The request path's one reporting point. Every span, metric and access-log line of a request
//! goes through the [`Observer`] its snapshot holds: the request and upstream spans and series
//! from `proxy`, the hook spans and series from `chain` (all four hook kinds, one place).
//!
//! The series live in a [`RequestMetrics`] that outlives reloads (the runtime's `Services`); the
//! access log and the OTLP exporter are process-wide sinks opened once by `gateway::run`, like
//! the diagnostic log. Nothing on the request path reaches them except through this type.

use crate::exchange::{Context as PluginContext, Exchange, LateAttributes};
use crate::plugin::{Hook, HookFailure, LoadedPlugin};
use crate::request_metrics::{RequestMetrics, RouteSeries, UpstreamSeries};
use crate::upstream::UpstreamError;
use opentelemetry::Context as Trace;
use opentelemetry::global::BoxedSpan;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Observer {
    metrics: Arc<RequestMetrics>,
}

/// A hook call in progress: its span (when tracing) and its start.
pub(crate) struct HookCall {
    span: Option<BoxedSpan>,
    started: Instant,
}

/// An upstream attempt in progress: its client span's context (when tracing).
pub(crate) struct UpstreamCall(Option<Trace>);

/// What the access log needs from the request, captured at the start (the head is rewritten and
/// handed on later). `None` fields when there is no access log: nothing is copied then.
pub(crate) struct RequestStart {
    started: Instant,
    logged: Option<(String, String)>,
    client: SocketAddr,
}

/// Who answered a request, for its metrics and access-log line.
#[derive(Default)]
pub(crate) struct Answered {
    pub route: Option<Arc<str>>,
    /// The route's series (`None`: no route matched).
    pub series: Option<Arc<RouteSeries>>,
    pub principal: Option<String>,
    pub upstream: Option<String>,
    /// Tries the upstream call took (retries included).
    pub upstream_attempts: Option<u32>,
    pub trace_id: Option<String>,
}

impl Observer {
    pub(crate) fn new(metrics: Arc<RequestMetrics>) -> Observer {
        Observer { metrics }
    }

    /// Whether access-log fields are worth collecting.
    pub(crate) fn access_enabled(&self) -> bool {
        crate::access_log::access_enabled()
    }

    pub(crate) fn request_started(
        &self,
        req: &http::Request<impl Sized>,
        client: SocketAddr,
    ) -> RequestStart {
        RequestStart {
            started: Instant::now(),
            logged: self
                .access_enabled()
                .then(|| (req.method().to_string(), req.uri().path().to_string())),
            client,
        }
    }

    /// The request's server span (a no-op context when tracing is off).
    pub(crate) fn request_span(
        &self,
        parts: &http::request::Parts,
        route: &str,
        client: SocketAddr,
    ) -> Trace {
        crate::telemetry::request(parts, route, client)
    }

    /// Records the finished exchange's identity for the metrics and the access log.
    pub(crate) fn answered(
        &self,
        ex: &Exchange,
        series: &Arc<RouteSeries>,
        upstream: Option<&(String, u32)>,
    ) -> Answered {
        let logged = self.access_enabled();
        let upstream = upstream.filter(|_| logged);
        Answered {
            route: Some(ex.route.clone()),
            series: Some(series.clone()),
            principal: ex.context.principal.clone().filter(|_| logged),
            upstream: upstream.map(|u| u.0.clone()),
            upstream_attempts: upstream.map(|u| u.1),
            trace_id: logged
                .then(|| crate::telemetry::trace_id(&ex.trace))
                .flatten(),
        }
    }

    /// Sets the response's status, the principal and `trace.*` attributes on the request span.
    pub(crate) fn response_span(&self, trace: &Trace, status: u16, context: &PluginContext) {
        crate::telemetry::finish_request(trace, status, context);
    }

    /// `body`, ending the request span once it has been sent.
    pub(crate) fn end_span_with_body(
        &self,
        body: crate::body::Body,
        trace: Trace,
        late: LateAttributes,
    ) -> crate::body::Body {
        crate::telemetry::end_with_body(body, trace, late)
    }

    /// A request answered 503 before routing because the gateway is overloaded.
    pub(crate) fn shed(&self, reason: &'static str) {
        self.metrics.shed(reason);
    }

    /// A request on `listener` ended by a timeout of `kind` (e.g. `request_body`).
    pub(crate) fn timed_out(&self, listener: &str, kind: &'static str) {
        self.metrics.connection_timeout(listener, kind);
    }

    /// The one exit: the request's series and its access-log line.
    pub(crate) fn request_finished(&self, start: RequestStart, status: u16, by: &Answered) {
        let elapsed = start.started.elapsed();
        match &by.series {
            Some(series) => self.metrics.request_on(series, status, elapsed),
            None => self.metrics.request("(none)", status, elapsed),
        }
        if let Some((method, path)) = start.logged {
            crate::access_log::access(serde_json::json!({
                "method": method,
                "path": path,
                "status": status,
                "route": by.route.as_deref(),
                "upstream": by.upstream.as_deref(),
                "upstream_attempts": by.upstream_attempts,
                "principal": by.principal.as_deref(),
                "client": start.client.ip().to_string(),
                "duration_ms": millis(elapsed),
                "trace_id": by.trace_id.as_deref(),
            }));
        }
    }

    pub(crate) fn hook_started(
        &self,
        trace: Option<&Trace>,
        plugin: &LoadedPlugin,
        hook: Hook,
    ) -> HookCall {
        HookCall {
            span: trace.and_then(|cx| {
                crate::telemetry::hook(cx, &plugin.name, &plugin.digest, hook.name())
            }),
            started: Instant::now(),
        }
    }

    /// Ends a hook call: its latency and failure kind, and its span with the decision.
    pub(crate) fn hook_finished<T>(
        &self,
        call: HookCall,
        plugin: &LoadedPlugin,
        hook: Hook,
        result: &Result<T, HookFailure>,
        describe: impl FnOnce(&T) -> String,
    ) {
        let failure = result.as_ref().err().map(HookFailure::kind);
        let phase = (hook.index(), hook.name());
        let elapsed = call.started.elapsed();
        self.metrics
            .hook_on(&plugin.series, phase, elapsed, failure);
        if call.span.is_some() {
            let outcome = match result {
                Ok(v) => Ok(describe(v)),
                Err(e) => Err(e.to_string()),
            };
            crate::telemetry::end_hook(call.span, outcome);
        }
    }

    /// Starts an upstream attempt: its client span, whose context goes upstream in `headers`.
    pub(crate) fn upstream_started(
        &self,
        trace: &Trace,
        name: &str,
        headers: &mut http::HeaderMap,
    ) -> UpstreamCall {
        UpstreamCall(crate::telemetry::upstream(trace, name, headers))
    }

    pub(crate) fn upstream_finished<B>(
        &self,
        call: UpstreamCall,
        series: &UpstreamSeries,
        sent: &Result<http::Response<B>, UpstreamError>,
        attempts: u32,
    ) {
        crate::telemetry::end_upstream(
            call.0,
            sent.as_ref()
                .map(|r| r.status().as_u16())
                .map_err(ToString::to_string),
            attempts,
        );
        let outcome = match sent {
            Ok(_) => "ok",
            Err(UpstreamError::Timeout { .. }) => "timeout",
            Err(UpstreamError::Overflow { .. }) => "overflow",
            Err(_) => "error",
        };
        self.metrics.upstream_on(series, outcome);
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
