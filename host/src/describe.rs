//! The active configuration's routes, as the admin API's `GET /routes` shows them: each route's
//! match, rewrite, upstream and chain (plugin, instance policy, `on_error`, grants, config), in
//! order. Built once per snapshot from the config it was loaded from.
//!
//! Chain configs may hold credentials (the `api-key` plugin's keys, tokens): values under keys
//! whose names say so are replaced by `"<redacted>"` before they leave the process.

use crate::config::{Config, OnError, PluginConfig, RouteConfig};
use serde_json::{Map, Value, json};

/// Key names whose values are never shown.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "keys",
        "token",
        "tokens",
        "secret",
        "password",
        "credential",
        "authorization",
    ]
    .iter()
    .any(|s| k == *s || k.ends_with(&format!("_{s}")) || k.ends_with(&format!("-{s}")))
}

fn redact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if is_secret(&k) {
                        json!("<redacted>")
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        other => other,
    }
}

fn grants(p: &PluginConfig) -> Value {
    let names = |v: &Option<Vec<toml::Spanned<String>>>| {
        v.as_ref()
            .map(|v| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>())
    };
    let g = &p.capabilities;
    json!({
        "kv": g.kv.as_ref().map(|k| k.get_ref().clone()),
        "outbound": names(&g.outbound),
        "secrets": names(&g.secrets),
        "metrics": g.metrics,
    })
}

fn route(config: &Config, r: &RouteConfig) -> Value {
    let m = &r.matcher;
    let chain: Vec<Value> = r
        .chain
        .iter()
        .map(|e| {
            let e = e.get_ref();
            let name = e.plugin.get_ref();
            let plugin = config.file.plugins.get(name).map(|p| p.get_ref());
            let entry_config = e
                .config
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_else(|| json!({}));
            json!({
                "plugin": name,
                "instances": plugin.map(|p| format!("{:?}", p.instances).to_lowercase()),
                "on_error": match e.on_error {
                    OnError::FailClosed => "fail-closed",
                    OnError::FailOpen => "fail-open",
                },
                "grants": plugin.map(grants),
                "config": redact(entry_config),
            })
        })
        .collect();
    json!({
        "name": r.name.get_ref(),
        "listeners": r.listeners.as_ref().map(|l| l.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>()),
        "match": {
            "host": m.host.as_ref().map(|s| s.get_ref()),
            "path_prefix": m.path_prefix.as_ref().map(|s| s.get_ref()),
            "path": m.path.as_ref().map(|s| s.get_ref()),
            "methods": m.method.as_ref().map(|o| o.to_vec()),
            "headers": m.headers.keys().collect::<Vec<_>>(),
        },
        "rewrite": r.rewrite.as_ref().map(|w| json!({"prefix": w.prefix, "path": w.path})),
        "upstream": r.upstream.as_ref().map(|s| s.get_ref()),
        "chain": chain,
    })
}

/// Every route of `config`, in match order; the listeners (for the admin API's own calls to
/// a route); each plugin's source as configured and whether its signature is required.
pub(crate) fn routes(config: &Config) -> Value {
    let routes: Vec<Value> = config
        .file
        .routes
        .iter()
        .map(|r| route(config, r.get_ref()))
        .collect();
    let listeners: Vec<Value> = config
        .file
        .listeners
        .iter()
        .map(|l| {
            let l = l.get_ref();
            json!({"name": l.name, "address": l.address.get_ref(), "tls": l.tls.is_some()})
        })
        .collect();
    let plugins: Map<String, Value> = config
        .file
        .plugins
        .iter()
        .map(|(name, p)| {
            let p = p.get_ref();
            let source = p.path.get_ref().display().to_string();
            let signed = p
                .verify
                .as_ref()
                .map(|v| v.public_key.get_ref().display().to_string());
            (
                name.clone(),
                json!({"source": source, "signature_key": signed}),
            )
        })
        .collect();
    json!({ "routes": routes, "listeners": listeners, "plugins": plugins })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_chain_configs_are_redacted() {
        let v = redact(json!({"keys": {"k-alice": "alice"}, "allow_bearer": true,
                              "providers": {"oa": {"api_key": "sk-1", "upstream": "oa"}},
                              "monkey": "shown"}));
        assert_eq!(
            v,
            json!({"keys": "<redacted>", "allow_bearer": true,
                   "providers": {"oa": {"api_key": "<redacted>", "upstream": "oa"}},
                   "monkey": "shown"})
        );
    }
}
