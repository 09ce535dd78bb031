//! `a2a`: puts A2A agents behind the gateway. On a route whose upstream is an agent:
//!
//! - **cards** (`/.well-known/agent-card.json`, the ≤0.2 `/.well-known/agent.json`, and the
//!   extended card over REST and JSON-RPC) are rewritten so every interface URL points at the
//!   gateway (both the v1.0 and the v0.3 card shapes), with `signatures` dropped and, if
//!   configured, `securitySchemes` saying what the gateway enforces; `Vary: A2A-Version`;
//! - **operations** of every binding and version (`SendMessage`, `message/send`,
//!   `POST /message:send`, `/lf.a2a.v1.A2AService/SendMessage`, ...) are authorised per
//!   principal by their v1.0 name; a request that is no known operation is refused unless
//!   `allow_unclassified`, and a percent-encoded path always;
//! - **push-notification webhooks** pointing at internal addresses are refused (SSRF), in JSON
//!   bodies and in gRPC (protobuf) ones;
//! - every operation leaves an **audit record** (`a2a-audit {...}` in the log, and the counter
//!   `weir_plugin_a2a_operations_total{operation,decision}`, whose `operation` is a known
//!   operation or `other`).
//!
//! Responses, streams included, pass through untouched but for cards.

#![forbid(unsafe_code)]

pub mod card;
pub mod classify;
pub mod grpc;
pub mod methods;
pub mod ssrf;

use classify::{Binding, Class};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use weir_sdk::{
    BodyAccess, BodyEnd, Decision, Direction, Info, LocalResponse, Plugin, ResponseDecision,
    context, log, metrics, request, response,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Access {
    /// Operations (v1.0 names, `*` for all) these principals may use.
    #[serde(default)]
    allow: Vec<String>,
    /// Operations they may not use, whatever `allow` says.
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The gateway's public base URL for this agent, e.g. `https://gw.example.com/agents/echo`.
    /// Without it, it is built from the request (`x-forwarded-proto` and the `Host` the client
    /// used) and `public_prefix`.
    public_url: Option<String>,
    /// The route's public path prefix when the route rewrites it away (`/agents/echo`).
    #[serde(default)]
    public_prefix: String,
    /// Access per principal (`"*"` for everyone else). Without this table every operation is
    /// allowed.
    access: Option<BTreeMap<String, Access>>,
    /// Replaces the card's `securitySchemes` (and, with `requirements`, its security
    /// requirements) so the card describes what the gateway enforces.
    security: Option<Value>,
    /// Webhook hosts allowed even though they look internal.
    #[serde(default)]
    push_allow_hosts: Vec<String>,
    /// The largest request body read, and the largest card rewritten.
    #[serde(default = "default_max")]
    max_body_bytes: u32,
    /// Let requests that are no known A2A operation through (audited as `other`) instead of
    /// refusing them.
    #[serde(default)]
    allow_unclassified: bool,
    /// Rewrite cards (and so stream response bodies through the plugin). `false` on a route
    /// that serves only gRPC: no body is then touched, and cards on it are refused.
    #[serde(default = "yes")]
    rewrite_cards: bool,
    /// Where the card sends clients of each binding; see [`card::Bindings`].
    jsonrpc_url: Option<String>,
    rest_url: Option<String>,
    grpc_url: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_max() -> u32 {
    1 << 20
}

/// What the response side must do.
enum Watch {
    None,
    /// Collect the card and rewrite it at the end; `rpc` if it is a JSON-RPC result.
    Card {
        rpc: bool,
        buf: Vec<u8>,
    },
    /// This plugin refused a gRPC call: repeat the status as trailers in case the host streams
    /// the (empty) body rather than ending the stream with the headers.
    GrpcStatus(Vec<(String, String)>),
}

struct A2a {
    config: Config,
    watch: Watch,
    public: String,
    /// Audit fields of this request's operation.
    audit: Option<Value>,
}

impl A2a {
    /// A refusal in the binding's own shape. gRPC: Trailers-Only (HTTP 200, the status in the
    /// headers, no body): `UNAUTHENTICATED` when the policy refuses a caller without a principal,
    /// else `PERMISSION_DENIED`.
    fn forbidden(
        &mut self,
        binding: Binding,
        rpc_id: Option<&Value>,
        unauthenticated: bool,
        message: &str,
    ) -> Decision {
        if binding == Binding::Grpc {
            let status = vec![
                (
                    "grpc-status".to_string(),
                    (if unauthenticated { "16" } else { "7" }).to_string(),
                ),
                ("grpc-message".to_string(), grpc::encode_message(message)),
            ];
            let mut local = LocalResponse::new(200).header("content-type", "application/grpc");
            for (k, v) in &status {
                local = local.header(k, v);
            }
            self.watch = Watch::GrpcStatus(status);
            return Decision::Respond(local);
        }
        let body = match rpc_id {
            Some(id) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}})
            }
            None => {
                json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": message}})
            }
        };
        Decision::Respond(
            LocalResponse::new(403)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    fn public_base(&self) -> String {
        if let Some(u) = &self.config.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let scheme = request::header("x-forwarded-proto").unwrap_or_else(request::scheme);
        let host = request::header("x-forwarded-host")
            .or_else(request::authority)
            .unwrap_or_else(|| "localhost".into());
        format!(
            "{scheme}://{host}{}",
            self.config.public_prefix.trim_end_matches('/')
        )
    }

    fn allowed(&self, principal: Option<&str>, op: &str) -> Result<(), String> {
        let Some(access) = &self.config.access else {
            return Ok(());
        };
        let who = principal.unwrap_or("anonymous");
        let rules = principal
            .and_then(|p| access.get(p))
            .or_else(|| access.get("*"));
        let Some(rules) = rules else {
            return Err(format!("{who} has no access to this agent"));
        };
        let hit = |list: &[String]| list.iter().any(|m| m == "*" || m == op);
        if hit(&rules.deny) || !hit(&rules.allow) {
            return Err(format!("{who} may not use {op}"));
        }
        Ok(())
    }

    fn refuse_unclassified(
        &mut self,
        binding: Binding,
        rpc_id: Option<&Value>,
        principal: &Option<String>,
        version: &str,
        reason: &str,
    ) -> Decision {
        let audit = json!({"event": "a2a.operation", "operation": "other",
            "binding": binding_name(binding), "principal": principal, "a2a_version": version,
            "decision": "deny", "reason": reason});
        self.record(&audit);
        if let (Binding::JsonRpc, Some(id)) = (binding, rpc_id) {
            // Answered as a JSON-RPC server answers what it does not serve, so clients and
            // conformance suites see the error they expect; the agent never sees the call.
            let (code, what) = match reason {
                classify::UNKNOWN_METHOD => (-32601, "Method not found"),
                classify::PARSE_ERROR => (-32700, "Parse error"),
                _ => (-32600, "Invalid Request"),
            };
            let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code,
                "message": format!("{what}: {reason} (refused by the gateway)")}});
            return Decision::Respond(
                LocalResponse::new(200)
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            );
        }
        self.forbidden(binding, rpc_id, false, &format!("Forbidden: {reason}"))
    }

    fn record(&self, audit: &Value) {
        log::info(&format!("a2a-audit {audit}"));
        // Labels come from fixed sets only: a client cannot add series.
        let op = methods::label(audit["operation"].as_str().unwrap_or_default());
        let decision = if audit["decision"] == "allow" {
            "allow"
        } else {
            "deny"
        };
        metrics::counter_add(
            "a2a_operations",
            1,
            &[("operation", op), ("decision", decision)],
        );
    }
}

fn binding_name(binding: Binding) -> &'static str {
    match binding {
        Binding::JsonRpc => "JSONRPC",
        Binding::Rest => "HTTP+JSON",
        Binding::Grpc => "GRPC",
    }
}

/// The task and context ids a request names, for the audit record.
fn ids(params: &Value) -> (Value, Value) {
    let task = params
        .get("id")
        .or_else(|| params.get("taskId"))
        .or_else(|| params.pointer("/message/taskId"))
        .cloned()
        .unwrap_or(Value::Null);
    let ctx = params
        .pointer("/message/contextId")
        .or_else(|| params.get("contextId"))
        .cloned()
        .unwrap_or(Value::Null);
    (task, ctx)
}

impl Plugin for A2a {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if let Some(u) = &config.public_url
            && card::url_path(u).is_none()
        {
            return Err(format!("`public_url` must be an http(s) URL, got {u:?}"));
        }
        if !(config.public_prefix.is_empty() || config.public_prefix.starts_with('/')) {
            return Err("`public_prefix` must start with '/'".into());
        }
        for (key, url) in [
            ("jsonrpc_url", &config.jsonrpc_url),
            ("rest_url", &config.rest_url),
        ] {
            if let Some(u) = url
                && card::url_path(u).is_none()
            {
                return Err(format!("`{key}` must be an http(s) URL, got {u:?}"));
            }
        }
        // `host:port` (what a2a-sdk clients dial) or a URL such as `grpc://host:port` (what
        // some other clients parse): whichever the operator's clients expect.
        if let Some(g) = &config.grpc_url
            && (!g.contains(':') || g.contains(char::is_whitespace))
        {
            return Err(format!(
                "`grpc_url` must be the gateway's gRPC address (`host:port` or a URL), got {g:?}"
            ));
        }
        Ok(A2a {
            config,
            watch: Watch::None,
            public: String::new(),
            audit: None,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            request_body: BodyAccess::Buffered(self.config.max_body_bytes),
            // Only cards are rewritten; without them no response body is touched, so gRPC
            // streams and Trailers-Only errors pass exactly as the agent sent them.
            response_body: if self.config.rewrite_cards {
                BodyAccess::Streamed
            } else {
                BodyAccess::None
            },
        }
    }

    fn on_request(&mut self) -> Decision {
        self.watch = Watch::None;
        self.audit = None;
        self.public = self.public_base();
        let method = request::method();
        let path = request::path();
        let body = request::body().unwrap_or_default();
        let content_type = request::header("content-type");
        let class = classify::classify(&method, &path, content_type.as_deref(), &body);
        let principal = context::principal();
        let version = request::header("a2a-version").unwrap_or_else(|| "0.3".into());
        let (op, binding, rpc_id, params, era) = match class {
            Class::Card if !self.config.rewrite_cards => {
                return self.refuse_unclassified(
                    Binding::Rest,
                    None,
                    &principal,
                    &version,
                    "agent cards are not served on this route (`rewrite_cards = false`)",
                );
            }
            Class::Card => {
                // The card is fetched whole; no compression to undo.
                let _ = request::remove_header("accept-encoding");
                self.watch = Watch::Card {
                    rpc: false,
                    buf: Vec::new(),
                };
                return Decision::Continue;
            }
            Class::Operation {
                op,
                binding,
                rpc_id,
                params,
                grpc,
            } => (op, binding, rpc_id, params, grpc),
            Class::Ambiguous { binding, reason } => {
                return self.refuse_unclassified(binding, None, &principal, &version, &reason);
            }
            Class::Unclassified {
                binding,
                rpc_id,
                reason,
            } => {
                if self.config.allow_unclassified {
                    let audit = json!({"event": "a2a.operation", "operation": "other",
                        "binding": binding_name(binding), "principal": principal,
                        "a2a_version": version, "decision": "allow", "reason": reason});
                    self.audit = Some(audit);
                    return Decision::Continue;
                }
                return self.refuse_unclassified(
                    binding,
                    rpc_id.as_ref(),
                    &principal,
                    &version,
                    &reason,
                );
            }
        };
        let (webhooks, task, ctx) = match era {
            Some(era) => match grpc::inspect(op, era, &body) {
                Ok(found) => (
                    Ok(found.webhooks),
                    json!(found.task_id),
                    json!(found.context_id),
                ),
                Err(e) => (Err(e), Value::Null, Value::Null),
            },
            None => {
                let (task, ctx) = ids(&params);
                (Ok(ssrf::urls(&params)), task, ctx)
            }
        };
        let mut audit = json!({"event": "a2a.operation", "operation": op,
                               "binding": binding_name(binding),
                               "principal": principal, "task_id": task, "context_id": ctx,
                               "a2a_version": version});
        let policy = self.allowed(principal.as_deref(), op);
        let unauthenticated = policy.is_err() && principal.is_none();
        let verdict = policy.and_then(|()| {
            if methods::carries_webhook(op) {
                for url in webhooks? {
                    ssrf::check(&url, &self.config.push_allow_hosts)?;
                }
            }
            Ok(())
        });
        if let Err(why) = verdict {
            audit["decision"] = json!("deny");
            audit["reason"] = json!(why);
            self.record(&audit);
            return self.forbidden(
                binding,
                rpc_id.as_ref(),
                unauthenticated,
                &format!("Forbidden: {why}"),
            );
        }
        audit["decision"] = json!("allow");
        if op == "GetExtendedAgentCard" && binding != Binding::Grpc {
            if !self.config.rewrite_cards {
                return self.refuse_unclassified(
                    binding,
                    None,
                    &principal,
                    &version,
                    "agent cards are not served on this route (`rewrite_cards = false`)",
                );
            }
            self.watch = Watch::Card {
                rpc: rpc_id.is_some(),
                buf: Vec::new(),
            };
        }
        self.audit = Some(audit);
        Decision::Continue
    }

    fn on_response(&mut self) -> ResponseDecision {
        if let Some(mut audit) = self.audit.take() {
            audit["status"] = json!(response::status());
            self.record(&audit);
        }
        if matches!(self.watch, Watch::Card { .. }) {
            if response::status() != 200 {
                self.watch = Watch::None;
            } else {
                // The body changes: the upstream's validators no longer describe it.
                let _ = response::remove_header("etag");
                let _ = response::remove_header("content-length");
                let _ = response::append_header("vary", "A2A-Version");
            }
        }
        ResponseDecision::Continue
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        match (&mut self.watch, direction) {
            (Watch::Card { buf, .. }, Direction::Response) => {
                if buf.len() + chunk.len() > self.config.max_body_bytes as usize {
                    log::warn("a2a: agent card larger than max_body_bytes; passed on unrewritten");
                    let mut all = std::mem::take(buf);
                    all.extend(chunk);
                    self.watch = Watch::None;
                    return all;
                }
                buf.extend(chunk);
                Vec::new()
            }
            _ => chunk,
        }
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        if direction != Direction::Response {
            return BodyEnd::default();
        }
        let (rpc, buf) = match std::mem::replace(&mut self.watch, Watch::None) {
            Watch::Card { rpc, buf } => (rpc, buf),
            Watch::GrpcStatus(trailers) => {
                return BodyEnd {
                    tail: Vec::new(),
                    trailers,
                };
            }
            Watch::None => return BodyEnd::default(),
        };
        let security = self.config.security.as_ref();
        let bindings = card::Bindings {
            public: &self.public,
            jsonrpc: self.config.jsonrpc_url.as_deref(),
            rest: self.config.rest_url.as_deref(),
            grpc: self.config.grpc_url.as_deref(),
        };
        let tail = if rpc {
            match serde_json::from_slice::<Value>(&buf) {
                Ok(mut msg) => {
                    if let Some(card) = msg.get_mut("result") {
                        let _ = card::rewrite_value(card, &bindings, security);
                    }
                    msg.to_string().into_bytes()
                }
                Err(_) => buf,
            }
        } else {
            match card::rewrite(&buf, &bindings, security) {
                Ok(out) => out,
                Err(e) => {
                    // A card the gateway cannot read is not passed on: it would send clients
                    // around the gateway.
                    log::warn(&format!(
                        "a2a: the agent's card is malformed ({e:?}); answered 502"
                    ));
                    json!({"error": {"code": 502, "status": "UNAVAILABLE",
                                     "message": "the agent's card is malformed"}})
                    .to_string()
                    .into_bytes()
                }
            }
        };
        BodyEnd {
            tail,
            trailers: Vec::new(),
        }
    }
}

weir_sdk::plugin!(A2a);
