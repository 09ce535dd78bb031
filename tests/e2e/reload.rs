//! Live reload and shutdown: config swaps under load lose nothing and never mix versions within a
//! request; invalid changes are refused while the old config keeps serving; streams started
//! before a swap finish on the old snapshot; SIGTERM drains; the admin API.

use crate::support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A gateway whose config references a private copy of the probe plugin, so tests may replace
/// it. `{tag}` is the behaviour under test; `extra` is appended (e.g. an `[admin]` table).
fn config(
    backend: &Backend,
    plugin: &std::path::Path,
    tag: &str,
    port: u16,
    extra: &str,
) -> String {
    format!(
        r#"[[listeners]]
address = "127.0.0.1:{port}"
[reload]
poll_interval = "50ms"
[upstreams.a]
endpoints = ["{}"]
[plugins.probe]
path = {:?}
instances = "pooled"
[[routes]]
name = "r"
upstream = "a"
chain = [{{ plugin = "probe", config = {{ tag = "{tag}", variant = true }} }}]
{extra}"#,
        backend.endpoint(),
        plugin.display().to_string()
    )
}

/// Starts a gateway with the probe copied into its own directory.
fn start(backend: &Backend, tag: &str, extra: &str) -> (Gateway, std::path::PathBuf, u16) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_copy = dir.path().join("probe.wasm");
    std::fs::copy(plugin("probe"), &plugin_copy).expect("copy plugin");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config(backend, &plugin_copy, tag, port, extra)).expect("write");
    let gw = Gateway::start_file(
        dir,
        &path,
        format!("127.0.0.1:{port}").parse().expect("addr"),
    );
    (gw, plugin_copy, port)
}

/// The tag a request saw, checking that request and response phase agree.
async fn tag_of(url: &str) -> Result<String, String> {
    tag_and_variant(url).await.map(|(tag, _)| tag)
}

/// The config tag and plugin build variant a request saw, checking that the request phase and
/// the response phase of the same request ran the same config and the same component.
async fn tag_and_variant(url: &str) -> Result<(String, String), String> {
    let r = get(url).await;
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    let request_tag = r.seen("x-chain").unwrap_or_default();
    let response_tag = r.header("x-chain").unwrap_or_default();
    if request_tag != response_tag {
        return Err(format!(
            "mixed configs: request {request_tag}, response {response_tag}"
        ));
    }
    let request_variant = r.seen("x-probe-variant").unwrap_or_default();
    let response_variant = r.header("x-probe-variant").unwrap_or_default();
    if request_variant != response_variant {
        return Err(format!(
            "mixed plugins: request {request_variant}, response {response_variant}"
        ));
    }
    Ok((request_tag, request_variant))
}

/// Waits until a request sees config tag and plugin variant `want`. Every request on the way
/// must succeed and must not mix versions.
async fn wait_for(url: &str, want: (&str, &str)) {
    eventually(&format!("requests to see {want:?}"), async || {
        let (tag, variant) = tag_and_variant(url)
            .await
            .unwrap_or_else(|e| panic!("while waiting for {want:?}: {e}"));
        if (tag.as_str(), variant.as_str()) == want {
            Ok(())
        } else {
            Err(format!("{:?}", (tag, variant)))
        }
    })
    .await
}

/// Waits until a request sees config tag `want`.
async fn wait_for_tag(url: &str, want: &str) {
    eventually(
        &format!("requests to see tag {want:?}"),
        async || match tag_of(url).await {
            Ok(tag) if tag == want => Ok(()),
            Ok(tag) => Err(format!("tag {tag:?}")),
            Err(e) => Err(e),
        },
    )
    .await
}

/// Waits until the gateway's log contains `needle` at least `n` times (a line may be written
/// just after the change it reports is visible to requests).
async fn wait_for_log(gw: &Gateway, needle: &str, n: usize) {
    eventually(&format!("{n} × {needle:?} in the log"), async || {
        let log = gw.log();
        if log.matches(needle).count() >= n {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_plugin_swaps_under_load_lose_nothing_and_never_mix() {
    let backend = Backend::start("a").await;
    let (gw, plugin_copy, port) = start(&backend, "A", "");
    let builds = [
        std::fs::read(plugin("probe")).expect("read probe"),
        std::fs::read(plugin("probe-b")).expect("read probe-b"),
    ];
    let url = gw.url("/");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (url, stop, served) = (url.clone(), stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match tag_and_variant(&url).await {
                    Ok(_) => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e),
                }
            }
            errors
        }));
    }
    // 100 swaps, alternating: the config's tag (A/B), then the plugin file (variant a/b). Each
    // is waited for (how long swaps take is `cargo xtask bench-swaps`' business), and the
    // clients complete requests after each one before the next, so every swap is under load.
    let (mut tag, mut variant) = ("A", "a");
    for i in 0..100 {
        let before = served.load(Ordering::Relaxed);
        if i % 2 == 0 {
            tag = if tag == "A" { "B" } else { "A" };
            gw.write_config(&config(&backend, &plugin_copy, tag, port, ""));
        } else {
            variant = if variant == "a" { "b" } else { "a" };
            write_atomically(&plugin_copy, &builds[usize::from(variant == "b")]);
        }
        wait_for(&url, (tag, variant)).await;
        eventually("the clients to go on after a swap", async || {
            let since = served.load(Ordering::Relaxed) - before;
            if since >= 8 {
                Ok(())
            } else {
                Err(format!("{since} requests served since swap {i}"))
            }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(
            hang_guard("a client to stop", c)
                .await
                .expect("client task"),
        );
    }
    assert!(
        errors.is_empty(),
        "{} failures, first: {:?}",
        errors.len(),
        errors.first()
    );
    // One reload per swap (the watcher's baseline is what was loaded, so the first swap, written
    // right after the gateway starts listening, is not missed).
    wait_for_log(&gw, "configuration reloaded", 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_changes_are_refused_and_a_later_valid_one_applies() {
    let backend = Backend::start("a").await;
    let admin = free_port();
    let admin_table = format!("[admin]\naddress = \"127.0.0.1:{admin}\"\n");
    let (gw, plugin_copy, port) = start(&backend, "old", &admin_table);
    let url = gw.url("/");
    assert_eq!(tag_of(&url).await.as_deref(), Ok("old"));

    // A config with a typo: refused, reported with file:line, old behaviour stays.
    let broken = config(&backend, &plugin_copy, "new", port, &admin_table)
        .replace("upstream = \"a\"", "upstraem = \"a\"");
    gw.write_config(&broken);
    let status = wait_for_reload_error(admin, "unknown field `upstraem`").await;
    assert!(
        status.contains("weir.toml:12:1: unknown field `upstraem`"),
        "{status}"
    );
    assert_eq!(tag_of(&url).await.as_deref(), Ok("old"));

    // Put the config back; then break the plugin file: refused, naming the plugin.
    gw.write_config(&config(&backend, &plugin_copy, "old", port, &admin_table));
    wait_for_reload_ok(admin).await;
    let good_plugin = std::fs::read(&plugin_copy).expect("read plugin");
    write_atomically(&plugin_copy, b"\0asm but not really a component");
    let status = wait_for_reload_error(admin, "plugin \\\"probe\\\"").await;
    assert!(status.contains("is not a Wasm component"), "{status}");
    for _ in 0..20 {
        assert_eq!(
            tag_of(&url).await.as_deref(),
            Ok("old"),
            "old plugin keeps serving"
        );
    }

    // Restore the plugin and change the behaviour: picked up, no stuck state.
    write_atomically(&plugin_copy, &good_plugin);
    gw.write_config(&config(&backend, &plugin_copy, "new", port, &admin_table));
    wait_for_tag(&url, "new").await;
    let cfg = admin_get(admin, "/config", None).await;
    assert_eq!(
        cfg.json()["last_reload_error"],
        serde_json::Value::Null,
        "{}",
        cfg.text()
    );
}

async fn admin_get(port: u16, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    get_with(&format!("http://127.0.0.1:{port}{path}"), &headers).await
}

async fn wait_for_reload_error(admin: u16, needle: &str) -> String {
    eventually(&format!("the reload error {needle:?}"), async || {
        let text = admin_get(admin, "/config", None).await.text();
        if text.contains(needle) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
}

async fn wait_for_reload_ok(admin: u16) {
    eventually("a reload without error", async || {
        let cfg = admin_get(admin, "/config", None).await.json();
        if cfg["last_reload_error"].is_null() {
            Ok(())
        } else {
            Err(cfg.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_before_a_swap_finishes_on_the_old_snapshot() {
    use http_body_util::BodyExt;
    let backend = Backend::start("a").await;
    let (gw, plugin_copy, port) = start(&backend, "old", "");
    // The backend sends one event, then holds the other four until the swap has been seen.
    let resp = hang_guard(
        "the stream's head",
        http1_client().request(
            http::Request::get(gw.url("/gated-events/5/1"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request"),
        ),
    )
    .await
    .expect("stream request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("x-chain").and_then(|v| v.to_str().ok()),
        Some("old"),
        "old snapshot's response hook"
    );
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while !String::from_utf8_lossy(&text).contains("data: event 0\n\n") {
        let frame = hang_guard("the stream's first event", body.frame())
            .await
            .expect("the stream ended before its first event")
            .expect("stream frame");
        text.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
    }

    gw.write_config(&config(&backend, &plugin_copy, "new", port, ""));
    wait_for_tag(&gw.url("/"), "new").await;
    backend.open_gate();
    let rest = hang_guard("the rest of the stream", body.collect())
        .await
        .expect("the stream finished after the swap")
        .to_bytes();
    text.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&text);
    for i in 0..5 {
        assert!(text.contains(&format!("data: event {i}\n\n")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_and_refuses_new_connections() {
    let backend = Backend::start("a").await;
    // A drain timeout longer than the hang guard: the requests in flight end when the test
    // lets the backend answer them, never because draining gave up.
    let mut gw = Gateway::start(&format!(
        "[limits]\ndrain_timeout = \"300s\"\n[upstreams.a]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n",
        backend.endpoint()
    ));
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let url = gw.url("/gated/x");
        in_flight.push(tokio::spawn(async move { get(&url).await.status }));
    }
    backend
        .wait_for_hits(8, "the 8 requests to reach the backend")
        .await;
    gw.signal("TERM");
    eventually(
        "the gateway to refuse new connections after SIGTERM",
        async || match std::net::TcpStream::connect(gw.addr) {
            Err(_) => Ok(()),
            Ok(_) => Err("a new connection was accepted".into()),
        },
    )
    .await;
    assert!(
        gw.is_running(),
        "still running (draining 8 requests) when it refused new connections:\n{}",
        gw.log()
    );
    backend.open_gate();
    for f in in_flight {
        assert_eq!(
            hang_guard("a request in flight to complete", f)
                .await
                .expect("request task"),
            200,
            "in-flight request completed"
        );
    }
    let status = gw
        .wait_exit(HANG_GUARD)
        .unwrap_or_else(|| panic!("timed out waiting for the gateway to exit once drained"));
    assert!(status.success(), "exit status {status}");
    assert!(
        gw.log().contains("draining requests in flight"),
        "{}",
        gw.log()
    );
}

/// `limits.shutdown_delay`: after SIGTERM the gateway says it is not ready and ends each
/// HTTP/1.1 connection after its response, but still accepts and serves, so a load balancer
/// moves away before the listener closes; a second SIGTERM ends the delay and the drain follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_delay_serves_unready_with_connection_close_before_the_listener_closes() {
    let backend = Backend::start("a").await;
    let admin = free_port();
    // A delay longer than the hang guard: it ends when the test sends the second signal.
    let mut gw = Gateway::start(&format!(
        "[limits]\nshutdown_delay = \"300s\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[upstreams.a]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n",
        backend.endpoint()
    ));
    let before = get(&gw.url("/x")).await;
    assert_eq!(before.status, 200);
    assert_eq!(
        before.header("connection"),
        None,
        "kept alive while serving"
    );
    assert_eq!(admin_get(admin, "/ready", None).await.status, 200);

    gw.signal("TERM");
    eventually(
        "/ready to answer 503 after SIGTERM",
        async || match admin_get(admin, "/ready", None).await.status.as_u16() {
            503 => Ok(()),
            s => Err(format!("/ready answered {s}")),
        },
    )
    .await;
    // Still accepting and serving, each answer closing its connection.
    for _ in 0..3 {
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 200, "served during the delay");
        assert_eq!(r.header("connection").as_deref(), Some("close"));
    }
    assert!(gw.is_running());

    gw.signal("TERM");
    eventually(
        "the listener to close after the second signal",
        async || match std::net::TcpStream::connect(gw.addr) {
            Err(_) => Ok(()),
            Ok(_) => Err("a new connection was accepted".into()),
        },
    )
    .await;
    let status = gw
        .wait_exit(HANG_GUARD)
        .unwrap_or_else(|| panic!("timed out waiting for the gateway to exit"));
    assert!(status.success(), "exit status {status}");
}

/// Kubernetes' shape: the token comes from a mounted Secret (a file named in `[secrets]`), and
/// the kubelet's probes, which cannot present it, still get `/health` and `/ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_comes_from_a_secret_and_probes_need_none_when_opened() {
    let backend = Backend::start("a").await;
    let admin = free_port();
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let token_file = secret_dir.path().join("admin-token");
    std::fs::write(&token_file, "from-the-secret\n").expect("write token");
    let table = format!(
        "[secrets]\nADMIN_TOKEN = {{ file = {:?} }}\n[admin]\naddress = \"127.0.0.1:{admin}\"\ntoken_secret = \"ADMIN_TOKEN\"\nunauthenticated_probes = true\n",
        token_file.display().to_string()
    );
    let (_gw, _plugin_copy, _port) = start(&backend, "one", &table);

    assert_eq!(admin_get(admin, "/health", None).await.status, 200);
    let ready = admin_get(admin, "/ready", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ready"], true);
    // Everything else still needs the token, read from the file without its newline.
    assert_eq!(admin_get(admin, "/config", None).await.status, 401);
    assert_eq!(admin_get(admin, "/metrics", None).await.status, 401);
    assert_eq!(admin_get(admin, "/config", Some("wrong")).await.status, 401);
    let cfg = admin_get(admin, "/config", Some("from-the-secret")).await;
    assert_eq!(cfg.status, 200, "{}", cfg.text());
    assert_eq!(cfg.json()["generation"], 1);
}

/// A ConfigMap mounted as a directory is updated by the kubelet through symlinks: the file is
/// `..data/gateway.toml`, and `..data` is swapped to a new timestamped directory in one rename.
/// The gateway, started on the file's symlinked path, follows the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_swapped_the_way_the_kubelet_updates_a_configmap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let backend = Backend::start("a").await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_copy = dir.path().join("probe.wasm");
    std::fs::copy(plugin("probe"), &plugin_copy).expect("copy plugin");
    let mount = dir.path().join("etc-weir");
    let version = |name: &str, tag: &str| {
        let d = mount.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        let text = config(&backend, &plugin_copy, tag, port, "");
        std::fs::write(d.join("gateway.toml"), text).expect("write");
    };
    version("..2026_11_30_01", "old");
    symlink("..2026_11_30_01", mount.join("..data")).expect("symlink");
    symlink("..data/gateway.toml", mount.join("gateway.toml")).expect("symlink");
    let gw = Gateway::start_file(
        dir,
        &mount.join("gateway.toml"),
        format!("127.0.0.1:{port}").parse().expect("addr"),
    );
    let url = gw.url("/");
    assert_eq!(tag_of(&url).await.as_deref(), Ok("old"));

    // The kubelet's update: a new directory, a temporary link to it renamed over `..data`,
    // then the old directory removed.
    version("..2026_11_30_02", "new");
    symlink("..2026_11_30_02", mount.join("..data_tmp")).expect("symlink");
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).expect("swap");
    std::fs::remove_dir_all(mount.join("..2026_11_30_01")).expect("remove old");
    wait_for_tag(&url, "new").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_reports_reloads_and_validates_uploads() {
    let backend = Backend::start("a").await;
    let admin = free_port();
    let table = format!("[admin]\naddress = \"127.0.0.1:{admin}\"\ntoken = \"s3cret\"\n");
    let (gw, _plugin_copy, _port) = start(&backend, "one", &table);
    let url = gw.url("/");
    let tok = Some("s3cret");

    let r = admin_get(admin, "/health", None).await;
    assert_eq!(r.status, 401, "token required");
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(admin_get(admin, "/health", Some("wrong")).await.status, 401);
    assert_eq!(admin_get(admin, "/health", tok).await.status, 200);
    assert_eq!(admin_get(admin, "/ready", tok).await.json()["ready"], true);

    assert_eq!(tag_of(&url).await.as_deref(), Ok("one"));
    let cfg = admin_get(admin, "/config", tok).await.json();
    assert_eq!(cfg["generation"], 1);
    let digest = cfg["plugins"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let plugins = admin_get(admin, "/plugins", tok).await.json();
    let probe = &plugins["plugins"][0];
    assert_eq!(probe["name"], "probe");
    assert_eq!(probe["routes"], serde_json::json!(["r"]));
    assert_eq!(probe["instances"], "pooled");
    assert!(
        probe["instantiations"].as_u64().unwrap_or(0) >= 1,
        "{plugins}"
    );

    // POST /reload: a new generation.
    let r = send(
        http::Request::post(format!("http://127.0.0.1:{admin}/reload"))
            .header("authorization", "Bearer s3cret")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);

    // PUT a file that is not a component: 400 with the reason; the old plugin keeps serving.
    let put = |body: Vec<u8>| {
        send(
            http::Request::put(format!("http://127.0.0.1:{admin}/plugins/probe"))
                .header("authorization", "Bearer s3cret")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .expect("request"),
        )
    };
    let r = put(b"this is not wasm".to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("is not a Wasm component"), "{}", r.text());
    assert_eq!(tag_of(&url).await.as_deref(), Ok("one"));

    // PUT a valid component (the headers plugin would reject this route's config: 400 too).
    let r = put(std::fs::read(plugin("headers")).expect("read")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("rejected its config"), "{}", r.text());
    let r = put(std::fs::read(plugin("probe")).expect("read")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["digest"],
        digest.as_str(),
        "same bytes, same digest"
    );
    let r = admin_get(admin, "/nope", tok).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeatedly_failing_plugin_is_reported_unhealthy() {
    let backend = Backend::start("a").await;
    let admin = free_port();
    let gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n[upstreams.a]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\nchain = [{{ plugin = \"probe\", config = {{ fail = \"trap\" }}, on_error = \"fail-open\" }}]\n",
        backend.endpoint(),
        plugins_toml(&[("probe", "unhealthy_after = 2\nunhealthy_window = \"60s\"")]),
    ));
    let health = |v: &serde_json::Value| {
        (
            v["plugins"][0]["healthy"].clone(),
            v["plugins"][0]["recent_failures"].clone(),
        )
    };
    for _ in 0..2 {
        assert_eq!(
            get(&gw.url("/")).await.status,
            200,
            "fail-open keeps serving"
        );
    }
    let v = admin_get(admin, "/plugins", None).await.json();
    assert_eq!(
        health(&v),
        (serde_json::json!(true), serde_json::json!(2)),
        "{v}"
    );
    assert_eq!(get(&gw.url("/")).await.status, 200);
    let v = admin_get(admin, "/plugins", None).await.json();
    assert_eq!(
        health(&v),
        (serde_json::json!(false), serde_json::json!(3)),
        "{v}"
    );
    assert_eq!(v["plugins"][0]["failures"], 3);
    assert_eq!(
        gw.log().matches("plugin is now unhealthy").count(),
        1,
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_compiled_plugins_from_the_disk_cache() {
    let backend = Backend::start("a").await;
    let cache = tempfile::tempdir().expect("tempdir");
    let body = format!(
        "[runtime]\ncache_dir = {:?}\n[upstreams.a]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\nchain = [{{ plugin = \"probe\", config = {{ tag = \"t\" }} }}]\n",
        cache.path().display().to_string(),
        backend.endpoint(),
        plugins_toml(&[("probe", "")]),
    );
    let cold = Gateway::start(&body);
    assert_eq!(tag_of(&cold.url("/")).await.as_deref(), Ok("t"));
    assert!(cold.log().contains("compiling plugin"), "{}", cold.log());
    drop(cold);
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .flatten()
        .collect();
    assert_eq!(files.len(), 1, "one compiled component stored");

    let warm = Gateway::start(&body);
    assert_eq!(tag_of(&warm.url("/")).await.as_deref(), Ok("t"));
    let log = warm.log();
    assert!(
        log.contains("loaded compiled plugin from the cache"),
        "{log}"
    );
    assert!(!log.contains("compiling plugin"), "{log}");
    drop(warm);

    // A damaged cache file is not trusted blindly: it is replaced by a fresh compilation.
    std::fs::write(files[0].path(), b"garbage").expect("corrupt the cache");
    let again = Gateway::start(&body);
    assert_eq!(tag_of(&again.url("/")).await.as_deref(), Ok("t"));
    let log = again.log();
    assert!(log.contains("unusable cached plugin; recompiling"), "{log}");
    assert!(log.contains("compiling plugin"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_when_the_file_watcher_is_off() {
    let backend = Backend::start("a").await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_copy = dir.path().join("probe.wasm");
    std::fs::copy(plugin("probe"), &plugin_copy).expect("copy plugin");
    let unwatched = |tag: &str| {
        config(&backend, &plugin_copy, tag, port, "")
            .replace("[reload]\n", "[reload]\nwatch = false\n")
    };
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, unwatched("before")).expect("write");
    let gw = Gateway::start_file(
        dir,
        &path,
        format!("127.0.0.1:{port}").parse().expect("addr"),
    );
    gw.write_config(&unwatched("after"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        tag_of(&gw.url("/")).await.as_deref(),
        Ok("before"),
        "no watcher"
    );
    gw.signal("HUP");
    wait_for_tag(&gw.url("/"), "after").await;
    wait_for_log(&gw, "trigger=\"SIGHUP\"", 1).await;
}
