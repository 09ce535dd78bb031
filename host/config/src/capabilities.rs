//! Configuration of the host capabilities plugins may be granted: the per-plugin grant, the
//! key-value backend and the secrets table.

use super::Millis;
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// What one plugin may use beyond `log`, `context`, `request` and `response`. Everything is
/// denied unless listed here (`capabilities = { kv = "ns", outbound = ["a"], ... }`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityGrants {
    /// `kv`: the namespace this plugin's keys live in. Plugins granted the same namespace share
    /// state; different namespaces never see each other's keys.
    pub kv: Option<Spanned<String>>,
    /// `outbound`: the upstreams (by name) this plugin may call. An explicit empty list grants
    /// the interface with nothing to call (for a plugin that calls out only in some configs).
    pub outbound: Option<Vec<Spanned<String>>>,
    /// `secrets`: the secrets (by name, from `[secrets]`) this plugin may read; an empty list
    /// grants the interface with nothing to read.
    pub secrets: Option<Vec<Spanned<String>>>,
    /// `metrics`: may record counters and histograms.
    #[serde(default)]
    pub metrics: bool,
}

/// `[kv]`: where plugin key-value state lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// `memory` (in this process; the default) or `redis` (shared by every replica).
    pub backend: KvBackendKind,
    /// The Redis server, e.g. `redis://127.0.0.1:6379/0` (`rediss://` for TLS is not supported).
    pub url: Option<Spanned<String>>,
    /// Longest a single Redis command may take before the plugin gets `kv-error::backend`.
    pub timeout: Millis,
    /// Redis: after this many calls in a row failed to reach Redis (refused, timed out, cut),
    /// the circuit breaker opens and calls fail at once...
    pub breaker_failures: u32,
    /// ...for this long; then one call probes Redis: success closes the breaker, failure
    /// opens it again.
    pub breaker_cooldown: Millis,
    /// Memory backend: most keys kept per gateway; a `set` past it evicts expired keys first,
    /// then fails with `kv-error::backend`.
    pub max_keys: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            backend: KvBackendKind::Memory,
            url: None,
            timeout: Millis(std::time::Duration::from_millis(500)),
            breaker_failures: 5,
            breaker_cooldown: Millis(std::time::Duration::from_secs(5)),
            max_keys: 1_000_000,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvBackendKind {
    #[default]
    Memory,
    Redis,
}

/// One entry of `[secrets]`: where the value comes from. Read when the config is activated;
/// a missing variable or file refuses the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the gateway process.
    pub env: Option<String>,
    /// A file (relative to the config file); one trailing newline is removed.
    pub file: Option<PathBuf>,
}
