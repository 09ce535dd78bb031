//! `router`: picks the upstream in Wasm, by header, path or method rules, then by weighted split.
//!
//! ```toml
//! config = { rules = [{ header = "x-tenant", equals = "beta", upstream = "beta" },
//!                     { path_prefix = "/v2", upstream = "v2" }],
//!            split = [{ upstream = "blue", weight = 90 }, { upstream = "green", weight = 10 }],
//!            split_key = "x-user" }
//! ```
//! Rules are tried in order; the first match routes. `path_prefix` matches at a segment
//! boundary, like the gateway's own (`/v2` matches `/v2/x`, not `/v2beta`). Otherwise `split` picks by weight: sticky by
//! the `split_key` header's value when present, random otherwise. With neither, the route's own
//! upstream is used.

use serde::Deserialize;
use std::hash::{BuildHasher, Hasher};
use weir_sdk::{Decision, Plugin, request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    header: Option<String>,
    /// With `header`: the value must equal this; without it, the header must be present.
    equals: Option<String>,
    path_prefix: Option<String>,
    method: Option<String>,
    upstream: String,
}

impl Rule {
    fn matches(&self) -> bool {
        if let Some(h) = &self.header {
            match (request::header(h), &self.equals) {
                (None, _) => return false,
                (Some(v), Some(want)) if &v != want => return false,
                _ => {}
            }
        }
        if let Some(p) = &self.path_prefix
            && !prefix_matches(p, &request::path())
        {
            return false;
        }
        if let Some(m) = &self.method
            && !request::method().eq_ignore_ascii_case(m)
        {
            return false;
        }
        true
    }
}

/// Like the gateway's `match.path_prefix`: at a segment boundary, query ignored.
fn prefix_matches(prefix: &str, path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or("");
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Split {
    upstream: String,
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    split: Vec<Split>,
    split_key: Option<String>,
}

struct Router {
    config: Config,
    total_weight: u64,
}

/// FNV-1a: stable across instances and gateway restarts, so splits stay sticky.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl Plugin for Router {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        for (i, r) in config.rules.iter().enumerate() {
            if r.header.is_none() && r.path_prefix.is_none() && r.method.is_none() {
                return Err(format!(
                    "rules[{i}] has no condition (header, path_prefix or method)"
                ));
            }
            if r.equals.is_some() && r.header.is_none() {
                return Err(format!("rules[{i}]: `equals` needs `header`"));
            }
        }
        let total_weight: u64 = config.split.iter().map(|s| u64::from(s.weight)).sum();
        if !config.split.is_empty() && total_weight == 0 {
            return Err("split weights add up to 0".into());
        }
        if config.rules.is_empty() && config.split.is_empty() {
            return Err("nothing to route: give `rules` or `split`".into());
        }
        Ok(Router {
            config,
            total_weight,
        })
    }

    fn on_request(&mut self) -> Decision {
        if let Some(rule) = self.config.rules.iter().find(|r| r.matches()) {
            return Decision::Route(rule.upstream.clone());
        }
        if self.config.split.is_empty() {
            return Decision::Continue;
        }
        let point = match self.config.split_key.as_deref().and_then(request::header) {
            Some(key) => fnv1a(&key),
            None => {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u64(0);
                h.finish()
            }
        } % self.total_weight;
        let mut acc = 0;
        for s in &self.config.split {
            acc += u64::from(s.weight);
            if point < acc {
                return Decision::Route(s.upstream.clone());
            }
        }
        Decision::Continue
    }
}

weir_sdk::plugin!(Router);
