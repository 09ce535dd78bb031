//! Credentials that must never pass: cloud and SaaS access keys by their documented prefixes,
//! PEM private-key blocks, `Bearer` tokens and JWTs (three base64url segments whose first decodes
//! to a JOSE header).

use super::Span;
use base64::Engine;

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// An access key's shape: `(prefix, charset check, minimum and maximum length of the rest)`.
type KeyShape = (&'static str, fn(u8) -> bool, usize, usize);

/// Access keys by prefix.
const KEYS: &[KeyShape] = &[
    // AWS access key ids (long-term, temporary).
    ("AKIA", upper_digit, 16, 16),
    ("ASIA", upper_digit, 16, 16),
    // Google API keys.
    ("AIza", token_char, 35, 35),
    // GitHub tokens (personal, OAuth, user-to-server, server-to-server, refresh).
    ("ghp_", alnum, 36, 36),
    ("gho_", alnum, 36, 36),
    ("ghu_", alnum, 36, 36),
    ("ghs_", alnum, 36, 36),
    ("ghr_", alnum, 36, 36),
    ("github_pat_", token_char, 60, 255),
    // GitLab personal access tokens.
    ("glpat-", token_char, 20, 64),
    // Slack tokens.
    ("xoxb-", token_char, 10, 255),
    ("xoxp-", token_char, 10, 255),
    ("xoxa-", token_char, 10, 255),
    // Stripe live secret and restricted keys.
    ("sk_live_", alnum, 16, 255),
    ("rk_live_", alnum, 16, 255),
    // OpenAI and Anthropic API keys.
    ("sk-ant-", token_char, 32, 255),
    ("sk-proj-", token_char, 32, 255),
    ("sk-", alnum, 32, 64),
];

fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Access keys of the services in [`KEYS`].
pub fn cloud_key(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let mut i = 0;
    'next: while i < t.len() {
        // Every prefix starts with one of these: most positions are ruled out by one compare.
        let first = matches!(t[i], b'A' | b'g' | b'x' | b's' | b'r');
        if !first || (i > 0 && token_char(t[i - 1])) {
            i += 1;
            continue;
        }
        for (prefix, ok, min, max) in KEYS {
            if t[i..].starts_with(prefix.as_bytes()) {
                let s = i + prefix.len();
                let mut e = s;
                while e < t.len() && ok(t[e]) && e - s < *max {
                    e += 1;
                }
                let whole = e == t.len() || !token_char(t[e]);
                if e - s >= *min && whole {
                    out.push(Span { start: i, end: e });
                    i = e;
                    continue 'next;
                }
            }
        }
        i += 1;
    }
}

/// A PEM private-key block, from its `-----BEGIN … PRIVATE KEY-----` line to the matching end
/// line, or to the end of the text when the end is missing (a key cut short is still a key).
pub fn private_key(text: &str, out: &mut Vec<Span>) {
    let mut from = 0;
    while let Some(s) = text[from..].find("-----BEGIN ").map(|p| p + from) {
        let line_end = text[s..].find('\n').map_or(text.len(), |p| s + p);
        let header = &text[s..line_end];
        let is_key = header.contains("PRIVATE KEY-----");
        if !is_key {
            from = s + 1;
            continue;
        }
        let e = match text[s..].find("-----END ") {
            Some(p) => {
                let after = s + p + "-----END ".len();
                text[after..]
                    .find("-----")
                    .map_or(text.len(), |q| after + q + 5)
            }
            None => text.len(),
        };
        out.push(Span { start: s, end: e });
        from = e;
    }
}

/// Whether `text` ends inside a private-key block that has not ended yet: a stream must hold
/// the block back until it ends.
pub fn open_private_key(text: &str) -> Option<usize> {
    let s = text.rfind("-----BEGIN ")?;
    (!text[s..].contains("-----END ")).then_some(s)
}

/// `Bearer <token>` (case-insensitive), the token at least 16 characters of RFC 6750's
/// `b64token` alphabet.
pub fn bearer_token(text: &str, out: &mut Vec<Span>) {
    let lower = text.to_ascii_lowercase();
    let t = text.as_bytes();
    let mut from = 0;
    while let Some(s) = lower[from..].find("bearer").map(|p| p + from) {
        from = s + 6;
        if s > 0 && token_char(t[s - 1]) {
            continue;
        }
        let mut j = s + 6;
        let ws = t[j..]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if ws == 0 {
            continue;
        }
        j += ws;
        let b64 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        let start = j;
        while j < t.len() && b64(t[j]) {
            j += 1;
        }
        while j < t.len() && t[j] == b'=' {
            j += 1;
        }
        if j - start >= 16 {
            out.push(Span { start: s, end: j });
            from = j;
        }
    }
}

/// A compact JWS/JWT: `header.payload.signature`, base64url, the header a JSON object with
/// `alg`.
pub fn jwt(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut from = 0;
    while let Some(s) = text[from..].find("eyJ").map(|p| p + from) {
        from = s + 3;
        if s > 0 && b64(t[s - 1]) {
            continue;
        }
        let mut seg = [s; 4];
        let mut j = s;
        let mut ok = true;
        for k in 0..3 {
            let st = j;
            while j < t.len() && b64(t[j]) {
                j += 1;
            }
            if j - st < 2 {
                ok = false;
                break;
            }
            seg[k + 1] = j;
            if k < 2 {
                if t.get(j) != Some(&b'.') {
                    ok = false;
                    break;
                }
                j += 1;
            }
        }
        if !ok {
            continue;
        }
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&t[s..seg[1]]);
        let jose = header
            .ok()
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
            .is_some_and(|h| h.get("alg").is_some());
        if jose {
            out.push(Span { start: s, end: j });
            from = j;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::found;

    #[test]
    fn keys_by_prefix_and_length() {
        assert_eq!(
            found(cloud_key, "key=AKIAIOSFODNN7EXAMPLE;"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        let gh = format!("token ghp_{} end", "a1".repeat(18));
        assert_eq!(found(cloud_key, &gh).len(), 1);
        assert!(found(cloud_key, "AKIAIOSFODNN7EXAMPL short").is_empty());
        assert!(found(cloud_key, "xAKIAIOSFODNN7EXAMPLE").is_empty());
    }

    #[test]
    fn private_keys_bearer_tokens_and_jwts() {
        let pem =
            "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\ny";
        assert_eq!(found(private_key, pem), [&pem[2..pem.len() - 2]]);
        assert!(found(private_key, "-----BEGIN CERTIFICATE-----\nMII").is_empty());
        assert_eq!(
            open_private_key("a -----BEGIN EC PRIVATE KEY-----\nMH"),
            Some(2)
        );
        assert_eq!(
            found(bearer_token, "Authorization: Bearer abcdefghijklmnop123."),
            ["Bearer abcdefghijklmnop123."]
        );
        assert!(found(bearer_token, "the bearer of bad news").is_empty());
        let jwt_text = "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl!";
        assert_eq!(
            found(jwt, jwt_text),
            ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"]
        );
        // `{"x":1}` is JSON but no JOSE header.
        assert!(found(jwt, "eyJ4IjoxfQ.eyJzdWIiOiIxIn0.c2ln").is_empty());
    }
}
