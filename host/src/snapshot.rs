//! The running state as one immutable value: routes with their compiled chains, upstream
//! clients, and limits. It is built and validated completely from a [`Config`] before it serves
//! anything; a request keeps the snapshot it started with until it ends.

use crate::capability::kv::{KvHandle, KvStore};
use crate::capability::outbound::OutboundGrant;
use crate::capability::{Granted, PluginCapabilities};
use crate::chain::{Chain, ChainEntry};
use crate::config::{Config, Limits};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::oci::{OciCache, OciRef};
use crate::plugin::{LoadedPlugin, PluginSettings, Runtime};
use crate::router::{Matcher, Rewrite};
use crate::upstream::Upstream;
use std::collections::HashMap;
use std::sync::Arc;
use weir_stdio_bridge::Bridges;

pub struct Route {
    pub name: Arc<str>,
    /// Its request series, resolved on first use.
    pub(crate) series: Arc<crate::request_metrics::RouteSeries>,
    /// Listener names this route serves on; all when `None`.
    pub listeners: Option<Vec<String>>,
    pub matcher: Matcher,
    pub rewrite: Option<Rewrite>,
    pub upstream: Option<Arc<Upstream>>,
    /// The route's `retry` keys, over its upstream's.
    pub retry: Option<crate::config::RetryConfig>,
    pub max_body_size: u64,
    pub chain: Arc<Chain>,
    /// The format of the gateway's own error answers on this route.
    pub error_format: crate::config::ErrorFormat,
}

pub struct Snapshot {
    pub routes: Vec<Arc<Route>>,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub plugins: HashMap<String, Arc<LoadedPlugin>>,
    pub limits: Limits,
    /// How request paths are made canonical (`[paths]`).
    pub paths: crate::config::PathsConfig,
    /// Whose `x-forwarded-*` claims are believed (`[forwarded]`).
    pub(crate) forwarded: crate::headers::TrustedProxies,
    /// The stdio bridges this snapshot's upstreams point at: held here, so a bridge runs as
    /// long as some snapshot (the active one, or an old one with requests in flight) uses it.
    /// Never read: owning them is the point.
    #[allow(dead_code)]
    pub stdio_bridges: Vec<Arc<weir_stdio_bridge::Bridge>>,
    /// The digest of the configuration text this snapshot was built from (the file watcher's
    /// baseline).
    pub config_digest: String,
    /// The routes as `GET /routes` shows them (see [`crate::describe`]).
    pub described: Arc<serde_json::Value>,
    /// Where the request path reports (metrics, access log, traces).
    pub observer: Arc<crate::observe::Observer>,
}

impl Snapshot {
    /// Loads every plugin and builds every route; returns all errors found.
    /// `bridges` finds (or starts) the stdio MCP servers of `stdio` upstreams.
    pub async fn build(
        config: &Config,
        runtime: &Runtime,
        bridges: &Bridges,
    ) -> Result<Snapshot, Diagnostics> {
        Snapshot::build_with(config, runtime, bridges, &HashMap::new()).await
    }

    /// Like [`Snapshot::build`], with some plugins' bytes given instead of read from their files.
    pub async fn build_with(
        config: &Config,
        runtime: &Runtime,
        bridges: &Bridges,
        overrides: &HashMap<String, Vec<u8>>,
    ) -> Result<Snapshot, Diagnostics> {
        let mut errors = Vec::new();
        let file = &config.file;
        let metrics = runtime.services.requests.clone();
        let (upstreams, stdio_bridges) = build_upstreams(config, bridges, metrics, &mut errors);
        let secrets = crate::capability::secrets::resolve(config).unwrap_or_else(|e| {
            errors.extend(e);
            HashMap::new()
        });
        let kv = kv_store(config, runtime, &mut errors);
        let mut plugins = HashMap::new();
        for (name, p) in &file.plugins {
            let caps = Arc::new(capabilities(
                p.get_ref(),
                &upstreams,
                &secrets,
                kv.as_ref(),
                runtime,
            ));
            match load_plugin(config, runtime, name, p, caps, overrides.get(name)).await {
                Ok(loaded) => {
                    plugins.insert(name.clone(), Arc::new(loaded));
                }
                Err(e) => errors.push(e),
            }
        }
        let mut routes = Vec::new();
        for r in &file.routes {
            routes.push(build_route(config, r, &upstreams, &plugins, &mut errors).await);
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Snapshot {
            routes,
            upstreams,
            plugins,
            limits: file.limits.clone(),
            paths: file.paths,
            forwarded: crate::headers::TrustedProxies::new(&file.forwarded),
            stdio_bridges,
            config_digest: crate::plugin::digest(config.source.as_bytes()),
            described: Arc::new(crate::describe::routes(config)),
            observer: Arc::new(crate::observe::Observer::new(
                runtime.services.requests.clone(),
            )),
        })
    }

    /// The first route, in config order, that takes this request on this listener.
    pub fn route(&self, listener: &str, req: &http::request::Parts) -> Option<&Arc<Route>> {
        let host = crate::router::request_host(&req.uri, &req.headers);
        self.routes.iter().find(|r| {
            r.listeners
                .as_ref()
                .is_none_or(|ls| ls.iter().any(|l| l == listener))
                && r.matcher
                    .matches(&req.method, host, req.uri.path(), &req.headers)
        })
    }
}

/// Resolves an `oci://` plugin reference to its component, through the local cache.
/// `if-not-present`: the cache answers if it has the reference; `always`: the registry is asked
/// (a tag re-resolved) and the cache serves only when the registry cannot be reached. A digest
/// mismatch is never papered over by the cache.
async fn fetch_oci(
    raw: &str,
    policy: crate::config::PullPolicy,
    public_key: Option<std::path::PathBuf>,
) -> Result<(OciRef, crate::oci::Pulled), String> {
    let reference = OciRef::parse(raw).map_err(|e| e.to_string())?;
    let cache = OciCache::new(OciCache::default_root());
    let (reference, pulled) = resolve_oci(reference, policy, &cache).await?;
    if let Some(key_file) = public_key {
        let key = std::fs::read_to_string(&key_file)
            .map_err(|e| format!("cannot read public key {}: {e}", key_file.display()))?;
        let digest = &pulled.manifest_digest;
        let signature = crate::oci::registry::signature(&reference, digest, &cache)
            .await
            .map_err(|e| format!("cannot fetch the signature of {reference}@{digest}: {e}"))?
            .ok_or_else(|| {
                format!("{reference}@{digest} is not signed, and `verify` requires a signature")
            })?;
        crate::oci::signature::verify(&key, digest, &signature).map_err(|e| {
            format!(
                "{reference}@{digest}: {e} ({}); refusing to load it",
                key_file.display()
            )
        })?;
        tracing::info!(%reference, %digest, key = %key_file.display(), "plugin signature verified");
    }
    Ok((reference, pulled))
}

async fn resolve_oci(
    reference: OciRef,
    policy: crate::config::PullPolicy,
    cache: &OciCache,
) -> Result<(OciRef, crate::oci::Pulled), String> {
    if policy == crate::config::PullPolicy::IfNotPresent
        && let Some(hit) = crate::oci::registry::from_cache(&reference, cache)
    {
        return Ok((reference, hit));
    }
    match crate::oci::registry::pull(&reference, cache).await {
        Ok(pulled) => Ok((reference, pulled)),
        Err(e @ crate::oci::OciError::DigestMismatch { .. }) => Err(e.to_string()),
        Err(e) => match crate::oci::registry::from_cache(&reference, cache) {
            Some(hit) => {
                tracing::warn!(reference = %reference, error = %e, manifest = %hit.manifest_digest,
                    "registry unreachable; using the cached plugin");
                Ok((reference, hit))
            }
            None => Err(format!("{e} (and {reference} is not in the local cache)")),
        },
    }
}

/// Resolves one plugin's grant against this snapshot's upstreams, secrets and stores.
fn capabilities(
    plugin: &crate::config::PluginConfig,
    upstreams: &HashMap<String, Arc<Upstream>>,
    secrets: &HashMap<String, Arc<str>>,
    kv: Option<&Arc<KvStore>>,
    runtime: &Runtime,
) -> PluginCapabilities {
    let g = &plugin.capabilities;
    let pick = |names: &Option<Vec<toml::Spanned<String>>>| -> Vec<String> {
        names
            .iter()
            .flatten()
            .map(|n| n.get_ref().clone())
            .collect()
    };
    PluginCapabilities {
        grants: Granted::from_config(g),
        kv: match (&g.kv, kv) {
            (Some(ns), Some(store)) => Some(KvHandle::new(store.clone(), ns.get_ref())),
            _ => None,
        },
        outbound: OutboundGrant::new(
            pick(&g.outbound)
                .into_iter()
                .filter_map(|n| Some((n.clone(), upstreams.get(&n)?.clone())))
                .collect(),
        ),
        metrics: g.metrics.then(|| runtime.services.metrics.clone()),
        secrets: pick(&g.secrets)
            .into_iter()
            .filter_map(|n| Some((n.clone(), secrets.get(&n)?.clone())))
            .collect(),
        calls: runtime.services.requests.clone(),
    }
}

/// Every `[upstreams]` entry as a client (a stdio one through its bridge), with the bridges
/// this snapshot holds.
fn build_upstreams(
    config: &Config,
    bridges: &Bridges,
    metrics: Arc<crate::request_metrics::RequestMetrics>,
    errors: &mut Vec<Diagnostic>,
) -> (
    HashMap<String, Arc<Upstream>>,
    Vec<Arc<weir_stdio_bridge::Bridge>>,
) {
    let file = &config.file;
    let mut upstreams = HashMap::new();
    let mut stdio_bridges = Vec::new();
    for (name, up) in &file.upstreams {
        let u = up.get_ref();
        let ca = u.ca_file.as_ref().map(|p| config.resolve(p.get_ref()));
        let client = match (&u.client_cert, &u.client_key) {
            (Some(c), Some(k)) => Some((config.resolve(c.get_ref()), config.resolve(k.get_ref()))),
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => {
                errors.push(
                    Diagnostic::new("`client_cert` and `client_key` go together")
                        .about(format!("upstream \"{name}\""))
                        .at(config.location(c.span())),
                );
                continue;
            }
        };
        let client = client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let workers = file.runtime.worker_count();
        // A stdio MCP server: its bridge's loopback address is the endpoint.
        let bridged;
        let u = match &u.stdio {
            Some(spec) => match bridges.ensure(name, spec.get_ref(), config.base_dir()) {
                Ok((addr, bridge)) => {
                    stdio_bridges.extend(bridge);
                    bridged = crate::config::UpstreamConfig::bridged(u, addr);
                    &bridged
                }
                Err(e) => {
                    errors.push(
                        Diagnostic::new(e.to_string())
                            .about(format!("upstream \"{name}\""))
                            .at(config.location(spec.span())),
                    );
                    continue;
                }
            },
            None => u,
        };
        let tls = (ca.as_deref(), client);
        match Upstream::new(name, u, &file.limits, tls, workers, metrics.clone()) {
            Ok(u) => {
                upstreams.insert(name.clone(), Arc::new(u));
            }
            Err(e) => errors.push(
                Diagnostic::new(e)
                    .about(format!("upstream \"{name}\""))
                    .at(config.location(up.span())),
            ),
        }
    }
    (upstreams, stdio_bridges)
}

/// The key-value store, when some plugin is granted `kv`.
fn kv_store(
    config: &Config,
    runtime: &Runtime,
    errors: &mut Vec<Diagnostic>,
) -> Option<Arc<KvStore>> {
    let file = &config.file;
    let wants_kv = file
        .plugins
        .values()
        .any(|p| p.get_ref().capabilities.kv.is_some());
    if !wants_kv {
        return None;
    }
    match runtime
        .services
        .kv_store(&file.kv, file.runtime.worker_count())
    {
        Ok(store) => Some(store),
        Err(e) => {
            errors.push(Diagnostic::new(format!(
                "{}: [kv]: {e}",
                config.path.display()
            )));
            None
        }
    }
}

/// Loads one `[plugins]` entry: from the override bytes, an `oci://` reference or its file.
async fn load_plugin(
    config: &Config,
    runtime: &Runtime,
    name: &str,
    p: &toml::Spanned<crate::config::PluginConfig>,
    caps: Arc<PluginCapabilities>,
    override_bytes: Option<&Vec<u8>>,
) -> Result<LoadedPlugin, Diagnostic> {
    let pc = p.get_ref();
    let at = |e: String| {
        Diagnostic::new(e)
            .about(format!("plugin \"{name}\""))
            .at(config.location(pc.path.span()))
    };
    let path = config.resolve(pc.path.get_ref());
    let settings = PluginSettings::from_config(pc);
    let raw = pc.path.get_ref().to_string_lossy();
    let loaded = match (override_bytes, OciRef::is_oci(&raw)) {
        (Some(bytes), _) => runtime.load_bytes(name, &path, bytes, settings, caps),
        (None, true) => {
            let key = pc
                .verify
                .as_ref()
                .map(|v| config.resolve(v.public_key.get_ref()));
            let (reference, pulled) = fetch_oci(&raw, pc.pull, key).await.map_err(at)?;
            tracing::info!(
                plugin = name,
                reference = %reference,
                manifest = %pulled.manifest_digest,
                "plugin from registry"
            );
            let source = std::path::Path::new(raw.as_ref());
            runtime.load_bytes(name, source, &pulled.component, settings, caps)
        }
        (None, false) => runtime.load(name, &path, settings, caps),
    };
    loaded.map_err(|e| at(e.to_string()))
}

/// One route: its matcher and rewrite, and its chain (each entry's `init` run with its config).
async fn build_route(
    config: &Config,
    r: &toml::Spanned<crate::config::RouteConfig>,
    upstreams: &HashMap<String, Arc<Upstream>>,
    plugins: &HashMap<String, Arc<LoadedPlugin>>,
    errors: &mut Vec<Diagnostic>,
) -> Arc<Route> {
    let rc = r.get_ref();
    let name = rc.name.get_ref();
    let mut entries = Vec::new();
    for e in &rc.chain {
        let ec = e.get_ref();
        let plugin_name = ec.plugin.get_ref();
        let Some(plugin) = plugins.get(plugin_name) else {
            continue; // reported by validation or loading
        };
        let json = match (&ec.config, &ec.config_text) {
            (_, Some(text)) => text.get_ref().clone(),
            (Some(table), None) => serde_json::to_string(table).unwrap_or_else(|_| "{}".into()),
            (None, None) => "{}".to_string(),
        };
        match ChainEntry::new(plugin.clone(), json.into(), ec.on_error).await {
            Ok(entry) => entries.push(entry),
            Err(failure) => errors.push(
                Diagnostic::new(failure.to_string())
                    .about(format!("route \"{name}\": plugin \"{plugin_name}\""))
                    .at(config.location(e.span())),
            ),
        }
    }
    let matcher = Matcher::new(&rc.matcher);
    let rewrite = rc
        .rewrite
        .as_ref()
        .and_then(|rw| Rewrite::new(rw, &matcher));
    Arc::new(Route {
        series: Arc::new(crate::request_metrics::RouteSeries::new(
            name.as_str().into(),
        )),
        name: name.as_str().into(),
        listeners: rc
            .listeners
            .as_ref()
            .map(|v| v.iter().map(|l| l.get_ref().clone()).collect()),
        matcher,
        rewrite,
        upstream: rc
            .upstream
            .as_ref()
            .and_then(|u| upstreams.get(u.get_ref()).cloned()),
        retry: rc.retry.as_ref().map(|r| r.get_ref().clone()),
        max_body_size: rc
            .max_body_size
            .unwrap_or(config.file.limits.max_body_size)
            .0,
        chain: Arc::new(Chain::new(entries)),
        error_format: rc.error_format,
    })
}
