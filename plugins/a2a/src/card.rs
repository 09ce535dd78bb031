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

/// Where the gateway serves each binding of one agent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bindings<'a> {
    /// The public base URL (`scheme://host[:port][/prefix]`) HTTP interfaces are rebased under.
    pub public: &'a str,
    /// Exact URLs for JSON-RPC and HTTP+JSON interfaces, instead of rebasing.
    pub jsonrpc: Option<&'a str>,
    pub rest: Option<&'a str>,
    /// The gateway's gRPC address (`host:port`); without it gRPC interfaces are removed.
    pub grpc: Option<&'a str>,
}

impl<'a> Bindings<'a> {
    /// Bindings rebasing every HTTP interface under `public`, serving no gRPC.
    pub fn under(public: &'a str) -> Self {
        Bindings {
            public,
            ..Bindings::default()
        }
    }

    /// The gateway URL for an interface of `binding` at `url`, or `None` if the gateway does
    /// not serve that binding (the interface is then removed).
    fn map(&self, binding: &str, url: &str) -> Option<String> {
        let b = binding.to_ascii_uppercase();
        let exact = match b.as_str() {
            "JSONRPC" => self.jsonrpc,
            "HTTP+JSON" | "REST" => self.rest,
            "GRPC" => return self.grpc.map(str::to_owned),
            // A binding the gateway cannot route would send clients around it.
            _ => return None,
        };
        Some(match exact {
            Some(u) => u.to_string(),
            None if url_path(url).is_some() => rebase(url, self.public),
            // Not an http(s) URL for an HTTP binding: nothing to keep of it.
            None => format!("{}/", self.public.trim_end_matches('/')),
        })
    }
}

/// The card with every interface pointing at the gateway.
pub fn rewrite(
    body: &[u8],
    bindings: &Bindings,
    security: Option<&Value>,
) -> Result<Vec<u8>, CardError> {
    let mut card: Value =
        serde_json::from_slice(body).map_err(|e| CardError::NotJson(e.to_string()))?;
    rewrite_value(&mut card, bindings, security)?;
    Ok(card.to_string().into_bytes())
}

/// Rewrites the interfaces of one list (`key` names an entry's binding) in place, removing
/// those the gateway does not serve.
fn rewrite_list(items: &mut Vec<Value>, key: &str, bindings: &Bindings) {
    items.retain_mut(|item| {
        let binding = item
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("JSONRPC")
            .to_string();
        let Some(Value::String(u)) = item.get_mut("url") else {
            // No URL: nothing that could lead around the gateway.
            return true;
        };
        match bindings.map(&binding, u) {
            Some(new) => {
                *u = new;
                true
            }
            None => false,
        }
    });
}

/// Rewrites a parsed card in place: v1.0 `supportedInterfaces` (by `protocolBinding`), v0.3
/// `additionalInterfaces` (by `transport`) and the v0.3 main `url` (by `preferredTransport`,
/// JSON-RPC when absent). An interface the gateway does not serve is removed; a v0.3 main
/// interface so removed is replaced by the first additional interface left, or dropped.
pub fn rewrite_value(
    card: &mut Value,
    bindings: &Bindings,
    security: Option<&Value>,
) -> Result<(), CardError> {
    let obj = card.as_object_mut().ok_or(CardError::NotAnObject)?;
    if let Some(Value::Array(items)) = obj.get_mut("supportedInterfaces") {
        rewrite_list(items, "protocolBinding", bindings);
    }
    if let Some(Value::Array(items)) = obj.get_mut("additionalInterfaces") {
        rewrite_list(items, "transport", bindings);
    }
    let preferred = obj
        .get("preferredTransport")
        .and_then(Value::as_str)
        .unwrap_or("JSONRPC")
        .to_string();
    if let Some(Value::String(u)) = obj.get("url") {
        match bindings.map(&preferred, u) {
            Some(new) => {
                obj.insert("url".into(), Value::String(new));
            }
            None => {
                let promoted = match obj.get("additionalInterfaces") {
                    Some(Value::Array(items)) => items.iter().find_map(|i| {
                        Some((i.get("url")?.as_str()?, i.get("transport")?.as_str()?))
                    }),
                    _ => None,
                }
                .map(|(u, t)| (u.to_string(), t.to_string()));
                match promoted {
                    Some((u, t)) => {
                        obj.insert("url".into(), Value::String(u));
                        obj.insert("preferredTransport".into(), Value::String(t));
                    }
                    None => {
                        obj.remove("url");
                    }
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
                &Bindings::under("https://gw.example/agents/a"),
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
    fn each_binding_goes_to_its_gateway_address_or_is_removed() {
        let card = json!({
            "name": "a", "url": "10.0.0.5:50051", "preferredTransport": "GRPC",
            "additionalInterfaces": [
                {"url": "10.0.0.5:50051", "transport": "GRPC"},
                {"url": "http://10.0.0.5:9999/", "transport": "JSONRPC"},
                {"url": "http://10.0.0.5:9999/rest", "transport": "HTTP+JSON"},
            ],
            "supportedInterfaces": [
                {"url": "http://10.0.0.5:50051", "protocolBinding": "GRPC"},
                {"url": "http://10.0.0.5:9999/", "protocolBinding": "JSONRPC"},
                {"url": "http://10.0.0.5:9999/rest", "protocolBinding": "HTTP+JSON"},
                {"url": "kafka://10.0.0.5/x", "protocolBinding": "KAFKA"},
            ],
        });
        let rewritten = |b: &Bindings| -> Value {
            serde_json::from_slice(&rewrite(card.to_string().as_bytes(), b, None).unwrap()).unwrap()
        };
        // No gRPC address: gRPC interfaces go, the v0.3 main one becomes JSON-RPC.
        let out = rewritten(&Bindings::under("https://gw/a"));
        assert_eq!(
            out["supportedInterfaces"],
            json!([
                {"url": "https://gw/a/", "protocolBinding": "JSONRPC"},
                {"url": "https://gw/a/rest", "protocolBinding": "HTTP+JSON"},
            ])
        );
        assert_eq!(
            out["additionalInterfaces"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(out["url"], "https://gw/a/");
        assert_eq!(out["preferredTransport"], "JSONRPC");
        // With one: gRPC interfaces point at it; exact per-binding URLs win over rebasing.
        let out = rewritten(&Bindings {
            public: "https://gw/a",
            jsonrpc: Some("https://rpc.gw/a"),
            rest: None,
            grpc: Some("gw.example:8443"),
        });
        assert_eq!(out["url"], "gw.example:8443");
        assert_eq!(out["preferredTransport"], "GRPC");
        assert_eq!(out["supportedInterfaces"][0]["url"], "gw.example:8443");
        assert_eq!(out["supportedInterfaces"][1]["url"], "https://rpc.gw/a");
        assert_eq!(out["supportedInterfaces"][2]["url"], "https://gw/a/rest");
        assert_eq!(out["supportedInterfaces"].as_array().map(Vec::len), Some(3));
        assert_eq!(out["additionalInterfaces"][0]["url"], "gw.example:8443");
        // Nothing served at all: no URL is left that leads around the gateway.
        let only_grpc = json!({"url": "10.0.0.5:1", "preferredTransport": "GRPC",
            "supportedInterfaces": [{"url": "10.0.0.5:1", "protocolBinding": "GRPC"}]});
        let out: Value = serde_json::from_slice(
            &rewrite(
                only_grpc.to_string().as_bytes(),
                &Bindings::under("http://g"),
                None,
            )
            .unwrap(),
        )
        .unwrap();
        assert!(out.get("url").is_none());
        assert_eq!(out["supportedInterfaces"], json!([]));
    }

    #[test]
    fn malformed_cards_are_errors() {
        assert!(matches!(
            rewrite(b"{", &Bindings::under("http://g"), None),
            Err(CardError::NotJson(_))
        ));
        assert_eq!(
            rewrite(b"[1]", &Bindings::under("http://g"), None),
            Err(CardError::NotAnObject)
        );
        // Wrong types inside are left alone rather than failing.
        assert!(
            rewrite(
                br#"{"url": 5, "supportedInterfaces": "x"}"#,
                &Bindings::under("http://g"),
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
            let _ = rewrite(&bytes, &Bindings::under("http://gw"), None);
        }

        /// Arbitrary JSON cards never panic, and every string `url` ends up under the gateway.
        #[test]
        fn any_url_is_rebased(host in "[a-z0-9.:-]{1,20}", path in "(/[a-zA-Z0-9._~-]{0,8}){0,4}") {
            let card = json!({"url": format!("http://{host}{path}"),
                              "supportedInterfaces": [{"url": format!("https://{host}{path}")}]});
            let out: Value = serde_json::from_slice(
                &rewrite(card.to_string().as_bytes(), &Bindings::under("http://gw:1/p"), None).unwrap()).unwrap();
            for u in [&out["url"], &out["supportedInterfaces"][0]["url"]] {
                prop_assert!(u.as_str().unwrap().starts_with("http://gw:1/p/"), "{}", u);
            }
        }
    }
}
