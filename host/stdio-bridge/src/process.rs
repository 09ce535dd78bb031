//! The child process of a bridge, supervised by one task for the bridge's lifetime.
//!
//! Reading stdout runs in a task of its own, so a child blocked writing a large answer is
//! always read even while the supervisor waits to write to its stdin (the classic pipe
//! deadlock). When the child exits, the requests in flight get errors and it is started again
//! after a backoff (100 ms doubling to 5 s, reset once a process lived for a while), then
//! re-initialised with the first client's params before any queued line is written. When the
//! bridge is dropped (no snapshot uses it any more), the child is stopped once its requests in
//! flight are answered, or after [`DRAIN_LIMIT`].

use super::command::Program;
use super::lines::{self, Line};
use super::session::Session;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch};

/// The longest JSON-RPC line accepted from the child; longer ones are dropped (and logged).
const MAX_LINE: usize = 16 << 20;
/// The longest stderr line logged whole.
const MAX_STDERR_LINE: usize = 16 << 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that lived this long crashed for a new reason: restart it quickly again.
const STABLE: Duration = Duration::from_secs(10);
/// How long a restarted process may take to answer its `initialize`.
const REINIT_LIMIT: Duration = Duration::from_secs(30);
/// How long a stopped bridge waits for its requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How one process's run ended.
enum End {
    Exited(String),
    Stopped,
}

/// Runs `child`, and its successors, until the bridge is stopped.
pub(super) async fn supervise(
    session: Arc<Session>,
    program: Program,
    mut child: Child,
    mut queued: mpsc::UnboundedReceiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let name = session.name.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let end = run(&session, &mut child, &mut queued, &mut stop).await;
        let why = match end {
            End::Stopped => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                session.fail_all("the bridge stopped", &mut queued);
                tracing::info!(upstream = %name, "stdio MCP server stopped (its upstream was removed or changed)");
                return;
            }
            End::Exited(why) => why,
        };
        // Its stdout closed (or it cannot be fed): give it a moment to exit on its own, so its
        // status says why, then make sure it is gone.
        let status = match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let why = match status {
            Ok(s) => format!("{why}, {s}"),
            Err(e) => format!("{why}, {e}"),
        };
        session.fail_all(&why, &mut queued);
        if *stop.borrow() {
            tracing::info!(upstream = %name, reason = %why, "stdio MCP server exited while stopping");
            return;
        }
        tracing::warn!(upstream = %name, reason = %why, "stdio MCP server exited; restarting");
        if started.elapsed() > STABLE {
            backoff = FIRST_BACKOFF;
        }
        child = loop {
            tokio::select! {
                _ = stopped(&mut stop) => {
                    session.fail_all("the bridge stopped", &mut queued);
                    return;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match program.spawn() {
                Ok(c) => {
                    let pid = c.id().unwrap_or_default();
                    tracing::info!(upstream = %name, pid, "stdio MCP server restarted");
                    break c;
                }
                Err(e) => {
                    tracing::warn!(upstream = %name, error = %e, "stdio MCP server could not be restarted");
                    // Requests that arrived meanwhile are not kept waiting for a retry.
                    session.fail_all(&format!("restarting it failed: {e}"), &mut queued);
                }
            }
        };
    }
}

/// Resolves once the bridge is stopped (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn write_line(stdin: &mut ChildStdin, line: String) -> std::io::Result<()> {
    let mut bytes = line.into_bytes();
    bytes.push(b'\n');
    stdin.write_all(&bytes).await?;
    stdin.flush().await
}

/// Logs the child's stderr, line by line (bounded), until it closes.
fn log_stderr(name: Arc<str>, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let _ = lines::for_each(stderr, MAX_STDERR_LINE, |line| match line {
            Line::Complete(l) => {
                tracing::info!(upstream = %name, "stdio MCP server: {}", String::from_utf8_lossy(l))
            }
            Line::TooLong(n) => {
                tracing::info!(upstream = %name, "stdio MCP server: ({n} bytes on one stderr line, not shown)")
            }
        })
        .await;
    });
}

/// Reads the child's stdout into the session, line by line (bounded); the task ends with why
/// its stdout ended.
fn read_stdout(
    session: Arc<Session>,
    stdout: tokio::process::ChildStdout,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let name = session.name.clone();
        let read = lines::for_each(stdout, MAX_LINE, |line| match line {
            Line::Complete(l) if l.iter().all(u8::is_ascii_whitespace) => {}
            Line::Complete(l) => session.child_line(l),
            Line::TooLong(n) => {
                tracing::warn!(upstream = %name, bytes = n, "stdio MCP server wrote a line over the limit; dropped")
            }
        })
        .await;
        match read {
            Ok(()) => "its stdout closed".to_string(),
            Err(e) => format!("reading its stdout failed: {e}"),
        }
    })
}

/// One process: re-initialise it if a client initialised its predecessor, then feed it.
async fn run(
    session: &Arc<Session>,
    child: &mut Child,
    queued: &mut mpsc::UnboundedReceiver<String>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return End::Exited("its stdio is not piped".into());
    };
    log_stderr(session.name.clone(), stderr);
    let mut reader = read_stdout(session.clone(), stdout);
    let reader_end = |r: Result<String, tokio::task::JoinError>| {
        End::Exited(r.unwrap_or_else(|e| format!("its reader failed: {e}")))
    };

    if let Some((line, outcome)) = session.reinitialize() {
        if write_line(&mut stdin, line).await.is_err() {
            reader.abort();
            return End::Exited("its stdin closed".into());
        }
        tokio::select! {
            r = &mut reader => return reader_end(r),
            _ = stopped(stop) => { reader.abort(); return End::Stopped }
            r = tokio::time::timeout(REINIT_LIMIT, outcome) => match r {
                Ok(Ok(Ok(()))) => {
                    if write_line(&mut stdin, session.initialized_line()).await.is_err() {
                        reader.abort();
                        return End::Exited("its stdin closed".into());
                    }
                    tracing::info!(upstream = %session.name, "stdio MCP server re-initialised");
                }
                Ok(Ok(Err(e))) => {
                    reader.abort();
                    return End::Exited(format!("it refused to be re-initialised: {e}"));
                }
                _ => {
                    reader.abort();
                    return End::Exited("it did not answer its re-initialisation".into());
                }
            },
        }
    }

    let mut draining: Option<Instant> = None;
    loop {
        tokio::select! {
            r = &mut reader => return reader_end(r),
            _ = stopped(stop), if draining.is_none() => {
                draining = Some(Instant::now() + DRAIN_LIMIT);
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if draining.is_some() => {
                if session.is_idle() || draining.is_some_and(|d| Instant::now() > d) {
                    reader.abort();
                    return End::Stopped;
                }
            }
            line = queued.recv() => {
                let Some(line) = line else {
                    reader.abort();
                    return End::Stopped;
                };
                tokio::select! {
                    w = write_line(&mut stdin, line) => if w.is_err() {
                        reader.abort();
                        return End::Exited("its stdin closed".into());
                    },
                    r = &mut reader => return reader_end(r),
                }
            }
        }
    }
}
