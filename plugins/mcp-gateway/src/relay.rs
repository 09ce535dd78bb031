//! Relaying a server's stream to the client as it arrives (a routed `tools/call` answer, or a
//! stream the client resumed or opened with GET), event by event, so progress, logs and the
//! server's own requests reach the client while the tool still runs. Ids are mapped as
//! [`crate::ids`] describes.

use crate::ids::{self, Scoped};
use crate::{tasks, uris};
use serde_json::{Value, json};
use weir_wire::{jsonrpc, sse};

/// Where modern results name the server that answered: the gateway, to its clients.
const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

enum Mode {
    Events(sse::Parser),
    /// A JSON answer, rewritten once whole.
    Json(Vec<u8>),
}

/// One server's answer (or resumed stream), or several servers' merged standalone streams, on
/// their way to the client.
pub struct Relay {
    /// The servers (name, prefix) whose events these are; a merged stream's events say which
    /// (`weir-source: N`), others are the first's.
    servers: Vec<(String, String)>,
    /// The gateway's `serverInfo`, which modern results carry in `_meta`.
    server_info: Value,
    mode: Mode,
}

impl Relay {
    pub fn new(server: &str, prefix: &str, event_stream: bool, server_info: Value) -> Relay {
        Relay::merged(
            vec![(server.to_string(), prefix.to_string())],
            event_stream,
            server_info,
        )
    }

    /// Events from `servers`, tagged by the host with `weir-source: N`.
    pub fn merged(servers: Vec<(String, String)>, event_stream: bool, server_info: Value) -> Relay {
        let mode = if event_stream {
            Mode::Events(sse::Parser::default())
        } else {
            Mode::Json(Vec::new())
        };
        Relay {
            servers,
            server_info,
            mode,
        }
    }

    /// One message from the server, made the client's: a request of the server's gets a
    /// gateway-scoped id (the client's answer is routed back by it); the answer to the client's
    /// call gets the client's id back; tokens and URIs are mapped.
    fn restore(&self, msg: &mut Value, (server, prefix): &(String, String)) {
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        match (method.as_deref(), msg.get("id").cloned()) {
            (Some(_), Some(id)) => {
                msg["id"] = ids::server_request(server, &id);
                if let Some(params) = msg.get_mut("params") {
                    tasks::publish(params, server);
                }
            }
            (Some("notifications/progress"), None) => {
                if let Some(token) = msg.pointer_mut("/params/progressToken")
                    && let Some(Scoped::Token(theirs)) = ids::parse(token)
                {
                    *token = theirs;
                }
            }
            (Some("notifications/cancelled"), None) => {
                // The server gave up on a request it sent the client.
                if let Some(id) = msg.pointer_mut("/params/requestId") {
                    *id = ids::server_request(server, id);
                }
            }
            (Some(_), None) => {
                uris::notification(msg, prefix);
                if let Some(params) = msg.get_mut("params") {
                    tasks::publish(params, server);
                }
                // Frames of a `subscriptions/listen` stream name the listen request's id.
                if let Some(sid) =
                    msg.pointer_mut("/params/_meta/io.modelcontextprotocol~1subscriptionId")
                    && let Some(Scoped::Call { client_id, .. }) = ids::parse(sid)
                {
                    *sid = client_id;
                }
            }
            (None, Some(id)) => {
                if let Some(Scoped::Call { client_id, modern }) = ids::parse(&id) {
                    msg["id"] = client_id;
                    if !modern
                        && let Some(result) = msg.get_mut("result")
                        && let Err(why) = crate::modern::for_legacy(result)
                    {
                        *msg = jsonrpc::error(&msg["id"], jsonrpc::SERVER_ERROR, &why, None);
                        return;
                    }
                    if let Some(result) = msg.get_mut("result") {
                        uris::result(result, prefix);
                        tasks::publish(result, server);
                        if modern && let Some(r) = result.as_object_mut() {
                            r.entry("resultType")
                                .or_insert_with(|| Value::String("complete".into()));
                            let meta = r.entry("_meta").or_insert_with(|| json!({}));
                            if let Some(meta) = meta.as_object_mut() {
                                meta.insert(SERVER_INFO.into(), self.server_info.clone());
                            }
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }

    /// The server an event came from: the one its `weir-source` field (removed) names.
    fn source(&self, event: &mut sse::Event) -> &(String, String) {
        let tag = event.fields.iter().position(|(f, _)| f == "weir-source");
        let n = tag
            .map(|i| event.fields.remove(i).1)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        &self.servers[n.min(self.servers.len() - 1)]
    }

    fn rewrite_event(&self, mut event: sse::Event) -> Vec<u8> {
        let from = self.source(&mut event);
        if let Some(data) = event.data()
            && let Ok(mut msg) = serde_json::from_str::<Value>(&data)
        {
            self.restore(&mut msg, from);
            event.set_data(&msg.to_string());
        }
        // Event ids name the server, so a `Last-Event-ID` resumes from the right one.
        for (field, value) in &mut event.fields {
            if field == "id" && !value.is_empty() {
                *value = ids::event(&from.0, value);
            }
        }
        event.encode()
    }

    /// A chunk of the answer; returns what can go to the client now.
    pub fn chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        let events = match &mut self.mode {
            Mode::Events(p) => p.push(chunk),
            Mode::Json(buf) => {
                buf.extend_from_slice(chunk);
                return Vec::new();
            }
        };
        events
            .into_iter()
            .flat_map(|e| self.rewrite_event(e))
            .collect()
    }

    /// The end of the answer; returns the rest.
    pub fn end(&mut self) -> Vec<u8> {
        match &mut self.mode {
            Mode::Events(p) => match p.finish() {
                Some(e) => self.rewrite_event(e),
                None => Vec::new(),
            },
            Mode::Json(buf) => {
                let body = std::mem::take(buf);
                match serde_json::from_slice::<Value>(&body) {
                    Ok(mut msg) => {
                        self.restore(&mut msg, &self.servers[0]);
                        msg.to_string().into_bytes()
                    }
                    Err(_) => body,
                }
            }
        }
    }
}
