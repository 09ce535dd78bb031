//! The `kv` capability: namespaced key-value state with TTLs, atomic increment and
//! compare-and-swap, on one of two backends chosen in `[kv]`: in-process memory (the default)
//! or Redis (shared by every gateway replica). Both give the same answers for the same calls;
//! `tests/e2e/capabilities.rs` runs the same plugin on both.
//!
//! Keys reach the backend as `<namespace>:<key>`: the namespace comes from the plugin's grant,
//! never from the plugin, so plugins cannot read each other's state.

mod breaker;
mod memory;
mod redis;

use crate::config::{KvBackendKind, KvConfig};
use std::sync::Arc;
use std::time::Duration;

/// Longest key a plugin may use, in bytes (before the namespace is added).
pub(crate) const MAX_KEY: usize = 1024;
/// Largest value a plugin may store, in bytes.
pub(crate) const MAX_VALUE: usize = 1 << 20;

/// Why a key-value call failed; mirrors `kv-error` in the WIT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("kv is not granted to this plugin")]
    NotGranted,
    #[error("{0}")]
    Invalid(String),
    #[error("value is not an integer")]
    NotANumber,
    #[error("kv backend failed: {0}")]
    Backend(String),
}

/// A key-value backend shared by all plugins of a gateway. Kept across reloads as long as the
/// `[kv]` table does not change, so counters and caches survive a reload.
pub enum KvStore {
    Memory(memory::MemoryKv),
    Redis(Box<redis::RedisKv>),
}

impl KvStore {
    /// Builds the backend `config` describes. Redis connects lazily, on first use.
    pub fn new(config: &KvConfig, workers: usize) -> Result<Arc<KvStore>, String> {
        Ok(Arc::new(match config.backend {
            KvBackendKind::Memory => KvStore::Memory(memory::MemoryKv::new(config.max_keys)),
            KvBackendKind::Redis => {
                let url = config.url.as_ref().map(|u| u.get_ref().as_str());
                KvStore::Redis(Box::new(redis::RedisKv::new(
                    config,
                    url.unwrap_or(""),
                    workers,
                )?))
            }
        }))
    }

    /// The Redis circuit breaker's state (0 closed, 1 open, 2 half-open) and the times it
    /// entered each; all zero for the memory store.
    pub(crate) fn breaker_stats(&self) -> (i64, [u64; 3]) {
        match self {
            KvStore::Memory(_) => (0, [0; 3]),
            KvStore::Redis(r) => r.breaker_stats(),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            KvStore::Memory(m) => Ok(m.get(key)),
            KvStore::Redis(r) => r.get(key).await,
        }
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        match self {
            KvStore::Memory(m) => m.set(key, value, ttl),
            KvStore::Redis(r) => r.set(key, value, ttl).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        match self {
            KvStore::Memory(m) => Ok(m.delete(key)),
            KvStore::Redis(r) => r.delete(key).await,
        }
    }

    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        match self {
            KvStore::Memory(m) => m.increment(key, delta, ttl),
            KvStore::Redis(r) => r.increment(key, delta, ttl).await,
        }
    }

    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        match self {
            KvStore::Memory(m) => m.compare_and_swap(key, expected, new, ttl),
            KvStore::Redis(r) => r.compare_and_swap(key, expected, new, ttl).await,
        }
    }
}

/// A plugin's view of the store: its namespace, checked arguments.
pub struct KvHandle {
    store: Arc<KvStore>,
    namespace: String,
}

impl KvHandle {
    pub fn new(store: Arc<KvStore>, namespace: &str) -> KvHandle {
        KvHandle {
            store,
            namespace: namespace.to_string(),
        }
    }

    pub(crate) fn store(&self) -> &KvStore {
        &self.store
    }

    /// The backend key for a plugin's key, after checking it.
    pub(crate) fn key(&self, key: &str) -> Result<String, KvError> {
        if key.is_empty() {
            return Err(KvError::Invalid("empty key".into()));
        }
        if key.len() > MAX_KEY {
            return Err(KvError::Invalid(format!(
                "key of {} bytes is longer than {MAX_KEY}",
                key.len()
            )));
        }
        Ok(format!("{}:{key}", self.namespace))
    }
}

/// Checks a value's size and turns a WIT time to live into a duration.
pub(crate) fn check(value: &[u8], ttl_ms: Option<u64>) -> Result<Option<Duration>, KvError> {
    if value.len() > MAX_VALUE {
        return Err(KvError::Invalid(format!(
            "value of {} bytes is larger than {MAX_VALUE}",
            value.len()
        )));
    }
    match ttl_ms {
        Some(0) => Err(KvError::Invalid("ttl-ms must be at least 1".into())),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
        None => Ok(None),
    }
}

/// Parses the decimal text `increment` stores.
fn parse_counter(bytes: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(KvError::NotANumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Arc<KvStore> {
        KvStore::new(&KvConfig::default(), 1).expect("memory store")
    }

    #[tokio::test]
    async fn memory_semantics() {
        let kv = store();
        assert_eq!(kv.get("a").await, Ok(None));
        kv.set("a", b"1", None).await.expect("set");
        assert_eq!(kv.get("a").await, Ok(Some(b"1".to_vec())));
        assert_eq!(kv.increment("a", 4, None).await, Ok(5));
        assert_eq!(kv.get("a").await, Ok(Some(b"5".to_vec())));
        kv.set("s", b"x", None).await.expect("set");
        assert_eq!(kv.increment("s", 1, None).await, Err(KvError::NotANumber));
        assert_eq!(kv.compare_and_swap("c", None, b"v1", None).await, Ok(true));
        assert_eq!(kv.compare_and_swap("c", None, b"v2", None).await, Ok(false));
        assert_eq!(
            kv.compare_and_swap("c", Some(b"v0"), b"v2", None).await,
            Ok(false)
        );
        assert_eq!(
            kv.compare_and_swap("c", Some(b"v1"), b"v2", None).await,
            Ok(true)
        );
        assert_eq!(kv.get("c").await, Ok(Some(b"v2".to_vec())));
        assert_eq!(kv.delete("c").await, Ok(true));
        assert_eq!(kv.delete("c").await, Ok(false));
    }

    #[tokio::test]
    async fn memory_ttl_expires_and_increment_keeps_first_ttl() {
        let kv = store();
        kv.set("t", b"v", Some(Duration::from_millis(30)))
            .await
            .expect("set");
        assert_eq!(
            kv.increment("n", 1, Some(Duration::from_millis(30))).await,
            Ok(1)
        );
        // A later increment's ttl does not extend the window.
        assert_eq!(
            kv.increment("n", 1, Some(Duration::from_secs(60))).await,
            Ok(2)
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(kv.get("t").await, Ok(None));
        assert_eq!(kv.get("n").await, Ok(None));
        assert_eq!(kv.increment("n", 1, None).await, Ok(1));
    }

    #[test]
    fn keys_are_namespaced_and_checked() {
        let h = KvHandle::new(store(), "ns");
        assert_eq!(h.key("k"), Ok("ns:k".to_string()));
        assert!(matches!(h.key(""), Err(KvError::Invalid(_))));
        assert!(matches!(h.key(&"k".repeat(1025)), Err(KvError::Invalid(_))));
        assert!(matches!(check(b"v", Some(0)), Err(KvError::Invalid(_))));
        assert!(matches!(
            check(&vec![0; MAX_VALUE + 1], None),
            Err(KvError::Invalid(_))
        ));
    }
}
