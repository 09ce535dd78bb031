//! The stdio server process and the one JSON-RPC session every HTTP client shares.

use super::BridgeError;
use crate::config::StdioSpec;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

/// The longest line accepted from the server.
const MAX_LINE: usize = 16 << 20;

/// A request waiting for its answer: the client's id, its progress token, where its messages go.
struct Pending {
    client_id: Value,
    token: Option<Value>,
    tx: mpsc::UnboundedSender<Value>,
    /// For the first `initialize`, its params: with the result, kept for the clients after it
    /// (and for restarts).
    initialize: Option<Value>,
}

#[derive(Default)]
struct Session {
    pending: HashMap<String, Pending>,
    /// The first client's `initialize` params and the server's result.
    init: Option<(Value, Value)>,
    /// `notifications/initialized` went to the current process.
    initialized: bool,
}

pub struct Bridge {
    name: String,
    session: Mutex<Session>,
    lines: mpsc::UnboundedSender<String>,
    next: AtomicU64,
    stop: watch::Sender<bool>,
}

/// The program to run: a path relative to the config's directory if it has a `/`, else found
/// on `PATH`.
pub fn resolve(spec: &StdioSpec, base: &Path) -> std::io::Result<PathBuf> {
    let cmd = Path::new(&spec.command);
    if spec.command.contains('/') {
        let p = if cmd.is_absolute() {
            cmd.to_path_buf()
        } else {
            base.join(cmd)
        };
        return if p.is_file() {
            Ok(p)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} not found", p.display()),
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(cmd))
        .find(|p| p.is_file())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH"))
}

fn spawn(spec: &StdioSpec, base: &Path) -> std::io::Result<Child> {
    let program = resolve(spec, base)?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(base.join(dir));
    }
    cmd.spawn()
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Bridge {
    /// Starts the process (failing now if it cannot start) and the task that supervises it.
    pub fn start(name: &str, spec: &StdioSpec, base: &Path) -> Result<Arc<Bridge>, BridgeError> {
        let child = spawn(spec, base).map_err(|source| BridgeError::Spawn {
            command: spec.command.clone(),
            source,
        })?;
        let (lines, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let bridge = Arc::new(Bridge {
            name: name.to_string(),
            session: Mutex::new(Session::default()),
            lines,
            next: AtomicU64::new(1),
            stop,
        });
        tokio::spawn(supervise(
            bridge.clone(),
            child,
            rx,
            stopped,
            spec.clone(),
            base.to_path_buf(),
        ));
        Ok(bridge)
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a request; its progress and log notifications, then its answer, arrive on the
    /// returned channel (with the client's id).
    pub fn request(&self, mut msg: Value) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client_id = msg["id"].clone();
        let method = msg["method"].as_str().unwrap_or_default().to_string();
        let mut session = self.session();
        if method == "initialize"
            && let Some((_, result)) = &session.init
        {
            // One initialize per process: later clients get the first answer.
            let _ = tx.send(json!({"jsonrpc": "2.0", "id": client_id, "result": result}));
            return rx;
        }
        let id = format!("weir-{}", self.next.fetch_add(1, Ordering::Relaxed));
        msg["id"] = json!(id);
        session.pending.insert(
            id,
            Pending {
                client_id,
                token: msg.pointer("/params/_meta/progressToken").cloned(),
                tx,
                initialize: (method == "initialize").then(|| msg["params"].clone()),
            },
        );
        if method == "initialize" {
            session.init = None;
            session.initialized = false;
        }
        let _ = self.lines.send(msg.to_string());
        rx
    }

    /// Sends a client notification (`notifications/initialized` only once per process).
    pub fn notify(&self, msg: &Value) {
        if msg["method"] == "notifications/initialized" {
            let mut session = self.session();
            if session.initialized {
                return;
            }
            session.initialized = true;
        }
        let _ = self.lines.send(msg.to_string());
    }

    /// A line from the server's stdout.
    fn server_line(&self, line: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<Value>(line) else {
            tracing::warn!(upstream = %self.name, line = %String::from_utf8_lossy(&line[..line.len().min(200)]), "stdio MCP server wrote a line that is not JSON");
            return;
        };
        let method = msg["method"].as_str();
        let id = msg.get("id").filter(|i| !i.is_null());
        match (method, id) {
            (Some(m), Some(id)) => {
                // A request to the client (sampling, roots...): there is no client to ask.
                tracing::info!(upstream = %self.name, method = m, "stdio MCP server asked the client something; answered method-not-found");
                let _ = self.lines.send(
                    error(
                        id,
                        -32601,
                        "the gateway's stdio bridge cannot answer server requests",
                    )
                    .to_string(),
                );
            }
            (Some("notifications/progress"), None) => {
                let session = self.session();
                let token = &msg["params"]["progressToken"];
                if let Some(p) = session
                    .pending
                    .values()
                    .find(|p| p.token.as_ref() == Some(token))
                {
                    let _ = p.tx.send(msg.clone());
                }
            }
            (Some("notifications/message"), None) => {
                for p in self.session().pending.values() {
                    let _ = p.tx.send(msg.clone());
                }
            }
            (Some(other), None) => {
                tracing::debug!(upstream = %self.name, method = other, "stdio MCP server notification not relayed");
            }
            (None, Some(id)) => {
                let mut session = self.session();
                let Some(p) = id.as_str().and_then(|i| session.pending.remove(i)) else {
                    return;
                };
                let mut answer = msg.clone();
                answer["id"] = p.client_id;
                if let (Some(params), Some(result)) = (p.initialize, msg.get("result")) {
                    session.init = Some((params, result.clone()));
                }
                let _ = p.tx.send(answer);
            }
            (None, None) => {}
        }
    }

    /// The process ended: every waiting request gets an error.
    fn exited(&self, why: &str) {
        let mut session = self.session();
        for (_, p) in session.pending.drain() {
            let _ = p.tx.send(error(
                &p.client_id,
                -32603,
                &format!("stdio MCP server {} exited ({why}); retry", self.name),
            ));
        }
        session.initialized = false;
    }

    /// Re-initialises a restarted process with the first client's parameters.
    fn reinitialize(&self) -> Vec<String> {
        let mut session = self.session();
        let Some((params, _)) = session.init.clone() else {
            return Vec::new();
        };
        session.initialized = true;
        vec![
            json!({"jsonrpc": "2.0", "id": "weir-reinit", "method": "initialize", "params": params}).to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        ]
    }

    /// Turns `true` when the bridge is stopped.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Runs the process: feeds it lines, reads its answers and stderr, restarts it when it exits.
async fn supervise(
    bridge: Arc<Bridge>,
    mut child: Child,
    mut lines: mpsc::UnboundedReceiver<String>,
    mut stopped: watch::Receiver<bool>,
    spec: StdioSpec,
    base: PathBuf,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return;
        };
        let name = bridge.name.clone();
        tokio::spawn(async move {
            let mut err = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = err.next_line().await {
                tracing::info!(upstream = %name, "stdio MCP server: {line}");
            }
        });
        for line in bridge.reinitialize() {
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
        }
        let mut out = BufReader::new(stdout);
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        let why = loop {
            tokio::select! {
                _ = stopped.changed() => {
                    let _ = child.kill().await;
                    return;
                }
                line = lines.recv() => {
                    let Some(line) = line else { return };
                    if stdin.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        break "its stdin closed".to_string();
                    }
                }
                read = out.read_until(b'\n', &mut buf) => {
                    match read {
                        Ok(0) | Err(_) => break "its stdout closed".to_string(),
                        Ok(_) if buf.len() > MAX_LINE => {
                            tracing::warn!(upstream = %bridge.name, bytes = buf.len(), "stdio MCP server line too long; dropped");
                            buf.clear();
                        }
                        Ok(_) if buf.ends_with(b"\n") => {
                            bridge.server_line(&buf);
                            buf.clear();
                        }
                        Ok(_) => {}
                    }
                }
            }
        };
        let status = child
            .wait()
            .await
            .map(|s| s.to_string())
            .unwrap_or_default();
        let why = format!("{why}, {status}");
        tracing::warn!(upstream = %bridge.name, reason = %why, "stdio MCP server exited; restarting");
        bridge.exited(&why);
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match spawn(&spec, &base) {
                Ok(c) => {
                    child = c;
                    tracing::info!(upstream = %bridge.name, "stdio MCP server restarted");
                    break;
                }
                Err(e) => {
                    tracing::warn!(upstream = %bridge.name, error = %e, "stdio MCP server could not be restarted")
                }
            }
        }
    }
}
