//! Reused instances for `instances = "pooled"` plugins. A pool belongs to one chain entry (a
//! plugin with one route's config), because its instances have been `init`ed with that config.
//! An instance serves one request at a time and is dropped instead of returned after a failure,
//! after `pool_max_requests` requests, or once its memory grew past `pool_max_memory`.

use super::{HookFailure, LoadedPlugin, PluginInstance};
use std::sync::{Arc, Mutex};

pub(crate) struct InstancePool {
    plugin: Arc<LoadedPlugin>,
    config: Arc<str>,
    idle: Mutex<Vec<PluginInstance>>,
}

impl InstancePool {
    pub(crate) fn new(plugin: Arc<LoadedPlugin>, config: Arc<str>) -> Self {
        InstancePool {
            plugin,
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle instance, or a new one.
    pub(crate) async fn take(&self) -> Result<PluginInstance, HookFailure> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
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
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < s.pool_max_idle
        {
            idle.push(instance);
        }
    }
}

impl InstancePool {
    /// Adds the instance created while validating the config, so the first request is warm.
    pub(crate) fn seed(&self, instance: PluginInstance) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }
}
