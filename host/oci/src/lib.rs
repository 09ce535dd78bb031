//! Plugins from OCI registries: `weir plugin push | pull | inspect`, and `oci://` references in
//! `[plugins.NAME] path`, resolved at load (tag → digest, recorded), kept in a local
//! content-addressed cache (`cache.rs`) so the gateway starts when the registry is down, and
//! verified by digest on every read. See `docs/config.md` ("Plugins from a registry").

pub mod artifact;
pub mod cache;
pub mod reference;
pub mod registry;
pub mod signature;

pub use cache::OciCache;
pub use reference::OciRef;
pub use registry::{OciError, Pulled};

/// The OCI content digest of `bytes`: `sha256:` and 64 hex digits. Names components everywhere
/// in Weir (the compiled cache, `/config`, the admin upload) as in registries.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}
