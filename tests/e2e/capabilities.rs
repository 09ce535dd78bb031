//! Host capabilities through the real gateway: `kv` (memory and a real Redis shared by two
//! gateway processes) under the `rate-limit` and `cache` plugins, `outbound` under the
//! `fan-out` handler plugin, and the deny-by-default grants.

use crate::support::*;
use std::time::Duration;

const RATE_LIMIT: &str = "{ plugin = \"rate-limit\", config = { burst = BURST, rate_per_second = 0.001, key = \"header:x-client\" } }";

fn rate_limited(backend: &Backend, kv: &str, burst: u32) -> String {
    format!(
        "{kv}\n[upstreams.app]\nendpoints = [\"{}\"]\n{}\n[[routes]]\nname = \"limited\"\nupstream = \"app\"\nchain = [{}]\n",
        backend.endpoint(),
        plugins_toml(&[("rate-limit", "capabilities = { kv = \"ratelimit\" }")]),
        RATE_LIMIT.replace("BURST", &burst.to_string()),
    )
}

async fn status_for(gw: &Gateway, client: &str) -> (u16, Reply) {
    let r = get_with(&gw.url("/x"), &[("x-client", client)]).await;
    (r.status.as_u16(), r)
}

#[tokio::test]
async fn rate_limit_on_the_embedded_store() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&rate_limited(&backend, "", 3));
    for left in ["2", "1", "0"] {
        let (status, r) = status_for(&gw, "alice").await;
        assert_eq!(status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some(left));
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("3"));
    }
    let (status, r) = status_for(&gw, "alice").await;
    assert_eq!(status, 429, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("numeric retry-after");
    assert!(retry >= 1);
    assert_eq!(
        backend.hits(),
        3,
        "the refused request never reached the upstream"
    );
    // Another key has its own bucket.
    assert_eq!(status_for(&gw, "bob").await.0, 200);
}

#[tokio::test]
async fn rate_limit_is_shared_by_two_gateways_through_redis() {
    let redis = Redis::start();
    let backend = Backend::start("app").await;
    let kv = format!("[kv]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let a = Gateway::start(&rate_limited(&backend, &kv, 5));
    let b = Gateway::start(&rate_limited(&backend, &kv, 5));

    // Alternating between the two processes: five pass in total, then both refuse.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        statuses.push(status_for(gw, "carol").await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);

    // Concurrent requests racing on one bucket from both processes: exactly `burst` pass.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = if i % 2 == 0 { a.url("/x") } else { b.url("/x") };
        tasks.push(tokio::spawn(async move {
            get_with(&url, &[("x-client", "dave")])
                .await
                .status
                .as_u16()
        }));
    }
    let mut passed = 0;
    for t in tasks {
        let status = t.await.expect("task");
        assert!(status == 200 || status == 429, "unexpected {status}");
        passed += usize::from(status == 200);
    }
    assert_eq!(passed, 5, "compare-and-swap must never over-admit");
    assert!(!a.log().contains("kv backend call failed"), "{}", a.log());
}

#[tokio::test]
async fn redis_down_fails_open_as_configured_and_says_why() {
    let backend = Backend::start("app").await;
    // Nothing listens on this port.
    let kv = format!(
        "[kv]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\ntimeout = \"300ms\"\n",
        free_port()
    );
    let gw = Gateway::start(&rate_limited(&backend, &kv, 1));
    for _ in 0..2 {
        assert_eq!(status_for(&gw, "erin").await.0, 200);
    }
    assert!(gw.log().contains("kv backend call failed"), "{}", gw.log());
}

/// A `fan-out` route over `backends`. Their `request_timeout` (the calls' default timeout) is
/// longer than the tests' hang guard: a call a backend holds ends when the test lets it.
fn fan_out(backends: &[Backend], granted: &str, called: &str) -> String {
    let mut s = String::new();
    for b in backends {
        s.push_str(&format!(
            "[upstreams.{}]\nendpoints = [\"{}\"]\nrequest_timeout = \"10m\"\n",
            b.name,
            b.endpoint()
        ));
    }
    s.push_str(&plugins_toml(&[(
        "fan-out",
        &format!("capabilities = {{ outbound = [{granted}] }}"),
    )]));
    s.push_str(&format!(
        "[[routes]]\nname = \"fan\"\nchain = [{{ plugin = \"fan-out\", config = {{ upstreams = [{called}] }} }}]\n"
    ));
    s
}

#[tokio::test]
async fn handler_plugin_fans_out_concurrently_and_merges() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let all = "\"a\", \"b\", \"c\"";
    let gw = Gateway::start(&fan_out(&backends, all, all));
    // Warm up connections and the plugin.
    assert_eq!(get(&gw.url("/slow/1")).await.status, 200);
    let warm: Vec<u64> = backends.iter().map(Backend::hits).collect();

    // Concurrent: every upstream gets its call while none has answered (they answer `/gated/`
    // only once the test opens their gates). Calls made one after another would stop at the
    // first, which never answers meanwhile.
    let fan = tokio::spawn({
        let url = gw.url("/gated/fan");
        async move { get(&url).await }
    });
    for (backend, before) in backends.iter().zip(warm) {
        backend
            .wait_for_hits(
                before + 1,
                &format!(
                    "upstream {} to be called while no upstream has answered",
                    backend.name
                ),
            )
            .await;
    }
    assert!(!fan.is_finished(), "answered before its upstreams did");
    for backend in &backends {
        backend.open_gate();
    }
    let r = hang_guard("the fan-out to answer", fan)
        .await
        .expect("fan-out request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-weir-fan-out").as_deref(), Some("3/3"));
    let merged = r.json();
    for name in ["a", "b", "c"] {
        assert_eq!(merged[name]["backend"], name, "{merged}");
        assert_eq!(merged[name]["path"], "/gated/fan");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_handler_does_not_hold_its_thread() {
    let backends = [Backend::start("a").await];
    // One worker thread: if waiting blocked it, nothing else could be served meanwhile.
    let config = format!(
        "[runtime]\nworkers = 1\n{}[[routes]]\nname = \"plain\"\nmatch = {{ path_prefix = \"/plain\" }}\nupstream = \"a\"\n",
        fan_out(&backends, "\"a\"", "\"a\"").replace(
            "name = \"fan\"\n",
            "name = \"fan\"\nmatch = { path_prefix = \"/gated\" }\n"
        )
    );
    let gw = Gateway::start(&config);
    let waiting_url = gw.url("/gated/x");
    let waiting = tokio::spawn(async move { get(&waiting_url).await });
    // The handler's call has reached the upstream, which holds it until the gate opens.
    backends[0]
        .wait_for_hits(1, "the handler's call to reach its upstream")
        .await;
    for i in 0..5 {
        let r = hang_guard(
            &format!("plain request {i} while a handler waits on the one worker thread"),
            get(&gw.url("/plain/x")),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    assert!(
        !waiting.is_finished(),
        "the handler was still waiting meanwhile"
    );
    backends[0].open_gate();
    let r = hang_guard("the waiting handler to answer", waiting)
        .await
        .expect("waiting request");
    assert_eq!(r.header("x-weir-fan-out").as_deref(), Some("1/1"));
}

#[tokio::test]
async fn calls_outside_the_grant_get_an_error_value_and_are_logged() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let gw = Gateway::start(&fan_out(&backends, "\"a\", \"b\"", "\"a\", \"b\", \"c\""));
    let r = get(&gw.url("/status/200")).await;
    assert_eq!(r.header("x-weir-fan-out").as_deref(), Some("2/3"));
    let merged = r.json();
    assert_eq!(merged["a"]["backend"], "a");
    assert_eq!(merged["c"]["error"], "not granted: c", "{merged}");
    assert_eq!(
        backends[2].hits(),
        0,
        "the ungranted upstream was never called"
    );
    let log = gw.log();
    assert!(
        log.lines().any(|l| l.contains("outbound call denied")
            && l.contains("plugin=\"fan-out\"")
            && l.contains("upstream=\"c\"")),
        "{log}"
    );
}

#[test]
fn imports_beyond_the_grant_are_refused_at_load() {
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.a]\nendpoints = [\"http://127.0.0.1:1\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\nchain = [{{ plugin = \"fan-out\", config = {{ upstreams = [\"a\"] }} }}, {{ plugin = \"rate-limit\", config = {{ burst = 1, rate_per_second = 1.0 }} }}]\n",
        plugins_toml(&[
            ("fan-out", ""),
            ("rate-limit", "capabilities = { metrics = true }")
        ])
    );
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("plugin \"fan-out\"") && out.contains("imports weir:plugin/outbound@0.2.0 but is not granted `outbound` (add `capabilities = { outbound = [\"<upstream>\", ...] }` to [plugins.fan-out])"),
        "{out}"
    );
    assert!(
        out.contains("plugin \"rate-limit\"")
            && out.contains("imports weir:plugin/kv@0.2.0 but is not granted `kv`"),
        "{out}"
    );
}

#[test]
fn grants_naming_unknown_upstreams_or_secrets_are_config_errors() {
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.a]\nendpoints = [\"http://127.0.0.1:1\"]\n[secrets]\nTOKEN = {{ env = \"WEIR_TEST_SURELY_UNSET\" }}\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\n",
        plugins_toml(&[(
            "fan-out",
            "capabilities = { outbound = [\"nope\"], secrets = [\"MISSING\"], kv = \"Bad NS\" }"
        )])
    );
    let (ok, out) = check(&config);
    assert!(!ok);
    assert!(
        out.contains("outbound grant names unknown upstream \"nope\" (defined: a)"),
        "{out}"
    );
    assert!(
        out.contains(
            "secrets grant names unknown secret \"MISSING\" (defined in [secrets]: TOKEN)"
        ),
        "{out}"
    );
    assert!(out.contains("invalid kv namespace \"Bad NS\""), "{out}");
}

#[tokio::test]
async fn cache_serves_repeats_from_kv_until_the_ttl() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"cached\"\nupstream = \"app\"\nchain = [{{ plugin = \"cache\", config = {{ ttl_ms = 800 }} }}]\n",
        backend.endpoint(),
        plugins_toml(&[("cache", "capabilities = { kv = \"cache\" }")])
    ));
    let first = get(&gw.url("/item?id=1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-weir-cache").as_deref(), Some("miss"));
    let second = get(&gw.url("/item?id=1")).await;
    assert_eq!(second.header("x-weir-cache").as_deref(), Some("hit"));
    assert_eq!(second.body, first.body, "the cached body is the upstream's");
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert_eq!(backend.hits(), 1, "the hit never reached the upstream");
    // Another query string is another key.
    assert_eq!(
        get(&gw.url("/item?id=2"))
            .await
            .header("x-weir-cache")
            .as_deref(),
        Some("miss")
    );
    assert_eq!(backend.hits(), 2);

    // Non-cacheable methods pass through every time.
    for _ in 0..2 {
        let r = post(&gw.url("/item?id=1"), "x").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-weir-cache").as_deref(), Some("bypass"));
    }
    assert_eq!(backend.hits(), 4);

    // After the TTL the entry is gone.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = get(&gw.url("/item?id=1")).await;
    assert_eq!(later.header("x-weir-cache").as_deref(), Some("miss"));
    assert_eq!(backend.hits(), 5);
}

fn credential_config(backend: &Backend, dir: &std::path::Path, asked: &str) -> String {
    std::fs::write(dir.join("token"), "s3cr3t-from-file\n").expect("write secret file");
    format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n[secrets]\nFROM_FILE = {{ file = {:?} }}\nFROM_ENV = {{ env = \"HOME\" }}\n{}[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"upstream-credential\", config = {{ secret = \"{asked}\", prefix = \"Bearer \" }} }}]\n",
        backend.endpoint(),
        dir.join("token").display().to_string(),
        plugins_toml(&[(
            "upstream-credential",
            "capabilities = { secrets = [\"FROM_FILE\"] }"
        )])
    )
}

#[tokio::test]
async fn secrets_reach_upstreams_only_as_granted() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::start(&credential_config(&backend, dir.path(), "FROM_FILE"));
    // The client's own credential is replaced by the operator's.
    let r = get_with(&gw.url("/x"), &[("authorization", "Bearer client-token")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.seen("authorization").as_deref(),
        Some("Bearer s3cr3t-from-file")
    );

    // A secret that exists but is not in the plugin's grant is refused at call time.
    let gw = Gateway::start(&credential_config(&backend, dir.path(), "FROM_ENV"));
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 500);
    assert!(
        gw.log().lines().any(|l| l.contains("secret read denied")
            && l.contains("plugin=\"upstream-credential\"")
            && l.contains("secret=\"FROM_ENV\"")),
        "{}",
        gw.log()
    );
    assert!(
        !gw.log().contains("s3cr3t"),
        "secret values never reach the log"
    );
}

#[test]
fn a_secret_that_cannot_be_read_refuses_the_config() {
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.a]\nendpoints = [\"http://127.0.0.1:1\"]\n[secrets]\nGONE = {{ env = \"WEIR_TEST_SURELY_UNSET\" }}\nNOFILE = {{ file = \"/nonexistent/weir-secret\" }}\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\n",
        plugins_toml(&[(
            "upstream-credential",
            "capabilities = { secrets = [\"GONE\"] }"
        )])
    );
    let (ok, out) = check(&config);
    assert!(!ok);
    assert!(
        out.contains(
            "weir.toml:6:8: secret \"GONE\": environment variable WEIR_TEST_SURELY_UNSET is not set"
        ),
        "{out}"
    );
    assert!(
        out.contains("secret \"NOFILE\": cannot read /nonexistent/weir-secret"),
        "{out}"
    );
}

#[tokio::test]
async fn kv_state_survives_a_reload() {
    let backend = Backend::start("app").await;
    let admin = free_port();
    let config = format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\nallow_unauthenticated = true\n{}",
        rate_limited(&backend, "", 1)
    );
    let gw = Gateway::start(&config);
    assert_eq!(status_for(&gw, "frank").await.0, 200);
    assert_eq!(status_for(&gw, "frank").await.0, 429);
    // A reload that changes something else keeps the store, so the bucket stays empty.
    let running = std::fs::read_to_string(&gw.config).expect("config");
    gw.write_config(&running.replace("name = \"limited\"", "name = \"limited-v2\""));
    let r = send(
        http::Request::post(format!("http://127.0.0.1:{admin}/reload"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);
    let (status, reply) = status_for(&gw, "frank").await;
    assert_eq!(status, 429, "{}", reply.text());
}

/// An `outbound-probe` route calling `app` (`backend`, whose `request_timeout` is longer than
/// the tests' hang guard, so only a call's own timeout can cut a call it holds) or `down`.
fn outbound_probe(backend: &Backend, config: &str) -> String {
    format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\nrequest_timeout = \"10m\"\n[upstreams.down]\nendpoints = [\"http://127.0.0.1:{}\"]\n{}[[routes]]\nname = \"r\"\nchain = [{{ plugin = \"outbound-probe\", config = {{ {config} }} }}]\n",
        backend.endpoint(),
        free_port(),
        plugins_toml(&[(
            "outbound-probe",
            "capabilities = { outbound = [\"app\", \"down\"] }"
        )])
    )
}

async fn probe_answer(backend: &Backend, config: &str) -> serde_json::Value {
    let gw = Gateway::start(&outbound_probe(backend, config));
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn outbound_edges_streamed_bodies_timeouts_and_bad_requests() {
    let backend = Backend::start("app").await;

    // A streamed upstream body is read chunk by chunk as it arrives.
    let a = probe_answer(
        &backend,
        "upstream = \"app\", path = \"/bytes/1000000\", read = \"chunks\"",
    )
    .await;
    assert_eq!(a["bytes"], 1_000_000, "{a}");
    assert!(a["chunks"].as_u64().unwrap_or(0) > 1, "{a}");

    // The call's own timeout (waiting does not count against the hook's 100 ms): the upstream
    // holds `/gated/` requests until the test opens the gate, so only the timeout can end it.
    let a = hang_guard(
        "the call's own 300 ms timeout to end a call the upstream holds",
        probe_answer(
            &backend,
            "upstream = \"app\", path = \"/gated/x\", timeout_ms = 300",
        ),
    )
    .await;
    assert_eq!(a["error"], "OutboundError::Timeout", "{a}");
    backend.open_gate();

    let a = probe_answer(&backend, "upstream = \"app\", path = \"no-slash\"").await;
    assert!(
        a["error"].as_str().unwrap_or("").starts_with(
            "OutboundError::InvalidRequest(\"path \\\"no-slash\\\" must start with '/'"
        ),
        "{a}"
    );
    let a = probe_answer(
        &backend,
        "upstream = \"app\", path = \"/bytes/100000\", limit = 1000",
    )
    .await;
    assert_eq!(a["error"], "OutboundError::TooLarge(1000)", "{a}");
    let a = probe_answer(&backend, "upstream = \"down\", path = \"/\"").await;
    assert!(
        a["error"].as_str().unwrap_or("").contains("unreachable"),
        "{a}"
    );
    let a = probe_answer(
        &backend,
        "upstream = \"app\", path = \"/x\", wait_twice = true",
    )
    .await;
    assert_eq!(a["second_wait"], "OutboundError::AlreadyConsumed", "{a}");
}

#[tokio::test]
async fn outbound_host_is_the_endpoints_not_the_plugins() {
    let backend = Backend::start("app").await;
    let a = probe_answer(
        &backend,
        "upstream = \"app\", path = \"/x?y=1\", method = \"POST\", headers = { host = \"evil.example\", connection = \"x-secret\", x-secret = \"hop\", x-ok = \"1\" }",
    )
    .await;
    let seen: serde_json::Value =
        serde_json::from_str(a["body"].as_str().expect("body")).expect("echo JSON");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/x?y=1");
    assert_eq!(seen["headers"]["host"], backend.addr.to_string(), "{seen}");
    assert_eq!(seen["headers"]["x-ok"], "1");
    assert!(
        seen["headers"]["x-secret"].is_null(),
        "headers named in Connection are hop-by-hop: {seen}"
    );
}

#[tokio::test]
async fn plugins_cannot_reach_files_sockets_or_the_environment() {
    let backend = Backend::start("app").await;
    for (how, target) in [
        ("fs", "/etc/hostname".to_string()),
        ("fs", "weir.toml".to_string()),
        ("net", backend.addr.to_string()),
        ("env", String::new()),
    ] {
        let gw = Gateway::start(&format!(
            "[upstreams.app]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"probe\", config = {{ escape = \"{how}\", escape_target = \"{target}\" }} }}]\n",
            backend.endpoint(),
            plugins_toml(&[("probe", "")])
        ));
        let r = get(&gw.url("/")).await;
        assert_eq!(r.status, 200);
        assert!(
            r.text().starts_with("denied"),
            "{how} {target}: {}",
            r.text()
        );
    }
    assert_eq!(
        backend.hits(),
        0,
        "the plugin's connect never reached the backend"
    );
}
