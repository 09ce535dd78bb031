//! One decision per request: which A2A operation it is, over which binding, or why it is not
//! one. Pure (no host calls), so it is unit- and property-tested natively.

use crate::grpc;
use crate::methods::{self, GrpcEra};
use serde_json::Value;

/// The binding a request came over, which also decides the shape of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    JsonRpc,
    Rest,
    Grpc,
}

/// What a request is.
#[derive(Debug, PartialEq)]
pub enum Class {
    /// A public agent card fetch (`GET /.well-known/agent-card.json` or `agent.json`).
    Card,
    /// An A2A operation, by its v1.0 name.
    Operation {
        op: &'static str,
        binding: Binding,
        /// The JSON-RPC id, for JSON-RPC requests.
        rpc_id: Option<Value>,
        /// JSON params (JSON-RPC `params`, or the REST body) for ids and webhooks.
        params: Value,
        /// For gRPC: the service's era (the body layout).
        grpc: Option<GrpcEra>,
    },
    /// A spelling the agent may read differently from the gateway (a `%` in the path): always
    /// refused.
    Ambiguous { binding: Binding, reason: String },
    /// Not an A2A operation the plugin knows: refused unless `allow_unclassified`.
    Unclassified {
        binding: Binding,
        rpc_id: Option<Value>,
        reason: String,
    },
}

/// The reason given for a JSON-RPC method that is no A2A operation.
pub const UNKNOWN_METHOD: &str = "not an A2A method";
/// The reason given for a `POST` body that is not JSON.
pub const PARSE_ERROR: &str = "the body is not JSON";

/// Classifies a request from its method, path (with query), `content-type` and body.
pub fn classify(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Class {
    let bare = path.split('?').next().unwrap_or_default();
    let is_grpc = grpc::is_grpc(content_type);
    let grpc_call = methods::grpc_operation(bare);
    let binding = if is_grpc || grpc_call.is_some() {
        Binding::Grpc
    } else {
        Binding::Rest
    };
    // The agent's router decodes the path; exact matching here would see another name.
    if bare.contains('%') {
        return Class::Ambiguous {
            binding,
            reason: "percent-encoded request path".into(),
        };
    }
    if let Some((op, era)) = grpc_call {
        return Class::Operation {
            op,
            binding: Binding::Grpc,
            rpc_id: None,
            params: Value::Null,
            grpc: Some(era),
        };
    }
    if is_grpc {
        return Class::Unclassified {
            binding,
            rpc_id: None,
            reason: "not an A2A gRPC method".into(),
        };
    }
    if method == "GET"
        && (bare.ends_with("/.well-known/agent-card.json")
            || bare.ends_with("/.well-known/agent.json"))
    {
        return Class::Card;
    }
    if let Some(op) = methods::rest_operation(method, bare) {
        return Class::Operation {
            op,
            binding: Binding::Rest,
            rpc_id: None,
            params: serde_json::from_slice::<Value>(body).unwrap_or(Value::Null),
            grpc: None,
        };
    }
    if method != "POST" {
        return Class::Unclassified {
            binding,
            rpc_id: None,
            reason: format!("{} is not an A2A operation", method_label(method)),
        };
    }
    // Any other POST is taken as JSON-RPC, so a refusal is the error a JSON-RPC server gives.
    let mut msg = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(msg)) => msg,
        Ok(_) => {
            return Class::Unclassified {
                binding: Binding::JsonRpc,
                rpc_id: Some(Value::Null),
                reason: "not a single JSON-RPC request".into(),
            };
        }
        Err(_) => {
            return Class::Unclassified {
                binding: Binding::JsonRpc,
                rpc_id: Some(Value::Null),
                reason: PARSE_ERROR.into(),
            };
        }
    };
    let rpc_id = Some(msg.remove("id").unwrap_or(Value::Null));
    let Some(Value::String(m)) = msg.get("method") else {
        return Class::Unclassified {
            binding: Binding::JsonRpc,
            rpc_id,
            reason: "a JSON-RPC request without a method".into(),
        };
    };
    match methods::jsonrpc_operation(m) {
        Some(op) => Class::Operation {
            op,
            binding: Binding::JsonRpc,
            rpc_id,
            params: msg.remove("params").unwrap_or(Value::Null),
            grpc: None,
        },
        None => Class::Unclassified {
            binding: Binding::JsonRpc,
            rpc_id,
            reason: UNKNOWN_METHOD.into(),
        },
    }
}

/// An HTTP method for a message, without echoing arbitrary client bytes.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "this method",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn op(c: &Class) -> Option<&'static str> {
        match c {
            Class::Operation { op, .. } => Some(op),
            _ => None,
        }
    }

    #[test]
    fn bindings_and_refusals() {
        let grpc = Some("application/grpc");
        let c = classify("POST", "/lf.a2a.v1.A2AService/SendMessage", grpc, b"");
        assert_eq!(op(&c), Some("SendMessage"));
        assert!(matches!(
            classify("POST", "/lf.a2a.v1.A2AService/Frobnicate", grpc, b""),
            Class::Unclassified {
                binding: Binding::Grpc,
                ..
            }
        ));
        assert!(matches!(
            classify("POST", "/lf.a2a.v1.A2AService/Send%4Dessage", grpc, b""),
            Class::Ambiguous {
                binding: Binding::Grpc,
                ..
            }
        ));
        assert!(matches!(
            classify(
                "POST",
                "/rest/message%3Asend",
                Some("application/json"),
                b"{}"
            ),
            Class::Ambiguous {
                binding: Binding::Rest,
                ..
            }
        ));
        // `%` in the query is data, not the operation.
        let c = classify("GET", "/rest/tasks?pageToken=a%3Db", None, b"");
        assert_eq!(op(&c), Some("ListTasks"));
        assert_eq!(
            classify("GET", "/.well-known/agent-card.json", None, b""),
            Class::Card
        );
        let rpc = json!({"jsonrpc": "2.0", "id": 9, "method": "tasks/get", "params": {"id": "t"}});
        let c = classify("POST", "/", None, rpc.to_string().as_bytes());
        assert_eq!(op(&c), Some("GetTask"));
        // A batch, a method-less object, an unknown method, non-JSON: all unclassified.
        for body in [
            json!([{"jsonrpc": "2.0", "id": 1, "method": "CancelTask"}]).to_string(),
            json!({"jsonrpc": "2.0", "id": 1}).to_string(),
            json!({"jsonrpc": "2.0", "id": 1, "method": "x-made-up"}).to_string(),
            "{not json".to_string(),
        ] {
            assert!(
                matches!(
                    classify("POST", "/", None, body.as_bytes()),
                    Class::Unclassified { .. }
                ),
                "{body}"
            );
        }
        assert!(matches!(
            classify("OPTIONS", "/", None, b""),
            Class::Unclassified { .. }
        ));
    }

    /// The plain spellings of every operation over JSON-RPC, REST and gRPC.
    fn plain() -> Vec<(&'static str, String, Option<&'static str>, String)> {
        let mut out = Vec::new();
        for (m, p) in [
            ("POST", "/rest/message:send"),
            ("POST", "/rest/message:stream"),
            ("GET", "/rest/tasks/t1"),
            ("GET", "/rest/tasks"),
            ("POST", "/rest/tasks/t1:cancel"),
            ("GET", "/rest/tasks/t1:subscribe"),
            ("POST", "/rest/tasks/t1/pushNotificationConfigs"),
            ("GET", "/rest/tasks/t1/pushNotificationConfigs/c1"),
            ("GET", "/rest/tasks/t1/pushNotificationConfigs"),
            ("DELETE", "/rest/tasks/t1/pushNotificationConfigs/c1"),
            ("GET", "/rest/extendedAgentCard"),
        ] {
            out.push((m, p.to_string(), Some("application/json"), "{}".to_string()));
        }
        for o in methods::OPERATIONS {
            out.push((
                "POST",
                format!("/lf.a2a.v1.A2AService/{o}"),
                Some("application/grpc"),
                String::new(),
            ));
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": o}).to_string();
            out.push(("POST", "/".to_string(), Some("application/json"), body));
        }
        out
    }

    /// `s` with the characters at `picks` percent-encoded (upper or lower hex).
    fn encode_some(s: &str, picks: &[(usize, bool)]) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            match picks.iter().find(|(p, _)| *p % s.len().max(1) == i) {
                Some((_, upper)) if c.is_ascii() && c != '/' => {
                    let hex = format!("{:02x}", c as u32);
                    out.push('%');
                    out.push_str(&if *upper { hex.to_uppercase() } else { hex });
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// `s` with the ASCII letters at `picks` case-flipped.
    fn flip_case(s: &str, picks: &[usize]) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                if picks.iter().any(|p| p % s.len().max(1) == i) {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                } else {
                    c
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        /// Arbitrary methods, paths, content types and bodies never panic.
        #[test]
        fn anything_is_classified_without_panicking(
            method in "[A-Z]{0,8}|.{0,8}",
            path in ".{0,64}",
            ct in proptest::option::of("application/(grpc|json)[a-z+]{0,6}|.{0,20}"),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = classify(&method, &path, ct.as_deref(), &body);
            for o in methods::OPERATIONS {
                let _ = grpc::inspect(o, GrpcEra::V10, &body);
                let _ = grpc::inspect(o, GrpcEra::A2aV1, &body);
            }
        }

        /// Arbitrary JSON-RPC-ish objects never panic, and a method is an operation only if
        /// it is exactly a known name.
        #[test]
        fn arbitrary_methods_are_known_or_refused(m in ".{0,40}", id in any::<i64>()) {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": m}).to_string();
            match classify("POST", "/", None, body.as_bytes()) {
                Class::Operation { op, .. } => prop_assert_eq!(Some(op), methods::jsonrpc_operation(&m)),
                other => prop_assert!(matches!(other, Class::Unclassified { .. }), "{:?}", other),
            }
        }

        /// Any percent-encoded or oddly-cased spelling of an operation is that operation or
        /// not an operation at all: never another one.
        #[test]
        fn other_spellings_are_the_same_operation_or_refused(
            which in 0usize..64,
            enc in proptest::collection::vec((0usize..64, any::<bool>()), 0..4),
            case in proptest::collection::vec(0usize..64, 0..4),
            in_method in any::<bool>(),
        ) {
            let all = plain();
            let (m, p, ct, body) = &all[which % all.len()];
            let expected = op(&classify(m, p, *ct, body.as_bytes()));
            prop_assert!(expected.is_some(), "{} {}", m, p);
            let (path, body) = if in_method && body.contains("\"method\"") {
                let v: Value = serde_json::from_str(body).unwrap();
                let name = v["method"].as_str().unwrap_or_default();
                let renamed = encode_some(&flip_case(name, &case), &enc);
                (p.clone(), json!({"jsonrpc": "2.0", "id": 1, "method": renamed}).to_string())
            } else {
                (encode_some(&flip_case(p, &case), &enc), body.clone())
            };
            let got = classify(m, &path, *ct, body.as_bytes());
            if let Some(o) = op(&got) {
                prop_assert_eq!(Some(o), expected, "{} {} {}", m, path, body);
            }
        }
    }
}
