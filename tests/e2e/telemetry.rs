//! Traces over OTLP: an in-test collector decodes the real OTLP protobuf (the
//! `opentelemetry-proto` types) over gRPC and over HTTP, and the tests check the spans of
//! requests through a plugin chain to an upstream, and what the upstream received.

use crate::support::{Backend, Gateway, free_port, plugins_toml};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Spans = Arc<Mutex<Vec<Span>>>;

fn collect(into: &Spans, req: ExportTraceServiceRequest) {
    let mut spans = into.lock().unwrap_or_else(|p| p.into_inner());
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            spans.extend(ss.spans);
        }
    }
}

struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        collect(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC collector on a loopback port.
async fn grpc_collector() -> (u16, Spans) {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let service = TraceServiceServer::new(Grpc(spans.clone()));
    tokio::spawn(async move {
        let incoming = tokio_stream_from(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (port, spans)
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

/// An OTLP/HTTP (protobuf) collector on a loopback port.
async fn http_collector() -> (u16, Spans) {
    use http_body_util::BodyExt;
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let store = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if let Ok(decoded) = ExportTraceServiceRequest::decode(body.as_ref()) {
                                collect(&store, decoded);
                            }
                            let reply = ExportTraceServiceResponse {
                                partial_success: None,
                            }
                            .encode_to_vec();
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(reply)))
                                    .expect("response"),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

async fn wait_spans(spans: &Spans, n: usize) -> Vec<Span> {
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    loop {
        let got = spans.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} spans: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway exporting to `endpoint`, with a 3-plugin chain in front of `backend`.
fn gateway(backend: &Backend, telemetry: &str) -> Gateway {
    let config = format!(
        "[telemetry]\n{telemetry}\n[upstreams.app]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"traced\"\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"probe\", config = {{ tag = \"a\" }} }},\n\
         {{ plugin = \"headers\", config = {{ request = {{ set = {{ \"x-h\" = \"1\" }} }} }} }},\n\
         {{ plugin = \"api-key\", config = {{ keys = {{ \"k\" = \"alice\" }} }} }},\n]\n",
        backend.endpoint(),
        plugins_toml(&[("probe", ""), ("headers", ""), ("api-key", "")]),
    );
    // Export every 100 ms instead of every 5 s, so the test does not wait.
    Gateway::start_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
}

// Multi-threaded: the collector and the echo backend run on the test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_three_plugins_is_one_trace_over_grpc_and_http() {
    for protocol in ["grpc", "http"] {
        let (port, spans) = if protocol == "grpc" {
            grpc_collector().await
        } else {
            http_collector().await
        };
        let endpoint = if protocol == "grpc" {
            format!("http://127.0.0.1:{port}")
        } else {
            format!("http://127.0.0.1:{port}/v1/traces")
        };
        let backend = Backend::start("app").await;
        let gw = gateway(
            &backend,
            &format!("endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\""),
        );
        let r = crate::support::get_with(&gw.url("/work"), &[("x-api-key", "k")]).await;
        assert_eq!(r.status.as_u16(), 200);
        let upstream_saw = r
            .seen("traceparent")
            .expect("the upstream got a traceparent");

        // 1 request + 3 request hooks + 1 response hook (probe) + 1 upstream attempt.
        let got = wait_spans(&spans, 6).await;
        assert_eq!(got.len(), 6, "{protocol}: {got:#?}");
        let server = got.iter().find(|s| s.kind == 2).expect("a server span");
        assert_eq!(attr(server, "weir.route").as_deref(), Some("traced"));
        assert_eq!(
            attr(server, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attr(server, "enduser.id").as_deref(), Some("alice"));
        let trace = server.trace_id.clone();
        assert!(got.iter().all(|s| s.trace_id == trace), "one trace");
        let hooks: Vec<&Span> = got
            .iter()
            .filter(|s| attr(s, "weir.plugin").is_some())
            .collect();
        assert_eq!(hooks.len(), 4);
        for h in &hooks {
            assert_eq!(
                h.parent_span_id, server.span_id,
                "hook spans are children of the request"
            );
            assert_eq!(attr(h, "weir.decision").as_deref(), Some("continue"));
            assert!(attr(h, "weir.plugin.digest").is_some_and(|d| d.starts_with("sha256:")));
        }
        let mut plugins: Vec<String> = hooks
            .iter()
            .filter(|h| attr(h, "weir.phase").as_deref() == Some("on_request"))
            .filter_map(|h| attr(h, "weir.plugin"))
            .collect();
        plugins.sort();
        assert_eq!(plugins, ["api-key", "headers", "probe"]);
        let upstream = got.iter().find(|s| s.kind == 3).expect("a client span");
        assert_eq!(upstream.parent_span_id, server.span_id);
        assert_eq!(attr(upstream, "weir.upstream").as_deref(), Some("app"));
        // The upstream got this trace, with the upstream span as parent.
        assert_eq!(
            upstream_saw,
            format!("00-{}-{}-01", hex(&trace), hex(&upstream.span_id))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_traceparent_is_continued() {
    let (port, spans) = grpc_collector().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&backend, &format!("endpoint = \"http://127.0.0.1:{port}\""));
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let r = crate::support::get_with(
        &gw.url("/work"),
        &[
            ("x-api-key", "k"),
            ("traceparent", &format!("00-{trace}-{parent}-01")),
        ],
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    let saw = r.seen("traceparent").expect("traceparent upstream");
    assert!(saw.starts_with(&format!("00-{trace}-")), "{saw}");
    let got = wait_spans(&spans, 6).await;
    let server = got.iter().find(|s| s.kind == 2).expect("server span");
    assert_eq!(hex(&server.trace_id), trace);
    assert_eq!(
        hex(&server.parent_span_id),
        parent,
        "the client's span is the parent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_requests_go_on_and_lost_spans_are_counted() {
    let backend = Backend::start("app").await;
    let dead = free_port();
    let admin = free_port();
    let config = format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n[telemetry]\nendpoint = \"http://127.0.0.1:{dead}\"\ntimeout = \"500ms\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
        backend.endpoint()
    );
    let gw = Gateway::start_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    for _ in 0..50 {
        let r = crate::support::get(&gw.url("/x")).await;
        assert_eq!(r.status.as_u16(), 200);
    }
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    loop {
        let m = crate::support::get(&format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .text();
        let dropped = m
            .lines()
            .find_map(|l| l.strip_prefix("weir_telemetry_spans_dropped_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if dropped > 0 {
            assert!(m.contains("weir_telemetry_spans_exported_total 0"), "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for dropped spans to be counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The request span of the first trace whose server span has `attribute`.
fn server_span_with<'a>(spans: &'a [Span], attribute: &str) -> Option<&'a Span> {
    spans
        .iter()
        .find(|s| s.kind == 2 && attr(s, attribute).is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_tool_calls_carry_gen_ai_and_mcp_attributes() {
    let (port, spans) = grpc_collector().await;
    let provider = crate::llm::Provider::start(&[]);
    let mcp = crate::mcp::McpServer::python(&[]);
    let config = format!(
        "[telemetry]\nendpoint = \"http://127.0.0.1:{port}\"\n\
         [upstreams.fake]\nendpoints = [\"http://127.0.0.1:{}\"]\n[upstreams.py]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"llm\"\nmatch = {{ path_prefix = \"/v1\" }}\n[[routes.chain]]\nplugin = \"llm-gateway\"\n\
         [routes.chain.config.providers]\nan = {{ upstream = \"fake\", format = \"anthropic\" }}\n\
         [routes.chain.config.models]\nclaude = [{{ provider = \"an\", model = \"claude-x\" }}]\n\
         [[routes]]\nname = \"mcp\"\nmatch = {{ path_prefix = \"/mcp\" }}\nchain = [\n\
         {{ plugin = \"mcp-policy\", config = {{ rules = [{{ principals = [\"*\"], allow = [\"py_*\"] }}] }} }},\n\
         {{ plugin = \"mcp-gateway\", config = {{ servers = {{ py = {{ upstream = \"py\" }} }} }} }},\n]\n",
        provider.port,
        mcp.endpoint(),
        plugins_toml(&[
            (
                "llm-gateway",
                "capabilities = { outbound = [\"fake\"], kv = \"llm\", metrics = true, secrets = [] }"
            ),
            ("mcp-policy", "capabilities = { metrics = true }"),
            (
                "mcp-gateway",
                "capabilities = { outbound = [\"py\"], kv = \"mcp\", secrets = [] }"
            ),
        ]),
    );
    let gw = Gateway::start_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let post = |path: &str, headers: Vec<(&'static str, &'static str)>, body: &'static str| {
        let mut b = http::Request::post(gw.url(path)).header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        crate::support::send(
            b.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .expect("request"),
        )
    };
    let r = post(
        "/v1/chat/completions",
        vec![],
        r#"{"model":"claude","messages":[{"role":"user","content":"hello there"}]}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let r = post(
        "/mcp",
        vec![
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "py_add"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"py_add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    let (llm, tool) = loop {
        let got = spans.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let llm = server_span_with(&got, "gen_ai.request.model").cloned();
        let tool = server_span_with(&got, "mcp.tool").cloned();
        if let (Some(l), Some(t)) = (llm.clone(), tool.clone()) {
            break (l, t);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the LLM and MCP spans: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        attr(&llm, "gen_ai.request.model").as_deref(),
        Some("claude")
    );
    assert_eq!(attr(&llm, "gen_ai.system").as_deref(), Some("anthropic"));
    assert_eq!(attr(&llm, "gen_ai.provider.name").as_deref(), Some("an"));
    assert_eq!(
        attr(&llm, "gen_ai.response.model").as_deref(),
        Some("claude-x")
    );
    assert_eq!(attr(&tool, "mcp.tool").as_deref(), Some("py_add"));
    assert_eq!(attr(&tool, "mcp.server").as_deref(), Some("py"));
    assert_eq!(attr(&tool, "mcp.decision").as_deref(), Some("allow"));
    assert_eq!(attr(&tool, "mcp.status").as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_wasm_filter_gets_a_span_per_callback_in_the_request_trace() {
    let (port, spans) = grpc_collector().await;
    let backend = Backend::start("app").await;
    let auth = crate::proxy_wasm::AuthService::start("x-token", &[("good", "alice")]).await;
    let filter = crate::proxy_wasm::rust_filter("rust-sdk-filters", None);
    let config = format!(
        "[telemetry]\nendpoint = \"http://127.0.0.1:{port}\"\nprotocol = \"grpc\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[upstreams.auth]\nendpoints = [\"{}\"]\n\
         [plugins.sdk]\npath = {:?}\nkind = \"proxy-wasm\"\nbody = \"none\"\n\
         capabilities = {{ outbound = [\"auth\"] }}\n\
         [[routes]]\nname = \"traced\"\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"sdk\", config = {{ auth = {{ cluster = \"auth\", path = \"/check\" }} }} }},\n]\n",
        backend.endpoint(),
        auth.endpoint(),
        filter.display().to_string(),
    );
    let gw = Gateway::start_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let r = crate::support::get_with(&gw.url("/"), &[("x-token", "good")]).await;
    assert_eq!(r.status.as_u16(), 200);

    // The request, its two hooks, the upstream attempt, and the filter's five callbacks.
    let got = wait_spans(&spans, 9).await;
    assert_eq!(got.len(), 9, "{got:#?}");
    let server = got.iter().find(|s| s.kind == 2).expect("a server span");
    let phase = |name: &str| {
        got.iter()
            .find(|s| attr(s, "weir.phase").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no span for {name}: {got:#?}"))
    };
    for (callback, decision) in [
        ("proxy_on_context_create", "done"),
        ("proxy_on_request_headers", "pause"),
        ("proxy_on_http_call_response", "continue"),
        ("proxy_on_response_headers", "continue"),
        ("proxy_on_done", "done"),
    ] {
        let span = phase(callback);
        assert_eq!(span.parent_span_id, server.span_id, "{callback}");
        assert_eq!(span.trace_id, server.trace_id, "{callback}");
        assert_eq!(attr(span, "weir.plugin").as_deref(), Some("sdk"));
        assert_eq!(
            attr(span, "weir.decision").as_deref(),
            Some(decision),
            "{callback}"
        );
    }
    assert_eq!(
        attr(phase("on_request"), "weir.decision").as_deref(),
        Some("continue")
    );
}
