//! The gateway: the Wasm runtime, the active snapshot (swapped atomically), and startup.

use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plugin::Runtime;
use crate::server::Listener;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    pub runtime: Runtime,
}

impl Gateway {
    /// The snapshot new requests should use.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

/// Loads and validates `config` with every plugin, without serving (`weir check`).
pub async fn check(config: &Config) -> Result<(), Diagnostics> {
    let runtime = Runtime::new(&config.file.runtime).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(format!(
            "cannot start the Wasm runtime: {e:#}"
        ))])
    })?;
    Snapshot::build(config, &runtime).await.map(|_| ())
}

/// Builds the snapshot, binds every listener and serves until the process is told to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let runtime = Runtime::new(&config.file.runtime)?;
    let snapshot = Snapshot::build(&config, &runtime)
        .await
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let gateway = Arc::new(Gateway {
        snapshot: ArcSwap::from_pointee(snapshot),
        runtime,
    });

    let mut listeners = Vec::new();
    for l in &config.file.listeners {
        let lc = l.get_ref();
        let addr: SocketAddr = lc.address.get_ref().parse()?;
        let name = lc
            .name
            .clone()
            .unwrap_or_else(|| lc.address.get_ref().clone());
        let tls = match &lc.tls {
            Some(t) => Some(
                crate::tls::server_config(
                    &config.resolve(t.cert.get_ref()),
                    &config.resolve(t.key.get_ref()),
                )
                .map_err(|e| {
                    anyhow::anyhow!("{}: listener \"{name}\": {e}", config.location(l.span()))
                })?,
            ),
            None => None,
        };
        let listener = Listener::bind(&name, addr, tls).await.map_err(|e| {
            anyhow::anyhow!(
                "{}: listener \"{name}\": cannot bind {addr}: {e}",
                config.location(l.span())
            )
        })?;
        tracing::info!(listener = %name, address = %listener.addr, "listening");
        listeners.push(tokio::spawn(listener.serve(gateway.clone())));
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
    for l in listeners {
        l.abort();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
