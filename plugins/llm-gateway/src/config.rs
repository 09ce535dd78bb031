//! The plugin's config: providers, the models clients may ask for, and budgets.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The wire format a provider (or a client) speaks.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `POST /v1/chat/completions` (OpenAI, vLLM, TGI and other OpenAI-compatible servers).
    Openai,
    /// `POST /v1/messages`.
    Anthropic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// The named upstream serving it (or `pool`).
    pub upstream: Option<String>,
    /// Self-hosted endpoints (named upstreams) serving the same models; each request goes to
    /// the least loaded by its vLLM metrics (see `pool.rs`).
    #[serde(default)]
    pub pool: Vec<String>,
    /// Where pool endpoints serve their Prometheus metrics.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// How long a scraped load is used before scraping again.
    #[serde(default = "default_load_ttl")]
    pub load_ttl_ms: u64,
    /// Weight of `vllm:kv_cache_usage_perc` (0–1) against `vllm:num_requests_waiting`.
    #[serde(default = "default_kv_weight")]
    pub kv_cache_weight: f64,
    pub format: Format,
    /// The secret holding its API key (granted through `secrets`).
    pub secret: Option<String>,
    /// `anthropic-version` sent to Anthropic-format providers. With `2026-10-21` the sampling
    /// parameters `temperature`, `top_p` and `top_k` are dropped (that version refuses them).
    #[serde(default = "default_anthropic_version")]
    pub anthropic_version: String,
    /// Path prefix before `/v1/...` on this provider, e.g. `/openai`.
    #[serde(default)]
    pub base_path: String,
}

/// One place a model can be served: a provider and the model name there.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub provider: String,
    pub model: String,
    /// Prices per million tokens, for the cost estimate in the usage record.
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens (input + output) per calendar minute.
    pub tokens_per_minute: Option<u64>,
    /// Tokens in all, ever (until the operator resets the key in `kv`).
    pub total_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub providers: BTreeMap<String, Provider>,
    /// Model names clients use → where to send them, in order: the first, then the next on
    /// 429, 5xx or a timeout, as long as nothing has been sent to the client yet.
    pub models: BTreeMap<String, Vec<Target>>,
    /// `max_tokens` for Anthropic-format providers when the client sent none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    /// Budgets by principal; `"*"` applies to principals without their own.
    #[serde(default)]
    pub budgets: BTreeMap<String, Budget>,
    /// Response caching for non-streamed requests (off without this table).
    pub cache: Option<crate::cache::CacheConfig>,
    /// The largest request body accepted (413 beyond).
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u32,
    /// The largest fallback answer read whole.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: u32,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_load_ttl() -> u64 {
    1000
}
fn default_kv_weight() -> f64 {
    10.0
}
fn default_anthropic_version() -> String {
    "2023-06-01".into()
}
fn default_max_tokens() -> u64 {
    4096
}
fn default_max_request() -> u32 {
    4 << 20
}
fn default_max_response() -> u32 {
    16 << 20
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.models.is_empty() {
            return Err("`models` is empty".into());
        }
        for (name, targets) in &self.models {
            if targets.is_empty() {
                return Err(format!("model {name:?} has no targets"));
            }
            for t in targets {
                if !self.providers.contains_key(&t.provider) {
                    return Err(format!(
                        "model {name:?}: unknown provider {:?} (providers: {})",
                        t.provider,
                        self.providers
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        for (name, p) in &self.providers {
            if p.upstream.is_some() != p.pool.is_empty() {
                return Err(format!(
                    "provider {name:?}: give either `upstream` or `pool` (a list of upstreams)"
                ));
            }
            if !(p.base_path.is_empty() || p.base_path.starts_with('/')) {
                return Err(format!(
                    "provider {name:?}: `base_path` must start with '/'"
                ));
            }
        }
        Ok(())
    }

    /// The budget that applies to `principal`.
    pub fn budget(&self, principal: Option<&str>) -> Option<Budget> {
        principal
            .and_then(|p| self.budgets.get(p))
            .or_else(|| self.budgets.get("*"))
            .copied()
    }
}
