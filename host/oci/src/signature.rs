//! Detached ed25519 signatures over a plugin's manifest digest, stored next to it in the
//! registry under the tag `sha256-<hex>.sig` (the naming cosign uses), as a one-layer artifact
//! whose layer is the 64-byte signature. A plugin configured with `verify = { public_key = ... }`
//! is loaded only if that signature verifies, checked before the component is compiled.
//!
//! Keys (`weir plugin keygen`): the private key is PKCS#8 DER, the public key the raw 32 bytes;
//! both files hold base64 text.

use base64::Engine;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.dev.weir.signature.v1+ed25519";
pub const SIGNATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.weir.signature.config.v1+json";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The tag a manifest's signature lives under.
pub fn tag_for(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replace(':', "-"))
}

/// A new key pair as (private key file text, public key file text).
pub fn generate() -> Result<(String, String), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "key generation failed")?;
    Ok((
        b64().encode(pkcs8.as_ref()) + "\n",
        b64().encode(pair.public_key().as_ref()) + "\n",
    ))
}

/// Signs `manifest_digest` (its text, e.g. `sha256:...`) with the private key file's text.
pub fn sign(private_key: &str, manifest_digest: &str) -> Result<Vec<u8>, String> {
    let der = b64()
        .decode(private_key.trim())
        .map_err(|_| "the private key is not base64 (made by `weir plugin keygen`)")?;
    let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| "not an ed25519 PKCS#8 private key")?;
    Ok(pair.sign(manifest_digest.as_bytes()).as_ref().to_vec())
}

/// Whether `signature` is the public key's signature of `manifest_digest`.
pub fn verify(public_key: &str, manifest_digest: &str, signature: &[u8]) -> Result<(), String> {
    let raw = b64()
        .decode(public_key.trim())
        .map_err(|_| "the public key is not base64 (made by `weir plugin keygen`)".to_string())?;
    if raw.len() != 32 {
        return Err("the public key is not a 32-byte ed25519 key".into());
    }
    UnparsedPublicKey::new(&ED25519, raw)
        .verify(manifest_digest.as_bytes(), signature)
        .map_err(|_| "the signature does not verify with the configured public key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_refuse_others() {
        let (private, public) = generate().expect("keys");
        let (_, other_public) = generate().expect("keys");
        let d = format!("sha256:{}", "ab".repeat(32));
        let sig = sign(&private, &d).expect("sign");
        assert_eq!(verify(&public, &d, &sig), Ok(()));
        assert!(verify(&other_public, &d, &sig).is_err());
        assert!(verify(&public, &format!("sha256:{}", "cd".repeat(32)), &sig).is_err());
        assert!(verify("not base64!", &d, &sig).is_err());
        assert_eq!(tag_for(&d), format!("sha256-{}.sig", "ab".repeat(32)));
    }
}
