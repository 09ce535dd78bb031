//! `rate-limit`: a token bucket per client, kept in the `kv` capability, so the limit holds
//! across instances and, with the Redis backend, across every gateway replica.
//!
//! Each key gets a bucket of `burst` tokens refilled at `rate_per_second`; a request takes one
//! token or is answered 429 with `retry-after` (whole seconds until a token is back, at least 1),
//! `x-ratelimit-limit`, `x-ratelimit-remaining: 0` and the body `rate limit exceeded`. Allowed
//! responses carry `x-ratelimit-limit` and `x-ratelimit-remaining` (whole tokens left).
//!
//! The bucket is the kv key `bucket:<kind>:<value>` (kind `principal`, `client-ip` or
//! `header:<name>`) holding `"<tokens>:<unix ms>"`. It is read, updated and written back with
//! compare-and-swap, and the whole step is retried on conflict (up to 32 times, then it counts as
//! a backend error), so concurrent requests never over-admit. Buckets expire after twice the time
//! to refill (at least 1 s); an absent bucket is full. Buckets are not per route: every chain
//! entry with the same kv namespace and `key` kind draws on the same bucket for a client, so give
//! separate limits separate `[plugins.NAME]` declarations with their own namespaces.
//!
//! Config: `burst` (≥ 1, required), `rate_per_second` (> 0, required), `key` (`"principal"`, the
//! default, falling back to the client IP when no earlier plugin set a principal; `"client-ip"`;
//! or `"header:<name>"`, falling back to the client IP when the header is absent),
//! `on_backend_error` (`"allow"`, the default: a failing kv call is logged and the request goes
//! on; or `"deny"`: answer 503). Needs `capabilities = { kv = "<namespace>" }`.

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

/// kv's limit on key length, in bytes.
const MAX_KEY: usize = 1024;

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

/// The host part of `request::client_addr()` (`192.0.2.7:53211` → `192.0.2.7`,
/// `[2001:db8::1]:443` → `2001:db8::1`).
fn client_ip() -> String {
    let addr = request::client_addr();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match addr.split_once(':') {
        // One colon: `ip:port`. More than one: a bare IPv6 address, kept whole.
        Some((host, port)) if !port.contains(':') => host.to_string(),
        _ => addr,
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

/// Whether `s` is a valid HTTP field name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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
    /// `bucket:<kind>:<value>`, where the kind is `principal`, `client-ip` or `header:<name>`
    /// (a fallback to the client IP uses `client-ip`, sharing that client's bucket). A value
    /// that would make the key longer than kv's 1 KiB limit is replaced by its FNV-1a hash.
    fn bucket_key(&self) -> String {
        let c = self.config.key.as_str();
        let (kind, value) = if c == "principal" {
            match context::principal() {
                Some(p) => (c, p),
                None => ("client-ip", client_ip()),
            }
        } else if let Some(name) = c.strip_prefix("header:") {
            match request::header(name) {
                Some(v) => (c, v),
                None => ("client-ip", client_ip()),
            }
        } else {
            ("client-ip", client_ip())
        };
        let key = format!("bucket:{kind}:{value}");
        if key.len() > MAX_KEY {
            format!("bucket:{kind}:#{}", fnv(&value))
        } else {
            key
        }
    }

    fn take(&self, key: &str) -> Result<Verdict, String> {
        let burst = f64::from(self.config.burst);
        let rate = self.config.rate_per_second;
        // Keep a bucket twice as long as it takes to fill up; an absent bucket is full.
        let ttl = Duration::from_secs_f64((burst / rate * 2.0).clamp(1.0, 365.0 * 86400.0));
        for _ in 0..CAS_ATTEMPTS {
            let current = kv::get(key).map_err(|e| format!("{e:?}"))?;
            let now = now_ms();
            // A missing or unreadable bucket is full.
            let (tokens, at) = current.as_deref().and_then(parse).unwrap_or((burst, now));
            // Another gateway's clock may be ahead: never move the bucket's time backwards, or
            // the next reader would count the same refill twice.
            let now = now.max(at);
            let elapsed = (now - at) as f64 / 1000.0;
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

    fn new(mut config: Config) -> Result<Self, String> {
        if config.burst == 0 {
            return Err("`burst` must be at least 1".into());
        }
        if !(config.rate_per_second > 0.0 && config.rate_per_second.is_finite()) {
            return Err("`rate_per_second` must be a positive number".into());
        }
        match config.key.strip_prefix("header:") {
            Some(name) if is_token(name) && name.len() <= 256 => {
                config.key = config.key.to_ascii_lowercase();
            }
            Some(name) => return Err(format!("`key`: invalid header name {name:?}")),
            None if config.key == "principal" || config.key == "client-ip" => {}
            None => {
                return Err(format!(
                    "`key` must be \"principal\", \"client-ip\" or \"header:<name>\", not {:?}",
                    config.key
                ));
            }
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
