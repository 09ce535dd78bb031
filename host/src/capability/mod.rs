//! Host capabilities beyond the request/response hooks: key-value state, outbound calls,
//! metrics and secrets. Each is denied unless the operator grants it per plugin
//! (`capabilities = { ... }` in `[plugins.NAME]`), and enforced twice:
//!
//! - at **load**: a component that imports a capability interface it was not granted is
//!   refused, naming the plugin and the interface ([`check_imports`]);
//! - at **call** time: a call outside the grant's scope (an upstream or a secret not listed)
//!   returns an error value to the plugin and is logged.
//!
//! The WIT side is `wit/plugin.wit`; `plugin/host.rs` adapts these modules to it.

pub mod events;
pub mod kv;
pub mod metrics;
pub mod outbound;
pub mod secrets;

use crate::config::{CapabilityGrants, KvConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The capability interfaces of `weir:plugin` and the grant key each needs.
const GATED: [(&str, &str); 4] = [
    ("kv", "kv = \"<namespace>\""),
    ("outbound", "outbound = [\"<upstream>\", ...]"),
    ("metrics", "metrics = true"),
    ("secrets", "secrets = [\"<name>\", ...]"),
];

/// Gateway-wide state behind the capabilities, kept across reloads: the key-value store (while
/// `[kv]` is unchanged), the metrics registry and the registry of stdio bridges.
#[derive(Default)]
pub struct Services {
    kv: Mutex<Option<(KvConfig, Arc<kv::KvStore>)>>,
    pub metrics: Arc<metrics::MetricsRegistry>,
    /// The gateway's own series (requests, upstreams, hooks, capability calls).
    pub requests: Arc<crate::request_metrics::RequestMetrics>,
    /// proxy-wasm shared data of filters without a `kv` grant, per plugin name: it outlives
    /// reloads and swaps of the filter, as Envoy's outlives a VM's reconfiguration.
    filter_shared: Mutex<HashMap<String, weir_proxy_wasm::SharedData>>,
}

impl Services {
    /// The key-value store for `config`: the current one if `[kv]` did not change.
    pub fn kv_store(&self, config: &KvConfig, workers: usize) -> Result<Arc<kv::KvStore>, String> {
        let mut current = self.kv.lock().map_err(|_| "kv store lock poisoned")?;
        if let Some((c, store)) = current.as_ref()
            && c == config
        {
            return Ok(store.clone());
        }
        let store = kv::KvStore::new(config, workers)?;
        *current = Some((config.clone(), store.clone()));
        Ok(store)
    }

    /// The in-process shared data of the proxy-wasm plugin `name`.
    pub(crate) fn filter_shared_data(&self, name: &str) -> weir_proxy_wasm::SharedData {
        self.filter_shared
            .lock()
            .map(|mut m| m.entry(name.to_string()).or_default().clone())
            .unwrap_or_default()
    }

    /// The current kv store's circuit breaker state and transitions (for `/metrics`).
    pub(crate) fn kv_breaker(&self) -> (i64, [u64; 3]) {
        self.kv
            .lock()
            .ok()
            .and_then(|current| current.as_ref().map(|(_, store)| store.breaker_stats()))
            .unwrap_or_default()
    }
}

/// What one plugin was granted, resolved against the snapshot it belongs to.
#[derive(Default)]
pub struct PluginCapabilities {
    pub grants: Granted,
    pub kv: Option<kv::KvHandle>,
    pub outbound: outbound::OutboundGrant,
    pub metrics: Option<Arc<metrics::MetricsRegistry>>,
    pub secrets: HashMap<String, Arc<str>>,
    /// Where this plugin's `kv` and `outbound` calls are counted.
    pub calls: Arc<crate::request_metrics::RequestMetrics>,
}

/// Which capability interfaces a plugin may import.
#[derive(Debug, Default, Clone, Copy)]
pub struct Granted {
    pub kv: bool,
    pub outbound: bool,
    pub metrics: bool,
    pub secrets: bool,
}

impl Granted {
    pub fn from_config(g: &CapabilityGrants) -> Granted {
        Granted {
            kv: g.kv.is_some(),
            outbound: g.outbound.is_some(),
            metrics: g.metrics,
            secrets: g.secrets.is_some(),
        }
    }

    fn allows(&self, interface: &str) -> bool {
        match interface {
            "kv" => self.kv,
            "outbound" => self.outbound,
            "metrics" => self.metrics,
            "secrets" => self.secrets,
            _ => true,
        }
    }
}

/// Refuses a component whose imports exceed its grant. `imports` are the component's import
/// names, e.g. `weir:plugin/kv@0.2.0`.
pub fn check_imports<'a>(
    plugin: &str,
    granted: &Granted,
    imports: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let mut refused = Vec::new();
    for import in imports {
        let Some(rest) = import.strip_prefix("weir:plugin/") else {
            continue;
        };
        let interface = rest.split('@').next().unwrap_or(rest);
        if let Some((_, how)) = GATED.iter().find(|(i, _)| *i == interface)
            && !granted.allows(interface)
        {
            refused.push(format!(
                "imports {import} but is not granted `{interface}` (add `capabilities = {{ {how} }}` to [plugins.{plugin}])"
            ));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_beyond_the_grant_are_refused_by_name() {
        let granted = Granted {
            kv: true,
            ..Granted::default()
        };
        let ok = [
            "weir:plugin/kv@0.2.0",
            "weir:plugin/log@0.2.0",
            "wasi:io/streams@0.2.6",
        ];
        assert_eq!(check_imports("p", &granted, ok.into_iter()), Ok(()));
        let err = check_imports(
            "p",
            &granted,
            ["weir:plugin/outbound@0.2.0", "weir:plugin/kv@0.2.0"].into_iter(),
        )
        .expect_err("outbound not granted");
        assert_eq!(
            err,
            "imports weir:plugin/outbound@0.2.0 but is not granted `outbound` (add `capabilities = { outbound = [\"<upstream>\", ...] }` to [plugins.p])"
        );
    }

    #[test]
    fn an_empty_list_grants_the_interface_and_no_key_does_not() {
        let grants = |toml: &str| -> CapabilityGrants { toml::from_str(toml).expect("grants") };
        let empty = Granted::from_config(&grants("secrets = []\noutbound = []"));
        assert!(empty.secrets && empty.outbound);
        let absent = Granted::from_config(&grants("metrics = true"));
        assert!(!absent.secrets && !absent.outbound);
        assert!(check_imports("p", &empty, ["weir:plugin/secrets@0.2.0"].into_iter()).is_ok());
    }
}
