//! Protocols through the real gateway: HTTP/1.1, h2c, HTTP/2 and HTTP/1.1 over TLS, HTTPS
//! upstreams, gRPC with trailers, WebSocket, large streamed bodies with bounded memory, upstream
//! failures (502/504) and request limits (431/413).

use crate::support::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    key_der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "weir e2e test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let key = KeyPair::generate().expect("generate server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("sign server certificate");
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    fn write_to(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).expect("write ca.pem");
        std::fs::write(dir.join("server.pem"), &self.cert_pem).expect("write server.pem");
        std::fs::write(dir.join("server.key"), &self.key_pem).expect("write server.key");
    }

    /// Server TLS offering HTTP/2 and HTTP/1.1 by ALPN.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
        )
        .expect("server TLS config");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// Client TLS trusting only the test CA.
    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("trust test CA");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

/// Starts the gateway on `config` (a complete file, listeners included) after writing the test
/// PKI next to it, so `cert = "server.pem"`, `key = "server.key"`, `ca_file = "ca.pem"` resolve.
fn start_with_pki(config: &str, addr: SocketAddr, pki: &Pki) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    pki.write_to(dir.path());
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).expect("write config");
    Gateway::start_file(dir, &path, addr)
}

/// Runs `fut`; fails with "timed out waiting for WHAT" if it hangs for `secs` (a hang guard,
/// at least a minute; never a performance bound).
async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what} ({secs} s)"))
}

/// An HTTPS backend (HTTP/2 and HTTP/1.1 by ALPN) that answers JSON naming itself and the
/// protocol version it saw.
struct TlsBackend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsBackend {
    async fn start(name: &'static str, tls: Arc<rustls::ServerConfig>) -> TlsBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS backend");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            for _ in 0..64 {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HANG_GUARD, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| async move {
                        let json = serde_json::json!({
                            "backend": name,
                            "version": format!("{:?}", req.version()),
                            "path": req.uri().path(),
                        });
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("x-backend", name)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(json.to_string())))
                                .expect("response"),
                        )
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsBackend { addr, task }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. HTTP/1.1 and h2c

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_prior_knowledge_reach_the_backend() {
    let backend = Backend::start("plain").await;
    let gw = Gateway::start(&format!(
        r#"
[upstreams.plain]
endpoints = ["{}"]

[[routes]]
name = "all"
upstream = "plain"
"#,
        backend.endpoint()
    ));

    let r = get(&gw.url("/hello?q=1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend").as_deref(), Some(backend.name));
    assert_eq!(r.json()["path"], "/hello?q=1");
    assert_eq!(r.json()["version"], "HTTP/1.1");

    let client = h2c_client();
    let resp = within(
        60,
        "h2c request",
        client.request(
            Request::post(gw.url("/h2c/path"))
                .body(Full::new(Bytes::from_static(b"over h2c")))
                .expect("request"),
        ),
    )
    .await
    .expect("h2c request through weir");
    assert_eq!(
        resp.version(),
        Version::HTTP_2,
        "client must really use h2c"
    );
    let r = read(resp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend").as_deref(), Some("plain"));
    let json = r.json();
    assert_eq!(json["backend"], "plain");
    assert_eq!(json["path"], "/h2c/path");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["body"], "over h2c");
    // The upstream is `protocol = "auto"` over http: the gateway speaks HTTP/1.1 to it.
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(
        json["headers"]["host"].as_str(),
        Some(backend.addr.to_string().as_str()),
        "the upstream's Host comes from the endpoint"
    );

    // Several concurrent streams on the one h2c connection.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        let url = gw.url(&format!("/stream/{i}"));
        tasks.push(tokio::spawn(async move {
            let resp = client
                .request(
                    Request::get(url)
                        .body(Full::new(Bytes::new()))
                        .expect("request"),
                )
                .await
                .expect("concurrent h2c request");
            assert_eq!(resp.version(), Version::HTTP_2);
            read(resp).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = within(60, "concurrent h2c request", t).await.expect("task");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], format!("/stream/{i}"));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. TLS on the listener

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http2_and_http1_by_alpn() {
    let pki = Pki::new();
    let backend = Backend::start("behind-tls").await;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let gw = start_with_pki(
        &format!(
            r#"
[[listeners]]
name = "tls"
address = "{addr}"
tls = {{ cert = "server.pem", key = "server.key" }}

[upstreams.b]
endpoints = ["{}"]

[[routes]]
name = "all"
upstream = "b"
"#,
            backend.endpoint()
        ),
        addr,
        &pki,
    );
    let url = format!("https://127.0.0.1:{port}/secure?x=1");

    // ALPN h2 and http/1.1 offered: the gateway must pick h2.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config())
        .https_only()
        .enable_all_versions()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let resp = within(
        60,
        "HTTP/2 over TLS",
        client.request(
            Request::get(&url)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("HTTP/2 over TLS: {e:?}\n{}", gw.log()));
    assert_eq!(resp.version(), Version::HTTP_2, "ALPN must select h2");
    let r = read(resp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend").as_deref(), Some("behind-tls"));
    assert_eq!(r.json()["path"], "/secure?x=1");
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("https"));

    // Only http/1.1 offered.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config())
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let resp = within(
        60,
        "HTTP/1.1 over TLS",
        client.request(
            Request::post(&url)
                .body(Full::new(Bytes::from_static(b"tls body")))
                .expect("request"),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("HTTP/1.1 over TLS: {e:?}\n{}", gw.log()));
    assert_eq!(resp.version(), Version::HTTP_11);
    let r = read(resp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend").as_deref(), Some("behind-tls"));
    assert_eq!(r.json()["body"], "tls body");
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("https"));

    // Plain HTTP to the TLS port is not served.
    let plain: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = within(
        60,
        "plain HTTP to TLS port",
        plain.request(
            Request::get(format!("http://127.0.0.1:{port}/secure"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        ),
    )
    .await;
    assert!(
        res.is_err(),
        "plain HTTP on a TLS listener must fail, got {:?}",
        res.map(|r| r.status())
    );
}

// ---------------------------------------------------------------------------------------------
// 3. HTTPS upstream

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_ca_file_and_untrusted_without() {
    let pki = Pki::new();
    let tls_backend = TlsBackend::start("secure", pki.server_config()).await;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let gw = start_with_pki(
        &format!(
            r#"
[[listeners]]
name = "main"
address = "{addr}"

[upstreams.trusted]
endpoints = ["https://localhost:{p}"]
ca_file = "ca.pem"

[upstreams.trusted-h1]
endpoints = ["https://localhost:{p}"]
ca_file = "ca.pem"
protocol = "http1"

[upstreams.untrusted]
endpoints = ["https://localhost:{p}"]

[[routes]]
name = "trusted"
match = {{ path_prefix = "/trusted" }}
upstream = "trusted"

[[routes]]
name = "trusted-h1"
match = {{ path_prefix = "/h1" }}
upstream = "trusted-h1"

[[routes]]
name = "untrusted"
match = {{ path_prefix = "/untrusted" }}
upstream = "untrusted"
"#,
            p = tls_backend.addr.port()
        ),
        addr,
        &pki,
    );

    let r = within(60, "trusted", get(&format!("http://{addr}/trusted/x"))).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(r.header("x-backend").as_deref(), Some("secure"));
    assert_eq!(r.json()["path"], "/trusted/x");
    assert_eq!(
        r.json()["version"],
        "HTTP/2.0",
        "protocol auto over https negotiates h2 by ALPN"
    );

    let r = within(60, "trusted-h1", get(&format!("http://{addr}/h1/y"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/1.1");

    let r = within(60, "untrusted", get(&format!("http://{addr}/untrusted/z"))).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let text = r.text();
    assert!(text.contains("upstream \"untrusted\""), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// 4. gRPC

/// A child process killed (and reaped) on drop.
struct ChildGuard(tokio::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn grpc_peer() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(repo_root().join("tests/e2e/grpc_peer.py"))
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("grpc_proxy")
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_with_trailers_and_error_status() {
    let mut server = ChildGuard(
        grpc_peer()
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 gRPC server (is grpcio installed? `pip install grpcio`)"),
    );
    let stdout = server.0.stdout.take().expect("server stdout");
    let mut line = String::new();
    within(
        60,
        "gRPC server start",
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("read gRPC server port");
    let grpc_port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("gRPC server printed {line:?} instead of a port: {e}"));

    // Plainly, and with a plugin that streams the response body: neither may turn an error's
    // Trailers-Only answer into a head followed by an empty body without trailers.
    for chain in ["", "chain = [{ plugin = \"sse-meter\" }]"] {
        grpc_through_gateway(grpc_port, chain, "").await;
    }
    // A proxy-wasm filter streaming both bodies, whose trailers callback adds to the server's.
    let filter = crate::proxy_wasm::rust_filter("rust-sdk-filters", None);
    let plugin = format!(
        "[plugins.pw]\npath = {:?}\nkind = \"proxy-wasm\"\n",
        filter.display().to_string()
    );
    let chain = "chain = [{ plugin = \"pw\", config = { trailer = [\"x-filter\", \"added\"] } }]";
    let v = grpc_through_gateway(grpc_port, chain, &plugin).await;
    let has = |k: &str, val: &str| {
        v["echo"]["trailing"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p[0] == k && p[1] == val))
    };
    assert!(has("x-filter", "added") && has("x-trailer", "yes"), "{v}");
    // The server's three trailers (grpc-status, grpc-message, x-trailer) reached the filter.
    assert!(has("x-trailers-seen", "3"), "{v}");
    drop(server);
}

/// Runs the gRPC client through a gateway with `chain` on the route (`plugins` added to the
/// file); checks what every chain must keep and returns what the client saw.
async fn grpc_through_gateway(grpc_port: u16, chain: &str, plugins: &str) -> serde_json::Value {
    let gw = Gateway::start(&format!(
        r#"
{}
[upstreams.grpc]
endpoints = ["http://127.0.0.1:{grpc_port}"]
protocol = "http2"

[[routes]]
name = "grpc"
match = {{ path_prefix = "/weir.test.Echo" }}
upstream = "grpc"
{chain}
{plugins}
"#,
        plugins_toml(&[("sse-meter", "capabilities = { metrics = true }")])
    ));

    let out = within(
        60,
        "gRPC client",
        grpc_peer()
            .arg("client")
            .arg(gw.addr.port().to_string())
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("run python3 gRPC client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gRPC client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stdout}"));

    let echo = &v["echo"];
    assert_eq!(echo["code"], "OK", "{v}\n{}", gw.log());
    assert_eq!(echo["reply"], "echo:hello", "{v}");
    let has = |list: &serde_json::Value, k: &str, val: &str| {
        list.as_array()
            .is_some_and(|a| a.iter().any(|p| p[0] == k && p[1] == val))
    };
    assert!(
        has(&echo["trailing"], "x-trailer", "yes"),
        "custom trailer lost: {v}"
    );
    assert!(
        has(&echo["initial"], "x-saw-forwarded-for", "127.0.0.1"),
        "the server should see the gateway's x-forwarded-for: {v}"
    );

    assert_eq!(v["big"]["code"], "OK", "{v}");
    assert_eq!(v["big"]["len"], 256 * 1024 + 5, "{v}");
    assert_eq!(v["big"]["intact"], true, "{v}");

    let missing = &v["missing"];
    assert_eq!(missing["code"], "NOT_FOUND", "{chain}: {v}\n{}", gw.log());
    assert_eq!(missing["details"], "no such thing: thing", "{v}");
    assert!(
        has(&missing["trailing"], "x-why", "absent"),
        "trailer of the failed call lost: {v}"
    );
    v
}

// ---------------------------------------------------------------------------------------------
// 5. WebSocket

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    use tokio_tungstenite::tungstenite::handshake::server::{
        Request as WsRequest, Response as WsResponse,
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind ws backend");
    let backend_addr = listener.local_addr().expect("addr");
    let paths = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = paths.clone();
    let backend = tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                // The signature is tungstenite's; its error type is not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = |req: &WsRequest, resp: WsResponse| {
                    seen.lock().expect("lock").push(req.uri().to_string());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let gw = Gateway::start(&format!(
        r#"
[upstreams.ws]
endpoints = ["http://{backend_addr}"]

[[routes]]
name = "ws"
match = {{ path_prefix = "/ws" }}
upstream = "ws"
"#
    ));

    let (mut ws, resp) = within(
        60,
        "websocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{}/ws?room=1", gw.addr)),
    )
    .await
    .unwrap_or_else(|e| panic!("websocket handshake through weir: {e}\n{}", gw.log()));
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(Message::text(format!("text message {i}")));
        sent.push(Message::binary(vec![i as u8; 10 + i]));
    }
    // Larger than any single read buffer: the tunnel must stream it across reads.
    sent.push(Message::binary(
        (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    ));
    for msg in &sent {
        within(60, "websocket send", ws.send(msg.clone()))
            .await
            .expect("send");
        let echoed = within(60, "websocket echo", ws.next())
            .await
            .expect("connection open")
            .expect("echo");
        assert_eq!(&echoed, msg);
    }

    within(60, "websocket close", ws.close(None))
        .await
        .expect("close");
    let mut got_close = false;
    for _ in 0..4 {
        match within(60, "websocket close reply", ws.next()).await {
            Some(Ok(Message::Close(_))) => got_close = true,
            Some(Ok(other)) => panic!("unexpected message after close: {other:?}"),
            Some(Err(e)) => panic!("websocket error while closing: {e}"),
            None => break,
        }
    }
    assert!(got_close, "the backend's close frame must come back");
    assert_eq!(
        paths.lock().expect("lock").as_slice(),
        ["/ws?room=1".to_string()]
    );
    backend.abort();
}

// ---------------------------------------------------------------------------------------------
// 6. Large bodies stream with bounded memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_with_bounded_gateway_memory() {
    const TOTAL: u64 = 100 * MIB;
    let backend = Backend::start("bulk").await;
    let gw = Arc::new(Gateway::start(&format!(
        r#"
[upstreams.bulk]
endpoints = ["{}"]
request_timeout = "120s"

[[routes]]
name = "all"
upstream = "bulk"
"#,
        backend.endpoint()
    )));

    type StreamBox = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
    let client: Client<_, StreamBox> = Client::builder(TokioExecutor::new()).build_http();

    // Warm up: connections, buffers, allocator arenas.
    for _ in 0..3 {
        let resp = client
            .request(
                Request::post(gw.url("/upload"))
                    .body(
                        Full::new(Bytes::from(vec![b'w'; 256 * 1024]))
                            .map_err(|n| match n {})
                            .boxed(),
                    )
                    .expect("request"),
            )
            .await
            .expect("warm-up");
        let r = read(resp).await;
        assert_eq!(r.status, 200);
    }
    let baseline = gw.rss_kib();
    assert!(baseline > 0, "cannot read the gateway's RSS");

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (gw, stop, peak, samples) = (gw.clone(), stop.clone(), peak.clone(), samples.clone());
        async move {
            // At most 20 000 × 10 ms = 200 s.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                peak.fetch_max(gw.rss_kib(), Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    // Upload 100 MiB, generated chunk by chunk (chunked transfer encoding, no length).
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (TOTAL / chunk.len() as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    );
    let started = Instant::now();
    let resp = within(
        180,
        "100 MiB upload",
        client.request(
            Request::post(gw.url("/upload"))
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("request"),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("upload: {e:?}\n{}", gw.log()));
    let r = read(resp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["body_len"],
        TOTAL,
        "every uploaded byte reached the backend"
    );
    let upload_time = started.elapsed();

    // Download 100 MiB, counted frame by frame.
    let started = Instant::now();
    let resp = within(
        60,
        "download head",
        client.request(
            Request::get(gw.url(&format!("/bytes/{TOTAL}")))
                .body(http_body_util::Empty::new().map_err(|n| match n {}).boxed())
                .expect("request"),
        ),
    )
    .await
    .expect("download");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(180);
    while let Some(frame) = within(60, "download frame", body.frame()).await {
        let frame = frame.expect("download body");
        if let Some(d) = frame.data_ref() {
            assert!(d.iter().all(|&b| b == b'x'), "corrupted download data");
            received += d.len() as u64;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the 100 MiB download (180 s)"
        );
    }
    assert_eq!(received, TOTAL, "every byte came back");
    let download_time = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    within(60, "RSS sampler", sampler).await.expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    let samples = samples.load(Ordering::Relaxed);
    assert!(samples >= 5, "only {samples} RSS samples");
    eprintln!(
        "gateway RSS baseline {baseline} KiB, peak {peak} KiB over {samples} samples; \
         upload {upload_time:?}, download {download_time:?}"
    );
    assert!(
        peak < baseline + 64 * 1024,
        "gateway RSS grew from {baseline} KiB to {peak} KiB while moving 2 × 100 MiB: \
         it buffers instead of streaming"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Upstream down → 502, slow → 504

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_is_504() {
    let backend = Backend::start("slowpoke").await;
    let dead_port = free_port();
    let gw = Gateway::start(&format!(
        r#"
[upstreams.down]
endpoints = ["http://127.0.0.1:{dead_port}"]

[upstreams.slow]
endpoints = ["{}"]
request_timeout = "300ms"

[[routes]]
name = "down"
match = {{ path_prefix = "/down" }}
upstream = "down"

[[routes]]
name = "slow"
match = {{ path_prefix = "/slow" }}
upstream = "slow"
"#,
        backend.endpoint()
    ));

    let r = within(60, "down", get(&gw.url("/down/x"))).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let text = r.text();
    assert!(text.contains("upstream \"down\""), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{dead_port}")), "{text}");

    // Fast enough requests on the slow upstream succeed...
    let r = within(60, "slow but in time", get(&gw.url("/slow/10"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend").as_deref(), Some("slowpoke"));

    // ... but one the upstream does not answer (it holds `/gated/` requests until the test
    // opens the gate) is cut by the upstream's request_timeout: nothing else could end it.
    let r = within(60, "slow", get(&gw.url("/slow/gated/x"))).await;
    assert_eq!(r.status, 504, "{}", r.text());
    let text = r.text();
    assert!(text.contains("upstream \"slow\""), "{text}");
    assert!(text.contains("timed out"), "{text}");
    backend.open_gate();

    // The gateway survives both.
    let r = within(60, "after failures", get(&gw.url("/slow/0"))).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 8. Limits: 431 and 413

fn chunked(
    parts: usize,
    size: usize,
) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let chunk = Bytes::from(vec![b'c'; size]);
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        (0..parts).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_431_and_oversized_bodies_413() {
    let backend = Backend::start("limited").await;
    let gw = Gateway::start(&format!(
        r#"
[limits]
max_header_size = "16KiB"
max_body_size = "1KiB"

[upstreams.b]
endpoints = ["{}"]

[[routes]]
name = "all"
upstream = "b"
"#,
        backend.endpoint()
    ));

    // Headers: 12 KiB pass, 32 KiB are refused.
    let ok = "a".repeat(12 * 1024);
    let r = within(
        60,
        "12 KiB header",
        get_with(&gw.url("/h"), &[("x-big", &ok)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-big").map(|v| v.len()), Some(12 * 1024));

    let big = "b".repeat(32 * 1024);
    let r = within(
        60,
        "32 KiB header",
        get_with(&gw.url("/h"), &[("x-big", &big)]),
    )
    .await;
    assert_eq!(r.status, 431, "{}", r.text());

    // Several headers that are each small but together too large.
    let piece = "p".repeat(4 * 1024);
    let many: Vec<(String, &str)> = (0..6)
        .map(|i| (format!("x-part-{i}"), piece.as_str()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let r = within(60, "6 × 4 KiB headers", get_with(&gw.url("/h"), &many)).await;
    assert_eq!(r.status, 431, "{}", r.text());

    // Bodies with a declared length: at the limit passes, over it is refused up front.
    let r = within(60, "1 KiB body", post(&gw.url("/b"), vec![b'k'; 1024])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 1024);
    let r = within(60, "2 KiB body", post(&gw.url("/b"), vec![b'k'; 2048])).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("too large"), "{}", r.text());

    // Chunked bodies (no length): under the limit passes, over it is cut off with 413.
    let client: Client<_, http_body_util::combinators::BoxBody<Bytes, std::io::Error>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = within(
        60,
        "chunked 1000 bytes",
        client.request(
            Request::post(gw.url("/b"))
                .body(chunked(2, 500))
                .expect("request"),
        ),
    )
    .await
    .expect("chunked under limit");
    let r = read(resp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 1000);
    assert_eq!(
        r.seen("transfer-encoding").as_deref(),
        Some("chunked"),
        "the body really was streamed without a length"
    );

    let resp = within(
        60,
        "chunked 2048 bytes",
        client.request(
            Request::post(gw.url("/b"))
                .body(chunked(4, 512))
                .expect("request"),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("chunked over limit: {e:?}\n{}", gw.log()));
    let r = read(resp).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("too large"), "{}", r.text());

    // The gateway still serves normal requests afterwards.
    let r = within(60, "after limits", get(&gw.url("/fine"))).await;
    assert_eq!(r.status, 200);
}

/// Limits below hyper's minimum read buffer (8 KiB) are enforced by the gateway per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_header_limit_is_enforced_per_request() {
    let backend = Backend::start("tiny").await;
    let gw = Gateway::start(&format!(
        r#"
[limits]
max_header_size = "4KiB"

[upstreams.b]
endpoints = ["{}"]

[[routes]]
name = "all"
upstream = "b"
"#,
        backend.endpoint()
    ));
    let r = within(
        60,
        "2 KiB header",
        get_with(&gw.url("/"), &[("x-h", &"s".repeat(2048))]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = within(
        60,
        "6 KiB header",
        get_with(&gw.url("/"), &[("x-h", &"s".repeat(6 * 1024))]),
    )
    .await;
    assert_eq!(r.status, 431, "{}", r.text());

    // The same limit holds for HTTP/2 (h2c).
    let resp = within(
        60,
        "h2c 6 KiB header",
        h2c_client().request(
            Request::get(gw.url("/"))
                .header("x-h", "s".repeat(6 * 1024))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        ),
    )
    .await
    .expect("h2c request with big header");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_the_client_authority_over_http1_and_h2c() {
    let backend = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "[upstreams.a]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\nchain = [{{ plugin = \"probe\", config = {{ echo_request = true }} }}]\n",
        backend.endpoint(),
        plugins_toml(&[("probe", "")]),
    ));
    let r = get_with(&gw.url("/x"), &[("host", "api.example.com")]).await;
    assert_eq!(
        r.seen("x-seen-authority").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(r.seen("x-seen-scheme").as_deref(), Some("http"));
    assert_eq!(r.seen("x-seen-route").as_deref(), Some("r"));

    let req = Request::get(format!("http://{}/x", gw.addr))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within(60, "h2c request", h2c_client().request(req))
        .await
        .expect("h2c request");
    assert_eq!(resp.version(), Version::HTTP_2);
    let r = read(resp).await;
    assert_eq!(
        r.seen("x-seen-authority"),
        Some(gw.addr.to_string()),
        "HTTP/2 :authority reaches plugins"
    );
    assert_eq!(r.seen("x-seen-method").as_deref(), Some("GET"));
}
