//! What a proxy-wasm filter's host calls reach in Weir: shared data (the `kv` grant, or this
//! process), metrics (the `metrics` grant) and the properties of a request.

use crate::capability::kv::KvError;
use crate::capability::{PluginCapabilities, Services};
use crate::exchange::Exchange;
use std::sync::Arc;
use weir_proxy_wasm::{BoxFuture, MetricKind, MetricSink, SharedStore, Status};

/// Shared data through the plugin's `kv` namespace when it has one (so every replica sees
/// it), else one in-process store per plugin name that outlives reloads and swaps.
pub(super) fn shared_store(
    plugin: &Arc<str>,
    caps: &Arc<PluginCapabilities>,
    services: &Services,
) -> Arc<dyn SharedStore> {
    match caps.kv {
        Some(_) => Arc::new(KvShared { caps: caps.clone() }),
        None => Arc::new(services.filter_shared_data(plugin)),
    }
}

/// Shared data in `kv`: each value stored behind its CAS number (4 bytes, little-endian), and
/// every write a compare-and-swap on the stored bytes, so CAS holds across replicas.
struct KvShared {
    caps: Arc<PluginCapabilities>,
}

/// Prefix of shared-data keys in the plugin's namespace.
const SHARED_PREFIX: &str = "proxy-wasm.shared.";

fn split(raw: &[u8]) -> Option<(Vec<u8>, u32)> {
    let cas = u32::from_le_bytes(raw.get(..4)?.try_into().ok()?);
    Some((raw[4..].to_vec(), cas))
}

impl KvShared {
    async fn read(&self, key: &str) -> Result<(String, Option<Vec<u8>>), KvError> {
        let Some(kv) = self.caps.kv.as_ref() else {
            return Err(KvError::Invalid("no kv grant".into()));
        };
        let key = kv.key(&format!("{SHARED_PREFIX}{key}"))?;
        let raw = kv.store().get(&key).await?;
        Ok((key, raw))
    }

    async fn write(&self, key: &str, value: &[u8], cas: u32) -> Result<Status, KvError> {
        let Some(kv) = self.caps.kv.as_ref() else {
            return Err(KvError::Invalid("no kv grant".into()));
        };
        // An unconditional write still goes through CAS, to number it after the current one.
        for _ in 0..16 {
            let (full, raw) = self.read(key).await?;
            let current = raw.as_deref().and_then(split).map(|(_, c)| c);
            if cas != 0 && current != Some(cas) {
                return Ok(Status::CasMismatch);
            }
            let next = current.unwrap_or(0).wrapping_add(1).max(1);
            let mut stored = next.to_le_bytes().to_vec();
            stored.extend_from_slice(value);
            let swapped = kv
                .store()
                .compare_and_swap(&full, raw.as_deref(), &stored, None)
                .await?;
            if swapped {
                return Ok(Status::Ok);
            }
            if cas != 0 {
                return Ok(Status::CasMismatch);
            }
        }
        Ok(Status::CasMismatch)
    }
}

impl SharedStore for KvShared {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<weir_proxy_wasm::Versioned>, Status>> {
        Box::pin(async move {
            match self.read(key).await {
                Ok((_, raw)) => Ok(raw.as_deref().and_then(split)),
                Err(e) => {
                    tracing::warn!(key, error = %e, "proxy-wasm shared data: kv read failed");
                    Err(Status::InternalFailure)
                }
            }
        })
    }

    fn set(&self, key: String, value: Vec<u8>, cas: u32) -> BoxFuture<'_, Status> {
        Box::pin(async move {
            match self.write(&key, &value, cas).await {
                Ok(status) => status,
                Err(e) => {
                    tracing::warn!(key, error = %e, "proxy-wasm shared data: kv write failed");
                    Status::InternalFailure
                }
            }
        })
    }
}

/// Metrics into the plugin metrics registry when granted (`weir_plugin_<name>`, counters and
/// histograms; gauges have no place there and are kept by the filter only).
pub(super) fn metric_sink(
    plugin: &Arc<str>,
    caps: &Arc<PluginCapabilities>,
) -> Arc<dyn MetricSink> {
    match &caps.metrics {
        Some(registry) => Arc::new(RegistrySink {
            plugin: plugin.clone(),
            registry: registry.clone(),
        }),
        None => Arc::new(weir_proxy_wasm::NoMetrics),
    }
}

struct RegistrySink {
    plugin: Arc<str>,
    registry: Arc<crate::capability::metrics::MetricsRegistry>,
}

/// An Envoy stat name (`a.b-c`) as a Prometheus name (`a_b_c`).
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl MetricSink for RegistrySink {
    fn record(&self, kind: MetricKind, name: &str, value: i64) {
        let name = metric_name(name);
        let recorded = match kind {
            MetricKind::Counter if value > 0 => {
                self.registry
                    .counter_add(&self.plugin, &name, value as u64, Vec::new())
            }
            MetricKind::Histogram => {
                self.registry
                    .histogram_record(&self.plugin, &name, value as f64, Vec::new())
            }
            _ => Ok(()),
        };
        if let Err(e) = recorded {
            tracing::debug!(plugin = &*self.plugin, metric = name, error = %e, "metric dropped");
        }
    }
}

/// The properties a filter reads (`get_property`) of one request, by Envoy's attribute paths,
/// plus Weir's own under `weir.` (the route, the principal, the context's attributes),
/// computed when asked. Integers are 8 bytes little-endian, as Envoy encodes them.
pub(super) struct RequestProperties {
    uri: http::Uri,
    method: http::Method,
    version: http::Version,
    scheme: &'static str,
    client: std::net::SocketAddr,
    authority: Option<String>,
    route: Arc<str>,
    plugin: Arc<str>,
    principal: Option<String>,
    attributes: std::collections::HashMap<String, String>,
}

impl RequestProperties {
    pub(super) fn of(ex: &Exchange, plugin: &Arc<str>) -> Self {
        RequestProperties {
            uri: ex.request.uri.clone(),
            method: ex.request.method.clone(),
            version: ex.request.version,
            scheme: ex.scheme,
            client: ex.client_addr,
            authority: ex.authority.clone(),
            route: ex.route.clone(),
            plugin: plugin.clone(),
            principal: ex.context.principal.clone(),
            attributes: ex.context.attributes.clone(),
        }
    }
}

impl weir_proxy_wasm::PropertySource for RequestProperties {
    fn get(&self, path: &str) -> Option<Vec<u8>> {
        let text = |v: &str| Some(v.as_bytes().to_vec());
        match path {
            "request.path" => text(self.uri.path_and_query().map_or("/", |p| p.as_str())),
            "request.url_path" => text(self.uri.path()),
            "request.query" => text(self.uri.query()?),
            "request.method" => text(self.method.as_str()),
            "request.scheme" => text(self.scheme),
            "request.protocol" => text(&format!("{:?}", self.version)),
            "request.host" => text(self.authority.as_deref()?),
            "source.address" => text(&self.client.to_string()),
            "source.port" => Some(i64::from(self.client.port()).to_le_bytes().to_vec()),
            "route_name" | "xds.route_name" | "weir.route" => text(&self.route),
            "plugin_name" | "xds.plugin_name" => text(&self.plugin),
            "weir.principal" => text(self.principal.as_deref()?),
            _ => text(self.attributes.get(path.strip_prefix(ATTRIBUTES)?)?),
        }
    }
}

/// Where the request context's attributes appear among the properties.
pub(super) const ATTRIBUTES: &str = "weir.attributes.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_become_prometheus_names_and_cas_numbers_split_off() {
        assert_eq!(metric_name("envoy.http-requests"), "envoy_http_requests");
        assert_eq!(split(&[2, 0, 0, 0, b'x']), Some((b"x".to_vec(), 2)));
        assert_eq!(split(&[2, 0]), None);
    }
}
