//! `rate-limit`: a token bucket per client, kept in the `kv` capability, so the limit holds
//! across instances and, with the Redis backend, across every gateway replica.
//!
//! Each key gets a bucket of `burst` tokens refilled at `rate_per_second`; a request takes one
//! token or is answered 429 with `retry-after` (seconds until a token is back). Allowed responses
//! carry `x-ratelimit-limit` and `x-ratelimit-remaining`. The bucket is read, updated and written
//! back with compare-and-swap, retried on conflict, so concurrent requests never over-admit.
//!
//! Config: `burst` (≥ 1), `rate_per_second` (> 0), `key` (`"principal"`, the default, falling
//! back to the client IP; `"client-ip"`; or `"header:<name>"`, falling back to the client IP),
//! `on_backend_error` (`"allow"`, the default, or `"deny"` with 503). Needs
//! `capabilities = { kv = "<namespace>" }`.

use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_sdk::{
    Decision, Info, LocalResponse, Plugin, ResponseDecision, context, kv, log, request, response,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    burst: u32,
    rate_per_second: f64,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default = "default_on_backend_error")]
    on_backend_error: String,
}

fn default_key() -> String {
    "principal".into()
}
fn default_on_backend_error() -> String {
    "allow".into()
}

/// Conflicting writers retry this often before the request is treated as a backend error.
const CAS_ATTEMPTS: usize = 32;

struct RateLimit {
    config: Config,
    /// Tokens left after this request, for the response headers.
    remaining: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn client_ip() -> String {
    let addr = request::client_addr();
    match addr.rsplit_once(':') {
        Some((host, _)) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        None => addr,
    }
}

/// FNV-1a, to keep long keys within the kv key limit.
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Tokens and the time they were counted, as stored: `"<tokens>:<unix ms>"`.
fn parse(bytes: &[u8]) -> Option<(f64, u64)> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (t, at) = s.split_once(':')?;
    Some((t.parse().ok()?, at.parse().ok()?))
}

enum Verdict {
    Allow { remaining: u64 },
    Deny { retry_after_s: u64 },
}

impl RateLimit {
    fn bucket_key(&self) -> String {
        let c = &self.config.key;
        let (kind, value) = if c == "principal" {
            match context::principal() {
                Some(p) => ("principal", p),
                None => ("ip", client_ip()),
            }
        } else if let Some(name) = c.strip_prefix("header:") {
            match request::header(name) {
                Some(v) => ("header", v),
                None => ("ip", client_ip()),
            }
        } else {
            ("ip", client_ip())
        };
        let value = if value.len() > 900 {
            fnv(&value)
        } else {
            value
        };
        format!("bucket:{kind}:{value}")
    }

    fn take(&self, key: &str) -> Result<Verdict, String> {
        let burst = f64::from(self.config.burst);
        let rate = self.config.rate_per_second;
        // Keep a bucket twice as long as it takes to fill up; an absent bucket is full.
        let ttl = Duration::from_secs_f64((burst / rate * 2.0).clamp(1.0, 365.0 * 86400.0));
        for _ in 0..CAS_ATTEMPTS {
            let now = now_ms();
            let current = kv::get(key).map_err(|e| format!("{e:?}"))?;
            let (tokens, at) = current.as_deref().and_then(parse).unwrap_or((burst, now));
            let elapsed = now.saturating_sub(at) as f64 / 1000.0;
            let tokens = (tokens + elapsed * rate).min(burst);
            if tokens < 1.0 {
                let wait = ((1.0 - tokens) / rate).ceil().max(1.0);
                return Ok(Verdict::Deny {
                    retry_after_s: wait as u64,
                });
            }
            let left = tokens - 1.0;
            let new = format!("{left}:{now}");
            let swapped = kv::compare_and_swap(key, current.as_deref(), new.as_bytes(), Some(ttl))
                .map_err(|e| format!("{e:?}"))?;
            if swapped {
                return Ok(Verdict::Allow {
                    remaining: left.floor() as u64,
                });
            }
        }
        Err(format!(
            "bucket {key} still contended after {CAS_ATTEMPTS} attempts"
        ))
    }
}

impl Plugin for RateLimit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.burst == 0 {
            return Err("`burst` must be at least 1".into());
        }
        if !(config.rate_per_second > 0.0 && config.rate_per_second.is_finite()) {
            return Err("`rate_per_second` must be a positive number".into());
        }
        let k = config.key.as_str();
        if !(k == "principal"
            || k == "client-ip"
            || k.strip_prefix("header:").is_some_and(|h| !h.is_empty()))
        {
            return Err(format!(
                "`key` must be \"principal\", \"client-ip\" or \"header:<name>\", not {k:?}"
            ));
        }
        if !matches!(config.on_backend_error.as_str(), "allow" | "deny") {
            return Err("`on_backend_error` must be \"allow\" or \"deny\"".into());
        }
        Ok(RateLimit {
            config,
            remaining: None,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            ..Info::default()
        }
    }

    fn on_request(&mut self) -> Decision {
        self.remaining = None;
        let key = self.bucket_key();
        match self.take(&key) {
            Ok(Verdict::Allow { remaining }) => {
                self.remaining = Some(remaining);
                Decision::Continue
            }
            Ok(Verdict::Deny { retry_after_s }) => Decision::Respond(
                LocalResponse::new(429)
                    .header("retry-after", retry_after_s.to_string())
                    .header("x-ratelimit-limit", self.config.burst.to_string())
                    .header("x-ratelimit-remaining", "0")
                    .text("rate limit exceeded\n"),
            ),
            Err(e) if self.config.on_backend_error == "deny" => {
                log::warn(&format!("rate limit state unavailable, refusing: {e}"));
                Decision::Respond(LocalResponse::new(503).text("rate limit state unavailable\n"))
            }
            Err(e) => {
                log::warn(&format!("rate limit state unavailable, allowing: {e}"));
                Decision::Continue
            }
        }
    }

    fn on_response(&mut self) -> ResponseDecision {
        if let Some(left) = self.remaining.take() {
            let _ = response::set_header("x-ratelimit-limit", &self.config.burst.to_string());
            let _ = response::set_header("x-ratelimit-remaining", &left.to_string());
        }
        ResponseDecision::Continue
    }
}

weir_sdk::plugin!(RateLimit);
