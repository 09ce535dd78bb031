//! The 2026-07-28 era toward servers. A server that answers `server/discover` with 2026-07-28
//! among its `supportedVersions` is spoken to in that era for modern clients: no session,
//! version and capabilities in each request's `_meta`, and the `Mcp-Method`/`Mcp-Name` headers
//! intermediaries route on. Its multi-round-trip results (`input_required`) reach the client as
//! they are, and the client's retry with `inputResponses` is routed like the first round.
//! Legacy clients keep the legacy era toward every server (their sessions carry the
//! server→client requests that modern servers replace with `input_required`). Which servers
//! speak it is asked in `upstream` ([`crate::upstream::Hop::session`]); this module is the
//! era's request shape.

use base64::Engine;
use serde_json::{Value, json};

/// The modern version the gateway speaks to servers.
pub const VERSION: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_CLIENT: &str = "io.modelcontextprotocol/clientInfo";

/// Whether a `server/discover` answer (JSON or one SSE event) lists 2026-07-28.
pub fn discovered(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:").map(str::trim))
        .unwrap_or(text.trim());
    serde_json::from_str::<Value>(json).is_ok_and(|v| {
        v.pointer("/result/supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|vs| vs.iter().any(|v| v == VERSION))
    })
}

/// Fills in the `_meta` a modern request needs; a modern client's own values stay.
pub fn prepare(params: &mut Value, client: Value) {
    if !params.is_object() {
        *params = json!({});
    }
    let meta = params
        .as_object_mut()
        .map(|p| p.entry("_meta").or_insert_with(|| json!({})));
    if let Some(Value::Object(meta)) = meta {
        meta.insert(META_VERSION.into(), json!(VERSION));
        meta.entry(META_CAPABILITIES).or_insert_with(|| json!({}));
        meta.entry(META_CLIENT).or_insert(client);
    }
}

/// The request headers a modern request must carry, matching its body.
pub fn headers(method: &str, params: &Value) -> Vec<(String, String)> {
    let mut h = vec![
        ("mcp-protocol-version".to_string(), VERSION.to_string()),
        ("mcp-method".to_string(), method.to_string()),
    ];
    let named = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        _ => None,
    };
    if let Some(Value::String(name)) = named {
        h.push(("mcp-name".into(), header_value(name)));
    }
    h
}

/// A 2026-07-28 result made fit for a legacy client (a modern-only server behind a legacy
/// client): `resultType` goes; an `input_required` result, which only a modern client can
/// answer, becomes an error saying so.
pub fn for_legacy(result: &mut Value) -> Result<(), String> {
    let Some(r) = result.as_object_mut() else {
        return Ok(());
    };
    match r.remove("resultType").as_ref().and_then(Value::as_str) {
        Some("input_required") => Err(
            "the server asks for input (input_required, 2026-07-28) that a legacy client cannot \
             give; connect in the 2026-07-28 era"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A value as the spec says to put it in a header: as it is when it is plain ASCII, else (or
/// if it could be mistaken for the encoded form) as `=?base64?<UTF-8 in base64>?=`.
fn header_value(v: &str) -> String {
    let plain = v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !(v.starts_with("=?") && v.ends_with("?="));
    if plain {
        v.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_the_body_and_awkward_names_are_encoded() {
        let p = json!({"name": "add"});
        assert_eq!(
            headers("tools/call", &p),
            vec![
                ("mcp-protocol-version".to_string(), VERSION.to_string()),
                ("mcp-method".into(), "tools/call".into()),
                ("mcp-name".into(), "add".into()),
            ]
        );
        assert_eq!(header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(header_value(" x"), "=?base64?IHg=?=");
        assert_eq!(header_value("=?base64?x?="), "=?base64?PT9iYXNlNjQ/eD89?=");
        assert_eq!(headers("tools/list", &json!({})).len(), 2);
    }

    #[test]
    fn prepare_keeps_a_modern_clients_meta_and_fills_in_the_rest() {
        let mut p = json!({"_meta": {META_CAPABILITIES: {"sampling": {}}, "progressToken": 1}});
        prepare(&mut p, json!({"name": "weir"}));
        assert_eq!(p["_meta"][META_VERSION], VERSION);
        assert_eq!(p["_meta"][META_CAPABILITIES], json!({"sampling": {}}));
        assert_eq!(p["_meta"]["progressToken"], 1);
        assert!(discovered(
            br#"{"result":{"supportedVersions":["2026-07-28"]}}"#
        ));
        assert!(discovered(
            b"event: message\ndata: {\"result\":{\"supportedVersions\":[\"2026-07-28\"]}}\n\n"
        ));
        assert!(!discovered(br#"{"error":{"code":-32601}}"#));
        let mut done = json!({"resultType": "complete", "content": []});
        assert_eq!(for_legacy(&mut done), Ok(()));
        assert_eq!(done, json!({"content": []}));
        assert!(for_legacy(&mut json!({"resultType": "input_required"})).is_err());
    }
}
