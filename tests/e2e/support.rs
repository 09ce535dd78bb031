//! Test harness: builds the plugins once, starts the real `weir` binary on a generated config,
//! and runs real HTTP backends and clients on 127.0.0.1.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Builds the first-party plugins (once per test binary) and returns the directory of `.wasm`s.
/// The target directory is given explicitly: a `CARGO_TARGET_DIR` meant for the host build
/// would otherwise send the plugins elsewhere and leave the tests running stale ones.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("plugins/target"))
            .status()
            .expect("run cargo to build plugins");
        assert!(
            status.success(),
            "building plugins failed (is the wasm32-wasip2 target installed? `cargo xtask plugins`)"
        );
        root.join("plugins/target/wasm32-wasip2/release")
    })
}

/// A `weir` command with the guest toolchains `cargo xtask test` installs
/// (`target/guest-tools`) on its search path, unless `WEIR_TOOLS` says otherwise.
pub fn weir_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    if std::env::var_os("WEIR_TOOLS").is_none() {
        cmd.env("WEIR_TOOLS", repo_root().join("target/guest-tools"));
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Path of a first-party plugin by crate name (`api-key`, `headers`, `router`, `probe`).
pub fn plugin(name: &str) -> PathBuf {
    plugin_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// `[plugins.NAME]` tables for the given first-party plugins, with extra settings for each.
pub fn plugins_toml(specs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (name, extra) in specs {
        s.push_str(&format!(
            "[plugins.{name}]\npath = {:?}\n{extra}\n",
            plugin(name).display().to_string()
        ));
    }
    s
}

/// A free port on 127.0.0.1.
///
/// Never the same port twice in one test run: the kernel may hand a just-released port out
/// again to a test that is still to bind it, while another already uses it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// How long a test waits for something it expects before failing: a guard against hangs only,
/// generous enough for a busy machine, never a performance bound (timings belong in
/// `cargo xtask bench*`).
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Runs `fut` to completion; fails with "timed out waiting for WHAT" if it hangs (see
/// [`HANG_GUARD`]).
pub async fn hang_guard<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what} ({HANG_GUARD:?})"))
}

/// Checks every 20 ms until `check` returns `Ok`; fails with "timed out waiting for WHAT" and
/// the last `Err` it returned (what it saw instead) if that takes longer than [`HANG_GUARD`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let last = match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(done)) => return done,
            Ok(Err(seen)) => seen,
            Err(_) => "the last check did not finish".into(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} ({HANG_GUARD:?}); last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `weir` process; killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// Holds the config and log; removed when the gateway is dropped.
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// The config file the gateway runs with.
    pub config: PathBuf,
}

impl Gateway {
    /// Starts `weir run` with one plain listener prepended to `body`.
    pub fn start(body: &str) -> Gateway {
        let port = free_port();
        let config =
            format!("[[listeners]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\n\n{body}");
        Gateway::start_raw(&config, format!("127.0.0.1:{port}").parse().expect("addr"))
    }

    /// Starts `weir run` with `config` as is; `addr` is the listener to wait for.
    pub fn start_raw(config: &str, addr: SocketAddr) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, config).expect("write config");
        Gateway::start_file(dir, &path, addr)
    }

    pub fn start_file(dir: tempfile::TempDir, path: &Path, addr: SocketAddr) -> Gateway {
        Gateway::start_file_env(dir, path, addr, &[])
    }

    /// Like [`Gateway::start`], with extra environment variables for the process.
    pub fn start_env(body: &str, env: &[(&str, &str)]) -> Gateway {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let config = format!("[[listeners]]\nname = \"main\"\naddress = \"{addr}\"\n\n{body}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, config).expect("write config");
        Gateway::start_file_env(dir, &path, addr, env)
    }

    pub fn start_file_env(
        dir: tempfile::TempDir,
        path: &Path,
        addr: SocketAddr,
        env: &[(&str, &str)],
    ) -> Gateway {
        let log = dir.path().join("weir.log");
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--config"])
            .arg(path)
            .envs(env.iter().copied())
            .env("WEIR_LOG", "info,weir=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn weir");
        let mut gw = Gateway {
            child,
            addr,
            _dir: dir,
            log,
            config: path.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("weir exited with {status} before listening:\n{}", gw.log());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for weir to listen (90 s):\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Resident set size of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`TERM`, `HUP`...) to the gateway process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Replaces the config file atomically (write beside, then rename), as an operator would.
    pub fn write_config(&self, config: &str) {
        write_atomically(&self.config, config.as_bytes());
    }
}

impl Drop for Gateway {
    /// Kills the process; when the test is failing, prints the end of its log first (a "timed
    /// out waiting for" message says what did not happen, the log may say why).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- last lines of the log of weir on {} ---\n{}\n---",
                self.addr,
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces a file atomically: write beside it, then rename over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over file");
}

/// Runs `weir check` on `config` (written next to nothing else) and returns (success, stderr).
pub fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("run weir check");
    let text =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "weir.toml");
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// Backends

/// An echo backend on 127.0.0.1. It answers with JSON describing the request and honours:
/// `/slow/MS` (wait before answering), `/bytes/N` (stream N bytes), `/upload` (count the body
/// without keeping it), `/status/N`, `/sse/N` (N events, one per second), `/events/N/MS` (N
/// events spread over MS milliseconds), and, for tests that order events instead of timing
/// them, any path with a `/gated/` segment (answered once the test calls
/// [`Backend::open_gate`]) and `/gated-events/N/K` (K events at once, the other N − K once the
/// gate is open).
pub struct Backend {
    pub addr: SocketAddr,
    pub name: &'static str,
    task: tokio::task::JoinHandle<()>,
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = hits.clone();
        let (gate, opened) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let opened = opened.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        echo(name, req, opened.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            addr,
            name,
            task,
            hits,
            gate,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests this backend has received (counted as each arrives, before it is answered).
    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets `/gated/...` requests be answered and `/gated-events` streams finish (for good).
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until this backend has received `n` requests in all.
    pub async fn wait_for_hits(&self, n: u64, what: &str) {
        eventually(what, async || {
            let hits = self.hits();
            if hits >= n {
                Ok(())
            } else {
                Err(format!("{hits} of {n} requests received"))
            }
        })
        .await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn echo(
    name: &'static str,
    req: Request<Incoming>,
    mut gate: tokio::sync::watch::Receiver<bool>,
) -> Result<Response<BoxBody>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let mut status = StatusCode::OK;
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|s| s.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path.contains("/gated/") {
        let _ = gate.wait_for(|open| *open).await;
    }
    if let Some((n, k)) = path.strip_prefix("/gated-events/").and_then(|s| {
        let (n, k) = s.split_once('/')?;
        Some((n.parse::<u64>().ok()?, k.parse::<u64>().ok()?))
    }) {
        // `k` events at once, then the other `n - k` once the gate is open.
        let stream = futures_util::stream::unfold((0u64, gate), move |(i, mut gate)| async move {
            if i == n {
                return None;
            }
            if i == k {
                let _ = gate.wait_for(|open| *open).await;
            }
            let frame =
                hyper::body::Frame::data(Bytes::from(format!("id: {i}\ndata: event {i}\n\n")));
            Some((Ok::<_, std::io::Error>(frame), (i + 1, gate)))
        });
        return Ok(Response::builder()
            .header("x-backend", name)
            .header("content-type", "text/event-stream")
            .body(http_body_util::StreamBody::new(stream).boxed())
            .expect("response"));
    }
    if let Some(n) = path
        .strip_prefix("/sse/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        // `n` server-sent events, one per second.
        let stream = futures_util::stream::unfold(0u64, move |i| async move {
            if i == n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let frame = hyper::body::Frame::data(Bytes::from(format!("data: event {i}\n\n")));
            Some((Ok::<_, std::io::Error>(frame), i + 1))
        });
        return Ok(Response::builder()
            .header("x-backend", name)
            .header("content-type", "text/event-stream")
            .body(http_body_util::StreamBody::new(stream).boxed())
            .expect("response"));
    }
    if let Some((n, ms)) = path.strip_prefix("/events/").and_then(|s| {
        let (n, ms) = s.split_once('/')?;
        Some((n.parse::<u64>().ok()?, ms.parse::<u64>().ok()?))
    }) {
        // `n` server-sent events spread evenly over `ms` milliseconds, in batches of 10.
        let pause = Duration::from_millis(ms * 10 / n.max(1));
        let stream = futures_util::stream::unfold(0u64, move |i| async move {
            if i == n {
                return None;
            }
            if i > 0 && i % 10 == 0 {
                tokio::time::sleep(pause).await;
            }
            let frame =
                hyper::body::Frame::data(Bytes::from(format!("id: {i}\ndata: event {i}\n\n")));
            Some((Ok::<_, std::io::Error>(frame), i + 1))
        });
        return Ok(Response::builder()
            .header("x-backend", name)
            .header("content-type", "text/event-stream")
            .body(http_body_util::StreamBody::new(stream).boxed())
            .expect("response"));
    }
    if let Some(n) = path.strip_prefix("/status/").and_then(|s| s.parse().ok()) {
        status = StatusCode::from_u16(n).unwrap_or(StatusCode::OK);
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(n, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let take = left.min(chunk.len() as u64);
                let frame = hyper::body::Frame::data(chunk.slice(..take as usize));
                Some((Ok::<_, std::io::Error>(frame), left - take))
            }
        });
        let body = http_body_util::StreamBody::new(stream).boxed();
        return Ok(Response::builder()
            .header("x-backend", name)
            .body(body)
            .expect("response"));
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    let method = req.method().to_string();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    // Count the body frame by frame: never hold it.
    let mut body = req.into_body();
    let mut body_len = 0u64;
    let mut body_text = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            body_len += d.len() as u64;
            if body_text.len() < 4096 {
                body_text.extend_from_slice(&d[..d.len().min(4096)]);
            }
        }
    }
    let json = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path_q,
        "version": version,
        "headers": headers,
        "body_len": body_len,
        "body": String::from_utf8_lossy(&body_text),
    });
    Ok(Response::builder()
        .status(status)
        .header("x-backend", name)
        .header("content-type", "application/json")
        .body(full(json.to_string()))
        .expect("response"))
}

// ---------------------------------------------------------------------------------------------
// Client

/// A response read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    /// The header the echo backend saw.
    pub fn seen(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }
}

/// A plain-HTTP client that speaks HTTP/2 with prior knowledge (h2c).
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A plain-HTTP/1.1 client, for tests that read a response as it streams (see [`send`]).
pub fn http1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request over HTTP/1.1 and reads the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let resp = http1_client()
        .request(req)
        .await
        .expect("request through weir");
    read(resp).await
}

pub async fn read(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Reply {
    get_with(url, &[]).await
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).expect("request")).await
}

pub async fn post(url: &str, body: impl Into<Bytes>) -> Reply {
    send(
        Request::post(url)
            .body(Full::new(body.into()))
            .expect("request"),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A real `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (installed by `cargo xtask test`)");
        let deadline = Instant::now() + HANG_GUARD;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for redis-server to listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server process (SIGSTOP): its connections stay open and nothing answers.
    pub fn pause(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -STOP redis-server failed");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// OCI registry

/// A real `docker-registry` (Debian's distribution/registry) on a free loopback port, storing in
/// a temporary directory; with `htpasswd` auth when given (user, password). Killed on drop.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

impl Registry {
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils, installed by cargo xtask test)");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: weir-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).expect("write registry config");
        let mut r = Registry {
            child: None,
            port,
            dir,
            config: path,
        };
        r.resume();
        r
    }

    /// Starts (again) the registry process on the same port and storage.
    pub fn resume(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry (installed by cargo xtask test)");
        self.child = Some(child);
        let deadline = Instant::now() + HANG_GUARD;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for docker-registry to listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the registry process (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("oci://127.0.0.1:{}/{repo_tag}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Peers: test servers written in Python or Node (tests/peers)

/// Waits until something listens on `port` (failing only if that hangs, see [`HANG_GUARD`]).
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + HANG_GUARD;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} to listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A peer server process on a loopback port; killed on drop. Peers that take `--log FILE`
/// append one JSON object per request they receive, readable with [`Peer::received`].
pub struct Peer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// `python3 tests/peers/SCRIPT --port PORT --log FILE EXTRA...` (the peers' convention).
    pub fn python(script: &str, port: u16, extra: &[&str]) -> Peer {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("received.jsonl");
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("tests/peers").join(script))
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .args(extra);
        Peer::spawn(cmd, port, script, dir, log)
    }

    /// Any command that will listen on `port`.
    pub fn command(cmd: Command, port: u16, what: &str) -> Peer {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("received.jsonl");
        Peer::spawn(cmd, port, what, dir, log)
    }

    fn spawn(
        mut cmd: Command,
        port: u16,
        what: &str,
        dir: tempfile::TempDir,
        log: PathBuf,
    ) -> Peer {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what} (installed by `cargo xtask test`): {e}"));
        wait_for_port(port, what);
        Peer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the peer logged receiving, one JSON value per request.
    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `examples/NAME/weir.toml` as it is, except for `replace` (e.g. its ports) and the
/// plugin directory; `listener` is the address the replaced config listens on.
pub fn start_example(
    name: &str,
    replace: &[(&str, String)],
    listener: SocketAddr,
    env: &[(&str, &str)],
) -> Gateway {
    let mut config =
        std::fs::read_to_string(repo_root().join("examples").join(name).join("weir.toml"))
            .expect("read the example")
            .replace(
                "../../plugins/target/wasm32-wasip2/release",
                &plugin_dir().display().to_string(),
            );
    for (from, to) in replace {
        config = config.replace(from, to);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).expect("write config");
    Gateway::start_file_env(dir, &path, listener, env)
}

/// An HTTP/1.1 exchange over a raw socket, for requests a client library would refuse or
/// repair (odd targets, two `Host` fields, broken chunked framing). `request` is sent as is and
/// the response is read until the gateway closes the connection (send `connection: close`).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    hang_guard("a raw HTTP/1.1 exchange", async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the gateway");
        stream.write_all(request).await.expect("send the request");
        let mut buf = Vec::new();
        // A reset after the answer (the gateway closing a connection it will not read further)
        // still leaves the answer read.
        let _ = stream.read_to_end(&mut buf).await;
        RawReply::parse(&buf)
    })
    .await
}

/// A response read from a raw socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub body: String,
}

impl RawReply {
    fn parse(buf: &[u8]) -> RawReply {
        let text = String::from_utf8_lossy(buf);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        RawReply { status, body }
    }

    /// The JSON the echo backend answered with.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
