//! Compact JWS tokens: split, decode and verify. Nothing here trusts the token before its
//! signature has been checked with a key the operator configured, and `alg` must match the key
//! (no `none`, no HMAC with a public key). No JOSE extension is understood, so a token with a
//! `crit` header is refused (RFC 7515 §4.1.11).

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
    /// A `crit` header names an extension this implementation does not understand.
    Critical(String),
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
            TokenError::Critical(name) => {
                write!(f, "unsupported critical header parameter {name:?} (crit)")
            }
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

/// Header parameters registered by JWS (RFC 7515) and JWA (RFC 7518), which `crit` must not list.
const STANDARD_HEADERS: [&str; 20] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc",
    "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c",
];

/// RFC 7515 §4.1.11: `crit`, when present, is a non-empty array of extension names, none of them
/// standard; this implementation understands no extension, so any valid `crit` is refused too.
fn check_crit(header: &Value) -> Result<(), TokenError> {
    let Some(crit) = header.get("crit") else {
        return Ok(());
    };
    let names: Vec<&str> = crit
        .as_array()
        .filter(|a| !a.is_empty())
        .and_then(|a| a.iter().map(Value::as_str).collect())
        .ok_or(TokenError::Malformed(
            "crit must be a non-empty array of strings",
        ))?;
    if names.iter().any(|n| STANDARD_HEADERS.contains(n)) {
        return Err(TokenError::Malformed(
            "crit lists a header parameter defined by JWS or JWA",
        ));
    }
    Err(TokenError::Critical(names[0].to_string()))
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
    check_crit(&header)?;
    // A `kid` that is not a string would otherwise read as "no kid" and pick the only key.
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed("kid is not a string")),
    };
    Ok(Parsed {
        alg,
        kid,
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
    /// Seconds since the epoch, with their fraction (claims may have one).
    pub now: f64,
    pub leeway: i64,
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional), `None` when absent.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            TokenError::Claim(format!("the {name} claim is not a number (NumericDate)"))
        }),
    }
}

/// Checks `iss`, `aud`, `exp` and `nbf`, and that `iat` is a NumericDate if present.
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
    // In f64: fractions compare exactly enough, and huge values cannot overflow.
    let leeway = e.leeway as f64;
    match numeric_date(claims, "exp")? {
        Some(exp) if exp + leeway <= e.now => {
            return Err(TokenError::Claim("the token has expired".into()));
        }
        Some(_) => {}
        None => return Err(TokenError::Claim("no exp claim".into())),
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf - leeway > e.now
    {
        return Err(TokenError::Claim("the token is not valid yet (nbf)".into()));
    }
    numeric_date(claims, "iat")?;
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

    /// An HS256 token over `header` and `claims`, signed with `secret`.
    fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(input.as_bytes());
        let sig = mac.finalize().into_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn hmac_key() -> Key {
        Key {
            kid: None,
            material: KeyMaterial::Hmac(b"secret".to_vec()),
        }
    }

    /// Parses and verifies a correctly signed HS256 token with this header.
    fn accept_header(header: Value) -> Result<(), TokenError> {
        let token = hs256(&header, &serde_json::json!({"exp": 1}), b"secret");
        verify(&parse(&token)?, &hmac_key())
    }

    #[test]
    fn a_well_signed_token_without_crit_is_accepted() {
        assert_eq!(accept_header(serde_json::json!({"alg": "HS256"})), Ok(()));
    }

    #[test]
    fn crit_listing_an_unknown_extension_is_refused() {
        // RFC 7797's unencoded payload: signed as usual here, but its producer meant another
        // signing input, so a recipient that ignored `crit` would misread it.
        let header = serde_json::json!({"alg": "HS256", "b64": false, "crit": ["b64"]});
        let err = accept_header(header).expect_err("no extension is understood");
        assert_eq!(
            err.to_string(),
            "unsupported critical header parameter \"b64\" (crit)"
        );
    }

    #[test]
    fn crit_empty_or_not_an_array_of_strings_is_refused() {
        for crit in [
            serde_json::json!([]),
            serde_json::json!("exp"),
            serde_json::json!([1]),
            serde_json::json!(null),
        ] {
            assert_eq!(
                accept_header(serde_json::json!({"alg": "HS256", "crit": crit})),
                Err(TokenError::Malformed(
                    "crit must be a non-empty array of strings"
                )),
                "crit: {crit}"
            );
        }
    }

    #[test]
    fn crit_listing_a_standard_header_parameter_is_refused() {
        assert_eq!(
            accept_header(serde_json::json!({"alg": "HS256", "crit": ["alg"]})),
            Err(TokenError::Malformed(
                "crit lists a header parameter defined by JWS or JWA"
            ))
        );
    }

    /// Now, for the tests; `T` is the same instant as a float (claims may be fractional).
    const NOW: i32 = 1_700_000_000;
    const T: f64 = NOW as f64;

    fn check_exp(claims: Value, leeway: i64) -> Result<(), TokenError> {
        check_claims(
            &claims,
            &Expect {
                issuer: None,
                audiences: &[],
                now: NOW.into(),
                leeway,
            },
        )
    }

    #[test]
    fn fractional_exp_in_the_future_is_accepted() {
        assert_eq!(check_exp(serde_json::json!({"exp": T + 0.5}), 0), Ok(()));
        // Leeway applies to fractional times as to whole ones.
        assert_eq!(check_exp(serde_json::json!({"exp": T - 0.5}), 1), Ok(()));
    }

    #[test]
    fn fractional_exp_in_the_past_is_refused() {
        let expired = Err(TokenError::Claim("the token has expired".into()));
        assert_eq!(check_exp(serde_json::json!({"exp": T - 0.5}), 0), expired);
        assert_eq!(check_exp(serde_json::json!({"exp": T - 1.5}), 1), expired);
    }

    #[test]
    fn fractional_nbf_and_iat_are_accepted_and_nbf_compared() {
        let claims = |nbf: f64| serde_json::json!({"exp": T + 60.0, "nbf": nbf, "iat": T - 0.25});
        assert_eq!(check_exp(claims(T - 0.5), 0), Ok(()));
        assert_eq!(
            check_exp(claims(T + 0.5), 0),
            Err(TokenError::Claim("the token is not valid yet (nbf)".into()))
        );
    }

    #[test]
    fn non_numeric_times_are_reported_as_not_numbers() {
        for (claims, name) in [
            (serde_json::json!({"exp": "1700000060"}), "exp"),
            (serde_json::json!({"exp": null}), "exp"),
            (serde_json::json!({"exp": T + 60.0, "nbf": "soon"}), "nbf"),
            (serde_json::json!({"exp": T + 60.0, "iat": [1]}), "iat"),
        ] {
            assert_eq!(
                check_exp(claims, 0),
                Err(TokenError::Claim(format!(
                    "the {name} claim is not a number (NumericDate)"
                )))
            );
        }
        assert_eq!(
            check_exp(serde_json::json!({}), 0),
            Err(TokenError::Claim("no exp claim".into()))
        );
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
