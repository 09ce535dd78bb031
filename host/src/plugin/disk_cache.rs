//! Compiled components on disk, so a restart with an unchanged plugin set loads machine code
//! instead of compiling it (milliseconds instead of ~50 ms per Rust plugin and 8–10 s per Python
//! or JavaScript one).
//!
//! Files are named by the SHA-256 of the component's bytes and a hash of the engine's
//! compatibility settings (wasmtime version, compiler flags), written beside and renamed into
//! place. **Trust:** loading machine code is only as safe as the directory it comes from; the
//! directory is created owner-only (0700) and must not be writable by anyone the gateway does not
//! trust. wasmtime still checks that a file was produced by a compatible engine, and a file that
//! fails to load is recompiled and replaced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_hash: u64,
}

impl DiskCache {
    /// Opens (creating if needed) the cache directory; `None` if it cannot be used.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Option<DiskCache> {
        if let Err(e) = create_private_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "compiled-plugin cache disabled");
            return None;
        }
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Some(DiskCache {
            dir: dir.to_path_buf(),
            engine_hash: h.finish(),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join(format!("{hex}-{:016x}.cwasm", self.engine_hash))
    }

    /// The cached compilation of the component with this digest, if there is a usable one.
    pub(crate) fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Component::serialize` of a
        // component with this digest, under an owner-only directory that operators must keep
        // trusted (see the module docs); wasmtime rejects files from incompatible engines.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cached plugin; recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component (best effort: a failure only costs a recompile later).
    pub(crate) fn store(&self, digest: &str, component: &Component) {
        let path = self.path(digest);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot write compiled plugin to the cache");
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The default cache directory: `$XDG_CACHE_HOME/weir/compiled`, else `~/.cache/weir/compiled`,
/// else a directory under the system temp dir.
pub(crate) fn default_dir() -> PathBuf {
    weir_config::cache_root().join("compiled")
}
