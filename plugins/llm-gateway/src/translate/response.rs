//! Whole (non-streamed) answers: Anthropic message ↔ OpenAI chat completion.

use super::{Usage, anthropic_usage, finish_reason, openai_usage, stop_reason};
use serde_json::{Value, json};

/// An Anthropic message as an OpenAI chat completion.
pub fn anthropic_to_openai(msg: &Value, created: u64) -> (Value, Usage) {
    let blocks = msg["content"].as_array().cloned().unwrap_or_default();
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            json!({"id": b["id"], "type": "function",
                        "function": {"name": b["name"], "arguments": b["input"].to_string()}})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = anthropic_usage(&msg["usage"]);
    let out = json!({
        "id": msg["id"], "object": "chat.completion", "created": created, "model": msg["model"],
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish_reason(msg["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": usage.openai(),
    });
    (out, usage)
}

/// An OpenAI chat completion as an Anthropic message.
pub fn openai_to_anthropic(resp: &Value) -> (Value, Usage) {
    let choice = &resp["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = msg["content"].as_str()
        && !text.is_empty()
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        content.push(json!({
            "type": "tool_use", "id": call["id"],
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
        }));
    }
    let usage = openai_usage(&resp["usage"]);
    let out = json!({
        "id": resp["id"], "type": "message", "role": "assistant", "model": resp["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": usage.anthropic(),
    });
    (out, usage)
}
