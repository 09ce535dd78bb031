//! The one resource-URI mapping, applied wherever a server's URI reaches the client: lists and
//! reads (see `federate`), `resource_link` and embedded resources in tool results and prompt
//! messages, and `notifications/resources/updated`. Requests carrying a public URI map back
//! through [`crate::names::resolve_uri`].

use crate::names::public_uri;
use serde_json::Value;

/// Rewrites the URIs in a result from a server with `prefix`: `contents[]` (a read),
/// `content[]` (a tool result) and `messages[].content` (a prompt).
pub fn result(result: &mut Value, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    if let Some(Value::Array(contents)) = result.get_mut("contents") {
        for c in contents {
            rename(c, prefix);
        }
    }
    if let Some(Value::Array(items)) = result.get_mut("content") {
        for item in items {
            content(item, prefix);
        }
    }
    if let Some(Value::Array(messages)) = result.get_mut("messages") {
        for m in messages {
            match m.get_mut("content") {
                Some(Value::Array(items)) => items.iter_mut().for_each(|i| content(i, prefix)),
                Some(item) => content(item, prefix),
                None => {}
            }
        }
    }
}

/// A notification from a server with `prefix` naming resources: an update, or the
/// acknowledgement of a `subscriptions/listen` filter.
pub fn notification(msg: &mut Value, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    match msg.get("method").and_then(Value::as_str) {
        Some("notifications/resources/updated") => {
            if let Some(params) = msg.get_mut("params") {
                rename(params, prefix);
            }
        }
        Some("notifications/subscriptions/acknowledged") => {
            if let Some(Value::Array(uris)) =
                msg.pointer_mut("/params/notifications/resourceSubscriptions")
            {
                for u in uris.iter_mut() {
                    if let Value::String(uri) = u {
                        *u = Value::String(public_uri(prefix, uri));
                    }
                }
            }
        }
        _ => {}
    }
}

/// One content block: a `resource_link` has its own `uri`, an embedded `resource` has one
/// inside.
fn content(item: &mut Value, prefix: &str) {
    match item.get("type").and_then(Value::as_str) {
        Some("resource_link") => rename(item, prefix),
        Some("resource") => {
            if let Some(r) = item.get_mut("resource") {
                rename(r, prefix);
            }
        }
        _ => {}
    }
}

fn rename(obj: &mut Value, prefix: &str) {
    if let Some(Value::String(uri)) = obj.get("uri") {
        obj["uri"] = Value::String(public_uri(prefix, uri));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_and_embedded_resources_in_results_and_prompts_are_renamed() {
        let mut r = json!({"content": [
            {"type": "text", "text": "x", "uri": "not-a-resource"},
            {"type": "resource_link", "uri": "test://a", "name": "a"},
            {"type": "resource", "resource": {"uri": "test://b", "text": "b"}},
        ]});
        result(&mut r, "py");
        assert_eq!(r["content"][0]["uri"], "not-a-resource");
        assert_eq!(r["content"][1]["uri"], "py+test://a");
        assert_eq!(r["content"][2]["resource"]["uri"], "py+test://b");
        let mut p = json!({"messages": [
            {"role": "user", "content": {"type": "resource", "resource": {"uri": "test://c"}}},
        ]});
        result(&mut p, "py");
        assert_eq!(
            p["messages"][0]["content"]["resource"]["uri"],
            "py+test://c"
        );
        let mut n =
            json!({"method": "notifications/resources/updated", "params": {"uri": "f://x"}});
        notification(&mut n, "py");
        assert_eq!(n["params"]["uri"], "py+f://x");
        let mut same = r.clone();
        result(&mut same, "");
        assert_eq!(same, r, "an unprefixed server's URIs stay as they are");
    }
}
