//! The gateway's TOML configuration: typed, strict (`deny_unknown_fields`), and validated as a
//! whole before anything is activated. Every error carries file:line:column and the route or
//! plugin it concerns. See `docs/config.md` for the reference.

mod capabilities;
pub mod diagnostic;
mod units;
mod upstream;
mod validate;

pub use capabilities::{CapabilityGrants, KvBackendKind, KvConfig, SecretSource};
pub use units::{ByteSize, Millis};
pub use upstream::{
    Balance, EndpointConfig, HashBy, HealthCheckConfig, OutlierConfig, RetryConfig,
    WeightedEndpoint, defaults,
};
pub use validate::check_endpoint;

use crate::diagnostic::{Diagnostic, Diagnostics, Location};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A parsed, validated configuration file.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub source: String,
    pub file: ConfigFile,
}

impl Config {
    /// Reads, parses and validates `path`. Returns every error found, not just the first.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(format!(
                "cannot read config file {}: {e}",
                path.display()
            ))])
        })?;
        Config::parse(path, source)
    }

    /// Parses and validates `source` as if read from `path` (used for error locations and to
    /// resolve relative plugin and certificate paths).
    pub fn parse(path: &Path, source: String) -> Result<Config, Diagnostics> {
        let file: ConfigFile = toml::from_str(&source).map_err(|e| {
            let mut d = Diagnostic::new(e.message().trim_end().to_string());
            if let Some(span) = e.span() {
                d = d.at(Location::at(path, &source, span.start));
            } else {
                d.message = format!("{}: {}", path.display(), d.message);
            }
            Diagnostics(vec![d])
        })?;
        let config = Config {
            path: path.to_path_buf(),
            source,
            file,
        };
        let errors = validate::validate(&config);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// The location of a byte span in this file.
    pub fn location(&self, span: std::ops::Range<usize>) -> Location {
        Location::at(&self.path, &self.source, span.start)
    }

    /// The directory relative paths in the config are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Resolves a path written in the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// The top level of `weir.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the gateway accepts traffic.
    #[serde(default)]
    pub listeners: Vec<Spanned<ListenerConfig>>,
    /// Gateway-wide limits and timeouts; upstreams and routes may override some.
    #[serde(default)]
    pub limits: Limits,
    /// Settings of the Wasm runtime shared by all plugins.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Named upstream services.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamConfig>>,
    /// Named plugins (Wasm components) that routes put in their chains.
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<PluginConfig>>,
    /// Routes, tried in file order; the first whose `match` fits handles the request.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
    /// The admin API; off unless this table is present.
    pub admin: Option<Spanned<AdminConfig>>,
    /// Live reload of this file and the plugin files.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Where plugins' key-value state lives.
    #[serde(default)]
    pub kv: KvConfig,
    /// Named secrets that plugins may be granted, from env vars or files.
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<SecretSource>>,
    /// Traces over OTLP; off unless this table is present. Read at start (a change needs a
    /// restart).
    pub telemetry: Option<Spanned<TelemetryConfig>>,
    /// The access and audit logs; read at start.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// How request paths are brought to their one canonical form.
    #[serde(default)]
    pub paths: PathsConfig,
    /// Which clients' `Forwarded`, `X-Forwarded-*` and `X-Real-IP` fields are believed.
    #[serde(default)]
    pub forwarded: ForwardedConfig,
}

/// `[paths]`: the request path is made canonical once, before routing; routes, plugins and
/// the upstream all see that one form. These keys say what to do with spellings whose meaning
/// differs between backends; the defaults refuse them (400).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// `%2F` in a path: `reject` (400), `keep` (a segment character, sent on as `%2F`) or
    /// `decode` (a `/`, like any separator).
    pub escaped_slash: EscapedSlash,
    /// `\` or `%5C` in a path: `reject` (400) or `slash` (read as `/`, as Windows servers do).
    pub backslash: Backslash,
    /// `;` in a path (matrix parameters, which some servers strip before routing): `reject`
    /// (400) or `keep`.
    pub semicolon: Semicolon,
    /// `//` is read as `/` (an empty segment is dropped).
    pub merge_slashes: bool,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            escaped_slash: EscapedSlash::Reject,
            backslash: Backslash::Reject,
            semicolon: Semicolon::Reject,
            merge_slashes: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlash {
    Reject,
    Keep,
    Decode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backslash {
    Reject,
    Slash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Semicolon {
    Reject,
    Keep,
}

/// An address (`10.0.0.7`) or CIDR range (`10.0.0.0/8`), as `trusted_proxies` takes them.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// `[forwarded]`: a client's own `Forwarded`, `X-Forwarded-For`/`-Proto`/`-Host` and
/// `X-Real-IP` are kept (and appended to) only when it connects from a trusted proxy;
/// from anyone else they are replaced by what the gateway saw.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardedConfig {
    /// Addresses or CIDR ranges of proxies in front of the gateway, e.g. `["10.0.0.0/8"]`.
    pub trusted_proxies: Vec<Spanned<String>>,
}

/// `[logging]`: structured logs to files (relative to this file).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// One JSON object per request.
    pub access_log: Option<PathBuf>,
    /// Keep only these access-log fields (default: all of them).
    #[serde(default)]
    pub access_log_fields: Vec<String>,
    /// The audit records plugins write (`audit {...}` log messages), one JSON object per line.
    pub audit_log: Option<PathBuf>,
}

/// `[telemetry]`: where traces go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector: `http://host:4317` for gRPC, `http://host:4318/v1/traces` for HTTP.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The share of new traces recorded, 0 to 1. A client's sampled `traceparent` is followed.
    #[serde(default = "default_sampling")]
    pub sampling: f64,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Extra headers (gRPC metadata) on every export, e.g. an API key of the collector.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long one export may take.
    #[serde(default = "default_export_timeout")]
    pub timeout: Millis,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

fn default_sampling() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "weir".into()
}
fn default_export_timeout() -> Millis {
    Millis(std::time::Duration::from_secs(5))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin API listens. Keep it on loopback or a private network.
    #[serde(default = "default_admin_address")]
    pub address: Spanned<String>,
    /// If set, every admin request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The token from a `[secrets]` entry (an environment variable or a file, e.g. a mounted
    /// Kubernetes Secret) instead of the config file; not with `token`.
    pub token_secret: Option<Spanned<String>>,
    /// `GET /health` and `GET /ready` answered without the token: probes (kubelet, a load
    /// balancer) cannot present one, and the two reveal only that the process runs and serves.
    #[serde(default)]
    pub unauthenticated_probes: bool,
    /// Without a `token`, the admin API refuses every request unless this is `true`, which is
    /// only allowed on a loopback address (and logs a warning at start).
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Open connections to the admin API; past it a new one is accepted and closed at once.
    /// (Head and idle timeouts are `[limits]`' `header_read_timeout` and `idle_timeout`.)
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
}

fn default_admin_max_connections() -> usize {
    64
}

fn default_admin_address() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9901".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload when this file or a plugin file changes (polled; content-compared).
    pub watch: bool,
    /// How often the files are checked.
    pub poll_interval: Millis,
    /// How often registries are asked whether the tags of `oci://` plugins with
    /// `pull = "always"` moved; a moved tag reloads (pulling the new digest). Off when absent.
    pub registry_poll: Option<Millis>,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: true,
            poll_interval: Millis(std::time::Duration::from_millis(250)),
            registry_poll: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name for routes' `listeners` filter; defaults to the address.
    pub name: Option<String>,
    /// `host:port` to bind, e.g. `127.0.0.1:8080`.
    pub address: Spanned<String>,
    /// Terminate TLS here (HTTP/1.1 and HTTP/2 negotiated by ALPN).
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert: Spanned<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<PathBuf>,
    /// PEM CA certificates for client certificates (mTLS). Clients must present a certificate
    /// signed by one of them (see `client_auth`); its identity reaches plugins (`peer.rs`).
    pub client_ca: Option<Spanned<PathBuf>>,
    /// With `client_ca`: `required` (the default; no certificate, no connection) or `optional`.
    #[serde(default)]
    pub client_auth: ClientAuthMode,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthMode {
    #[default]
    Required,
    Optional,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers) accepted; larger gets 431.
    pub max_header_size: ByteSize,
    /// Largest request body accepted; larger gets 413. Routes may lower or raise it.
    pub max_body_size: ByteSize,
    /// Time to establish an upstream TCP connection; then 504. (The TLS handshake counts
    /// against `request_timeout`.)
    pub connect_timeout: Millis,
    /// Time from sending a request upstream to receiving its response head; then 504.
    /// Bodies (e.g. long SSE streams) are not limited by it.
    pub request_timeout: Millis,
    /// On SIGTERM/SIGINT: how long requests in flight may take to finish before the process
    /// exits anyway.
    pub drain_timeout: Millis,
    /// On SIGTERM/SIGINT, before the drain: how long the gateway keeps accepting and serving
    /// while `/ready` answers 503 and HTTP/1.1 responses carry `Connection: close`, so a load
    /// balancer moves its traffic away before the listeners close. 0: close at once.
    pub shutdown_delay: Millis,
    /// Requests one worker serves at once (from the head received to the response head sent);
    /// past it a request gets 503 with `retry-after` without running plugins.
    pub max_requests_per_worker: usize,
    /// Open client connections per listener, across all workers; past it a new connection is
    /// accepted and closed at once.
    pub max_connections: usize,
    /// Time a client has for a request head: the first from the moment the connection was
    /// accepted (TLS handshake included), later ones (HTTP/1.1 keep-alive) from their first
    /// byte. Past it the connection is closed.
    pub header_read_timeout: Millis,
    /// A connection with no request in flight for this long is closed (HTTP/1.1) or sent
    /// GOAWAY (HTTP/2).
    pub idle_timeout: Millis,
    /// HTTP/2: how often the gateway pings an HTTP/2 client...
    pub http2_keepalive_interval: Millis,
    /// ...and how long it waits for the answer before closing the connection.
    pub http2_keepalive_timeout: Millis,
    /// Time to read a request body that plugins asked for whole (buffered); past it 408.
    pub request_body_timeout: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        use std::time::Duration;
        Limits {
            max_header_size: ByteSize::kib(64),
            max_body_size: ByteSize::gib(1),
            connect_timeout: Millis(Duration::from_secs(5)),
            request_timeout: Millis(Duration::from_secs(60)),
            drain_timeout: Millis(Duration::from_secs(30)),
            shutdown_delay: Millis(Duration::ZERO),
            max_requests_per_worker: 4096,
            max_connections: 10_000,
            header_read_timeout: Millis(Duration::from_secs(10)),
            idle_timeout: Millis(Duration::from_secs(60)),
            http2_keepalive_interval: Millis(Duration::from_secs(30)),
            http2_keepalive_timeout: Millis(Duration::from_secs(20)),
            request_body_timeout: Millis(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Upper bound of plugin instances alive at once across the gateway (pooling allocator).
    pub max_instances: u32,
    /// Worker threads, each running its own event loop with its own listener sockets
    /// (SO_REUSEPORT) and upstream connection pools. Default: one per CPU.
    pub workers: Option<usize>,
    /// Where compiled plugins are kept between restarts (`""` disables the cache). Default:
    /// `$XDG_CACHE_HOME/weir/compiled` or `~/.cache/weir/compiled`.
    pub cache_dir: Option<std::path::PathBuf>,
    /// How plugin calls are bounded: `cpu-time` (execution budgets and backstops) or `off`.
    pub metering: Metering,
}

/// How plugin calls are bounded, for the whole runtime (`[runtime] metering`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metering {
    /// Each call's execution budget (the CPU time it uses) and wall-clock backstop, checked at
    /// every epoch tick, where a long call also yields to other requests.
    #[default]
    CpuTime,
    /// wasmtime fuel instead of CPU time: a call may execute `hook_budget` × 1,000,000 units
    /// (about one per Wasm instruction), host calls not counted. Deterministic, but costs more
    /// per call (measured by `cargo bench -p weir --bench hooks`); kept for comparison.
    Fuel,
    /// No interruption at all: a plugin that loops holds its worker for ever. For measuring
    /// what metering costs, never for serving.
    Off,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 1000,
            workers: None,
            cache_dir: None,
            metering: Metering::default(),
        }
    }
}

impl RuntimeConfig {
    /// The number of worker threads to run.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// One or more base URLs (`http://host:port` or `https://host:port`), or tables
    /// `{ url = "...", weight = N }`.
    #[serde(default)]
    pub endpoints: Vec<Spanned<EndpointConfig>>,
    /// Or a stdio MCP server the gateway runs and bridges to HTTP (see `stdio_bridge`).
    pub stdio: Option<Spanned<StdioSpec>>,
    /// Wire protocol towards the upstream.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// PEM file of CA certificates to trust for `https` endpoints instead of the built-in roots.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// A client certificate (PEM chain) presented to `https` endpoints that ask for one (mTLS),
    /// with `client_key`.
    pub client_cert: Option<Spanned<PathBuf>>,
    pub client_key: Option<Spanned<PathBuf>>,
    pub connect_timeout: Option<Millis>,
    pub request_timeout: Option<Millis>,
    /// Idle pooled connections are closed after this (default 4 s, below common servers'
    /// keep-alive timeouts).
    pub pool_idle_timeout: Option<Millis>,
    /// How requests are spread over the endpoints (default `least-request`).
    pub balance: Option<Spanned<Balance>>,
    /// With `balance = "hash"`: `header:NAME`, `cookie:NAME` or `principal`.
    pub hash_by: Option<Spanned<String>>,
    /// Concurrent requests per worker (for HTTP/1.1, the connections of a worker's pool);
    /// unlimited when absent.
    pub max_connections: Option<Spanned<usize>>,
    /// Requests that may wait for one of `max_connections` (default 0 with
    /// `max_connections`: no waiting).
    pub max_pending: Option<Spanned<usize>>,
    /// Concurrent requests to this upstream over all workers; unlimited when absent.
    pub max_requests: Option<Spanned<usize>>,
    /// Retries (none unless this table, or a route's `retry`, is present).
    pub retry: Option<Spanned<RetryConfig>>,
    /// Passive ejection of failing endpoints (off unless present).
    pub outlier: Option<Spanned<OutlierConfig>>,
    /// Active health checks (off unless present).
    pub health_check: Option<Spanned<HealthCheckConfig>>,
}

impl UpstreamConfig {
    /// The balancing policy, `least-request` unless set.
    pub fn balance(&self) -> Balance {
        self.balance
            .as_ref()
            .map(|b| *b.get_ref())
            .unwrap_or_default()
    }

    /// This upstream with its stdio bridge's address as its one endpoint.
    pub fn bridged(&self, addr: std::net::SocketAddr) -> UpstreamConfig {
        let span = self.stdio.as_ref().map_or(0..0, |s| s.span());
        UpstreamConfig {
            endpoints: vec![Spanned::new(
                span,
                EndpointConfig::Url(format!("http://{addr}")),
            )],
            stdio: None,
            protocol: UpstreamProtocol::Http1,
            ca_file: None,
            client_cert: None,
            client_key: None,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            pool_idle_timeout: self.pool_idle_timeout,
            balance: self.balance.clone(),
            hash_by: self.hash_by.clone(),
            max_connections: self.max_connections.clone(),
            max_pending: self.max_pending.clone(),
            max_requests: self.max_requests.clone(),
            retry: self.retry.clone(),
            outlier: self.outlier.clone(),
            health_check: self.health_check.clone(),
        }
    }
}

/// A stdio MCP server: `stdio = { command = "npx", args = [...], env = { K = "v" }, cwd = "dir" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioSpec {
    /// The program: a path relative to the config file if it contains `/`, else found on `PATH`.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables (the gateway's own environment is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the config file.
    pub cwd: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over `http`; HTTP/2 or HTTP/1.1 by ALPN over `https`.
    #[default]
    Auto,
    /// Always HTTP/1.1.
    Http1,
    /// Always HTTP/2 (prior knowledge over `http`, i.e. h2c). Needed for gRPC over `http`.
    Http2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Path of the Wasm component, relative to this config file, or a registry reference
    /// `oci://host[:port]/repo:tag` / `...@sha256:<digest>`.
    pub path: Spanned<PathBuf>,
    /// For `oci://` references: `if-not-present` (use the local cache when it has the
    /// reference) or `always` (ask the registry at every load, the cache only as a fallback).
    #[serde(default)]
    pub pull: PullPolicy,
    /// For `oci://` references: load only if the manifest carries a valid signature by this key.
    pub verify: Option<VerifyConfig>,
    /// Instance policy: `fresh` (a new instance per request) or `pooled` (reused).
    #[serde(default)]
    pub instances: InstancePolicy,
    /// Linear memory an instance may grow to; past it the hook traps.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// CPU time one call into the plugin may use (its own execution, measured on the worker
    /// thread, checked every 5 ms); past it the call is interrupted. A running call yields to
    /// other requests at every check.
    #[serde(default = "default_hook_budget")]
    pub hook_budget: Millis,
    /// CPU time instantiation plus `init` may use while a configuration loads or reloads.
    #[serde(default = "default_init_budget")]
    pub init_budget: Millis,
    /// The wall-clock backstop of one call (network waits in `kv`/`outbound` excluded): catches
    /// a call that keeps waiting rather than running.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout: Millis,
    /// Pooled instances: recycle an instance after this many requests.
    #[serde(default = "default_pool_max_requests")]
    pub pool_max_requests: u64,
    /// Pooled instances: recycle an instance whose memory grew past this.
    #[serde(default = "default_pool_max_memory")]
    pub pool_max_memory: ByteSize,
    /// Pooled instances: keep at most this many idle instances per chain entry.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Report the plugin unhealthy (admin API, log) after more than this many failures...
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: usize,
    /// ...within this window.
    #[serde(default = "default_unhealthy_window")]
    pub unhealthy_window: Millis,
    /// Host capabilities granted to this plugin (deny-by-default).
    #[serde(default)]
    pub capabilities: CapabilityGrants,
    /// `component` (the `weir:plugin` world) or `proxy-wasm` (a core module built for
    /// Envoy's filter ABI). Detected from the file when absent.
    pub kind: Option<Spanned<PluginKind>>,
    /// proxy-wasm only: how bodies reach the filter's body callbacks.
    pub body: Option<Spanned<FilterBody>>,
    /// proxy-wasm only: the most a filter may hold back while it pauses a body (buffered
    /// bodies, and streamed ones it pauses); past it the request fails by `on_error`.
    pub body_limit: Option<ByteSize>,
    /// proxy-wasm only: the VM configuration (`proxy_on_vm_start`), as Envoy's
    /// `vm_config.configuration`.
    pub vm_config: Option<Spanned<String>>,
    /// proxy-wasm only: the root id (Envoy's `root_id`; the `plugin_root_id` property).
    pub root_id: Option<Spanned<String>>,
}

/// What a `[plugins.NAME]` file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Component,
    ProxyWasm,
}

/// How a proxy-wasm filter sees bodies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterBody {
    /// Chunk by chunk as the body streams (Envoy's model); chunks the filter pauses are held
    /// until it continues. Headers have gone on by then: a local response from a body callback
    /// fails the request instead.
    #[default]
    Streamed,
    /// The whole body (up to `body_limit`) before the headers go on: the filter may answer
    /// from its body callback.
    Buffered,
    /// No body callbacks.
    None,
}

impl PluginConfig {
    /// A plugin at `path` with every other setting at its default.
    pub fn new(path: PathBuf) -> PluginConfig {
        PluginConfig {
            path: Spanned::new(0..0, path),
            pull: PullPolicy::default(),
            verify: None,
            instances: InstancePolicy::default(),
            memory_limit: default_memory_limit(),
            hook_budget: default_hook_budget(),
            init_budget: default_init_budget(),
            hook_timeout: default_hook_timeout(),
            pool_max_requests: default_pool_max_requests(),
            pool_max_memory: default_pool_max_memory(),
            pool_max_idle: default_pool_max_idle(),
            unhealthy_after: default_unhealthy_after(),
            unhealthy_window: default_unhealthy_window(),
            capabilities: CapabilityGrants::default(),
            kind: None,
            body: None,
            body_limit: None,
            vm_config: None,
            root_id: None,
        }
    }
}

fn default_unhealthy_after() -> usize {
    5
}
fn default_unhealthy_window() -> Millis {
    Millis(std::time::Duration::from_secs(60))
}

fn default_memory_limit() -> ByteSize {
    ByteSize::mib(64)
}
fn default_hook_budget() -> Millis {
    Millis(std::time::Duration::from_millis(100))
}
fn default_init_budget() -> Millis {
    Millis(std::time::Duration::from_secs(2))
}
fn default_hook_timeout() -> Millis {
    Millis(std::time::Duration::from_secs(10))
}
fn default_pool_max_requests() -> u64 {
    10_000
}
fn default_pool_max_memory() -> ByteSize {
    ByteSize::mib(16)
}
/// Above the requests one worker commonly has in flight (an HTTP/2 client alone may open 100
/// streams): a plugin with a response hook keeps its instance for the whole request, and a pool
/// smaller than that concurrency drops and re-creates instances on every burst.
fn default_pool_max_idle() -> usize {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// An ed25519 public key file from `weir plugin keygen`, relative to this file.
    pub public_key: Spanned<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    #[default]
    IfNotPresent,
    Always,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstancePolicy {
    /// A new instance for every request: no state survives between requests.
    #[default]
    Fresh,
    /// Instances reused across requests, one request at a time.
    Pooled,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs, errors and by plugins (`request.route`).
    pub name: Spanned<String>,
    /// Only serve on these listeners (by name); all listeners when absent.
    pub listeners: Option<Vec<Spanned<String>>>,
    /// What requests this route takes; an empty match takes everything.
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// The upstream to forward to, unless a plugin answers or routes elsewhere.
    pub upstream: Option<Spanned<String>>,
    /// Path rewrite applied before the chain runs.
    pub rewrite: Option<RewriteConfig>,
    /// Overrides `limits.max_body_size` for this route.
    pub max_body_size: Option<ByteSize>,
    /// The plugin chain, run in order.
    #[serde(default)]
    pub chain: Vec<Spanned<ChainEntryConfig>>,
    /// Retry settings for this route's requests, key by key over the upstream's `retry`.
    pub retry: Option<Spanned<RetryConfig>>,
    /// The format of the gateway's own error answers on this route (413, 502, 504, a failing
    /// plugin's 500): `text` (default), `json`, or `llm` (OpenAI's error shape, Anthropic's
    /// for the Messages API).
    #[serde(default)]
    pub error_format: ErrorFormat,
}

/// See [`RouteConfig::error_format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorFormat {
    #[default]
    Text,
    Json,
    Llm,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Exact host (`api.example.com`) or a wildcard for subdomains (`*.example.com`); the port
    /// is ignored.
    pub host: Option<Spanned<String>>,
    /// Path must start with this, at a segment boundary (`/api` matches `/api` and `/api/x`,
    /// not `/apix`).
    pub path_prefix: Option<Spanned<String>>,
    /// Path must equal this (query ignored).
    pub path: Option<Spanned<String>>,
    /// Method or list of methods.
    pub method: Option<OneOrMany>,
    /// Headers that must be present with exactly these values (`"*"`: present, any value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Replace the matched `path_prefix` with this (e.g. `/api/x` → `/v1/x` with `"/v1"`).
    pub prefix: Option<String>,
    /// Replace the whole path (the query is kept).
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntryConfig {
    /// Name of a plugin from `[plugins]`.
    pub plugin: Spanned<String>,
    /// Configuration handed to the plugin's `init` (as JSON); a proxy-wasm filter gets the
    /// JSON text as its plugin configuration.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// proxy-wasm only: the plugin configuration as these exact bytes (instead of `config`),
    /// for filters whose configuration is not JSON.
    pub config_text: Option<Spanned<String>>,
    /// What a failing plugin (trap, timeout, memory limit) means for the request.
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Answer 500 naming the plugin.
    #[default]
    FailClosed,
    /// Skip the plugin for this request and log it.
    FailOpen,
}

/// Weir's cache directory (`$XDG_CACHE_HOME/weir`, `~/.cache/weir`, or under the temporary
/// directory): compiled plugins live in `compiled/`, pulled OCI artifacts in `oci/`.
pub fn cache_root() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("weir");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache/weir");
    }
    std::env::temp_dir().join("weir")
}
