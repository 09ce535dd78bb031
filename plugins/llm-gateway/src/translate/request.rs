//! Requests: OpenAI chat completions ↔ Anthropic messages.
//!
//! Content given as several text parts stays several parts (Anthropic text blocks, OpenAI
//! text parts), never joined: the gateway would have to invent a separator, and each API
//! already accepts a list. Anthropic `cache_control` on an OpenAI part is kept (proxies that
//! speak OpenAI to Anthropic models use it to mark cache breakpoints).

use crate::errors::ApiError;
use serde_json::{Map, Value, json};

/// An OpenAI text part as an Anthropic text block.
fn text_block(part: &Value) -> Option<Value> {
    let mut block = json!({"type": "text", "text": part.get("text")?.as_str()?});
    if let Some(c) = part.get("cache_control") {
        block["cache_control"] = c.clone();
    }
    Some(block)
}

/// OpenAI content → Anthropic content blocks.
fn openai_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => text_block(p),
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

/// The `input` object for an OpenAI tool call's `arguments` (a string of JSON). No arguments
/// (absent, null or blank) is `{}`; anything else that is not a JSON object is refused,
/// naming the call, rather than sent on as something the client did not write.
fn tool_input(call: &Value, param: &str) -> Result<Value, ApiError> {
    let refuse = |why: String| {
        let id = call["id"].as_str().unwrap_or("?");
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        ApiError::invalid(&format!(
            "Invalid '{param}': the arguments of tool call `{id}` ({name}) {why}."
        ))
        .param(param)
        .code("invalid_value")
    };
    match call.pointer("/function/arguments") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(refuse("must be a JSON object".into())),
            Err(e) => Err(refuse(format!("are not valid JSON ({e})"))),
        },
        Some(_) => Err(refuse("must be a string of JSON".into())),
    }
}

/// Refuses an OpenAI body whose tool calls could not be translated, whichever target serves
/// it: a request is not valid for one provider and invalid after a fallback.
pub fn check_openai(body: &Value) -> Result<(), ApiError> {
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, call) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
            tool_input(
                call,
                &format!("messages[{i}].tool_calls[{j}].function.arguments"),
            )?;
        }
    }
    Ok(())
}

/// Refuses an Anthropic body with a `tool_use` whose `input` is not an object (Anthropic's own
/// check, in its words).
pub fn check_anthropic(body: &Value) -> Result<(), ApiError> {
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, b) in m["content"].as_array().into_iter().flatten().enumerate() {
            if b["type"] == "tool_use" && !b["input"].is_object() {
                return Err(ApiError::invalid(&format!(
                    "messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                )));
            }
        }
    }
    Ok(())
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
pub fn openai_to_anthropic(
    body: &Value,
    model: &str,
    max_tokens: u64,
    version: &str,
) -> Result<Value, ApiError> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.extend(
                openai_blocks(&m["content"])
                    .into_iter()
                    .filter(|b| b["type"] == "text"),
            ),
            "assistant" => {
                let mut blocks = openai_blocks(&m["content"]);
                for (j, call) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call["id"],
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": tool_input(call, &param)?,
                    }));
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let content = match &m["content"] {
                    Value::String(s) => json!(s),
                    other => Value::Array(openai_blocks(other)),
                };
                push(
                    &mut messages,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": content}),
                    ],
                )
            }
            _ => push(&mut messages, "user", openai_blocks(&m["content"])),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    // One plain block stays the plain string it was; several stay separate blocks.
    match system.as_slice() {
        [] => {}
        [only] if only.get("cache_control").is_none() => {
            out.insert("system".into(), only["text"].clone());
        }
        _ => {
            out.insert("system".into(), Value::Array(system));
        }
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
    Ok(Value::Object(out))
}

/// The text of Anthropic content (a string or blocks) as OpenAI content: a string for one
/// piece of text, separate text parts for several, `None` for none.
fn openai_text_content(content: &Value) -> Option<Value> {
    match content {
        Value::String(s) if !s.is_empty() => Some(json!(s)),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            match texts.as_slice() {
                [] => None,
                [one] => Some(json!(one)),
                many => Some(Value::Array(
                    many.iter()
                        .map(|t| json!({"type": "text", "text": t}))
                        .collect(),
                )),
            }
        }
        _ => None,
    }
}

/// An Anthropic messages body as an OpenAI chat-completions body for `model`; streams ask for
/// usage (the budget needs it).
pub fn anthropic_to_openai(body: &Value, model: &str) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = openai_text_content(&body["system"]) {
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
            let text = openai_text_content(&m["content"]);
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
            let mut msg = json!({"role": "assistant", "content": text.unwrap_or(Value::Null)});
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
                "content": openai_text_content(&b["content"]).unwrap_or_else(|| json!("")),
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
            let content = match parts.as_slice() {
                [only] if only["type"] == "text" => only["text"].clone(),
                _ => Value::Array(parts),
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
        let a = openai_to_anthropic(&body, "claude", 4096, "2026-10-21").unwrap();
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

    #[test]
    fn system_parts_stay_separate_blocks() {
        let body = json!({"model": "x", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Part A."},
                                           {"type": "text", "text": "Part B.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "developer", "content": "Part C."},
            {"role": "user", "content": "hi"},
        ]});
        let a = openai_to_anthropic(&body, "claude", 10, "2023-06-01").unwrap();
        assert_eq!(
            a["system"],
            json!([{"type": "text", "text": "Part A."},
                   {"type": "text", "text": "Part B.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Part C."}])
        );
        // And back: separate OpenAI text parts, not one joined string.
        let o = anthropic_to_openai(&a, "gpt");
        assert_eq!(
            o["messages"][0],
            json!({"role": "system", "content": [{"type": "text", "text": "Part A."},
                   {"type": "text", "text": "Part B."}, {"type": "text", "text": "Part C."}]})
        );
        // User text blocks too.
        let u = anthropic_to_openai(
            &json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "one."}, {"type": "text", "text": "two."}]}]}),
            "gpt",
        );
        assert_eq!(
            u["messages"][0]["content"],
            json!([{"type": "text", "text": "one."}, {"type": "text", "text": "two."}])
        );
    }

    #[test]
    fn tool_arguments_that_are_not_a_json_object_are_refused_by_name() {
        let with_args = |args: Value| {
            json!({"model": "x", "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_ok", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                    {"id": "call_bad", "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
                {"role": "tool", "tool_call_id": "call_bad", "content": "?"},
            ]})
        };
        for args in [json!("{\"city\": \"Par"), json!("[1]"), json!(7)] {
            let body = with_args(args.clone());
            let e = openai_to_anthropic(&body, "claude", 10, "2023-06-01").unwrap_err();
            assert_eq!(check_openai(&body), Err(e.clone()), "{args}");
            let o = e.body(crate::config::Format::Openai);
            assert_eq!(e.status, 400);
            assert_eq!(o["error"]["type"], "invalid_request_error");
            assert_eq!(
                o["error"]["param"],
                "messages[1].tool_calls[1].function.arguments"
            );
            let m = o["error"]["message"].as_str().unwrap_or_default();
            assert!(m.contains("`call_bad` (get_weather)"), "{m}");
        }
        // No arguments at all is an empty object, not an error.
        for args in [json!(""), Value::Null] {
            let a = openai_to_anthropic(&with_args(args), "claude", 10, "2023-06-01").unwrap();
            assert_eq!(a["messages"][1]["content"][1]["input"], json!({}));
        }
        let bad_input = json!({"max_tokens": 5, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "w", "input": "{}"}]}]});
        let e = check_anthropic(&bad_input).unwrap_err();
        assert!(
            e.message()
                .starts_with("messages.1.content.0.tool_use.input")
        );
    }
}
