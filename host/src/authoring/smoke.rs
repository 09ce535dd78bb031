//! `weir plugin test DIR`: builds the plugin, then runs the cases of `DIR/smoke.toml` through a
//! real gateway (this binary, `weir run`) with the plugin on one route in front of the demo echo
//! backend (`weir demo-backend`, which answers with the request it received as JSON).

use super::build::{BuildError, build};
use super::manifest::{Capability, Manifest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{0}")]
    Setup(String),
    #[error("{failed} of {total} smoke cases failed")]
    Failed { failed: usize, total: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Smoke {
    /// The chain entry's config for the test route.
    #[serde(default)]
    config: toml::Table,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: CaseRequest,
    status: u16,
    /// Headers the echo backend must have received.
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    /// Headers the client must receive.
    #[serde(default)]
    response_headers: BTreeMap<String, String>,
    body_contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

fn get() -> String {
    "GET".into()
}

/// Kills the child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> Result<SocketAddr, SmokeError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| SmokeError::Setup(format!("no free port: {e}")))
}

/// The gateway config: the plugin, granted what its manifest declares, on one route.
fn gateway_config(
    manifest: &Manifest,
    wasm: &Path,
    config: &toml::Table,
    gateway: SocketAddr,
    backend: SocketAddr,
) -> String {
    let mut grants = Vec::new();
    for c in &manifest.capabilities {
        grants.push(match c {
            Capability::Kv => format!("kv = \"{}\"", manifest.name),
            Capability::Outbound => "outbound = [\"backend\"]".to_string(),
            Capability::Metrics => "metrics = true".to_string(),
            Capability::Secrets => "secrets = []".to_string(),
        });
    }
    let config = toml::Value::Table(config.clone()).to_string();
    format!(
        "[[listeners]]\naddress = \"{gateway}\"\n\n[upstreams.backend]\nendpoints = [\"http://{backend}\"]\n\n\
         [plugins.{name}]\npath = {path}\ninstances = \"pooled\"\ncapabilities = {{ {grants} }}\n\n\
         [[routes]]\nname = \"smoke\"\nupstream = \"backend\"\nchain = [{{ plugin = \"{name}\", config = {config} }}]\n",
        name = manifest.name,
        path = toml::Value::String(wasm.display().to_string()),
        grants = grants.join(", "),
    )
}

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<(), SmokeError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SmokeError::Setup(format!("{what} exited with {status}")));
        }
        if Instant::now() > deadline {
            return Err(SmokeError::Setup(format!(
                "{what} did not listen on {addr}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Builds and smoke-tests the plugin in `dir`, printing one line per case.
pub fn test(dir: &Path) -> Result<(), SmokeError> {
    let wasm = build(dir)?;
    let manifest = Manifest::load(dir).map_err(BuildError::from)?;
    let smoke_path = dir.join("smoke.toml");
    let smoke: Smoke = std::fs::read_to_string(&smoke_path)
        .map_err(|e| SmokeError::Setup(format!("cannot read {}: {e}", smoke_path.display())))
        .and_then(|s| {
            toml::from_str(&s)
                .map_err(|e| SmokeError::Setup(format!("{}: {e}", smoke_path.display())))
        })?;
    let exe = std::env::current_exe()
        .map_err(|e| SmokeError::Setup(format!("cannot find the weir binary: {e}")))?;
    let work = dir.join(".weir-build");
    let (gateway, backend) = (free_addr()?, free_addr()?);

    let spawn = |args: &[&str], log: &str| -> Result<Running, SmokeError> {
        let log =
            std::fs::File::create(work.join(log)).map_err(|e| SmokeError::Setup(e.to_string()))?;
        Command::new(&exe)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Running)
            .map_err(|e| SmokeError::Setup(format!("cannot start {}: {e}", exe.display())))
    };
    let mut echo = spawn(
        &["demo-backend", "--listen", &backend.to_string()],
        "backend.log",
    )?;
    wait_listening(backend, &mut echo.0, "the echo backend")?;
    let config_path = work.join("smoke-gateway.toml");
    std::fs::write(
        &config_path,
        gateway_config(&manifest, &wasm, &smoke.config, gateway, backend),
    )
    .map_err(|e| SmokeError::Setup(e.to_string()))?;
    let config_arg = config_path.display().to_string();
    let mut gw = spawn(&["run", "--config", &config_arg], "gateway.log")?;
    wait_listening(gateway, &mut gw.0, "the gateway").map_err(|e| {
        let log = std::fs::read_to_string(work.join("gateway.log")).unwrap_or_default();
        SmokeError::Setup(format!("{e}\n{log}"))
    })?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SmokeError::Setup(e.to_string()))?;
    let mut failed = 0;
    for case in &smoke.cases {
        match rt.block_on(run_case(gateway, case)) {
            Ok(()) => println!("ok      {}", case.name),
            Err(why) => {
                failed += 1;
                println!("FAILED  {}: {why}", case.name);
            }
        }
    }
    drop(gw);
    drop(echo);
    if failed > 0 {
        println!("gateway log: {}", work.join("gateway.log").display());
        return Err(SmokeError::Failed {
            failed,
            total: smoke.cases.len(),
        });
    }
    println!(
        "{}: {} smoke cases passed",
        manifest.name,
        smoke.cases.len()
    );
    Ok(())
}

async fn run_case(gateway: SocketAddr, case: &Case) -> Result<(), String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(case.request.method.as_str())
        .uri(format!("http://{gateway}{}", case.request.path));
    for (k, v) in &case.request.headers {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(case.request.body.clone())))
        .map_err(|e| format!("bad request in smoke.toml: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
        .map_err(|e| format!("request failed: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    if parts.status.as_u16() != case.status {
        return Err(format!(
            "status {} (expected {}): {text}",
            parts.status, case.status
        ));
    }
    for (k, v) in &case.response_headers {
        let got = parts.headers.get(k).and_then(|h| h.to_str().ok());
        if got != Some(v.as_str()) {
            return Err(format!("response header {k}: {got:?} (expected {v:?})"));
        }
    }
    if let Some(want) = &case.body_contains
        && !text.contains(want.as_str())
    {
        return Err(format!("body does not contain {want:?}: {text}"));
    }
    if !case.upstream_headers.is_empty() {
        let echo: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| format!("the upstream was not reached (body: {text})"))?;
        for (k, v) in &case.upstream_headers {
            let got = echo["headers"][k.to_ascii_lowercase()].as_str();
            if got != Some(v.as_str()) {
                return Err(format!("upstream saw {k}: {got:?} (expected {v:?})"));
            }
        }
    }
    Ok(())
}
