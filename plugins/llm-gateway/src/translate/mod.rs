//! Translation between the OpenAI chat-completions and Anthropic messages formats: requests
//! ([`request`]), whole answers ([`response`]) and streams ([`stream`]).

pub mod request;
pub mod response;
pub mod stream;

/// Tokens used by one answer, normalised: `input` includes cached tokens in both formats.
/// Whole and streamed answers write it with the same [`Usage::openai`] / [`Usage::anthropic`],
/// so both carry the same fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the provider's prompt cache (part of `input`).
    pub cache_read: u64,
    /// Input tokens written to it (part of `input`).
    pub cache_write: u64,
}

impl Usage {
    /// Input tokens neither read from nor written to a cache.
    fn uncached(&self) -> u64 {
        self.input
            .saturating_sub(self.cache_read)
            .saturating_sub(self.cache_write)
    }

    /// Merges an Anthropic `usage` object: counts it carries replace ours (a `message_delta`'s
    /// are cumulative), the others stay (as the SDK does).
    pub fn merge_anthropic(&mut self, u: &serde_json::Value) {
        let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64);
        let uncached = n("input_tokens").unwrap_or(self.uncached());
        self.cache_read = n("cache_read_input_tokens").unwrap_or(self.cache_read);
        self.cache_write = n("cache_creation_input_tokens").unwrap_or(self.cache_write);
        self.input = uncached + self.cache_read + self.cache_write;
        self.output = n("output_tokens").unwrap_or(self.output);
    }

    /// As an OpenAI chat-completions `usage` object (`cache_write_tokens` only when there are
    /// some, as OpenAI does).
    pub fn openai(&self) -> serde_json::Value {
        let mut details = serde_json::json!({"cached_tokens": self.cache_read});
        if self.cache_write > 0 {
            details["cache_write_tokens"] = self.cache_write.into();
        }
        serde_json::json!({
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.input + self.output,
            "prompt_tokens_details": details,
        })
    }

    /// As an Anthropic `usage` object (its `input_tokens` leaves cached tokens out).
    pub fn anthropic(&self) -> serde_json::Value {
        serde_json::json!({
            "input_tokens": self.uncached(),
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        })
    }
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
    let mut usage = Usage::default();
    usage.merge_anthropic(u);
    usage
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
    let detail = |k: &str| {
        u.pointer(&format!("/prompt_tokens_details/{k}"))
            .or_else(|| u.pointer(&format!("/input_tokens_details/{k}")))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        input: n("prompt_tokens", "input_tokens"),
        output: n("completion_tokens", "output_tokens"),
        cache_read: detail("cached_tokens"),
        cache_write: detail("cache_write_tokens"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_keeps_cache_counts_both_ways() {
        let mut u = anthropic_usage(&json!({"input_tokens": 3, "cache_read_input_tokens": 10,
                                            "cache_creation_input_tokens": 2, "output_tokens": 1}));
        assert_eq!((u.input, u.cache_read, u.cache_write), (15, 10, 2));
        // A message_delta with only output_tokens keeps the cache counts from message_start.
        u.merge_anthropic(&json!({"output_tokens": 9}));
        assert_eq!((u.input, u.output, u.cache_read), (15, 9, 10));
        assert_eq!(
            u.openai()["prompt_tokens_details"],
            json!({"cached_tokens": 10, "cache_write_tokens": 2})
        );
        assert_eq!(u.openai()["prompt_tokens"], 15);
        let o = openai_usage(&json!({"prompt_tokens": 20, "completion_tokens": 4,
                                     "prompt_tokens_details": {"cached_tokens": 16}}));
        assert_eq!(
            o.anthropic(),
            json!({"input_tokens": 4, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 16, "output_tokens": 4})
        );
        assert_eq!(
            o.openai()["prompt_tokens_details"],
            json!({"cached_tokens": 16}),
            "no cache writes, no cache_write_tokens"
        );
    }
}
