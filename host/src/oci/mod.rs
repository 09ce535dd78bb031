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
