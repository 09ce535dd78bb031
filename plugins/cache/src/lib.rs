//! `cache`: an exact response cache in the `kv` capability, keyed by path and query plus the
//! request headers listed in `vary`.
//!
//! Only `GET` and `HEAD` are served from the cache (a `HEAD` reads the `GET` entry and gets its
//! headers without the body); other methods pass through with `x-weir-cache: bypass`. A hit is
//! answered by the plugin with the stored status, headers and body plus `x-weir-cache: hit` and
//! `age` (whole seconds since it was stored); the upstream is not called. A miss goes upstream,
//! gets `x-weir-cache: miss`, and a `GET` is stored for `ttl_ms` if its status is in `statuses`
//! and it has neither `cache-control: no-store`/`private` nor `set-cookie`. Hop-by-hop headers and
//! `content-length` are not stored. With the Redis backend the cache is shared by every replica.
//!
//! The kv key is `resp:GET <path and query>` followed by `\n<name>=<value>` per `vary` header
//! (its values joined with `,`; absent reads as empty), replaced by `resp:<SHA-256 hex>` when
//! longer than 900 bytes. It names neither the route nor the host: routes that answer the same
//! path differently must use different kv namespaces.
//!
//! The response body is buffered (`max_body`, default 1 MiB, at most kv's 1 MiB value limit) so
//! it can be stored: a larger upstream body fails the request with **502** (the host's rule for
//! `buffered` bodies), so put the cache only on routes whose responses fit. An entry that is over
//! the kv value limit once its headers are added is not stored. A kv error is logged and treated
//! as a miss: the cache never fails a request.
//!
//! Config: `ttl_ms` (required, > 0), `vary` (header names, default none), `max_body` (bytes,
//! default 1048576), `statuses` (default `[200]`). Needs `capabilities = { kv = "<namespace>" }`.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_sdk::{
    BodyAccess, Decision, Info, LocalResponse, Plugin, ResponseDecision, kv, log, request, response,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    ttl_ms: u64,
    #[serde(default)]
    vary: Vec<String>,
    #[serde(default = "default_max_body")]
    max_body: u32,
    #[serde(default = "default_statuses")]
    statuses: Vec<u16>,
}

fn default_max_body() -> u32 {
    1 << 20
}
fn default_statuses() -> Vec<u16> {
    vec![200]
}

/// Headers never stored: they describe one connection or one message's framing, or are added
/// by this plugin when the entry is served.
const SKIP: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "x-weir-cache",
    "age",
];

/// kv's limit on one value, in bytes.
const MAX_VALUE: usize = 1 << 20;

enum State {
    Bypass,
    Miss(String),
    Hit,
}

struct Cache {
    config: Config,
    state: State,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The kv key for a request's path and query and its `vary` headers (name, values joined).
/// A long key is replaced by its SHA-256: with a non-cryptographic hash a client could craft a
/// request whose key collides with another's and poison that cached answer.
fn kv_key(path: &str, vary: &[(&str, String)]) -> String {
    let mut key = format!("resp:GET {path}");
    for (name, value) in vary {
        key.push_str(&format!("\n{}={value}", name.to_ascii_lowercase()));
    }
    if key.len() > 900 {
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("resp:{hex}")
    } else {
        key
    }
}

/// Whether `s` is a valid HTTP field name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A stored response: `status\nstored_at_ms\nheader-count\n` then `name: value\n` per header,
/// then the body.
struct Entry {
    status: u16,
    stored_at: u64,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.status,
            self.stored_at,
            self.headers.len()
        );
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut rest = bytes;
        let mut line = || {
            let i = rest.iter().position(|&b| b == b'\n')?;
            let l = std::str::from_utf8(&rest[..i]).ok()?.to_string();
            rest = &rest[i + 1..];
            Some(l)
        };
        let status = line()?.parse().ok()?;
        let stored_at = line()?.parse().ok()?;
        let n: usize = line()?.parse().ok()?;
        let mut headers = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let l = line()?;
            let (k, v) = l.split_once(": ")?;
            headers.push((k.to_string(), v.to_string()));
        }
        Some(Entry {
            status,
            stored_at,
            headers,
            body: rest.to_vec(),
        })
    }
}

impl Cache {
    fn key(&self) -> String {
        let vary: Vec<(&str, String)> = self
            .config
            .vary
            .iter()
            .map(|name| (name.as_str(), request::header_all(name).join(",")))
            .collect();
        kv_key(&request::path(), &vary)
    }

    fn storable(&self) -> bool {
        if !self.config.statuses.contains(&response::status()) {
            return false;
        }
        if response::header("set-cookie").is_some() {
            return false;
        }
        !response::header_all("cache-control").iter().any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("no-store") || v.contains("private")
        })
    }
}

impl Plugin for Cache {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.ttl_ms == 0 {
            return Err("`ttl_ms` must be greater than 0".into());
        }
        if config.max_body == 0 || config.max_body as usize > MAX_VALUE {
            return Err(format!(
                "`max_body` must be between 1 and {MAX_VALUE} bytes (kv's limit on a value), got {}",
                config.max_body
            ));
        }
        if config.statuses.is_empty() {
            return Err("`statuses` is empty: nothing would ever be cached".into());
        }
        if let Some(s) = config.statuses.iter().find(|s| !(100..=999).contains(*s)) {
            return Err(format!("`statuses`: {s} is not an HTTP status code"));
        }
        if let Some(name) = config.vary.iter().find(|n| !is_token(n)) {
            return Err(format!("`vary`: invalid header name {name:?}"));
        }
        Ok(Cache {
            config,
            state: State::Bypass,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            response_body: BodyAccess::Buffered(self.config.max_body),
            ..Info::default()
        }
    }

    fn on_request(&mut self) -> Decision {
        let method = request::method();
        if method != "GET" && method != "HEAD" {
            self.state = State::Bypass;
            return Decision::Continue;
        }
        let key = self.key();
        match kv::get(&key) {
            Ok(Some(bytes)) => {
                if let Some(entry) = Entry::decode(&bytes) {
                    self.state = State::Hit;
                    let age = now_ms().saturating_sub(entry.stored_at) / 1000;
                    let mut r = LocalResponse::new(entry.status);
                    for (k, v) in entry.headers {
                        r = r.header(k, v);
                    }
                    let body = if method == "HEAD" {
                        Vec::new()
                    } else {
                        entry.body
                    };
                    return Decision::Respond(
                        r.header("x-weir-cache", "hit")
                            .header("age", age.to_string())
                            .body(body),
                    );
                }
                log::warn(&format!(
                    "unreadable cache entry {key:?}; treated as a miss"
                ));
            }
            Ok(None) => {}
            Err(e) => log::warn(&format!("cache lookup failed, treated as a miss: {e:?}")),
        }
        self.state = State::Miss(key);
        Decision::Continue
    }

    fn on_response(&mut self) -> ResponseDecision {
        match std::mem::replace(&mut self.state, State::Bypass) {
            State::Hit => {}
            State::Bypass => {
                let _ = response::set_header("x-weir-cache", "bypass");
            }
            State::Miss(key) => {
                if request::method() == "GET" && self.storable() {
                    let entry = Entry {
                        status: response::status(),
                        stored_at: now_ms(),
                        headers: response::headers()
                            .into_iter()
                            .filter(|(k, _)| !SKIP.contains(&k.as_str()))
                            .collect(),
                        body: response::body().unwrap_or_default(),
                    };
                    let value = entry.encode();
                    let ttl = Duration::from_millis(self.config.ttl_ms);
                    if value.len() > MAX_VALUE {
                        log::debug(&format!(
                            "response for {key:?} not cached: {} bytes with headers, over kv's limit",
                            value.len()
                        ));
                    } else if let Err(e) = kv::set(&key, &value, Some(ttl)) {
                        log::warn(&format!("cache store failed: {e:?}"));
                    }
                }
                let _ = response::set_header("x-weir-cache", "miss");
            }
        }
        ResponseDecision::Continue
    }
}

weir_sdk::plugin!(Cache);

#[cfg(test)]
mod tests {
    use super::*;

    /// The FNV-1a 64 digest long keys were once replaced by.
    fn fnv1a64(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// Two paths over 900 bytes whose keys collide under FNV-1a 64 (found offline with Pollard's
    /// rho over the last 11 characters); any common suffix keeps them colliding.
    fn colliding_paths(suffix: &str) -> (String, String) {
        let pad = "a".repeat(1000);
        (
            format!("/{pad}?v=74K-Z9fCi2F{suffix}"),
            format!("/{pad}?v=GRLOwVFEPPH{suffix}"),
        )
    }

    #[test]
    fn long_keys_that_collide_under_fnv_get_different_kv_keys() {
        for suffix in ["", "&page=2"] {
            let (a, b) = colliding_paths(suffix);
            assert_ne!(a, b);
            assert_eq!(
                fnv1a64(&format!("resp:GET {a}")),
                fnv1a64(&format!("resp:GET {b}")),
                "the inputs collide under FNV-1a 64"
            );
            assert_ne!(kv_key(&a, &[]), kv_key(&b, &[]));
        }
    }

    #[test]
    fn long_keys_are_replaced_by_their_sha256() {
        // Digests computed independently (Python's hashlib) over the whole key text.
        let path = format!("/{}", "a".repeat(1000));
        assert_eq!(
            kv_key(&path, &[]),
            "resp:6762b9626d9263ba0f378e8c3fdd03948f6126a19079229141688c3f847025e4"
        );
        assert_eq!(
            kv_key(&path, &[("Accept", "text/html".into())]),
            "resp:23a60703baa86c569bb1fca00ab79bd716313af2b6c45f4900f80f2f58554e74"
        );
        let (a, b) = colliding_paths("");
        assert_eq!(
            (kv_key(&a, &[]), kv_key(&b, &[])),
            (
                "resp:7fbaac16b03dc0b009025d5fbabf463a559660863a5b5bfa4d26dce0481eae01".into(),
                "resp:dd7060f3211da723ee8ab51f37a1a4029089ce4ffe1230ad73ba586ba418b328".into()
            )
        );
    }

    #[test]
    fn short_keys_are_kept_verbatim_with_their_vary_headers() {
        assert_eq!(
            kv_key(
                "/items?limit=10",
                &[("Accept", "text/html".into()), ("x-tenant", String::new())]
            ),
            "resp:GET /items?limit=10\naccept=text/html\nx-tenant="
        );
        // 900 bytes is still verbatim; one more is hashed.
        let path = format!("/{}", "b".repeat(890));
        assert_eq!(kv_key(&path, &[]), format!("resp:GET {path}"));
        assert_eq!(kv_key(&format!("{path}b"), &[]).len(), "resp:".len() + 64);
    }
}
