//! The running gateway as the rest of the process sees it: the active snapshot (swapped
//! atomically on reload), reload, the reload status and the shutdown signal. The workers, the
//! admin API and the reload triggers hold an `Arc<Control>`; only `gateway::run` creates one.
//!
//! A reload (file change, SIGHUP or the admin API) loads the config file and every plugin,
//! builds a complete new [`Snapshot`] and only then swaps it in; any error leaves the old
//! snapshot serving and is recorded in [`ReloadStatus`]. Requests keep the snapshot they started
//! with, response hooks included, so old plugin code lives exactly as long as they do.

use crate::config::Config;
use crate::diagnostic::Diagnostics;
use crate::plugin::Runtime;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;
use weir_stdio_bridge::Bridges;

/// What the admin API reports about configuration loads.
#[derive(Debug, Clone)]
pub(crate) struct ReloadStatus {
    /// Increases with every activated snapshot; 1 is the one loaded at start.
    pub(crate) generation: u64,
    pub(crate) activated_at: SystemTime,
    pub(crate) reloads: u64,
    pub(crate) failures: u64,
    /// The errors of the last failed load, if it failed after the last success.
    pub(crate) last_error: Option<(SystemTime, Vec<String>)>,
}

pub(crate) struct Control {
    snapshot: ArcSwap<Snapshot>,
    pub(crate) runtime: Runtime,
    /// The stdio MCP servers bridged to HTTP upstreams, found again by each reload so that
    /// unchanged ones are reused (the snapshots own them).
    bridges: Bridges,
    pub(crate) config_path: PathBuf,
    status: Mutex<ReloadStatus>,
    /// One load at a time; triggers that arrive meanwhile wait for it.
    reload_lock: tokio::sync::Mutex<()>,
    /// Addresses bound at start; changing them needs a restart.
    listeners: Vec<String>,
    shutting_down: watch::Sender<bool>,
    /// Set at SIGTERM (before `shutdown_delay`, if any, and the drain).
    leaving: std::sync::atomic::AtomicBool,
}

impl Control {
    /// The control of a gateway that starts serving `snapshot`, loaded from `config`.
    pub(crate) fn new(
        snapshot: Snapshot,
        runtime: Runtime,
        bridges: Bridges,
        config: &Config,
    ) -> Control {
        Control {
            snapshot: ArcSwap::from_pointee(snapshot),
            runtime,
            bridges,
            config_path: config.path.clone(),
            status: Mutex::new(ReloadStatus {
                generation: 1,
                activated_at: SystemTime::now(),
                reloads: 0,
                failures: 0,
                last_error: None,
            }),
            reload_lock: tokio::sync::Mutex::new(()),
            listeners: listener_addresses(config),
            shutting_down: watch::channel(false).0,
            leaving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Shutdown is coming (`limits.shutdown_delay`): `/ready` answers 503 and HTTP/1.1
    /// responses close their connections, while the listeners still accept.
    pub(crate) fn begin_leaving(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether shutdown is coming or under way: not ready, and no connection kept alive. One
    /// atomic load: every response asks.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flips the shutdown signal: listeners stop accepting, `/ready` answers 503.
    pub(crate) fn begin_shutdown(&self) {
        self.begin_leaving();
        self.shutting_down.send_replace(true);
    }

    /// The snapshot new requests should use.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub(crate) fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }

    /// A receiver that turns `true` when shutdown begins.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }

    /// Loads the config file again and swaps in the new snapshot if everything in it is valid.
    /// `overrides` replaces plugin files by bytes (an admin upload being validated).
    pub(crate) async fn reload(
        &self,
        trigger: &str,
        overrides: &HashMap<String, Vec<u8>>,
    ) -> Result<u64, Diagnostics> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = match Config::load(&self.config_path) {
            Ok(config) => {
                if listener_addresses(&config) != self.listeners {
                    tracing::warn!(
                        "listener addresses changed; they take effect at the next restart"
                    );
                }
                Snapshot::build_with(&config, &self.runtime, &self.bridges, overrides).await
            }
            Err(d) => Err(d),
        };
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(snapshot) => {
                let keep: Vec<String> = snapshot
                    .plugins
                    .values()
                    .map(|p| p.digest.clone())
                    .collect();
                // The old snapshot's stdio bridges that this one did not reuse stop when it is
                // dropped, after its requests in flight.
                self.snapshot.store(Arc::new(snapshot));
                self.runtime
                    .retain_compiled(&keep.iter().map(String::as_str).collect::<Vec<_>>());
                status.generation += 1;
                status.reloads += 1;
                status.activated_at = SystemTime::now();
                status.last_error = None;
                tracing::info!(
                    trigger,
                    generation = status.generation,
                    "configuration reloaded"
                );
                Ok(status.generation)
            }
            Err(d) => {
                status.failures += 1;
                status.last_error = Some((
                    SystemTime::now(),
                    d.0.iter().map(ToString::to_string).collect(),
                ));
                tracing::error!(trigger, errors = %d, "reload refused; the previous configuration keeps serving");
                Err(d)
            }
        }
    }
}

/// The listener addresses a config binds (they need a restart to change).
fn listener_addresses(config: &Config) -> Vec<String> {
    config
        .file
        .listeners
        .iter()
        .map(|l| l.get_ref().address.get_ref().clone())
        .collect()
}
