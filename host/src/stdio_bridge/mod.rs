//! Stdio MCP servers as upstreams. Many MCP servers only speak stdio (one JSON-RPC message per
//! line on stdin/stdout). For an upstream with `stdio = { command = ... }` the gateway runs the
//! server as a child process and serves the MCP Streamable HTTP transport (legacy era) for it
//! on a loopback port, which becomes the upstream's endpoint: routes, `route` decisions and the
//! `outbound` capability reach it like any HTTP server.
//!
//! - `child.rs`: the process: one stdio session multiplexed for every HTTP client (JSON-RPC ids
//!   rewritten per request), `initialize` done once and answered from cache afterwards, progress
//!   and log notifications routed to the request they belong to, stderr to the log, and a
//!   restart (with backoff, re-initialised) when it exits.
//! - `http.rs`: the loopback HTTP front.
//!
//! Bridges outlive configuration reloads: an upstream whose name and `stdio` table did not
//! change keeps its process; a changed one gets a new process; a removed one is stopped.

mod child;
mod http;

use crate::config::StdioSpec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot start stdio MCP server `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot bind the bridge's loopback listener: {0}")]
    Bind(std::io::Error),
}

/// One running bridge: its spec (to tell whether a reload changed it) and its address.
struct Running {
    spec: StdioSpec,
    addr: SocketAddr,
    /// Dropping it stops the HTTP front and the child.
    _bridge: Arc<child::Bridge>,
}

/// The bridges of this process, by upstream name.
#[derive(Default)]
pub struct Bridges {
    running: Mutex<HashMap<String, Running>>,
    /// `weir check` and tests of configs never start processes.
    enabled: AtomicBool,
}

impl Bridges {
    /// Lets [`Bridges::ensure`] start processes (only `weir run` does).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// The loopback address serving upstream `name`, starting (or restarting, if `spec`
    /// changed) its server. Without [`Bridges::enable`] nothing starts: the command is only
    /// checked to exist, and an unroutable address is returned.
    pub fn ensure(
        &self,
        name: &str,
        spec: &StdioSpec,
        base: &Path,
    ) -> Result<SocketAddr, BridgeError> {
        if !self.enabled.load(Ordering::SeqCst) {
            child::resolve(spec, base).map_err(|source| BridgeError::Spawn {
                command: spec.command.clone(),
                source,
            })?;
            return Ok(SocketAddr::from(([127, 0, 0, 1], 9)));
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.get(name)
            && r.spec == *spec
        {
            return Ok(r.addr);
        }
        let bridge = child::Bridge::start(name, spec, base)?;
        let addr = http::serve(bridge.clone()).map_err(BridgeError::Bind)?;
        tracing::info!(upstream = name, command = %spec.command, %addr, "stdio MCP server started");
        running.insert(
            name.to_string(),
            Running {
                spec: spec.clone(),
                addr,
                _bridge: bridge,
            },
        );
        Ok(addr)
    }

    /// Stops the bridges of upstreams not in `keep` (after a reload activated).
    pub fn retain(&self, keep: &[&str]) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|name, r| {
            let kept = keep.contains(&name.as_str());
            if !kept {
                tracing::info!(upstream = %name, "stdio MCP server stopped (upstream removed)");
                r._bridge.stop();
            }
            kept
        });
    }
}
