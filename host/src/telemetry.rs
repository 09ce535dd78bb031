//! Traces over OTLP. With `[telemetry]` configured, every request gets a server span (continuing
//! a client's W3C `traceparent`), each plugin hook a child span, and each upstream attempt a
//! client span whose context goes upstream in `traceparent`. Spans are exported in batches by a
//! background thread (gRPC or HTTP/protobuf), never on the request path; a full queue drops
//! spans, and a failed export counts its spans in `weir_telemetry_spans_dropped_total`.
//!
//! Without `[telemetry]` the tracer is a no-op: spans cost nothing and headers pass untouched.

use crate::body::Body;
use crate::config::{OtlpProtocol, TelemetryConfig};
use crate::exchange::LateAttributes;
use http_body_util::BodyExt;
use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static DROPPED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Spans lost because the collector could not take them (exports that failed).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Spans the collector accepted.
pub fn exported() -> u64 {
    EXPORTED.load(Ordering::Relaxed)
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// An exporter that counts what it exported and what it lost.
#[derive(Debug)]
struct Counting<E>(E);

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        match &result {
            Ok(()) => EXPORTED.fetch_add(n, Ordering::Relaxed),
            Err(_) => DROPPED.fetch_add(n, Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// Starts exporting as `config` says. Must run inside the main tokio runtime (gRPC needs it).
pub fn init(config: &TelemetryConfig) -> anyhow::Result<()> {
    // The HTTP exporter's client (reqwest) uses the process-wide rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = config.timeout.0;
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &config.headers {
                if let (Ok(k), Ok(v)) = (
                    tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                    v.parse(),
                ) {
                    metadata.insert(k, v);
                }
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(timeout)
                .with_metadata(metadata)
                .build()?
        }
        OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(timeout)
            .with_headers(config.headers.clone().into_iter().collect())
            .build()?,
    };
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Counting(exporter))
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    global::set_tracer_provider(provider.clone());
    let _ = PROVIDER.set(provider);
    ENABLED.store(true, Ordering::Relaxed);
    tracing::info!(endpoint = %config.endpoint, protocol = ?config.protocol, sampling = config.sampling, "exporting traces over OTLP");
    Ok(())
}

/// Flushes what is queued (at shutdown).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

fn tracer() -> BoxedTracer {
    global::tracer("weir")
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The request's server span, continuing the client's `traceparent` if it sent one.
pub fn request(parts: &http::request::Parts, route: &str, client: std::net::SocketAddr) -> Context {
    if !enabled() {
        return Context::new();
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&parts.headers));
    let span = tracer()
        .span_builder(format!("{} {route}", parts.method))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", parts.method.to_string()),
            KeyValue::new("url.path", parts.uri.path().to_string()),
            KeyValue::new("weir.route", route.to_string()),
            KeyValue::new("client.address", client.ip().to_string()),
        ])
        .start_with_context(&tracer(), &parent);
    parent.with_span(span)
}

/// The trace id of `cx` as 32 hex digits, if it is a recording span's.
pub fn trace_id(cx: &Context) -> Option<String> {
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Ends the request span with the response's status, the principal, and the attributes plugins
/// asked for: every context attribute named `trace.<key>` becomes span attribute `<key>` (e.g.
/// `trace.gen_ai.request.model` → `gen_ai.request.model`).
pub fn finish_request(cx: &Context, status: u16, context: &crate::exchange::Context) {
    if !enabled() {
        return;
    }
    let span = cx.span();
    for (k, v) in &context.attributes {
        if let Some(key) = k.strip_prefix("trace.") {
            span.set_attribute(KeyValue::new(key.to_string(), v.clone()));
        }
    }
    let principal = context.principal.as_deref();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if let Some(p) = principal {
        span.set_attribute(KeyValue::new("enduser.id", p.to_string()));
    }
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
}

/// Ends the request span, with the attributes body hooks added.
pub fn end_request(cx: &Context, late: &LateAttributes) {
    if !enabled() {
        return;
    }
    let span = cx.span();
    let late = std::mem::take(&mut *late.lock().unwrap_or_else(|p| p.into_inner()));
    for (k, v) in late {
        if let Some(key) = k.strip_prefix("trace.") {
            span.set_attribute(KeyValue::new(key.to_string(), v));
        }
    }
    span.end();
}

/// `body`, ending the request span when it has been sent (or dropped, if the client left).
pub fn end_with_body(body: Body, cx: Context, late: LateAttributes) -> Body {
    if !enabled() {
        return body;
    }
    EndsSpan {
        inner: body,
        span: Some((cx, late)),
    }
    .boxed_unsync()
}

struct EndsSpan {
    inner: Body,
    span: Option<(Context, LateAttributes)>,
}

impl EndsSpan {
    fn end(&mut self) {
        if let Some((cx, late)) = self.span.take() {
            end_request(&cx, &late);
        }
    }
}

impl Drop for EndsSpan {
    fn drop(&mut self) {
        self.end();
    }
}

impl http_body::Body for EndsSpan {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A span for one plugin hook, child of the request span.
pub fn hook(cx: &Context, plugin: &str, digest: &str, phase: &'static str) -> Option<BoxedSpan> {
    if !enabled() {
        return None;
    }
    Some(
        tracer()
            .span_builder(format!("plugin {plugin} {phase}"))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("weir.plugin", plugin.to_string()),
                KeyValue::new("weir.plugin.digest", digest.to_string()),
                KeyValue::new("weir.phase", phase),
            ])
            .start_with_context(&tracer(), cx),
    )
}

/// Ends a hook span with its decision or failure.
pub fn end_hook(span: Option<BoxedSpan>, outcome: Result<String, String>) {
    let Some(mut span) = span else { return };
    match outcome {
        Ok(decision) => span.set_attribute(KeyValue::new("weir.decision", decision)),
        Err(e) => {
            span.set_attribute(KeyValue::new("weir.decision", "failed"));
            span.set_status(Status::error(e));
        }
    }
    span.end();
}

/// A client span for one upstream attempt; its context goes upstream in `traceparent`
/// (replacing the client's, which is this span's ancestor).
pub fn upstream(cx: &Context, name: &str, headers: &mut http::HeaderMap) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let span = tracer()
        .span_builder(format!("upstream {name}"))
        .with_kind(SpanKind::Client)
        .with_attributes([KeyValue::new("weir.upstream", name.to_string())])
        .start_with_context(&tracer(), cx);
    let child = cx.with_span(span);
    TraceContextPropagator::new().inject_context(&child, &mut HeaderInjector(headers));
    Some(child)
}

/// Ends an upstream span with the status it got, or the error, and the tries it took.
pub fn end_upstream(cx: Option<Context>, outcome: Result<u16, String>, attempts: u32) {
    let Some(cx) = cx else { return };
    let span = cx.span();
    span.set_attribute(KeyValue::new("weir.upstream.attempts", i64::from(attempts)));
    match outcome {
        Ok(status) => {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(format!("HTTP {status}")));
            }
        }
        Err(e) => span.set_status(Status::error(e)),
    }
    span.end();
}
