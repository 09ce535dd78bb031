//! Streamed answers, translated event by event as they arrive, with the usage picked up on the
//! way: Anthropic `message_start … message_stop` ↔ OpenAI `chat.completion.chunk`s and `[DONE]`.

use super::{Usage, anthropic_usage, finish_reason, openai_usage, stop_reason};
use crate::config::Format;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use weir_wire::sse;

fn openai_event(data: &Value) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

fn anthropic_event(data: &Value) -> Vec<u8> {
    let name = data["type"].as_str().unwrap_or("message");
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// Translates one streamed answer from the provider's format to the client's.
pub struct Stream {
    from: Format,
    to: Format,
    parser: sse::Parser,
    /// The client asked for OpenAI's usage chunk (the gateway always asks upstream).
    client_wants_usage: bool,
    pub usage: Option<Usage>,
    /// The provider's stream ended properly (`[DONE]` or `message_stop`).
    pub finished: bool,
    created: u64,
    // Anthropic → OpenAI.
    id: Value,
    model: Value,
    tool_index: BTreeMap<u64, usize>,
    finish: Option<&'static str>,
    // OpenAI → Anthropic.
    started: bool,
    open: Option<Block>,
    next_block: u64,
    tool_block: BTreeMap<u64, u64>,
    client_model: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text(u64),
    Tool(u64),
}

impl Stream {
    pub fn new(
        from: Format,
        to: Format,
        client_wants_usage: bool,
        client_model: &str,
        created: u64,
    ) -> Stream {
        Stream {
            from,
            to,
            parser: sse::Parser::default(),
            client_wants_usage,
            usage: None,
            finished: false,
            created,
            id: json!("chatcmpl-weir"),
            model: json!(client_model),
            tool_index: BTreeMap::new(),
            finish: None,
            started: false,
            open: None,
            next_block: 0,
            tool_block: BTreeMap::new(),
            client_model: client_model.to_string(),
        }
    }

    /// A chunk of the provider's stream; returns what goes to the client now.
    pub fn chunk(&mut self, bytes: &[u8]) -> Vec<u8> {
        let events = self.parser.push(bytes);
        events.into_iter().flat_map(|e| self.event(e)).collect()
    }

    /// The end of the provider's stream.
    pub fn end(&mut self) -> Vec<u8> {
        let mut out: Vec<u8> = self
            .parser
            .finish()
            .map(|e| self.event(e))
            .unwrap_or_default();
        if !self.finished {
            // Ended without its final event: say so rather than end as if complete.
            out.extend(self.error("upstream stream ended before the answer was complete"));
        }
        out
    }

    /// An error event in the client's format (the stream then ends without `[DONE]`).
    pub fn error(&self, message: &str) -> Vec<u8> {
        match self.to {
            Format::Openai => format!(
                "event: error\ndata: {}\n\n",
                json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
            )
            .into_bytes(),
            Format::Anthropic => anthropic_event(&json!({"type": "error", "error": {"type": "api_error", "message": message}})),
        }
    }

    fn event(&mut self, event: sse::Event) -> Vec<u8> {
        let Some(data) = event.data() else {
            return Vec::new();
        };
        match (self.from, self.to) {
            (Format::Openai, Format::Openai) => self.openai_passthrough(event, &data),
            (Format::Anthropic, Format::Anthropic) => {
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    self.anthropic_usage_from(&v);
                }
                event.encode()
            }
            (Format::Anthropic, Format::Openai) => match serde_json::from_str::<Value>(&data) {
                Ok(v) => self.anthropic_to_openai(&v),
                Err(_) => Vec::new(),
            },
            (Format::Openai, Format::Anthropic) => self.openai_to_anthropic(&data),
        }
    }

    fn openai_passthrough(&mut self, event: sse::Event, data: &str) -> Vec<u8> {
        if data.trim() == "[DONE]" {
            self.finished = true;
            return event.encode();
        }
        if let Ok(v) = serde_json::from_str::<Value>(data)
            && v["usage"].is_object()
        {
            self.usage = Some(openai_usage(&v["usage"]));
            // The usage chunk the gateway asked for, not the client.
            if !self.client_wants_usage && v["choices"].as_array().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        event.encode()
    }

    fn anthropic_usage_from(&mut self, v: &Value) {
        match v["type"].as_str() {
            Some("message_start") => self.usage = Some(anthropic_usage(&v["message"]["usage"])),
            Some("message_delta") => {
                let mut u = self.usage.unwrap_or_default();
                u.merge_anthropic(&v["usage"]);
                self.usage = Some(u);
            }
            Some("message_stop") => self.finished = true,
            _ => {}
        }
    }

    fn chunk_of(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    fn anthropic_to_openai(&mut self, v: &Value) -> Vec<u8> {
        self.anthropic_usage_from(v);
        match v["type"].as_str().unwrap_or_default() {
            "message_start" => {
                self.id = v["message"]["id"].clone();
                self.model = v["message"]["model"].clone();
                openai_event(&self.chunk_of(json!({"role": "assistant", "content": ""}), None))
            }
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                let i = self.tool_index.len();
                self.tool_index.insert(v["index"].as_u64().unwrap_or(0), i);
                let b = &v["content_block"];
                openai_event(&self.chunk_of(
                    json!({"tool_calls": [{"index": i, "id": b["id"], "type": "function",
                                           "function": {"name": b["name"], "arguments": ""}}]}),
                    None,
                ))
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str().unwrap_or_default() {
                    "text_delta" => {
                        openai_event(&self.chunk_of(json!({"content": d["text"]}), None))
                    }
                    "thinking_delta" => openai_event(
                        &self.chunk_of(json!({"reasoning_content": d["thinking"]}), None),
                    ),
                    "input_json_delta" => {
                        let i = self
                            .tool_index
                            .get(&v["index"].as_u64().unwrap_or(0))
                            .copied()
                            .unwrap_or(0);
                        openai_event(&self.chunk_of(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": d["partial_json"]}}]}),
                            None,
                        ))
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(stop) = v["delta"]["stop_reason"].as_str() {
                    self.finish = Some(finish_reason(stop));
                }
                Vec::new()
            }
            "message_stop" => {
                let mut out =
                    openai_event(&self.chunk_of(json!({}), Some(self.finish.unwrap_or("stop"))));
                if self.client_wants_usage {
                    let u = self.usage.unwrap_or_default();
                    out.extend(openai_event(&json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                        "usage": u.openai(),
                    })));
                }
                out.extend(b"data: [DONE]\n\n");
                out
            }
            "error" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                self.finished = true;
                self.error(msg)
            }
            _ => Vec::new(),
        }
    }

    fn close_block(&mut self) -> Vec<u8> {
        match self.open.take() {
            Some(Block::Text(i) | Block::Tool(i)) => {
                anthropic_event(&json!({"type": "content_block_stop", "index": i}))
            }
            None => Vec::new(),
        }
    }

    fn openai_to_anthropic(&mut self, data: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.extend(anthropic_event(&json!({"type": "message_start", "message": {
                "id": "msg_weir", "type": "message", "role": "assistant", "model": self.client_model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": Usage::default().anthropic()}})));
        }
        if data.trim() == "[DONE]" {
            self.finished = true;
            out.extend(self.close_block());
            let u = self.usage.unwrap_or_default();
            out.extend(anthropic_event(&json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.unwrap_or("stop")), "stop_sequence": null},
                "usage": u.anthropic()})));
            out.extend(anthropic_event(&json!({"type": "message_stop"})));
            return out;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return out;
        };
        if let Some(err) = v.get("error") {
            self.finished = true;
            out.extend(self.error(err["message"].as_str().unwrap_or("upstream error")));
            return out;
        }
        if v["usage"].is_object() {
            self.usage = Some(openai_usage(&v["usage"]));
        }
        let choice = &v["choices"][0];
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(match f {
                "length" => "length",
                "tool_calls" | "function_call" => "tool_calls",
                "content_filter" => "content_filter",
                _ => "stop",
            });
        }
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str()
            && !text.is_empty()
        {
            if !matches!(self.open, Some(Block::Text(_))) {
                out.extend(self.close_block());
                let i = self.next_block;
                self.next_block += 1;
                self.open = Some(Block::Text(i));
                out.extend(anthropic_event(
                    &json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "text", "text": ""}}),
                ));
            }
            if let Some(Block::Text(i)) = self.open {
                out.extend(anthropic_event(
                    &json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "text_delta", "text": text}}),
                ));
            }
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0);
            if call.get("id").is_some_and(|id| !id.is_null()) {
                out.extend(self.close_block());
                let i = self.next_block;
                self.next_block += 1;
                self.open = Some(Block::Tool(i));
                self.tool_block.insert(index, i);
                out.extend(anthropic_event(&json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": call["id"],
                                      "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                                      "input": {}}})));
            }
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str)
                && !args.is_empty()
                && let Some(i) = self.tool_block.get(&index)
            {
                out.extend(anthropic_event(
                    &json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::response;

    fn sse_data(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn streamed_usage_carries_what_the_whole_answer_does() {
        let usage = json!({"input_tokens": 4, "cache_read_input_tokens": 7,
                           "cache_creation_input_tokens": 2, "output_tokens": 1});
        let mut s = Stream::new(Format::Anthropic, Format::Openai, true, "m", 0);
        let mut out = s.chunk(
            format!(
                "event: message_start\ndata: {}\n\n",
                json!({"type": "message_start", "message": {"id": "x", "model": "m", "usage": usage}})
            )
            .as_bytes(),
        );
        out.extend(s.chunk(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        let last = sse_data(&out).into_iter().rfind(|c| c["usage"].is_object());
        let streamed = last.map(|c| c["usage"].clone()).unwrap_or_default();
        let mut whole_usage = usage.clone();
        whole_usage["output_tokens"] = json!(3);
        let (whole, _) = response::anthropic_to_openai(
            &json!({"id": "x", "content": [], "stop_reason": "end_turn", "usage": whole_usage}),
            0,
        );
        assert_eq!(streamed, whole["usage"]);
        assert_eq!(streamed["prompt_tokens_details"]["cached_tokens"], 7);

        // OpenAI → Anthropic: the cached tokens land in message_delta's usage.
        let mut s = Stream::new(Format::Openai, Format::Anthropic, false, "m", 0);
        let openai_usage = json!({"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22,
                                  "prompt_tokens_details": {"cached_tokens": 16}});
        let mut out = s.chunk(
            format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                json!({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}),
                json!({"choices": [], "usage": openai_usage})
            )
            .as_bytes(),
        );
        out.extend(s.end());
        let delta = sse_data(&out)
            .into_iter()
            .find(|e| e["type"] == "message_delta")
            .unwrap_or_default();
        let (whole, _) = response::openai_to_anthropic(&json!({
            "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": openai_usage}));
        assert_eq!(delta["usage"], whole["usage"]);
        assert_eq!(delta["usage"]["cache_read_input_tokens"], 16);
        assert_eq!(delta["usage"]["input_tokens"], 4);
    }
}
