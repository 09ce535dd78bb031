//! proxy-wasm filters built with the SDKs others maintain (the proxy-wasm Rust SDK, the
//! AssemblyScript SDK), unchanged, in Weir chains next to WIT plugins: header edits, an auth
//! check through an HTTP call that pauses and resumes the request, bodies, configuration,
//! ticks, shared data, metrics; a Higress-style key-auth across requests and a hot swap; and
//! filters that loop, trap or eat memory failing only their request.

use crate::support::*;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Builds the Rust filter in `tests/proxy-wasm/<dir>` for wasm32-unknown-unknown (with
/// `features`, into its own target dir when given) and returns the module's path.
pub(crate) fn rust_filter(dir: &str, features: Option<&str>) -> PathBuf {
    rust_filter_for(dir, features, "wasm32-unknown-unknown")
}

/// [`rust_filter`] for another target (`wasm32-wasip1`).
fn rust_filter_for(dir: &str, features: Option<&str>, triple: &str) -> PathBuf {
    let root = repo_root().join("tests/proxy-wasm").join(dir);
    let target = match features {
        Some(f) => root.join("target").join(f),
        None => root.join("target"),
    };
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "--release", "--target"])
        .arg(triple)
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&root);
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    let status = cmd.status().expect("run cargo for a proxy-wasm filter");
    assert!(status.success(), "building {} failed", root.display());
    target
        .join(triple)
        .join("release")
        .join(format!("{}.wasm", dir.replace('-', "_")))
}

/// Builds `tests/proxy-wasm/as-filter` with its pinned `@solo-io/proxy-runtime` and
/// `assemblyscript` (`npm ci && npm run build`), once per test binary.
fn as_filter() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = repo_root().join("tests/proxy-wasm/as-filter");
        for args in [&["ci", "--no-audit", "--no-fund"][..], &["run", "build"]] {
            let status = Command::new("npm")
                .args(args)
                .current_dir(&dir)
                .status()
                .expect("run npm for the AssemblyScript filter");
            assert!(status.success(), "npm {args:?} in {} failed", dir.display());
        }
        dir.join("build/filter.wasm")
    })
}

/// An auth service: answers 200 with the user named for the value of `header`, 403
/// otherwise; counts the calls it gets.
pub(crate) struct AuthService {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthService {
    pub(crate) async fn start(
        header: &'static str,
        users: &'static [(&'static str, &'static str)],
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth service");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let given = req
                            .headers()
                            .get(header)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        async move {
                            let user = users.iter().find(|(k, _)| *k == given).map(|(_, u)| *u);
                            let (status, body) = match user {
                                Some(u) => (200, u.to_string()),
                                None => (403, "no".to_string()),
                            };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        AuthService { addr, calls, task }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `[plugins.NAME]` for a proxy-wasm filter at `path`.
fn filter_toml(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[plugins.{name}]\npath = {:?}\nkind = \"proxy-wasm\"\n{extra}\n",
        path.display().to_string()
    )
}

async fn post_with(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        req.body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

async fn metrics(admin: u16) -> String {
    get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .text()
}

fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_filter_edits_headers_checks_auth_by_http_call_and_rewrites_bodies_in_a_chain() {
    let backend = Backend::start("app").await;
    let auth = AuthService::start("x-token", &[("good", "alice")]).await;
    let admin = free_port();
    let filter = rust_filter("rust-sdk-filters", None);
    let gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[upstreams.auth]\nendpoints = [\"{}\"]\n\
         {}{}\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"headers\", config = {{ request = {{ set = {{ \"x-wit\" = \"before\" }} }}, response = {{ add = {{ \"x-wit-response\" = \"yes\" }} }} }} }},\n\
         {{ plugin = \"sdk\", config = {{ add_header = [\"x-sdk\", \"added\"], auth = {{ cluster = \"auth\", path = \"/check\" }}, body = {{ forbidden = \"evil\", redact = \"secret\" }}, properties = true, tick_ms = 20 }} }},\n\
         {{ plugin = \"headers\", config = {{ request = {{ set = {{ \"x-principal-after\" = \"${{principal}}\" }} }} }} }},\n]\n",
        backend.endpoint(),
        auth.endpoint(),
        plugins_toml(&[("headers", "")]),
        filter_toml(
            "sdk",
            &filter,
            "instances = \"pooled\"\nbody = \"buffered\"\ncapabilities = { outbound = [\"auth\"], metrics = true }"
        ),
    ));

    // Authorised: the HTTP call pauses the request, its answer resumes it with the user.
    let r = post_with(
        &gw.url("/things?x=1"),
        &[("x-token", "good"), ("x-remove-me", "1")],
        "a secret plan",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(r.seen("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(r.seen("x-sdk").as_deref(), Some("added"));
    assert_eq!(
        r.seen("x-wit").as_deref(),
        Some("before"),
        "the WIT plugin ran first"
    );
    // The filter named the principal: the WIT plugin after it sees her.
    assert_eq!(r.seen("x-principal-after").as_deref(), Some("alice"));
    assert_eq!(r.seen("x-remove-me"), None);
    assert_eq!(r.seen("x-request-count").as_deref(), Some("1"));
    assert_eq!(r.seen("x-route").as_deref(), Some("r"));
    assert_eq!(r.seen("x-plugin").as_deref(), Some("sdk"));
    assert_eq!(r.seen("x-method").as_deref(), Some("POST"));
    assert!(
        r.seen("x-source")
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{echo}"
    );
    assert_eq!(r.header("x-rust-sdk").as_deref(), Some("x-sdk"));
    assert_eq!(r.header("x-wit-response").as_deref(), Some("yes"));
    // The response body (the echo of the request) went through the body callback: redacted.
    let text = r.text();
    assert!(
        text.contains("a **** plan") && !text.contains("secret"),
        "{text}"
    );
    assert_eq!(auth.calls(), 1);

    // Refused by the auth service: the filter's local response, the upstream never asked.
    let hits = backend.hits();
    let r = post_with(&gw.url("/things"), &[("x-token", "bad")], "hello").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "denied\n");
    assert_eq!(r.header("x-denied-by").as_deref(), Some("rust-sdk-filters"));
    assert_eq!(backend.hits(), hits);
    assert_eq!(auth.calls(), 2);

    // A buffered request body the filter refuses from its body callback.
    let r = post_with(&gw.url("/things"), &[("x-token", "good")], "an evil plan").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "forbidden body\n");
    assert_eq!(backend.hits(), hits);

    // The root context's ticks count in shared data, which requests read.
    eventually("ticks counted by the Rust SDK filter", async || {
        let r = post_with(&gw.url("/tick"), &[("x-token", "good")], "").await;
        match r.seen("x-ticks").and_then(|t| t.parse::<u64>().ok()) {
            Some(n) if n >= 2 => Ok(()),
            other => Err(format!("x-ticks {other:?}")),
        }
    })
    .await;

    // Shared data counts on across requests and instances; the metric reaches /metrics.
    let r = post_with(&gw.url("/things"), &[("x-token", "good")], "ok").await;
    let count: u64 = r
        .seen("x-request-count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(count >= 5, "{count}");
    let text = metrics(admin).await;
    let counted = metric_value(&text, "weir_plugin_rust_sdk_requests_total{plugin=\"sdk\"}");
    assert_eq!(counted, Some(count as f64), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assemblyscript_sdk_filter_runs_streamed_and_buffered_with_ticks_and_an_auth_call() {
    let backend = Backend::start("app").await;
    let auth = AuthService::start("x-token", &[("good", "bob")]).await;
    let admin = free_port();
    let filter = as_filter();
    let config =
        "{ header_value = \"from-as\", auth_cluster = \"auth\", redact_word = \"secret\" }";
    let grants = "capabilities = { outbound = [\"auth\"], metrics = true }";
    let gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[upstreams.auth]\nendpoints = [\"{}\"]\n\
         {}{}{}\
         [[routes]]\nname = \"streamed\"\nmatch = {{ path_prefix = \"/s\" }}\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"api-key\", config = {{ keys = {{ \"k-1\" = \"alice\" }} }} }},\n\
         {{ plugin = \"as\", config = {config} }},\n]\n\
         [[routes]]\nname = \"buffered\"\nmatch = {{ path_prefix = \"/b\" }}\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"as-buffered\", config = {config} }},\n]\n",
        backend.endpoint(),
        auth.endpoint(),
        plugins_toml(&[("api-key", "")]),
        filter_toml("as", filter, &format!("instances = \"pooled\"\n{grants}")),
        filter_toml(
            "as-buffered",
            filter,
            &format!("body = \"buffered\"\n{grants}")
        ),
    ));

    // Streamed (the default): headers edited after the WIT plugin authenticated, the auth
    // call's answer resumes the request, the response body is held to its end and redacted.
    let r = post_with(
        &gw.url("/s/x"),
        &[
            ("x-api-key", "k-1"),
            ("x-token", "good"),
            ("x-remove-me", "1"),
        ],
        "the secret word",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-as-filter").as_deref(), Some("from-as"));
    assert_eq!(r.seen("x-auth-user").as_deref(), Some("bob"));
    assert_eq!(r.seen("x-remove-me"), None);
    assert_eq!(r.header("x-as-response").as_deref(), Some("yes"));
    let text = r.text();
    assert!(
        text.contains("the **** word") && !text.contains("secret"),
        "{text}"
    );
    // The WIT plugin before it refuses without a key: the filter never runs.
    let calls = auth.calls();
    let r = get_with(&gw.url("/s/x"), &[("x-token", "good")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(auth.calls(), calls);
    // A token the auth service refuses: the filter's 403.
    let r = get_with(&gw.url("/s/x"), &[("x-api-key", "k-1"), ("x-token", "bad")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "denied by as-filter");

    // Buffered: the whole body reaches the body callback before anything goes upstream, so
    // the filter can refuse it.
    let hits = backend.hits();
    let r = post_with(&gw.url("/b/x"), &[("x-token", "good")], "a forbidden thing").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.text(), "forbidden body");
    assert_eq!(backend.hits(), hits);

    // The root context's ticks count in shared data, which requests read.
    eventually("ticks counted by the AssemblyScript filter", async || {
        let r = get_with(&gw.url("/b/x"), &[("x-token", "good")]).await;
        match r.seen("x-as-ticks").and_then(|t| t.parse::<u64>().ok()) {
            Some(n) if n >= 2 => Ok(()),
            other => Err(format!("x-as-ticks {other:?}")),
        }
    })
    .await;
    // Shared data per plugin, counted across its instances; the metric on /metrics.
    let r = get_with(&gw.url("/b/x"), &[("x-token", "good")]).await;
    let count: u64 = r
        .seen("x-as-count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(count >= 3, "{count}");
    let text = metrics(admin).await;
    let counted = metric_value(
        &text,
        "weir_plugin_as_filter_requests_total{plugin=\"as-buffered\"}",
    );
    assert_eq!(counted, Some(count as f64), "{text}");
}

/// A gateway serving `/` through the Higress-style key-auth filter at `path` (consumer alice
/// local, others asked of `auth`, 3 requests per consumer); `grant` is added to its
/// capabilities, `tables` to the file.
fn key_auth_gateway(
    backend: &Backend,
    auth: &AuthService,
    path: &Path,
    grant: &str,
    tables: &str,
) -> Gateway {
    let port = free_port();
    let config = format!(
        "[[listeners]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\n\
         [reload]\npoll_interval = \"50ms\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[upstreams.auth]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"key-auth\", config = {{ consumers = [{{ name = \"alice\", credential = \"k-alice\" }}], keys = [\"x-api-key\"], auth_cluster = \"auth\", auth_path = \"/verify\", quota = 3 }} }},\n\
         {{ plugin = \"headers\", config = {{ request = {{ set = {{ \"x-after\" = \"${{principal}}\" }} }} }} }},\n]\n{}",
        backend.endpoint(),
        auth.endpoint(),
        filter_toml(
            "key-auth",
            path,
            &format!("instances = \"pooled\"\ncapabilities = {{ outbound = [\"auth\"]{grant} }}"),
        ),
        plugins_toml(&[("headers", "")]),
    ) + tables;
    Gateway::start_raw(&config, format!("127.0.0.1:{port}").parse().expect("addr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higress_style_key_auth_keeps_its_shared_data_across_requests_and_a_hot_swap() {
    let backend = Backend::start("app").await;
    let auth = AuthService::start("x-api-key", &[("k-remote", "bob")]).await;
    let v1 = std::fs::read(rust_filter("higress-key-auth", None)).expect("v1");
    let v2 = std::fs::read(rust_filter("higress-key-auth", Some("v2"))).expect("v2");
    assert_ne!(v1, v2);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("key-auth.wasm");
    write_atomically(&path, &v1);
    let gw = key_auth_gateway(&backend, &auth, &path, "", "");
    let bob = [("x-api-key", "k-remote")];

    // First request: the key is unknown, so an HTTP call asks the auth service; the answer
    // resumes the request with Higress's consumer header and without the key.
    let r = get_with(&gw.url("/"), &bob).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-mse-consumer").as_deref(), Some("bob"));
    assert_eq!(
        r.seen("x-api-key"),
        None,
        "the key never reaches the upstream"
    );
    assert_eq!(r.header("x-key-auth-version").as_deref(), Some("1"));
    assert_eq!(auth.calls(), 1);
    // Second request: the verdict comes from shared data, no call.
    let r = get_with(&gw.url("/"), &bob).await;
    assert_eq!(r.status, 200);
    assert_eq!(auth.calls(), 1);
    // A local consumer, and refusals in Higress's shape.
    let r = get_with(&gw.url("/"), &[("x-api-key", "k-alice")]).await;
    assert_eq!(r.seen("x-mse-consumer").as_deref(), Some("alice"));
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Key realm=MSE Gateway")
    );
    assert!(r.text().contains("No API key found"), "{}", r.text());

    // Hot swap: the file changes under the running gateway; requests tell the versions apart.
    write_atomically(&path, &v2);
    eventually("the v2 build serving", async || {
        let r = get(&gw.url("/")).await;
        match r.header("x-key-auth-version").as_deref() {
            Some("2") => Ok(()),
            other => Err(format!("version {other:?}")),
        }
    })
    .await;
    // The shared data outlived the swap: bob's verdict (no new call) and his quota (2 of 3).
    let r = get_with(&gw.url("/"), &bob).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-key-auth-version").as_deref(), Some("2"));
    assert_eq!(auth.calls(), 1);
    let r = get_with(&gw.url("/"), &bob).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("quota exceeded"), "{}", r.text());
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_data_in_kv_holds_compare_and_swap_across_two_replicas() {
    let redis = Redis::start();
    let backend = Backend::start("app").await;
    let auth = AuthService::start("x-api-key", &[("k-remote", "bob")]).await;
    let path = rust_filter("higress-key-auth", None);
    let kv = format!("\n[kv]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let grant = ", kv = \"key-auth\"";
    let a = key_auth_gateway(&backend, &auth, &path, grant, &kv);
    let b = key_auth_gateway(&backend, &auth, &path, grant, &kv);

    // Bob's verdict, fetched by replica a, is what replica b finds: one call in all.
    let bob = [("x-api-key", "k-remote")];
    assert_eq!(get_with(&a.url("/"), &bob).await.status, 200);
    let r = get_with(&b.url("/"), &bob).await;
    assert_eq!(r.seen("x-mse-consumer").as_deref(), Some("bob"));
    assert_eq!(auth.calls(), 1);

    // Alice's quota (3) counted across both replicas under compare-and-swap: after one
    // request, eight at once on the two replicas let exactly two more through.
    let alice = [("x-api-key", "k-alice")];
    assert_eq!(get_with(&a.url("/"), &alice).await.status, 200);
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { a.url("/") } else { b.url("/") };
        sent.spawn(async move { get_with(&url, &[("x-api-key", "k-alice")]).await.status });
    }
    let mut statuses = Vec::new();
    while let Some(status) = sent.join_next().await {
        statuses.push(status.expect("request task").as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_loops_traps_or_eats_memory_fails_only_its_request_by_on_error() {
    let backend = Backend::start("app").await;
    let filter = rust_filter("rust-sdk-filters", None);
    let mut routes = String::new();
    for how in ["loop", "trap", "grow"] {
        for (on_error, suffix) in [("fail-closed", "closed"), ("fail-open", "open")] {
            routes.push_str(&format!(
                "[[routes]]\nname = \"{how}-{suffix}\"\nmatch = {{ path_prefix = \"/{how}/{suffix}\" }}\n\
                 upstream = \"app\"\nchain = [{{ plugin = \"sdk\", on_error = \"{on_error}\", \
                 config = {{ misbehave = \"{how}\", add_header = [\"x-sdk\", \"ran\"] }} }}]\n"
            ));
        }
    }
    let gw = Gateway::start(&format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n{}{routes}",
        backend.endpoint(),
        filter_toml(
            "sdk",
            &filter,
            "instances = \"pooled\"\nmemory_limit = \"32MiB\"\nhook_budget = \"50ms\""
        ),
    ));
    let bad = [("x-misbehave", "yes")];
    for (how, reason) in [
        ("loop", "used up its execution budget"),
        ("trap", "trapped"),
        ("grow", "memory limit"),
    ] {
        // Fail-closed: 500 naming the plugin, the route and what happened.
        let r = get_with(&gw.url(&format!("/{how}/closed")), &bad).await;
        assert_eq!(r.status, 500, "{how}: {}", r.text());
        let text = r.text();
        assert!(
            text.contains("plugin \"sdk\"") && text.contains(&format!("\"{how}-closed\"")),
            "{text}"
        );
        assert!(text.contains(reason), "{how}: {text}");
        // Fail-open: the request goes on without the filter's edits.
        let r = get_with(&gw.url(&format!("/{how}/open")), &bad).await;
        assert_eq!(r.status, 200, "{how}: {}", r.text());
        assert_eq!(r.seen("x-sdk"), None);
        // The next request on the same route is served by a sound instance.
        let r = get(&gw.url(&format!("/{how}/closed"))).await;
        assert_eq!(r.status, 200, "{how}: {}", r.text());
        assert_eq!(r.seen("x-sdk").as_deref(), Some("ran"));
    }
    // While one request loops, others are served (the budget yields the worker at every tick).
    let looping = tokio::spawn({
        let url = gw.url("/loop/closed");
        async move { get_with(&url, &[("x-misbehave", "yes")]).await.status }
    });
    let r = get(&gw.url("/trap/closed")).await;
    assert_eq!(r.status, 200);
    assert_eq!(looping.await.expect("looping request").as_u16(), 500);
}

#[test]
fn proxy_wasm_mistakes_are_refused_with_the_file_line_route_and_plugin() {
    let filter = rust_filter("rust-sdk-filters", None);
    let component = plugin("headers");
    let head = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.app]\nendpoints = [\"http://127.0.0.1:9\"]\n";
    let route =
        |entry: &str| format!("[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{entry}]\n");
    let errors = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .map(str::to_string)
            .collect()
    };
    let cases: [(String, &str); 7] = [
        // A component named a proxy-wasm filter, and a filter named a component.
        (
            format!(
                "[plugins.p]\npath = {:?}\nkind = \"proxy-wasm\"\n",
                component.display().to_string()
            ),
            "is a component, but the plugin says kind = \"proxy-wasm\"",
        ),
        (
            format!(
                "[plugins.p]\npath = {:?}\nkind = \"component\"\n",
                filter.display().to_string()
            ),
            "is a core module, but the plugin says kind = \"component\"",
        ),
        // Filter keys on a component.
        (
            format!(
                "[plugins.p]\npath = {:?}\nbody = \"buffered\"\n",
                component.display().to_string()
            ),
            "weir.toml:7:8: plugin \"p\": `body` is for proxy-wasm filters: add kind = \"proxy-wasm\"",
        ),
        // A configuration the filter refuses (an unknown key), named by route and plugin.
        (
            format!("[plugins.p]\npath = {:?}\n", filter.display().to_string())
                + &route("{ plugin = \"p\", config = { colour = \"red\" } }"),
            "route \"r\": plugin \"p\": rejected its config: the filter refused its plugin \
             configuration: bad configuration: unknown field `colour`",
        ),
        (
            format!(
                "[plugins.p]\npath = {:?}\nkind = \"proxy-wasm\"\n",
                filter.display().to_string()
            ) + &route("{ plugin = \"p\", config = {}, config_text = \"x\" }"),
            "`config_text` and `config` are alternatives: give one",
        ),
        // A core module that is no filter, said to be one, and not said to be anything.
        (
            format!(
                "[plugins.p]\npath = {:?}\nkind = \"proxy-wasm\"\n",
                repo_root()
                    .join("tests/proxy-wasm/empty.wasm")
                    .display()
                    .to_string()
            ),
            "empty.wasm is not a proxy-wasm filter: it exports no proxy_abi_version_0_2_x marker",
        ),
        (
            format!(
                "[plugins.p]\npath = {:?}\n",
                repo_root()
                    .join("tests/proxy-wasm/empty.wasm")
                    .display()
                    .to_string()
            ),
            "is not a Wasm component (it is a core module) nor a proxy-wasm filter: it exports no \
             proxy_abi_version_0_2_x marker",
        ),
    ];
    for (body, want) in cases {
        let (ok, stderr) = check(&format!("{head}{body}"));
        assert!(!ok, "{body}");
        let found = errors(&stderr);
        assert!(
            found
                .iter()
                .any(|e| e.contains(want) && e.contains("weir.toml:")),
            "want {want:?} in {found:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_paused_past_body_limit_fails_its_request_and_small_ones_pass() {
    let backend = Backend::start("app").await;
    let filter = rust_filter("rust-sdk-filters", None);
    let gw = Gateway::start(&format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"sdk\", \
         config = {{ body = {{ forbidden = \"evil\", redact = \"x\" }} }} }}]\n",
        backend.endpoint(),
        filter_toml(
            "sdk",
            &filter,
            "instances = \"pooled\"\nbody_limit = \"64KiB\""
        ),
    ));
    // The response (200,000 bytes streamed by the backend) is paused to its end by the
    // filter: past 64 KiB held, the stream fails and the client sees it cut short.
    let r = get_body(&gw.url("/bytes/200000")).await;
    assert!(r.is_err(), "{:?}", r.map(|b| b.len()));
    eventually("the failure logged", async || {
        let log = gw.log();
        match log.contains("held more than body_limit (65536 bytes)") {
            true => Ok(()),
            false => Err(log),
        }
    })
    .await;
    // The request body, paused likewise: the upstream request is aborted.
    let big = "a".repeat(100_000);
    let r = post_with(&gw.url("/upload"), &[], &big).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text()
            .contains("plugin \"sdk\" failed while streaming the body (fail-closed)"),
        "{}",
        r.text()
    );
    // Small bodies pass through the same pooled filter, inspected and rewritten.
    let r = post_with(&gw.url("/echo"), &[], "xyz").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("****yz"), "{}", r.text());
    // A local response from a streamed body callback comes too late (the headers have gone
    // upstream): the request fails, and the log says to buffer.
    let r = post_with(&gw.url("/echo"), &[], "an evil plan").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        gw.log().contains("give the plugin body = \"buffered\""),
        "{}",
        gw.log()
    );
}

/// The body of a GET, or the error that cut it short.
async fn get_body(url: &str) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt;
    let req = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = http1_client()
        .request(req)
        .await
        .map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_filter_built_for_wasip1_gets_the_wasi_envoy_gives_filters() {
    let backend = Backend::start("app").await;
    let filter = rust_filter_for("rust-sdk-filters", None, "wasm32-wasip1");
    let gw = Gateway::start(&format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"sdk\", \
         config = {{ add_header = [\"x-sdk\", \"wasip1\"], misbehave = \"trap\" }} }}]\n",
        backend.endpoint(),
        filter_toml("sdk", &filter, "instances = \"pooled\""),
    ));
    let r = get_with(&gw.url("/"), &[("x-remove-me", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-sdk").as_deref(), Some("wasip1"));
    assert_eq!(r.seen("x-remove-me"), None);
    assert_eq!(r.seen("x-request-count").as_deref(), Some("1"));
    // What the filter wrote to stderr (WASI fd_write) is in the gateway's log, with its name.
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("rust-sdk-filters: configured") && l.contains("plugin=\"sdk\"")),
        "{log}"
    );
    // A panic ends only its request.
    let r = get_with(&gw.url("/"), &[("x-misbehave", "yes")]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("trapped"), "{}", r.text());
    assert_eq!(get(&gw.url("/")).await.status, 200);
}
