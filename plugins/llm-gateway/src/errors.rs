//! Errors in the client's own format, so its SDK raises the right exception with the message,
//! type and code the real API would give: OpenAI's `{"error": {"message", "type", "param",
//! "code"}}`, Anthropic's `{"type": "error", "error": {"type", "message"}}`.

use crate::config::Format;
use serde_json::{Value, json};
use weir_sdk::LocalResponse;

/// An error the gateway answers itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    openai_type: &'static str,
    anthropic_type: &'static str,
    code: Option<&'static str>,
    param: Option<String>,
    message: String,
    /// Anthropic's own wording where it differs (an unknown model is `model: NAME` there).
    anthropic_message: Option<String>,
    retry_after: Option<u64>,
    /// `x-should-retry`, which both SDKs obey before their own status rules.
    should_retry: Option<bool>,
}

impl ApiError {
    fn new(
        status: u16,
        openai_type: &'static str,
        anthropic_type: &'static str,
        message: &str,
    ) -> Self {
        ApiError {
            status,
            openai_type,
            anthropic_type,
            code: None,
            param: None,
            message: message.to_string(),
            anthropic_message: None,
            retry_after: None,
            should_retry: None,
        }
    }

    /// 400: the request itself is wrong.
    pub fn invalid(message: &str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            "invalid_request_error",
            message,
        )
    }

    /// The request field at fault, OpenAI-style (`messages[1].tool_calls[0].function.arguments`).
    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 404 for a model name not in the catalogue, word for word as each API says it.
    pub fn unknown_model(model: &str) -> Self {
        let mut e = Self::new(
            404,
            "invalid_request_error",
            "not_found_error",
            &format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .code("model_not_found");
        e.anthropic_message = Some(format!("model: {model}"));
        e
    }

    /// 404 for a path the gateway does not serve (OpenAI's wording).
    pub fn unknown_endpoint(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "not_found_error",
            &format!("Invalid URL ({method} {path})"),
        )
    }

    /// 405.
    pub fn method(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "invalid_request_error",
            &format!("Invalid method for URL ({method} {path}): use POST"),
        )
    }

    /// 429 that passes: a per-minute limit, `retry_after` seconds from now.
    pub fn rate_limited(message: &str, retry_after: u64) -> Self {
        let mut e =
            Self::new(429, "tokens", "rate_limit_error", message).code("rate_limit_exceeded");
        e.retry_after = Some(retry_after);
        e
    }

    /// 429 that does not pass by waiting: a total budget used up (OpenAI's exhausted quota).
    /// The SDKs are told not to retry it.
    pub fn quota(message: &str) -> Self {
        let mut e = Self::new(429, "insufficient_quota", "rate_limit_error", message)
            .code("insufficient_quota");
        e.should_retry = Some(false);
        e
    }

    /// 500: the gateway cannot serve this (its configuration, a secret).
    pub fn internal(message: &str) -> Self {
        Self::new(500, "server_error", "api_error", message)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn body(&self, format: Format) -> Value {
        match format {
            Format::Openai => json!({"error": {
                "message": self.message, "type": self.openai_type,
                "param": self.param, "code": self.code,
            }}),
            Format::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type,
                "message": self.anthropic_message.as_deref().unwrap_or(&self.message),
            }}),
        }
    }

    pub fn answer(&self, format: Format) -> LocalResponse {
        let mut r = LocalResponse::new(self.status)
            .header("content-type", "application/json")
            .body(self.body(format).to_string());
        if let Some(s) = self.retry_after {
            r = r.header("retry-after", s.to_string());
        }
        if let Some(b) = self.should_retry {
            r = r.header("x-should-retry", b.to_string());
        }
        if self.status == 405 {
            r = r.header("allow", "POST");
        }
        r
    }
}

/// Anthropic's error type for an HTTP status.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ if status >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's error type and code for an HTTP status.
fn openai_type(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        429 => ("requests", Some("rate_limit_exceeded")),
        _ if status >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// An upstream error body (a provider's, or the gateway's own plain-text 502/504) as an error
/// in the client's format. A body already in that format is kept as it is; otherwise its
/// message is kept and its type is the one the client's API uses for `status`.
pub fn convert(from: Format, to: Format, status: u16, body: &[u8]) -> Vec<u8> {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let shaped = match from {
        Format::Openai => {
            parsed.get("type").is_none()
                && parsed
                    .pointer("/error/message")
                    .is_some_and(Value::is_string)
        }
        Format::Anthropic => {
            parsed["type"] == "error"
                && parsed
                    .pointer("/error/message")
                    .is_some_and(Value::is_string)
        }
    };
    if from == to && shaped {
        return body.to_vec();
    }
    let message = parsed
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        format!("upstream answered HTTP {status}")
    } else {
        message
    };
    let out = match to {
        Format::Openai => {
            let (kind, code) = openai_type(status);
            // A code the provider gave (OpenAI-style) says more than one derived from the status.
            let code = parsed
                .pointer("/error/code")
                .filter(|c| c.is_string())
                .cloned()
                .unwrap_or_else(|| json!(code));
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Format::Anthropic => {
            json!({"type": "error", "error": {"type": anthropic_type(status), "message": message}})
        }
    };
    out.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap_or(Value::Null)
    }

    #[test]
    fn unknown_model_is_word_for_word_each_api() {
        let e = ApiError::unknown_model("nope");
        assert_eq!(e.status, 404);
        assert_eq!(
            e.body(Format::Openai),
            json!({"error": {"message": "The model `nope` does not exist or you do not have access to it.",
                             "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        );
        assert_eq!(
            e.body(Format::Anthropic),
            json!({"type": "error", "error": {"type": "not_found_error", "message": "model: nope"}})
        );
    }

    #[test]
    fn budgets_say_whether_waiting_helps() {
        let per_minute = ApiError::rate_limited("slow down", 12);
        assert_eq!(
            per_minute.body(Format::Openai)["error"]["code"],
            "rate_limit_exceeded"
        );
        assert_eq!(
            per_minute.body(Format::Anthropic)["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(per_minute.retry_after, Some(12));
        let total = ApiError::quota("used up");
        assert_eq!(
            total.body(Format::Openai)["error"]["type"],
            "insufficient_quota"
        );
        assert_eq!(total.should_retry, Some(false));
        assert_eq!(
            total.body(Format::Anthropic)["error"]["type"],
            "rate_limit_error"
        );
    }

    #[test]
    fn upstream_errors_take_the_clients_types() {
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        let o = parse(&convert(Format::Anthropic, Format::Openai, 529, anthropic));
        assert_eq!(o["error"]["type"], "server_error");
        assert_eq!(o["error"]["message"], "busy");
        let openai = br#"{"error":{"message":"slow","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let a = parse(&convert(Format::Openai, Format::Anthropic, 429, openai));
        assert_eq!(
            a,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
        );
        // Already the client's shape: untouched.
        assert_eq!(
            convert(Format::Openai, Format::Openai, 429, openai),
            openai.to_vec()
        );
        // The gateway's own plain-text 502 (a provider down) becomes a proper error too.
        let o = parse(&convert(
            Format::Openai,
            Format::Openai,
            502,
            b"weir: upstream oa: connection refused\n",
        ));
        assert_eq!(
            o["error"]["message"],
            "weir: upstream oa: connection refused"
        );
        assert_eq!(o["error"]["type"], "server_error");
        let a = parse(&convert(Format::Anthropic, Format::Anthropic, 504, b""));
        assert_eq!(a["error"]["type"], "timeout_error");
        assert_eq!(a["error"]["message"], "upstream answered HTTP 504");
    }
}
