//! Startup and shutdown: `check` (load everything, serve nothing) and `run` (load, bind, start
//! the workers, the admin API and the reload triggers, then drain on SIGTERM/SIGINT). What runs
//! afterwards holds a [`Control`], never this module.

use crate::config::Config;
use crate::control::Control;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plugin::Runtime;
use crate::server::{Listener, WorkerListener};
use crate::snapshot::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weir_stdio_bridge::Bridges;

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
        let ca = t.client_ca.as_ref().map(|p| config.resolve(p.get_ref()));
        let client = ca.as_deref().map(|ca| crate::tls::ClientAuth {
            ca,
            required: t.client_auth == crate::config::ClientAuthMode::Required,
        });
        match crate::tls::server_config(
            &config.resolve(t.cert.get_ref()),
            &config.resolve(t.key.get_ref()),
            client,
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
    // `weir check` starts no stdio MCP server: its bridges stay disabled.
    let snapshot = Snapshot::build(config, &runtime, &Bridges::default()).await;
    match (tls, snapshot) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(a), Err(b)) => Err(Diagnostics([a.0, b.0].concat())),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Builds the snapshot, binds every listener, then starts the workers and serves until told
/// to stop. Nothing is served unless all of that succeeded. On SIGTERM/SIGINT new connections
/// are refused at once and requests in flight get `limits.drain_timeout` to finish.
pub async fn run(config: Config) -> anyhow::Result<()> {
    crate::accept::raise_fd_limit();
    open_sinks(&config)?;
    let runtime = Runtime::new(&config.file.runtime)?;
    // Only a serving gateway runs stdio MCP servers (`weir check` does not).
    let bridges = Bridges::default();
    bridges.enable();
    let tls = listener_tls(&config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let snapshot = Snapshot::build(&config, &runtime, &bridges)
        .await
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let gateway = Arc::new(Control::new(snapshot, runtime, bridges, &config));
    // The admin listener first: once the kernel queues a connection for a traffic listener,
    // health and readiness probes must already answer.
    let admin = start_admin(&config, &gateway).await?;
    let per_worker = bind_listeners(&config, tls, &gateway.runtime.services.requests)?;

    let drain = config.file.limits.drain_timeout.0;
    let mut threads = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let gateway = gateway.clone();
        threads.push(crate::worker::spawn(i, move || {
            crate::server::serve_worker(listeners, gateway, drain)
        })?);
    }
    if config.file.reload.watch {
        tokio::spawn(crate::reload::watch_files(
            gateway.clone(),
            config.file.reload.poll_interval.0,
        ));
    }
    if let Some(every) = config.file.reload.registry_poll {
        tokio::spawn(crate::reload::watch_registries(gateway.clone(), every.0));
    }
    tokio::spawn(crate::reload::on_sighup(gateway.clone()));

    shutdown_signal().await;
    leave(&gateway, config.file.limits.shutdown_delay.0).await;
    tracing::info!(drain_timeout = ?drain, "shutting down: no new connections; draining requests in flight");
    gateway.begin_shutdown();
    if let Some(admin) = admin {
        admin.abort();
    }
    // Workers finish their connections (or give up at the drain timeout) and end.
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout(drain.saturating_add(Duration::from_secs(1)), joined).await;
    crate::telemetry::shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// `limits.shutdown_delay`: not ready and closing every HTTP/1.1 connection after its
/// response, while still accepting, so load balancers move away before the listeners close. A
/// second SIGTERM/SIGINT ends the delay at once.
async fn leave(gateway: &Control, delay: Duration) {
    if delay.is_zero() {
        return;
    }
    gateway.begin_leaving();
    tracing::info!(shutdown_delay = ?delay, "shutting down: /ready answers 503; serving until the delay ends");
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown_signal() => {}
    }
}

/// Opens the process-wide sinks: the OTLP exporter, the access log and the audit log.
fn open_sinks(config: &Config) -> anyhow::Result<()> {
    if let Some(t) = &config.file.telemetry {
        crate::telemetry::init(t.get_ref())
            .map_err(|e| anyhow::anyhow!("{}: telemetry: {e}", config.location(t.span())))?;
    }
    let logging = &config.file.logging;
    if let Some(p) = &logging.access_log {
        let path = config.resolve(p);
        crate::access_log::open_access(&path, logging.access_log_fields.clone())
            .map_err(|e| anyhow::anyhow!("[logging] access_log {}: {e}", path.display()))?;
    }
    if let Some(p) = &logging.audit_log {
        let path = config.resolve(p);
        crate::access_log::open_audit(&path)
            .map_err(|e| anyhow::anyhow!("[logging] audit_log {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Binds every listener (one socket per worker); returns each worker's sockets.
fn bind_listeners(
    config: &Config,
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    metrics: &Arc<crate::request_metrics::RequestMetrics>,
) -> anyhow::Result<Vec<Vec<WorkerListener>>> {
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
        for (i, part) in listener.per_worker(metrics.clone()).into_iter().enumerate() {
            per_worker[i].push(part);
        }
    }
    Ok(per_worker)
}

/// Binds the admin listener, if configured, and serves the admin API on it.
async fn start_admin(
    config: &Config,
    gateway: &Arc<Control>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(a) = &config.file.admin else {
        return Ok(None);
    };
    let access = crate::admin::Access::new(config)?;
    let addr: SocketAddr = a.get_ref().address.get_ref().parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "{}: admin: cannot bind {addr}: {e}",
            config.location(a.span())
        )
    })?;
    tracing::info!(address = %addr, "admin API listening");
    Ok(Some(tokio::spawn(crate::admin::serve(
        listener,
        gateway.clone(),
        access,
        a.get_ref().max_connections,
    ))))
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
