//! `mcp-gateway`: a **handler** plugin that federates several MCP servers behind one MCP
//! endpoint. Clients of either era (legacy sessions, 2025-03-26 … 2025-11-25, or the stateless
//! 2026-07-28) see one server whose tools, prompts and resources are those of every configured
//! server, namespaced: `<server>_<tool>`, `<server>+<uri>`.
//!
//! ```toml
//! [[routes]]
//! name = "mcp"
//! match = { path_prefix = "/mcp" }
//! chain = [{ plugin = "mcp-gateway", config = { servers = {
//!     everything = { upstream = "everything" },
//!     py = { upstream = "py", path = "/mcp", secret = "PY_TOKEN" },
//! } } }]
//! [plugins.mcp-gateway]
//! path = "mcp_gateway.wasm"
//! capabilities = { outbound = ["everything", "py"], kv = true, secrets = ["PY_TOKEN"] }
//! ```
//!
//! How each method is served:
//! - `initialize`, `ping`, `server/discover`: answered by the gateway; `logging/setLevel` too,
//!   and passed on to the servers the client has sessions with.
//! - `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`, `tasks/list`:
//!   asked of every server through `outbound`, each followed through all its pages; one merged
//!   page back. A server that fails is logged and left out.
//! - `resources/read`, `prompts/get`, `resources/subscribe`, `resources/unsubscribe`,
//!   `completion/complete`: sent to the server the name points at.
//! - `tools/call`, `tasks/get`, `tasks/result`, `tasks/cancel`, `subscriptions/listen` (a single
//!   modern server): the request itself is **routed** to the server's upstream, names and ids
//!   rewritten ([`ids`]) and the server's credential instead of the client's; the answer
//!   streams back through [`relay`] (progress, logs and the server's own requests as they come).
//! - GET: resumes a stream from the server its `Last-Event-ID` names, or opens the only
//!   server's standalone stream. The client's answers and notifications: [`forward`].
//!
//! The route needs no `upstream`. Config: see [`config::Config`].

#![forbid(unsafe_code)]

mod config;
mod federate;
mod forward;
mod ids;
mod modern;
mod names;
mod origin;
mod relay;
mod session;
mod tasks;
mod upstream;
mod uris;

use config::Config;
use relay::Relay;
use serde_json::{Value, json};
use session::{Era, Refusal};
use upstream::{Hop, HopError};
use weir_sdk::{
    BodyAccess, BodyEnd, Decision, Direction, Info, LocalResponse, Plugin, ResponseDecision, log,
    request, response,
};
use weir_wire::{is_event_stream, jsonrpc};

/// A fresh id for a request the gateway sends upstream.
pub(crate) fn fresh_id() -> String {
    format!("weir-{}", random_hex(8))
}

/// `n` random bytes as hex, from `wasi:random`.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // wasi:random does not fail in practice; a clock-derived value keeps ids unique anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = t.to_le_bytes()[..n.min(16)].to_vec();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request sent on to a server: what the response hook needs.
struct Routed {
    server: String,
    scope: String,
    /// `None` for a stream the client opened with GET.
    call: Option<Call>,
}

/// A routed `tools/call`: what is needed to retry it or to answer for the server.
struct Call {
    body: Vec<u8>,
    had_session: bool,
    client_id: Value,
}

struct McpGateway {
    config: Config,
    routed: Option<Routed>,
    relay: Option<Relay>,
}

fn respond(status: u16, message: &Value) -> Decision {
    Decision::Respond(reply(status, message))
}

pub(crate) fn reply(status: u16, message: &Value) -> LocalResponse {
    LocalResponse::new(status)
        .header("content-type", "application/json")
        .body(message.to_string())
}

fn refuse(id: &Value, r: Refusal) -> Decision {
    respond(r.0, &jsonrpc::error(id, r.1, &r.2, r.3))
}

impl McpGateway {
    fn server_info(&self) -> Value {
        json!({"name": self.config.name, "version": env!("CARGO_PKG_VERSION")})
    }

    /// What the gateway can relay: servers' notifications that belong to no request
    /// (`list_changed`, resource updates) arrive on their standalone streams, which GET passes
    /// through (merged when there are several).
    fn capabilities(&self) -> Value {
        json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "logging": {},
            "completions": {},
        })
    }

    /// A result, with the fields modern clients expect on every result. Cache hints say
    /// "private, do not cache": merged and policy-filtered answers are per client.
    fn result(&self, id: &Value, mut result: Value, modern: bool, cacheable: bool) -> Decision {
        if !modern && let Err(why) = modern::for_legacy(&mut result) {
            return respond(200, &jsonrpc::error(id, jsonrpc::SERVER_ERROR, &why, None));
        }
        if modern && let Some(obj) = result.as_object_mut() {
            obj.entry("resultType").or_insert_with(|| json!("complete"));
            if cacheable {
                obj.insert("ttlMs".into(), json!(0));
                obj.insert("cacheScope".into(), json!("private"));
            }
            let meta = obj.entry("_meta").or_insert_with(|| json!({}));
            meta["io.modelcontextprotocol/serverInfo"] = self.server_info();
        }
        respond(200, &jsonrpc::result(id, result))
    }

    fn handle(&mut self, id: Value, method: String, mut params: Value) -> Decision {
        let era = match session::classify(&method, &params, self.config.session_ttl_s) {
            Ok(era) => era,
            Err(r) => return refuse(&id, r),
        };
        let modern = matches!(era, Era::Modern);
        let scope = match &era {
            Era::Modern => session::MODERN_SCOPE.to_string(),
            Era::Legacy(s) => s.clone(),
            Era::Initialize => String::new(),
        };
        match method.as_str() {
            "initialize" => {
                let version = session::negotiate(&params);
                let caps = params.get("capabilities").cloned().unwrap_or(Value::Null);
                let sid = session::open(version, &caps, self.config.session_ttl_s);
                let result = json!({
                    "protocolVersion": version,
                    "capabilities": self.capabilities(),
                    "serverInfo": self.server_info(),
                    "instructions": format!(
                        "Tools from {} MCP servers, named <server>{}<tool>.",
                        self.config.servers.len(), self.config.separator),
                });
                Decision::Respond(
                    reply(200, &jsonrpc::result(&id, result)).header("mcp-session-id", sid),
                )
            }
            "ping" => self.result(&id, json!({}), modern, false),
            "logging/setLevel" => {
                federate::set_level(&self.config, &scope, &params);
                self.result(&id, json!({}), modern, false)
            }
            "server/discover" => self.result(
                &id,
                json!({
                    "supportedVersions": session::MODERN_VERSIONS,
                    "capabilities": self.capabilities(),
                }),
                modern,
                true,
            ),
            "tools/call" => self.route_call(id, params, scope),
            "subscriptions/listen" if modern => self.route_listen(id, params, scope),
            "tasks/get" | "tasks/result" | "tasks/cancel" => {
                self.route_task(id, &method, params, scope)
            }
            "resources/read"
            | "prompts/get"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete" => {
                match federate::by_name(&self.config, &scope, &method, params) {
                    Ok(r) => self.result(&id, r, modern, method == "resources/read"),
                    Err((code, msg, data)) => respond(200, &jsonrpc::error(&id, code, &msg, data)),
                }
            }
            m => match federate::listing(m) {
                Some(listing) => {
                    if params.get("cursor").is_some_and(|c| !c.is_null()) {
                        // The gateway answers with one complete page and never hands out cursors.
                        return respond(
                            200,
                            &jsonrpc::error(&id, jsonrpc::INVALID_PARAMS, "Invalid cursor", None),
                        );
                    }
                    params = Value::Null;
                    let _ = params;
                    match federate::list_all(&self.config, &scope, m, &listing) {
                        Ok(items) => {
                            let mut r = serde_json::Map::new();
                            r.insert(listing.field.into(), Value::Array(items));
                            self.result(&id, Value::Object(r), modern, true)
                        }
                        Err(why) => respond(
                            200,
                            &jsonrpc::error(
                                &id,
                                jsonrpc::SERVER_ERROR,
                                &format!("no MCP server answered {m}: {why}"),
                                None,
                            ),
                        ),
                    }
                }
                None => respond(
                    // The modern era answers an unknown method with 404.
                    if modern { 404 } else { 200 },
                    &jsonrpc::error(
                        &id,
                        jsonrpc::METHOD_NOT_FOUND,
                        "Method not found",
                        Some(json!(m)),
                    ),
                ),
            },
        }
    }

    /// Sends the client's `tools/call` on to the server that owns the tool.
    fn route_call(&mut self, id: Value, mut params: Value, scope: String) -> Decision {
        let public = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let resolved = names::resolve(&public, &self.config);
        let unknown = || {
            respond(
                200,
                &jsonrpc::error(
                    &id,
                    jsonrpc::INVALID_PARAMS,
                    &format!("Unknown tool: {public}"),
                    None,
                ),
            )
        };
        let Ok((hop, tool)) = federate::target(&self.config, &scope, resolved, "tool", &public)
        else {
            return unknown();
        };
        let session = match hop.session() {
            Ok(s) => s,
            Err(e) => {
                let (code, msg, data) = e.to_error(hop.name);
                log::warn(&format!("mcp-gateway: tools/call {public}: {msg}"));
                return respond(200, &jsonrpc::error(&id, code, &msg, data));
            }
        };
        if !federate::has_tool(&hop, &tool) {
            return unknown();
        }
        params["name"] = Value::String(tool);
        let (decision, routed) =
            self.forward_request(&hop, &session, id, "tools/call", params, &scope);
        self.routed = routed;
        decision
    }

    /// Sends the client's request `method`, rewritten for `hop` (ids and token
    /// gateway-scoped), on to its server; the answer streams back through the relay.
    fn forward_request(
        &self,
        hop: &Hop,
        session: &upstream::Session,
        id: Value,
        method: &str,
        mut params: Value,
        scope: &str,
    ) -> (Decision, Option<Routed>) {
        let modern = scope == session::MODERN_SCOPE;
        hop.adapt(session, &mut params);
        if let Some(token) = params.pointer_mut("/_meta/progressToken") {
            *token = ids::token(token, modern);
        }
        let headers = hop.request_headers(session, method, &params);
        let body = jsonrpc::request(&ids::call(&id, modern), method, Some(params))
            .to_string()
            .into_bytes();
        match self.send_on(hop, session, Some(&body), headers) {
            Ok(upstream_name) => (
                Decision::Route(upstream_name),
                Some(Routed {
                    server: hop.name.to_string(),
                    scope: scope.to_string(),
                    call: Some(Call {
                        body,
                        had_session: session.id.is_some(),
                        client_id: id,
                    }),
                }),
            ),
            Err(d) => (d, None),
        }
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel`: routed to the server running the task
    /// (`tasks/result` may carry the server's requests before the result, like a call).
    fn route_task(
        &mut self,
        id: Value,
        method: &str,
        mut params: Value,
        scope: String,
    ) -> Decision {
        let unknown = |id: &Value| {
            respond(
                200,
                &jsonrpc::error(id, jsonrpc::INVALID_PARAMS, "Unknown task", None),
            )
        };
        let Some(server) = tasks::owner(&mut params) else {
            return unknown(&id);
        };
        let Some(hop) = Hop::new(&self.config, &server, &scope) else {
            return unknown(&id);
        };
        let session = match hop.session() {
            Ok(s) => s,
            Err(e) => {
                let (code, msg, data) = e.to_error(&server);
                return respond(200, &jsonrpc::error(&id, code, &msg, data));
            }
        };
        let (decision, routed) = self.forward_request(&hop, &session, id, method, params, &scope);
        self.routed = routed;
        decision
    }

    /// `subscriptions/listen` (2026-07-28): routed to the only server when it speaks that era,
    /// with the resource URIs in its filter mapped to the server's; the stream comes back
    /// through the relay. Several servers' streams cannot be merged (ARCHITECTURE.md, "MCP
    /// gaps").
    fn route_listen(&mut self, id: Value, mut params: Value, scope: String) -> Decision {
        let not_offered = |why: &str| {
            respond(
                404,
                &jsonrpc::error(
                    &id,
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("subscriptions/listen is not offered: {why}"),
                    None,
                ),
            )
        };
        let only = match self.config.servers.keys().collect::<Vec<_>>().as_slice() {
            [only] => only.to_string(),
            _ => return not_offered("the gateway federates several servers"),
        };
        let Some(hop) = Hop::new(&self.config, &only, &scope) else {
            return not_offered("no server");
        };
        let session = match hop.session() {
            Ok(s) if s.is_modern() => s,
            Ok(_) => return not_offered("the server does not speak 2026-07-28"),
            Err(e) => {
                let (code, msg, data) = e.to_error(&only);
                return respond(200, &jsonrpc::error(&id, code, &msg, data));
            }
        };
        if let Some(Value::Array(uris)) = params.pointer_mut("/notifications/resourceSubscriptions")
        {
            uris.retain_mut(|u| {
                let owned = u
                    .as_str()
                    .and_then(|public| names::resolve_uri(public, &self.config))
                    .filter(|(server, _)| *server == only);
                match owned {
                    Some((_, original)) => {
                        *u = Value::String(original);
                        true
                    }
                    None => false,
                }
            });
        }
        let (decision, routed) =
            self.forward_request(&hop, &session, id, "subscriptions/listen", params, &scope);
        self.routed = routed;
        decision
    }

    /// Rewrites the client's request into one for `hop` on `session` (its path, `headers` with
    /// the server's credential, never the client's; `body` if given) and returns the upstream
    /// to route it to.
    fn send_on(
        &self,
        hop: &Hop,
        session: &upstream::Session,
        body: Option<&[u8]>,
        headers: Vec<(String, String)>,
    ) -> Result<String, Decision> {
        // Nothing of the client's identity or MCP session goes upstream. A modern server gets
        // the client's `Mcp-Param-*` headers as they are (the arguments are unchanged).
        for (name, _) in request::headers() {
            let param = session.is_modern() && name.starts_with("mcp-param-");
            if matches!(
                name.as_str(),
                "authorization" | "cookie" | "x-api-key" | "last-event-id"
            ) || (name.starts_with("mcp-") && !param)
            {
                let _ = request::remove_header(&name);
            }
        }
        for (name, value) in headers {
            if let Err(e) = request::set_header(&name, &value) {
                log::warn(&format!("mcp-gateway: header {name}: {e:?}"));
            }
        }
        let body_ok = body.is_none_or(|b| request::set_body(b).is_ok());
        if !body_ok || request::set_path(&hop.server.path).is_err() {
            return Err(respond(
                500,
                &jsonrpc::error(
                    &Value::Null,
                    jsonrpc::INTERNAL_ERROR,
                    "cannot rewrite the request",
                    None,
                ),
            ));
        }
        Ok(hop.server.upstream.clone())
    }

    /// `GET`: resumes a stream from the server its `Last-Event-ID` names, or opens the standalone
    /// stream of the only server, or of every server, merged ([`Self::open_merged`]).
    fn open_stream(&mut self) -> Decision {
        let scope = match session::legacy_scope(self.config.session_ttl_s) {
            Ok(s) => s,
            Err(r) => return refuse(&Value::Null, r),
        };
        let last = request::header("last-event-id");
        let (server, resume) = match last.as_deref().map(ids::parse_event) {
            Some(Some((s, up))) if self.config.servers.contains_key(s) => {
                (s.to_string(), Some(up.to_string()))
            }
            Some(_) => {
                return respond(
                    400,
                    &jsonrpc::error(
                        &Value::Null,
                        jsonrpc::SERVER_ERROR,
                        "Bad Request: Last-Event-ID names no stream of this gateway",
                        None,
                    ),
                );
            }
            None if self.config.servers.len() == 1 => (
                self.config
                    .servers
                    .keys()
                    .next()
                    .cloned()
                    .unwrap_or_default(),
                None,
            ),
            None => return self.open_merged(&scope),
        };
        let Some(hop) = Hop::new(&self.config, &server, &scope) else {
            return Decision::Respond(LocalResponse::new(500));
        };
        let session = match (&resume, hop.existing()) {
            (_, Some(s)) => s,
            (Some(_), None) => {
                return refuse(
                    &Value::Null,
                    session::Refusal(
                        404,
                        jsonrpc::SESSION_NOT_FOUND,
                        "Session not found".into(),
                        None,
                    ),
                );
            }
            (None, None) => match hop.session() {
                Ok(s) => s,
                Err(e) => {
                    let (code, msg, data) = e.to_error(&server);
                    return respond(502, &jsonrpc::error(&Value::Null, code, &msg, data));
                }
            },
        };
        let headers = hop.stream_request(&session, resume).headers;
        match self.send_on(&hop, &session, None, headers) {
            Ok(upstream_name) => {
                self.routed = Some(Routed {
                    server,
                    scope,
                    call: None,
                });
                Decision::Route(upstream_name)
            }
            Err(d) => d,
        }
    }

    /// GET without `Last-Event-ID` when the gateway federates several servers: every legacy
    /// server's standalone stream, merged by the host event by event
    /// (`outbound::answer_with_events`); the relay tells the events apart and maps them.
    fn open_merged(&mut self, scope: &str) -> Decision {
        let mut servers = Vec::new();
        let mut calls = Vec::new();
        for name in self.config.servers.keys() {
            let Some(hop) = Hop::new(&self.config, name, scope) else {
                continue;
            };
            match hop.session() {
                // A 2026-07-28 server has no standalone stream (`subscriptions/listen` instead).
                Ok(session) if session.is_modern() => {}
                Ok(session) => {
                    match weir_sdk::outbound::start(hop.stream_request(&session, None)) {
                        Ok(call) => {
                            servers.push((name.clone(), hop.prefix().to_string()));
                            calls.push(call);
                        }
                        Err(e) => log::warn(&format!("mcp-gateway: GET stream of {name}: {e:?}")),
                    }
                }
                Err(e) => {
                    let (_, why, _) = e.to_error(name);
                    log::warn(&format!("mcp-gateway: GET stream of {name}: {why}"));
                }
            }
        }
        if calls.is_empty() {
            return respond(
                502,
                &jsonrpc::error(
                    &Value::Null,
                    jsonrpc::SERVER_ERROR,
                    "no MCP server offers a stream",
                    None,
                ),
            );
        }
        if let Err(e) = weir_sdk::outbound::answer_with_events(calls) {
            log::warn(&format!("mcp-gateway: merging streams: {e:?}"));
            return Decision::Respond(LocalResponse::new(500));
        }
        self.relay = Some(Relay::merged(servers, true, self.server_info()));
        Decision::Respond(
            LocalResponse::new(200)
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .header("x-accel-buffering", "no"),
        )
    }

    /// The server's answer to a routed request: streamed through as is (ids mapped), retried on
    /// a new session if the server lost ours, or turned into a JSON-RPC error if it failed.
    fn routed_response(&mut self, routed: Routed) -> ResponseDecision {
        let status = response::status();
        let _ = response::remove_header("mcp-session-id");
        let prefix = self.config.prefix(&routed.server).to_string();
        let sse = is_event_stream(response::header("content-type").as_deref());
        let Some(call) = routed.call else {
            if status < 300 && sse {
                self.relay = Some(Relay::new(
                    &routed.server,
                    &prefix,
                    true,
                    self.server_info(),
                ));
            }
            return ResponseDecision::Continue;
        };
        let client_id = call.client_id.clone();
        let Some(hop) = Hop::new(&self.config, &routed.server, &routed.scope) else {
            return ResponseDecision::Continue;
        };
        if upstream::session_lost(status, call.had_session) || status == 502 {
            // The server restarted (or its session expired): open a new session and send the
            // call again; the answer comes back whole rather than streamed.
            return match hop.retry_on_new_session(&call.body) {
                Ok(resp) => {
                    let status = resp.status();
                    let ct = resp
                        .headers()
                        .into_iter()
                        .find(|(n, _)| n == "content-type")
                        .map(|(_, v)| v)
                        .unwrap_or_else(|| "application/json".into());
                    match resp.read_body(self.config.max_response_bytes) {
                        Ok(body) if status < 500 => {
                            let sse = is_event_stream(Some(&ct));
                            self.relay =
                                Some(Relay::new(&routed.server, &prefix, sse, self.server_info()));
                            ResponseDecision::Replace(
                                LocalResponse::new(status)
                                    .header("content-type", ct)
                                    .body(body),
                            )
                        }
                        Ok(_) => self.failed(
                            &client_id,
                            &routed.server,
                            HopError::Unavailable(format!("HTTP {status}")),
                        ),
                        Err(e) => self.failed(&client_id, &routed.server, upstream::unavailable(e)),
                    }
                }
                Err(e) => self.failed(&client_id, &routed.server, e),
            };
        }
        if status >= 500 {
            hop.forget();
            return self.failed(
                &client_id,
                &routed.server,
                HopError::Unavailable(format!("HTTP {status}")),
            );
        }
        self.relay = Some(Relay::new(&routed.server, &prefix, sse, self.server_info()));
        ResponseDecision::Continue
    }

    /// Replaces a failed call's answer with a JSON-RPC error naming the server.
    fn failed(&self, id: &Value, server: &str, error: HopError) -> ResponseDecision {
        let (code, msg, data) = error.to_error(server);
        log::warn(&format!("mcp-gateway: tools/call: {msg}"));
        ResponseDecision::Replace(reply(200, &jsonrpc::error(id, code, &msg, data)))
    }

    fn end_session(&self) -> Decision {
        let Some(id) = request::header("mcp-session-id") else {
            return respond(
                400,
                &jsonrpc::error(
                    &Value::Null,
                    jsonrpc::SERVER_ERROR,
                    "Bad Request: no Mcp-Session-Id",
                    None,
                ),
            );
        };
        if !session::close(&id) {
            return respond(
                404,
                &jsonrpc::error(
                    &Value::Null,
                    jsonrpc::SESSION_NOT_FOUND,
                    "Session not found",
                    None,
                ),
            );
        }
        for name in self.config.servers.keys() {
            if let Some(hop) = Hop::new(&self.config, name, &id) {
                hop.end();
            }
        }
        Decision::Respond(LocalResponse::new(200))
    }
}

impl Plugin for McpGateway {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(McpGateway {
            config,
            routed: None,
            relay: None,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            request_body: BodyAccess::Buffered(self.config.max_request_bytes),
            response_body: BodyAccess::Streamed,
        }
    }

    fn on_request(&mut self) -> Decision {
        self.routed = None;
        self.relay = None;
        let origin = request::header("origin");
        let host = request::authority();
        let protection = self.config.protection();
        if let Err(origin::Refused(status, why)) =
            protection.check(origin.as_deref(), host.as_deref())
        {
            // Before anything else, whatever the method: a rebound page learns nothing.
            return respond(
                status,
                &jsonrpc::error(&Value::Null, -32000, &format!("Forbidden: {why}"), None),
            );
        }
        match request::method().as_str() {
            "POST" => {}
            "DELETE" => return self.end_session(),
            "GET" => return self.open_stream(),
            _ => {
                return Decision::Respond(
                    LocalResponse::new(405)
                        .header("allow", "GET, POST, DELETE")
                        .text("weir: this MCP endpoint takes POST, GET and DELETE\n"),
                );
            }
        }
        let body = request::body().unwrap_or_default();
        match jsonrpc::parse(&body) {
            Err(invalid) => respond(
                400,
                &jsonrpc::error(&Value::Null, invalid.code(), &invalid.message(), None),
            ),
            Ok(jsonrpc::Message::Notification { method, params }) => {
                // Modern clients have no session and send nothing servers must hear.
                if request::header("mcp-session-id").is_none() {
                    return Decision::Respond(LocalResponse::new(202));
                }
                match session::legacy_scope(self.config.session_ttl_s) {
                    Ok(scope) => Decision::Respond(forward::notification(
                        &self.config,
                        &scope,
                        &method,
                        params,
                    )),
                    Err(r) => refuse(&Value::Null, r),
                }
            }
            Ok(jsonrpc::Message::Response { id, body }) => {
                match session::legacy_scope(self.config.session_ttl_s) {
                    Ok(scope) => {
                        Decision::Respond(forward::answer(&self.config, &scope, &id, body))
                    }
                    Err(r) => refuse(&Value::Null, r),
                }
            }
            Ok(jsonrpc::Message::Request { id, method, params }) => {
                let params = if params.is_null() { json!({}) } else { params };
                self.handle(id, method, params)
            }
        }
    }

    fn on_response(&mut self) -> ResponseDecision {
        match self.routed.take() {
            Some(routed) => self.routed_response(routed),
            None => ResponseDecision::Continue,
        }
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        match (&mut self.relay, direction) {
            (Some(relay), Direction::Response) => relay.chunk(&chunk),
            _ => chunk,
        }
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        match (&mut self.relay, direction) {
            (Some(relay), Direction::Response) => BodyEnd {
                tail: relay.end(),
                trailers: Vec::new(),
            },
            _ => BodyEnd::default(),
        }
    }
}

weir_sdk::plugin!(McpGateway);
