//! `a2a`: puts A2A agents behind the gateway. On a route whose upstream is an agent:
//!
//! - **cards** (`/.well-known/agent-card.json`, the ≤0.2 `/.well-known/agent.json`, and the
//!   extended card over REST and JSON-RPC) are rewritten so every interface URL points at the
//!   gateway (both the v1.0 and the v0.3 card shapes), with `signatures` dropped and, if
//!   configured, `securitySchemes` saying what the gateway enforces; `Vary: A2A-Version`;
//! - **operations** of every binding and version (`SendMessage`, `message/send`,
//!   `POST /message:send`, ...) are authorised per principal by their v1.0 name;
//! - **push-notification webhooks** pointing at internal addresses are refused (SSRF);
//! - every operation leaves an **audit record** (`a2a-audit {...}` in the log, and the counter
//!   `weir_plugin_a2a_operations_total{operation,decision}`).
//!
//! Everything else, streams included, passes through untouched.

#![forbid(unsafe_code)]

pub mod card;
pub mod methods;
pub mod ssrf;

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
}

struct A2a {
    config: Config,
    watch: Watch,
    public: String,
    /// Audit fields of this request's operation.
    audit: Option<Value>,
}

fn forbidden(rpc_id: Option<&Value>, message: &str) -> Decision {
    let body = match rpc_id {
        Some(id) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}})
        }
        None => json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": message}}),
    };
    Decision::Respond(
        LocalResponse::new(403)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
}

impl A2a {
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

    fn record(&self, audit: &Value) {
        log::info(&format!("a2a-audit {audit}"));
        let op = audit["operation"].as_str().unwrap_or("?");
        let decision = audit["decision"].as_str().unwrap_or("?");
        metrics::counter_add(
            "a2a_operations",
            1,
            &[("operation", op), ("decision", decision)],
        );
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
            response_body: BodyAccess::Streamed,
        }
    }

    fn on_request(&mut self) -> Decision {
        self.watch = Watch::None;
        self.audit = None;
        self.public = self.public_base();
        let method = request::method();
        let path = request::path();
        let bare = path.split('?').next().unwrap_or_default().to_string();
        if method == "GET"
            && (bare.ends_with("/.well-known/agent-card.json")
                || bare.ends_with("/.well-known/agent.json"))
        {
            // The card is fetched whole; no compression to undo.
            let _ = request::remove_header("accept-encoding");
            self.watch = Watch::Card {
                rpc: false,
                buf: Vec::new(),
            };
            return Decision::Continue;
        }
        let principal = context::principal();
        let body = request::body().unwrap_or_default();
        let (op, rpc_id, params) = match methods::rest_operation(&method, &bare) {
            Some(op) => {
                let params = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                (op.to_string(), None, params)
            }
            None if method == "POST" => {
                let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                    // Not JSON: the agent answers its own parse error; nothing to authorise.
                    return Decision::Continue;
                };
                let Some(m) = msg.get("method").and_then(Value::as_str) else {
                    return Decision::Continue;
                };
                (
                    methods::normalise(m).to_string(),
                    Some(msg.get("id").cloned().unwrap_or(Value::Null)),
                    msg.get("params").cloned().unwrap_or(Value::Null),
                )
            }
            None => return Decision::Continue,
        };
        let (task, ctx) = ids(&params);
        let mut audit = json!({"event": "a2a.operation", "operation": op,
                               "principal": principal, "task_id": task, "context_id": ctx,
                               "a2a_version": request::header("a2a-version").unwrap_or_else(|| "0.3".into())});
        let verdict = self.allowed(principal.as_deref(), &op).and_then(|()| {
            if methods::carries_webhook(&op) {
                for url in ssrf::urls(&params) {
                    ssrf::check(&url, &self.config.push_allow_hosts)?;
                }
            }
            Ok(())
        });
        if let Err(why) = verdict {
            audit["decision"] = json!("deny");
            audit["reason"] = json!(why);
            self.record(&audit);
            return forbidden(rpc_id.as_ref(), &format!("Forbidden: {why}"));
        }
        audit["decision"] = json!("allow");
        if op == "GetExtendedAgentCard" {
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
        let Watch::Card { rpc, buf } = std::mem::replace(&mut self.watch, Watch::None) else {
            return BodyEnd::default();
        };
        if direction != Direction::Response {
            return BodyEnd::default();
        }
        let security = self.config.security.as_ref();
        let tail = if rpc {
            match serde_json::from_slice::<Value>(&buf) {
                Ok(mut msg) => {
                    if let Some(card) = msg.get_mut("result") {
                        let _ = card::rewrite_value(card, &self.public, security);
                    }
                    msg.to_string().into_bytes()
                }
                Err(_) => buf,
            }
        } else {
            match card::rewrite(&buf, &self.public, security) {
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
