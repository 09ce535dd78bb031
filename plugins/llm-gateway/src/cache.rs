//! Response caches for non-streamed requests, in `kv` (shared by replicas on Redis):
//!
//! - **exact**: the same request body (same client format, model and parameters) gets the
//!   stored answer;
//! - **semantic** (optional): the prompt is embedded through an OpenAI-format `/v1/embeddings`
//!   provider, and an earlier answer whose prompt embedding is at least `threshold` cosine-similar
//!   is served. The vectors of one model and scope live in one bounded `kv` entry
//!   (`max_entries`, oldest dropped), updated with compare-and-swap.
//!
//! Both are scoped per principal unless `shared = true`: one tenant's answers never reach
//! another by default. Hits are not charged to budgets.

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use weir_sdk::{kv, log, outbound, secrets};

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an answer is kept.
    #[serde(default = "default_ttl")]
    pub ttl_s: u64,
    /// One cache for all principals (only for models whose answers are not per-tenant).
    #[serde(default)]
    pub shared: bool,
    pub semantic: Option<Semantic>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Semantic {
    /// The upstream serving `POST /v1/embeddings` (OpenAI format).
    pub upstream: String,
    pub model: String,
    /// A secret with its API key, sent as `Authorization: Bearer`.
    pub secret: Option<String>,
    /// Cosine similarity at or above which a cached answer is served.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Vectors kept per model and scope.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_ttl() -> u64 {
    300
}
fn default_threshold() -> f64 {
    0.92
}
fn default_max_entries() -> usize {
    200
}

/// What the request side found: a stored answer, or where to store the new one.
pub enum Lookup {
    Hit {
        body: Vec<u8>,
        how: &'static str,
    },
    Miss {
        key: String,
        vector: Option<Vec<f64>>,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn scope(config: &CacheConfig, principal: &str) -> String {
    if config.shared {
        "*".into()
    } else {
        principal.to_string()
    }
}

/// The text the semantic cache compares: every message's text, role-tagged.
fn prompt_text(body: &Value) -> String {
    let mut out = String::new();
    if let Some(s) = body["system"].as_str() {
        out.push_str(s);
        out.push('\n');
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let text = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{}: {text}\n",
            m["role"].as_str().unwrap_or("user")
        ));
    }
    out
}

fn embed(s: &Semantic, text: &str) -> Option<Vec<f64>> {
    let mut req = outbound::Request::post(
        &s.upstream,
        "/v1/embeddings",
        json!({"model": s.model, "input": text}).to_string(),
    )
    .header("content-type", "application/json");
    if let Some(name) = &s.secret
        && let Ok(key) = secrets::get(name)
    {
        req = req.header("authorization", &format!("Bearer {key}"));
    }
    let resp = outbound::send(req).ok()?;
    if resp.status() != 200 {
        log::warn(&format!(
            "llm-gateway: embeddings answered HTTP {}",
            resp.status()
        ));
        return None;
    }
    let body: Value = serde_json::from_slice(&resp.read_body(16 << 20).ok()?).ok()?;
    body.pointer("/data/0/embedding")?
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn index_key(scope: &str, model: &str) -> String {
    format!("llm:semantic:{scope}:{model}")
}

/// Looks `body` (a non-streamed request of `model`) up.
pub fn lookup(
    config: &CacheConfig,
    principal: &str,
    client: &str,
    model: &str,
    body: &Value,
) -> Lookup {
    let scope = scope(config, principal);
    let key = format!(
        "llm:cache:{scope}:{}",
        hex(&Sha256::digest(format!("{client}\n{body}").as_bytes()))
    );
    if let Ok(Some(stored)) = kv::get(&key) {
        return Lookup::Hit {
            body: stored,
            how: "exact",
        };
    }
    let Some(sem) = &config.semantic else {
        return Lookup::Miss { key, vector: None };
    };
    let Some(vector) = embed(sem, &prompt_text(body)) else {
        return Lookup::Miss { key, vector: None };
    };
    let index: Vec<Value> = kv::get(&index_key(&scope, model))
        .ok()
        .flatten()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default();
    let best = index
        .iter()
        .filter_map(|e| {
            let v: Vec<f64> = e["v"]
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            Some((cosine(&vector, &v), e["k"].as_str()?.to_string()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((similarity, k)) = best
        && similarity >= sem.threshold
        && let Ok(Some(stored)) = kv::get(&k)
    {
        log::debug(&format!(
            "llm-gateway: semantic cache hit at {similarity:.3}"
        ));
        return Lookup::Hit {
            body: stored,
            how: "semantic",
        };
    }
    Lookup::Miss {
        key,
        vector: Some(vector),
    }
}

/// Stores a successful answer under `key` (and its vector in the semantic index).
pub fn store(
    config: &CacheConfig,
    principal: &str,
    model: &str,
    key: &str,
    vector: Option<&[f64]>,
    answer: &[u8],
) {
    let ttl = Duration::from_secs(config.ttl_s);
    if kv::set(key, answer, Some(ttl)).is_err() {
        return;
    }
    let (Some(sem), Some(vector)) = (&config.semantic, vector) else {
        return;
    };
    let ikey = index_key(&scope(config, principal), model);
    for _ in 0..5 {
        let current = kv::get(&ikey).ok().flatten();
        let mut index: Vec<Value> = current
            .as_deref()
            .and_then(|raw| serde_json::from_slice(raw).ok())
            .unwrap_or_default();
        index.push(json!({"v": vector, "k": key}));
        let excess = index.len().saturating_sub(sem.max_entries);
        index.drain(..excess);
        let new = serde_json::to_vec(&index).unwrap_or_default();
        if kv::compare_and_swap(&ikey, current.as_deref(), &new, Some(ttl)).unwrap_or(false) {
            return;
        }
    }
    log::warn("llm-gateway: semantic index busy; answer cached for exact hits only");
}
