//! `jwt-auth` end to end: tokens signed by a real JWT library (`tests/peers/jwt_issuer.py`,
//! PyJWT + cryptography) whose JWKS the gateway fetches through `outbound`, in front of an echo
//! backend that shows what the next plugin and the upstream saw.

use crate::support::{Backend, Gateway, Peer, free_port, get_with, plugins_toml, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The token issuer (`tests/peers/jwt_issuer.py`, a [`Peer`]); killed on drop.
struct Issuer(Peer);

impl Issuer {
    fn start() -> Issuer {
        Issuer(Peer::python("jwt_issuer.py", free_port(), &[]))
    }

    async fn call(&self, path: &str, body: Value) -> String {
        send(
            Request::post(format!("{}{path}", self.0.endpoint()))
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
        .text()
    }

    async fn token(&self, kid: &str, claims: Value) -> String {
        self.call("/token", json!({"kid": kid, "claims": claims}))
            .await
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

const ISSUER: &str = "https://idp.test";

#[tokio::test]
async fn tokens_are_validated_and_refusals_follow_the_oauth_spec() {
    let idp = Issuer::start();
    let backend = Backend::start("app").await;
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let jwt = format!(
        "{{ plugin = \"jwt-auth\", config = {{ issuer = \"{ISSUER}\", resource = \"{resource}\", \
         jwks_upstream = \"idp\", required_scopes = [\"mcp:tools\"], context_claims = [\"tenant\"], \
         authorization_servers = [\"{ISSUER}\"], scopes_supported = [\"mcp:tools\", \"mcp:admin\"] }} }}"
    );
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n[upstreams.idp]\nendpoints = [\"http://127.0.0.1:{}\"]\n{}\
         [[routes]]\nname = \"prm\"\nmatch = {{ path_prefix = \"/.well-known/oauth-protected-resource\" }}\nchain = [{jwt}]\n\
         [[routes]]\nname = \"mcp\"\nmatch = {{ path_prefix = \"/mcp\" }}\nupstream = \"app\"\nchain = [\n{jwt},\n\
         {{ plugin = \"headers\", config = {{ request = {{ set = {{ \"x-principal\" = \"${{principal}}\", \"x-tenant\" = \"${{ctx:jwt.tenant}}\" }} }} }} }},\n]\n",
        backend.endpoint(),
        idp.0.port,
        plugins_toml(&[
            (
                "jwt-auth",
                "instances = \"pooled\"\ncapabilities = { outbound = [\"idp\"], kv = \"jwt\", secrets = [] }"
            ),
            ("headers", ""),
        ]),
    );
    let gw = Gateway::start_raw(&config, format!("127.0.0.1:{port}").parse().expect("addr"));
    let url = gw.url("/mcp/tools");
    let metadata_url = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    let good = json!({"iss": ISSUER, "aud": resource, "sub": "alice", "tenant": "acme",
                      "scope": "mcp:tools other", "exp": now() + 300});
    let bearer = |t: &str| format!("Bearer {t}");

    // Valid tokens of every key type: the principal and a claim reach the next plugin; the
    // token itself does not reach the upstream.
    for kid in ["rsa-1", "ec-1", "ed-1"] {
        let token = idp.token(kid, good.clone()).await;
        let r = get_with(&url, &[("authorization", &bearer(&token))]).await;
        assert_eq!(r.status.as_u16(), 200, "{kid}: {}", r.text());
        assert_eq!(r.seen("x-principal").as_deref(), Some("alice"), "{kid}");
        assert_eq!(r.seen("x-tenant").as_deref(), Some("acme"));
        assert_eq!(r.seen("authorization"), None, "the token is not forwarded");
    }

    let refused = |r: &crate::support::Reply, status: u16, needle: &str| {
        assert_eq!(r.status.as_u16(), status, "{needle}: {}", r.text());
        let h = r.header("www-authenticate").expect("www-authenticate");
        assert!(
            h.starts_with(&format!("Bearer resource_metadata=\"{metadata_url}\"")),
            "{h}"
        );
        assert!(h.contains(needle), "{needle} in {h}");
    };
    // No token: the challenge that starts OAuth discovery, without an error code.
    let r = get_with(&url, &[]).await;
    refused(&r, 401, "scope=\"mcp:tools\"");
    assert!(
        !r.header("www-authenticate")
            .unwrap_or_default()
            .contains("error=")
    );

    let cases = [
        (json!({"exp": now() - 3600}), "the token has expired"),
        (json!({"iss": "https://evil.test"}), "wrong issuer"),
        (json!({"aud": "http://elsewhere/mcp"}), "wrong audience"),
        (json!({"nbf": now() + 3600}), "not valid yet"),
        (json!({"scope": "other"}), "insufficient_scope"),
    ];
    for (change, needle) in cases {
        let mut claims = good.clone();
        for (k, v) in change.as_object().expect("object") {
            claims[k] = v.clone();
        }
        let token = idp.token("rsa-1", claims).await;
        let r = get_with(&url, &[("authorization", &bearer(&token))]).await;
        let status = if needle == "insufficient_scope" {
            403
        } else {
            401
        };
        refused(&r, status, needle);
    }
    // A signature that does not match, an unsigned token, garbage, and an oversized token.
    let token = idp.token("rsa-1", good.clone()).await;
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = base64_url(
        &json!({"iss": ISSUER, "aud": resource, "sub": "root",
                                            "scope": "mcp:tools", "exp": now() + 300})
        .to_string(),
    );
    parts[1] = &forged_claims;
    let forged = parts.join(".");
    for (token, needle) in [
        (forged.as_str(), "bad signature"),
        (
            "eyJhbGciOiJub25lIiwia2lkIjoicnNhLTEifQ.eyJzdWIiOiJyb290In0.",
            "unsupported algorithm",
        ),
        ("not-a-jwt", "malformed token"),
        ("@@@.@@@.@@@", "malformed token"),
    ] {
        let r = get_with(&url, &[("authorization", &bearer(token))]).await;
        refused(&r, 401, needle);
    }
    let huge = "a".repeat(20_000);
    let r = get_with(&url, &[("authorization", &bearer(&huge))]).await;
    refused(&r, 401, "token too long");

    // Key rotation: a token from a key the JWKS does not have yet is refused; once the issuer
    // publishes it, the gateway refetches and accepts it.
    let rotated = idp.token("rsa-2", good.clone()).await;
    let r = get_with(&url, &[("authorization", &bearer(&rotated))]).await;
    refused(&r, 401, "unknown key id");
    idp.call("/rotate", json!({})).await;
    // Forced refetches are limited to one per 10 s: retry until one is allowed.
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    loop {
        let r = get_with(&url, &[("authorization", &bearer(&rotated))]).await;
        if r.status.as_u16() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the rotated key to be accepted: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // An MCP client following the 401 finds the protected-resource metadata.
    let challenge = get_with(&url, &[])
        .await
        .header("www-authenticate")
        .unwrap_or_default();
    let start =
        challenge.find("resource_metadata=\"").expect("metadata") + "resource_metadata=\"".len();
    let found = &challenge[start..start + challenge[start..].find('"').expect("end")];
    let prm = get_with(found, &[]).await;
    assert_eq!(prm.status.as_u16(), 200);
    let prm = prm.json();
    assert_eq!(prm["resource"], resource);
    assert_eq!(prm["authorization_servers"], json!([ISSUER]));
    assert_eq!(prm["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
    assert_eq!(
        backend.hits(),
        4,
        "only the accepted requests reached the upstream"
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
