//! The plugin runtime: one wasmtime `Engine` with the pooling allocator, components compiled once
//! and pre-instantiated, and instances that run one request's hooks under a memory limit and a
//! per-hook CPU deadline (epoch interruption).

mod bindings;
mod budget;
mod capabilities;
mod disk_cache;
mod filter_head;
mod filter_services;
mod host;
mod instance;
mod output;
mod pool;
mod proxy_wasm;

pub(crate) use bindings::{
    BodyAccess, BodyEnd, Direction, LocalResponse, PluginInfo, RequestDecision, ResponseDecision,
};
pub(crate) use host::HostState;
pub use instance::{HookFailure, PluginInstance};
pub(crate) use pool::InstancePool;

use crate::capability::{PluginCapabilities, Services};
use crate::config::{
    FilterBody, InstancePolicy, Metering, PluginConfig, PluginKind, RuntimeConfig,
};
use bindings::PluginPre;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances: where a running call checks its budget and yields.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Advances the engine's epoch every tick, until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

/// Errors loading a plugin; each becomes a diagnostic naming the plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Wasm component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },
    #[error("{path} does not implement the weir:plugin/plugin@0.2.0 world: {reason}")]
    WrongWorld { path: PathBuf, reason: String },
    #[error("{path} {reason}")]
    NotGranted { path: PathBuf, reason: String },
    #[error("{path} is not a proxy-wasm filter: {reason}")]
    NotAFilter { path: PathBuf, reason: String },
    #[error(
        "{path} is not a Wasm component (it is a core module) nor a proxy-wasm filter: {reason}"
    )]
    NeitherKind { path: PathBuf, reason: String },
    #[error("{path} is {found}, but the plugin says kind = \"{said}\"")]
    WrongKind {
        path: PathBuf,
        found: &'static str,
        said: &'static str,
    },
}

/// The shared Wasm engine and linker, and the compiled components by content digest (so a
/// reload recompiles only plugins whose bytes changed).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    compiled: Arc<Mutex<HashMap<String, Component>>>,
    /// Compiled proxy-wasm filters (core modules), likewise.
    modules: Arc<Mutex<HashMap<String, wasmtime::Module>>>,
    stats: Arc<Mutex<HashMap<String, Arc<PluginStats>>>>,
    disk: Option<Arc<disk_cache::DiskCache>>,
    metering: Metering,
    /// Capability state that outlives reloads (key-value store, metrics).
    pub(crate) services: Arc<Services>,
}

/// Counters of one plugin, kept across reloads while its bytes stay the same.
#[derive(Debug, Default)]
pub(crate) struct PluginStats {
    pub(crate) instantiations: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// When recent failures happened, for the health verdict.
    recent: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// The last failures' reasons, for the admin API: (when, route, reason).
    reasons: Mutex<std::collections::VecDeque<(std::time::SystemTime, String, String)>>,
}

/// Failure reasons kept per plugin.
const REASONS: usize = 10;

impl PluginStats {
    /// Records a failure on `route` and why; returns true if this one made the plugin
    /// unhealthy.
    pub(crate) fn record_failure(&self, health: &HealthPolicy, route: &str, why: String) -> bool {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut reasons) = self.reasons.lock() {
            if reasons.len() == REASONS {
                reasons.pop_front();
            }
            reasons.push_back((std::time::SystemTime::now(), route.to_string(), why));
        }
        let Ok(mut recent) = self.recent.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        let was_healthy = Self::prune(&mut recent, now, health) <= health.max_failures;
        recent.push_back(now);
        was_healthy && recent.len() > health.max_failures
    }

    /// The last failures, newest first: (when, route, reason).
    pub(crate) fn recent_reasons(&self) -> Vec<(std::time::SystemTime, String, String)> {
        self.reasons
            .lock()
            .map_or(Vec::new(), |r| r.iter().rev().cloned().collect())
    }

    /// Failures within the health window.
    pub(crate) fn recent_failures(&self, health: &HealthPolicy) -> usize {
        self.recent.lock().map_or(0, |mut r| {
            Self::prune(&mut r, std::time::Instant::now(), health)
        })
    }

    fn prune(
        recent: &mut std::collections::VecDeque<std::time::Instant>,
        now: std::time::Instant,
        health: &HealthPolicy,
    ) -> usize {
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > health.window)
        {
            recent.pop_front();
        }
        recent.len()
    }
}

/// A plugin is reported unhealthy (admin API, log) after more than `max_failures` failures
/// (traps, timeouts, memory limit, invalid decisions) within `window`. Requests are still
/// handled per `on_error`; the verdict is for operators.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    pub max_failures: usize,
    pub window: Duration,
}

/// The hex SHA-256 of a component's bytes (its OCI digest).
pub use weir_oci::digest;

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        let metered = config.metering != Metering::Off;
        cfg.epoch_interruption(metered);
        cfg.consume_fuel(config.metering == Metering::Fuel);
        // Guest code runs on fiber stacks; wasm's own stack limit stays at the default 512 KiB.
        cfg.async_stack_size(1 << 20);
        let n = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // Guests built by componentize-py have 14 core instances per component; Rust ones 3.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            // Recycling a slot: where the kernel can tell which pages were touched (PAGEMAP_SCAN),
            // reset just those with memset instead of madvise + page faults on the next use;
            // batch the remaining decommits to save syscalls and TLB shootdowns.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(2 << 20)
            // Tables likewise (a component's are a few KiB): reset with memset, not madvise and
            // page faults.
            .table_keep_resident(64 << 10)
            .decommit_batch_size(16)
            // Slots keep a module's pages warm for its next instance. Bounded, so that swapping
            // plugins (every swap is a new module) does not grow RSS by a slot per swap.
            .max_unused_warm_slots(16)
            .max_memory_size(1 << 30);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;

        if metered {
            start_epoch_ticker(&engine)?;
        }

        let disk = match &config.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => disk_cache::DiskCache::open(dir, &engine).map(Arc::new),
            None => disk_cache::DiskCache::open(&disk_cache::default_dir(), &engine).map(Arc::new),
        };
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            compiled: Arc::new(Mutex::new(HashMap::new())),
            modules: Arc::new(Mutex::new(HashMap::new())),
            stats: Arc::new(Mutex::new(HashMap::new())),
            disk,
            metering: config.metering,
            services: Arc::new(Services::default()),
        })
    }

    /// Compiles and pre-instantiates a component, checking it targets the plugin world.
    pub fn load(
        &self,
        name: &str,
        path: &Path,
        settings: PluginSettings,
        caps: Arc<PluginCapabilities>,
    ) -> Result<LoadedPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_bytes(name, path, &bytes, settings, caps)
    }

    pub fn load_bytes(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        settings: PluginSettings,
        caps: Arc<PluginCapabilities>,
    ) -> Result<LoadedPlugin, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotAComponent {
                path: path.to_path_buf(),
                reason: "no Wasm header (\\0asm)".into(),
            });
        }
        let core = weir_proxy_wasm::is_core_module(bytes);
        let wrong_kind = |found, said| LoadError::WrongKind {
            path: path.to_path_buf(),
            found,
            said,
        };
        match (settings.kind, core) {
            (Some(PluginKind::Component), true) => {
                return Err(wrong_kind("a core module", "component"));
            }
            (Some(PluginKind::ProxyWasm), false) => {
                return Err(wrong_kind("a component", "proxy-wasm"));
            }
            (_, true) => return self.load_filter(name, path, bytes, settings, caps),
            _ => {}
        }
        let digest = digest(bytes);
        let cached = self
            .compiled
            .lock()
            .ok()
            .and_then(|c| c.get(&digest).cloned());
        let cached = cached.or_else(|| {
            let c = self.disk.as_ref()?.load(&self.engine, &digest)?;
            tracing::info!(plugin = name, %digest, "loaded compiled plugin from the cache");
            Some(c)
        });
        let component = match cached {
            Some(c) => c,
            None => {
                tracing::info!(plugin = name, path = %path.display(), %digest, "compiling plugin");
                let c =
                    Component::new(&self.engine, bytes).map_err(|e| LoadError::NotAComponent {
                        path: path.to_path_buf(),
                        reason: format!("{e:#}"),
                    })?;
                if let Some(disk) = &self.disk {
                    disk.store(&digest, &c);
                }
                c
            }
        };
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(digest.clone(), component.clone());
        }
        // Deny by default: imports beyond the grant refuse the plugin before anything runs.
        let ty = component.component_type();
        crate::capability::check_imports(
            name,
            &caps.grants,
            ty.imports(&self.engine).map(|(import, _)| import),
        )
        .map_err(|reason| LoadError::NotGranted {
            path: path.to_path_buf(),
            reason,
        })?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = PluginPre::new(pre).map_err(wrong_world)?;
        Ok(self.loaded(name, path, Code::Component(pre), settings, caps, digest))
    }

    /// Compiles a proxy-wasm filter (a core module) and links the ABI's host calls.
    fn load_filter(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        settings: PluginSettings,
        caps: Arc<PluginCapabilities>,
    ) -> Result<LoadedPlugin, LoadError> {
        let digest = digest(bytes);
        let cached = self
            .modules
            .lock()
            .ok()
            .and_then(|c| c.get(&digest).cloned());
        let module = match cached {
            Some(m) => m,
            None => {
                tracing::info!(plugin = name, path = %path.display(), %digest, "compiling proxy-wasm filter");
                wasmtime::Module::new(&self.engine, bytes).map_err(|e| LoadError::NotAFilter {
                    path: path.to_path_buf(),
                    reason: format!("{e:#}"),
                })?
            }
        };
        if let Ok(mut cache) = self.modules.lock() {
            cache.insert(digest.clone(), module.clone());
        }
        let said_filter = settings.kind == Some(PluginKind::ProxyWasm);
        let code = proxy_wasm::FilterCode::new(name, module, &settings, &caps, &self.services)
            .map_err(|reason| match said_filter {
                true => LoadError::NotAFilter {
                    path: path.to_path_buf(),
                    reason,
                },
                // Most likely a component that was never made one: say both.
                false => LoadError::NeitherKind {
                    path: path.to_path_buf(),
                    reason,
                },
            })?;
        let code = Code::Filter(Arc::new(code));
        Ok(self.loaded(name, path, code, settings, caps, digest))
    }

    fn loaded(
        &self,
        name: &str,
        path: &Path,
        code: Code,
        settings: PluginSettings,
        caps: Arc<PluginCapabilities>,
        digest: String,
    ) -> LoadedPlugin {
        LoadedPlugin {
            series: crate::request_metrics::HookSeries::new(name.into()),
            name: name.into(),
            path: path.to_path_buf(),
            code,
            settings,
            caps,
            engine: self.engine.clone(),
            metering: self.metering,
            stats: self
                .stats
                .lock()
                .map(|mut s| s.entry(format!("{name}@{digest}")).or_default().clone())
                .unwrap_or_default(),
            digest,
        }
    }

    /// Drops compiled components no longer used by `keep` (the active snapshot's digests), so
    /// old code is freed once no request holds it.
    pub fn retain_compiled(&self, keep: &[&str]) {
        if let Ok(mut cache) = self.compiled.lock() {
            cache.retain(|d, _| keep.contains(&d.as_str()));
        }
        if let Ok(mut cache) = self.modules.lock() {
            cache.retain(|d, _| keep.contains(&d.as_str()));
        }
        if let Ok(mut stats) = self.stats.lock() {
            stats.retain(|k, _| k.split_once('@').is_some_and(|(_, d)| keep.contains(&d)));
        }
    }
}

/// Per-plugin limits and instance policy, from `[plugins.NAME]`.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub policy: InstancePolicy,
    /// For `oci://` plugins: when the registry is asked.
    pub pull: crate::config::PullPolicy,
    pub health: HealthPolicy,
    pub memory_limit: usize,
    /// CPU time per call on the request path (a hook, or instantiation plus `init`).
    pub hook_budget: Duration,
    /// CPU time for instantiation plus `init` while a configuration loads.
    pub init_budget: Duration,
    /// Wall-clock backstop per call on the request path.
    pub hook_timeout: Duration,
    pub pool_max_requests: u64,
    pub pool_max_memory: usize,
    pub pool_max_idle: usize,
    /// What the operator said the file is (`None`: detected from its bytes).
    pub kind: Option<PluginKind>,
    /// How a proxy-wasm filter is run.
    pub filter: FilterSettings,
}

/// The `[plugins.NAME]` keys of proxy-wasm filters.
#[derive(Debug, Clone, Default)]
pub struct FilterSettings {
    pub body: FilterBody,
    pub body_limit: usize,
    pub vm_config: String,
    pub root_id: String,
}

impl Default for PluginSettings {
    /// The defaults of a `[plugins.NAME]` table.
    fn default() -> Self {
        PluginSettings::from_config(&PluginConfig::new(PathBuf::new()))
    }
}

impl PluginSettings {
    pub(crate) fn from_config(c: &PluginConfig) -> Self {
        PluginSettings {
            policy: c.instances,
            pull: c.pull,
            health: HealthPolicy {
                max_failures: c.unhealthy_after,
                window: c.unhealthy_window.0,
            },
            memory_limit: c.memory_limit.as_usize(),
            hook_budget: c.hook_budget.0,
            init_budget: c.init_budget.0,
            hook_timeout: c.hook_timeout.0,
            pool_max_requests: c.pool_max_requests,
            pool_max_memory: c.pool_max_memory.as_usize(),
            pool_max_idle: c.pool_max_idle,
            kind: c.kind.as_ref().map(|k| *k.get_ref()),
            filter: FilterSettings {
                body: c.body.as_ref().map(|b| *b.get_ref()).unwrap_or_default(),
                body_limit: c.body_limit.map_or(1 << 20, |b| b.as_usize()),
                vm_config: c
                    .vm_config
                    .as_ref()
                    .map(|v| v.get_ref().clone())
                    .unwrap_or_default(),
                root_id: c
                    .root_id
                    .as_ref()
                    .map(|v| v.get_ref().clone())
                    .unwrap_or_default(),
            },
        }
    }
}

/// A compiled, pre-instantiated plugin. Shared by every route that uses it.
pub struct LoadedPlugin {
    pub(crate) name: Arc<str>,
    pub(crate) path: PathBuf,
    /// `sha256:<hex>` of the component's bytes.
    pub(crate) digest: String,
    code: Code,
    pub settings: PluginSettings,
    /// What the operator granted this plugin, resolved against its snapshot.
    pub(crate) caps: Arc<PluginCapabilities>,
    engine: Engine,
    metering: Metering,
    pub(crate) stats: Arc<PluginStats>,
    /// Its hook latency series, resolved on first use.
    pub(crate) series: crate::request_metrics::HookSeries,
}

/// What a loaded plugin runs: a component (the `weir:plugin` world) or a proxy-wasm filter.
pub(crate) enum Code {
    Component(PluginPre<HostState>),
    Filter(Arc<proxy_wasm::FilterCode>),
}

/// The four hooks a plugin exports (besides `init`), named as in spans and metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hook {
    Request,
    Response,
    BodyChunk,
    BodyEnd,
}

impl Hook {
    /// Its slot in a plugin's `HookSeries`.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::Request => "on_request",
            Hook::Response => "on_response",
            Hook::BodyChunk => "on_body_chunk",
            Hook::BodyEnd => "on_body_end",
        }
    }
}
