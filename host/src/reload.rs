//! Reload triggers: a change to the config file or to any plugin file of the active snapshot
//! (polled and compared by content, then debounced), and SIGHUP. The admin API is the third
//! trigger (`admin.rs`). All go through [`Control::reload`], which validates before activating.

use crate::control::Control;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Files that make up the running configuration, with a hash of their content (`None` when a
/// file cannot be read, e.g. in the middle of being replaced).
fn fingerprint(gateway: &Control) -> Vec<(PathBuf, Option<u64>)> {
    let mut files = vec![gateway.config_path.clone()];
    let mut plugins: Vec<PathBuf> = gateway
        .current()
        .plugins
        .values()
        .map(|p| p.path.clone())
        .collect();
    plugins.sort();
    files.extend(plugins);
    files
        .into_iter()
        .map(|f| {
            let hash = std::fs::read(&f).ok().map(|bytes| {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            });
            (f, hash)
        })
        .collect()
}

/// Polls the files every `interval`; after a change, waits until they stay the same for one more
/// interval (an editor or `cp` may write in several steps), then reloads.
pub async fn watch_files(gateway: Arc<Control>, interval: Duration) {
    let mut last = fingerprint(&gateway);
    loop {
        tokio::time::sleep(interval).await;
        if gateway.is_shutting_down() {
            return;
        }
        let now = fingerprint(&gateway);
        if now == last {
            continue;
        }
        tokio::time::sleep(interval / 2).await;
        let settled = fingerprint(&gateway);
        if settled != now {
            continue; // still being written; look again next round
        }
        let _ = gateway.reload("file change", &HashMap::new()).await;
        // Accepted or refused, the next reload waits for the next change. If the reload changed
        // the set of plugin files, the next poll differs and reloads once more (cheap: unchanged
        // components come from the compiled cache).
        last = settled;
    }
}

/// Asks the registries every `interval` which component the tags of `oci://` plugins with
/// `pull = "always"` point to; when one moved, reloads (the reload pulls, verifies and swaps it
/// like any other change). An unreachable registry is logged and retried next round.
pub async fn watch_registries(gateway: Arc<Control>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if gateway.is_shutting_down() {
            return;
        }
        let snap = gateway.current();
        for plugin in snap.plugins.values() {
            if plugin.settings.pull != crate::config::PullPolicy::Always {
                continue;
            }
            let raw = plugin.path.to_string_lossy();
            let Ok(reference) = crate::oci::OciRef::parse(&raw) else {
                continue;
            };
            if reference.tag.is_none() || reference.digest.is_some() {
                continue;
            }
            match crate::oci::registry::component_digest(&reference).await {
                Ok(digest) if digest != plugin.digest => {
                    tracing::info!(plugin = &*plugin.name, %reference, from = %plugin.digest, to = %digest,
                        "registry tag moved; reloading");
                    let _ = gateway.reload("registry tag moved", &HashMap::new()).await;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(plugin = &*plugin.name, error = %e, "registry poll failed")
                }
            }
        }
    }
}

/// Reloads on every SIGHUP.
pub async fn on_sighup(gateway: Arc<Control>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = gateway.reload("SIGHUP", &HashMap::new()).await;
        }
    }
    #[cfg(not(unix))]
    drop(gateway);
}
