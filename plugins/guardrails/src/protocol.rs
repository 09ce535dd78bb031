//! The protocols a guarded route may carry, told apart by path and body; which texts of each
//! message are inspected; and how each protocol is told "blocked" in its own format.
//!
//! | protocol | request texts | response texts |
//! |---|---|---|
//! | OpenAI | `messages` (every part, tool results, tool-call arguments), `tools`, `prompt`, `input`, `instructions` | `choices`, `output` |
//! | Anthropic | `system`, `messages` (text, `tool_use` input, `tool_result`), `tools` | `content` |
//! | MCP | `params.arguments` of `tools/call` and `prompts/get` | `result` of `tools/call`, `prompts/get`, `resources/read` |
//! | A2A (JSON-RPC, HTTP+JSON) | every `parts` list in the params (text and data parts) | every `parts` list in the result |
//! | other JSON | every string | every string |
//! | other text | the whole body | the whole body |
//!
//! Structural fields (`model`, `role`, `type`, ids, URLs, base64 media) are never inspected.

use crate::config::McpBlock;

/// How a blocked MCP message is answered: the operator's choice, and whether the client speaks
/// MCP 2026-07-28 or later (whose results carry `resultType`).
#[derive(Clone, Copy, Debug, Default)]
pub struct McpAnswer {
    pub block: McpBlock,
    pub modern: bool,
}
use serde_json::{Map, Value, json};
use weir_sdk::LocalResponse;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Mcp,
    A2a,
    A2aRest,
    Json,
    Text,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Mcp => "mcp",
            Protocol::A2a | Protocol::A2aRest => "a2a",
            Protocol::Json => "json",
            Protocol::Text => "text",
        }
    }
}

/// The protocol a request's path names, before its body is read.
pub fn by_path(path: &str) -> Option<Protocol> {
    let p = path.split('?').next().unwrap_or_default();
    if p.ends_with("/chat/completions")
        || p.ends_with("/completions")
        || p.ends_with("/embeddings")
        || p.ends_with("/responses")
    {
        Some(Protocol::OpenAi)
    } else if p.ends_with("/v1/messages") || p.contains("/v1/messages/") {
        Some(Protocol::Anthropic)
    } else if p.ends_with("/message:send") || p.ends_with("/message:stream") {
        Some(Protocol::A2aRest)
    } else {
        None
    }
}

/// The protocol of a JSON-RPC method.
pub fn by_method(method: &str) -> Protocol {
    let a2a_v03 = method.starts_with("message/") || method.starts_with("tasks/");
    let a2a_v10 = method
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_uppercase())
        && !method.contains('/');
    if a2a_v03 || a2a_v10 || method == "agent/getAuthenticatedExtendedCard" {
        Protocol::A2a
    } else {
        Protocol::Mcp
    }
}

/// The JSON-RPC messages of a body: one object, or a batch.
pub fn rpc_messages(v: &mut Value) -> Vec<&mut Map<String, Value>> {
    match v {
        Value::Object(m) if m.contains_key("jsonrpc") => vec![m],
        Value::Array(a) => a
            .iter_mut()
            .filter_map(|x| x.as_object_mut().filter(|m| m.contains_key("jsonrpc")))
            .collect(),
        _ => Vec::new(),
    }
}

const LLM_SKIP: &[&str] = &[
    "model",
    "role",
    "type",
    "id",
    "tool_call_id",
    "tool_use_id",
    "name",
    "media_type",
    "url",
    "data",
    "signature",
    "cache_control",
    "detail",
    "format",
    "finish_reason",
    "index",
    "logprobs",
    "object",
    "stop_reason",
    "stop_sequence",
];
const MCP_SKIP: &[&str] = &[
    "type",
    "mimeType",
    "uri",
    "blob",
    "_meta",
    "annotations",
    "isError",
    "role",
];

/// Calls `f` on every string leaf under `v`, skipping keys in `skip` (and the base64 `data` of
/// an object that has a `mimeType`).
fn leaves(v: &mut Value, skip: &[&str], f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| leaves(x, skip, f)),
        Value::Object(m) => {
            let media = m.contains_key("mimeType");
            for (k, x) in m.iter_mut() {
                if skip.contains(&k.as_str()) || (media && k == "data") {
                    continue;
                }
                leaves(x, skip, f);
            }
        }
        _ => {}
    }
}

/// Calls `f` on the texts of every A2A part under `v`: a part's `text`, and every string of a
/// data part's `data`.
fn a2a_parts(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| a2a_parts(x, f)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "parts"
                    && let Value::Array(parts) = x
                {
                    for part in parts.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(Value::String(t)) = part.get_mut("text") {
                            f(t);
                        }
                        if let Some(d) = part.get_mut("data") {
                            leaves(d, &[], f);
                        }
                    }
                } else {
                    a2a_parts(x, f);
                }
            }
        }
        _ => {}
    }
}

/// Calls `f` on every inspected text of a message. `method` is the JSON-RPC method of the
/// request (for a response, of the request it answers).
pub fn texts(
    protocol: Protocol,
    response: bool,
    method: Option<&str>,
    v: &mut Value,
    f: &mut dyn FnMut(&mut String),
) {
    match (protocol, response) {
        (Protocol::OpenAi | Protocol::Anthropic, false) => {
            for key in [
                "messages",
                "system",
                "tools",
                "prompt",
                "input",
                "instructions",
            ] {
                if let Some(x) = v.get_mut(key) {
                    leaves(x, LLM_SKIP, f);
                }
            }
        }
        (Protocol::OpenAi | Protocol::Anthropic, true) => {
            for key in ["choices", "content", "output", "error"] {
                if let Some(x) = v.get_mut(key) {
                    leaves(x, LLM_SKIP, f);
                }
            }
        }
        (Protocol::Mcp, false) => {
            if matches!(method, Some("tools/call" | "prompts/get"))
                && let Some(args) = v.pointer_mut("/params/arguments")
            {
                leaves(args, &[], f);
            }
        }
        (Protocol::Mcp, true) => {
            if matches!(
                method,
                Some("tools/call" | "prompts/get" | "resources/read")
            ) && let Some(result) = v.get_mut("result")
            {
                leaves(result, MCP_SKIP, f);
            }
        }
        (Protocol::A2a, false) => {
            if let Some(p) = v.get_mut("params") {
                a2a_parts(p, f);
            }
        }
        (Protocol::A2a, true) => {
            if let Some(r) = v.get_mut("result") {
                a2a_parts(r, f);
            }
        }
        (Protocol::A2aRest, _) => a2a_parts(v, f),
        (Protocol::Json | Protocol::Text, _) => leaves(v, &[], f),
    }
}

/// Why a message was blocked, for the client: names the detector, never what it matched.
pub fn reason(detector: &str, response: bool) -> String {
    let which = if response { "answer" } else { "request" };
    format!(
        "blocked by guardrail `{detector}`: the {which} contains content this route does not allow"
    )
}

fn json_answer(status: u16, body: Value) -> LocalResponse {
    LocalResponse::new(status)
        .header("content-type", "application/json")
        .header("x-weir-guardrail", "blocked")
        .body(body.to_string())
}

/// The JSON-RPC answer to a blocked MCP or A2A request `id`.
pub fn rpc_refusal(
    protocol: Protocol,
    id: &Value,
    method: Option<&str>,
    message: &str,
    mcp: McpAnswer,
) -> Value {
    if protocol == Protocol::Mcp && method == Some("tools/call") && mcp.block == McpBlock::ToolError
    {
        let mut result = json!({"content": [{"type": "text", "text": message}], "isError": true});
        if mcp.modern {
            result["resultType"] = json!("complete");
        }
        return json!({"jsonrpc": "2.0", "id": id, "result": result});
    }
    // -32602 (invalid params): the message's content is what is refused.
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": message,
           "data": {"reason": "guardrail"}}})
}

/// The message that replaces a blocked JSON-RPC message (or, for other protocols, an error
/// object).
pub fn rpc_or_error(
    protocol: Protocol,
    rpc: Option<(&Value, Option<&str>)>,
    message: &str,
    mcp: McpAnswer,
) -> Value {
    match (protocol, rpc) {
        (Protocol::Mcp | Protocol::A2a, Some((id, method))) => {
            rpc_refusal(protocol, id, method, message, mcp)
        }
        (Protocol::Mcp | Protocol::A2a, None) => json!({"jsonrpc": "2.0", "id": null, "error": {
            "code": -32602, "message": message}}),
        _ => json!({"error": {"message": message, "type": "guardrail_blocked"}}),
    }
}

/// The answer to a blocked (or uninspectable) request, in the client's own API format.
pub fn refusal(
    protocol: Protocol,
    rpc: Option<(&Value, Option<&str>)>,
    message: &str,
    status: u16,
    mcp: McpAnswer,
) -> LocalResponse {
    match protocol {
        Protocol::OpenAi => json_answer(
            status,
            json!({"error": {"message": message,
            "type": "invalid_request_error", "param": null, "code": "guardrail_blocked"}}),
        ),
        Protocol::Anthropic => json_answer(
            status,
            json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": message}}),
        ),
        Protocol::Mcp | Protocol::A2a => match rpc {
            Some((id, method)) => json_answer(200, rpc_refusal(protocol, id, method, message, mcp)),
            None => json_answer(
                status,
                json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": -32600, "message": message}}),
            ),
        },
        Protocol::A2aRest => json_answer(
            status,
            json!({"error": {"code": status,
            "status": "INVALID_ARGUMENT", "message": message}}),
        ),
        Protocol::Json | Protocol::Text => json_answer(
            status,
            json!({"error": {
            "message": message, "type": "guardrail_blocked"}}),
        ),
    }
}

/// A gRPC refusal: Trailers-Only, `FAILED_PRECONDITION` (9) with the message, which gRPC
/// clients raise with that status.
pub fn grpc_refusal(message: &str) -> LocalResponse {
    let encoded: String = message
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    LocalResponse::new(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", "9")
        .header("grpc-message", encoded)
}

/// A whole (not streamed) answer rewritten to say it was withheld: the status has already gone,
/// so this is the protocol's own way of saying so in a successful answer — OpenAI's
/// `finish_reason: content_filter` with a `refusal`, Anthropic's `stop_reason: refusal`, a
/// JSON-RPC error or tool error for the same id.
pub fn withheld(
    protocol: Protocol,
    v: &mut Value,
    method: Option<&str>,
    message: &str,
    mcp: McpAnswer,
) {
    match protocol {
        Protocol::OpenAi => {
            if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
                for c in choices {
                    c["finish_reason"] = json!("content_filter");
                    c["message"] =
                        json!({"role": "assistant", "content": null, "refusal": message});
                }
            } else {
                *v = json!({"error": {"message": message, "type": "invalid_request_error",
                                      "code": "guardrail_blocked"}});
            }
        }
        Protocol::Anthropic => {
            if v.get("content").is_some() {
                v["content"] = json!([]);
                v["stop_reason"] = json!("refusal");
            } else {
                *v = json!({"type": "error", "error": {"type": "invalid_request_error",
                                                       "message": message}});
            }
        }
        Protocol::Mcp | Protocol::A2a => {
            let id = v.get("id").cloned().unwrap_or(Value::Null);
            *v = rpc_refusal(protocol, &id, method, message, mcp);
        }
        Protocol::A2aRest => {
            *v = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message}})
        }
        Protocol::Json | Protocol::Text => {
            *v = json!({"error": {"message": message, "type": "guardrail_blocked"}})
        }
    }
}

/// The event that ends a blocked stream, one that the protocol's clients raise as an error.
pub fn stream_error(
    protocol: Protocol,
    rpc: Option<(&Value, Option<&str>)>,
    message: &str,
    mcp: McpAnswer,
) -> Vec<u8> {
    let (event, data) = match protocol {
        // The openai SDK raises `APIError` for a data object with `error`.
        Protocol::OpenAi => (
            None,
            json!({"error": {"message": message, "type": "content_filter",
                                                    "param": null, "code": "guardrail_blocked"}}),
        ),
        // The anthropic SDK raises for `event: error`.
        Protocol::Anthropic => (
            Some("error"),
            json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": message}}),
        ),
        Protocol::Mcp | Protocol::A2a => {
            let (id, method) = rpc.unwrap_or((&Value::Null, None));
            (None, rpc_refusal(protocol, id, method, message, mcp))
        }
        _ => (
            None,
            json!({"error": {"message": message, "type": "guardrail_blocked"}}),
        ),
    };
    let mut out = String::new();
    if let Some(e) = event {
        out.push_str(&format!("event: {e}\n"));
    }
    out.push_str(&format!("data: {data}\n\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(protocol: Protocol, response: bool, method: Option<&str>, v: Value) -> Vec<String> {
        let mut v = v;
        let mut out = Vec::new();
        texts(protocol, response, method, &mut v, &mut |s| {
            out.push(s.clone())
        });
        out
    }

    #[test]
    fn llm_requests_inspect_content_not_structure() {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "data:x"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "result"}],
            "tools": [{"type": "function", "function": {"name": "f", "description": "desc"}}]});
        assert_eq!(
            collect(Protocol::OpenAi, false, None, body),
            ["sys", "hi", "{\"a\":1}", "result", "desc"]
        );
    }

    #[test]
    fn mcp_and_a2a_inspect_arguments_results_and_parts() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "t", "arguments": {"q": "x", "n": {"deep": "y"}}}});
        let mut args = collect(Protocol::Mcp, false, Some("tools/call"), call.clone());
        args.sort();
        assert_eq!(args, ["x", "y"]);
        assert!(collect(Protocol::Mcp, false, Some("tools/list"), call).is_empty());
        let result = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [
            {"type": "text", "text": "out"}, {"type": "image", "data": "AAAA", "mimeType": "image/png"}]}});
        assert_eq!(
            collect(Protocol::Mcp, true, Some("tools/call"), result),
            ["out"]
        );
        let send = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {
            "message": {"kind": "message", "messageId": "m", "role": "user",
                        "parts": [{"kind": "text", "text": "hello"}, {"kind": "data", "data": {"k": "v"}}]}}});
        assert_eq!(collect(Protocol::A2a, false, None, send), ["hello", "v"]);
        assert_eq!(by_method("message/send"), Protocol::A2a);
        assert_eq!(by_method("SendMessage"), Protocol::A2a);
        assert_eq!(by_method("tools/call"), Protocol::Mcp);
    }
}
