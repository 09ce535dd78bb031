//! The gateway as an MCP client of one federated server ("hop").
//!
//! Upstream hops speak the legacy era (2025-11-25 and older), which every server speaks today.
//! A hop's upstream session is kept in `kv` under the client's scope (its session, or one
//! shared scope for stateless modern clients), so every instance serving that client uses it.
//! A session the server no longer knows (404, or 400 after a restart) is re-initialised once
//! and the call retried: the client never sees the upstream's restart.

use crate::config::{Config, Server};
use crate::modern;
use serde_json::{Value, json};
use std::time::Duration;
use weir_sdk::outbound::{self, IncomingResponse, OutboundError, PendingResponse};
use weir_sdk::{kv, log, secrets};
use weir_wire::{is_event_stream, jsonrpc, sse};

/// The newest legacy-era version; what the gateway asks upstreams for.
pub const UPSTREAM_VERSION: &str = "2025-11-25";

/// Why a call to an upstream server failed.
#[derive(Debug)]
pub enum HopError {
    /// The server could not be reached or did not answer properly.
    Unavailable(String),
    /// The server answered with a JSON-RPC error.
    Rpc(Value),
}

/// What is remembered of a server that refuses the legacy era.
const MODERN_ONLY: &str = "modern-only";

impl HopError {
    /// Whether the server refused the request as such (an HTTP 4xx or an "unsupported
    /// version" error) rather than failing.
    pub fn is_refusal(&self) -> bool {
        match self {
            HopError::Rpc(err) => {
                err.get("code").and_then(Value::as_i64) == Some(jsonrpc::UNSUPPORTED_VERSION)
            }
            HopError::Unavailable(why) => why.starts_with("HTTP 4"),
        }
    }

    /// The error object for the client, naming the server.
    pub fn to_error(&self, server: &str) -> (i64, String, Option<Value>) {
        match self {
            HopError::Unavailable(why) => (
                jsonrpc::SERVER_ERROR,
                format!("MCP server \"{server}\" is unavailable: {why}"),
                None,
            ),
            HopError::Rpc(err) => (
                err.get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(jsonrpc::INTERNAL_ERROR),
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string(),
                err.get("data").cloned(),
            ),
        }
    }
}

/// An upstream session: the id the server minted (if any) and the version it agreed to. A
/// 2026-07-28 "session" is no session at all: each request stands alone.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Option<String>,
    pub version: String,
}

impl Session {
    pub fn is_modern(&self) -> bool {
        self.version == modern::VERSION
    }
}

/// One federated server as seen from one client scope.
pub struct Hop<'a> {
    pub name: &'a str,
    pub server: &'a Server,
    config: &'a Config,
    scope: &'a str,
}

/// A call in flight, with what is needed to retry it on a fresh session.
pub struct Pending {
    body: Vec<u8>,
    id: String,
    call: Result<PendingResponse, OutboundError>,
    had_session: bool,
}

impl<'a> Hop<'a> {
    pub fn new(config: &'a Config, name: &'a str, scope: &'a str) -> Option<Hop<'a>> {
        let server = config.servers.get(name)?;
        Some(Hop {
            name,
            server,
            config,
            scope,
        })
    }

    pub fn separator(&self) -> &str {
        &self.config.separator
    }

    /// The prefix of this server's public names.
    pub fn prefix(&self) -> &str {
        self.config.prefix(self.name)
    }

    /// How long what is learnt of this server for this client is kept.
    pub fn ttl(&self) -> u64 {
        self.config.session_ttl_s
    }

    /// Where the names of this server's tools are remembered.
    pub fn tools_key(&self) -> String {
        format!("mcp-gateway:tools:{}:{}", self.scope, self.name)
    }

    fn key(&self) -> String {
        format!("mcp-gateway:up:{}:{}", self.scope, self.name)
    }

    /// The session in `kv`, or a new one; for modern clients of a server that speaks
    /// 2026-07-28, that era (no session).
    pub fn session(&self) -> Result<Session, HopError> {
        let stateless = || Session {
            id: None,
            version: modern::VERSION.into(),
        };
        if self.scope == crate::session::MODERN_SCOPE && self.speaks_modern() {
            return Ok(stateless());
        }
        if self.era().as_deref() == Some(MODERN_ONLY) {
            return Ok(stateless());
        }
        if let Some(s) = self.existing() {
            return Ok(s);
        }
        match self.initialize() {
            // A server that refuses the legacy era but speaks 2026-07-28 serves legacy clients
            // in that era (all but `input_required`, which they cannot answer).
            Err(e) if e.is_refusal() && self.speaks_modern() => {
                self.set_era(MODERN_ONLY);
                Ok(stateless())
            }
            r => r,
        }
    }

    fn era_key(&self) -> String {
        format!("mcp-gateway:era:{}", self.name)
    }

    /// What is remembered of the eras this server speaks: `legacy`, `modern` (2026-07-28, and
    /// maybe legacy too) or [`MODERN_ONLY`].
    fn era(&self) -> Option<String> {
        let raw = kv::get(&self.era_key()).ok()??;
        String::from_utf8(raw).ok()
    }

    fn set_era(&self, era: &str) {
        let ttl = Some(Duration::from_secs(self.config.session_ttl_s));
        let _ = kv::set(&self.era_key(), era.as_bytes(), ttl);
    }

    /// Whether this server speaks 2026-07-28, asked once with `server/discover` and remembered
    /// (for the session lifetime). An unreachable server is asked again next time.
    fn speaks_modern(&self) -> bool {
        if let Some(era) = self.era() {
            return era != "legacy";
        }
        let mut params = json!({});
        modern::prepare(&mut params, self.client_info());
        let mut req = outbound::Request::post(&self.server.upstream, &self.server.path, Vec::new());
        req.headers = self.credential();
        req.headers
            .extend(modern::headers("server/discover", &params));
        req.headers.push((
            "accept".into(),
            "application/json, text/event-stream".into(),
        ));
        req.headers
            .push(("content-type".into(), "application/json".into()));
        req.timeout_ms = self.config.timeout_ms;
        req.body = jsonrpc::request(
            &Value::String(crate::fresh_id()),
            "server/discover",
            Some(params),
        )
        .to_string()
        .into_bytes();
        let Ok(resp) = outbound::send(req) else {
            return false;
        };
        let status = resp.status();
        let answer = resp.read_body(1 << 20).unwrap_or_default();
        let is_modern = status == 200 && modern::discovered(&answer);
        self.set_era(if is_modern { "modern" } else { "legacy" });
        is_modern
    }

    /// The session in `kv`, if this client has one with this server.
    pub fn existing(&self) -> Option<Session> {
        let raw = kv::get(&self.key()).ok()??;
        let v = serde_json::from_slice::<Value>(&raw).ok()?;
        Some(Session {
            id: v.get("s").and_then(Value::as_str).map(str::to_owned),
            version: v.get("v").and_then(Value::as_str)?.to_string(),
        })
    }

    /// Starts sending a notification or a response (no answer expected) on `session`.
    pub fn start_message(&self, session: &Session, msg: &Value) -> Pending {
        let mut req = self.post(session);
        req.body = msg.to_string().into_bytes();
        Pending {
            call: outbound::start(req),
            body: Vec::new(),
            id: String::new(),
            had_session: session.id.is_some(),
        }
    }

    /// Waits for a message started with [`Hop::start_message`] to be accepted (2xx).
    pub fn delivered(&self, pending: Pending) -> Result<(), HopError> {
        let resp = pending
            .call
            .and_then(|c| outbound::wait(&c))
            .map_err(unavailable)?;
        match resp.status() {
            200..=299 => Ok(()),
            s => Err(HopError::Unavailable(format!("HTTP {s}"))),
        }
    }

    /// Forgets the session (the server said it does not know it).
    pub fn forget(&self) {
        let _ = kv::delete(&self.key());
    }

    /// Ends the upstream session, if there is one (the client ended its own).
    pub fn end(&self) {
        if let Some(s) = self.existing() {
            self.delete(&s);
        }
        self.forget();
    }

    /// Sends DELETE for `session`, if the server minted an id for it.
    fn delete(&self, session: &Session) {
        if session.id.is_some() {
            let mut req =
                outbound::Request::new("DELETE", &self.server.upstream, &self.server.path);
            req.headers = self.headers(session);
            req.timeout_ms = self.config.timeout_ms;
            let _ = outbound::send(req);
        }
    }

    /// `initialize` then `notifications/initialized`; the session is stored in `kv`.
    pub fn initialize(&self) -> Result<Session, HopError> {
        let id = crate::fresh_id();
        let body = json!({
            "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {
                "protocolVersion": UPSTREAM_VERSION,
                // What the client can do for servers (legacy clients; the gateway relays
                // sampling, elicitation and roots requests to it).
                "capabilities": crate::session::client_capabilities(self.scope),
                "clientInfo": {"name": self.config.name, "version": env!("CARGO_PKG_VERSION")},
            }
        });
        let mut req = self.post(&Session {
            id: None,
            version: UPSTREAM_VERSION.into(),
        });
        req.body = body.to_string().into_bytes();
        let resp = outbound::send(req).map_err(unavailable)?;
        let session_id = header(&resp, "mcp-session-id");
        let result = self.read_result(resp, &Value::String(id))?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(UPSTREAM_VERSION)
            .to_string();
        let session = Session {
            id: session_id,
            version,
        };
        let mut note = self.post(&session);
        note.body = json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
            .to_string()
            .into_bytes();
        match outbound::send(note) {
            Ok(r) if r.status() < 300 => {}
            Ok(r) => {
                return Err(HopError::Unavailable(format!(
                    "notifications/initialized answered HTTP {}",
                    r.status()
                )));
            }
            Err(e) => return Err(unavailable(e)),
        }
        let stored = json!({"s": session.id, "v": session.version});
        let ttl = Some(Duration::from_secs(self.config.session_ttl_s));
        // Requests of one client that race here (a GET stream and a call) must end up on one
        // upstream session: a server's request and the client's answer have to meet there.
        if let Ok(false) =
            kv::compare_and_swap(&self.key(), None, stored.to_string().as_bytes(), ttl)
            && let Some(theirs) = self.existing()
        {
            self.delete(&session);
            return Ok(theirs);
        }
        log::debug(&format!(
            "mcp-gateway: opened a session with server \"{}\"",
            self.name
        ));
        Ok(session)
    }

    /// The gateway as a client, as it introduces itself to servers.
    pub fn client_info(&self) -> Value {
        json!({"name": self.config.name, "version": env!("CARGO_PKG_VERSION")})
    }

    /// `params` as `session`'s era wants them: a modern request's `_meta` filled in; the
    /// modern keys taken out of a legacy one.
    pub fn adapt(&self, session: &Session, params: &mut Value) {
        if session.is_modern() {
            modern::prepare(params, self.client_info());
        } else {
            strip_modern_meta(params);
        }
    }

    /// The headers of `method` with `params` on `session`: [`Hop::headers`], and for the
    /// modern era the headers that must match the body.
    pub fn request_headers(
        &self,
        session: &Session,
        method: &str,
        params: &Value,
    ) -> Vec<(String, String)> {
        let mut h = self.headers(session);
        if session.is_modern() {
            h.retain(|(n, _)| n != "mcp-protocol-version");
            h.extend(modern::headers(method, params));
        }
        h
    }

    /// The headers of every request on `session`: accept both answer forms, the session and
    /// version, and this server's credential (never the client's).
    pub fn headers(&self, session: &Session) -> Vec<(String, String)> {
        let mut h = vec![
            (
                "accept".to_string(),
                "application/json, text/event-stream".to_string(),
            ),
            ("content-type".into(), "application/json".into()),
            ("mcp-protocol-version".into(), session.version.clone()),
        ];
        if let Some(id) = &session.id {
            h.push(("mcp-session-id".into(), id.clone()));
        }
        h.extend(self.credential());
        h
    }

    /// This server's credential header, if it has one.
    pub fn credential(&self) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(name) = &self.server.secret {
            match secrets::get(name) {
                Ok(v) => h.push((
                    self.server.secret_header.clone(),
                    format!("{}{v}", self.server.secret_prefix),
                )),
                Err(_) => log::warn(&format!(
                    "mcp-gateway: secret \"{name}\" for server \"{}\" is not granted",
                    self.name
                )),
            }
        }
        h
    }

    /// A GET for `session`'s standalone stream, or to resume one after the server's event
    /// `last_event_id`.
    pub fn stream_request(
        &self,
        session: &Session,
        last_event_id: Option<String>,
    ) -> outbound::Request {
        let mut req = outbound::Request::get(&self.server.upstream, &self.server.path);
        req.headers = self.headers(session);
        req.headers
            .retain(|(n, _)| n != "content-type" && n != "accept");
        req.headers
            .push(("accept".into(), "text/event-stream".into()));
        if let Some(id) = last_event_id {
            req.headers.push(("last-event-id".into(), id));
        }
        req
    }

    fn post(&self, session: &Session) -> outbound::Request {
        let mut req = outbound::Request::post(&self.server.upstream, &self.server.path, Vec::new());
        req.headers = self.headers(session);
        req.timeout_ms = self.config.timeout_ms;
        req
    }

    /// Starts `method` on this server; [`Hop::finish`] waits for its result.
    pub fn start(&self, method: &str, mut params: Value) -> Result<Pending, HopError> {
        let session = self.session()?;
        self.adapt(&session, &mut params);
        let id = crate::fresh_id();
        let mut req = self.post(&session);
        req.headers = self.request_headers(&session, method, &params);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            .to_string()
            .into_bytes();
        req.body = body.clone();
        Ok(Pending {
            call: outbound::start(req),
            body,
            id,
            had_session: session.id.is_some(),
        })
    }

    /// The result of a started call, retried once on a fresh session if the server lost ours.
    pub fn finish(&self, pending: Pending) -> Result<Value, HopError> {
        let resp = pending
            .call
            .and_then(|c| outbound::wait(&c))
            .map_err(unavailable)?;
        let id = Value::String(pending.id.clone());
        if session_lost(resp.status(), pending.had_session) {
            let resp = self.retry_on_new_session(&pending.body)?;
            return self.read_result(resp, &id);
        }
        self.read_result(resp, &id)
    }

    /// `start` then `finish`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, HopError> {
        let pending = self.start(method, params)?;
        self.finish(pending)
    }

    /// Re-initialises and sends `body` again.
    pub fn retry_on_new_session(&self, body: &[u8]) -> Result<IncomingResponse, HopError> {
        log::info(&format!(
            "mcp-gateway: server \"{}\" lost the session; re-initialising",
            self.name
        ));
        self.forget();
        let session = self.initialize()?;
        let mut req = self.post(&session);
        req.body = body.to_vec();
        outbound::send(req).map_err(unavailable)
    }

    /// The answer to request `id` in a JSON or SSE body.
    fn read_result(&self, resp: IncomingResponse, id: &Value) -> Result<Value, HopError> {
        let status = resp.status();
        let sse = is_event_stream(header(&resp, "content-type").as_deref());
        let body = resp
            .read_body(self.config.max_response_bytes)
            .map_err(unavailable)?;
        let messages: Vec<Value> = if sse {
            sse::parse_all(&body)
                .iter()
                .filter_map(|e| e.data())
                .filter_map(|d| serde_json::from_str(&d).ok())
                .collect()
        } else {
            serde_json::from_slice(&body).ok().into_iter().collect()
        };
        let answer = messages
            .into_iter()
            .find(|m| jsonrpc::response_id(m) == Some(id));
        match answer {
            Some(mut m) => {
                if let Some(err) = m.get_mut("error") {
                    return Err(HopError::Rpc(err.take()));
                }
                Ok(m.get_mut("result").map(Value::take).unwrap_or(Value::Null))
            }
            None => Err(HopError::Unavailable(format!(
                "HTTP {status} without an answer{}",
                excerpt(&body)
            ))),
        }
    }
}

/// Whether an answer means the server no longer knows the session (404 is the spec's answer;
/// many servers send 400 instead).
pub fn session_lost(status: u16, had_session: bool) -> bool {
    had_session && (status == 404 || status == 400)
}

pub fn unavailable(e: OutboundError) -> HopError {
    HopError::Unavailable(match e {
        OutboundError::NotGranted(u) => format!("upstream \"{u}\" is not in the outbound grant"),
        OutboundError::InvalidRequest(m) => format!("invalid request: {m}"),
        OutboundError::Timeout => "timed out".into(),
        OutboundError::Failed(m) => m,
        OutboundError::TooLarge(n) => format!("answer larger than {n} bytes"),
        OutboundError::AlreadyConsumed => "answer already consumed".into(),
    })
}

fn header(resp: &IncomingResponse, name: &str) -> Option<String> {
    resp.headers()
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    format!(": {}", text.trim())
}

/// Removes the modern era's `io.modelcontextprotocol/*` keys from `params._meta` (the hop to
/// the server is legacy); other `_meta` keys, such as `progressToken`, stay.
pub fn strip_modern_meta(params: &mut Value) {
    let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) else {
        return;
    };
    meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    if meta.is_empty()
        && let Some(p) = params.as_object_mut()
    {
        p.remove("_meta");
    }
}
