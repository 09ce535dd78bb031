//! The client side: which era a request belongs to, legacy sessions, and the modern era's
//! header/body checks.

use serde_json::{Value, json};
use std::time::Duration;
use weir_sdk::{context, kv, request};
use weir_wire::jsonrpc;

/// The scope (in place of a session id) shared by all modern clients.
pub const MODERN_SCOPE: &str = "modern";

/// The legacy versions the gateway accepts from clients, newest last.
pub const LEGACY_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
/// The modern (stateless) versions.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// How one request is served.
pub enum Era {
    /// Stateless: everything is in the request; upstream sessions are shared by all such
    /// clients.
    Modern,
    /// A request in the legacy session with this id.
    Legacy(String),
    /// `initialize`, which opens a legacy session.
    Initialize,
}

/// A refusal: HTTP status, JSON-RPC code, message and data.
pub struct Refusal(pub u16, pub i64, pub String, pub Option<Value>);

/// The modern `protocolVersion` in `params._meta`, if the request has one.
pub fn modern_version(params: &Value) -> Option<&str> {
    params.pointer("/_meta")?.get(META_VERSION)?.as_str()
}

/// Works out the era and checks what the era requires.
pub fn classify(method: &str, params: &Value, ttl: u64) -> Result<Era, Refusal> {
    if let Some(version) = modern_version(params) {
        check_modern(version, method, params)?;
        return Ok(Era::Modern);
    }
    if method == "initialize" {
        return Ok(Era::Initialize);
    }
    legacy_scope(ttl).map(Era::Legacy)
}

/// The client's live legacy session, from `Mcp-Session-Id`, checked with its
/// `MCP-Protocol-Version` (absent means 2025-03-26).
pub fn legacy_scope(ttl: u64) -> Result<String, Refusal> {
    if let Some(v) = request::header("mcp-protocol-version")
        && !LEGACY_VERSIONS.contains(&v.as_str())
    {
        return Err(Refusal(
            400,
            jsonrpc::UNSUPPORTED_VERSION,
            format!("Bad Request: unsupported MCP-Protocol-Version: {v}"),
            Some(json!({"supported": LEGACY_VERSIONS, "requested": v})),
        ));
    }
    let Some(id) = request::header("mcp-session-id") else {
        return Err(Refusal(
            400,
            jsonrpc::SERVER_ERROR,
            "Bad Request: an Mcp-Session-Id header is required (initialize first), or send a \
             2026-07-28 request with its _meta"
                .into(),
            None,
        ));
    };
    if !session_valid(&id, ttl) {
        return Err(Refusal(
            404,
            jsonrpc::SESSION_NOT_FOUND,
            "Session not found".into(),
            None,
        ));
    }
    Ok(id)
}

/// Modern requests carry their version and capabilities in `_meta`, and `Mcp-*` headers that
/// must match the body (intermediaries route on them).
fn check_modern(version: &str, method: &str, params: &Value) -> Result<(), Refusal> {
    if !MODERN_VERSIONS.contains(&version) {
        return Err(Refusal(
            400,
            jsonrpc::UNSUPPORTED_VERSION,
            format!("Unsupported protocol version: {version}"),
            Some(json!({"supported": MODERN_VERSIONS, "requested": version})),
        ));
    }
    if params
        .pointer("/_meta")
        .and_then(|m| m.get(META_CAPABILITIES))
        .is_none()
    {
        return Err(Refusal(
            400,
            jsonrpc::INVALID_PARAMS,
            format!("_meta[\"{META_CAPABILITIES}\"] is required"),
            None,
        ));
    }
    let mismatch = |what: &str| {
        Refusal(
            400,
            jsonrpc::HEADER_MISMATCH,
            format!("{what} header does not match the request body"),
            None,
        )
    };
    if request::header("mcp-protocol-version").as_deref() != Some(version) {
        return Err(mismatch("MCP-Protocol-Version"));
    }
    if request::header("mcp-method").as_deref() != Some(method) {
        return Err(mismatch("Mcp-Method"));
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        _ => None,
    };
    if let Some(name) = named
        && request::header("mcp-name").as_deref() != name.as_str()
    {
        return Err(mismatch("Mcp-Name"));
    }
    Ok(())
}

fn key(id: &str) -> String {
    format!("mcp-gateway:session:{id}")
}

/// Opens a legacy session bound to the caller's principal; returns its id. The client's
/// capabilities that the gateway can serve for servers (`roots`, `sampling`, `elicitation`)
/// are kept, to be declared to each server.
pub fn open(version: &str, capabilities: &Value, ttl: u64) -> String {
    let id = crate::random_hex(16);
    let relayed: serde_json::Map<String, Value> = ["roots", "sampling", "elicitation"]
        .iter()
        .filter_map(|k| Some((k.to_string(), capabilities.get(*k)?.clone())))
        .collect();
    let record = json!({"v": version, "p": context::principal(), "c": relayed});
    let _ = kv::set(
        &key(&id),
        record.to_string().as_bytes(),
        Some(Duration::from_secs(ttl)),
    );
    id
}

/// Whether `id` is a live session of this principal; extends its lifetime if so.
fn session_valid(id: &str, ttl: u64) -> bool {
    let Ok(Some(raw)) = kv::get(&key(id)) else {
        return false;
    };
    let Ok(record) = serde_json::from_slice::<Value>(&raw) else {
        return false;
    };
    // A session id is not a credential: another principal presenting it gets "not found".
    if record.get("p").and_then(Value::as_str) != context::principal().as_deref() {
        return false;
    }
    let _ = kv::set(&key(id), &raw, Some(Duration::from_secs(ttl)));
    true
}

/// The capabilities the client of `scope` declared that the gateway relays; none for the
/// shared scope of modern clients (they answer no server requests).
pub fn client_capabilities(scope: &str) -> Value {
    kv::get(&key(scope))
        .ok()
        .flatten()
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .and_then(|mut r| r.get_mut("c").map(Value::take))
        .unwrap_or_else(|| json!({}))
}

/// Ends a legacy session.
pub fn close(id: &str) -> bool {
    kv::delete(&key(id)).unwrap_or(false)
}

/// The version to answer a legacy `initialize` with: the client's if we speak it, else ours.
pub fn negotiate(params: &Value) -> &'static str {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    LEGACY_VERSIONS
        .iter()
        .find(|v| Some(**v) == asked)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1])
}
