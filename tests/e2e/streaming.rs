//! Streamed bodies through plugins: an SSE stream observed event by event (`sse-meter`),
//! request and response bodies transformed chunk by chunk (`probe`), backpressure, and a plugin
//! failing mid-stream.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::time::Duration;

/// The value of one Prometheus sample, found by metric name and exact label set.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn sse_events_flow_through_a_metering_plugin_as_they_come() {
    let backend = Backend::start("llm").await;
    let admin = free_port();
    let gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n[upstreams.llm]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"sse\"\nupstream = \"llm\"\nchain = [{{ plugin = \"sse-meter\" }}]\n",
        backend.endpoint(),
        plugins_toml(&[("sse-meter", "capabilities = { metrics = true }")])
    ));

    // 1,000 events: the backend sends 500 at once and holds the rest until the client has
    // received those 500, which it can only do if the gateway passes events on as they come.
    // HTTP/2, so the trailer reaches the client.
    let resp = hang_guard(
        "the stream's head",
        h2c_client().request(
            Request::get(gw.url("/gated-events/1000/500"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        ),
    )
    .await
    .expect("response");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let mut body = resp.into_body();
    let mut text = Vec::new();
    let mut trailers = None;
    let mut gate_open = false;
    while let Some(frame) = hang_guard(
        "the next event (the first 500 while the backend holds the rest: events held back?)",
        body.frame(),
    )
    .await
    {
        let frame = frame.expect("frame");
        if let Some(t) = frame.trailers_ref() {
            trailers = Some(t.clone());
        } else if let Some(d) = frame.data_ref() {
            text.extend_from_slice(d);
        }
        if !gate_open && text.ends_with(b"data: event 499\n\n") {
            gate_open = true;
            backend.open_gate();
        }
    }
    assert!(gate_open, "the stream ended without event 499");
    let text = String::from_utf8(text).expect("utf-8");
    assert_eq!(
        text.matches("\n\n").count(),
        1000,
        "every event arrives intact"
    );
    assert!(text.starts_with("id: 0\ndata: event 0\n\n") && text.ends_with("data: event 999\n\n"));
    let trailers = trailers.expect("trailers");
    assert_eq!(
        trailers
            .get("x-weir-sse-events")
            .map(|v| v.to_str().unwrap_or("")),
        Some("1000")
    );

    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        sample(
            &metrics.text(),
            "weir_plugin_sse_events_total{plugin=\"sse-meter\",route=\"sse\"}"
        ),
        Some(1000.0),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .text()
            .contains("# TYPE weir_plugin_sse_events_total counter")
    );

    // A JSON response is not metered.
    let r = get(&gw.url("/plain")).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["path"] == "/plain");
}

fn probe_route(backend: &Backend, config: &str, on_error: &str) -> String {
    format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"probe\", on_error = \"{on_error}\", config = {{ {config} }} }}]\n",
        backend.endpoint(),
        plugins_toml(&[("probe", "")])
    )
}

#[tokio::test]
async fn request_and_response_bodies_are_transformed_chunk_by_chunk() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&probe_route(&backend, "upper_stream = true", "fail-closed"));
    // A chunked upload in several frames.
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = ["hello ", "streamed ", "world"]
        .into_iter()
        .map(|c| Ok(Frame::data(Bytes::from(c))))
        .collect();
    let req = Request::post(gw.url("/upload"))
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let r = read(client.request(req).await.expect("upload")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "HELLO STREAMED WORLD");

    // The same instance streams the request body up and then runs its response hook.
    let gw = Gateway::start(&probe_route(
        &backend,
        "upper_stream = true, tag = \"t1\"",
        "fail-closed",
    ));
    let r = post(&gw.url("/upload"), "both phases").await;
    assert_eq!(r.json()["body"], "BOTH PHASES");
    assert_eq!(r.seen("x-chain").as_deref(), Some("t1"));
    assert_eq!(r.header("x-chain").as_deref(), Some("t1"));
    assert!(
        r.seen("content-length").is_none(),
        "a streamed body has no length"
    );

    let gw = Gateway::start(&probe_route(
        &backend,
        "stream_tag = \"-end\"",
        "fail-closed",
    ));
    let r = get(&gw.url("/bytes/200000")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 200_000 + 4, "the tail comes after the body");
    assert!(r.body.ends_with(b"xx-end"));
}

#[tokio::test]
async fn a_plugin_failing_mid_stream_follows_on_error() {
    let backend = Backend::start("app").await;
    let open = Gateway::start(&probe_route(
        &backend,
        "fail = \"trap\", fail_in = \"chunk\"",
        "fail-open",
    ));
    let r = get(&open.url("/bytes/100000")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body.len(),
        100_000,
        "fail-open: the body passes unchanged"
    );
    assert!(open.log().contains("skipped (fail-open)"), "{}", open.log());

    let closed = Gateway::start(&probe_route(
        &backend,
        "fail = \"trap\", fail_in = \"chunk\"",
        "fail-closed",
    ));
    let resp = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(
            Request::get(closed.url("/bytes/100000"))
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("head");
    assert_eq!(resp.status(), 200, "the head went out before the body");
    assert!(
        resp.into_body().collect().await.is_err(),
        "fail-closed: the client sees a broken body, not a clean end"
    );
    assert!(
        closed
            .log()
            .lines()
            .any(|l| l.contains("request refused (fail-closed)") && l.contains("trapped")),
        "{}",
        closed.log()
    );
}

#[tokio::test]
async fn a_slow_client_holds_the_upstream_back() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&probe_route(&backend, "stream_tag = \"!\"", "fail-closed"));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    // Warm up, then measure.
    let _ = get(&gw.url("/bytes/1000")).await;
    let baseline = gw.rss_kib();
    let resp = client
        .request(
            Request::get(gw.url("/bytes/209715200"))
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("head");
    let mut body = resp.into_body();
    let mut read = 0usize;
    while read < (1 << 20) {
        read += body
            .frame()
            .await
            .expect("frame")
            .expect("ok")
            .data_ref()
            .map_or(0, |d| d.len());
    }
    // Stop reading for a while: with backpressure the gateway holds a few chunks, not 200 MiB.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let grown = gw.rss_kib().saturating_sub(baseline);
    assert!(
        grown < 48 * 1024,
        "gateway grew by {grown} KiB while the client paused"
    );
    drop(body);
}
