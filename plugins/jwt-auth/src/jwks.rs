//! Verification keys from a JWKS document (RFC 7517): RSA (`n`, `e`), EC P-256 (`x`, `y`),
//! Ed25519 (`OKP`, `x`) and, for HS256, a shared secret from the operator's `secrets`. Keys of
//! other kinds are skipped (and logged), never trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

pub enum KeyMaterial {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

impl KeyMaterial {
    pub fn kind(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa(_) => "RSA",
            KeyMaterial::P256(_) => "P-256",
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::Hmac(_) => "HMAC",
        }
    }
}

pub struct Key {
    pub kid: Option<String>,
    pub material: KeyMaterial,
}

fn field(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk[name].as_str().ok_or_else(|| format!("no `{name}`"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("`{name}` is not base64url"))
}

fn key(jwk: &Value) -> Result<KeyMaterial, String> {
    match jwk["kty"].as_str() {
        Some("RSA") => {
            let n = rsa::BigUint::from_bytes_be(&field(jwk, "n")?);
            let e = rsa::BigUint::from_bytes_be(&field(jwk, "e")?);
            rsa::RsaPublicKey::new(n, e)
                .map(KeyMaterial::Rsa)
                .map_err(|e| format!("bad RSA key: {e}"))
        }
        Some("EC") if jwk["crv"] == "P-256" => {
            let mut sec1 = vec![4u8];
            sec1.extend(field(jwk, "x")?);
            sec1.extend(field(jwk, "y")?);
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map(KeyMaterial::P256)
                .map_err(|_| "bad P-256 point".into())
        }
        Some("OKP") if jwk["crv"] == "Ed25519" => {
            let x: [u8; 32] = field(jwk, "x")?
                .try_into()
                .map_err(|_| "Ed25519 `x` must be 32 bytes".to_string())?;
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map(KeyMaterial::Ed25519)
                .map_err(|_| "bad Ed25519 key".into())
        }
        other => Err(format!("unsupported key type {other:?}")),
    }
}

/// The one token `alg` each kind of key verifies (see `jwt::verify`).
fn alg_of(material: &KeyMaterial) -> &'static str {
    match material {
        KeyMaterial::Rsa(_) => "RS256",
        KeyMaterial::P256(_) => "ES256",
        KeyMaterial::Ed25519(_) => "EdDSA",
        KeyMaterial::Hmac(_) => "HS256",
    }
}

/// A key that names an `alg` (RFC 7517 §4.4) is for that algorithm only: one naming another (RS384,
/// PS256, RSA-OAEP, ...) or a non-string is skipped rather than used for the algorithm we verify.
/// `kid`, when present, must be a string.
fn bound_to(jwk: &Value, material: KeyMaterial) -> Result<KeyMaterial, String> {
    if let Some(alg) = jwk.get("alg")
        && alg != alg_of(&material)
    {
        return Err(format!(
            "`alg` {alg} is not {} (the only algorithm for a {} key)",
            alg_of(&material),
            material.kind()
        ));
    }
    if jwk.get("kid").is_some_and(|k| !k.is_string()) {
        return Err("`kid` is not a string".into());
    }
    Ok(material)
}

/// The usable keys of a JWKS document, and a note for each key skipped.
pub fn parse(doc: &[u8]) -> Result<(Vec<Key>, Vec<String>), String> {
    let v: Value = serde_json::from_slice(doc).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = v["keys"].as_array().ok_or("JWKS has no `keys` array")?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for jwk in keys {
        // `use` other than "sig" (or not a string): not a signing key.
        if jwk.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        match key(jwk).and_then(|material| bound_to(jwk, material)) {
            Ok(material) => out.push(Key {
                kid: jwk["kid"].as_str().map(str::to_owned),
                material,
            }),
            Err(why) => skipped.push(format!("key {}: {why}", jwk["kid"])),
        }
    }
    Ok((out, skipped))
}

/// The key for a token's `kid`: the one with that id, or the only key if the token has none.
pub fn find<'a>(keys: &'a [Key], kid: Option<&str>) -> Option<&'a Key> {
    match kid {
        Some(k) => keys.iter().find(|key| key.kid.as_deref() == Some(k)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_documents_are_errors_and_bad_keys_are_skipped() {
        assert!(parse(b"nope").is_err());
        assert!(parse(b"{}").is_err());
        let (keys, skipped) = parse(
            br#"{"keys":[{"kty":"RSA","kid":"a","n":"!!","e":"AQAB"},{"kty":"oct","kid":"b"}]}"#,
        )
        .unwrap();
        assert!(keys.is_empty());
        assert_eq!(skipped.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]
        #[test]
        fn any_document_is_handled(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&bytes);
        }
    }
}
