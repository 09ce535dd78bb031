//! A busy gateway slows down, it does not fail (issue 16): idle and trickling clients are cut
//! off by the head, idle and body timeouts, requests past a worker's limit are shed with 503,
//! the Redis kv backend's circuit breaker makes an unreachable Redis cheap, and durations and
//! sizes that could overflow are refused by `weir check`. Real sockets on 127.0.0.1; every load
//! loop is bounded in count and time.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The value of the `/metrics` samples of `name` whose labels include `labels`, summed.
async fn metric(admin: u16, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// Waits until `/metrics` shows at least `at_least` for `name` with `labels`.
async fn metric_reaches(admin: u16, name: &str, labels: &[(&str, &str)], at_least: f64) {
    eventually(&format!("{name}{labels:?} >= {at_least}"), async || {
        let v = metric(admin, name, labels).await;
        if v >= at_least {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
}

/// Waits until the server closes `stream` (end of file or reset), reading whatever comes first.
async fn closed_by_server(stream: &mut TcpStream, what: &str) {
    hang_guard(what, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// A GET that reports failure instead of panicking (connections may be refused under load).
async fn try_get(url: &str) -> Result<Reply, String> {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), http1_client().request(req))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(read(resp).await)
}

/// Lets this test process hold a few thousand sockets.
fn raise_own_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.map_or(8192, |max| max.min(8192));
    if limit.current.is_some_and(|cur| cur < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            },
        );
    }
}

fn simple_route(backend: &Backend, admin: u16, limits: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[limits]\n{limits}\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
        backend.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_and_do_not_keep_a_request_out() {
    raise_own_fd_limit();
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&simple_route(
        &backend,
        admin,
        "header_read_timeout = \"2s\"\nmax_connections = 1000",
    ));
    // 1,100 clients that connect and send nothing; 100 of them are past the cap.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        let s = hang_guard("an idle connection", TcpStream::connect(gw.addr)).await;
        idle.push(s.expect("connect"));
    }
    // A real client gets in: at once if a slot is free, else once the idle ones are cut off.
    let r = eventually("a request served despite 1,100 idle sockets", async || {
        try_get(&gw.url("/x")).await.and_then(|r| {
            if r.status == 200 {
                Ok(r)
            } else {
                Err(format!("{} {}", r.status, r.text()))
            }
        })
    })
    .await;
    assert_eq!(r.json()["backend"], "app");
    for s in &mut idle {
        closed_by_server(s, "the gateway to close an idle connection").await;
    }
    let refused = metric(
        admin,
        "weir_connections_refused_total",
        &[("listener", "main")],
    )
    .await;
    let timed_out = metric(
        admin,
        "weir_connection_timeouts_total",
        &[("listener", "main"), ("kind", "header_read")],
    )
    .await;
    // Every idle socket was either refused at the cap or timed out waiting for its head.
    assert!(refused + timed_out >= 1100.0, "{refused} + {timed_out}");
    assert!(refused >= 100.0, "{refused}");
    // And the gateway still serves.
    assert_eq!(get(&gw.url("/x")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_on_a_buffering_route_gets_408() {
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&format!(
        "[runtime]\nworkers = 1\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [limits]\nrequest_body_timeout = \"2s\"\n[upstreams.app]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\n\
         chain = [{{ plugin = \"probe\", config = {{ upper_body = true }} }}]\n",
        backend.endpoint(),
        plugins_toml(&[("probe", "")]),
    ));
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
        .await
        .expect("head");
    // One byte a second, at most 30 of the 100 promised, until the gateway answers.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..30 {
        let _ = s.write_all(b"x").await;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    closed_by_server(&mut s, "the connection closed after the 408").await;
    assert_eq!(backend.hits(), 0, "nothing reached the upstream");
    metric_reaches(
        admin,
        "weir_connection_timeouts_total",
        &[("kind", "request_body")],
        1.0,
    )
    .await;
    // A body sent in one go is still served.
    let r = post(&gw.url("/echo"), "hello").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "HELLO");
}

/// Sends one keep-alive GET on `s` and reads its answer (the echo's JSON, length-delimited).
async fn one_request(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    hang_guard("an answer", async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before answering: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_but_busy_ones_are_not() {
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&simple_route(&backend, admin, "idle_timeout = \"1s\""));
    // HTTP/1.1: served, then closed once idle.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    assert!(one_request(&mut s, "/a").await.starts_with("HTTP/1.1 200"));
    closed_by_server(&mut s, "an idle HTTP/1.1 connection closed").await;

    // A request in flight for longer than the idle timeout keeps its connection.
    let mut busy = TcpStream::connect(gw.addr).await.expect("connect");
    let held = tokio::spawn(async move {
        let text = one_request(&mut busy, "/gated/slow").await;
        (text, busy)
    });
    backend.wait_for_hits(2, "the held request").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    backend.open_gate();
    let (text, mut busy) = hang_guard("the held request", held).await.expect("task");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The same connection still serves, then idles out.
    assert!(
        one_request(&mut busy, "/b")
            .await
            .starts_with("HTTP/1.1 200")
    );
    closed_by_server(&mut busy, "the connection closed once idle").await;

    // HTTP/2 (h2c): GOAWAY and close once no stream is open for the idle timeout.
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get(gw.url("/h2"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let r = read(sender.send_request(req).await.expect("h2 request")).await;
    assert_eq!(r.status, 200);
    let _ = hang_guard("the idle HTTP/2 connection to end", conn).await;
    metric_reaches(
        admin,
        "weir_connection_timeouts_total",
        &[("listener", "main"), ("kind", "idle")],
        3.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_closes_idle_and_silent_connections() {
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&simple_route(
        &backend,
        admin,
        "idle_timeout = \"1s\"\nheader_read_timeout = \"1s\"",
    ));
    let admin_addr = format!("127.0.0.1:{admin}");
    let mut s = TcpStream::connect(&admin_addr).await.expect("connect");
    assert!(
        one_request(&mut s, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    closed_by_server(&mut s, "an idle admin connection closed").await;
    let mut silent = TcpStream::connect(&admin_addr).await.expect("connect");
    closed_by_server(&mut silent, "a silent admin connection closed").await;
    metric_reaches(
        admin,
        "weir_connection_timeouts_total",
        &[("listener", "admin"), ("kind", "idle")],
        1.0,
    )
    .await;
    metric_reaches(
        admin,
        "weir_connection_timeouts_total",
        &[("listener", "admin"), ("kind", "header_read")],
        1.0,
    )
    .await;
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_worker_limit_are_shed_with_503() {
    const LIMIT: usize = 4;
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&simple_route(
        &backend,
        admin,
        &format!("max_requests_per_worker = {LIMIT}"),
    ));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..10 * LIMIT {
        let url = gw.url(&format!("/gated/{i}"));
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let r = get(&url).await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        }));
    }
    // The admitted requests wait at the backend; every other one is answered meanwhile.
    backend
        .wait_for_hits(LIMIT as u64, "the admitted requests")
        .await;
    eventually("the excess answered", async || {
        let n = answered.load(std::sync::atomic::Ordering::SeqCst);
        if n == 9 * LIMIT {
            Ok(())
        } else {
            Err(format!("{n} answered"))
        }
    })
    .await;
    backend.open_gate();
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        let r = hang_guard("a request", t).await.expect("task");
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                shed += 1;
                assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                assert!(r.text().starts_with("weir: overloaded"), "{}", r.text());
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!((ok, shed), (LIMIT, 9 * LIMIT));
    assert_eq!(
        backend.hits(),
        LIMIT as u64,
        "shed requests never reached it"
    );
    let counted = metric(
        admin,
        "weir_requests_shed_total",
        &[("reason", "max_requests_per_worker")],
    )
    .await;
    assert_eq!(counted, (9 * LIMIT) as f64);
    // Below the limit again, requests pass.
    assert_eq!(get(&gw.url("/x")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_costs_little_once_the_breaker_is_open() {
    const KV_TIMEOUT_MS: u64 = 2000;
    let redis = Redis::start();
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&format!(
        "[runtime]\nworkers = 1\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [kv]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout = \"{KV_TIMEOUT_MS}ms\"\n\
         breaker_failures = 3\nbreaker_cooldown = \"10m\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"limited\"\nupstream = \"app\"\n\
         chain = [{{ plugin = \"rate-limit\", config = {{ burst = 1000, rate_per_second = 1.0 }} }}]\n",
        redis.url(),
        backend.endpoint(),
        plugins_toml(&[("rate-limit", "capabilities = { kv = \"rl\" }")]),
    ));
    assert_eq!(get(&gw.url("/x")).await.status, 200, "with Redis up");
    let with_redis = median_of_15(&gw).await;
    // A stopped Redis: connections stay open, nothing answers, every call would time out.
    redis.pause();
    eventually("the breaker to open", async || {
        let r = get(&gw.url("/x")).await;
        let state = metric(admin, "weir_kv_breaker_state", &[]).await;
        if r.status == 200 && state == 1.0 {
            Ok(())
        } else {
            Err(format!("status {}, breaker state {state}", r.status))
        }
    })
    .await;
    let median = median_of_15(&gw).await;
    // The figure the issue asks about (under 5 ms added), printed rather than asserted: an
    // absolute bound would fail on a busy machine for reasons that are not the breaker's.
    eprintln!(
        "rate-limited request, median of 15: {with_redis:?} with Redis up, {median:?} with \
         Redis stopped and the breaker open"
    );
    // Against the configured kv timeout, with a wide margin: an open breaker does not wait.
    assert!(
        median < Duration::from_millis(KV_TIMEOUT_MS / 4),
        "median {median:?} with the breaker open; kv timeout {KV_TIMEOUT_MS} ms"
    );
    assert!(gw.log().contains("circuit breaker open"), "{}", gw.log());
    let opened = metric(
        admin,
        "weir_kv_breaker_transitions_total",
        &[("to", "open")],
    )
    .await;
    assert_eq!(opened, 1.0);
}

/// The median time of 15 requests to `/x`, each answered 200.
async fn median_of_15(gw: &Gateway) -> Duration {
    let mut took = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        let r = get(&gw.url("/x")).await;
        took.push(start.elapsed());
        assert_eq!(r.status, 200, "the plugin fails open: {}", r.text());
    }
    took.sort();
    took[took.len() / 2]
}

#[test]
fn check_refuses_durations_and_sizes_that_would_overflow() {
    let base = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.a]\nendpoints = [\"http://127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n";
    let (ok, out) = check(&format!(
        "{base}[limits]\ndrain_timeout = \"18446744073709551615s\"\n"
    ));
    assert!(!ok);
    assert!(
        out.contains("weir.toml:9:17: ") && out.contains("too long: at most 24h"),
        "{out}"
    );
    let (ok, out) = check(&format!(
        "{base}[limits]\nmax_body_size = \"99999999GiB\"\n"
    ));
    assert!(!ok);
    assert!(
        out.contains("weir.toml:9:17: ") && out.contains("too large: at most 1024GiB"),
        "{out}"
    );
    let (ok, out) = check(&format!("{base}[limits]\ndrain_timeout = \"1440m\"\n"));
    assert!(ok, "{out}");
}
