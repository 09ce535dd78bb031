//! Agent cards, rewritten to point at the gateway: v1.0 `supportedInterfaces[].url`, v0.3
//! `url` and `additionalInterfaces[].url` (≤0.2 cards use `url` too). Only the scheme,
//! authority and any base path change; the interface's own path is kept under the public base.
//! `signatures` are dropped (a rewritten card no longer matches them), and `securitySchemes` /
//! `securityRequirements` are replaced when the operator says what the gateway enforces.

use serde_json::Value;

/// Why a card could not be rewritten.
#[derive(Debug, PartialEq, Eq)]
pub enum CardError {
    NotJson(String),
    NotAnObject,
}

/// The path (and query) of an absolute URL, or `None` if it is not one.
pub fn url_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    Some(match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    })
}

/// `url` moved under `public` (scheme://host[:port][/prefix]); non-HTTP URLs stay.
pub fn rebase(url: &str, public: &str) -> String {
    match url_path(url) {
        Some(path) => format!("{}{path}", public.trim_end_matches('/')),
        None => url.to_string(),
    }
}

/// The card with every interface URL under `public`.
pub fn rewrite(body: &[u8], public: &str, security: Option<&Value>) -> Result<Vec<u8>, CardError> {
    let mut card: Value =
        serde_json::from_slice(body).map_err(|e| CardError::NotJson(e.to_string()))?;
    rewrite_value(&mut card, public, security)?;
    Ok(card.to_string().into_bytes())
}

/// Rewrites a parsed card in place.
pub fn rewrite_value(
    card: &mut Value,
    public: &str,
    security: Option<&Value>,
) -> Result<(), CardError> {
    let obj = card.as_object_mut().ok_or(CardError::NotAnObject)?;
    if let Some(Value::String(u)) = obj.get_mut("url") {
        *u = rebase(u, public);
    }
    for list in ["supportedInterfaces", "additionalInterfaces"] {
        if let Some(Value::Array(items)) = obj.get_mut(list) {
            for item in items {
                if let Some(Value::String(u)) = item.get_mut("url") {
                    *u = rebase(u, public);
                }
            }
        }
    }
    obj.remove("signatures");
    if let Some(sec) = security {
        obj.insert(
            "securitySchemes".into(),
            sec.get("schemes").cloned().unwrap_or(Value::Null),
        );
        if let Some(req) = sec.get("requirements") {
            obj.insert("securityRequirements".into(), req.clone());
            obj.insert("security".into(), req.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn both_card_shapes_point_at_the_gateway() {
        let card = json!({
            "name": "a", "url": "http://10.0.0.5:9999/", "protocolVersion": "0.3",
            "additionalInterfaces": [{"url": "http://10.0.0.5:9999/rest", "transport": "HTTP+JSON"}],
            "supportedInterfaces": [{"url": "http://10.0.0.5:9999/?x=1", "protocolBinding": "JSONRPC"}],
            "signatures": [{"protected": "x", "signature": "y"}],
            "documentationUrl": "http://docs.example/a",
        });
        let out: Value = serde_json::from_slice(
            &rewrite(
                card.to_string().as_bytes(),
                "https://gw.example/agents/a",
                None,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(out["url"], "https://gw.example/agents/a/");
        assert_eq!(
            out["additionalInterfaces"][0]["url"],
            "https://gw.example/agents/a/rest"
        );
        assert_eq!(
            out["supportedInterfaces"][0]["url"],
            "https://gw.example/agents/a/?x=1"
        );
        assert!(out.get("signatures").is_none());
        assert_eq!(out["documentationUrl"], "http://docs.example/a");
    }

    #[test]
    fn malformed_cards_are_errors() {
        assert!(matches!(
            rewrite(b"{", "http://g", None),
            Err(CardError::NotJson(_))
        ));
        assert_eq!(
            rewrite(b"[1]", "http://g", None),
            Err(CardError::NotAnObject)
        );
        // Wrong types inside are left alone rather than failing.
        assert!(
            rewrite(
                br#"{"url": 5, "supportedInterfaces": "x"}"#,
                "http://g",
                None
            )
            .is_ok()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]
        /// Arbitrary bytes never panic the card parser.
        #[test]
        fn any_bytes_are_handled(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = rewrite(&bytes, "http://gw", None);
        }

        /// Arbitrary JSON cards never panic, and every string `url` ends up under the gateway.
        #[test]
        fn any_url_is_rebased(host in "[a-z0-9.:-]{1,20}", path in "(/[a-zA-Z0-9._~-]{0,8}){0,4}") {
            let card = json!({"url": format!("http://{host}{path}"),
                              "supportedInterfaces": [{"url": format!("https://{host}{path}")}]});
            let out: Value = serde_json::from_slice(
                &rewrite(card.to_string().as_bytes(), "http://gw:1/p", None).unwrap()).unwrap();
            for u in [&out["url"], &out["supportedInterfaces"][0]["url"]] {
                prop_assert!(u.as_str().unwrap().starts_with("http://gw:1/p/"), "{}", u);
            }
        }
    }
}
