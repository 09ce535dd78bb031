//! Methods answered by asking every server (`*/list`) or the one a name points at
//! (`resources/read`, `prompts/get`, subscriptions, completion), through `outbound`.

use crate::config::Config;
use crate::names;
use crate::upstream::{Hop, HopError};
use serde_json::{Value, json};
use weir_sdk::{kv, log};

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
    /// `taskId` becomes gateway-scoped (tasks).
    Task,
}

pub fn listing(method: &str) -> Option<Listing> {
    let (field, naming) = match method {
        "tools/list" => ("tools", Naming::Name),
        "prompts/list" => ("prompts", Naming::Name),
        "resources/list" => ("resources", Naming::Uri),
        "resources/templates/list" => ("resourceTemplates", Naming::Template),
        "tasks/list" => ("tasks", Naming::Task),
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
            Ok(items) => {
                if method == "tools/list" {
                    remember_tools(hop, &items);
                }
                merged.extend(items.into_iter().map(|i| rename(hop, listing, i)));
            }
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

/// The items of `page` and of every page after it, as the server names them.
fn drain(
    hop: &Hop,
    method: &str,
    listing: &Listing,
    mut page: Value,
) -> Result<Vec<Value>, HopError> {
    let mut items = Vec::new();
    for _ in 0..MAX_PAGES {
        if let Some(Value::Array(list)) = page.get_mut(listing.field).map(Value::take) {
            items.extend(list);
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
    let prefix = hop.prefix();
    let (field, uri) = match listing.naming {
        Naming::Name => ("name", false),
        Naming::Uri => ("uri", true),
        Naming::Template => ("uriTemplate", true),
        Naming::Task => {
            crate::tasks::publish(&mut item, hop.name);
            return item;
        }
    };
    if let Some(Value::String(original)) = item.get(field).cloned() {
        let public = if uri {
            names::public_uri(prefix, &original)
        } else {
            let (public, shortened) = names::public(prefix, hop.separator(), &original);
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

/// Remembers the names of a server's tools, so calls to tools it does not have are answered by
/// the gateway.
fn remember_tools(hop: &Hop, tools: &[Value]) {
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    let ttl = std::time::Duration::from_secs(hop.ttl());
    let _ = kv::set(
        &hop.tools_key(),
        json!(names).to_string().as_bytes(),
        Some(ttl),
    );
}

/// Whether `hop`'s server has `tool`: from the remembered list, else (a tool added since, or
/// nothing remembered) from a fresh `tools/list`. A server that cannot list is given the call.
pub fn has_tool(hop: &Hop, tool: &str) -> bool {
    let listed = |raw: &[u8]| {
        serde_json::from_slice::<Vec<String>>(raw).is_ok_and(|n| n.iter().any(|t| t == tool))
    };
    if kv::get(&hop.tools_key())
        .ok()
        .flatten()
        .is_some_and(|raw| listed(&raw))
    {
        return true;
    }
    let Some(listing) = listing("tools/list") else {
        return true;
    };
    match hop
        .call("tools/list", json!({}))
        .and_then(|page| drain(hop, "tools/list", &listing, page))
    {
        Ok(tools) => {
            remember_tools(hop, &tools);
            tools
                .iter()
                .any(|t| t.get("name").and_then(Value::as_str) == Some(tool))
        }
        Err(_) => true,
    }
}

/// The server a request names and the request as that server knows it: `prompts/get` and
/// `completion/complete` of a prompt by name; `resources/*` and completion of a resource
/// template by URI.
fn name_target<'a>(
    config: &'a Config,
    scope: &'a str,
    method: &str,
    params: &mut Value,
) -> Result<Hop<'a>, RpcError> {
    let (pointer, by_uri, what) = match method {
        "prompts/get" => ("/name", false, "prompt"),
        "completion/complete" => match params.pointer("/ref/type").and_then(Value::as_str) {
            Some("ref/prompt") => ("/ref/name", false, "prompt"),
            _ => ("/ref/uri", true, "resource"),
        },
        _ => ("/uri", true, "resource"),
    };
    let public = params
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resolved = if by_uri {
        names::resolve_uri(&public, config)
    } else {
        names::resolve(&public, config)
    };
    let (hop, original) = target(config, scope, resolved, what, &public)?;
    if let Some(v) = params.pointer_mut(pointer) {
        *v = Value::String(original);
    }
    Ok(hop)
}

/// A request for one named thing (`resources/read`, `prompts/get`, `resources/subscribe`,
/// `resources/unsubscribe`, `completion/complete`), sent to the server owning it; the URIs in
/// the answer are made public.
pub fn by_name(
    config: &Config,
    scope: &str,
    method: &str,
    mut params: Value,
) -> Result<Value, RpcError> {
    let hop = name_target(config, scope, method, &mut params)?;
    let mut result = hop.call(method, params).map_err(|e| e.to_error(hop.name))?;
    crate::uris::result(&mut result, hop.prefix());
    Ok(result)
}

/// `logging/setLevel`, passed on to every server the client has a session with (servers it
/// has none with yet start at their default level).
pub fn set_level(config: &Config, scope: &str, params: &Value) {
    for name in config.servers.keys() {
        if let Some(hop) = Hop::new(config, name, scope)
            && hop.existing().is_some()
            && let Err(e) = hop.call("logging/setLevel", params.clone())
        {
            let (_, why, _) = e.to_error(name);
            log::debug(&format!(
                "mcp-gateway: logging/setLevel on \"{name}\": {why}"
            ));
        }
    }
}
