//! Relaying a routed `tools/call` answer to the client as it streams: the gateway's JSON-RPC
//! id and progress token go back to the client's, event by event, so progress notifications
//! reach the client while the tool still runs.

use serde_json::Value;
use weir_wire::{jsonrpc, sse};

/// What was rewritten on the way up, to undo on the way down.
pub struct Ids {
    pub upstream_id: Value,
    pub client_id: Value,
    /// `(gateway token, client token)` when the client asked for progress.
    pub token: Option<(Value, Value)>,
    /// The client speaks 2026-07-28, whose results need `resultType` (legacy servers send none).
    pub modern: bool,
}

enum Mode {
    Events(sse::Parser),
    /// A JSON answer, rewritten once whole.
    Json(Vec<u8>),
}

pub struct Relay {
    ids: Ids,
    mode: Mode,
}

impl Relay {
    pub fn new(ids: Ids, event_stream: bool) -> Relay {
        let mode = if event_stream {
            Mode::Events(sse::Parser::default())
        } else {
            Mode::Json(Vec::new())
        };
        Relay { ids, mode }
    }

    fn restore(&self, msg: &mut Value) {
        if jsonrpc::response_id(msg) == Some(&self.ids.upstream_id) {
            msg["id"] = self.ids.client_id.clone();
            if self.ids.modern
                && let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut)
            {
                result
                    .entry("resultType")
                    .or_insert_with(|| Value::String("complete".into()));
            }
        }
        if let Some((ours, theirs)) = &self.ids.token
            && msg.get("method").and_then(Value::as_str) == Some("notifications/progress")
            && let Some(token) = msg.pointer_mut("/params/progressToken")
            && token == ours
        {
            *token = theirs.clone();
        }
    }

    fn rewrite_event(&self, mut event: sse::Event) -> Vec<u8> {
        if let Some(data) = event.data()
            && let Ok(mut msg) = serde_json::from_str::<Value>(&data)
        {
            self.restore(&mut msg);
            event.set_data(&msg.to_string());
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
                        self.restore(&mut msg);
                        msg.to_string().into_bytes()
                    }
                    Err(_) => body,
                }
            }
        }
    }
}
