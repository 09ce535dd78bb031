//! Gateway-scoped identifiers. Ids cross the gateway in both directions and several clients may
//! share one upstream session, so the gateway replaces:
//! - a client's JSON-RPC request id and progress token on the way to a server,
//! - a server's own request id (`sampling/createMessage`, `elicitation/create`, `roots/list`) on
//!   the way to the client,
//! - a server's SSE event id on the way to the client, and
//! - a server's task id (the tasks extension) on the way to the client.
//!
//! Each replacement carries what is needed to map it back (hex-encoded JSON), so any instance
//! on any replica can do so — a resumed stream or a client's answer may reach another worker —
//! without shared state. The forms are `weir:<kind>:<slot>:<hex>`, where the slot is a nonce
//! (modern clients share upstream sessions, so their ids must not collide) or a server name;
//! server names never contain `:`.

use serde_json::Value;

/// What a gateway-scoped id stands for.
#[derive(Debug, PartialEq)]
pub enum Scoped {
    /// A client's request id; `modern` clients need `resultType` on the result.
    Call { client_id: Value, modern: bool },
    /// A client's progress token.
    Token(Value),
    /// A request `server` sent with this id.
    ServerRequest { server: String, id: Value },
    /// A task `server` runs under this id (the tasks extension).
    Task { server: String, id: Value },
}

/// The id a client's request (`client_id`) gets upstream. Legacy sessions are the client's
/// own, so the mapping is deterministic there: the client's `notifications/cancelled` can be
/// mapped without remembering anything.
pub fn call(client_id: &Value, modern: bool) -> Value {
    let (kind, nonce) = if modern {
        ('m', crate::random_hex(6))
    } else {
        ('c', String::new())
    };
    wrap(kind, &nonce, client_id)
}

/// The progress token a client's token gets upstream.
pub fn token(client_token: &Value, modern: bool) -> Value {
    let nonce = if modern {
        crate::random_hex(6)
    } else {
        String::new()
    };
    wrap('t', &nonce, client_token)
}

/// The id a request from `server` gets on its way to the client.
pub fn server_request(server: &str, id: &Value) -> Value {
    wrap('r', server, id)
}

/// The id a task of `server`'s gets on its way to the client.
pub fn task(server: &str, id: &Value) -> Value {
    wrap('k', server, id)
}

/// What a gateway-scoped id stands for, if `v` is one.
pub fn parse(v: &Value) -> Option<Scoped> {
    let s = v.as_str()?.strip_prefix("weir:")?;
    let mut parts = s.splitn(3, ':');
    let (kind, slot, hex) = (parts.next()?, parts.next()?, parts.next()?);
    let inner: Value = serde_json::from_slice(&unhex(hex)?).ok()?;
    match kind {
        "c" | "m" => Some(Scoped::Call {
            client_id: inner,
            modern: kind == "m",
        }),
        "t" => Some(Scoped::Token(inner)),
        "r" if !slot.is_empty() => Some(Scoped::ServerRequest {
            server: slot.to_string(),
            id: inner,
        }),
        "k" if !slot.is_empty() => Some(Scoped::Task {
            server: slot.to_string(),
            id: inner,
        }),
        _ => None,
    }
}

/// The SSE event id a server's event id gets: `<server>:<id>`.
pub fn event(server: &str, id: &str) -> String {
    format!("{server}:{id}")
}

/// The server and its own event id behind a gateway event id.
pub fn parse_event(id: &str) -> Option<(&str, &str)> {
    id.split_once(':').filter(|(s, _)| !s.is_empty())
}

fn wrap(kind: char, slot: &str, inner: &Value) -> Value {
    let json = inner.to_string();
    let hex: String = json.bytes().map(|b| format!("{b:02x}")).collect();
    Value::String(format!("weir:{kind}:{slot}:{hex}"))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_maps_back_to_what_it_replaced() {
        for id in [
            json!(7),
            json!("a:b:c"),
            json!({"x": [1, "é"]}),
            json!(null),
        ] {
            assert_eq!(
                parse(&call(&id, false)),
                Some(Scoped::Call {
                    client_id: id.clone(),
                    modern: false
                })
            );
            assert_eq!(
                parse(&server_request("py-1.x", &id)),
                Some(Scoped::ServerRequest {
                    server: "py-1.x".into(),
                    id: id.clone()
                })
            );
            assert_eq!(parse(&token(&id, false)), Some(Scoped::Token(id.clone())));
            assert_eq!(
                parse(&task("ev", &id)),
                Some(Scoped::Task {
                    server: "ev".into(),
                    id: id.clone()
                })
            );
        }
        // Legacy call ids are deterministic, so cancellation maps without state.
        assert_eq!(call(&json!(3), false), call(&json!(3), false));
        assert_eq!(parse_event(&event("py", "s1:9")), Some(("py", "s1:9")));
    }

    #[test]
    fn foreign_and_damaged_ids_are_not_mistaken_for_ours() {
        for v in [
            json!(1),
            json!("weir-abc"),
            json!("weir:c::zz"),
            json!("weir:c::7b"),
            json!("weir:r::31"),
            json!("weir:q::31"),
        ] {
            assert_eq!(parse(&v), None, "{v}");
        }
        assert_eq!(parse_event("no-colon"), None);
    }
}
