//! Holes at the edges (issue 18): a port already in use, the admin API without a token, a
//! guessed token, `CONNECT`, the `Host` field, broken body framing and client-claimed
//! forwarding fields.

use crate::support::{
    Backend, Gateway, HANG_GUARD, check, free_port, get_with, raw_http, weir_command,
};
use std::process::Stdio;

fn backend_config(backend: &Backend) -> String {
    format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
        backend.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_a_port_in_use_exits_naming_the_address() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&backend_config(&backend));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[[listeners]]\naddress = \"{}\"\n{}",
            gw.addr,
            backend_config(&backend)
        ),
    )
    .expect("write");
    let mut second = weir_command();
    second
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = second.spawn().expect("spawn the second weir");
    let out = tokio::time::timeout(
        HANG_GUARD,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the second weir exits")
    .expect("join")
    .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&gw.addr.to_string()) && stderr.contains("cannot bind"),
        "{stderr}"
    );
    // The first gateway still serves every request.
    for _ in 0..20 {
        let r = get_with(&gw.url("/x"), &[]).await;
        assert_eq!(r.header("x-backend").as_deref(), Some("app"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_joins_the_listeners_port_group_gets_no_connection() {
    use socket2::{Domain, Socket, Type};
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&backend_config(&backend));
    // A process of the same user may still join the SO_REUSEPORT group (the kernel allows
    // it); the gateway's steering program never picks it.
    let impostor = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    impostor.set_reuse_address(true).expect("reuseaddr");
    impostor.set_reuse_port(true).expect("reuseport");
    impostor
        .bind(&gw.addr.into())
        .expect("the kernel lets it join");
    impostor.listen(128).expect("listen");
    impostor.set_nonblocking(true).expect("nonblocking");
    for i in 0..60 {
        // A fresh connection each time, so each is placed anew.
        let r = crate::support::raw_http(
            gw.addr,
            format!("GET /x{i} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let taken = impostor.accept();
    assert!(
        taken
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection went to the impostor: {taken:?}"
    );
}

async fn admin(port: u16, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let auth = auth.map_or(String::new(), |a| format!("authorization: {a}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: admin\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let r = raw_http(addr, request.as_bytes()).await;
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_api_without_a_token_is_read_only_unless_opened_on_loopback() {
    let backend = Backend::start("app").await;
    let port = free_port();
    let gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{port}\"\n{}",
        backend_config(&backend)
    ));
    assert_eq!(admin(port, "GET", "/ready", None).await.0, 200);
    assert_eq!(admin(port, "GET", "/config", None).await.0, 200);
    for (method, path) in [("POST", "/reload"), ("PUT", "/plugins/x")] {
        let (status, body) = admin(port, method, path, None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body.contains("set [admin] token"), "{body}");
    }
    assert!(
        gw.log().contains("admin API without a token"),
        "{}",
        gw.log()
    );

    let port = free_port();
    let _open = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{port}\"\nallow_unauthenticated = true\n{}",
        backend_config(&backend)
    ));
    assert_eq!(admin(port, "POST", "/reload", None).await.0, 200);

    let (ok, text) = check(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[admin]\naddress = \"0.0.0.0:9901\"\nallow_unauthenticated = true\n{}",
        backend_config(&backend)
    ));
    assert!(!ok);
    assert!(
        text.contains("weir.toml:") && text.contains("only allowed on a loopback address"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_admin_token_is_throttled_and_the_scheme_is_case_insensitive() {
    let backend = Backend::start("app").await;
    let port = free_port();
    let _gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{port}\"\ntoken = \"s3cret\"\n{}",
        backend_config(&backend)
    ));
    assert_eq!(
        admin(port, "GET", "/health", Some("bearer s3cret")).await.0,
        200
    );
    assert_eq!(
        admin(port, "GET", "/health", Some("BEARER s3cret")).await.0,
        200
    );
    let mut statuses = Vec::new();
    for i in 0..200 {
        let (status, _) = admin(port, "GET", "/health", Some(&format!("Bearer guess{i}"))).await;
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.len() >= 10,
        "ten tries before the throttle: {statuses:?}"
    );
    // While throttled, even the right token waits: a guesser learns nothing.
    assert_eq!(
        admin(port, "GET", "/health", Some("Bearer s3cret")).await.0,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_host_fields_and_broken_framing_are_the_clients_errors() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&backend_config(&backend));
    let send = |req: &'static str| raw_http(gw.addr, req.as_bytes());

    let r = send(
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405, "{r:?}");
    let r =
        send("GET /x HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nconnection: close\r\n\r\n")
            .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("more than one Host"), "{r:?}");
    let r = send("GET /x HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("needs a Host"), "{r:?}");
    let r = send("GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "HTTP/1.0 needs no Host: {r:?}");

    let before = backend.hits();
    let r = send(
        "POST /upload HTTP/1.1\r\nhost: a.example\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "the client's broken body, not a 502: {r:?}");
    assert!(r.body.contains("malformed request body"), "{r:?}");
    assert!(backend.hits() <= before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_fields_are_believed_only_from_trusted_proxies() {
    let backend = Backend::start("app").await;
    let claims: &[(&str, &str)] = &[
        ("x-forwarded-for", "203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("x-forwarded-proto", "https"),
    ];
    let gw = Gateway::start(&backend_config(&backend));
    let r = get_with(&gw.url("/x"), claims).await;
    assert_eq!(r.seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(r.seen("x-real-ip"), None);
    assert_eq!(r.seen("forwarded"), None);

    let trusting = Gateway::start(&format!(
        "[forwarded]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{}",
        backend_config(&backend)
    ));
    let r = get_with(&trusting.url("/x"), claims).await;
    assert_eq!(
        r.seen("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(r.seen("x-real-ip").as_deref(), Some("203.0.113.7"));
    assert_eq!(r.seen("forwarded").as_deref(), Some("for=203.0.113.7"));

    let (ok, text) = check(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[forwarded]\ntrusted_proxies = [\"10.0.0.0/33\"]\n{}",
        backend_config(&backend)
    ));
    assert!(!ok);
    assert!(
        text.contains("weir.toml:4:") && text.contains("10.0.0.0/33"),
        "{text}"
    );
}
