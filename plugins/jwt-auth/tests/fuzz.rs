//! Property-based fuzzing of the token and key-set parsers (issue 18): arbitrary input never
//! panics, and nothing verifies unless it was signed by a configured key with that key's
//! algorithm. Bounded case counts, so this runs with the ordinary `cargo test`.
//!
//! `accepts` below is `JwtAuth::authenticate` without the host calls: HS256 takes the operator's
//! secret, every other `alg` the JWKS key its `kid` names (or the only key).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_auth::jwks::{self, Key, KeyMaterial};
use jwt_auth::jwt::{self, Expect, TokenError};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// RSA-2048 test key (generated with `openssl genrsa 2048` for these tests only): N, hex.
const RSA_N: &[&str] = &[
    "c51c2975d29e85c713da7a28296f851c99d714b1830b13ec3a5efac0d72c703bcd9ac31660b2264fe342fe0600f40db7",
    "c0e76078c61348f6a86a4bdba0c0fa24263912349ebaa948d20c00d00179a99fb2e85e8d3428823b7d6f22b2b098d335",
    "d014cca6fc1ebd73c320c765103f8ff3640b4ad95876aef690a3eeb61484e2e709117f834346be7147e4b595edb31f32",
    "29ef75685aaeafd2b6319649cad4c4a54f887df20403a55333b7fc7088a170eb04c7b13faa15e7e72596bb07a2505492",
    "868f0a069b09af95a5769609fe905d87db947eb6ce783a79abb2b7be9eb2330ed0275f9cd60a7168c447781e6de493e7",
    "2bf1d671fe2d7df3847b3a2e8edb7d61",
];
/// RSA-2048 test key (generated with `openssl genrsa 2048` for these tests only): D, hex.
const RSA_D: &[&str] = &[
    "1cf574bfeb3840064e0be8ab92dee00b222cffcccea8677e6adafe732b89cb5975ed196165c676ab81039c278ca74e86",
    "a3303b33b3422d13940dbde4601b4a04da9ac2ea79318a6278fdab76e3e8987bae80c6376fa4cdf1688dd5e6b3dc5817",
    "8d6128ea159b7c910fe776740a2d947c194431747a3341a456fec6b8f88dc77a108bb46fcfadeb87a20a49fa7bd1004e",
    "47e6529bf932378e6e4cd451d5d15d4e2ab94560a9486dc53cf69291832fdf9d08f914c3bf8ca9363fc3f50553c1305e",
    "9d468dffaf0ab81d5afaff9a54e4a7372c76928e1f49d30ac4c58d1cf9ef5f3a759d0bf6581621e77064e4c0cccc9504",
    "30bce6669aa1f69c53f1c3ce8793bd73",
];
/// RSA-2048 test key (generated with `openssl genrsa 2048` for these tests only): P, hex.
const RSA_P: &[&str] = &[
    "feacc0eeaf864a5a2ce8103c1eced4c9e38e2741b49466a8eee313de044675858ce8e222a9e00508e477cbc3ce527b96",
    "ded0a276d15889eb3d8ad81cc3b4d767a6057794039895d88696464d6b94c9e4c387d7f8ce622c55e75849abf275f6fe",
    "e974d034d48182d67e100ebac813541d595d9234ad2b710a1a88b8ede3beeae7",
];
/// RSA-2048 test key (generated with `openssl genrsa 2048` for these tests only): Q, hex.
const RSA_Q: &[&str] = &[
    "c622ba426afffab3d9fec924d9d1d94baca23ede5273ddcfb0980577b2513bd8dd000a269f4067eb7a6bc43f67cf4a10",
    "f573e17f341c627e36a92f63b77f139e91dc1b3c348d2215d762bc424c19a8681e1ad9445a3182f6b813125164589971",
    "560bf904021b6e3b0162a049ab8cd805c2033a0e6a2f4f40f3d794009f23d477",
];
fn big(hex: &[&str]) -> rsa::BigUint {
    rsa::BigUint::parse_bytes(hex.concat().as_bytes(), 16).expect("hex constant")
}

const HS_SECRET: &[u8] = b"the operator's HS256 secret";
const ED_SEED: [u8; 32] = [7; 32];
const EC_SCALAR: [u8; 32] = [9; 32];

struct Signers {
    rsa: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    rsa_public: rsa::RsaPublicKey,
    ec: p256::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
}

fn signers() -> &'static Signers {
    static S: OnceLock<Signers> = OnceLock::new();
    S.get_or_init(|| {
        let private = rsa::RsaPrivateKey::from_components(
            big(RSA_N),
            rsa::BigUint::from(65537u32),
            big(RSA_D),
            vec![big(RSA_P), big(RSA_Q)],
        )
        .expect("a valid RSA key");
        Signers {
            rsa_public: private.to_public_key(),
            rsa: rsa::pkcs1v15::SigningKey::new(private),
            ec: p256::ecdsa::SigningKey::from_bytes(&EC_SCALAR.into()).expect("valid scalar"),
            ed: ed25519_dalek::SigningKey::from_bytes(&ED_SEED),
        }
    })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWKs of the three signers, as an identity provider would publish them.
fn jwks_entries() -> Vec<Value> {
    use rsa::traits::PublicKeyParts;
    let s = signers();
    let point = s.ec.verifying_key().to_encoded_point(false);
    vec![
        json!({"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
               "n": b64(s.rsa_public.n().to_bytes_be()), "e": b64(s.rsa_public.e().to_bytes_be())}),
        json!({"kty": "EC", "kid": "ec", "crv": "P-256", "alg": "ES256", "use": "sig",
               "x": b64(point.x().expect("uncompressed")), "y": b64(point.y().expect("uncompressed"))}),
        json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
               "x": b64(s.ed.verifying_key().to_bytes())}),
    ]
}

/// The configured keys: the JWKS above, parsed by the plugin's parser.
fn keys() -> &'static [Key] {
    static K: OnceLock<Vec<Key>> = OnceLock::new();
    K.get_or_init(|| {
        let doc = json!({"keys": jwks_entries()}).to_string();
        let (keys, skipped) = jwks::parse(doc.as_bytes()).expect("a JWKS");
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(keys.len(), 3);
        keys
    })
}

/// Whether the plugin would take `token` as authentic (signature only; claims apart).
fn accepts(token: &str) -> bool {
    let Ok(parsed) = jwt::parse(token) else {
        return false;
    };
    let hmac = Key {
        kid: None,
        material: KeyMaterial::Hmac(HS_SECRET.to_vec()),
    };
    let key = if parsed.alg == "HS256" {
        &hmac
    } else {
        match jwks::find(keys(), parsed.kid.as_deref()) {
            Some(k) => k,
            None => return false,
        }
    };
    jwt::verify(&parsed, key).is_ok()
}

#[derive(Debug, Clone, Copy)]
enum Alg {
    Rs256,
    Es256,
    EdDsa,
    Hs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
        }
    }
    fn kid(self) -> Option<&'static str> {
        match self {
            Alg::Rs256 => Some("rsa"),
            Alg::Es256 => Some("ec"),
            Alg::EdDsa => Some("ed"),
            Alg::Hs256 => None,
        }
    }
}

/// The configured key's signature over `input` for `alg`.
fn sign(alg: Alg, input: &str) -> Vec<u8> {
    let s = signers();
    match alg {
        Alg::Rs256 => {
            use rsa::signature::{SignatureEncoding, Signer};
            s.rsa.sign(input.as_bytes()).to_vec()
        }
        Alg::Es256 => {
            use p256::ecdsa::signature::Signer;
            let sig: p256::ecdsa::Signature = s.ec.sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        Alg::EdDsa => {
            use ed25519_dalek::Signer;
            s.ed.sign(input.as_bytes()).to_bytes().to_vec()
        }
        Alg::Hs256 => hmac(HS_SECRET, input),
    }
}

fn hmac(secret: &[u8], input: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn signed(alg: Alg, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    format!("{input}.{}", b64(sign(alg, &input)))
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop_oneof![
            Just(1e308),
            Just(-1e308),
            Just(f64::MIN_POSITIVE),
            Just(1_700_000_000.5)
        ]
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `alg` values: the supported ones, `none` spelled every way, near misses, anything.
fn alg_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "none",
            "None",
            "NONE",
            "nOnE",
            "HS256",
            "hs256",
            "RS256",
            "rs256",
            "ES256",
            "EdDSA",
            "eddsa",
            "Ed25519",
            "HS384",
            "HS512",
            "RS384",
            "RS512",
            "PS256",
            "ES384",
            "ES256K",
            "",
            " RS256",
            "RS256 ",
            "RS256\0",
            "ＲＳ256",
        ])
        .prop_map(Value::from),
        json_value(),
    ]
}

/// `kid` values: the configured ones, near misses, ill-typed, anything.
fn kid_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec!["rsa", "ec", "ed", "RSA", "rsa ", "rsa\0", ""])
            .prop_map(|k| Some(Value::from(k))),
        json_value().prop_map(Some),
    ]
}

/// Claims with the registered time, issuer and audience claims present, absent or ill-typed.
fn claims_value() -> impl Strategy<Value = Value> {
    let claim = || prop::option::of(json_value());
    (
        claim(),
        claim(),
        claim(),
        claim(),
        claim(),
        prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..3),
    )
        .prop_map(|(exp, nbf, iat, iss, aud, extra)| {
            let mut m: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (name, v) in [
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
                ("iss", iss),
                ("aud", aud),
            ] {
                if let Some(v) = v {
                    m.insert(name.into(), v);
                }
            }
            Value::Object(m)
        })
}

fn header_value() -> impl Strategy<Value = Value> {
    (
        alg_value(),
        kid_value(),
        prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..2),
    )
        .prop_map(|(alg, kid, extra)| {
            let mut m: serde_json::Map<String, Value> = extra.into_iter().collect();
            m.insert("alg".into(), alg);
            if let Some(kid) = kid {
                m.insert("kid".into(), kid);
            }
            Value::Object(m)
        })
}

/// Signatures an attacker can make without a configured private key.
#[derive(Debug, Clone)]
enum Forgery {
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
    /// HMAC keyed with public material: the RSA modulus, a JWK's JSON, the Ed25519 key.
    HmacWithPublic(usize),
    /// A configured key's genuine signature over another token.
    Replayed(Alg),
    /// A signature by a key of the right type that is not configured.
    OtherKey(Alg),
}

fn forgery() -> impl Strategy<Value = Forgery> {
    let alg = || prop::sample::select(vec![Alg::Rs256, Alg::Es256, Alg::EdDsa, Alg::Hs256]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Forgery::Bytes),
        (0..5usize).prop_map(Forgery::HmacWithPublic),
        alg().prop_map(Forgery::Replayed),
        prop::sample::select(vec![Alg::Es256, Alg::EdDsa, Alg::Hs256]).prop_map(Forgery::OtherKey),
    ]
}

/// Each configured key's genuine signature over another token's signing input.
fn replayed(alg: Alg) -> &'static [u8] {
    static R: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = R.get_or_init(|| {
        let input = format!("{}.{}", b64(r#"{"alg":"RS256"}"#), b64(r#"{"exp":1}"#));
        [Alg::Rs256, Alg::Es256, Alg::EdDsa, Alg::Hs256]
            .map(|a| sign(a, &input))
            .to_vec()
    });
    &all[alg as usize]
}

fn forge(f: &Forgery, input: &str) -> Vec<u8> {
    match f {
        Forgery::Bytes(b) => b.clone(),
        Forgery::HmacWithPublic(i) => {
            use rsa::traits::PublicKeyParts;
            let entries = jwks_entries();
            let secrets: [Vec<u8>; 5] = [
                signers().rsa_public.n().to_bytes_be(),
                entries[0].to_string().into_bytes(),
                entries[1].to_string().into_bytes(),
                signers().ed.verifying_key().to_bytes().to_vec(),
                Vec::new(),
            ];
            hmac(&secrets[*i], input)
        }
        Forgery::Replayed(alg) => replayed(*alg).to_vec(),
        Forgery::OtherKey(alg) => match alg {
            Alg::Es256 => {
                use p256::ecdsa::signature::Signer;
                let other = p256::ecdsa::SigningKey::from_bytes(&[3u8; 32].into()).expect("scalar");
                let sig: p256::ecdsa::Signature = other.sign(input.as_bytes());
                sig.to_bytes().to_vec()
            }
            Alg::EdDsa => {
                use ed25519_dalek::Signer;
                let other = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
                other.sign(input.as_bytes()).to_bytes().to_vec()
            }
            _ => hmac(b"not the operator's secret", input),
        },
    }
}

#[test]
fn the_fixture_keys_verify_their_own_tokens() {
    for alg in [Alg::Rs256, Alg::Es256, Alg::EdDsa, Alg::Hs256] {
        let mut header = json!({"alg": alg.name()});
        if let Some(kid) = alg.kid() {
            header["kid"] = json!(kid);
        }
        assert!(
            accepts(&signed(alg, &header, &json!({"exp": 1}))),
            "{alg:?}"
        );
    }
}

#[test]
fn a_non_string_kid_is_malformed_not_absent() {
    // With one configured key, a kid that reads as "none" would pick that key.
    let header = json!({"alg": "HS256", "kid": 7});
    let t = signed(Alg::Hs256, &header, &json!({"exp": 1}));
    assert!(matches!(jwt::parse(&t), Err(TokenError::Malformed(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    /// Any string at all: the parser does not panic and nothing verifies.
    #[test]
    fn arbitrary_strings_never_verify(s in prop_oneof![".{0,300}", "[A-Za-z0-9_=.-]{0,400}"]) {
        prop_assert!(!accepts(&s));
    }

    /// Three base64url segments of arbitrary bytes: no panic, nothing verifies.
    #[test]
    fn arbitrary_segments_never_verify(
        h in prop::collection::vec(any::<u8>(), 0..80),
        c in prop::collection::vec(any::<u8>(), 0..80),
        s in prop::collection::vec(any::<u8>(), 0..300),
        pad in 0..3usize,
    ) {
        let t = format!("{}.{}.{}{}", b64(h), b64(c), b64(s), "=".repeat(pad));
        prop_assert!(!accepts(&t));
    }
}

proptest! {
    // Every case verifies a signature (RSA and P-256 are slow unoptimised): 1000 cases.
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]

    /// Arbitrary JSON headers (alg `none` in every spelling, HS256 against public keys, unknown
    /// algorithms, ill-typed or unknown kid) and claims, with any signature an attacker can
    /// make: never verified.
    #[test]
    fn forged_tokens_never_verify(header in header_value(), claims in claims_value(), f in forgery()) {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let t = format!("{input}.{}", b64(forge(&f, &input)));
        prop_assert!(!accepts(&t), "accepted {header} {claims} {f:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The claim checks never panic and never pass a token whose `exp` is missing or not a
    /// number, whose `nbf`/`iat` is not a number, or whose `iss`/`aud` is not the expected one.
    #[test]
    fn claim_checks_refuse_missing_or_ill_typed_claims(
        claims in claims_value(),
        now in prop_oneof![any::<f64>(), Just(1_700_000_000.0)],
        leeway in prop_oneof![0..120i64, any::<i64>()],
    ) {
        let audiences = vec!["https://gw.example/mcp".to_string()];
        let e = Expect { issuer: Some("https://idp.example"), audiences: &audiences, now, leeway };
        let ok = jwt::check_claims(&claims, &e).is_ok();
        let number = |n: &str| claims.get(n).is_none_or(Value::is_number);
        let aud_ok = match &claims["aud"] {
            Value::String(a) => *a == audiences[0],
            Value::Array(a) => a.iter().any(|x| *x == audiences[0].as_str()),
            _ => false,
        };
        if ok {
            prop_assert!(claims["exp"].is_number(), "exp: {claims}");
            prop_assert!(number("nbf") && number("iat"), "nbf/iat: {claims}");
            prop_assert_eq!(claims["iss"].as_str(), Some("https://idp.example"));
            prop_assert!(aud_ok, "aud: {}", claims);
        }
    }

    /// A well-formed token for the right issuer and audience, whose exp/nbf are any JSON: taken
    /// only if exp is a number after now and nbf, if any, a number before now (leeway 0).
    #[test]
    fn claim_times_decide_exactly(exp in json_value(), nbf in prop::option::of(json_value())) {
        const NOW: f64 = 1_700_000_000.0;
        let mut claims = json!({"iss": "i", "aud": ["a", "b"], "exp": exp});
        if let Some(nbf) = &nbf {
            claims["nbf"] = nbf.clone();
        }
        let audiences = vec!["b".to_string()];
        let e = Expect { issuer: Some("i"), audiences: &audiences, now: NOW, leeway: 0 };
        let expected = exp.as_f64().is_some_and(|x| x > NOW)
            && nbf.as_ref().is_none_or(|n| n.as_f64().is_some_and(|x| x <= NOW));
        prop_assert_eq!(jwt::check_claims(&claims, &e).is_ok(), expected, "{}", claims);
    }
}

proptest! {
    // Up to three signature checks a case, most of them RSA or P-256 (slow unoptimised).
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    /// A token validly signed by a configured key verifies; the same token with any one byte
    /// changed (to anything that is still a string) never does.
    #[test]
    fn one_flipped_byte_breaks_any_signature(
        alg in prop::sample::select(vec![Alg::Rs256, Alg::Es256, Alg::EdDsa, Alg::Hs256]),
        claims in claims_value(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let mut header = json!({"alg": alg.name(), "typ": "JWT"});
        if let Some(kid) = alg.kid() {
            header["kid"] = json!(kid);
        }
        // RSA and P-256 signing are slow unoptimised: one fixed token each; the claims vary for
        // EdDSA and HS256.
        let good = match alg {
            Alg::Rs256 | Alg::Es256 => {
                static FIXED: OnceLock<[String; 2]> = OnceLock::new();
                let fixed = FIXED.get_or_init(|| {
                    [("RS256", "rsa", Alg::Rs256), ("ES256", "ec", Alg::Es256)].map(|(a, kid, alg)| {
                        signed(alg, &json!({"alg": a, "typ": "JWT", "kid": kid}), &json!({"exp": 1}))
                    })
                });
                fixed[alg as usize].clone()
            }
            _ => signed(alg, &header, &claims),
        };
        prop_assert!(accepts(&good));
        for (at, xor) in flips {
            let mut bytes = good.clone().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            if let Ok(bad) = String::from_utf8(bytes) {
                prop_assert!(!accepts(&bad), "byte {} ^ {:#04x} of {}", i, xor, good);
            }
        }
    }
}

/// The JWKs of the configured keys with one member changed to something the plugin must not
/// trust: an unknown or ill-typed `kty`, an `alg` other than the key's, a `use` other than
/// "sig", a `kid` that is not a string.
#[derive(Debug, Clone)]
enum Spoil {
    Kty(Value),
    Alg(Value),
    Use(Value),
    Kid(Value),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    let word = || {
        prop_oneof![
            prop::sample::select(vec![
                "oct", "rsa", "Rsa", "RSA ", "ec", "EC\0", "okp", "OKP2", "RSA-OAEP", "RS384",
                "PS256", "ES384", "HS256", "none", "enc", "SIG", "sig ", "", "Ed25519",
            ])
            .prop_map(Value::from),
            json_value(),
        ]
    };
    prop_oneof![
        word().prop_map(Spoil::Kty),
        word().prop_map(Spoil::Alg),
        word().prop_map(Spoil::Use),
        json_value()
            .prop_filter("not a string", |v| !v.is_string())
            .prop_map(Spoil::Kid),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Arbitrary bytes and arbitrary JSON as a JWKS: no panic, and whatever keys come out are of
    /// a supported kind.
    #[test]
    fn arbitrary_jwks_documents_are_handled(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        doc in json_value(),
        keys in prop::collection::vec(json_value(), 0..4),
    ) {
        let _ = jwks::parse(&bytes);
        let _ = jwks::parse(doc.to_string().as_bytes());
        let wrapped = json!({"keys": keys}).to_string();
        let (found, skipped) = jwks::parse(wrapped.as_bytes()).expect("a keys array");
        // Random JSON is never a valid public key.
        prop_assert!(found.is_empty());
        prop_assert!(skipped.len() <= keys.len());
    }

    /// A configured key with an unknown `kty`, another `alg`, a non-signing `use` or a non-string
    /// `kid` is skipped: the set is left with no key, so nothing that key signs can verify.
    #[test]
    fn keys_of_unknown_kind_alg_or_use_are_not_trusted(
        which in 0..3usize,
        how in spoil(),
    ) {
        let mut entries = jwks_entries();
        let right = [("RSA", "RS256"), ("EC", "ES256"), ("OKP", "EdDSA")][which];
        let jwk = &mut entries[which];
        match &how {
            Spoil::Kty(v) if *v != right.0 => jwk["kty"] = v.clone(),
            Spoil::Alg(v) if *v != right.1 => jwk["alg"] = v.clone(),
            Spoil::Use(v) if *v != "sig" => jwk["use"] = v.clone(),
            Spoil::Kid(v) => jwk["kid"] = v.clone(),
            _ => return Ok(()),
        }
        let spoiled = entries[which].clone();
        let doc = json!({"keys": [spoiled]}).to_string();
        let (found, _) = jwks::parse(doc.as_bytes()).expect("a keys array");
        prop_assert!(found.is_empty(), "trusted {} ({:?})", spoiled, how);
    }
}
