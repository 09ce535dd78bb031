//! The in-process key-value backend: a sharded concurrent map (dashmap) whose per-key entry
//! locks make increment and compare-and-swap atomic. Expired keys read as absent and are swept
//! when the map grows.

use super::{KvError, parse_counter};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Value {
    bytes: Vec<u8>,
    expires: Option<Instant>,
}

impl Value {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

pub struct MemoryKv {
    map: DashMap<String, Value>,
    max_keys: usize,
    /// Writes since the last sweep of expired keys.
    writes: AtomicU64,
}

/// Sweep expired keys every this many writes, so keys nobody reads again do not pile up.
const SWEEP_EVERY: u64 = 65_536;

impl MemoryKv {
    pub(crate) fn new(max_keys: usize) -> MemoryKv {
        MemoryKv {
            map: DashMap::new(),
            max_keys: max_keys.max(1),
            writes: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let v = self.map.get(key)?;
        v.live(now).then(|| v.bytes.clone())
    }

    /// Makes room for one more key: sweeps now and then, and always when full.
    fn before_insert(&self) -> Result<(), KvError> {
        let writes = self.writes.fetch_add(1, Ordering::Relaxed);
        if writes % SWEEP_EVERY == SWEEP_EVERY - 1 || self.map.len() >= self.max_keys {
            let now = Instant::now();
            self.map.retain(|_, v| v.live(now));
        }
        if self.map.len() >= self.max_keys {
            return Err(KvError::Backend(format!(
                "memory store is full ({} keys; raise [kv] max_keys)",
                self.max_keys
            )));
        }
        Ok(())
    }

    pub(crate) fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let value = Value {
            bytes: value.to_vec(),
            expires: ttl.and_then(|t| crate::deadline::expiry(Instant::now(), t)),
        };
        if let Some(mut existing) = self.map.get_mut(key) {
            *existing = value;
            return Ok(());
        }
        self.before_insert()?;
        self.map.insert(key.to_string(), value);
        Ok(())
    }

    pub(crate) fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        self.map.remove(key).is_some_and(|(_, v)| v.live(now))
    }

    pub(crate) fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        let now = Instant::now();
        if !self.map.contains_key(key) {
            self.before_insert()?;
        }
        match self.map.entry(key.to_string()) {
            Entry::Occupied(mut e) if e.get().live(now) => {
                let n = parse_counter(&e.get().bytes)?
                    .checked_add(delta)
                    .ok_or_else(|| KvError::Invalid("counter overflow".into()))?;
                e.get_mut().bytes = n.to_string().into_bytes();
                Ok(n)
            }
            Entry::Occupied(mut e) => {
                *e.get_mut() = Value {
                    bytes: delta.to_string().into_bytes(),
                    expires: ttl.and_then(|t| crate::deadline::expiry(now, t)),
                };
                Ok(delta)
            }
            Entry::Vacant(e) => {
                e.insert(Value {
                    bytes: delta.to_string().into_bytes(),
                    expires: ttl.and_then(|t| crate::deadline::expiry(now, t)),
                });
                Ok(delta)
            }
        }
    }

    pub(crate) fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let now = Instant::now();
        if !self.map.contains_key(key) {
            self.before_insert()?;
        }
        let value = Value {
            bytes: new.to_vec(),
            expires: ttl.and_then(|t| crate::deadline::expiry(now, t)),
        };
        match (self.map.entry(key.to_string()), expected) {
            (Entry::Occupied(mut e), Some(want)) if e.get().live(now) && e.get().bytes == want => {
                *e.get_mut() = value;
                Ok(true)
            }
            (Entry::Occupied(mut e), None) if !e.get().live(now) => {
                *e.get_mut() = value;
                Ok(true)
            }
            (Entry::Vacant(e), None) => {
                e.insert(value);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
