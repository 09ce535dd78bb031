//! Compact JWS tokens: split, decode and verify. Nothing here trusts the token before its
//! signature has been checked with a key the operator configured, and `alg` must match the key
//! (no `none`, no HMAC with a public key).

use crate::jwks::{Key, KeyMaterial};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Why a token is refused. The message goes to the client in `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    UnsupportedAlg(String),
    UnknownKey(Option<String>),
    BadSignature,
    Claim(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::UnsupportedAlg(a) => write!(f, "unsupported algorithm {a:?}"),
            TokenError::UnknownKey(Some(kid)) => write!(f, "unknown key id {kid:?}"),
            TokenError::UnknownKey(None) => write!(f, "no key id and more than one key"),
            TokenError::BadSignature => write!(f, "bad signature"),
            TokenError::Claim(why) => write!(f, "{why}"),
        }
    }
}

/// A token split and decoded, not yet verified.
pub struct Parsed {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(what))
}

/// Splits and decodes `token` (header and claims must be JSON objects).
pub fn parse(token: &str) -> Result<Parsed, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let header: Value = serde_json::from_slice(&b64(h, "header is not base64url")?)
        .map_err(|_| TokenError::Malformed("header is not JSON"))?;
    let claims: Value = serde_json::from_slice(&b64(c, "claims are not base64url")?)
        .map_err(|_| TokenError::Malformed("claims are not JSON"))?;
    if !header.is_object() || !claims.is_object() {
        return Err(TokenError::Malformed(
            "header and claims must be JSON objects",
        ));
    }
    let alg = header["alg"]
        .as_str()
        .ok_or(TokenError::Malformed("no alg"))?
        .to_string();
    Ok(Parsed {
        alg,
        kid: header["kid"].as_str().map(str::to_owned),
        claims,
        signing_input: format!("{h}.{c}"),
        signature: b64(s, "signature is not base64url")?,
    })
}

/// Checks the signature with `key`, which must be of the token's algorithm.
pub fn verify(token: &Parsed, key: &Key) -> Result<(), TokenError> {
    let msg = token.signing_input.as_bytes();
    let ok = match (token.alg.as_str(), &key.material) {
        ("RS256", KeyMaterial::Rsa(pk)) => {
            use rsa::pkcs1v15::{Signature, VerifyingKey};
            use rsa::signature::Verifier;
            let sig = Signature::try_from(token.signature.as_slice())
                .map_err(|_| TokenError::BadSignature)?;
            VerifyingKey::<sha2::Sha256>::new(pk.clone())
                .verify(msg, &sig)
                .is_ok()
        }
        ("ES256", KeyMaterial::P256(vk)) => {
            use p256::ecdsa::signature::Verifier;
            let sig = p256::ecdsa::Signature::from_slice(&token.signature)
                .map_err(|_| TokenError::BadSignature)?;
            vk.verify(msg, &sig).is_ok()
        }
        ("EdDSA", KeyMaterial::Ed25519(vk)) => {
            let sig = ed25519_dalek::Signature::from_slice(&token.signature)
                .map_err(|_| TokenError::BadSignature)?;
            vk.verify_strict(msg, &sig).is_ok()
        }
        ("HS256", KeyMaterial::Hmac(secret)) => {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret)
                .map_err(|_| TokenError::BadSignature)?;
            mac.update(msg);
            mac.verify_slice(&token.signature).is_ok()
        }
        ("RS256" | "ES256" | "EdDSA" | "HS256", _) => {
            return Err(TokenError::UnsupportedAlg(format!(
                "{} with a {} key",
                token.alg,
                key.material.kind()
            )));
        }
        (other, _) => return Err(TokenError::UnsupportedAlg(other.to_string())),
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// What the claims must say.
pub struct Expect<'a> {
    pub issuer: Option<&'a str>,
    pub audiences: &'a [String],
    pub now: i64,
    pub leeway: i64,
}

/// Checks `iss`, `aud`, `exp` and `nbf`.
pub fn check_claims(claims: &Value, e: &Expect) -> Result<(), TokenError> {
    if let Some(iss) = e.issuer
        && claims["iss"].as_str() != Some(iss)
    {
        return Err(TokenError::Claim(format!(
            "wrong issuer {} (expected {iss:?})",
            claims["iss"]
        )));
    }
    if !e.audiences.is_empty() {
        let aud: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !aud.iter().any(|a| e.audiences.iter().any(|x| x == a)) {
            return Err(TokenError::Claim(format!(
                "wrong audience {} (expected one of {:?})",
                claims["aud"], e.audiences
            )));
        }
    }
    match claims["exp"].as_i64() {
        Some(exp) if exp + e.leeway <= e.now => {
            return Err(TokenError::Claim("the token has expired".into()));
        }
        Some(_) => {}
        None => return Err(TokenError::Claim("no exp claim".into())),
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && nbf - e.leeway > e.now
    {
        return Err(TokenError::Claim("the token is not valid yet (nbf)".into()));
    }
    Ok(())
}

/// The token's scopes: `scope` (space-separated) or `scp` (array or string).
pub fn scopes(claims: &Value) -> Vec<String> {
    let from = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut s = from(&claims["scope"]);
    s.extend(from(&claims["scp"]));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn malformed_tokens_are_refused_by_kind() {
        assert!(matches!(parse("abc"), Err(TokenError::Malformed(_))));
        assert!(matches!(parse("a.b.c.d"), Err(TokenError::Malformed(_))));
        assert!(matches!(
            parse("!!.e30.x"),
            Err(TokenError::Malformed("header is not base64url"))
        ));
        // {"alg":"none"} / {} / "": parses, but no key verifies `none`.
        let t = parse("eyJhbGciOiJub25lIn0.e30.").unwrap();
        assert_eq!(t.alg, "none");
        let key = Key {
            kid: None,
            material: KeyMaterial::Hmac(b"k".to_vec()),
        };
        assert_eq!(
            verify(&t, &key),
            Err(TokenError::UnsupportedAlg("none".into()))
        );
        // HS256 header presented against an RSA-less key set is refused by kind, not tried.
        assert!(parse("e30.e30.").is_err(), "no alg");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]
        /// Arbitrary input never panics the parser.
        #[test]
        fn any_string_is_handled(s in ".{0,300}") {
            let _ = parse(&s);
        }

        /// Three base64url parts of arbitrary bytes never panic either.
        #[test]
        fn any_parts_are_handled(h in proptest::collection::vec(any::<u8>(), 0..64),
                                 c in proptest::collection::vec(any::<u8>(), 0..64),
                                 s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let token = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(h), URL_SAFE_NO_PAD.encode(c), URL_SAFE_NO_PAD.encode(s));
            if let Ok(p) = parse(&token) {
                let key = Key { kid: None, material: KeyMaterial::Hmac(b"k".to_vec()) };
                let _ = verify(&p, &key);
            }
        }
    }
}
