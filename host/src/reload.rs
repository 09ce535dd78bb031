//! Reload triggers: a change to the config file or to any plugin file of the active snapshot
//! (polled by `stat`, compared by content when that moved, then debounced), and SIGHUP. The
//! admin API is the third trigger (`admin.rs`). All go through [`Control::reload`], which
//! validates before activating.
//!
//! The watcher's first baseline is what the snapshot was built from (the config text's and the
//! components' digests), not the files as they are when the watcher first looks: a change
//! written between loading and the first poll is a change.

use crate::control::Control;
use crate::snapshot::Snapshot;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What `stat` says about a file: when none of it moved, the content is taken as unchanged
/// and not read again (a file replaced by rename gets a new inode; one rewritten in place a new
/// mtime and ctime).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The content hashes of the watched files, keyed by path and refreshed only when a file's
/// [`Stamp`] moved: polling an idle gateway costs a `stat` per file, not a read of every plugin
/// (a Python component is tens of MiB).
#[derive(Default)]
struct Fingerprints {
    known: HashMap<PathBuf, (Stamp, String)>,
    /// Files read and hashed so far (for tests).
    reads: u64,
}

impl Fingerprints {
    /// Each file with the digest of its content (`None` when it cannot be read, e.g. in the
    /// middle of being replaced, or an `oci://` reference).
    fn of(&mut self, files: Vec<PathBuf>) -> Vec<(PathBuf, Option<String>)> {
        self.known.retain(|path, _| files.contains(path));
        files
            .into_iter()
            .map(|f| {
                let hash = self.hash(&f);
                (f, hash)
            })
            .collect()
    }

    fn hash(&mut self, file: &PathBuf) -> Option<String> {
        let stamp = Stamp::of(&std::fs::metadata(file).ok()?);
        if let Some((known, hash)) = self.known.get(file)
            && *known == stamp
        {
            return Some(hash.clone());
        }
        self.reads += 1;
        let hash = crate::plugin::digest(&std::fs::read(file).ok()?);
        self.known.insert(file.clone(), (stamp, hash.clone()));
        Some(hash)
    }
}

/// Files that make up the running configuration: the config file and every plugin file of the
/// active snapshot.
fn watched(gateway: &Control) -> Vec<PathBuf> {
    loaded(&gateway.current(), &gateway.config_path)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The watched files with the digests `snap` was built from, in [`watched`]'s order (`None` for
/// an `oci://` plugin, which is no file).
fn loaded(snap: &Snapshot, config_path: &std::path::Path) -> Vec<(PathBuf, Option<String>)> {
    let mut plugins: Vec<(PathBuf, Option<String>)> = snap
        .plugins
        .values()
        .map(|p| {
            let file = !crate::oci::OciRef::is_oci(&p.path.to_string_lossy());
            (p.path.clone(), file.then(|| p.digest.clone()))
        })
        .collect();
    plugins.sort();
    let mut files = vec![(config_path.to_path_buf(), Some(snap.config_digest.clone()))];
    files.extend(plugins);
    files
}

/// Polls the files every `interval`; after a change, waits until they stay the same for one more
/// interval (an editor or `cp` may write in several steps), then reloads.
pub(crate) async fn watch_files(gateway: Arc<Control>, interval: Duration) {
    let mut prints = Fingerprints::default();
    // What was loaded, not what the files are now: a change made since counts.
    let mut last = loaded(&gateway.current(), &gateway.config_path);
    loop {
        tokio::time::sleep(interval).await;
        if gateway.is_shutting_down() {
            return;
        }
        let now = prints.of(watched(&gateway));
        if now == last {
            continue;
        }
        tokio::time::sleep(interval / 2).await;
        let settled = prints.of(watched(&gateway));
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
pub(crate) async fn watch_registries(gateway: Arc<Control>, interval: Duration) {
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
pub(crate) async fn on_sighup(gateway: Arc<Control>) {
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

#[cfg(test)]
mod tests {
    use super::{Fingerprints, loaded};
    use crate::snapshot::Snapshot;
    use std::sync::Arc;

    /// A snapshot with no routes or plugins, built from `config_text`.
    fn built_from(config_text: &str) -> Snapshot {
        Snapshot {
            routes: Vec::new(),
            upstreams: Default::default(),
            plugins: Default::default(),
            limits: Default::default(),
            paths: Default::default(),
            forwarded: Default::default(),
            stdio_bridges: Vec::new(),
            config_digest: crate::plugin::digest(config_text.as_bytes()),
            described: Arc::default(),
            observer: Arc::new(crate::observe::Observer::new(Arc::default())),
        }
    }

    /// The race the baseline closes: the config changed after it was read but before the
    /// watcher first looked. Compared with what was loaded, that is a change.
    #[test]
    fn a_change_before_the_first_poll_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "# A\n").expect("write");
        let snap = built_from("# A\n");
        let mut prints = Fingerprints::default();
        assert_eq!(
            prints.of(vec![path.clone()]),
            loaded(&snap, &path),
            "unchanged: no reload"
        );
        std::fs::write(&path, "# B\n").expect("write");
        assert_ne!(
            prints.of(vec![path.clone()]),
            loaded(&snap, &path),
            "changed since loading: reload"
        );
    }

    #[test]
    fn unchanged_files_are_not_read_again_and_changes_are_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.wasm"), dir.path().join("b.wasm"));
        std::fs::write(&a, b"one").expect("write");
        std::fs::write(&b, b"two").expect("write");
        let mut prints = Fingerprints::default();
        let first = prints.of(vec![a.clone(), b.clone()]);
        assert_eq!(prints.reads, 2);
        for _ in 0..10 {
            assert_eq!(prints.of(vec![a.clone(), b.clone()]), first);
        }
        assert_eq!(prints.reads, 2, "idle polls only stat the files");

        // Replaced by rename (a new inode), same length: seen, and only that file is read.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"ONE").expect("write");
        std::fs::rename(&tmp, &a).expect("rename");
        let second = prints.of(vec![a.clone(), b.clone()]);
        assert_ne!(second[0], first[0]);
        assert_eq!(second[1], first[1]);
        assert_eq!(prints.reads, 3);

        // Rewritten in place with the same bytes: read again (the stamp moved), same hash.
        std::fs::write(&b, b"two").expect("write");
        let third = prints.of(vec![a.clone(), b.clone()]);
        assert_eq!(third, second, "same content, no change");

        // A missing file has no hash.
        std::fs::remove_file(&b).expect("remove");
        assert_eq!(prints.of(vec![a.clone(), b.clone()])[1].1, None);
    }
}
