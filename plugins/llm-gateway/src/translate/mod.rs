//! Translation between the OpenAI chat-completions and Anthropic messages formats: requests
//! ([`request`]), whole answers ([`response`]) and streams ([`stream`]).

pub mod request;
pub mod response;
pub mod stream;

/// Tokens used by one answer, normalised: `input` includes cached tokens in both formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// The usage in an Anthropic `usage` object (input = uncached + cache writes + cache reads).
pub fn anthropic_usage(u: &serde_json::Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Usage {
        input: n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens"),
        output: n("output_tokens"),
    }
}

/// The usage in an OpenAI `usage` object (chat and embeddings name it `prompt_tokens`/
/// `completion_tokens`, the Responses API `input_tokens`/`output_tokens`).
pub fn openai_usage(u: &serde_json::Value) -> Usage {
    let n = |a: &str, b: &str| {
        u.get(a)
            .or_else(|| u.get(b))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        input: n("prompt_tokens", "input_tokens"),
        output: n("completion_tokens", "output_tokens"),
    }
}
