//! `guardrails`: inspects what passes a route — LLM prompts and answers (OpenAI and Anthropic
//! formats, streamed answers included), MCP tool arguments and results, A2A message parts, or
//! any JSON or text — with detectors for personal data (validated, not just patterns), secrets,
//! operator patterns and words, prompt-injection heuristics and an external moderation service.
//! Each detector blocks (in the client's own error format), redacts (mask or stable
//! placeholders) or only records; every hit is audited and counted, never the matched text.
//!
//! Put it early in the chain, after authentication (it reads the principal) and before the
//! plugin that answers (`llm-gateway`, `mcp-gateway`) or the upstream: it then sees the client's
//! request before it goes on and the answer as the client will get it.
//!
//! The request body is buffered (up to `max_body_bytes`); the answer is streamed through it.
//! Config: see [`config::Config`] and docs/plugins.md.

#![forbid(unsafe_code)]

mod audit;
mod config;
mod detect;
mod moderation;
mod protocol;
mod scan;
mod stream;

use config::{Config, Guard, Uninspectable};
use detect::Kind;
use moderation::Verdict;
use protocol::Protocol;
use scan::{Inspection, Placeholders};
use serde_json::{Value, json};
use stream::StreamInspector;
use weir_sdk::{
    BodyAccess, BodyEnd, Decision, Direction, Info, Plugin, ResponseDecision, context, request,
    response,
};
use weir_wire::is_event_stream;

/// How the answer of the current request is inspected.
enum Answer {
    /// Nothing inspects answers for this request.
    Pass,
    /// A whole body, collected, then inspected at its end.
    Whole {
        buf: Vec<u8>,
        over: Over,
    },
    Stream(StreamInspector),
}

/// A whole answer past `max_body_bytes`.
#[derive(PartialEq, Eq)]
enum Over {
    No,
    /// Let through uninspected (`uninspectable = "allow"`).
    Passing,
    /// Withheld: the rest is dropped and the answer ends with the protocol's refusal.
    Withholding,
}

/// One request on its way.
struct Exchange {
    protocol: Protocol,
    principal: Option<String>,
    /// The JSON-RPC requests (id, method) it carried.
    rpc: Vec<(Value, String)>,
    placeholders: Placeholders,
    answer: Answer,
    mcp: protocol::McpAnswer,
    /// Public discovery documents (`/.well-known/…`, e.g. A2A agent cards) are metadata, not
    /// content: neither the request nor the answer is inspected.
    skip: bool,
}

struct Guardrails {
    guard: Guard,
    exchange: Option<Exchange>,
}

fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        c.trim()
            .to_ascii_lowercase()
            .starts_with("application/grpc")
    })
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        let c = c.to_ascii_lowercase();
        c.contains("/json") || c.contains("+json")
    })
}

/// A request refused before any detector ran (it could not be inspected).
enum Refusal {
    Uninspectable(&'static str),
    Invalid(String),
}

impl Guardrails {
    fn scope<'a>(&self, ex: &'a Exchange, response: bool) -> audit::Scope<'a> {
        audit::Scope {
            direction: if response { "response" } else { "request" },
            protocol: ex.protocol.name(),
            principal: ex.principal.as_deref(),
        }
    }

    fn refuse(&self, ex: &Exchange, message: &str, status: u16) -> Decision {
        let rpc = ex.rpc.first().map(|(id, m)| (id, Some(m.as_str())));
        Decision::Respond(protocol::refusal(ex.protocol, rpc, message, status, ex.mcp))
    }

    /// Reads the request body: the protocol, and the parsed JSON (if it is JSON).
    fn read(&self, ex: &mut Exchange, body: &[u8]) -> Result<Option<Value>, Refusal> {
        let content_type = request::header("content-type");
        let by_path = protocol::by_path(&request::path());
        ex.protocol = by_path.unwrap_or(Protocol::Json);
        if is_grpc(content_type.as_deref()) {
            return Err(Refusal::Uninspectable("gRPC bodies are binary"));
        }
        let encoded = request::header("content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        if encoded && !body.is_empty() {
            return Err(Refusal::Uninspectable("the body is compressed"));
        }
        if body.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| Refusal::Uninspectable("the body is not valid UTF-8"))?;
        match serde_json::from_str::<Value>(text) {
            Ok(mut v) => {
                if by_path.is_none()
                    && let Some(m) = protocol::rpc_messages(&mut v).first()
                    && let Some(method) = m.get("method").and_then(Value::as_str)
                {
                    ex.protocol = protocol::by_method(method);
                }
                for m in protocol::rpc_messages(&mut v) {
                    if let (Some(id), Some(method)) = (m.get("id"), m.get("method")) {
                        let method = method.as_str().unwrap_or_default().to_string();
                        ex.rpc.push((id.clone(), method));
                    }
                }
                Ok(Some(v))
            }
            Err(e) if by_path.is_some() || is_json(content_type.as_deref()) => Err(
                Refusal::Invalid(format!("the request body is not valid JSON: {e}")),
            ),
            Err(_) => {
                ex.protocol = Protocol::Text;
                Ok(Some(Value::String(text.to_string())))
            }
        }
    }

    /// Inspects the request's texts; returns the new body if a redaction changed it, and the
    /// texts for moderation.
    fn inspect_request(
        &self,
        ex: &mut Exchange,
        v: &mut Value,
    ) -> (Option<scan::Tally>, bool, Vec<String>) {
        let moderated = self.moderators(ex).next().is_some();
        let mut ins = Inspection::new(
            &self.guard,
            false,
            ex.principal.as_deref(),
            &mut ex.placeholders,
        );
        let mut changed = false;
        let mut texts = Vec::new();
        let methods: Vec<Option<String>> = match &*v {
            Value::Array(a) => a
                .iter()
                .map(|m| m.get("method").and_then(Value::as_str).map(String::from))
                .collect(),
            other => vec![
                other
                    .get("method")
                    .and_then(Value::as_str)
                    .map(String::from),
            ],
        };
        let mut visit = |msg: &mut Value, method: Option<&str>| {
            protocol::texts(ex.protocol, false, method, msg, &mut |s| {
                if let Some(n) = ins.text(s) {
                    *s = n;
                    changed = true;
                }
                if moderated {
                    texts.push(s.clone());
                }
            });
        };
        match v {
            Value::Array(a) if !a.is_empty() && ex.protocol != Protocol::Json => {
                for (m, method) in a.iter_mut().zip(&methods) {
                    visit(m, method.as_deref());
                }
            }
            other => visit(other, methods[0].as_deref()),
        }
        (Some(ins.tally), changed, texts)
    }

    fn moderators<'a>(
        &'a self,
        ex: &'a Exchange,
    ) -> impl Iterator<Item = (usize, &'a config::ModerationConfig)> + 'a {
        self.guard
            .detectors
            .iter()
            .enumerate()
            .filter_map(move |(i, d)| match &d.kind {
                Kind::Moderation(m) if d.applies(false, ex.principal.as_deref()) => Some((i, m)),
                _ => None,
            })
    }

    /// Runs the moderation detectors; a refusal when one blocks.
    fn moderate(&self, ex: &Exchange, texts: &[String]) -> Option<Decision> {
        let scope = self.scope(ex, false);
        for (det, m) in self.moderators(ex) {
            let d = &self.guard.detectors[det];
            match moderation::check(m, texts) {
                Verdict::Clean => {}
                Verdict::Flagged(categories) => {
                    audit::write(
                        &d.name,
                        d.action.name(),
                        &scope,
                        json!({"kind": "moderation", "count": 1, "categories": categories}),
                        1,
                    );
                    if d.action == config::Action::Block {
                        return Some(self.refuse(ex, &protocol::reason(&d.name, false), 400));
                    }
                }
                Verdict::Failed(why) => {
                    let closed = m.on_failure == Uninspectable::Block;
                    let action = if closed { "block" } else { "allow" };
                    weir_sdk::log::warn(&format!("moderation `{}` failed: {why}", d.name));
                    audit::write(
                        &d.name,
                        action,
                        &scope,
                        json!({"kind": "moderation", "outcome": "failed", "reason": why}),
                        1,
                    );
                    if closed {
                        let message = format!(
                            "guardrail `{}` could not get a moderation verdict; the request is refused",
                            d.name
                        );
                        return Some(self.refuse(ex, &message, 503));
                    }
                }
            }
        }
        None
    }

    fn uninspectable(&self, ex: &Exchange, response: bool, why: &str) -> bool {
        let allow = self.guard.uninspectable == Uninspectable::Allow;
        let action = if allow { "allow" } else { "block" };
        audit::write(
            "uninspectable",
            action,
            &self.scope(ex, response),
            json!({"reason": why}),
            1,
        );
        allow
    }

    fn request(&mut self, ex: &mut Exchange) -> Decision {
        if request::path().starts_with("/.well-known/") && request::method() == "GET" {
            ex.skip = true;
            return Decision::Continue;
        }
        let principal = ex.principal.as_deref();
        if self
            .guard
            .detectors
            .iter()
            .any(|d| d.applies(true, principal))
        {
            // Answers are inspected: ask for them uncompressed.
            let _ = request::set_header("accept-encoding", "identity");
        }
        let body = request::body().unwrap_or_default();
        let mut v = match self.read(ex, &body) {
            Ok(Some(v)) => v,
            Ok(None) => return Decision::Continue,
            Err(Refusal::Invalid(message)) => return self.refuse(ex, &message, 400),
            Err(Refusal::Uninspectable(why)) => {
                if self.uninspectable(ex, false, why) {
                    return Decision::Continue;
                }
                let message = format!("guardrails cannot inspect this request: {why}");
                if is_grpc(request::header("content-type").as_deref()) {
                    return Decision::Respond(protocol::grpc_refusal(&message));
                }
                return self.refuse(ex, &message, 415);
            }
        };
        let (tally, changed, texts) = self.inspect_request(ex, &mut v);
        if let Some(t) = &tally {
            audit::hits(&self.guard, t, &self.scope(ex, false));
            if let Some(det) = t.blocked {
                return self.refuse(
                    ex,
                    &protocol::reason(&self.guard.detectors[det].name, false),
                    400,
                );
            }
        }
        if let Some(refusal) = self.moderate(ex, &texts) {
            return refusal;
        }
        // A JSON body always goes on as inspected, re-encoded: a body with a key twice
        // (`"messages"` clean, then `"messages"` not) would otherwise reach an upstream whose
        // parser keeps the other one than this plugin's parser does.
        let json = ex.protocol != Protocol::Text;
        if changed || json {
            let out = match &v {
                Value::String(s) if !json => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            if let Err(e) = request::set_body(&out) {
                weir_sdk::log::error(&format!("cannot replace the redacted body: {e:?}"));
                return self.refuse(ex, "guardrails could not redact the request", 500);
            }
        }
        Decision::Continue
    }

    /// The end of a whole answer: inspected, redacted or withheld.
    fn whole_answer(&self, ex: &mut Exchange, buf: Vec<u8>) -> Vec<u8> {
        if std::str::from_utf8(&buf).is_err() {
            if self.uninspectable(ex, true, "the answer is not valid UTF-8") {
                return buf;
            }
            return self.withheld(ex, "the answer is not valid UTF-8");
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (mut v, is_json) = match serde_json::from_str::<Value>(&text) {
            Ok(v) => (v, true),
            Err(_) => (Value::String(text), false),
        };
        let protocol = if is_json { ex.protocol } else { Protocol::Text };
        let method = v
            .get("id")
            .and_then(|id| ex.rpc.iter().find(|(i, _)| i == id))
            .map(|(_, m)| m.clone());
        let (mut changed, blocked) = inspect_answer(
            &self.guard,
            &ex.principal,
            ex.protocol,
            &mut ex.placeholders,
            |ins| {
                let mut changed = false;
                protocol::texts(protocol, true, method.as_deref(), &mut v, &mut |s| {
                    if let Some(n) = ins.text(s) {
                        *s = n;
                        changed = true;
                    }
                });
                (changed, ins.tally.blocked)
            },
        );
        if let Some(det) = blocked {
            let message = protocol::reason(&self.guard.detectors[det].name, true);
            protocol::withheld(protocol, &mut v, method.as_deref(), &message, ex.mcp);
            changed = true;
        }
        // JSON goes on as inspected, re-encoded (see `request`).
        match (changed, v) {
            (_, v) if is_json => v.to_string().into_bytes(),
            (false, _) => buf,
            (true, Value::String(s)) => s.into_bytes(),
            (true, v) => v.to_string().into_bytes(),
        }
    }
}

impl Guardrails {
    /// How the answer now starting is inspected (called from `on-response`).
    fn answer_for(&self, ex: &Exchange) -> Answer {
        let principal = ex.principal.as_deref();
        let inspects = self
            .guard
            .detectors
            .iter()
            .any(|d| d.applies(true, principal));
        if !inspects || ex.skip {
            return Answer::Pass;
        }
        // The request asked for an uncompressed answer (see `request`); an upstream that
        // compresses anyway sends what cannot be read.
        let encoded = response::header("content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        if encoded {
            if self.uninspectable(ex, true, "the answer is compressed") {
                return Answer::Pass;
            }
            let _ = response::remove_header("content-encoding");
            return Answer::Whole {
                buf: Vec::new(),
                over: Over::Withholding,
            };
        }
        if is_event_stream(response::header("content-type").as_deref()) {
            return Answer::Stream(StreamInspector::new(
                ex.protocol,
                self.guard.max_holdback,
                self.guard.max_body_bytes as usize,
                ex.rpc.clone(),
                ex.mcp,
            ));
        }
        Answer::Whole {
            buf: Vec::new(),
            over: Over::No,
        }
    }

    /// The refusal that replaces an answer that cannot be inspected.
    fn withheld(&self, ex: &Exchange, why: &str) -> Vec<u8> {
        let mut v = Value::Null;
        let message = format!("guardrails cannot inspect this answer: {why}");
        let method = ex.rpc.first().map(|(_, m)| m.as_str());
        protocol::withheld(ex.protocol, &mut v, method, &message, ex.mcp);
        if let (Some(o), Some((id, _))) = (v.as_object_mut(), ex.rpc.first())
            && o.contains_key("jsonrpc")
        {
            o.insert("id".into(), id.clone());
        }
        v.to_string().into_bytes()
    }
}

impl Plugin for Guardrails {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Guardrails {
            guard: Guard::new(config)?,
            exchange: None,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            request_body: BodyAccess::Buffered(self.guard.max_body_bytes),
            response_body: BodyAccess::Streamed,
        }
    }

    fn on_request(&mut self) -> Decision {
        let mut ex = Exchange {
            protocol: Protocol::Json,
            principal: context::principal(),
            rpc: Vec::new(),
            placeholders: Placeholders::default(),
            answer: Answer::Pass,
            skip: false,
            mcp: protocol::McpAnswer {
                block: self.guard.mcp_block,
                // Versions are dates: later ones sort after.
                modern: request::header("mcp-protocol-version")
                    .is_some_and(|v| v.as_str() >= "2026-07-28"),
            },
        };
        let decision = self.request(&mut ex);
        self.exchange = Some(ex);
        decision
    }

    fn on_response(&mut self) -> ResponseDecision {
        let Some(mut ex) = self.exchange.take() else {
            return ResponseDecision::Continue;
        };
        ex.answer = self.answer_for(&ex);
        self.exchange = Some(ex);
        ResponseDecision::Continue
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        let Some(ex) = self
            .exchange
            .as_mut()
            .filter(|_| direction == Direction::Response)
        else {
            return chunk;
        };
        let max = self.guard.max_body_bytes as usize;
        match &mut ex.answer {
            Answer::Pass => chunk,
            Answer::Whole {
                over: Over::Passing,
                ..
            } => chunk,
            Answer::Whole {
                over: Over::Withholding,
                ..
            } => Vec::new(),
            Answer::Whole { buf, over } => {
                if buf.len() + chunk.len() <= max {
                    buf.extend(chunk);
                    return Vec::new();
                }
                // Past what can be inspected: let it stream on, or withhold all of it.
                if self.guard.uninspectable == Uninspectable::Allow {
                    *over = Over::Passing;
                    let mut out = std::mem::take(buf);
                    out.extend(chunk);
                    return out;
                }
                *over = Over::Withholding;
                buf.clear();
                Vec::new()
            }
            Answer::Stream(s) => {
                let on_large = self.guard.uninspectable;
                inspect_answer(
                    &self.guard,
                    &ex.principal,
                    ex.protocol,
                    &mut ex.placeholders,
                    |ins| s.chunk(&chunk, ins, on_large),
                )
            }
        }
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        let Some(mut ex) = self
            .exchange
            .take()
            .filter(|_| direction == Direction::Response)
        else {
            return BodyEnd::default();
        };
        let tail = match std::mem::replace(&mut ex.answer, Answer::Pass) {
            Answer::Pass => Vec::new(),
            Answer::Whole {
                over: Over::Passing,
                ..
            } => {
                self.uninspectable(&ex, true, "the answer is larger than max_body_bytes");
                Vec::new()
            }
            Answer::Whole {
                over: Over::Withholding,
                ..
            } => {
                self.uninspectable(&ex, true, "the answer is larger than max_body_bytes");
                self.withheld(&ex, "the answer is larger than max_body_bytes")
            }
            Answer::Whole { buf, .. } => self.whole_answer(&mut ex, buf),
            Answer::Stream(mut s) => inspect_answer(
                &self.guard,
                &ex.principal,
                ex.protocol,
                &mut ex.placeholders,
                |ins| s.end(ins),
            ),
        };
        BodyEnd {
            tail,
            trailers: Vec::new(),
        }
    }
}

/// Runs `f` with an inspection of the current answer, then audits what it found.
fn inspect_answer<T>(
    guard: &Guard,
    principal: &Option<String>,
    protocol: Protocol,
    placeholders: &mut Placeholders,
    f: impl FnOnce(&mut Inspection) -> T,
) -> T {
    let principal = principal.as_deref();
    let mut ins = Inspection::new(guard, true, principal, placeholders);
    let out = f(&mut ins);
    let scope = audit::Scope {
        direction: "response",
        protocol: protocol.name(),
        principal,
    };
    audit::hits(guard, &ins.tally, &scope);
    out
}

weir_sdk::plugin!(Guardrails);
