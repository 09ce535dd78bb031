//! Stdio MCP servers as upstreams. Many MCP servers only speak stdio (one JSON-RPC message per
//! line on stdin/stdout). For an upstream with `stdio = { command = ... }` the gateway runs the
//! server as a child process and serves the MCP Streamable HTTP transport (legacy era) for it on
//! a loopback port, which becomes the upstream's endpoint: routes, `route` decisions and the
//! `outbound` capability reach it like any HTTP server, with the usual timeouts.
//!
//! - `command.rs`: what to run (the program found and checked, its arguments, environment and
//!   working directory).
//! - `session.rs`: the one JSON-RPC session every HTTP client shares: ids and progress tokens
//!   rewritten per request, `initialize` done once and answered from cache afterwards, progress
//!   and log notifications routed to the requests they belong to, server requests refused.
//! - `process.rs`: the child: feeds it, reads it, logs its stderr, restarts it with backoff and
//!   re-initialises it when it exits, drains and stops it when its bridge is dropped.
//! - `lines.rs`: reading newline-delimited output with a bound on the line length.
//! - `http.rs`: the loopback HTTP front.
//!
//! Lifetime: a [`Bridge`] is owned by the snapshots whose upstreams point at it. The registry
//! ([`Bridges`], one per serving gateway) only keeps weak references, so a reload that keeps
//! an upstream's name and `stdio` table finds the running bridge and reuses it, a changed or
//! removed one stops once the last snapshot using it is gone (its requests in flight finish
//! first), and a reload that fails drops whatever it started.

mod body;
mod command;
mod http;
mod lines;
mod process;
mod session;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, watch};
use weir_config::StdioSpec;

/// Why a bridge cannot run. Shown to the operator as a configuration error of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot start stdio MCP server `{command}`: {reason}")]
    NotFound { command: String, reason: String },
    #[error("stdio MCP server `cwd` {}: {reason}", dir.display())]
    Cwd { dir: PathBuf, reason: String },
    #[error("cannot start stdio MCP server `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot bind the stdio bridge's loopback listener: {0}")]
    Bind(std::io::Error),
}

/// Where `weir check` points stdio upstreams: it starts nothing, and the address is never used.
const NOT_STARTED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

/// What makes two bridges the same: an unchanged upstream name and `stdio` table (and config
/// directory, against which relative paths resolve).
#[derive(PartialEq)]
struct Key {
    name: String,
    spec: StdioSpec,
    base: PathBuf,
}

/// One running bridge: a child process and its loopback front. Dropping the last reference
/// (the last snapshot using it) stops both, after the requests in flight.
pub struct Bridge {
    key: Key,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Bridge {
    /// The loopback address serving it; the upstream's endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The registry of running bridges (weak references, see the module docs).
#[derive(Default)]
pub struct Bridges {
    live: Mutex<Vec<Weak<Bridge>>>,
    /// Off for `weir check`: only a serving gateway runs processes.
    enabled: AtomicBool,
}

impl Bridges {
    /// Lets [`Bridges::ensure`] start processes (only `weir run` does).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// The bridge for upstream `name`: the running one if its spec is unchanged, else a new one
    /// (its process started now, so a command that cannot start refuses the configuration).
    /// Without [`Bridges::enable`] the command is only checked and `None` comes back with an
    /// address that is never used.
    pub fn ensure(
        &self,
        name: &str,
        spec: &StdioSpec,
        base: &Path,
    ) -> Result<(SocketAddr, Option<Arc<Bridge>>), BridgeError> {
        let program = command::Program::resolve(spec, base)?;
        if !self.enabled.load(Ordering::SeqCst) {
            return Ok((NOT_STARTED, None));
        }
        let key = Key {
            name: name.to_string(),
            spec: spec.clone(),
            base: base.to_path_buf(),
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|b| b.strong_count() > 0);
        if let Some(running) = live.iter().filter_map(Weak::upgrade).find(|b| b.key == key) {
            return Ok((running.addr, Some(running)));
        }

        let child = program.spawn()?;
        let pid = child.id().unwrap_or_default();
        let (to_child, queued) = mpsc::unbounded_channel();
        let session = Arc::new(session::Session::new(name, to_child));
        let (stop, stopped) = watch::channel(false);
        // On error the child is dropped here, and `kill_on_drop` ends it.
        let addr = http::serve(session.clone(), stopped.clone()).map_err(BridgeError::Bind)?;
        tokio::spawn(process::supervise(session, program, child, queued, stopped));
        tracing::info!(upstream = name, command = %spec.command, pid, %addr, "stdio MCP server started");
        let bridge = Arc::new(Bridge { key, addr, stop });
        live.push(Arc::downgrade(&bridge));
        Ok((addr, Some(bridge)))
    }
}
