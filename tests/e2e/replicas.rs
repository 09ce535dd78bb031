//! Many replicas, one gateway: three `weir` processes behind a round-robin nginx (Debian's), one
//! `redis-server` for plugin state, and real clients. Nothing pins a client to a replica.

use crate::mcp::{McpServer, client_spec, gateway_config, wait_for_file};
use crate::support::{Backend, Gateway, Redis, free_port, plugins_toml, post, wait_for_port};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// nginx as a round-robin load balancer over `upstreams`, one worker, no affinity. Its access
/// log records which replica served each request, with the request body (MCP methods).
struct Lb {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Lb {
    fn start(upstreams: &[SocketAddr]) -> Lb {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, Lb::conf(dir.path(), port, upstreams)).expect("write nginx.conf");
        let child = Command::new("nginx")
            .args(["-e", "stderr", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx (Debian package nginx)");
        wait_for_port(port, "nginx");
        Lb { child, port, dir }
    }

    fn conf(dir: &Path, port: u16, upstreams: &[SocketAddr]) -> String {
        let servers: String = upstreams
            .iter()
            .map(|a| format!("server {a} max_fails=0;\n"))
            .collect();
        let d = dir.display();
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;\n\
               uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;\n\
               log_format replica '$upstream_addr|$status|$request_method $request_uri $request_body';\n\
               access_log {d}/access.log replica;\n\
               upstream replicas {{\n{servers}keepalive 16;\n}}\n\
               server {{\n listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://replicas;\n proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n proxy_set_header Host $http_host;\n\
                   proxy_buffering off;\n proxy_request_buffering on;\n\
                   proxy_read_timeout 60s;\n proxy_connect_timeout 2s;\n\
                   proxy_next_upstream error timeout;\n proxy_next_upstream_tries 3;\n\
                 }}\n\
               }}\n\
             }}\n"
        )
    }

    /// Balances over `upstreams` from now on, the way a Kubernetes Service follows its ready
    /// endpoints: nginx reloads (new worker, the old one finishes what it has in flight), and
    /// this returns once the old worker is gone.
    fn route_to(&self, upstreams: &[SocketAddr]) {
        let conf = Lb::conf(self.dir.path(), self.port, upstreams);
        std::fs::write(self.dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let old = self.workers();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "nginx reload");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.workers();
            if !now.is_empty() && now.iter().all(|w| !old.contains(w)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not reload: {}",
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn workers(&self) -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-P", &self.child.id().to_string()])
            .output()
            .expect("run pgrep");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The access log so far: per request, the replica that answered (the last one tried: a
    /// dead replica's refused connection moves nginx to the next), the status the client got,
    /// and the request line with its body (quotes escaped as `\x22`).
    fn served(&self) -> Vec<(String, String, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .map(|l| {
                let mut f = l.splitn(3, '|');
                let tried = f.next().unwrap_or_default();
                let replica = tried.rsplit(", ").next().unwrap_or_default().to_string();
                let status = f.next().unwrap_or_default().to_string();
                (replica, status, f.next().unwrap_or_default().to_string())
            })
            .collect()
    }
}

impl Lb {
    /// nginx's error log: why a request failed.
    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three replicas of one configuration (`body` after the listener), each on its own port.
fn replicas(body: impl Fn() -> String, env: &[(&str, &str)]) -> Vec<(SocketAddr, Gateway)> {
    (0..3)
        .map(|_| {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            (addr, start_replica(addr, &body(), env))
        })
        .collect()
}

/// nginx over `replicas`.
fn balance(replicas: &[(SocketAddr, Gateway)]) -> Lb {
    Lb::start(&replicas.iter().map(|(a, _)| *a).collect::<Vec<_>>())
}

fn start_replica(addr: SocketAddr, body: &str, env: &[(&str, &str)]) -> Gateway {
    let config = format!("[[listeners]]\nname = \"main\"\naddress = \"{addr}\"\n\n{body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).expect("write config");
    Gateway::start_file_env(dir, &path, addr, env)
}

fn kv(redis: &Redis) -> String {
    format!("\n[kv]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url())
}

/// The official Python MCP client keeps one session through the balancer: the replica that
/// created it (found in nginx's log by the `initialize` it served) is then killed, and the
/// session goes on through the other two, which must both have served it.
#[test]
fn an_mcp_session_continues_on_every_replica_and_after_its_creator_dies() {
    let redis = Redis::start();
    let py = McpServer::python(&[]);
    let servers = [("py", py.endpoint())];
    let env = [("WEIR_TEST_PY_TOKEN", "server-secret")];
    let mut replicas = replicas(|| gateway_config(&servers, "", "") + &kv(&redis), &env);
    let lb = balance(&replicas);

    let dir = tempfile::tempdir().expect("tempdir");
    let (signal, resume) = (dir.path().join("paused"), dir.path().join("resume"));
    let mut ops = vec![];
    for i in 0..4 {
        ops.push(json!({"op": "call", "name": "py_add", "args": {"a": i, "b": 100}}));
    }
    ops.push(json!({"op": "pause", "signal": signal, "resume": resume}));
    for i in 4..10 {
        ops.push(json!({"op": "call", "name": "py_add", "args": {"a": i, "b": 100}}));
    }
    ops.push(json!({"op": "list_tools"}));
    let spec = json!({"url": lb.url("/mcp"), "mode": "legacy", "headers": {}, "ops": ops});
    let session = std::thread::spawn(move || client_spec(spec));

    wait_for_file(&signal);
    let before = lb.served();
    let creator = before
        .iter()
        .find(|(_, _, req)| req.contains("\\x22initialize\\x22"))
        .map(|(replica, _, _)| replica.clone())
        .unwrap_or_else(|| panic!("no initialize in nginx's log: {before:?}"));
    let i = replicas
        .iter()
        .position(|(a, _)| a.to_string() == creator)
        .expect("the creator is a replica");
    let (_, mut dead) = replicas.remove(i);
    dead.signal("KILL");
    assert!(dead.wait_exit(Duration::from_secs(30)).is_some());
    let served_before = before.len();
    std::fs::write(&resume, "").expect("resume");

    let out = session.join().expect("client thread");
    let texts: Vec<String> = out
        .iter()
        .filter_map(|r| r.get("text").and_then(|t| t.as_str()).map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..10).map(|i| (i + 100).to_string()).collect();
    assert_eq!(texts, expected, "every call answered, in order: {out:?}");
    assert!(
        out.iter().all(|r| r.get("error").is_none()),
        "no step failed: {out:?}"
    );
    // After the kill, the two survivors served the session, and every request succeeded.
    let after: Vec<_> = lb.served().into_iter().skip(served_before).collect();
    for (addr, _) in &replicas {
        assert!(
            after
                .iter()
                .any(|(r, s, _)| r == &addr.to_string() && s == "200"),
            "replica {addr} served none of the session after the kill: {after:?}"
        );
    }
    assert!(
        after.iter().all(|(_, s, _)| s.starts_with('2')),
        "a request failed: {after:?}"
    );
    assert_eq!(py.calls().len(), 10, "each call reached the server once");
}

/// `rate-limit` with a bucket of `n` refilled at `n` per minute, hit concurrently through the
/// balancer: exactly `n` pass (plus what refilled while the burst ran, counted from its time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_admits_exactly_n_across_three_replicas_under_concurrent_load() {
    const N: u32 = 30;
    let redis = Redis::start();
    let backend = Backend::start("app").await;
    let body = || {
        format!(
            "[upstreams.app]\nendpoints = [\"{}\"]\n{}{}\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"rate-limit\", config = {{ burst = {N}, rate_per_second = {rate}, key = \"header:x-client\" }} }}]\n",
            backend.endpoint(),
            plugins_toml(&[("rate-limit", "capabilities = { kv = \"limits\" }")]),
            kv(&redis),
            rate = f64::from(N) / 60.0,
        )
    };
    let replicas = replicas(body, &[]);
    let lb = balance(&replicas);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 * N {
        let url = lb.url("/x");
        tasks.push(tokio::spawn(async move {
            crate::support::get_with(&url, &[("x-client", "team-a")])
                .await
                .status
                .as_u16()
        }));
    }
    let mut passed = 0u32;
    for t in tasks {
        let status = t.await.expect("task");
        assert!(status == 200 || status == 429, "unexpected {status}");
        passed += u32::from(status == 200);
    }
    let refilled = (started.elapsed().as_secs_f64() * f64::from(N) / 60.0).floor() as u32;
    assert!(
        (N..=N + refilled).contains(&passed),
        "{passed} admitted; the bucket holds {N}, and {refilled} refilled meanwhile"
    );
    let per_replica: Vec<usize> = replicas
        .iter()
        .map(|(a, _)| {
            lb.served()
                .iter()
                .filter(|(r, _, _)| r == &a.to_string())
                .count()
        })
        .collect();
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "every replica served some: {per_replica:?}"
    );
}

/// A rolling restart as Kubernetes runs one: each replica in turn gets SIGTERM; the balancer,
/// like a Service following ready endpoints, stops sending it new requests once its `/ready`
/// answers 503 (it keeps serving meanwhile: `shutdown_delay`); it drains and exits 0, and its
/// replacement joins the balancer once ready. A bounded POST loop runs throughout: nginx never
/// sends a POST again once sent, so a request a replica dropped would reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_steady_load_fails_no_request() {
    let backend = Backend::start("app").await;
    let body = |admin: u16| {
        format!(
            "[limits]\nshutdown_delay = \"5s\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[upstreams.app]\nendpoints = [\"{}\"]\n{}\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"headers\", config = {{ response = {{ set = {{ \"x-via\" = \"weir\" }} }} }} }}]\n",
            backend.endpoint(),
            plugins_toml(&[("headers", "")]),
        )
    };
    let mut replicas: Vec<(SocketAddr, u16, Gateway)> = (0..3)
        .map(|_| {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let admin = free_port();
            (addr, admin, start_replica(addr, &body(admin), &[]))
        })
        .collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.0).collect();
    let lb = Lb::start(&addrs);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, failures) =
            (stop.clone(), ok.clone(), failed.clone(), failures.clone());
        let url = lb.url("/steady");
        load.push(tokio::spawn(async move {
            // Bounded: at most 20,000 requests per loop, and it stops when the restarts end.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = post(&url, "order").await;
                if r.status == 200 && r.header("x-via").as_deref() == Some("weir") {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = failures.lock() {
                        f.push(format!("{} {}", r.status, r.text()));
                    }
                }
            }
        }));
    }
    let served = ok.clone();
    let wait_for_more = move |n: u64| {
        let ok = served.clone();
        async move {
            let target = ok.load(Ordering::Relaxed) + n;
            crate::support::eventually("requests served", async || {
                let now = ok.load(Ordering::Relaxed);
                if now >= target {
                    Ok(())
                } else {
                    Err(format!("{now} of {target}"))
                }
            })
            .await
        }
    };
    wait_for_more(200).await;
    for replica in &mut replicas {
        let (addr, admin) = (replica.0, replica.1);
        replica.2.signal("TERM");
        ready_is(admin, 503).await;
        let others: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != addr).collect();
        tokio::task::block_in_place(|| lb.route_to(&others));
        let status = replica.2.wait_exit(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "replica {addr} drained and exited 0"
        );
        replica.2 = start_replica(addr, &body(admin), &[]);
        ready_is(admin, 200).await;
        tokio::task::block_in_place(|| lb.route_to(&addrs));
        wait_for_more(200).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load loop");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} of {} failed: {:?}\nnginx: {}",
        ok + failed,
        failures
            .lock()
            .map(|f| f.iter().take(5).cloned().collect::<Vec<_>>()),
        lb.errors()
    );
    assert!(ok >= 800, "the load ran throughout: {ok}");
}

/// Waits until a replica's `GET /ready` answers `status`.
async fn ready_is(admin: u16, status: u16) {
    let url = format!("http://127.0.0.1:{admin}/ready");
    crate::support::eventually("the replica's readiness", async || {
        let req = http::Request::get(&url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        match crate::support::http1_client().request(req).await {
            Ok(r) if r.status().as_u16() == status => Ok(()),
            Ok(r) => Err(format!("/ready answered {}", r.status())),
            Err(e) => Err(format!("/ready: {e}")),
        }
    })
    .await;
}

/// `llm-gateway` on three replicas sharing Redis: a token budget is charged each streamed
/// answer's usage exactly once whichever replica served it, and an answer cached by one replica
/// is served by the others without calling the provider.
#[test]
fn llm_budgets_and_caches_are_shared_by_three_replicas() {
    use crate::llm::{KEYS, Provider, config, records, sdk};
    let redis = Redis::start();
    let oa = Provider::start(&[]);
    let an = Provider::start(&[]);
    let providers = [
        ("oa", "openai", oa.port, "10s"),
        ("an", "anthropic", an.port, "10s"),
    ];
    let models = "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\nclaude = [{ provider = \"an\", model = \"claude-x\" }]";
    let body = || {
        config(&providers, models, &kv(&redis))
            + "\n[routes.chain.config.budgets]\nalice = { total_tokens = 30 }\n[routes.chain.config.cache]\nttl_s = 60\n"
    };
    let replicas = replicas(body, KEYS);
    let lb = balance(&replicas);

    // Streams of both formats through the balancer ("hello there": 2 prompt + 3 completion
    // tokens each). 30 tokens: six are served, the seventh is refused at 30 of 30.
    let calls: Vec<_> = (0..8)
        .map(|i| match i % 2 {
            0 => json!({"sdk": "openai", "model": "claude", "stream": true}),
            _ => json!({"sdk": "anthropic", "model": "gpt", "stream": true}),
        })
        .collect();
    let out = sdk(&lb.url(""), "k-alice", json!(calls));
    let served = out.iter().take_while(|r| r.get("error").is_none()).count();
    assert_eq!(served, 6, "30 tokens at 5 per streamed answer: {out:#?}");
    assert!(
        out[6]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token budget exhausted for alice: used 30 of 30")),
        "{out:#?}"
    );
    let alice = |gw: &Gateway| {
        records(gw)
            .iter()
            .filter(|r| r["principal"] == "alice")
            .count()
    };
    poll(|| replicas.iter().map(|(_, gw)| alice(gw)).sum::<usize>() >= 6);
    let by_replica: Vec<usize> = replicas.iter().map(|(_, gw)| alice(gw)).collect();
    assert!(
        by_replica.iter().filter(|&&n| n > 0).count() >= 2,
        "the answers came from several replicas: {by_replica:?}"
    );

    // bob (no budget) asks the same question of each replica in turn: the first call reaches
    // the provider, the next two are served from the entry the first replica stored.
    let chats = || {
        oa.received()
            .iter()
            .filter(|r| r["path"] == "/v1/chat/completions")
            .count()
    };
    let before = chats();
    let ask = |gw: &Gateway| {
        sdk(
            &gw.url(""),
            "k-bob",
            json!([{"sdk": "openai", "model": "gpt", "prompt": "what is the capital of france"}]),
        )
        .remove(0)
    };
    let first = ask(&replicas[0].1);
    assert_eq!(first["text"], "echo: what is the capital of france");
    assert_eq!(chats(), before + 1);
    for (addr, gw) in &replicas[1..] {
        assert_eq!(ask(gw), first, "replica {addr} serves the cached answer");
        // The usage record is logged as the answer ends: wait for it.
        let hit = poll(|| {
            records(gw)
                .into_iter()
                .any(|r| r["principal"] == "bob" && r["cache_hit"] == "exact")
        });
        assert!(hit, "replica {addr} recorded a cache hit");
    }
    assert_eq!(chats(), before + 1, "the provider was called once");
}

/// Polls `check` until it holds or the hang guard passes; returns its last answer.
fn poll(check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A plugin rollout through a registry: three replicas run `oci://…:stable` (each with its own
/// cache, as on separate machines); the tag moves to another build while a load loop runs
/// through the balancer. Each replica is seen to switch, no request fails, and no request mixes
/// builds (its request hook and response hook ran the same one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_oci_tag_reaches_every_replica_with_no_mixed_answers() {
    let registry = crate::support::Registry::start(None);
    let reference = registry.reference("weir/rollout:stable");
    let push_cache = tempfile::tempdir().expect("cache");
    let push = |wasm: &str| {
        let out = crate::support::weir_command()
            .env("XDG_CACHE_HOME", push_cache.path())
            .args(["plugin", "push"])
            .arg(crate::support::plugin(wasm))
            .arg(&reference)
            .output()
            .expect("run weir plugin push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    push("probe");
    let backend = Backend::start("app").await;
    let body = format!(
        "[reload]\nregistry_poll = \"300ms\"\n[upstreams.app]\nendpoints = [\"{}\"]\n[plugins.probe]\npath = \"{reference}\"\npull = \"always\"\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"probe\", config = {{ variant = true, tag = \"oci\" }} }}]\n",
        backend.endpoint()
    );
    let caches: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("cache"))
        .collect();
    let replicas: Vec<(SocketAddr, Gateway)> = caches
        .iter()
        .map(|cache| {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let env = [("XDG_CACHE_HOME", cache.path().to_str().expect("utf-8 path"))];
            (addr, start_replica(addr, &body, &env))
        })
        .collect();
    let lb = balance(&replicas);

    // What one request saw: the build of its request hook and of its response hook.
    async fn variant(url: &str) -> Result<String, String> {
        let r = crate::support::get(url).await;
        let (request, response) = (r.seen("x-probe-variant"), r.header("x-probe-variant"));
        match (r.status.as_u16(), request, response) {
            (200, Some(q), Some(p)) if q == p => Ok(q),
            (status, q, p) => Err(format!("status {status}, request {q:?}, response {p:?}")),
        }
    }
    for (addr, _) in &replicas {
        assert_eq!(
            variant(&format!("http://{addr}/x")).await.as_deref(),
            Ok("a")
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, url) = (stop.clone(), lb.url("/x"));
        async move {
            let (mut seen, mut bad) = (std::collections::BTreeMap::new(), Vec::new());
            // Bounded: at most 20,000 requests, and it stops once every replica switched.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match variant(&url).await {
                    Ok(v) => *seen.entry(v).or_insert(0u32) += 1,
                    Err(e) => bad.push(e),
                }
            }
            (seen, bad)
        }
    });
    push("probe_b");
    for (addr, gw) in &replicas {
        let url = format!("http://{addr}/x");
        crate::support::eventually(
            "each replica to serve the new build",
            async || match variant(&url).await {
                Ok(v) if v == "b" => Ok(()),
                other => Err(format!("replica {addr}: {other:?}")),
            },
        )
        .await;
        assert!(
            gw.log().contains("registry tag moved; reloading"),
            "{}",
            gw.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (seen, bad) = load.await.expect("load loop");
    assert!(bad.is_empty(), "failed or mixed answers: {bad:?}");
    assert!(
        seen.contains_key("a"),
        "the load ran before the move: {seen:?}"
    );
}

/// The bound where a budget is not exact: it is checked when a request arrives and charged when
/// its answer ends, so requests in flight together when it runs out all finish. Four streamed
/// requests at once across the replicas against 12 tokens (5 each): three would pass one by
/// one, at most all four pass together, and each served answer is charged exactly once.
#[test]
fn a_token_budget_overshoots_at_most_by_the_requests_in_flight_across_replicas() {
    use crate::llm::{KEYS, Provider, config, sdk};
    let redis = Redis::start();
    let oa = Provider::start(&[]);
    let providers = [("oa", "openai", oa.port, "10s")];
    let models = "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]";
    let body = || {
        config(&providers, models, &kv(&redis))
            + "\n[routes.chain.config.budgets]\nalice = { total_tokens = 12 }\n"
    };
    let replicas = replicas(body, KEYS);
    let lb = balance(&replicas);
    let base = lb.url("");
    let stream = json!([{"sdk": "openai", "model": "gpt", "stream": true}]);
    let together: Vec<_> = (0..4)
        .map(|_| {
            let (base, stream) = (base.clone(), stream.clone());
            std::thread::spawn(move || sdk(&base, "k-alice", stream).remove(0))
        })
        .collect();
    let served = together
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .filter(|r| r.get("error").is_none())
        .count();
    assert!((3..=4).contains(&served), "{served} served");
    let refused = sdk(&base, "k-alice", stream).remove(0);
    let want = format!("used {} of 12", 5 * served);
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&want)),
        "each served answer charged once ({want}): {refused}"
    );
}
