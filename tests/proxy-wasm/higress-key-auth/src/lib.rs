//! A Higress-style key-auth plugin: Higress's key-auth configuration shape (`consumers`, `keys`,
//! `in_header`) and its consumer header `x-mse-consumer`, extended with a remote key check over an
//! HTTP call (its verdicts cached in shared data) and a per-consumer request quota kept in shared
//! data with a compare-and-swap loop.
//!
//! ```json
//! {"consumers": [{"name": "alice", "credential": "k-alice"}], "keys": ["x-api-key"],
//!  "in_header": true, "auth_cluster": "auth", "auth_path": "/verify", "quota": 3}
//! ```
//!
//! - The key is read from the first of `keys` present on the request; none → 401.
//! - A configured credential names its consumer. Any other key is looked up in shared data under
//!   `key-auth/<key>`: a consumer name, or `!denied`. Unknown there and with `auth_cluster`, the
//!   request pauses while `GET <auth_path>` with `x-api-key: <key>` asks the cluster: 200 names
//!   the consumer (the answer's body, trimmed), anything else denies; the verdict is cached.
//! - With `quota`, each consumer may pass `quota` requests (counted in shared data under
//!   `key-auth/quota/<consumer>`); past it → 429.
//! - An admitted request goes on with `x-mse-consumer: <consumer>` and without the key header.
//! - Every response gets `x-key-auth-version: 1` (`2` when built with the feature `v2`; both
//!   variants use the same shared-data keys, so one can replace the other in place).

use log::{error, info, warn};
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

#[cfg(not(feature = "v2"))]
const VERSION: &str = "1";
#[cfg(feature = "v2")]
const VERSION: &str = "2";

/// Sent with every refusal, as Higress's key-auth does (`WWW-Authenticate: Key realm=...`).
const PROTECTION_SPACE: &str = "Key realm=MSE Gateway";
/// What shared data holds for a key the auth cluster refused.
const DENIED: &str = "!denied";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Consumer {
    name: String,
    credential: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct KeyAuthConfig {
    #[serde(default)]
    consumers: Vec<Consumer>,
    keys: Vec<String>,
    #[serde(default = "yes")]
    in_header: bool,
    auth_cluster: Option<String>,
    #[serde(default = "default_auth_path")]
    auth_path: String,
    quota: Option<u64>,
}

fn yes() -> bool {
    true
}

fn default_auth_path() -> String {
    "/".to_string()
}

/// The configuration checked and indexed by credential.
#[derive(Debug)]
struct Plugin {
    config: KeyAuthConfig,
    credential_to_name: HashMap<String, String>,
}

impl Plugin {
    fn parse(bytes: &[u8]) -> Result<Plugin, String> {
        let config: KeyAuthConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if config.keys.is_empty() || config.keys.iter().any(String::is_empty) {
            return Err("keys cannot be empty".into());
        }
        if !config.in_header {
            return Err("only in_header is supported".into());
        }
        if config.consumers.is_empty() && config.auth_cluster.is_none() {
            return Err("consumers cannot be empty without auth_cluster".into());
        }
        let mut credential_to_name = HashMap::new();
        for c in &config.consumers {
            if c.name.is_empty() || c.name.starts_with('!') {
                return Err(format!("bad consumer name {:?}", c.name));
            }
            if c.credential.is_empty() {
                return Err(format!("consumer {} has no credential", c.name));
            }
            if credential_to_name
                .insert(c.credential.clone(), c.name.clone())
                .is_some()
            {
                return Err(format!("duplicate consumer credential: {}", c.credential));
            }
        }
        Ok(Plugin {
            config,
            credential_to_name,
        })
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { plugin: None }) });
}}

struct Root {
    plugin: Option<Rc<Plugin>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            error!("key-auth: no configuration");
            return false;
        };
        match Plugin::parse(&bytes) {
            Ok(plugin) => {
                info!(
                    "key-auth v{VERSION}: {} consumers, keys {:?}, auth cluster {:?}, quota {:?}",
                    plugin.config.consumers.len(),
                    plugin.config.keys,
                    plugin.config.auth_cluster,
                    plugin.config.quota
                );
                self.plugin = Some(Rc::new(plugin));
                true
            }
            Err(e) => {
                error!("key-auth: bad configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(KeyAuth {
            context_id,
            plugin: self.plugin.clone(),
            key_header: String::new(),
            key: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct KeyAuth {
    context_id: u32,
    /// None when the configuration was refused: then every request is refused too (the SDK
    /// panics if create_http_context returns None, so the context exists all the same).
    plugin: Option<Rc<Plugin>>,
    /// The request header the key was read from, and the key.
    key_header: String,
    key: String,
}

fn json_message(message: &str) -> Vec<u8> {
    serde_json::json!({ "message": message })
        .to_string()
        .into_bytes()
}

impl KeyAuth {
    fn deny(&self, status: u32, message: &str) {
        info!("#{} key-auth: {status} {message}", self.context_id);
        self.send_http_response(
            status,
            vec![
                ("www-authenticate", PROTECTION_SPACE),
                ("content-type", "application/json"),
            ],
            Some(&json_message(message)),
        );
    }

    fn deny_invalid_key(&self) {
        self.deny(401, "Request denied by Key Auth check. Invalid API key");
    }

    /// Counts the request against the consumer's quota; true when it is within it.
    fn within_quota(&self, consumer: &str) -> bool {
        let Some(quota) = self.plugin.as_ref().and_then(|p| p.config.quota) else {
            return true;
        };
        let key = format!("key-auth/quota/{consumer}");
        loop {
            let (value, cas) = self.get_shared_data(&key);
            let used = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            if used >= quota {
                return false;
            }
            match self.set_shared_data(&key, Some((used + 1).to_string().as_bytes()), cas) {
                Ok(()) => return true,
                Err(Status::CasMismatch) => continue,
                Err(e) => {
                    error!("#{} shared data {key}: {e:?}", self.context_id);
                    return true;
                }
            }
        }
    }

    /// Lets the consumer's request through (Continue), or answers 429 past its quota (Pause).
    fn admit(&self, consumer: &str) -> Action {
        if !self.within_quota(consumer) {
            info!(
                "#{} key-auth: consumer {consumer:?} over quota",
                self.context_id
            );
            self.send_http_response(
                429,
                vec![("content-type", "application/json")],
                Some(&json_message("quota exceeded")),
            );
            return Action::Pause;
        }
        info!(
            "#{} key-auth: consumer {consumer:?} authenticated",
            self.context_id
        );
        self.set_http_request_header("x-mse-consumer", Some(consumer));
        // The upstream never sees the key.
        self.remove_http_request_header(&self.key_header);
        Action::Continue
    }

    fn cache_key(&self) -> String {
        format!("key-auth/{}", self.key)
    }
}

impl Context for KeyAuth {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let status = self.get_http_call_response_header(":status");
        let consumer = match status.as_deref() {
            Some("200") => {
                let body = self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default();
                String::from_utf8_lossy(&body).trim().to_string()
            }
            _ => String::new(),
        };
        let verdict = if consumer.is_empty() || consumer.starts_with('!') {
            warn!(
                "#{} key-auth: auth cluster refused the key ({status:?})",
                self.context_id
            );
            DENIED
        } else {
            &consumer
        };
        // A cache: the last writer wins, so no compare-and-swap.
        if let Err(e) = self.set_shared_data(&self.cache_key(), Some(verdict.as_bytes()), None) {
            error!("#{} key-auth: caching the verdict: {e:?}", self.context_id);
        }
        if verdict == DENIED {
            self.deny_invalid_key();
            return;
        }
        if self.admit(&consumer) == Action::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for KeyAuth {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            error!("#{} key-auth: not configured", self.context_id);
            self.send_http_response(
                500,
                vec![("content-type", "application/json")],
                Some(&json_message("key-auth is not configured")),
            );
            return Action::Pause;
        };
        let found = plugin.config.keys.iter().find_map(|header| {
            self.get_http_request_header(header)
                .filter(|value| !value.is_empty())
                .map(|value| (header.clone(), value))
        });
        let Some((key_header, key)) = found else {
            self.deny(401, "No API key found in request");
            return Action::Pause;
        };
        self.key_header = key_header;
        self.key = key;

        if let Some(name) = plugin.credential_to_name.get(&self.key) {
            return self.admit(name);
        }
        if let Some(cached) = self.get_shared_data(&self.cache_key()).0 {
            let cached = String::from_utf8_lossy(&cached).into_owned();
            if cached == DENIED {
                self.deny_invalid_key();
                return Action::Pause;
            }
            return self.admit(&cached);
        }
        let Some(cluster) = plugin.config.auth_cluster.as_deref() else {
            self.deny_invalid_key();
            return Action::Pause;
        };
        match self.dispatch_http_call(
            cluster,
            vec![
                (":method", "GET"),
                (":path", &plugin.config.auth_path),
                (":authority", cluster),
                ("x-api-key", &self.key),
            ],
            None,
            vec![],
            Duration::from_secs(5),
        ) {
            Ok(_) => {
                info!(
                    "#{} key-auth: asking {cluster} about the key",
                    self.context_id
                );
                Action::Pause
            }
            Err(e) => {
                error!(
                    "#{} key-auth: dispatch_http_call to {cluster}: {e:?}",
                    self.context_id
                );
                self.send_http_response(
                    503,
                    vec![("content-type", "application/json")],
                    Some(&json_message("key auth service unavailable")),
                );
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.add_http_response_header("x-key-auth-version", VERSION);
        Action::Continue
    }
}
