//! JSON-RPC 2.0 messages: classifying a received body ([`parse`], [`classify`]) and building
//! messages as [`Value`]s ([`request`], [`notification`], [`result`], [`error`]), with named
//! constants for the standard error codes and the ones MCP and the gateway add.

use serde_json::{Map, Value, json};

// The standard error codes (JSON-RPC 2.0 § 5.1).

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Valid JSON that is not one JSON-RPC message (e.g. a batch, which MCP removed in 2025-06-18).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Bad params, an unknown tool or resource, an invalid cursor.
pub const INVALID_PARAMS: i64 = -32602;
/// The server failed while handling the request (e.g. the process answering it went away).
pub const INTERNAL_ERROR: i64 = -32603;

// Codes in the server-defined range -32000..=-32099.

/// Server-defined range: the gateway's own errors (an upstream down, a call refused by policy).
pub const SERVER_ERROR: i64 = -32000;
/// The legacy-era "session not found" code the reference SDKs use with HTTP 404.
pub const SESSION_NOT_FOUND: i64 = -32001;
/// Modern era: an `Mcp-*` header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// Modern era: a protocol version the gateway does not speak (`data.supported` lists ours).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Has `method` and `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// Has `method`, no `id`.
    Notification { method: String, params: Value },
    /// Has `result` or `error` and an `id`.
    Response { id: Value, body: Map<String, Value> },
}

/// Why a body is not one JSON-RPC message; maps to an error answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Invalid {
    /// Not JSON at all.
    Parse(String),
    /// A JSON array: batches are not part of MCP since 2025-06-18.
    Batch,
    /// JSON, but not a JSON-RPC 2.0 message; the reason says what is wrong.
    NotJsonRpc(&'static str),
}

impl Invalid {
    /// The JSON-RPC error code for this problem.
    pub fn code(&self) -> i64 {
        match self {
            Invalid::Parse(_) => PARSE_ERROR,
            Invalid::Batch | Invalid::NotJsonRpc(_) => INVALID_REQUEST,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Invalid::Parse(e) => format!("Parse error: {e}"),
            Invalid::Batch => "Invalid Request: JSON-RPC batches are not supported".into(),
            Invalid::NotJsonRpc(why) => format!("Invalid Request: {why}"),
        }
    }
}

/// Parses one POSTed body.
pub fn parse(body: &[u8]) -> Result<Message, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Invalid::Parse(e.to_string()))?;
    classify(value)
}

/// Classifies a parsed JSON value as a JSON-RPC message.
pub fn classify(value: Value) -> Result<Message, Invalid> {
    let mut obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(Invalid::Batch),
        _ => return Err(Invalid::NotJsonRpc("the body is not a JSON object")),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::NotJsonRpc("\"jsonrpc\" must be \"2.0\""));
    }
    let id = obj.remove("id");
    if let Some(id) = &id
        && !(id.is_string() || id.is_i64() || id.is_u64())
    {
        return Err(Invalid::NotJsonRpc("\"id\" must be a string or an integer"));
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = obj.remove("params").unwrap_or(Value::Null);
            if !(params.is_object() || params.is_null()) {
                return Err(Invalid::NotJsonRpc("\"params\" must be an object"));
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(Invalid::NotJsonRpc("\"method\" must be a string")),
        None => match id {
            Some(id) if obj.contains_key("result") || obj.contains_key("error") => {
                Ok(Message::Response { id, body: obj })
            }
            _ => Err(Invalid::NotJsonRpc(
                "neither a request, a notification nor a response",
            )),
        },
    }
}

/// A request: `{"jsonrpc": "2.0", "id": id, "method": method, "params": params}`, without
/// `params` when it is `None`. `id` should be a string or an integer (see [`classify`]).
pub fn request(id: &Value, method: &str, params: Option<Value>) -> Value {
    let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
    if let Some(p) = params {
        msg["params"] = p;
    }
    msg
}

/// A notification (a request without `id`, never answered):
/// `{"jsonrpc": "2.0", "method": method, "params": params}`, without `params` when `None`.
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut msg = json!({"jsonrpc": "2.0", "method": method});
    if let Some(p) = params {
        msg["params"] = p;
    }
    msg
}

/// A success response: `{"jsonrpc": "2.0", "id": id, "result": result}`.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response: `{"jsonrpc": "2.0", "id": id, "error": {"code": code, "message":
/// message, "data": data}}`, without `data` when it is `None`. `id` is the request's, or
/// [`Value::Null`] when it could not be read (a parse error, an invalid request).
pub fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut err = json!({"code": code, "message": message});
    if let Some(d) = data {
        err["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": err})
}

/// The id of a response message, if `value` is one.
pub fn response_id(value: &Value) -> Option<&Value> {
    let obj = value.as_object()?;
    if obj.contains_key("method") || !(obj.contains_key("result") || obj.contains_key("error")) {
        return None;
    }
    obj.get("id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages_and_refuses_the_rest() {
        let req = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert!(matches!(req, Message::Request { ref method, .. } if method == "tools/list"));
        let note = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(note, Message::Notification { .. }));
        let resp = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(resp, Message::Response { .. }));
        assert_eq!(parse(b"[1]").unwrap_err(), Invalid::Batch);
        assert_eq!(parse(b"{nope").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":{"x":1},"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
    }

    #[test]
    fn standard_error_codes() {
        assert_eq!(
            [
                PARSE_ERROR,
                INVALID_REQUEST,
                METHOD_NOT_FOUND,
                INVALID_PARAMS,
                INTERNAL_ERROR
            ],
            [-32700, -32600, -32601, -32602, -32603]
        );
    }

    #[test]
    fn builders_make_messages_that_classify_back() {
        let req = request(&json!(7), "tools/call", Some(json!({"name": "x"})));
        assert_eq!(
            req,
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}})
        );
        assert_eq!(
            classify(req),
            Ok(Message::Request {
                id: json!(7),
                method: "tools/call".into(),
                params: json!({"name": "x"}),
            })
        );
        let bare = request(&json!("a"), "ping", None);
        assert_eq!(bare, json!({"jsonrpc": "2.0", "id": "a", "method": "ping"}));

        let note = notification("notifications/initialized", None);
        assert_eq!(
            note,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        );
        assert!(matches!(classify(note), Ok(Message::Notification { .. })));
        let progress = notification("notifications/progress", Some(json!({"progress": 1})));
        assert_eq!(progress["params"], json!({"progress": 1}));
        assert!(progress.get("id").is_none());

        let ok = result(&json!(7), json!({"tools": []}));
        assert_eq!(
            ok,
            json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": []}})
        );
        assert_eq!(response_id(&ok), Some(&json!(7)));
        assert!(matches!(classify(ok), Ok(Message::Response { .. })));
    }

    #[test]
    fn error_responses_with_and_without_data_and_id() {
        let err = error(&json!(3), INTERNAL_ERROR, "the server exited", None);
        assert_eq!(
            err,
            json!({"jsonrpc": "2.0", "id": 3,
                   "error": {"code": -32603, "message": "the server exited"}})
        );
        assert!(err["error"].get("data").is_none());
        assert!(matches!(classify(err), Ok(Message::Response { .. })));
        // Unknown id: `null`, as JSON-RPC asks for parse errors and invalid requests.
        let err = error(
            &Value::Null,
            PARSE_ERROR,
            "Parse error",
            Some(json!({"at": 4})),
        );
        assert_eq!(
            err,
            json!({"jsonrpc": "2.0", "id": null,
                   "error": {"code": -32700, "message": "Parse error", "data": {"at": 4}}})
        );
    }
}
