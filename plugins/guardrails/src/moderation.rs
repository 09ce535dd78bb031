//! The external moderation call: the inspected texts of a request, sent through `outbound` to a
//! service that speaks the OpenAI moderation API (`POST /v1/moderations` with
//! `{"input": [..]}`, answered `{"results": [{"flagged", "categories": {..}}]}`).
//!
//! The texts are sent **after** this plugin's redactions, so PII redacted on the route never
//! reaches the moderation service either.

use crate::config::ModerationConfig;
use serde_json::{Value, json};
use weir_sdk::{outbound, secrets};

/// The most of a verdict read; a moderation answer is a few hundred bytes.
const MAX_VERDICT: u32 = 1 << 20;

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Clean,
    /// Flagged, with the categories that counted.
    Flagged(Vec<String>),
    /// The service could not give a verdict (why, for the log).
    Failed(String),
}

pub fn check(m: &ModerationConfig, texts: &[String]) -> Verdict {
    if texts.iter().all(|t| t.trim().is_empty()) {
        return Verdict::Clean;
    }
    let mut body = json!({"input": texts});
    if let Some(model) = &m.model {
        body["model"] = json!(model);
    }
    let mut req = outbound::Request::post(&m.upstream, &m.path, body.to_string())
        .header("content-type", "application/json")
        .timeout_ms(m.timeout_ms);
    if let Some(name) = &m.secret {
        match secrets::get(name) {
            Ok(key) => req = req.header("authorization", &format!("Bearer {key}")),
            Err(e) => return Verdict::Failed(format!("secret {name:?}: {e:?}")),
        }
    }
    let resp = match outbound::send(req) {
        Ok(r) => r,
        Err(e) => return Verdict::Failed(format!("{e:?}")),
    };
    let status = resp.status();
    if !(200..300).contains(&status) {
        return Verdict::Failed(format!("HTTP {status}"));
    }
    let raw = match resp.read_body(MAX_VERDICT) {
        Ok(b) => b,
        Err(e) => return Verdict::Failed(format!("reading the verdict: {e:?}")),
    };
    match serde_json::from_slice::<Value>(&raw) {
        Ok(v) => judge(&v, &m.categories),
        Err(e) => Verdict::Failed(format!("the verdict is not JSON: {e}")),
    }
}

/// The verdict in a moderation answer: flagged if any result is flagged (or, with
/// `categories`, if any result has one of them set).
pub fn judge(v: &Value, categories: &[String]) -> Verdict {
    let Some(results) = v.get("results").and_then(Value::as_array) else {
        return Verdict::Failed("the answer has no `results` list".into());
    };
    let mut hit = Vec::new();
    for r in results {
        let set: Vec<String> = r
            .get("categories")
            .and_then(Value::as_object)
            .map(|c| {
                c.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        if categories.is_empty() {
            if r.get("flagged").and_then(Value::as_bool) == Some(true) {
                hit.extend(set);
                hit.push(String::new());
            }
        } else {
            hit.extend(set.into_iter().filter(|c| categories.contains(c)));
        }
    }
    hit.retain(|c| !c.is_empty() || categories.is_empty());
    if hit.is_empty() {
        Verdict::Clean
    } else {
        hit.retain(|c| !c.is_empty());
        hit.sort();
        hit.dedup();
        Verdict::Flagged(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let flagged = json!({"results": [{"flagged": true, "categories": {"violence": true, "hate": false}}]});
        assert_eq!(
            judge(&flagged, &[]),
            Verdict::Flagged(vec!["violence".into()])
        );
        assert_eq!(judge(&flagged, &["hate".into()]), Verdict::Clean);
        assert_eq!(
            judge(&json!({"results": [{"flagged": false}]}), &[]),
            Verdict::Clean
        );
        assert!(matches!(judge(&json!({"ok": 1}), &[]), Verdict::Failed(_)));
    }
}
