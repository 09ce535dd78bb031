//! The local content-addressed store of pulled plugins: `blobs/sha256/<hex>` (components and
//! manifests, verified against their digest on the way in) and `tags/<registry>/<repo>/<tag>`
//! (the manifest digest a tag last resolved to), so the gateway starts from here when the
//! registry is down. Compiled code is cached separately, by component digest
//! (`plugin/disk_cache.rs`), so a pulled component is compiled once too.

use std::path::{Path, PathBuf};

pub struct OciCache {
    root: PathBuf,
}

fn hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl OciCache {
    /// The default place: `$XDG_CACHE_HOME/weir/oci` or `~/.cache/weir/oci`.
    pub fn default_root() -> PathBuf {
        weir_config::cache_root().join("oci")
    }

    pub fn new(root: PathBuf) -> OciCache {
        OciCache { root }
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        Some(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    /// The blob with this digest, re-verified.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.blob_path(digest)?).ok()?;
        (crate::digest(&bytes) == digest).then_some(bytes)
    }

    /// Stores `bytes` under its own digest and returns the digest.
    pub fn put_blob(&self, bytes: &[u8]) -> std::io::Result<String> {
        let digest = crate::digest(bytes);
        if let Some(path) = self.blob_path(&digest) {
            write_atomically(&path, bytes)?;
        }
        Ok(digest)
    }

    fn tag_path(&self, registry: &str, repository: &str, tag: &str) -> PathBuf {
        self.root
            .join("tags")
            .join(registry.replace(':', "_"))
            .join(repository)
            .join(tag)
    }

    /// The manifest digest `tag` resolved to last time.
    pub fn tag(&self, registry: &str, repository: &str, tag: &str) -> Option<String> {
        let s = std::fs::read_to_string(self.tag_path(registry, repository, tag)).ok()?;
        let s = s.trim().to_string();
        hex_of(&s).is_some().then_some(s)
    }

    pub fn put_tag(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> std::io::Result<()> {
        write_atomically(&self.tag_path(registry, repository, tag), digest.as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_and_tags_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OciCache::new(dir.path().to_path_buf());
        let d = cache.put_blob(b"component").expect("put");
        assert_eq!(cache.blob(&d).as_deref(), Some(&b"component"[..]));
        // A corrupted blob is not served.
        let path = cache.blob_path(&d).expect("path");
        std::fs::write(&path, b"tampered").expect("write");
        assert_eq!(cache.blob(&d), None);
        cache
            .put_tag("127.0.0.1:5000", "weir/p", "1.0", &d)
            .expect("tag");
        assert_eq!(cache.tag("127.0.0.1:5000", "weir/p", "1.0"), Some(d));
        assert_eq!(cache.tag("127.0.0.1:5000", "weir/p", "2.0"), None);
    }
}
