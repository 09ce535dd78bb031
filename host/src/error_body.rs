//! The gateway's own error answers (413, 502, 504, a failing plugin's 500, …) in the format the
//! route's clients understand: plain text by default, JSON, or the LLM APIs' error shapes, so
//! an OpenAI or Anthropic SDK shows the reason instead of a bare status code.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// How a route's clients expect errors, resolved per request (`route.error_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ErrorStyle {
    #[default]
    Text,
    /// `{"error":{"status":N,"message":"…"}}`
    Json,
    /// OpenAI's `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// Anthropic's `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

impl ErrorStyle {
    /// The style for a request on a route with `format`: `llm` picks Anthropic's shape for
    /// the Messages API (`…/v1/messages`, or a client sending `anthropic-version`), OpenAI's
    /// otherwise.
    pub(crate) fn resolve(
        format: crate::config::ErrorFormat,
        path: &str,
        headers: &http::HeaderMap,
    ) -> ErrorStyle {
        use crate::config::ErrorFormat;
        match format {
            ErrorFormat::Text => ErrorStyle::Text,
            ErrorFormat::Json => ErrorStyle::Json,
            ErrorFormat::Llm
                if path.ends_with("/v1/messages")
                    || path.ends_with("/v1/messages/count_tokens")
                    || headers.contains_key("anthropic-version") =>
            {
                ErrorStyle::Anthropic
            }
            ErrorFormat::Llm => ErrorStyle::OpenAi,
        }
    }

    /// The content type and body of an error with this status and message (the message as
    /// the gateway writes it for text: `weir: …`, one line).
    pub(crate) fn render(self, status: StatusCode, msg: &str) -> (HeaderValue, Bytes) {
        let msg = msg.trim_end();
        if self == ErrorStyle::Text {
            let line = if msg.starts_with("weir: ") {
                format!("{msg}\n")
            } else {
                format!("weir: {msg}\n")
            };
            return (
                HeaderValue::from_static("text/plain; charset=utf-8"),
                Bytes::from(line),
            );
        }
        let msg = msg.strip_prefix("weir: ").unwrap_or(msg);
        let value = match self {
            ErrorStyle::OpenAi => serde_json::json!({"error": {
                "message": msg,
                "type": openai_type(status),
                "param": null,
                "code": openai_code(status),
            }}),
            ErrorStyle::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": anthropic_type(status), "message": msg},
            }),
            _ => serde_json::json!({"error": {"status": status.as_u16(), "message": msg}}),
        };
        (
            HeaderValue::from_static("application/json"),
            Bytes::from(value.to_string()),
        )
    }
}

/// OpenAI's error `type` for a status, as its API uses them (a 401 is an
/// `invalid_request_error` there; a 429's type names the exhausted limit).
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "requests",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn openai_code(status: StatusCode) -> serde_json::Value {
    let code = match status.as_u16() {
        408 => "request_timeout",
        413 => "request_too_large",
        429 => "rate_limit_exceeded",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => return serde_json::Value::Null,
    };
    code.into()
}

/// Anthropic's error `type` for a status (its documented error types).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ErrorFormat;

    fn json(style: ErrorStyle, status: u16, msg: &str) -> serde_json::Value {
        let (ct, body) = style.render(StatusCode::from_u16(status).expect("status"), msg);
        assert_eq!(ct, "application/json");
        serde_json::from_slice(&body).expect("json")
    }

    #[test]
    fn llm_routes_answer_in_the_clients_api_shape() {
        let h = http::HeaderMap::new();
        let openai = ErrorStyle::resolve(ErrorFormat::Llm, "/v1/chat/completions", &h);
        let anthropic = ErrorStyle::resolve(ErrorFormat::Llm, "/v1/messages", &h);
        assert_eq!(
            (openai, anthropic),
            (ErrorStyle::OpenAi, ErrorStyle::Anthropic)
        );
        let v = json(openai, 413, "weir: request body too large\n");
        assert_eq!(v["error"]["message"], "request body too large");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "request_too_large");
        let v = json(anthropic, 504, "weir: upstream timed out");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "timeout_error");
    }

    #[test]
    fn text_keeps_one_prefixed_line() {
        let (ct, body) = ErrorStyle::Text.render(StatusCode::BAD_GATEWAY, "weir: down\n");
        assert_eq!(ct, "text/plain; charset=utf-8");
        assert_eq!(&body[..], b"weir: down\n");
        let (_, body) = ErrorStyle::Text.render(StatusCode::BAD_GATEWAY, "down");
        assert_eq!(&body[..], b"weir: down\n");
        assert_eq!(json(ErrorStyle::Json, 502, "down")["error"]["status"], 502);
    }
}
