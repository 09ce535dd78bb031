//! The gateway: the Wasm runtime, the active snapshot (swapped atomically), and startup.

use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plugin::Runtime;
use crate::server::{Listener, WorkerListener};
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

/// Loads each listener's TLS configuration (certificate and key files).
fn listener_tls(config: &Config) -> Result<Vec<Option<Arc<rustls::ServerConfig>>>, Diagnostics> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for l in &config.file.listeners {
        let lc = l.get_ref();
        let Some(t) = &lc.tls else {
            out.push(None);
            continue;
        };
        let name = lc
            .name
            .clone()
            .unwrap_or_else(|| lc.address.get_ref().clone());
        match crate::tls::server_config(
            &config.resolve(t.cert.get_ref()),
            &config.resolve(t.key.get_ref()),
        ) {
            Ok(c) => out.push(Some(c)),
            Err(e) => errors.push(
                Diagnostic::new(e.to_string())
                    .about(format!("listener \"{name}\""))
                    .at(config.location(t.cert.span())),
            ),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(errors))
    }
}

/// Loads and validates `config` with every plugin and certificate, without serving
/// (`weir check`).
pub async fn check(config: &Config) -> Result<(), Diagnostics> {
    let runtime = Runtime::new(&config.file.runtime).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(format!(
            "cannot start the Wasm runtime: {e:#}"
        ))])
    })?;
    let tls = listener_tls(config);
    let snapshot = Snapshot::build(config, &runtime).await;
    match (tls, snapshot) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(a), Err(b)) => Err(Diagnostics([a.0, b.0].concat())),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Builds the snapshot, binds every listener, then starts the workers and serves until told
/// to stop. Nothing is served unless all of that succeeded.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let runtime = Runtime::new(&config.file.runtime)?;
    let tls = listener_tls(&config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let snapshot = Snapshot::build(&config, &runtime)
        .await
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let gateway = Arc::new(Gateway {
        snapshot: ArcSwap::from_pointee(snapshot),
        runtime,
    });

    let workers = config.file.runtime.worker_count();
    let mut per_worker: Vec<Vec<WorkerListener>> = (0..workers).map(|_| Vec::new()).collect();
    for (l, tls) in config.file.listeners.iter().zip(tls) {
        let lc = l.get_ref();
        let addr: SocketAddr = lc.address.get_ref().parse()?;
        let name = lc
            .name
            .clone()
            .unwrap_or_else(|| lc.address.get_ref().clone());
        let listener = Listener::bind(&name, addr, tls, workers).map_err(|e| {
            anyhow::anyhow!(
                "{}: listener \"{name}\": cannot bind {addr}: {e}",
                config.location(l.span())
            )
        })?;
        tracing::info!(listener = %name, address = %listener.addr, workers, "listening");
        for (i, part) in listener.per_worker().into_iter().enumerate() {
            per_worker[i].push(part);
        }
    }
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let gateway = gateway.clone();
        crate::worker::spawn(i, move || async move {
            for l in listeners {
                tokio::spawn(l.serve(gateway.clone()));
            }
            std::future::pending::<()>().await;
        })?;
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
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
