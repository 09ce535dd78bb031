//! Methods answered by asking every server (`*/list`) or the one a name points at
//! (`resources/read`, `prompts/get`), through `outbound`.

use crate::config::Config;
use crate::names;
use crate::upstream::{Hop, HopError};
use serde_json::{Value, json};
use weir_sdk::log;

/// What a `*/list` method lists, and how its items are named.
pub struct Listing {
    /// The result field holding the items (`tools`, `resources`, ...).
    pub field: &'static str,
    pub naming: Naming,
}

pub enum Naming {
    /// `name` gets the server prefix (tools, prompts).
    Name,
    /// `uri` becomes `<server>+<uri>` (resources).
    Uri,
    /// `uriTemplate` becomes `<server>+<template>` (resource templates).
    Template,
}

pub fn listing(method: &str) -> Option<Listing> {
    let (field, naming) = match method {
        "tools/list" => ("tools", Naming::Name),
        "prompts/list" => ("prompts", Naming::Name),
        "resources/list" => ("resources", Naming::Uri),
        "resources/templates/list" => ("resourceTemplates", Naming::Template),
        _ => return None,
    };
    Some(Listing { field, naming })
}

/// The most pages followed per server, so a server handing out endless cursors cannot hold
/// the request forever.
const MAX_PAGES: usize = 1000;

/// Lists `method` on every server, each followed through all its pages, renamed and merged in
/// server order. A server that fails is logged and left out; `Err` only if all failed.
pub fn list_all(
    config: &Config,
    scope: &str,
    method: &str,
    listing: &Listing,
) -> Result<Vec<Value>, String> {
    let hops: Vec<Hop> = config
        .servers
        .keys()
        .filter_map(|name| Hop::new(config, name, scope))
        .collect();
    // First pages concurrently; the host runs the calls in parallel.
    let first: Vec<_> = hops.iter().map(|h| h.start(method, json!({}))).collect();
    let mut merged = Vec::new();
    let mut failures = Vec::new();
    for (hop, started) in hops.iter().zip(first) {
        match started
            .and_then(|p| hop.finish(p))
            .and_then(|page| drain(hop, method, listing, page))
        {
            Ok(items) => merged.extend(items),
            Err(e) => {
                let (_, message, _) = e.to_error(hop.name);
                log::warn(&format!(
                    "mcp-gateway: {method} left out server \"{}\": {message}",
                    hop.name
                ));
                failures.push(message);
            }
        }
    }
    if failures.len() == hops.len() {
        return Err(failures.join("; "));
    }
    Ok(merged)
}

/// The items of `page` and of every page after it, renamed.
fn drain(
    hop: &Hop,
    method: &str,
    listing: &Listing,
    mut page: Value,
) -> Result<Vec<Value>, HopError> {
    let mut items = Vec::new();
    for _ in 0..MAX_PAGES {
        if let Some(Value::Array(list)) = page.get_mut(listing.field).map(Value::take) {
            items.extend(list.into_iter().map(|item| rename(hop, listing, item)));
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(cursor) if !cursor.is_empty() => {
                page = hop.call(method, json!({"cursor": cursor}))?;
            }
            _ => return Ok(items),
        }
    }
    Err(HopError::Unavailable(format!(
        "more than {MAX_PAGES} pages"
    )))
}

fn rename(hop: &Hop, listing: &Listing, mut item: Value) -> Value {
    let config_sep = hop.separator().to_string();
    let (field, uri) = match listing.naming {
        Naming::Name => ("name", false),
        Naming::Uri => ("uri", true),
        Naming::Template => ("uriTemplate", true),
    };
    if let Some(Value::String(original)) = item.get(field).cloned() {
        let public = if uri {
            names::public_uri(hop.name, &original)
        } else {
            let (public, shortened) = names::public(hop.name, &config_sep, &original);
            if shortened {
                names::remember(&public, &original);
            }
            public
        };
        item[field] = Value::String(public);
    }
    item
}

/// A JSON-RPC error: code, message, data.
pub type RpcError = (i64, String, Option<Value>);

/// The hop to the server a public name resolved to, and the name on that server.
pub fn target<'a>(
    config: &'a Config,
    scope: &'a str,
    resolved: Option<(String, String)>,
    what: &str,
    public: &str,
) -> Result<(Hop<'a>, String), RpcError> {
    resolved
        .and_then(|(server, original)| {
            let (name, _) = config.servers.get_key_value(&server)?;
            Some((Hop::new(config, name, scope)?, original))
        })
        .ok_or_else(|| {
            (
                weir_wire::jsonrpc::INVALID_PARAMS,
                format!("Unknown {what}: {public}"),
                None,
            )
        })
}

fn name_param(params: &Value, key: &str) -> String {
    params
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `resources/read` on the server the URI names; `contents[].uri` renamed back.
pub fn read_resource(config: &Config, scope: &str, mut params: Value) -> Result<Value, RpcError> {
    let public = name_param(&params, "uri");
    let resolved = names::resolve_uri(&public, config.servers.keys());
    let (hop, uri) = target(config, scope, resolved, "resource", &public)?;
    params["uri"] = Value::String(uri);
    crate::upstream::strip_modern_meta(&mut params);
    let mut result = hop
        .call("resources/read", params)
        .map_err(|e| e.to_error(hop.name))?;
    if let Some(Value::Array(contents)) = result.get_mut("contents") {
        for c in contents {
            if let Some(Value::String(u)) = c.get("uri").cloned() {
                c["uri"] = Value::String(names::public_uri(hop.name, &u));
            }
        }
    }
    Ok(result)
}

/// `prompts/get` on the server the name points at.
pub fn get_prompt(config: &Config, scope: &str, mut params: Value) -> Result<Value, RpcError> {
    let public = name_param(&params, "name");
    let resolved = names::resolve(&public, &config.separator, config.servers.keys());
    let (hop, name) = target(config, scope, resolved, "prompt", &public)?;
    params["name"] = Value::String(name);
    crate::upstream::strip_modern_meta(&mut params);
    hop.call("prompts/get", params)
        .map_err(|e| e.to_error(hop.name))
}
