//! The MCP wire format: JSON-RPC 2.0 messages ([`jsonrpc`]) carried in a POST body that is
//! either one JSON object or a stream of server-sent events ([`sse`]).
//!
//! One crate for both sides: the MCP and LLM plugins (built for `wasm32-wasip2`) and the host's
//! stdio MCP bridge (native). It depends on `serde_json` only, so it builds for either target.

#![forbid(unsafe_code)]

pub mod jsonrpc;
pub mod sse;

/// Whether a `content-type` value is `text/event-stream` (parameters ignored).
pub fn is_event_stream(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
    })
}
