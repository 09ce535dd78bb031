//! `jwt-auth`: an OAuth 2.1 resource server. It validates `Authorization: Bearer` JWTs (RS256,
//! ES256, EdDSA; HS256 with a secret) against a JWKS given inline or fetched from a named
//! upstream (cached in `kv`, refetched on an unknown `kid` for key rotation), checks issuer,
//! audience, `exp` and `nbf` (whole or fractional seconds) with leeway and the route's required
//! scopes, and puts the principal and chosen claims in the request context for the plugins after
//! it. Tokens with a `crit` header are refused: no JOSE extension is supported.
//!
//! Refusals follow RFC 6750 and the MCP authorization spec: 401 with
//! `WWW-Authenticate: Bearer resource_metadata="…"` (plus `error="invalid_token"` when a token was
//! sent), 403 with `error="insufficient_scope"`. It also serves the RFC 9728 protected-resource
//! metadata at `/.well-known/oauth-protected-resource[/<path>]` for routes that reach it.

#![forbid(unsafe_code)]

pub mod jwks;
pub mod jwt;

use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_sdk::{Decision, LocalResponse, Plugin, context, kv, log, outbound, request, secrets};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Required `iss`.
    issuer: Option<String>,
    /// Accepted `aud` values; defaults to `resource` (RFC 8707: tokens minted for this resource).
    #[serde(default)]
    audiences: Vec<String>,
    /// This resource's canonical URI, e.g. `https://gw.example.com/mcp`.
    resource: Option<String>,
    /// A JWKS document inline (`{ keys = [...] }`).
    jwks: Option<Value>,
    /// Or the upstream serving it, fetched through `outbound`.
    jwks_upstream: Option<String>,
    #[serde(default = "default_jwks_path")]
    jwks_path: String,
    /// How long a fetched JWKS is used before fetching it again.
    #[serde(default = "default_refresh")]
    jwks_refresh_s: u64,
    /// A secret (from `secrets`) for HS256 tokens; off by default.
    hs256_secret: Option<String>,
    #[serde(default = "default_leeway")]
    leeway_s: i64,
    /// Scopes every token must carry on this route.
    #[serde(default)]
    required_scopes: Vec<String>,
    /// The claim that becomes the principal.
    #[serde(default = "default_principal_claim")]
    principal_claim: String,
    /// Claims copied to the context as `jwt.<claim>` (strings as they are, others as JSON).
    #[serde(default)]
    context_claims: Vec<String>,
    /// For the protected-resource metadata.
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    /// Longer tokens are refused before any parsing.
    #[serde(default = "default_max_token")]
    max_token_bytes: usize,
    /// Pass the token on to the upstream (off: it is removed, so it cannot be replayed there).
    #[serde(default)]
    forward_token: bool,
}

fn default_jwks_path() -> String {
    "/.well-known/jwks.json".into()
}
fn default_refresh() -> u64 {
    300
}
fn default_leeway() -> i64 {
    60
}
fn default_principal_claim() -> String {
    "sub".into()
}
fn default_max_token() -> usize {
    8192
}

const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

struct JwtAuth {
    config: Config,
    /// Inline keys, parsed once.
    inline: Vec<jwks::Key>,
    /// Fetched keys and when they were fetched (pooled instances keep them).
    fetched: Vec<jwks::Key>,
    fetched_at: Option<std::time::Instant>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `scheme://authority` and path of an absolute URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let after = url.find("://")? + 3;
    Some(match url[after..].find('/') {
        Some(i) => (&url[..after + i], &url[after + i..]),
        None => (url, ""),
    })
}

impl JwtAuth {
    /// Where this resource's RFC 9728 metadata is.
    fn metadata_url(&self) -> String {
        match self.config.resource.as_deref().and_then(split_url) {
            Some((origin, path)) => format!("{origin}{PRM_PATH}{}", path.trim_end_matches('/')),
            None => {
                let scheme = request::header("x-forwarded-proto").unwrap_or_else(request::scheme);
                let host = request::authority().unwrap_or_else(|| "localhost".into());
                format!("{scheme}://{host}{PRM_PATH}")
            }
        }
    }

    fn challenge(&self, status: u16, error: Option<(&str, &str)>) -> Decision {
        let mut h = format!("Bearer resource_metadata=\"{}\"", self.metadata_url());
        if !self.config.required_scopes.is_empty() {
            h.push_str(&format!(
                ", scope=\"{}\"",
                self.config.required_scopes.join(" ")
            ));
        }
        if let Some((code, description)) = error {
            let clean: String = description
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            h.push_str(&format!(
                ", error=\"{code}\", error_description=\"{clean}\""
            ));
        }
        let body = json!({"error": error.map_or("unauthorized", |e| e.0),
                          "error_description": error.map(|e| e.1)});
        Decision::Respond(
            LocalResponse::new(status)
                .header("www-authenticate", h)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    fn metadata(&self) -> Decision {
        let resource = self.config.resource.clone().unwrap_or_else(|| {
            let url = self.metadata_url();
            url.replacen(PRM_PATH, "", 1)
        });
        Decision::Respond(LocalResponse::new(200).json(&json!({
            "resource": resource,
            "authorization_servers": self.config.authorization_servers,
            "scopes_supported": self.config.scopes_supported,
            "bearer_methods_supported": ["header"],
        })))
    }

    /// Fetches the JWKS document (from `kv` unless `force`, then from the upstream).
    fn fetch(&mut self, force: bool) {
        let Some(upstream) = self.config.jwks_upstream.clone() else {
            return;
        };
        let key = format!("jwks:{upstream}{}", self.config.jwks_path);
        let ttl = Duration::from_secs(self.config.jwks_refresh_s.max(1));
        let cached = if force {
            None
        } else {
            kv::get(&key).ok().flatten()
        };
        let doc = match cached {
            Some(doc) => doc,
            None => {
                let fetched = outbound::send(
                    outbound::Request::get(&upstream, &self.config.jwks_path).timeout_ms(2000),
                )
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|r| r.read_body(1 << 20).ok());
                let Some(doc) = fetched else {
                    log::warn(&format!(
                        "jwt-auth: cannot fetch the JWKS from upstream \"{upstream}\"; keeping the keys I have"
                    ));
                    return;
                };
                let _ = kv::set(&key, &doc, Some(ttl));
                doc
            }
        };
        match jwks::parse(&doc) {
            Ok((keys, skipped)) => {
                for s in skipped {
                    log::warn(&format!("jwt-auth: JWKS {s}; skipped"));
                }
                self.fetched = keys;
                self.fetched_at = Some(std::time::Instant::now());
            }
            Err(e) => log::warn(&format!("jwt-auth: {e}; keeping the keys I have")),
        }
    }

    /// A forced refetch at most every 10 s across instances, so unknown `kid`s cannot be used to
    /// hammer the identity provider.
    fn may_force(&self) -> bool {
        let Some(upstream) = &self.config.jwks_upstream else {
            return false;
        };
        kv::compare_and_swap(
            &format!("jwks-forced:{upstream}"),
            None,
            b"1",
            Some(Duration::from_secs(10)),
        )
        .unwrap_or(false)
    }

    fn find(&self, kid: Option<&str>) -> Option<&jwks::Key> {
        jwks::find(&self.inline, kid).or_else(|| jwks::find(&self.fetched, kid))
    }

    fn authenticate(&mut self, token: &str) -> Result<Value, jwt::TokenError> {
        if token.len() > self.config.max_token_bytes {
            return Err(jwt::TokenError::Malformed("token too long"));
        }
        let parsed = jwt::parse(token)?;
        let stale = self
            .fetched_at
            .is_none_or(|t| t.elapsed() > Duration::from_secs(self.config.jwks_refresh_s));
        if self.config.jwks_upstream.is_some() && stale {
            self.fetch(false);
        }
        let hmac;
        let key = if parsed.alg == "HS256" {
            let secret = self
                .config
                .hs256_secret
                .as_deref()
                .and_then(|name| secrets::get(name).ok())
                .ok_or_else(|| jwt::TokenError::UnsupportedAlg("HS256 (not enabled)".into()))?;
            hmac = jwks::Key {
                kid: None,
                material: jwks::KeyMaterial::Hmac(secret.into_bytes()),
            };
            &hmac
        } else {
            if self.find(parsed.kid.as_deref()).is_none() && self.may_force() {
                log::info(&format!(
                    "jwt-auth: unknown key id {:?}; refetching the JWKS",
                    parsed.kid
                ));
                self.fetch(true);
            }
            self.find(parsed.kid.as_deref())
                .ok_or_else(|| jwt::TokenError::UnknownKey(parsed.kid.clone()))?
        };
        jwt::verify(&parsed, key)?;
        let audiences: Vec<String> = if self.config.audiences.is_empty() {
            self.config.resource.iter().cloned().collect()
        } else {
            self.config.audiences.clone()
        };
        jwt::check_claims(
            &parsed.claims,
            &jwt::Expect {
                issuer: self.config.issuer.as_deref(),
                audiences: &audiences,
                now: now(),
                leeway: self.config.leeway_s,
            },
        )?;
        Ok(parsed.claims)
    }
}

impl Plugin for JwtAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let inline = match &config.jwks {
            Some(doc) => {
                let (keys, skipped) = jwks::parse(doc.to_string().as_bytes())?;
                if let Some(s) = skipped.first() {
                    return Err(format!("`jwks`: {s}"));
                }
                keys
            }
            None => Vec::new(),
        };
        if config.jwks.is_none() && config.jwks_upstream.is_none() && config.hs256_secret.is_none()
        {
            return Err("give `jwks`, `jwks_upstream` or `hs256_secret`: there is nothing to verify tokens with".into());
        }
        if let Some(r) = &config.resource
            && split_url(r).is_none()
        {
            return Err(format!("`resource` must be an absolute URL, got {r:?}"));
        }
        Ok(JwtAuth {
            config,
            inline,
            fetched: Vec::new(),
            fetched_at: None,
        })
    }

    fn on_request(&mut self) -> Decision {
        if request::method() == "GET" && request::path().starts_with(PRM_PATH) {
            return self.metadata();
        }
        let Some(header) = request::header("authorization") else {
            return self.challenge(401, None);
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
        else {
            return self.challenge(401, Some(("invalid_request", "use the Bearer scheme")));
        };
        let claims = match self.authenticate(token) {
            Ok(c) => c,
            Err(e) => {
                log::info(&format!("jwt-auth: refused a token: {e}"));
                return self.challenge(401, Some(("invalid_token", &e.to_string())));
            }
        };
        let scopes = jwt::scopes(&claims);
        let missing: Vec<&String> = self
            .config
            .required_scopes
            .iter()
            .filter(|s| !scopes.contains(s))
            .collect();
        if !missing.is_empty() {
            let m: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return self.challenge(
                403,
                Some((
                    "insufficient_scope",
                    &format!("missing scope {}", m.join(" ")),
                )),
            );
        }
        if let Some(p) = claims[&self.config.principal_claim].as_str() {
            context::set_principal(p);
        }
        for name in &self.config.context_claims {
            match &claims[name] {
                Value::Null => {}
                Value::String(s) => context::set(&format!("jwt.{name}"), s),
                other => context::set(&format!("jwt.{name}"), &other.to_string()),
            }
        }
        context::set("jwt.scope", &scopes.join(" "));
        if !self.config.forward_token {
            let _ = request::remove_header("authorization");
        }
        Decision::Continue
    }
}

weir_sdk::plugin!(JwtAuth);
