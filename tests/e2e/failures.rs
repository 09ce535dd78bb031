//! Misbehaving plugins: traps, infinite loops, memory bombs and invalid decisions are contained
//! to the request they happen in, answered per `on_error`, and never affect other requests.

use crate::support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn route(name: &str, prefix: &str, chain: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"{prefix}\" }}\nupstream = \"a\"\nchain = [{chain}]\n"
    )
}

fn probe(cfg: &str, on_error: &str) -> String {
    format!("{{ plugin = \"probe\", config = {{ {cfg} }}, on_error = \"{on_error}\" }}")
}

/// How much CPU time the loop that other requests must get past may use before its budget ends
/// it: long enough for several requests to pass it while it runs, if it lets them.
const LONG_LOOP: &str = "2s";

/// The line the probe logs when it starts looping.
const LOOPING: &str = "probe is looping until its hook timeout";

/// A gateway on ONE worker thread (so a hook that never yields would hold up every other
/// request) with a route per kind of misbehaviour. Three plugins, the same component: `probe`
/// with a 16 MiB memory limit and the default budgets, `hasty` (a 50 ms execution budget) for a
/// quick loop, `patient` ([`LONG_LOOP`]) for a long one.
async fn gateway_with_misbehaving_routes(policy: &str) -> (Backend, Gateway) {
    let a = Backend::start("a").await;
    let path = plugin("probe").display().to_string();
    let gw = Gateway::start(&format!(
        "[runtime]\nworkers = 1\n[upstreams.a]\nendpoints = [\"{}\"]\n\
         [plugins.probe]\npath = {path:?}\ninstances = \"{policy}\"\nmemory_limit = \"16MiB\"\n\
         [plugins.hasty]\npath = {path:?}\ninstances = \"{policy}\"\nhook_budget = \"50ms\"\n\
         [plugins.patient]\npath = {path:?}\ninstances = \"{policy}\"\nhook_budget = \"{LONG_LOOP}\"\n\
         {}{}{}{}{}{}{}{}{}",
        a.endpoint(),
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
        route(
            "loop",
            "/loop",
            "{ plugin = \"hasty\", config = { fail = \"loop\" }, on_error = \"fail-closed\" }"
        ),
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
        route(
            "long-loop",
            "/long-loop",
            "{ plugin = \"patient\", config = { fail = \"loop\" }, on_error = \"fail-closed\" }"
        ),
        route(
            "healthy",
            "/healthy",
            &probe("tag = \"healthy\"", "fail-closed")
        ),
    ));
    (a, gw)
}

async fn assert_plugin_error(gw: &Gateway, path: &str, plugin: &str, route: &str, what: &str) {
    let r = get(&gw.url(path)).await;
    assert_eq!(r.status, 500, "{path}: {}", r.text());
    assert_eq!(r.header("x-weir-error").as_deref(), Some("plugin"));
    let text = r.text();
    assert!(
        text.contains(&format!("plugin \"{plugin}\" on route \"{route}\"")) && text.contains(what),
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
        assert_plugin_error(&gw, "/trap", "probe", "trap", "trapped").await;
        let used_up = "used up its execution budget";
        assert_plugin_error(&gw, "/loop", "hasty", "loop", used_up).await;
        assert_plugin_error(&gw, "/grow", "probe", "grow", "memory limit").await;
        assert_plugin_error(&gw, "/bad", "probe", "bad", "invalid status 1000").await;
        let unknown = "unknown upstream \"nowhere\"";
        assert_plugin_error(&gw, "/ghost", "probe", "ghost", unknown).await;

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
    // A loop on one request does not hold up others: on the one worker thread, healthy requests
    // from 8 clients are served while the looping hook runs, until its budget ends it. A hook
    // that did not yield at the epoch ticks would keep them all waiting until then: at most
    // the 8 in flight when the loop started could then complete, and only after it ended.
    let loops_before = gw.log().matches(LOOPING).count();
    let looping = tokio::spawn({
        let url = gw.url("/long-loop");
        async move {
            let r = get(&url).await;
            (r, Instant::now())
        }
    });
    eventually("the long loop to start", async || {
        if gw.log().matches(LOOPING).count() > loops_before {
            Ok(())
        } else {
            Err("no new loop in the log".into())
        }
    })
    .await;
    let loop_ended = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, loop_ended) = (gw.url("/healthy"), loop_ended.clone());
            tokio::spawn(async move {
                let mut completed = Vec::new();
                while !loop_ended.load(Ordering::SeqCst) {
                    let r = get(&url).await;
                    assert_eq!(r.status, 200, "healthy request: {}", r.text());
                    assert_eq!(r.seen("x-chain").as_deref(), Some("healthy"));
                    completed.push(Instant::now());
                }
                completed
            })
        })
        .collect();
    let (r, loop_returned) = hang_guard("the looping request to end", looping)
        .await
        .expect("looping request");
    loop_ended.store(true, Ordering::SeqCst);
    let mut served_meanwhile = 0;
    for c in clients {
        let completed = hang_guard("a healthy client to stop", c)
            .await
            .expect("healthy client");
        served_meanwhile += completed.iter().filter(|&&t| t < loop_returned).count();
    }
    eprintln!("{policy}: {served_meanwhile} healthy requests served while a hook looped");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text()
            .contains("plugin \"patient\" on route \"long-loop\"")
            && r.text().contains("used up its execution budget"),
        "{}",
        r.text()
    );
    assert!(
        served_meanwhile >= 3,
        "only {served_meanwhile} healthy requests were served while a hook looped for \
         {LONG_LOOP} of CPU time on the gateway's one worker thread: the loop held them up"
    );
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
    // The answer is complete when the gateway closes the connection (an error after the 400 is
    // as good as an end).
    let _ = hang_guard(
        "the gateway to answer garbage and close the connection",
        s.read_to_end(&mut buf),
    )
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(gw.is_running());
    assert_eq!(get(&gw.url("/")).await.status, 200);
}
