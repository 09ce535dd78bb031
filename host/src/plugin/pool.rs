//! Reused instances for `instances = "pooled"` plugins. A pool belongs to one chain entry (a
//! plugin with one route's config), because its instances have been `init`ed with that config.
//! An instance serves one request at a time and is dropped instead of returned after a failure,
//! after `pool_max_requests` requests, or once its memory grew past `pool_max_memory`.

use super::{HookFailure, LoadedPlugin, PluginInstance};
use std::sync::{Arc, Mutex};

pub struct InstancePool {
    plugin: Arc<LoadedPlugin>,
    config: Arc<str>,
    idle: Mutex<Vec<PluginInstance>>,
}

impl InstancePool {
    pub fn new(plugin: Arc<LoadedPlugin>, config: Arc<str>) -> Self {
        InstancePool {
            plugin,
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle instance, or a new one.
    pub async fn take(&self) -> Result<PluginInstance, HookFailure> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(instance) => Ok(instance),
            None => PluginInstance::new(&self.plugin, &self.config).await,
        }
    }

    /// Returns an instance after a request, unless it must be recycled.
    pub fn give_back(&self, mut instance: PluginInstance) {
        instance.uses += 1;
        let s = &self.plugin.settings;
        if instance.poisoned
            || instance.uses >= s.pool_max_requests
            || instance.memory_peak() > s.pool_max_memory
        {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < s.pool_max_idle
        {
            idle.push(instance);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }
}

impl InstancePool {
    /// Adds the instance created while validating the config, so the first request is warm.
    pub fn seed(&self, instance: PluginInstance) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }
}
