//! Reused instances for `instances = "pooled"` plugins. A pool belongs to one chain entry (a
//! plugin with one route's config), because its instances have been `init`ed with that config.
//! An instance serves one request at a time and is dropped instead of returned after a failure,
//! after `pool_max_requests` requests, or once its memory grew past `pool_max_memory`.
//!
//! Idle instances are kept in one shard per CPU, picked by worker index: a worker takes back
//! the instances it used last, still in its core's cache, and the workers do not pass one
//! lock's cache line back and forth on every hook. A worker whose shard is empty borrows from
//! another before it creates an instance.

use super::{HookFailure, LoadedPlugin, PluginInstance};
use std::sync::{Arc, Mutex};

pub(crate) struct InstancePool {
    plugin: Arc<LoadedPlugin>,
    config: Arc<str>,
    shards: Box<[Mutex<Vec<PluginInstance>>]>,
    /// `pool_max_idle` split between the shards (rounded up).
    max_idle_per_shard: usize,
}

impl InstancePool {
    pub(crate) fn new(plugin: Arc<LoadedPlugin>, config: Arc<str>) -> Self {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_idle_per_shard = plugin.settings.pool_max_idle.div_ceil(shards);
        InstancePool {
            plugin,
            config,
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle_per_shard,
        }
    }

    fn own_shard(&self) -> usize {
        crate::worker::current() % self.shards.len()
    }

    /// An idle instance (this worker's, else another's), or a new one.
    pub(crate) async fn take(&self) -> Result<PluginInstance, HookFailure> {
        let own = self.own_shard();
        let n = self.shards.len();
        let idle = self.shards[own]
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .or_else(|| (1..n).find_map(|i| self.shards[(own + i) % n].try_lock().ok()?.pop()));
        match idle {
            Some(instance) => Ok(instance),
            None => PluginInstance::new(&self.plugin, &self.config).await,
        }
    }

    /// Returns an instance after a request, unless it must be recycled.
    pub(crate) fn give_back(&self, mut instance: PluginInstance) {
        instance.uses += 1;
        let s = &self.plugin.settings;
        if instance.poisoned
            || instance.uses >= s.pool_max_requests
            || instance.memory_peak() > s.pool_max_memory
        {
            return;
        }
        if let Ok(mut idle) = self.shards[self.own_shard()].lock()
            && idle.len() < self.max_idle_per_shard
        {
            idle.push(instance);
        }
    }

    /// Adds the instance created while validating the config, so the first request is warm.
    pub(crate) fn seed(&self, instance: PluginInstance) {
        if let Ok(mut idle) = self.shards[self.own_shard()].lock() {
            idle.push(instance);
        }
    }
}
