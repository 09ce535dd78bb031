//! Misbehaving plugins: traps, infinite loops, memory bombs and invalid decisions are contained
//! to the request they happen in, answered per `on_error`, and never affect other requests.

use crate::support::*;
use std::time::{Duration, Instant};

fn route(name: &str, prefix: &str, chain: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"{prefix}\" }}\nupstream = \"a\"\nchain = [{chain}]\n"
    )
}

fn probe(cfg: &str, on_error: &str) -> String {
    format!("{{ plugin = \"probe\", config = {{ {cfg} }}, on_error = \"{on_error}\" }}")
}

async fn gateway_with_misbehaving_routes(policy: &str) -> (Backend, Gateway) {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "[upstreams.a]\nendpoints = [\"{}\"]\n{}{}{}{}{}{}{}{}",
        a.endpoint(),
        plugins_toml(&[(
            "probe",
            &format!("instances = \"{policy}\"\nmemory_limit = \"16MiB\"\nhook_timeout = \"50ms\""),
        )]),
        route("trap", "/trap", &probe("fail = \"trap\"", "fail-closed")),
        route(
            "trap-open",
            "/open-trap",
            &format!(
                "{}, {}",
                probe("fail = \"trap\"", "fail-open"),
                probe("tag = \"after\"", "fail-closed")
            )
        ),
        route("loop", "/loop", &probe("fail = \"loop\"", "fail-closed")),
        route("grow", "/grow", &probe("fail = \"grow\"", "fail-closed")),
        route(
            "bad",
            "/bad",
            &probe("fail = \"bad-status\"", "fail-closed")
        ),
        route(
            "resp-trap",
            "/resp-trap",
            &probe("fail = \"trap\", fail_in = \"response\"", "fail-closed")
        ),
        route(
            "ghost",
            "/ghost",
            &probe("route_to = \"nowhere\"", "fail-closed")
        ),
    ));
    (a, gw)
}

async fn assert_plugin_error(gw: &Gateway, path: &str, route: &str, what: &str) {
    let r = get(&gw.url(path)).await;
    assert_eq!(r.status, 500, "{path}: {}", r.text());
    assert_eq!(r.header("x-weir-error").as_deref(), Some("plugin"));
    let text = r.text();
    assert!(
        text.contains(&format!("plugin \"probe\" on route \"{route}\"")) && text.contains(what),
        "{path}: {text}"
    );
    assert_eq!(
        r.header("x-backend"),
        None,
        "upstream not called for {path}"
    );
}

async fn misbehaviour_is_contained(policy: &str) {
    let (_a, gw) = gateway_with_misbehaving_routes(policy).await;
    // Twice each: a pooled plugin must recover from its own failure too.
    for _ in 0..2 {
        assert_plugin_error(&gw, "/trap", "trap", "trapped").await;
        let started = Instant::now();
        assert_plugin_error(&gw, "/loop", "loop", "exceeded its hook timeout").await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "loop cut by the deadline"
        );
        assert_plugin_error(&gw, "/grow", "grow", "memory limit").await;
        assert_plugin_error(&gw, "/bad", "bad", "invalid status 1000").await;
        assert_plugin_error(&gw, "/ghost", "ghost", "unknown upstream \"nowhere\"").await;

        let r = get(&gw.url("/resp-trap")).await;
        assert_eq!(r.status, 500, "response-hook trap replaces the response");
        assert!(r.text().contains("trapped"), "{}", r.text());

        let r = get(&gw.url("/open-trap")).await;
        assert_eq!(r.status, 200, "fail-open skips the plugin: {}", r.text());
        assert_eq!(
            r.seen("x-chain").as_deref(),
            Some("after"),
            "the rest of the chain ran"
        );
    }
    // A loop on one request does not hold up others: run one alongside healthy requests.
    let looping = tokio::spawn({
        let url = gw.url("/loop");
        async move { get(&url).await.status }
    });
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/open-trap")).await.status, 200);
    }
    assert_eq!(looping.await.expect("join"), 500);
    let log = gw.log();
    assert!(
        log.contains("plugin failed; request refused (fail-closed)"),
        "{log}"
    );
    assert!(log.contains("plugin failed; skipped (fail-open)"), "{log}");
    // The guest's own panic message reaches the gateway log, tagged with the plugin.
    assert!(
        log.lines()
            .any(|l| l.contains("plugin output before failure")
                && l.contains("probe was asked to trap")
                && l.contains("plugin=\"probe\"")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_fresh_plugins_are_contained() {
    misbehaviour_is_contained("fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_pooled_plugins_are_contained() {
    misbehaviour_is_contained("pooled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_garbage_gets_400_and_the_gateway_lives_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("a").await;
    let mut gw = Gateway::start(&format!(
        "[upstreams.a]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n",
        a.endpoint()
    ));
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(gw.is_running());
    assert_eq!(get(&gw.url("/")).await.status, 200);
}
