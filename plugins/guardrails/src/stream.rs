//! Streamed answers (`text/event-stream`), inspected event by event as they pass.
//!
//! **LLM streams** (OpenAI `chat.completion.chunk`, Anthropic `content_block_delta`) carry text
//! in small deltas, so a card number may arrive as `4111`, ` 1111`, ` 1111`, ` 1111`. Each text
//! (a choice's content, a tool call's arguments, a content block) is kept as a running buffer:
//! a delta goes out with only the part of the buffer that can no longer be the start of a match,
//! and the rest is **held back** until the next delta decides it. What is held back:
//!
//! - the last word (a match may continue it) unless it ends in punctuation and has no digit,
//!   the last words when they may begin a `words` phrase, and the words before them that
//!   contain a digit (card, phone, IBAN, SSN groups) or are `Bearer`;
//! - a PEM private-key block that has begun but not ended;
//! - any match that crosses that point;
//! - never more than `max_holdback` bytes: beyond, the oldest text goes out (a secret longer
//!   than that, split across deltas, can escape — the documented limit).
//!
//! Held text goes out, redacted, before any event that ends its text (`finish_reason`,
//! `content_block_stop`, `message_delta`, `[DONE]`) or at the end of the stream, as an extra
//! delta of the same shape: events are never reordered, and a delta left empty is dropped.
//!
//! **JSON-RPC streams** (MCP, A2A) carry one whole message per event; each is inspected whole.
//!
//! A block ends the stream with the protocol's error event (which the SDKs raise); nothing
//! after it is sent.

use crate::config::Uninspectable;
use crate::detect::open_private_key;
use crate::protocol::{self, McpAnswer, Protocol};
use crate::scan::{Found, Inspection};
use serde_json::{Value, json};
use weir_wire::sse::{Event, Parser};

/// Which running text a delta belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    /// An OpenAI choice's content.
    Content(u64),
    /// An OpenAI choice's tool call's arguments.
    Tool(u64, u64),
    /// An Anthropic content block.
    Block(u64),
}

impl Key {
    fn choice(self) -> Option<u64> {
        match self {
            Key::Content(c) | Key::Tool(c, _) => Some(c),
            Key::Block(_) => None,
        }
    }
}

/// Text held back for one key, with the last event that carried it (the shape of the extra
/// delta that releases it).
struct Held {
    key: Key,
    text: String,
    template: Value,
}

enum Mode {
    Inspecting,
    /// Too large to inspect, allowed through: bytes pass untouched.
    Passing,
    /// Blocked: nothing more is sent.
    Ended,
}

pub struct StreamInspector {
    protocol: Protocol,
    parser: Parser,
    held: Vec<Held>,
    mode: Mode,
    max_holdback: usize,
    max_event: usize,
    /// The JSON-RPC requests of this exchange (id, method), to answer a block in kind.
    rpc: Vec<(Value, String)>,
    mcp: McpAnswer,
}

/// Where the held-back words of `t` begin: the last `phrase_words` words, and the words before
/// them that contain a digit or are `Bearer`.
fn held_words(t: &[u8], phrase_words: usize) -> usize {
    let ws = |b: u8| b.is_ascii_whitespace();
    let mut pos = t.len();
    for _ in 0..phrase_words {
        while pos > 0 && ws(t[pos - 1]) {
            pos -= 1;
        }
        while pos > 0 && !ws(t[pos - 1]) {
            pos -= 1;
        }
    }
    loop {
        let mut gap = pos;
        while gap > 0 && (t[gap - 1] == b' ' || t[gap - 1] == b'\t') {
            gap -= 1;
        }
        if gap == pos || gap == 0 || pos - gap > 2 {
            return pos;
        }
        let mut s = gap;
        while s > 0 && !ws(t[s - 1]) {
            s -= 1;
        }
        let token = &t[s..gap];
        let numeric = token.iter().any(u8::is_ascii_digit) || token == b"+";
        if !(numeric || token.eq_ignore_ascii_case(b"bearer")) {
            return pos;
        }
        pos = s;
    }
}

/// Where the held-back part of `text` begins (see the module docs).
pub fn hold_from(text: &str, found: &[Found], phrase_start: usize, max_holdback: usize) -> usize {
    let t = text.as_bytes();
    // A last word that ends in punctuation no match continues (`Sure,` `note:`) and has no
    // digit is complete: nothing needs holding back for it. This keeps the first token of most
    // answers from waiting for the second.
    let last = t
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |p| p + 1);
    let word = &t[last..];
    let closed = word.last().is_some_and(|b| b",;:!?)\"'".contains(b))
        && !word.iter().any(u8::is_ascii_digit);
    let mut pos = if closed && phrase_start == 0 {
        t.len()
    } else {
        held_words(t, phrase_start.max(1))
    };
    if let Some(p) = open_private_key(text) {
        pos = pos.min(p);
    }
    for f in found {
        if f.span.start < pos && f.span.end > pos {
            pos = f.span.start;
        }
    }
    let mut floor = t.len().saturating_sub(max_holdback);
    while !text.is_char_boundary(floor) {
        floor += 1;
    }
    let mut pos = pos.max(floor);
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

impl StreamInspector {
    pub fn new(
        protocol: Protocol,
        max_holdback: usize,
        max_event: usize,
        rpc: Vec<(Value, String)>,
        mcp: McpAnswer,
    ) -> Self {
        StreamInspector {
            protocol,
            parser: Parser::default(),
            held: Vec::new(),
            mode: Mode::Inspecting,
            max_holdback,
            max_event,
            rpc,
            mcp,
        }
    }

    /// One chunk of the stream in; what to send on out.
    pub fn chunk(
        &mut self,
        chunk: &[u8],
        ins: &mut Inspection,
        on_large: Uninspectable,
    ) -> Vec<u8> {
        match self.mode {
            Mode::Passing => return chunk.to_vec(),
            Mode::Ended => return Vec::new(),
            Mode::Inspecting => {}
        }
        let mut out = Vec::new();
        for ev in self.parser.push(chunk) {
            self.event(ev, ins, &mut out);
            if matches!(self.mode, Mode::Ended) {
                return out;
            }
        }
        if self.parser.pending_len() > self.max_event {
            // One event larger than a whole inspected body: a stream cannot hold it.
            self.flush_all(ins, &mut out);
            match on_large {
                Uninspectable::Allow => {
                    self.mode = Mode::Passing;
                    if let Some(ev) = self.parser.finish() {
                        let mut raw = ev.encode();
                        // The event has not ended yet: its blank line is still to come.
                        raw.truncate(raw.len().saturating_sub(1));
                        out.extend(raw);
                    }
                }
                Uninspectable::Block => {
                    self.block("an event too large to inspect", &mut out);
                }
            }
        }
        out
    }

    /// The end of the stream: whatever is still held, then the unfinished event, if any.
    pub fn end(&mut self, ins: &mut Inspection) -> Vec<u8> {
        let mut out = Vec::new();
        if !matches!(self.mode, Mode::Inspecting) {
            return out;
        }
        if let Some(ev) = self.parser.finish() {
            self.event(ev, ins, &mut out);
        }
        if matches!(self.mode, Mode::Inspecting) {
            self.flush_all(ins, &mut out);
        }
        out
    }

    fn block(&mut self, message: &str, out: &mut Vec<u8>) {
        let rpc = self.rpc.first().map(|(id, m)| (id, Some(m.as_str())));
        out.extend(protocol::stream_error(
            self.protocol,
            rpc,
            message,
            self.mcp,
        ));
        self.mode = Mode::Ended;
    }

    fn event(&mut self, ev: Event, ins: &mut Inspection, out: &mut Vec<u8>) {
        let Some(data) = ev.data() else {
            out.extend(ev.encode());
            return;
        };
        match self.protocol {
            Protocol::OpenAi => self.openai(ev, &data, ins, out),
            Protocol::Anthropic => self.anthropic(ev, &data, ins, out),
            _ => self.whole(ev, &data, ins, out),
        }
    }

    /// Sends `ev` with `v` as its data, unless it was only text and all of it is held back.
    fn send(ev: &mut Event, v: &Value, drop: bool, out: &mut Vec<u8>) {
        if !drop {
            ev.set_data(&v.to_string());
            out.extend(ev.encode());
        }
    }

    fn openai(&mut self, mut ev: Event, data: &str, ins: &mut Inspection, out: &mut Vec<u8>) {
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            // `[DONE]`, or something no SDK would parse: held text goes first.
            self.flush_all(ins, out);
            out.extend(ev.encode());
            return;
        };
        let Some(choices) = v.get("choices").and_then(Value::as_array).cloned() else {
            self.flush_all(ins, out);
            out.extend(ev.encode());
            return;
        };
        let mut only_text = !choices.is_empty() && v.get("usage").is_none_or(Value::is_null);
        let mut all_empty = true;
        for (ci, c) in choices.iter().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(ci as u64);
            let last = c.get("finish_reason").is_some_and(|f| !f.is_null());
            only_text &= !last && delta_is_only_text(c.get("delta"));
            let mut touched = Vec::new();
            if let Some(piece) = c.pointer("/delta/content").and_then(Value::as_str) {
                touched.push((
                    Key::Content(index),
                    piece.to_string(),
                    format!("/choices/{ci}/delta/content"),
                ));
            }
            if let Some(calls) = c.pointer("/delta/tool_calls").and_then(Value::as_array) {
                for (ti, tc) in calls.iter().enumerate() {
                    if let Some(piece) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                        let k = tc.get("index").and_then(Value::as_u64).unwrap_or(ti as u64);
                        touched.push((
                            Key::Tool(index, k),
                            piece.to_string(),
                            format!("/choices/{ci}/delta/tool_calls/{ti}/function/arguments"),
                        ));
                    }
                }
            }
            if last {
                // Texts of this choice this event does not carry are released before it.
                let keep: Vec<Key> = touched.iter().map(|t| t.0).collect();
                self.flush(ins, out, |k| {
                    k.choice() == Some(index) && !keep.contains(&k)
                });
            }
            for (key, piece, at) in touched {
                let template = openai_template(&v, index, key);
                let Some(sent) = self.push(key, &piece, last, template, ins, out) else {
                    return;
                };
                all_empty &= sent.is_empty();
                if let Some(slot) = v.pointer_mut(&at) {
                    *slot = json!(sent);
                }
            }
        }
        Self::send(&mut ev, &v, only_text && all_empty, out);
    }

    fn anthropic(&mut self, mut ev: Event, data: &str, ins: &mut Inspection, out: &mut Vec<u8>) {
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            self.flush_all(ins, out);
            out.extend(ev.encode());
            return;
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_delta") => {
                let field = ["/delta/text", "/delta/partial_json", "/delta/thinking"]
                    .into_iter()
                    .find(|p| v.pointer(p).is_some_and(Value::is_string));
                let Some(field) = field else {
                    out.extend(ev.encode());
                    return;
                };
                let piece = v
                    .pointer(field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let Some(sent) = self.push(Key::Block(index), &piece, false, v.clone(), ins, out)
                else {
                    return;
                };
                let empty = sent.is_empty();
                if let Some(slot) = v.pointer_mut(field) {
                    *slot = json!(sent);
                }
                Self::send(&mut ev, &v, empty, out);
            }
            Some("content_block_stop") => {
                self.flush(ins, out, |k| k == Key::Block(index));
                if matches!(self.mode, Mode::Inspecting) {
                    out.extend(ev.encode());
                }
            }
            Some("content_block_start") | Some("ping") | Some("message_start") => {
                out.extend(ev.encode())
            }
            _ => {
                self.flush_all(ins, out);
                if matches!(self.mode, Mode::Inspecting) {
                    out.extend(ev.encode());
                }
            }
        }
    }

    /// An event that is one whole message (MCP, A2A, other JSON): inspected at once.
    fn whole(&mut self, mut ev: Event, data: &str, ins: &mut Inspection, out: &mut Vec<u8>) {
        let mut v = match serde_json::from_str::<Value>(data) {
            Ok(v) => v,
            Err(_) => Value::String(data.to_string()),
        };
        let id = v.get("id").cloned();
        let method = id
            .as_ref()
            .and_then(|id| self.rpc.iter().find(|(i, _)| i == id))
            .map(|(_, m)| m.clone());
        let protocol = if self.protocol == Protocol::Text {
            Protocol::Json
        } else {
            self.protocol
        };
        let mut changed = false;
        protocol::texts(protocol, true, method.as_deref(), &mut v, &mut |s| {
            if let Some(n) = ins.text(s) {
                *s = n;
                changed = true;
            }
        });
        if let Some(det) = ins.tally.blocked {
            let message = protocol::reason(&ins.guard().detectors[det].name, true);
            let rpc = id.as_ref().map(|id| (id, method.as_deref()));
            let mut e = ev.clone();
            e.set_data(&protocol::rpc_or_error(self.protocol, rpc, &message, self.mcp).to_string());
            out.extend(e.encode());
            self.mode = Mode::Ended;
            return;
        }
        // JSON goes on as inspected, re-encoded (a key twice is sent once).
        if changed || !v.is_string() {
            let text = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ev.set_data(&text);
        }
        out.extend(ev.encode());
    }

    /// Adds `piece` to the running text of `key`; returns what can go out now (redacted), or
    /// `None` when a block ended the stream (its error event is then in `out`).
    fn push(
        &mut self,
        key: Key,
        piece: &str,
        last: bool,
        template: Value,
        ins: &mut Inspection,
        out: &mut Vec<u8>,
    ) -> Option<String> {
        let i = match self.held.iter().position(|h| h.key == key) {
            Some(i) => i,
            None => {
                self.held.push(Held {
                    key,
                    text: String::new(),
                    template: Value::Null,
                });
                self.held.len() - 1
            }
        };
        self.held[i].text.push_str(piece);
        self.held[i].template = template;
        let text = std::mem::take(&mut self.held[i].text);
        let found = ins.find(&text);
        let cut = if last {
            text.len()
        } else {
            hold_from(&text, &found, ins.phrase_start(&text), self.max_holdback)
        };
        // A blocking detector that matched blocks now, whether its match is released yet or not.
        let blocker = found
            .iter()
            .find(|f| ins.guard().detectors[f.det].action == crate::config::Action::Block);
        if let Some(f) = blocker {
            ins.tally.note(f.det, crate::config::Action::Block, 1);
        }
        let released: Vec<Found> = found.into_iter().filter(|f| f.span.end <= cut).collect();
        let sent = ins.apply(&text[..cut], &released);
        ins.injection(&text[..cut]);
        if let Some(det) = ins.tally.blocked {
            let message = protocol::reason(&ins.guard().detectors[det].name, true);
            self.block(&message, out);
            return None;
        }
        self.held[i].text = text[cut..].to_string();
        Some(sent)
    }

    fn flush_all(&mut self, ins: &mut Inspection, out: &mut Vec<u8>) {
        self.flush(ins, out, |_| true);
    }

    /// Releases the held text of the keys `which` selects, each as an extra delta.
    fn flush(&mut self, ins: &mut Inspection, out: &mut Vec<u8>, which: impl Fn(Key) -> bool) {
        let keys: Vec<Key> = self
            .held
            .iter()
            .filter(|h| which(h.key) && !h.text.is_empty())
            .map(|h| h.key)
            .collect();
        for key in keys {
            let template = self
                .held
                .iter()
                .find(|h| h.key == key)
                .map(|h| h.template.clone());
            let Some(mut v) = template else { continue };
            let Some(sent) = self.push(key, "", true, v.clone(), ins, out) else {
                return;
            };
            if sent.is_empty() {
                continue;
            }
            let (field, event) = match key {
                Key::Content(_) => ("/choices/0/delta/content", None),
                Key::Tool(..) => ("/choices/0/delta/tool_calls/0/function/arguments", None),
                Key::Block(_) => {
                    let f = ["/delta/text", "/delta/partial_json", "/delta/thinking"]
                        .into_iter()
                        .find(|p| v.pointer(p).is_some())
                        .unwrap_or("/delta/text");
                    (f, Some("content_block_delta"))
                }
            };
            if let Some(slot) = v.pointer_mut(field) {
                *slot = json!(sent);
            }
            let mut e = Event { fields: Vec::new() };
            if let Some(name) = event {
                e.fields.push(("event".into(), name.into()));
            }
            e.set_data(&v.to_string());
            out.extend(e.encode());
        }
    }
}

/// Whether a delta carries nothing but text (so it can be dropped when its text is held).
fn delta_is_only_text(delta: Option<&Value>) -> bool {
    let Some(Value::Object(d)) = delta else {
        return false;
    };
    d.iter().all(|(k, v)| match k.as_str() {
        "content" => true,
        "tool_calls" => v.as_array().is_some_and(|calls| {
            calls.iter().all(|c| {
                c.as_object().is_some_and(|c| {
                    c.keys().all(|k| k == "index" || k == "function")
                        && c.get("function")
                            .and_then(Value::as_object)
                            .is_some_and(|f| f.keys().all(|k| k == "arguments"))
                })
            })
        }),
        _ => false,
    })
}

/// The shape of an extra OpenAI delta that releases held text of `key`: the event's envelope
/// with one choice carrying only that text.
fn openai_template(v: &Value, index: u64, key: Key) -> Value {
    let mut t = v.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("usage");
    }
    let delta = match key {
        Key::Tool(_, k) => json!({"tool_calls": [{"index": k, "function": {"arguments": ""}}]}),
        _ => json!({"content": ""}),
    };
    t["choices"] = json!([{"index": index, "delta": delta, "finish_reason": null}]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Guard};
    use crate::scan::Placeholders;
    use weir_wire::sse::parse_all;

    fn guard(detectors: Value) -> Guard {
        let c: Config = serde_json::from_value(json!({"detectors": detectors})).unwrap();
        Guard::new(c).unwrap()
    }

    fn openai_stream(words: &[&str]) -> Vec<u8> {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let mut s = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        for w in words {
            s.push_str(&chunk(json!({"content": w}), Value::Null));
        }
        s.push_str(&chunk(json!({}), json!("stop")));
        s.push_str("data: [DONE]\n\n");
        s.into_bytes()
    }

    /// Runs `input` through an inspector, cut into pieces of `step` bytes.
    fn run(g: &Guard, protocol: Protocol, input: &[u8], step: usize) -> (Vec<u8>, Option<usize>) {
        let mut placeholders = Placeholders::default();
        let mut ins = Inspection::new(g, true, None, &mut placeholders);
        let mut s = StreamInspector::new(
            protocol,
            g.max_holdback,
            1 << 20,
            Vec::new(),
            McpAnswer::default(),
        );
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            out.extend(s.chunk(piece, &mut ins, Uninspectable::Block));
        }
        out.extend(s.end(&mut ins));
        (out, ins.tally.blocked)
    }

    fn openai_text(out: &[u8]) -> (String, Vec<String>) {
        let mut text = String::new();
        let mut order = Vec::new();
        for ev in parse_all(out) {
            let data = ev.data().unwrap_or_default();
            if data == "[DONE]" {
                order.push("done".to_string());
                continue;
            }
            let v: Value = serde_json::from_str(&data).unwrap();
            if v.get("error").is_some() {
                order.push("error".into());
                continue;
            }
            let c = &v["choices"][0];
            if let Some(t) = c["delta"]["content"].as_str() {
                text.push_str(t);
                order.push("text".into());
            }
            if !c["finish_reason"].is_null() {
                order.push("finish".into());
            }
        }
        (text, order)
    }

    #[test]
    fn a_card_split_across_deltas_is_redacted_and_nothing_is_reordered() {
        let g = guard(json!([{"kind": "payment-card", "action": "redact"}]));
        let input = openai_stream(&[
            "echo:", " 4111", " 1111", " 1111", " 1111", " thanks", " bye",
        ]);
        for step in [1, 7, 64, input.len()] {
            let (out, _) = run(&g, Protocol::OpenAi, &input, step);
            let (text, order) = openai_text(&out);
            assert_eq!(text, "echo: **** **** **** **** thanks bye", "step {step}");
            let finish = order.iter().position(|o| o == "finish").unwrap();
            assert!(order[..finish].iter().all(|o| o == "text"), "{order:?}");
            assert_eq!(order.last().map(String::as_str), Some("done"));
        }
    }

    #[test]
    fn a_block_ends_the_stream_with_an_error_event_and_nothing_after() {
        let g = guard(json!([{"kind": "cloud-key", "action": "block"}]));
        let input = openai_stream(&["key", " AKIAIOSF", "ODNN7EXAMPLE", " is", " secret"]);
        let (out, blocked) = run(&g, Protocol::OpenAi, &input, 5);
        assert_eq!(blocked, Some(0));
        let (text, order) = openai_text(&out);
        assert!(!text.contains("AKIA"), "{text}");
        assert_eq!(order.last().map(String::as_str), Some("error"), "{order:?}");
        assert!(!order.contains(&"done".to_string()));
    }

    #[test]
    fn anthropic_blocks_keep_their_index_and_end_before_their_stop() {
        let g = guard(json!([{"kind": "email", "action": "redact", "redaction": "placeholder"}]));
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut s = ev(
            "message_start",
            json!({"type": "message_start", "message": {}}),
        );
        s += &ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        for piece in ["mail bob", "@exa", "mple.com", " or bob@example.com"] {
            s += &ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            );
        }
        s += &ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        );
        s += &ev("message_stop", json!({"type": "message_stop"}));
        let (out, _) = run(&g, Protocol::Anthropic, s.as_bytes(), 3);
        let mut text = String::new();
        let mut kinds = Vec::new();
        for e in parse_all(&out) {
            let v: Value = serde_json::from_str(&e.data().unwrap()).unwrap();
            kinds.push(v["type"].as_str().unwrap().to_string());
            text.push_str(v["delta"]["text"].as_str().unwrap_or_default());
        }
        assert_eq!(text, "mail <EMAIL_1> or <EMAIL_1>");
        let stop = kinds
            .iter()
            .position(|k| k == "content_block_stop")
            .unwrap();
        assert!(
            kinds[..stop]
                .iter()
                .filter(|k| *k == "content_block_delta")
                .count()
                >= 1
        );
        assert!(
            kinds[stop..].iter().all(|k| k != "content_block_delta"),
            "{kinds:?}"
        );
    }

    #[test]
    fn only_the_words_that_may_begin_a_phrase_are_held_for_it() {
        let g = guard(
            json!([{"kind": "words", "words": ["project falcon", "blue harvest moon"],
                              "action": "block"}]),
        );
        let mut placeholders = Placeholders::default();
        let ins = Inspection::new(&g, true, None, &mut placeholders);
        assert_eq!(ins.phrase_start("echo:"), 0);
        assert_eq!(ins.phrase_start("about the Project"), 1);
        assert_eq!(ins.phrase_start("about the project fal"), 2);
        assert_eq!(ins.phrase_start("a Blue Harvest"), 2);
        assert_eq!(
            ins.phrase_start("a blue harvest moon"),
            3,
            "its last word may go on"
        );
        let input = openai_stream(&["echo:", " the", " project", " fal", "con", " is", " secret"]);
        let (out, blocked) = run(&g, Protocol::OpenAi, &input, 9);
        assert_eq!(blocked, Some(0), "{}", String::from_utf8_lossy(&out));
        assert!(!openai_text(&out).0.to_lowercase().contains("project"));
    }

    #[test]
    fn ordinary_words_are_held_back_by_one_word_at_most() {
        let g = guard(json!([{"kind": "payment-card", "action": "redact"}]));
        let mut placeholders = Placeholders::default();
        let ins = Inspection::new(&g, true, None, &mut placeholders);
        let text = "The quick brown fox";
        assert_eq!(&text[hold_from(text, &ins.find(text), 0, 4096)..], "fox");
        assert_eq!(&text[hold_from(text, &[], 2, 4096)..], "brown fox");
        assert_eq!(hold_from("Sure, here it is:", &[], 0, 4096), 17);
        let text = "call (415) 555-0100,";
        assert_eq!(&text[hold_from(text, &[], 0, 4096)..], "(415) 555-0100,");
        let text = "pay 4111 1111 now";
        let found = ins.find(text);
        assert_eq!(&text[hold_from(text, &found, 0, 4096)..], "4111 1111 now");
        let long = "9".repeat(5000);
        assert_eq!(long.len() - hold_from(&long, &[], 0, 4096), 4096);
    }
}
