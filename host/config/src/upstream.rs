//! The resilience settings of `[upstreams.NAME]` (balancing, retries, outlier ejection, active
//! health checks, limits) and of `[routes.retry]`. Every default lives in [`defaults`], so the
//! config reference, the validation and the gateway agree on one set of numbers.

use crate::{ByteSize, Millis};
use serde::Deserialize;

/// Every default of the upstream resilience settings, in one place.
pub mod defaults {
    use std::time::Duration;

    /// Idle pooled connections are closed after this: below the 5 s keep-alive timeout common
    /// servers use (nginx 75 s, Node 5 s, Go 90 s...), so the gateway closes first and rarely
    /// writes into a connection the server is closing.
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    pub const RETRY_ATTEMPTS: u32 = 3;
    pub const RETRY_STATUSES: [u16; 3] = [502, 503, 504];
    pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
    pub const BACKOFF_MAX: Duration = Duration::from_millis(250);
    /// Request bodies up to this size (with a declared `Content-Length`) are buffered so that a
    /// retry can replay them.
    pub const MAX_REPLAY_BODY: u64 = 64 * 1024;
    pub const BUDGET_RATIO: f64 = 0.2;
    pub const BUDGET_MIN_PER_SECOND: u32 = 10;
    /// The window the budget counts requests and retries over.
    pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);
    pub const OUTLIER_CONSECUTIVE_FAILURES: u32 = 5;
    pub const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(30);
    pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
    pub const OUTLIER_MAX_EJECTED_PERCENT: u32 = 50;
    pub const HEALTH_PATH: &str = "/health";
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    pub const HEALTHY_THRESHOLD: u32 = 2;
    pub const UNHEALTHY_THRESHOLD: u32 = 3;
    /// Virtual nodes per unit of weight on the consistent-hash ring.
    pub const HASH_VNODES: u32 = 160;
    pub const MAX_WEIGHT: u32 = 1000;
}

/// One endpoint: `"http://host:port"`, or `{ url = "http://host:port", weight = 3 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "an endpoint URL string or a table `{ url = \"...\", weight = N }`"
)]
pub enum EndpointConfig {
    Url(String),
    Weighted(WeightedEndpoint),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedEndpoint {
    pub url: String,
    /// Relative share of the traffic, 1 to 1000.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl EndpointConfig {
    pub fn url(&self) -> &str {
        match self {
            EndpointConfig::Url(u) => u,
            EndpointConfig::Weighted(w) => &w.url,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            EndpointConfig::Url(_) => 1,
            EndpointConfig::Weighted(w) => w.weight,
        }
    }
}

/// How an upstream spreads requests over its endpoints.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// In turn, weighted.
    RoundRobin,
    /// The less loaded (in-flight requests per weight) of two endpoints picked at random.
    #[default]
    LeastRequest,
    /// Consistent hashing of `hash_by`: a key sticks to one endpoint.
    Hash,
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashBy {
    Header(String),
    Cookie(String),
    Principal,
}

impl HashBy {
    /// `header:NAME`, `cookie:NAME` or `principal`.
    pub fn parse(s: &str) -> Result<HashBy, String> {
        let hint = "expected \"header:NAME\", \"cookie:NAME\" or \"principal\"";
        if s == "principal" {
            return Ok(HashBy::Principal);
        }
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid hash_by {s:?}: {hint}"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("hash_by {s:?} names no {kind}: {hint}"));
        }
        match kind {
            "header" => http::HeaderName::from_bytes(name.as_bytes())
                .map(|h| HashBy::Header(h.as_str().to_string()))
                .map_err(|_| format!("hash_by {s:?}: invalid header name")),
            "cookie" => Ok(HashBy::Cookie(name.to_string())),
            _ => Err(format!("invalid hash_by {s:?}: {hint}")),
        }
    }
}

/// `[upstreams.NAME.retry]`, and `[routes.retry]` over it (a route's keys replace the
/// upstream's one by one; the budget is the upstream's alone).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries in all, the first included (1 = no retries).
    pub attempts: Option<u32>,
    /// Response statuses that are retried.
    pub statuses: Option<Vec<u16>>,
    /// Time one try may take to its response head (default: the request timeout).
    pub per_try_timeout: Option<Millis>,
    pub backoff_base: Option<Millis>,
    pub backoff_max: Option<Millis>,
    /// Also retry methods that are not idempotent (POST, PATCH...).
    pub retry_non_idempotent: Option<bool>,
    /// Streamed request bodies up to this declared length are buffered so that they can be
    /// replayed.
    pub max_replay_body: Option<ByteSize>,
    /// Upstream only: retries may add at most this share of the recent requests...
    pub budget_ratio: Option<f64>,
    /// ...plus this many per second.
    pub budget_min_per_second: Option<u32>,
}

/// `[upstreams.NAME.outlier]`: passive ejection of failing endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection_time: Millis,
    pub max_ejection_time: Millis,
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: defaults::OUTLIER_CONSECUTIVE_FAILURES,
            base_ejection_time: Millis(defaults::OUTLIER_BASE_EJECTION),
            max_ejection_time: Millis(defaults::OUTLIER_MAX_EJECTION),
            max_ejected_percent: defaults::OUTLIER_MAX_EJECTED_PERCENT,
        }
    }
}

/// `[upstreams.NAME.health_check]`: active HTTP checks of every endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Millis,
    pub timeout: Millis,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: defaults::HEALTH_PATH.to_string(),
            interval: Millis(defaults::HEALTH_INTERVAL),
            timeout: Millis(defaults::HEALTH_TIMEOUT),
            healthy_threshold: defaults::HEALTHY_THRESHOLD,
            unhealthy_threshold: defaults::UNHEALTHY_THRESHOLD,
        }
    }
}
