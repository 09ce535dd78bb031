//! The one JSON-RPC session with the child, shared by every HTTP client.
//!
//! A stdio server has a single session, but many HTTP clients (with their own, colliding ids and
//! progress tokens) use it. So each request gets a bridge-unique id (`weir-N`), which also
//! replaces its progress token; answers and progress go back to the request they belong to,
//! with the client's own id and token restored. Log notifications go to every request in
//! flight (there is no other stream to carry them).
//!
//! A stdio server also accepts one `initialize` per process: the first client's goes through
//! (clients arriving meanwhile wait for it), its params and result are kept, and later clients
//! are answered from them. After a restart, the process is initialised again with the same
//! params before anything else is written to it (see `process.rs`).
//!
//! Everything here is synchronous under one lock; lines to the child go through an unbounded
//! channel written under the same lock, so failing the requests of a dead process and
//! discarding its unwritten lines happen atomically.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};
use weir_wire::jsonrpc;

/// What a request's stream carries.
#[derive(Debug)]
pub(super) enum Event {
    /// A progress or log notification, relayed as is.
    Notification(Value),
    /// The response, with the client's id: the last event.
    Answer(Value),
}

enum Role {
    /// An HTTP client's request.
    Client,
    /// The first `initialize` of this session: its result is kept.
    FirstInitialize { params: Value },
    /// The bridge re-initialising a restarted process.
    Reinitialize {
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
}

struct Pending {
    client_id: Value,
    /// The client's `Mcp-Session-Id`, to match its `notifications/cancelled`.
    client_session: Option<String>,
    /// The client's progress token, replaced by the bridge id on the way in.
    token: Option<Value>,
    tx: mpsc::UnboundedSender<Event>,
    role: Role,
}

enum Init {
    /// No client initialised the session yet.
    Fresh,
    /// The first `initialize` is with the child; other clients' wait here (their id, stream).
    InFlight {
        waiters: Vec<(Value, mpsc::UnboundedSender<Event>)>,
    },
    /// The first client's params and the server's result.
    Done { params: Value, result: Value },
}

struct State {
    pending: HashMap<String, Pending>,
    init: Init,
    /// Requests that arrived while the first `initialize` was in flight: servers may refuse
    /// anything before the handshake ends, so they are written after it.
    held: Vec<String>,
}

pub(super) struct Session {
    pub name: Arc<str>,
    state: Mutex<State>,
    to_child: mpsc::UnboundedSender<String>,
    next: AtomicU64,
}

/// A request's stream of [`Event`]s. Dropping it (the HTTP client went away) forgets the
/// request, so a late answer is dropped instead of kept forever.
pub(super) struct Ticket {
    pub events: mpsc::UnboundedReceiver<Event>,
    key: Option<String>,
    session: Arc<Session>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            let mut state = self.session.state();
            // The first initialize stays: its result is wanted even if its client left.
            if state
                .pending
                .get(key)
                .is_some_and(|p| matches!(p.role, Role::Client))
            {
                state.pending.remove(key);
            }
        }
    }
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    jsonrpc::error(id, code, message, None)
}

fn initialized() -> String {
    jsonrpc::notification("notifications/initialized", None).to_string()
}

impl Session {
    pub fn new(name: &str, to_child: mpsc::UnboundedSender<String>) -> Session {
        Session {
            name: name.into(),
            state: Mutex::new(State {
                pending: HashMap::new(),
                init: Init::Fresh,
                held: Vec::new(),
            }),
            to_child,
            next: AtomicU64::new(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self) -> String {
        format!("weir-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn send(&self, line: String) {
        // Fails only once the supervisor is gone (the bridge stopped): nothing to do then.
        let _ = self.to_child.send(line);
    }

    /// Sends a client's request (an object with `method` and a non-null `id`) to the child.
    pub fn request(self: &Arc<Self>, mut msg: Value, client_session: Option<String>) -> Ticket {
        let (tx, events) = mpsc::unbounded_channel();
        let client_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut state = self.state();
        let mut role = Role::Client;
        if method == "initialize" {
            match &mut state.init {
                Init::Done { result, .. } => {
                    tracing::debug!(upstream = %self.name, "initialize answered from the cache");
                    let answer = jsonrpc::result(&client_id, result.clone());
                    let _ = tx.send(Event::Answer(answer));
                    return self.ticket(events, None);
                }
                Init::InFlight { waiters } => {
                    waiters.push((client_id, tx));
                    return self.ticket(events, None);
                }
                Init::Fresh => {
                    role = Role::FirstInitialize {
                        params: msg.get("params").cloned().unwrap_or(Value::Null),
                    };
                    state.init = Init::InFlight {
                        waiters: Vec::new(),
                    };
                }
            }
        }
        let key = self.key();
        msg["id"] = json!(key);
        let token = msg
            .pointer_mut("/params/_meta/progressToken")
            .map(|t| std::mem::replace(t, json!(key)));
        state.pending.insert(
            key.clone(),
            Pending {
                client_id,
                client_session,
                token,
                tx,
                role,
            },
        );
        let line = msg.to_string();
        if matches!(state.init, Init::InFlight { .. }) && method != "initialize" && method != "ping"
        {
            state.held.push(line);
        } else {
            self.send(line);
        }
        self.ticket(events, Some(key))
    }

    fn ticket(
        self: &Arc<Self>,
        events: mpsc::UnboundedReceiver<Event>,
        key: Option<String>,
    ) -> Ticket {
        Ticket {
            events,
            key,
            session: self.clone(),
        }
    }

    /// Sends a client's notification. `notifications/initialized` is the bridge's to send (once
    /// per process); a cancellation is translated to the bridge's id of the request.
    pub fn notify(&self, mut msg: Value, client_session: Option<&str>) {
        match msg.get("method").and_then(Value::as_str) {
            Some("notifications/initialized") => {}
            Some("notifications/cancelled") => {
                let state = self.state();
                let wanted = msg.pointer("/params/requestId").cloned();
                let found = state.pending.iter().find(|(_, p)| {
                    Some(&p.client_id) == wanted.as_ref()
                        && p.client_session.as_deref() == client_session
                });
                if let Some((key, _)) = found {
                    msg["params"]["requestId"] = json!(key);
                    self.send(msg.to_string());
                }
            }
            _ => self.send(msg.to_string()),
        }
    }

    /// Sends a client's response. Server requests are answered by the bridge itself (there is
    /// no client to ask), so this reaches the child only as a stray, which servers ignore.
    pub fn respond(&self, msg: &Value) {
        self.send(msg.to_string());
    }

    /// Handles one line of the child's stdout.
    pub fn child_line(&self, line: &[u8]) {
        let msg = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(m)) => Value::Object(m),
            _ => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                tracing::warn!(upstream = %self.name, line = %shown, "stdio MCP server wrote a line that is not a JSON-RPC message");
                return;
            }
        };
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg.get("id").filter(|i| !i.is_null());
        match (method, id) {
            (Some(method), Some(id)) => {
                // sampling, roots, elicitation...: the client that could answer is not on this
                // session, and an unanswered request would hang the server's handler.
                tracing::info!(upstream = %self.name, method, "stdio MCP server sent a request to the client; answered method-not-found");
                self.send(
                    error(
                        id,
                        jsonrpc::METHOD_NOT_FOUND,
                        "the gateway's stdio bridge has no client to ask",
                    )
                    .to_string(),
                );
            }
            (Some("notifications/progress"), None) => {
                let state = self.state();
                let Some(key) = msg.pointer("/params/progressToken").and_then(Value::as_str) else {
                    return;
                };
                if let Some(p) = state.pending.get(key)
                    && let Some(token) = &p.token
                {
                    let mut msg = msg.clone();
                    msg["params"]["progressToken"] = token.clone();
                    let _ = p.tx.send(Event::Notification(msg));
                }
            }
            (Some("notifications/message"), None) => {
                for p in self.state().pending.values() {
                    if matches!(p.role, Role::Client) {
                        let _ = p.tx.send(Event::Notification(msg.clone()));
                    }
                }
            }
            (Some(method), None) => {
                tracing::debug!(upstream = %self.name, method, "stdio MCP server notification not relayed");
            }
            (None, Some(id)) => self.answer(id, &msg),
            (None, None) => {
                tracing::warn!(upstream = %self.name, "stdio MCP server wrote a message with neither method nor id");
            }
        }
    }

    /// A response from the child to the request with bridge id `id`.
    fn answer(&self, id: &Value, msg: &Value) {
        let mut state = self.state();
        let Some(p) = id.as_str().and_then(|k| state.pending.remove(k)) else {
            return; // its client left, or the child answered twice
        };
        let with_id = |client_id: &Value| {
            let mut m = msg.clone();
            m["id"] = client_id.clone();
            m
        };
        match p.role {
            Role::Client => {
                let _ = p.tx.send(Event::Answer(with_id(&p.client_id)));
            }
            Role::FirstInitialize { params } => {
                let waiters = match std::mem::replace(&mut state.init, Init::Fresh) {
                    Init::InFlight { waiters } => waiters,
                    _ => Vec::new(),
                };
                if let Some(result) = msg.get("result") {
                    state.init = Init::Done {
                        params,
                        result: result.clone(),
                    };
                    self.send(initialized());
                }
                // On an error the next initialize is forwarded again (state is `Fresh`).
                let _ = p.tx.send(Event::Answer(with_id(&p.client_id)));
                for (client_id, tx) in waiters {
                    let _ = tx.send(Event::Answer(with_id(&client_id)));
                }
                for line in std::mem::take(&mut state.held) {
                    self.send(line);
                }
            }
            Role::Reinitialize { mut done } => {
                let outcome = match msg.get("error") {
                    None => Ok(()),
                    Some(e) => Err(e.to_string()),
                };
                if let Some(done) = done.take() {
                    let _ = done.send(outcome);
                }
            }
        }
    }

    /// The process ended: every request in flight gets a JSON-RPC error, and lines not yet
    /// written to it (from `queued`) are dropped, under the lock that new requests take.
    pub fn fail_all(&self, why: &str, queued: &mut mpsc::UnboundedReceiver<String>) {
        let mut state = self.state();
        let message = format!(
            "stdio MCP server {} exited ({why}); the request was not completed",
            self.name
        );
        let waiters = match &mut state.init {
            Init::InFlight { waiters } => std::mem::take(waiters),
            _ => Vec::new(),
        };
        if matches!(state.init, Init::InFlight { .. }) {
            state.init = Init::Fresh;
        }
        for (_, p) in state.pending.drain() {
            match p.role {
                Role::Client | Role::FirstInitialize { .. } => {
                    let _ = p.tx.send(Event::Answer(error(
                        &p.client_id,
                        jsonrpc::INTERNAL_ERROR,
                        &message,
                    )));
                }
                Role::Reinitialize { mut done } => {
                    if let Some(done) = done.take() {
                        let _ = done.send(Err(message.clone()));
                    }
                }
            }
        }
        for (client_id, tx) in waiters {
            let _ = tx.send(Event::Answer(error(
                &client_id,
                jsonrpc::INTERNAL_ERROR,
                &message,
            )));
        }
        state.held.clear();
        while queued.try_recv().is_ok() {}
    }

    /// For a restarted process: the `initialize` to write first (with the first client's
    /// params), whose outcome arrives on the receiver. `None` if no client initialised yet.
    pub fn reinitialize(&self) -> Option<(String, oneshot::Receiver<Result<(), String>>)> {
        let mut state = self.state();
        let Init::Done { params, .. } = &state.init else {
            return None;
        };
        let params = params.clone();
        let key = self.key();
        let (done, outcome) = oneshot::channel();
        state.pending.insert(
            key.clone(),
            Pending {
                client_id: Value::Null,
                client_session: None,
                token: None,
                tx: mpsc::unbounded_channel().0,
                role: Role::Reinitialize { done: Some(done) },
            },
        );
        let line = jsonrpc::request(&json!(key), "initialize", Some(params));
        Some((line.to_string(), outcome))
    }

    /// The notification that completes a re-initialisation.
    pub fn initialized_line(&self) -> String {
        initialized()
    }

    /// No client request is waiting (a stopped bridge may end its process).
    pub fn is_idle(&self) -> bool {
        !self
            .state()
            .pending
            .values()
            .any(|p| !matches!(p.role, Role::Reinitialize { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (Arc<Session>, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Session::new("s", tx)), rx)
    }

    fn line(rx: &mut mpsc::UnboundedReceiver<String>) -> Value {
        serde_json::from_str(&rx.try_recv().expect("a line to the child")).expect("JSON")
    }

    fn event(t: &mut Ticket) -> Value {
        match t.events.try_recv().expect("an event") {
            Event::Notification(v) => json!({"notification": v}),
            Event::Answer(v) => json!({"answer": v}),
        }
    }

    fn init(id: i64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {"clientInfo": {"name": id.to_string()}}})
    }

    #[test]
    fn colliding_ids_and_tokens_are_kept_apart() {
        let (s, mut rx) = session();
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "x", "_meta": {"progressToken": 1}}});
        let mut a = s.request(call.clone(), Some("A".into()));
        let mut b = s.request(call, Some("B".into()));
        let (la, lb) = (line(&mut rx), line(&mut rx));
        assert_ne!(la["id"], lb["id"]);
        assert_eq!(la["params"]["_meta"]["progressToken"], la["id"]);
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                              "params": {"progressToken": lb["id"], "progress": 1}});
        s.child_line(progress.to_string().as_bytes());
        s.child_line(
            json!({"jsonrpc": "2.0", "id": lb["id"], "result": {"b": true}})
                .to_string()
                .as_bytes(),
        );
        assert!(a.events.try_recv().is_err(), "nothing for a");
        assert_eq!(event(&mut b)["notification"]["params"]["progressToken"], 1);
        assert_eq!(
            event(&mut b)["answer"],
            json!({"jsonrpc": "2.0", "id": 1, "result": {"b": true}})
        );
        // A cancellation names the client's id; it reaches the child with the bridge's.
        s.notify(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}), Some("A"));
        assert_eq!(line(&mut rx)["params"]["requestId"], la["id"]);
        drop(a);
        assert!(s.is_idle());
    }

    #[test]
    fn the_first_initialize_is_cached_and_others_wait_for_it() {
        let (s, mut rx) = session();
        let mut first = s.request(init(1), None);
        let mut second = s.request(init(2), None);
        let mut early = s.request(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
            None,
        );
        let sent = line(&mut rx);
        assert_eq!(sent["method"], "initialize");
        assert!(rx.try_recv().is_err(), "one initialize; tools/list held");
        s.notify(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            None,
        );
        s.child_line(
            json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"v": 1}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(line(&mut rx)["method"], "notifications/initialized");
        assert_eq!(line(&mut rx)["method"], "tools/list");
        assert!(
            rx.try_recv().is_err(),
            "the client's initialized is not sent twice"
        );
        assert_eq!(event(&mut first)["answer"]["id"], 1);
        assert_eq!(
            event(&mut second)["answer"],
            json!({"jsonrpc": "2.0", "id": 2, "result": {"v": 1}})
        );
        let mut third = s.request(init(4), None);
        assert_eq!(event(&mut third)["answer"]["id"], 4);
        assert!(rx.try_recv().is_err());
        assert!(early.events.try_recv().is_err());

        // The process dies: requests in flight fail, then the new one is initialised again.
        s.fail_all("killed", &mut rx);
        let e = event(&mut early)["answer"].clone();
        assert_eq!(
            (e["id"].clone(), e["error"]["code"].clone()),
            (json!(3), json!(-32603))
        );
        let (reinit, _outcome) = s.reinitialize().expect("cached");
        let reinit: Value = serde_json::from_str(&reinit).expect("JSON");
        assert_eq!(reinit["params"]["clientInfo"]["name"], "1");
    }

    #[test]
    fn server_requests_are_refused_and_logs_go_to_requests_in_flight() {
        let (s, mut rx) = session();
        let mut t = s.request(
            json!({"jsonrpc": "2.0", "id": "c", "method": "tools/call"}),
            None,
        );
        let _ = line(&mut rx);
        s.child_line(br#"{"jsonrpc":"2.0","id":0,"method":"roots/list"}"#);
        let refusal = line(&mut rx);
        assert_eq!(
            (refusal["id"].clone(), refusal["error"]["code"].clone()),
            (json!(0), json!(-32601))
        );
        s.child_line(br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}"#);
        assert_eq!(event(&mut t)["notification"]["params"]["data"], "hi");
        s.child_line(b"not json");
    }
}
