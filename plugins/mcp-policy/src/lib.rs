//! `mcp-policy`: authorises MCP tool calls per principal, and audits every one.
//!
//! Put it before `mcp-gateway` (after the plugin that sets the principal, e.g. `api-key`):
//!
//! ```toml
//! chain = [
//!   { plugin = "api-key", config = { keys = { "k-alice" = "alice" } } },
//!   { plugin = "mcp-policy", config = {
//!       rules = [{ principals = ["alice"], allow = ["py_*", "everything_echo"], deny = ["py_pay"] }],
//!       arguments = [{ tool = "py_read_file", argument = "path", starts_with = "/srv/public" }] } },
//!   { plugin = "mcp-gateway", config = { ... } },
//! ]
//! ```
//!
//! - `tools/call`: a tool no rule allows the principal (or one a rule denies), or arguments
//!   that break an argument rule, are answered with a JSON-RPC error (-32000, "Forbidden: …")
//!   and never go further. Either way an audit record is written (see [`audit`]); for allowed
//!   calls once the answer has streamed through, with its latency and result status
//!   (`ok`, `tool-error` for `isError: true`, `error <code>`).
//! - `tools/list`: tools the principal may not call are removed from the answer.
//!
//! Config: `rules` (see [`rules::Rule`]; default-deny: with no rule nothing is allowed),
//! `arguments` ([`rules::ArgumentRule`]), `audit_arguments` (`digest`, default; `redacted`;
//! `full`), `separator` (between server and tool in public names, default `_`, for the
//! record's `server` field), `metric_tools` (more tool names to count apart in metrics; see
//! [`audit`]). Needs `capabilities = { metrics = true }`.

#![forbid(unsafe_code)]

mod audit;
mod rules;

use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Instant;
use weir_sdk::{
    BodyAccess, BodyEnd, Decision, Direction, Info, LocalResponse, Plugin, ResponseDecision,
    context, request, response,
};
use weir_wire::{is_event_stream, jsonrpc, sse};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<rules::Rule>,
    #[serde(default)]
    arguments: Vec<rules::ArgumentRule>,
    #[serde(default)]
    audit_arguments: audit::Arguments,
    #[serde(default = "default_separator")]
    separator: String,
    #[serde(default = "default_max_request")]
    max_request_bytes: u32,
    /// Tool names that get their own metric series, besides those named literally (no glob) in
    /// `rules` and `arguments`; every other tool a client names is counted as `other`.
    #[serde(default)]
    metric_tools: Vec<String>,
}

impl Config {
    /// The tool names metrics may carry: configured by the operator, never chosen by a client.
    fn metric_names(&self) -> std::collections::BTreeSet<String> {
        let literal = |n: &&String| !n.contains(['*', '?']);
        self.rules
            .iter()
            .flat_map(|r| r.allow.iter().chain(&r.deny))
            .chain(self.arguments.iter().map(|a| &a.tool))
            .chain(&self.metric_tools)
            .filter(literal)
            .cloned()
            .collect()
    }
}

fn default_separator() -> String {
    "_".into()
}
fn default_max_request() -> u32 {
    1 << 20
}

/// The most of a JSON (not streamed) answer kept to read its status from.
const MAX_JSON_ANSWER: usize = 4 << 20;

/// An allowed call on its way: what the record needs once the answer is through.
struct Call {
    id: Value,
    principal: Option<String>,
    tool: String,
    arguments: Value,
    started: Instant,
    status: Option<String>,
    events: sse::Parser,
    json: Vec<u8>,
    sse: bool,
    /// The answer's HTTP status, read in the response hook.
    http_status: u16,
}

/// A `tools/list` answer being collected to filter.
struct Listing {
    principal: Option<String>,
    body: Vec<u8>,
    sse: bool,
}

enum Watch {
    None,
    Call(Box<Call>),
    List(Listing),
}

struct McpPolicy {
    config: Config,
    /// See [`Config::metric_names`].
    metric_names: std::collections::BTreeSet<String>,
    watch: Watch,
}

/// Where a streamed answer stands: the status of the message answering `id`.
fn status_of(msg: &Value, id: &Value) -> Option<String> {
    if jsonrpc::response_id(msg) != Some(id) {
        return None;
    }
    if let Some(code) = msg.pointer("/error/code") {
        return Some(format!("error {code}"));
    }
    let is_error = msg
        .pointer("/result/isError")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(if is_error { "tool-error" } else { "ok" }.into())
}

/// What a POSTed body asks that the policy decides on.
#[derive(Debug, PartialEq)]
enum Ask {
    /// A `tools/call` request: its id, the tool's public name (`""` when not a string) and its
    /// arguments.
    Call {
        id: Value,
        tool: String,
        arguments: Value,
    },
    /// A `tools/list` request, whose answer is filtered.
    List,
    /// Anything else, including bodies that are not one well-formed request: the next plugin's
    /// (`mcp-gateway` parses with the same `weir_wire::jsonrpc::parse` and matches methods
    /// exactly, so what is not a `tools/call` here is not one there either).
    Other,
}

fn ask(body: &[u8]) -> Ask {
    let Ok(jsonrpc::Message::Request { id, method, params }) = jsonrpc::parse(body) else {
        return Ask::Other;
    };
    match method.as_str() {
        "tools/call" => Ask::Call {
            id,
            tool: params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments: params.get("arguments").cloned().unwrap_or(json!({})),
        },
        "tools/list" => Ask::List,
        _ => Ask::Other,
    }
}

/// Whether `principal` may call `tool` with `arguments`.
fn verdict(
    config: &Config,
    principal: Option<&str>,
    tool: &str,
    arguments: &Value,
) -> Result<(), String> {
    rules::tool_allowed(&config.rules, principal, tool)
        .and_then(|()| rules::arguments_allowed(&config.arguments, tool, arguments))
}

impl McpPolicy {
    fn server_of<'a>(&self, tool: &'a str) -> &'a str {
        tool.split_once(self.config.separator.as_str())
            .map_or("", |(s, _)| s)
    }

    fn record(&self, call: &Call, decision: &str, reason: Option<&str>, status: &str) {
        audit::write(
            &audit::Record {
                principal: call.principal.as_deref(),
                server: self.server_of(&call.tool),
                tool: &call.tool,
                known_tool: self.metric_names.contains(&call.tool),
                arguments: &call.arguments,
                decision,
                reason,
                status,
                latency_ms: call.started.elapsed().as_secs_f64() * 1000.0,
            },
            self.config.audit_arguments,
        );
    }

    fn authorise(&mut self, id: Value, tool: String, arguments: Value) -> Decision {
        let principal = context::principal();
        // The request's trace span carries the tool (see the host's telemetry).
        context::set("trace.mcp.tool", &tool);
        context::set("trace.mcp.server", self.server_of(&tool));
        let verdict = verdict(&self.config, principal.as_deref(), &tool, &arguments);
        let call = Call {
            id: id.clone(),
            principal: principal.clone(),
            tool,
            arguments,
            started: Instant::now(),
            status: None,
            events: sse::Parser::default(),
            json: Vec::new(),
            sse: false,
            http_status: 0,
        };
        match verdict {
            Ok(()) => {
                context::set("trace.mcp.decision", "allow");
                self.watch = Watch::Call(Box::new(call));
                Decision::Continue
            }
            Err(reason) => {
                context::set("trace.mcp.decision", "deny");
                self.record(&call, "deny", Some(&reason), "denied");
                let who = principal.as_deref().unwrap_or("anonymous");
                let message = format!("Forbidden: {who} may not call {}: {reason}", call.tool);
                Decision::Respond(
                    LocalResponse::new(200)
                        .header("content-type", "application/json")
                        .body(
                            jsonrpc::error(&id, jsonrpc::SERVER_ERROR, &message, None).to_string(),
                        ),
                )
            }
        }
    }

    /// The `tools/list` answer without the tools the principal may not call.
    fn filter(&self, listing: &Listing) -> Vec<u8> {
        let principal = &listing.principal;
        let keep = |msg: &mut Value| {
            if let Some(Value::Array(tools)) = msg.pointer_mut("/result/tools") {
                tools.retain(|t| {
                    t.get("name").and_then(Value::as_str).is_some_and(|name| {
                        rules::tool_allowed(&self.config.rules, principal.as_deref(), name).is_ok()
                    })
                });
            }
        };
        if listing.sse {
            let mut out = Vec::new();
            for mut e in sse::parse_all(&listing.body) {
                if let Some(data) = e.data()
                    && let Ok(mut msg) = serde_json::from_str::<Value>(&data)
                {
                    keep(&mut msg);
                    e.set_data(&msg.to_string());
                }
                out.extend(e.encode());
            }
            out
        } else {
            match serde_json::from_slice::<Value>(&listing.body) {
                Ok(mut msg) => {
                    keep(&mut msg);
                    msg.to_string().into_bytes()
                }
                Err(_) => listing.body.clone(),
            }
        }
    }
}

impl Plugin for McpPolicy {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.separator.is_empty() {
            return Err("`separator` is empty".into());
        }
        for r in &config.rules {
            if r.principals.is_empty() {
                return Err("a rule has no `principals` (use [\"*\"] for everyone)".into());
            }
        }
        for a in &config.arguments {
            if a.argument.is_empty() {
                return Err(format!(
                    "argument rule for {:?}: `argument` is empty",
                    a.tool
                ));
            }
            if a.starts_with.is_none()
                && a.one_of.is_none()
                && a.min.is_none()
                && a.max.is_none()
                && a.max_length.is_none()
            {
                return Err(format!(
                    "argument rule for {:?}/{}: no condition (starts_with, one_of, min, max, max_length)",
                    a.tool, a.argument
                ));
            }
        }
        Ok(McpPolicy {
            metric_names: config.metric_names(),
            config,
            watch: Watch::None,
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
        self.watch = Watch::None;
        if request::method() != "POST" {
            return Decision::Continue;
        }
        match ask(&request::body().unwrap_or_default()) {
            Ask::Call {
                id,
                tool,
                arguments,
            } => self.authorise(id, tool, arguments),
            Ask::List => {
                // The principal is read now: the body phases see only the message.
                self.watch = Watch::List(Listing {
                    principal: context::principal(),
                    body: Vec::new(),
                    sse: false,
                });
                Decision::Continue
            }
            Ask::Other => Decision::Continue,
        }
    }

    fn on_response(&mut self) -> ResponseDecision {
        let sse = is_event_stream(response::header("content-type").as_deref());
        match &mut self.watch {
            Watch::Call(call) => {
                call.sse = sse;
                call.http_status = response::status();
            }
            Watch::List(listing) => listing.sse = sse,
            Watch::None => {}
        }
        ResponseDecision::Continue
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        if direction != Direction::Response {
            return chunk;
        }
        match &mut self.watch {
            Watch::None => chunk,
            Watch::List(listing) => {
                listing.body.extend_from_slice(&chunk);
                Vec::new()
            }
            Watch::Call(call) => {
                if call.status.is_none() {
                    if call.sse {
                        for e in call.events.push(&chunk) {
                            if let Some(msg) = e.data().and_then(|d| serde_json::from_str(&d).ok())
                                && let Some(s) = status_of(&msg, &call.id)
                            {
                                call.status = Some(s);
                            }
                        }
                    } else if call.json.len() < MAX_JSON_ANSWER {
                        call.json.extend_from_slice(&chunk);
                    }
                }
                chunk
            }
        }
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        if direction != Direction::Response {
            return BodyEnd::default();
        }
        match std::mem::replace(&mut self.watch, Watch::None) {
            Watch::None => BodyEnd::default(),
            Watch::List(listing) => BodyEnd {
                tail: self.filter(&listing),
                trailers: Vec::new(),
            },
            Watch::Call(call) => {
                let status = call.status.clone().or_else(|| {
                    serde_json::from_slice::<Value>(&call.json)
                        .ok()
                        .and_then(|m| status_of(&m, &call.id))
                });
                let status = status.unwrap_or_else(|| format!("http {}", call.http_status));
                self.record(&call, "allow", None, &status);
                context::set("trace.mcp.status", &status);
                BodyEnd::default()
            }
        }
    }
}

weir_sdk::plugin!(McpPolicy);

#[cfg(test)]
mod fuzz;
