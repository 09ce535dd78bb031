//! Messages from the client that are not requests, forwarded to the servers they concern:
//! - an answer to a server's request (`sampling/createMessage`, `elicitation/create`,
//!   `roots/list`) goes to the server whose request it answers, under the server's own id;
//! - `notifications/cancelled` goes to every server the client has a session with, under the
//!   id the gateway gave the cancelled request (servers ignore ids they do not know);
//! - `notifications/roots/list_changed` goes to every server the client has a session with.
//!
//! Only legacy sessions get here: modern clients send no answers, and cancel by closing the
//! stream.

use crate::config::Config;
use crate::ids::{self, Scoped};
use crate::upstream::Hop;
use serde_json::{Map, Value, json};
use weir_sdk::{LocalResponse, log};
use weir_wire::jsonrpc;

/// Accepted: what the transport answers a notification or a response with.
fn accepted() -> LocalResponse {
    LocalResponse::new(202)
}

fn error(status: u16, message: &str) -> LocalResponse {
    crate::reply(
        status,
        &jsonrpc::error(&Value::Null, jsonrpc::SERVER_ERROR, message, None),
    )
}

/// The client's answer (`body` holds `result` or `error`) to the request with gateway id `id`.
pub fn answer(config: &Config, scope: &str, id: &Value, body: Map<String, Value>) -> LocalResponse {
    let Some(Scoped::ServerRequest { server, id }) = ids::parse(id) else {
        return error(
            400,
            "Bad Request: this answers no request the gateway relayed",
        );
    };
    let Some(hop) = Hop::new(config, &server, scope) else {
        return error(
            400,
            "Bad Request: this answers no request the gateway relayed",
        );
    };
    let Some(session) = hop.existing() else {
        return error(
            404,
            &format!("no session with MCP server \"{server}\" to deliver the answer to"),
        );
    };
    let mut msg = json!({"jsonrpc": "2.0", "id": id});
    for (k, v) in body {
        if k == "result" || k == "error" {
            msg[k] = v;
        }
    }
    match hop.delivered(hop.start_message(&session, &msg)) {
        Ok(()) => accepted(),
        Err(e) => {
            let (_, why, _) = e.to_error(&server);
            log::warn(&format!("mcp-gateway: an answer to {server}: {why}"));
            error(502, &why)
        }
    }
}

/// A notification from the client.
pub fn notification(
    config: &Config,
    scope: &str,
    method: &str,
    mut params: Value,
) -> LocalResponse {
    match method {
        "notifications/cancelled" => {
            let Some(id) = params.get("requestId") else {
                return accepted();
            };
            params["requestId"] = ids::call(id, false);
        }
        "notifications/roots/list_changed" => {}
        // `initialized` ends the client's handshake with the gateway; progress on answers and
        // other notifications concern no server.
        _ => return accepted(),
    }
    let msg = jsonrpc::notification(method, Some(params));
    let hops: Vec<Hop> = config
        .servers
        .keys()
        .filter_map(|name| Hop::new(config, name, scope))
        .collect();
    let started: Vec<_> = hops
        .iter()
        .filter_map(|hop| Some((hop, hop.existing()?)))
        .map(|(hop, session)| (hop, hop.start_message(&session, &msg)))
        .collect();
    for (hop, pending) in started {
        if let Err(e) = hop.delivered(pending) {
            let (_, why, _) = e.to_error(hop.name);
            log::warn(&format!(
                "mcp-gateway: {method} to server \"{}\": {why}",
                hop.name
            ));
        }
    }
    accepted()
}
