//! The canonical request target: the one spelling of a path and host that routing, every
//! plugin and the upstream see, so that what is decided is what is served.
//!
//! Backends disagree about `%61`, `%2e%2e`, `//`, `\` and `;`; a proxy that matched the raw
//! spelling while the backend normalised it could be walked around (`/%61dmin` past a rule on
//! `/admin`). So the path is rewritten once, before routing (RFC 3986 §6.2.2):
//!
//! - every escape of a character that may stand literally in a path segment (unreserved,
//!   sub-delimiters other than `;`, `:` and `@`) is decoded; every other character is an
//!   escape with upper-case hex digits (`%7e` → `~`, `"` → `%22`, `%3f` → `%3F`);
//! - dot segments are removed (§5.2.4), after decoding, so `%2e%2e` counts as `..`;
//! - `//` is read as `/` (`[paths] merge_slashes`);
//! - what backends read differently is refused by default, each with its own key in
//!   `[paths]`: `%2F` (`escaped_slash`), `\` and `%5C` (`backslash`), `;` and `%3B`
//!   (`semicolon`); always refused: `%00`, a malformed escape, bytes that are not UTF-8
//!   (overlong forms included).
//!
//! The query is left as it is. The host: lower case, without a trailing dot or the scheme's
//! default port.

use crate::config::{Backslash, EscapedSlash, PathsConfig, Semicolon};
use std::borrow::Cow;

/// Why a request target has no canonical form (answered with 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NotCanonical {
    #[error("the path must start with `/`")]
    NotOriginForm,
    #[error("malformed percent-escape in the path")]
    BadEscape,
    #[error("`%00` in the path")]
    Nul,
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
    #[error("encoded `/` (`%2F`) in the path ([paths] escaped_slash = \"reject\")")]
    EncodedSlash,
    #[error("`\\` in the path ([paths] backslash = \"reject\")")]
    Backslash,
    #[error("`;` in the path ([paths] semicolon = \"reject\")")]
    Semicolon,
    #[error("invalid host {0:?}")]
    Host(String),
}

/// The canonical form of `path` (without its query). Borrowed when already canonical, which
/// is the common case and costs one scan.
pub(crate) fn path<'a>(path: &'a str, rules: &PathsConfig) -> Result<Cow<'a, str>, NotCanonical> {
    if path == "*" {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(NotCanonical::NotOriginForm);
    }
    if is_plain(path) {
        return Ok(Cow::Borrowed(path));
    }
    let spelled = respell(path.as_bytes(), rules)?;
    let out = remove_dot_segments(&spelled, rules.merge_slashes);
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// No escapes, no characters to encode, `\` or `;`, no empty or dot segments.
fn is_plain(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().all(|&c| c == b'/' || (is_pchar(c) && c != b'%'))
        && !path.contains("//")
        && !path.split('/').any(|s| s == "." || s == "..")
}

/// Characters that stand for themselves in a canonical segment: unreserved, sub-delimiters
/// other than `;`, `:` and `@` (RFC 3986 `pchar` without escapes).
fn is_pchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

/// Decodes what may be literal, encodes the rest, applies the `[paths]` rules; checks that the
/// fully decoded bytes are UTF-8.
fn respell(raw: &[u8], rules: &PathsConfig) -> Result<String, NotCanonical> {
    let mut out = String::with_capacity(raw.len() + 8);
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let (byte, escaped) = if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or(NotCanonical::BadEscape)?;
            let v = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(NotCanonical::BadEscape)?;
            i += 3;
            (v, true)
        } else {
            i += 1;
            (raw[i - 1], false)
        };
        decoded.push(byte);
        match byte {
            0 => return Err(NotCanonical::Nul),
            b'/' if !escaped => out.push('/'),
            b'/' => match rules.escaped_slash {
                EscapedSlash::Reject => return Err(NotCanonical::EncodedSlash),
                EscapedSlash::Keep => out.push_str("%2F"),
                EscapedSlash::Decode => out.push('/'),
            },
            b'\\' => match rules.backslash {
                Backslash::Reject => return Err(NotCanonical::Backslash),
                Backslash::Slash => out.push('/'),
            },
            b';' => match (rules.semicolon, escaped) {
                (Semicolon::Reject, _) => return Err(NotCanonical::Semicolon),
                (Semicolon::Keep, false) => out.push(';'),
                // Data, not a parameter delimiter: it stays an escape.
                (Semicolon::Keep, true) => out.push_str("%3B"),
            },
            c if is_pchar(c) => out.push(c as char),
            c => {
                out.push('%');
                out.push(hex_digit(c >> 4));
                out.push(hex_digit(c & 0xf));
            }
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(NotCanonical::NotUtf8);
    }
    Ok(out)
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

/// RFC 3986 §5.2.4 on an absolute path whose escapes are already canonical (so `.` and `..`
/// are literal), optionally dropping empty segments; a trailing `/` (or a final `.`/`..`)
/// keeps the trailing slash.
fn remove_dot_segments(path: &str, merge_slashes: bool) -> String {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing = i == last,
            ".." => {
                kept.pop();
                trailing = i == last;
            }
            "" if i == last => trailing = true,
            "" if merge_slashes => {}
            s => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical form of a `Host`/`:authority`: lower case, no trailing dot on the name, no
/// port when it is the scheme's default. Borrowed when already canonical (the common case).
pub(crate) fn host<'a>(authority: &'a str, scheme: &str) -> Result<Cow<'a, str>, NotCanonical> {
    if is_plain_host(authority, scheme) {
        return Ok(Cow::Borrowed(authority));
    }
    respell_host(authority, scheme).map(Cow::Owned)
}

/// A lower-case DNS name or IPv4 address, without a trailing dot, with a port other than the
/// scheme's default, if any.
fn is_plain_host(authority: &str, scheme: &str) -> bool {
    let (name, port) = authority.split_once(':').unwrap_or((authority, ""));
    let default = if scheme == "https" { "443" } else { "80" };
    !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && (authority.len() == name.len()
            || (!port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok()
                && port != default
                && !port.starts_with('0')))
}

fn respell_host(authority: &str, scheme: &str) -> Result<String, NotCanonical> {
    let bad = || NotCanonical::Host(authority.chars().take(100).collect());
    let parsed: http::uri::Authority = authority.parse().map_err(|_| bad())?;
    if authority.contains('@') || parsed.host().is_empty() || parsed.host().contains("..") {
        return Err(bad());
    }
    let mut name = parsed.host().to_ascii_lowercase();
    if !name.starts_with('[') && name.ends_with('.') {
        name.pop();
        if name.is_empty() || name.ends_with('.') {
            return Err(bad());
        }
    }
    let default = if scheme == "https" { 443 } else { 80 };
    Ok(match parsed.port_u16() {
        Some(p) if p != default => format!("{name}:{p}"),
        _ => name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(p: &str) -> Result<String, NotCanonical> {
        path(p, &PathsConfig::default()).map(Cow::into_owned)
    }

    #[test]
    fn spellings_of_one_path_become_that_path() {
        for p in [
            "/admin/x",
            "/%61dmin/x",
            "/%61%64%6D%69%6E/x",
            "/%61%64%6d%69%6e/x",
            "/public/../admin/x",
            "/public/%2e%2e/admin/x",
            "/public/%2E%2E/admin/x",
            "/public/.%2e/admin/x",
            "//admin/x",
            "/./admin/x",
            "/admin/./x",
            "/admin//x",
            "/admin/y/../x",
            "/../admin/x",
            "/../../admin/x",
        ] {
            assert_eq!(strict(p).as_deref(), Ok("/admin/x"), "{p}");
        }
    }

    #[test]
    fn what_backends_read_differently_is_refused_by_default() {
        let cases: [(&str, NotCanonical); 10] = [
            ("/admin%2fx", NotCanonical::EncodedSlash),
            ("/open/..%2fadmin/x", NotCanonical::EncodedSlash),
            ("/admin%5Cx", NotCanonical::Backslash),
            ("/admin\\x", NotCanonical::Backslash),
            ("/admin;x/y", NotCanonical::Semicolon),
            ("/admin%3Bx", NotCanonical::Semicolon),
            ("/admin%00", NotCanonical::Nul),
            ("/admin%2", NotCanonical::BadEscape),
            ("/admin%zz", NotCanonical::BadEscape),
            ("/%C0%AEadmin", NotCanonical::NotUtf8),
        ];
        for (p, why) in cases {
            assert_eq!(strict(p), Err(why), "{p}");
        }
        assert_eq!(strict("admin"), Err(NotCanonical::NotOriginForm));
    }

    #[test]
    fn the_options_keep_or_decode_instead() {
        let rules = PathsConfig {
            escaped_slash: EscapedSlash::Keep,
            backslash: Backslash::Slash,
            semicolon: Semicolon::Keep,
            merge_slashes: false,
        };
        let p = |s| path(s, &rules).map(Cow::into_owned);
        assert_eq!(p("/a%2fb/..%2f/c").as_deref(), Ok("/a%2Fb/..%2F/c"));
        assert_eq!(p("/a\\..\\b").as_deref(), Ok("/b"));
        assert_eq!(p("/a;v=1/b%3b").as_deref(), Ok("/a;v=1/b%3B"));
        assert_eq!(p("//a//b").as_deref(), Ok("//a//b"));
        let decode = PathsConfig {
            escaped_slash: EscapedSlash::Decode,
            ..PathsConfig::default()
        };
        assert_eq!(
            path("/open/..%2fadmin/x", &decode).as_deref(),
            Ok("/admin/x")
        );
    }

    #[test]
    fn other_characters_get_one_upper_case_escape() {
        assert_eq!(strict("/a%7e%41b").as_deref(), Ok("/a~Ab"));
        assert_eq!(strict("/a%3fb%23c%25d").as_deref(), Ok("/a%3Fb%23c%25d"));
        assert_eq!(strict("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(strict("/a\"b|c").as_deref(), Ok("/a%22b%7Cc"));
        assert_eq!(
            strict("/tasks/t1:cancel").as_deref(),
            Ok("/tasks/t1:cancel")
        );
        assert_eq!(strict("/message%3Asend").as_deref(), Ok("/message:send"));
        // Double encoding is decoded once: `%2561` is the three characters `%61`, not `a`.
        assert_eq!(strict("/%2561dmin").as_deref(), Ok("/%2561dmin"));
    }

    #[test]
    fn trailing_slashes_and_the_root() {
        for (p, want) in [
            ("/", "/"),
            ("/a/", "/a/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("//", "/"),
            ("*", "*"),
        ] {
            assert_eq!(strict(p).as_deref(), Ok(want), "{p}");
        }
    }

    #[test]
    fn hosts() {
        for plain in ["a.example", "a.example:8080", "10.0.0.1:8443"] {
            assert!(
                matches!(host(plain, "http"), Ok(Cow::Borrowed(_))),
                "{plain}"
            );
        }
        assert_eq!(
            host("Admin.Example.COM.", "http").as_deref(),
            Ok("admin.example.com")
        );
        assert_eq!(host("a.example:80", "http").as_deref(), Ok("a.example"));
        assert_eq!(host("a.example:443", "https").as_deref(), Ok("a.example"));
        assert_eq!(
            host("a.example:8080", "http").as_deref(),
            Ok("a.example:8080")
        );
        assert_eq!(host("[::1]:8080", "http").as_deref(), Ok("[::1]:8080"));
        assert!(host("user@a.example", "http").is_err());
        assert!(host("a b", "http").is_err());
        assert!(host(".", "http").is_err());
        assert!(host("a..example", "http").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A path of plain segments (no dots, no escapes).
        fn plain_path() -> impl Strategy<Value = String> {
            prop::collection::vec("[a-zA-Z0-9_~:@!$&'()*+,=-]{1,6}", 1..5)
                .prop_map(|segs| format!("/{}", segs.join("/")))
        }

        /// Respells `path` as clients may: escapes of any character (either hex case),
        /// `./`, `x/../`, `//`.
        fn respelled(path: String) -> impl Strategy<Value = String> {
            let n = path.len();
            (
                prop::collection::vec(0u8..6, n),
                prop::collection::vec(any::<bool>(), n),
            )
                .prop_map(move |(how, upper)| {
                    let mut out = String::new();
                    for (i, c) in path.chars().enumerate() {
                        let esc = if upper[i] {
                            format!("%{:02X}", c as u32)
                        } else {
                            format!("%{:02x}", c as u32)
                        };
                        match (c, how[i]) {
                            ('/', 1) => out.push_str("/./"),
                            ('/', 2) => out.push_str("/zz/../"),
                            ('/', 3) => out.push_str("//"),
                            ('/', 4) => out.push_str("/%2e/"),
                            ('/', 5) => out.push_str("/q/%2E%2e/"),
                            ('/', _) => out.push('/'),
                            (c, 0 | 1) => out.push(c),
                            (_, _) => out.push_str(&esc),
                        }
                    }
                    out
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            /// Any respelling of a plain path is that path: a rule on the plain path decides.
            #[test]
            fn every_respelling_is_the_plain_path(
                (plain, spelled) in plain_path().prop_flat_map(|p| (Just(p.clone()), respelled(p)))
            ) {
                let got = strict(&spelled);
                prop_assert_eq!(got.as_deref(), Ok(plain.as_str()), "{}", spelled);
            }

            /// Any input: no panic; a canonical form is ASCII, absolute, without empty or dot
            /// segments, with upper-case escapes of characters that could not stand literally,
            /// and canonical again (so nothing downstream can read it differently).
            #[test]
            fn a_canonical_path_is_a_fixed_point(raw in "/[ -~\\u{80}-\\u{10FFFF}]{0,40}") {
                let Ok(once) = strict(&raw) else { return Ok(()) };
                prop_assert!(once.is_ascii() && once.starts_with('/'));
                prop_assert!(!once.contains("//"), "{}", once);
                prop_assert!(!once.split('/').any(|s| s == "." || s == ".."), "{}", once);
                let b = once.as_bytes();
                for (i, c) in b.iter().enumerate() {
                    if *c == b'%' {
                        let hex = &once[i + 1..i + 3];
                        prop_assert_eq!(hex, hex.to_ascii_uppercase());
                        let v = u8::from_str_radix(hex, 16).expect("hex");
                        prop_assert!(!is_pchar(v) && v != b'/', "{}", once);
                    }
                }
                prop_assert_eq!(path(&once, &PathsConfig::default()), Ok(Cow::Borrowed(once.as_str())));
            }

            /// Raw bytes, escapes included: never a panic.
            #[test]
            fn arbitrary_escapes_never_panic(raw in "/(%[0-9a-fA-F]{2}|[a-z./%;\\\\]){0,30}") {
                let _ = strict(&raw);
            }
        }
    }
}
