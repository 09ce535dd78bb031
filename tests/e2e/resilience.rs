//! Upstream resilience: retries (and their budget), per-try timeouts, outlier ejection, active
//! health checks, balancing (weights, consistent hashing), the keep-alive race, and the admin
//! `/upstreams` view. Backends here can be killed and restarted on the same port, made to
//! answer 503, to hang, or to close idle connections quickly.

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// How a test backend answers.
#[derive(Clone, Copy)]
enum Mode {
    /// 200, with `x-backend: NAME`.
    Ok,
    /// This status, with `x-backend: NAME`.
    Status(u16),
    /// Accepts connections and never answers.
    Hang,
}

/// A backend on a fixed port that can be killed (listener and every connection closed) and
/// started again on the same port. `hits` counts requests other than `/health` probes (for
/// `Hang`: connections).
struct Killable {
    addr: SocketAddr,
    name: &'static str,
    mode: Mode,
    /// Close a keep-alive connection after it has been idle this long.
    idle_close: Option<Duration>,
    hits: Arc<AtomicU64>,
    /// `/health` probes received.
    probes: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Killable {
    async fn start(name: &'static str, mode: Mode) -> Killable {
        Killable::start_with(name, mode, None).await
    }

    async fn start_with(name: &'static str, mode: Mode, idle_close: Option<Duration>) -> Killable {
        let mut k = Killable {
            addr: "127.0.0.1:0".parse().expect("addr"),
            name,
            mode,
            idle_close,
            hits: Arc::new(AtomicU64::new(0)),
            probes: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        k.revive().await;
        k
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection.
    fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens (again) on the same address.
    async fn revive(&mut self) {
        let listener = eventually("the backend's port to be free", async || {
            let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            s.set_reuseaddr(true).map_err(|e| e.to_string())?;
            s.bind(self.addr).map_err(|e| e.to_string())?;
            s.listen(1024).map_err(|e| e.to_string())
        })
        .await;
        self.addr = listener.local_addr().expect("addr");
        let (name, mode, idle) = (self.name, self.mode, self.idle_close);
        let counters = (self.hits.clone(), self.probes.clone());
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task when it is aborted: every connection closes with it.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        conns.spawn(serve(stream, name, mode, idle, counters.clone()));
                    }
                    Some(_) = conns.join_next() => {}
                }
            }
        }));
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One connection: HTTP/1.1 keep-alive, closed once idle for `idle` if set.
async fn serve(
    stream: tokio::net::TcpStream,
    name: &'static str,
    mode: Mode,
    idle: Option<Duration>,
    (hits, probes): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    if let Mode::Hang = mode {
        hits.fetch_add(1, Ordering::SeqCst);
        // Holds the connection open, answering nothing, until the backend is killed.
        let _held = stream;
        return std::future::pending::<()>().await;
    }
    let busy = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let (b, l) = (busy.clone(), last.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        // Health-check probes are not traffic.
        if req.uri().path() == "/health" {
            probes.fetch_add(1, Ordering::SeqCst);
        } else {
            hits.fetch_add(1, Ordering::SeqCst);
        }
        b.fetch_add(1, Ordering::SeqCst);
        let (b, l) = (b.clone(), l.clone());
        async move {
            let _ = req.into_body().collect().await;
            let status = match mode {
                Mode::Status(s) => s,
                _ => 200,
            };
            let resp = Response::builder()
                .status(status)
                .header("x-backend", name)
                .body(Full::new(Bytes::from(name)))
                .expect("response");
            *l.lock().expect("lock") = tokio::time::Instant::now();
            b.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let Some(idle) = idle else {
        let _ = conn.await;
        return;
    };
    loop {
        let due = *last.lock().expect("lock") + idle;
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(due) => {
                let quiet = *last.lock().expect("lock") + idle <= tokio::time::Instant::now();
                if quiet && busy.load(Ordering::SeqCst) == 0 {
                    // As servers do at their keep-alive timeout: close the idle connection.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                    return;
                }
            }
        }
    }
}

type TestClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn client() -> TestClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Sends a request through the gateway: (status, `x-backend`), or the error.
async fn call(
    c: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, String), String> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| e.to_string())?;
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, backend))
}

/// A gateway with the admin API; returns it and the admin address.
fn gateway_with_admin(body: &str) -> (Gateway, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!("[admin]\naddress = \"{admin}\"\n\n{body}"));
    (gw, admin)
}

/// The value of one sample of `/metrics` (0 when absent).
async fn metric(admin: &str, series: &str) -> f64 {
    let text = get(&format!("http://{admin}/metrics")).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The state of `endpoint` in the admin `/upstreams`.
async fn endpoint_view(admin: &str, upstream: &str, endpoint: &str) -> serde_json::Value {
    let view = get(&format!("http://{admin}/upstreams")).await.json();
    view["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == upstream)
        .flat_map(|u| u["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["url"] == endpoint)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_request_and_returns_after_health_checks() {
    let a = Killable::start("a", Mode::Ok).await;
    let mut b = Killable::start("b", Mode::Ok).await;
    let (gw, admin) = gateway_with_admin(&format!(
        r#"
[upstreams.pair]
endpoints = ["{}", "{}"]
[upstreams.pair.retry]
attempts = 3
[upstreams.pair.outlier]
consecutive_failures = 2
base_ejection_time = "60s"
[upstreams.pair.health_check]
path = "/health"
interval = "100ms"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2

[[routes]]
name = "r"
upstream = "pair"
"#,
        a.endpoint(),
        b.endpoint()
    ));
    let c = client();
    let url = gw.url("/x");
    let mut failed = Vec::new();
    for i in 0..300 {
        if i == 100 {
            b.kill();
        }
        // A few requests at once, so some are in flight on b when it dies.
        let batch = (0..3).map(|_| call(&c, "GET", &url, &[]));
        for r in futures_util::future::join_all(batch).await {
            match r {
                Ok((StatusCode::OK, _)) => {}
                other => failed.push(format!("{i}: {other:?}")),
            }
        }
    }
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(b.hits() > 0 && a.hits() > 0);
    let retries = metric(
        &admin,
        "weir_upstream_retries_total{upstream=\"pair\",reason=\"connect\"}",
    )
    .await;
    assert!(retries >= 1.0, "connect retries counted: {retries}");
    let state = endpoint_view(&admin, "pair", &b.endpoint()).await;
    assert_ne!(state["state"], "healthy", "{state}");

    // Back on the same port: the checks pass and b takes requests again.
    let before = b.hits();
    b.revive().await;
    eventually("the revived backend to receive requests", async || {
        for _ in 0..10 {
            call(&c, "GET", &url, &[]).await?;
        }
        let hits = b.hits() - before;
        let probes_only = endpoint_view(&admin, "pair", &b.endpoint()).await;
        if probes_only["state"] == "healthy" && hits > 0 {
            Ok(())
        } else {
            Err(format!("b: {probes_only}, {hits} requests since revived"))
        }
    })
    .await;
    let transitions = metric(
        &admin,
        &format!(
            "weir_upstream_health_transitions_total{{upstream=\"pair\",endpoint=\"{}\",to=\"healthy\"}}",
            b.endpoint()
        ),
    )
    .await;
    assert!(transitions >= 1.0, "healthy transition counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_times_out_per_try_and_the_retry_succeeds_elsewhere() {
    let hang = Killable::start("hang", Mode::Hang).await;
    let ok = Killable::start("ok", Mode::Ok).await;
    let (gw, admin) = gateway_with_admin(&format!(
        r#"
[upstreams.pair]
endpoints = ["{}", "{}"]
balance = "round-robin"
[upstreams.pair.retry]
attempts = 2
per_try_timeout = "300ms"

[[routes]]
name = "r"
upstream = "pair"
"#,
        hang.endpoint(),
        ok.endpoint()
    ));
    let c = client();
    for _ in 0..6 {
        let r = hang_guard(
            "a request past a hanging endpoint",
            call(&c, "GET", &gw.url("/"), &[]),
        )
        .await;
        assert_eq!(r, Ok((StatusCode::OK, "ok".to_string())));
    }
    assert!(hang.hits() > 0, "the hanging endpoint was tried");
    let timeouts = metric(
        &admin,
        "weir_upstream_retries_total{upstream=\"pair\",reason=\"timeout\"}",
    )
    .await;
    assert!(timeouts >= 1.0, "timeout retries counted: {timeouts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_up_to_the_attempts_and_the_budget_then_returned() {
    let busy = Killable::start("busy", Mode::Status(503)).await;
    let tight = Killable::start("tight", Mode::Status(503)).await;
    let (gw, admin) = gateway_with_admin(&format!(
        r#"
[upstreams.busy]
endpoints = ["{}"]
[upstreams.busy.retry]
attempts = 3
backoff_base = "1ms"
backoff_max = "5ms"

[upstreams.tight]
endpoints = ["{}"]
[upstreams.tight.retry]
attempts = 3
budget_ratio = 0.0
budget_min_per_second = 0

[logging]
access_log = "access.log"

[[routes]]
name = "busy"
match = {{ path_prefix = "/busy" }}
upstream = "busy"

[[routes]]
name = "tight"
match = {{ path_prefix = "/tight" }}
upstream = "tight"
"#,
        busy.endpoint(),
        tight.endpoint()
    ));
    let c = client();
    let r = call(&c, "GET", &gw.url("/busy"), &[]).await;
    assert_eq!(r, Ok((StatusCode::SERVICE_UNAVAILABLE, "busy".to_string())));
    assert_eq!(busy.hits(), 3, "three tries in all");
    let retried = metric(
        &admin,
        "weir_upstream_retries_total{upstream=\"busy\",reason=\"status\"}",
    )
    .await;
    assert_eq!(retried, 2.0);
    let log = gw.config.with_file_name("access.log");
    eventually("the access log line with the tries", async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text.lines().find(|l| l.contains("\"/busy\""));
        match line.map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(v)) if v["upstream_attempts"] == 3 && v["upstream"] == "busy" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // With an empty budget, nothing is retried, and that is counted.
    for _ in 0..5 {
        let r = call(&c, "GET", &gw.url("/tight"), &[]).await;
        assert_eq!(
            r,
            Ok((StatusCode::SERVICE_UNAVAILABLE, "tight".to_string()))
        );
    }
    assert_eq!(tight.hits(), 5, "one try per request");
    let exhausted = metric(
        &admin,
        "weir_upstream_retry_budget_exhausted_total{upstream=\"tight\"}",
    )
    .await;
    assert_eq!(exhausted, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_retried_only_when_the_route_allows_it() {
    let busy = Killable::start("busy", Mode::Status(503)).await;
    let gw = Gateway::start(&format!(
        r#"
[upstreams.busy]
endpoints = ["{}"]
[upstreams.busy.retry]
attempts = 3
backoff_base = "1ms"
backoff_max = "5ms"

[[routes]]
name = "lenient"
match = {{ path_prefix = "/lenient" }}
upstream = "busy"
retry = {{ retry_non_idempotent = true }}

[[routes]]
name = "strict"
upstream = "busy"
"#,
        busy.endpoint()
    ));
    let r = post(&gw.url("/strict"), "payload").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.hits(), 1, "a POST is not retried by default");
    let r = post(&gw.url("/lenient"), "payload").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.hits(), 4, "the route allows retrying its POSTs");
    let r = get(&gw.url("/strict")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.hits(), 7, "a GET is retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_keys_and_moves_only_a_removed_endpoints_keys() {
    let (a, b, x) = (
        Killable::start("a", Mode::Ok).await,
        Killable::start("b", Mode::Ok).await,
        Killable::start("x", Mode::Ok).await,
    );
    let upstream = |eps: &[&Killable]| {
        let list: Vec<String> = eps
            .iter()
            .map(|k| format!("\"{}\"", k.endpoint()))
            .collect();
        format!(
            "[upstreams.h]\nendpoints = [{}]\nbalance = \"hash\"\nhash_by = \"header:x-user\"\n\n[[routes]]\nname = \"r\"\nupstream = \"h\"\n",
            list.join(", ")
        )
    };
    let (gw, admin) = gateway_with_admin(&upstream(&[&a, &b, &x]));
    let c = client();
    let keys: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    let mut placed = std::collections::HashMap::new();
    for round in 0..10 {
        for k in &keys {
            let (status, backend) = call(&c, "GET", &gw.url("/"), &[("x-user", k)])
                .await
                .expect("request");
            assert_eq!(status, StatusCode::OK);
            let first = placed.entry(k.clone()).or_insert_with(|| backend.clone());
            assert_eq!(*first, backend, "round {round}: {k} moved");
        }
    }
    let on_x = placed.values().filter(|v| *v == "x").count();
    assert!(on_x > 0 && on_x < 100, "x holds some keys: {on_x}");

    let config = std::fs::read_to_string(&gw.config).expect("config");
    let head = &config[..config.find("[upstreams.h]").expect("upstream")];
    gw.write_config(&format!("{head}{}", upstream(&[&a, &b])));
    eventually("the reload without x", async || {
        let view = get(&format!("http://{admin}/upstreams")).await.json();
        let n = view["upstreams"][0]["endpoints"]
            .as_array()
            .map_or(0, Vec::len);
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} endpoints"))
        }
    })
    .await;
    for k in &keys {
        let (_, now) = call(&c, "GET", &gw.url("/"), &[("x-user", k)])
            .await
            .expect("request");
        let before = &placed[k];
        if before == "x" {
            assert!(now == "a" || now == "b", "{k} went to {now}");
        } else {
            assert_eq!(
                &now, before,
                "{k} was on {before}, not on the removed endpoint"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_endpoint_gets_about_its_share() {
    let heavy = Killable::start("heavy", Mode::Ok).await;
    let light = Killable::start("light", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "[upstreams.w]\nendpoints = [{{ url = \"{}\", weight = 3 }}, \"{}\"]\n\n[[routes]]\nname = \"r\"\nupstream = \"w\"\n",
        heavy.endpoint(),
        light.endpoint()
    ));
    let c = client();
    for _ in 0..400 {
        call(&c, "GET", &gw.url("/"), &[]).await.expect("request");
    }
    let share = heavy.hits() as f64 / 400.0;
    assert!(
        (0.6..=0.9).contains(&share),
        "the weight-3 endpoint got {share}"
    );
    assert_eq!(heavy.hits() + light.hits(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keep_alive_race_loses_no_request() {
    // The backend closes a connection idle for 100 ms; requests come about every 100 ms, so
    // many land on a pooled connection just as the backend closes it.
    let idle = Duration::from_millis(100);
    let backend = Killable::start_with("ka", Mode::Ok, Some(idle)).await;
    let gw = Gateway::start(&format!(
        "[upstreams.ka]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"r\"\nupstream = \"ka\"\n",
        backend.endpoint()
    ));
    let c = client();
    let mut failed = Vec::new();
    let mut jitter: u64 = 7;
    for i in 0..200 {
        jitter = jitter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (jitter >> 33) % 30;
        tokio::time::sleep(idle - Duration::from_millis(15) + Duration::from_millis(offset)).await;
        match call(&c, "GET", &gw.url("/"), &[]).await {
            Ok((StatusCode::OK, _)) => {}
            other => failed.push(format!("{i}: {other:?}")),
        }
    }
    assert!(failed.is_empty(), "lost requests: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_upstreams_shows_an_ejected_endpoint() {
    let ok = Killable::start("ok", Mode::Ok).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (gw, admin) = gateway_with_admin(&format!(
        r#"
[upstreams.pair]
endpoints = ["{}", "{dead}"]
[upstreams.pair.retry]
attempts = 2
[upstreams.pair.outlier]
consecutive_failures = 1
base_ejection_time = "60s"

[[routes]]
name = "r"
upstream = "pair"
"#,
        ok.endpoint()
    ));
    let c = client();
    eventually("the dead endpoint to be ejected", async || {
        let r = call(&c, "GET", &gw.url("/"), &[]).await?;
        assert_eq!(r.0, StatusCode::OK, "retried onto the live endpoint");
        let view = endpoint_view(&admin, "pair", &dead).await;
        if view["state"] == "ejected" && view["ejections"] == 1 {
            Ok(())
        } else {
            Err(view.to_string())
        }
    })
    .await;
    let live = endpoint_view(&admin, "pair", &ok.endpoint()).await;
    assert_eq!(live["state"], "healthy", "{live}");
    let ejections = metric(
        &admin,
        &format!("weir_upstream_ejections_total{{upstream=\"pair\",endpoint=\"{dead}\"}}"),
    )
    .await;
    assert_eq!(ejections, 1.0);
}

#[test]
fn bad_balancing_settings_are_config_errors_with_their_line() {
    let base = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.app]\n";
    let cases = [
        (
            "endpoints = [\"http://127.0.0.1:9\"]\nbalance = \"random\"\n",
            "weir.toml:5:11: unknown variant `random`",
        ),
        (
            "endpoints = [\"http://127.0.0.1:9\"]\nbalance = \"hash\"\n",
            "weir.toml:5:11: upstream \"app\": balance = \"hash\" needs `hash_by`",
        ),
        (
            "endpoints = [\"http://127.0.0.1:9\"]\nbalance = \"hash\"\nhash_by = \"cookie:\"\n",
            "weir.toml:6:11: upstream \"app\": hash_by \"cookie:\" names no cookie",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:9\", weight = 0 }]\n",
            "weir.toml:4:14: upstream \"app\": endpoint weight 0 is out of range",
        ),
    ];
    for (section, expected) in cases {
        let (ok, stderr) = check(&format!("{base}{section}"));
        assert!(!ok, "{section} was accepted");
        assert!(
            stderr.contains(expected),
            "{section}: expected {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_requests_the_gateway_answers_503_with_retry_after() {
    let hang = Killable::start("hang", Mode::Hang).await;
    let (gw, admin) = gateway_with_admin(&format!(
        "[upstreams.small]\nendpoints = [\"{}\"]\nmax_requests = 1\nrequest_timeout = \"60s\"\n\n[[routes]]\nname = \"r\"\nupstream = \"small\"\n",
        hang.endpoint()
    ));
    let c = client();
    // One request holds the only place (the backend never answers it).
    let url = gw.url("/");
    let first = tokio::spawn({
        let c = c.clone();
        let url = url.clone();
        async move { call(&c, "GET", &url, &[]).await }
    });
    eventually("the first request to reach the backend", async || {
        if hang.hits() >= 1 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let req = Request::get(&url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = hang_guard("the refusal", c.request(req))
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let overflow = metric(
        &admin,
        "weir_upstream_overflow_total{upstream=\"small\",limit=\"max_requests\"}",
    )
    .await;
    assert_eq!(overflow, 1.0);
    assert_eq!(
        hang.hits(),
        1,
        "the refused request never reached the backend"
    );
    first.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_stop_the_health_checks_of_the_replaced_configuration() {
    let backend = Killable::start("b", Mode::Ok).await;
    let section = |extra: &str| {
        format!(
            "[upstreams.u]\nendpoints = [\"{}\"]\n{extra}\n[[routes]]\nname = \"r\"\nupstream = \"u\"\n",
            backend.endpoint()
        )
    };
    let checks = "[upstreams.u.health_check]\ninterval = \"50ms\"\n";
    let (gw, admin) = gateway_with_admin(&section(checks));
    let config = std::fs::read_to_string(&gw.config).expect("config");
    let head = config[..config.find("[upstreams.u]").expect("upstream")].to_string();
    // Five reloads that keep the checks, then one that drops them.
    for i in 1..=5 {
        gw.write_config(&format!("{head}# reload {i}\n{}", section(checks)));
        eventually("the reload", async || {
            let generation =
                get(&format!("http://{admin}/config")).await.json()["generation"].clone();
            if generation == i + 1 {
                Ok(())
            } else {
                Err(format!("generation {generation}"))
            }
        })
        .await;
    }
    gw.write_config(&format!("{head}{}", section("")));
    eventually("the reload without health checks", async || {
        let generation = get(&format!("http://{admin}/config")).await.json()["generation"].clone();
        if generation == 7 {
            Ok(())
        } else {
            Err(format!("generation {generation}"))
        }
    })
    .await;
    // Let a probe already on its way arrive, then watch 20 intervals: none may come.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = backend.probes.load(Ordering::SeqCst);
    assert!(before > 0, "the checks ran before");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        backend.probes.load(Ordering::SeqCst),
        before,
        "no checker of a replaced configuration is left"
    );
    assert_eq!(get(&gw.url("/")).await.status, StatusCode::OK);
}

/// A keep-alive backend that counts the connections it accepted and those still open.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, o) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_once_idle_past_pool_idle_timeout() {
    let (addr, accepted, open) = counting_backend().await;
    let gw = Gateway::start(&format!(
        "[upstreams.b]\nendpoints = [\"http://{addr}\"]\npool_idle_timeout = \"300ms\"\n\n\
         [[routes]]\nname = \"r\"\nupstream = \"b\"\n"
    ));
    let c = client();
    for i in 0..20 {
        let got = call(&c, "GET", &gw.url(&format!("/{i}")), &[]).await;
        assert!(
            matches!(got, Ok((StatusCode::OK, _))),
            "request {i}: {got:?}"
        );
    }
    // One after the other, the requests share a connection (one per gateway worker at most).
    let used = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&used),
        "{used} upstream connections for 20 requests"
    );
    // Idle past pool_idle_timeout, the gateway closes them (before the server would).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while open.load(Ordering::SeqCst) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} idle upstream connections still open",
            open.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the next request opens a new one.
    let got = call(&c, "GET", &gw.url("/after"), &[]).await;
    assert!(
        matches!(got, Ok((StatusCode::OK, _))),
        "after idle: {got:?}"
    );
    assert!(accepted.load(Ordering::SeqCst) > used);
}

/// A backend that answers every request as soon as its head is in, without reading a body, and
/// keeps the connection open.
async fn early_answering_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                // Held open (reading and dropping whatever else comes) until the peer leaves.
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_waits_for_a_connection_still_sending_an_earlier_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = early_answering_backend().await;
    // One worker, so the second request looks in the same idle list as the first.
    let gw = Gateway::start(&format!(
        "[runtime]\nworkers = 1\n\n[upstreams.b]\nendpoints = [\"http://{backend}\"]\n\
         request_timeout = \"20s\"\n\n[[routes]]\nname = \"r\"\nupstream = \"b\"\n"
    ));
    // A POST whose chunked body never ends: answered early, its connection keeps sending.
    let mut slow = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    slow.write_all(
        b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    hang_guard("the early answer", async {
        while !String::from_utf8_lossy(&got).contains("\r\n\r\nok") {
            let n = slow.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before the answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The next request must get its own connection, not wait on that one until its timeout.
    let answer = raw_http(
        gw.addr,
        b"GET /next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    drop(slow);
}
