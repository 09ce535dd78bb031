//! Errors in the client's own format, so its SDK raises the right exception.

use crate::config::Format;
use serde_json::{Value, json};
use weir_sdk::LocalResponse;

/// An error answer: `kind` is the provider-style type (`invalid_request_error`,
/// `rate_limit_error`, `not_found_error`, `api_error`).
pub fn answer(format: Format, status: u16, kind: &str, message: &str) -> LocalResponse {
    LocalResponse::new(status)
        .header("content-type", "application/json")
        .body(body(format, kind, message).to_string())
}

pub fn body(format: Format, kind: &str, message: &str) -> Value {
    match format {
        Format::Openai => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
        Format::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
    }
}

/// A provider's error body in the other format (message kept), or unchanged.
pub fn convert(from: Format, to: Format, body: &[u8]) -> Vec<u8> {
    if from == to {
        return body.to_vec();
    }
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let kind = parsed
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    self::body(to, kind, &message).to_string().into_bytes()
}
