//! Requests: OpenAI chat completions ↔ Anthropic messages.

use serde_json::{Map, Value, json};

/// Text of an OpenAI `content` (a string or parts).
fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// OpenAI content → Anthropic content blocks.
fn openai_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"type": "text", "text": p.get("text")?})),
                Some("image_url") => {
                    let url = p.pointer("/image_url/url")?.as_str()?;
                    Some(match url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) {
                        Some((media, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Appends `blocks` as a `role` message, merging with the previous one of the same role
/// (Anthropic wants alternating roles).
fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(content) = last["content"].as_array_mut()
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI chat-completions body as an Anthropic messages body for `model`.
pub fn openai_to_anthropic(body: &Value, model: &str, max_tokens: u64, version: &str) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.push(openai_text(&m["content"])),
            "assistant" => {
                let mut blocks = openai_blocks(&m["content"]);
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call["id"],
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
                    }));
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => push(
                &mut messages,
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m["tool_call_id"],
                    "content": openai_text(&m["content"]),
                })],
            ),
            _ => push(&mut messages, "user", openai_blocks(&m["content"])),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n")));
    }
    let max = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(max_tokens);
    out.insert("max_tokens".into(), json!(max));
    if version != "2026-10-21" {
        for k in ["temperature", "top_p"] {
            if let Some(v) = body.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = body["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function")?;
                Some(json!({
                    "name": f.get("name")?,
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                }))
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let parallel = body.get("parallel_tool_calls").and_then(Value::as_bool);
    let choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::String(_)) => Some(json!({"type": "auto"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type": "tool", "name": n})),
        _ => parallel.map(|_| json!({"type": "auto"})),
    };
    if let Some(mut choice) = choice {
        if parallel == Some(false) {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = body.get("user") {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if body["stream"].as_bool() == Some(true) {
        out.insert("stream".into(), json!(true));
    }
    Value::Object(out)
}

/// Text of Anthropic content (a string or blocks).
fn anthropic_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// An Anthropic messages body as an OpenAI chat-completions body for `model`; streams ask for
/// usage (the budget needs it).
pub fn anthropic_to_openai(body: &Value, model: &str) -> Value {
    let mut messages = Vec::new();
    let system = anthropic_text(&body["system"]);
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("user");
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => Vec::new(),
        };
        if role == "assistant" {
            let text = anthropic_text(&m["content"]);
            let calls: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| {
                    json!({
                        "id": b["id"], "type": "function",
                        "function": {"name": b["name"], "arguments": b["input"].to_string()},
                    })
                })
                .collect();
            let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            messages.push(msg);
            continue;
        }
        // A user turn: tool results become `tool` messages, the rest one user message.
        for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
            messages.push(json!({
                "role": "tool",
                "tool_call_id": b["tool_use_id"],
                "content": anthropic_text(&b["content"]),
            }));
        }
        let parts: Vec<Value> = blocks
            .iter()
            .filter_map(|b| match b["type"].as_str()? {
                "text" => Some(json!({"type": "text", "text": b["text"]})),
                "image" => {
                    let src = &b["source"];
                    let url = match src["type"].as_str()? {
                        "base64" => format!(
                            "data:{};base64,{}",
                            src["media_type"].as_str()?,
                            src["data"].as_str()?
                        ),
                        _ => src["url"].as_str()?.to_string(),
                    };
                    Some(json!({"type": "image_url", "image_url": {"url": url}}))
                }
                _ => None,
            })
            .collect();
        if !parts.is_empty() {
            let content = if parts.iter().all(|p| p["type"] == "text") {
                json!(
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("")
                )
            } else {
                Value::Array(parts)
            };
            messages.push(json!({"role": "user", "content": content}));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = body.get("max_tokens") {
        out.insert("max_tokens".into(), n.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = body.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(tools) = body["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {
                "name": t["name"],
                "description": t.get("description").cloned().unwrap_or(json!("")),
                "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
            }}))
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice") {
        let mapped = match choice["type"].as_str() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), mapped);
        if choice["disable_parallel_tool_use"].as_bool() == Some(true) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if body["stream"].as_bool() == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(out)
}

/// An OpenAI body for another OpenAI-format provider: the model renamed, and usage asked for
/// on streams. Returns whether the client asked for the usage chunk itself.
pub fn openai_to_openai(body: &Value, model: &str) -> (Value, bool) {
    let mut out = body.clone();
    out["model"] = json!(model);
    let asked = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if body["stream"].as_bool() == Some(true) {
        out["stream_options"] = json!({"include_usage": true});
    }
    (out, asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_merge_and_system_moves_up() {
        let body = json!({
            "model": "x", "max_tokens": 10, "stop": "END", "temperature": 0.5,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Rome\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": "rain"},
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false,
        });
        let a = openai_to_anthropic(&body, "claude", 4096, "2026-10-21");
        assert_eq!(a["system"], "be brief");
        assert_eq!(a["max_tokens"], 10);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert!(
            a.get("temperature").is_none(),
            "2026-10-21 refuses sampling params"
        );
        let msgs = a["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1]["content"][1]["input"], json!({"city": "Rome"}));
        assert_eq!(
            msgs[2]["content"].as_array().unwrap().len(),
            2,
            "merged results"
        );
        assert_eq!(
            a["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        // And back.
        let o = anthropic_to_openai(&a, "gpt");
        let m = o["messages"].as_array().unwrap();
        assert_eq!(m[0]["role"], "system");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[4]["tool_call_id"], "c2");
    }
}
