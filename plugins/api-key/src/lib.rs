//! `api-key`: authenticates requests by API key and puts the key's principal in the context.
//!
//! ```toml
//! chain = [{ plugin = "api-key", config = { keys = { "k-123" = "alice" } } }]
//! ```
//! Config: `keys` (key → principal, required), `header` (default `x-api-key`), `allow_bearer`
//! (also accept `Authorization: Bearer <key>`, default false), `forward_key` (pass the key
//! upstream, default false), `realm` (default `weir`). A missing or unknown key gets 401 with
//! `WWW-Authenticate`.

use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::{Decision, LocalResponse, Plugin, context, request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    keys: BTreeMap<String, String>,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    allow_bearer: bool,
    #[serde(default)]
    forward_key: bool,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_header() -> String {
    "x-api-key".into()
}
fn default_realm() -> String {
    "weir".into()
}

struct ApiKey(Config);

impl ApiKey {
    fn unauthorized(&self, code: &str, message: &str) -> Decision {
        let challenge = format!(
            "ApiKey realm=\"{}\", header=\"{}\"",
            self.0.realm, self.0.header
        );
        Decision::Respond(
            LocalResponse::new(401)
                .header("www-authenticate", challenge)
                .json(&error_body(code, message)),
        )
    }

    /// The key and the header it came in.
    fn presented_key(&self) -> Option<(String, &str)> {
        if let Some(k) = request::header(&self.0.header) {
            return Some((k, &self.0.header));
        }
        if self.0.allow_bearer {
            let auth = request::header("authorization")?;
            let (scheme, token) = auth.split_once(' ')?;
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some((token.trim().to_string(), "authorization"));
            }
        }
        None
    }
}

/// The JSON error body: `{"error": code, "message": message}`.
fn error_body(code: &str, message: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("error", code.to_string()),
        ("message", message.to_string()),
    ])
}

impl Plugin for ApiKey {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.keys.is_empty() {
            return Err("`keys` is empty: no request could ever pass".into());
        }
        if config.keys.keys().any(|k| k.is_empty()) {
            return Err("`keys` contains an empty key".into());
        }
        Ok(ApiKey(config))
    }

    fn on_request(&mut self) -> Decision {
        let Some((key, header)) = self.presented_key() else {
            return self.unauthorized("missing_api_key", "an API key is required");
        };
        let Some(principal) = self.0.keys.get(&key) else {
            return self.unauthorized("invalid_api_key", "the API key is not valid");
        };
        context::set_principal(principal);
        if !self.0.forward_key {
            let _ = request::remove_header(header);
        }
        Decision::Continue
    }
}

weir_sdk::plugin!(ApiKey);
