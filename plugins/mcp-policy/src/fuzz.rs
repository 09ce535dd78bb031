//! Property-based fuzzing of what the policy reads from a request (issue 18): arbitrary bodies
//! never panic, and a method or tool name spelled differently (case, look-alike characters, NUL,
//! whitespace, JSON escapes, duplicate keys) gets the decision of the name it decodes to, which
//! is the name `mcp-gateway` acts on (see its `names` properties), or no allow at all.

use super::*;
use proptest::prelude::*;

/// Alice may call `py_add` and `everything_echo` only; Bob every `py_` tool but `py_pay`, and
/// `py_pay` only with an amount up to 100.
fn config() -> Config {
    serde_json::from_value(json!({
        "rules": [
            {"principals": ["alice"], "allow": ["py_add", "everything_echo"]},
            {"principals": ["bob"], "allow": ["py_*"], "deny": ["py_pay"]},
            {"principals": ["carol"], "allow": ["py_pay"]},
        ],
        "arguments": [{"tool": "py_pay", "argument": "amount", "max": 100}],
    }))
    .expect("a config")
}

/// Characters that look like (or fold to) others.
const LOOKALIKES: &[(char, &[char])] = &[
    ('o', &['о', 'ο', '0', 'ｏ']),
    ('l', &['ӏ', 'I', '1', 'ℓ']),
    ('s', &['ѕ', 'ſ', 'ｓ']),
    ('a', &['а', 'ɑ', 'ａ']),
    ('c', &['с', 'ϲ', 'ｃ']),
    ('p', &['р', 'ρ']),
    ('y', &['у', 'ү']),
    ('d', &['ԁ', 'ⅾ']),
    ('/', &['∕', '／', '⁄', '\\']),
    ('_', &['‗', '＿', '-']),
];

/// One change to a name.
#[derive(Debug, Clone)]
enum Edit {
    /// Upper-case the character at this index.
    Upper(prop::sample::Index),
    /// Replace the character at this index by a look-alike.
    LookAlike(prop::sample::Index, prop::sample::Index),
    /// Insert this (NUL, whitespace, zero-width, BOM, soft hyphen, ...) at this index.
    Insert(prop::sample::Index, char),
    /// Put this at the start or the end.
    Surround(bool, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let odd = prop::sample::select(vec![
        '\0', ' ', '\t', '\n', '\r', '\u{a0}', '\u{200b}', '\u{200d}', '\u{feff}', '\u{ad}',
        '\u{2028}', '\u{1f}', '\u{7f}', '\u{301}',
    ]);
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Upper),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(i, j)| Edit::LookAlike(i, j)),
        (any::<prop::sample::Index>(), odd.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<bool>(), odd).prop_map(|(end, c)| Edit::Surround(end, c)),
    ]
}

fn apply(name: &str, edits: &[Edit]) -> String {
    let mut c: Vec<char> = name.chars().collect();
    for e in edits {
        match e {
            Edit::Upper(i) if !c.is_empty() => {
                let i = i.index(c.len());
                c.splice(i..=i, c[i].to_uppercase().collect::<Vec<_>>());
            }
            Edit::LookAlike(i, j) if !c.is_empty() => {
                let i = i.index(c.len());
                if let Some((_, alikes)) = LOOKALIKES.iter().find(|(k, _)| *k == c[i]) {
                    c[i] = alikes[j.index(alikes.len())];
                }
            }
            Edit::Insert(i, ch) => {
                let i = i.index(c.len() + 1);
                c.insert(i, *ch);
            }
            Edit::Surround(end, ch) => {
                if *end {
                    c.push(*ch);
                } else {
                    c.insert(0, *ch);
                }
            }
            _ => {}
        }
    }
    c.into_iter().collect()
}

/// How each character is written in the JSON string: as itself, as `\uXXXX` (surrogate pairs
/// beyond the BMP), `/` as `\/`, or a lone surrogate escape instead of it.
fn literal(name: &str, how: &[u8]) -> String {
    let mut out = String::from("\"");
    for (i, ch) in name.chars().enumerate() {
        match how.get(i).copied().unwrap_or(0) % 8 {
            1 | 2 => {
                let mut units = [0u16; 2];
                for u in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            3 if ch == '/' => out.push_str("\\/"),
            4 if ch == 'o' => out.push_str("\\ud800"),
            _ => match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            },
        }
    }
    out.push('"');
    out
}

/// A name, maybe edited, written as a JSON string literal, maybe escaped.
fn spelling(canonical: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(canonical.to_vec()),
        prop::collection::vec(edit(), 0..3),
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(name, edits, how)| literal(&apply(name, &edits), &how))
}

/// A `tools/call` body with these literals; `dup` repeats `method` or `name` with the canonical
/// spelling before or after (JSON with duplicate keys: serde_json keeps the last).
fn body(method: &str, name: &str, amount: u32, dup: u8) -> Vec<u8> {
    let (m, n) = match dup % 5 {
        1 => (
            format!(r#""method":"tools/call","method":{method}"#),
            format!(r#""name":{name}"#),
        ),
        2 => (
            format!(r#""method":{method},"method":"tools/call""#),
            format!(r#""name":{name}"#),
        ),
        3 => (
            format!(r#""method":{method}"#),
            format!(r#""name":"py_add","name":{name}"#),
        ),
        4 => (
            format!(r#""method":{method}"#),
            format!(r#""name":{name},"name":"py_add""#),
        ),
        _ => (format!(r#""method":{method}"#), format!(r#""name":{name}"#)),
    };
    format!(r#"{{"jsonrpc":"2.0","id":1,{m},"params":{{{n},"arguments":{{"amount":{amount}}}}}}}"#)
        .into_bytes()
}

/// What the gateway would act on: the method and tool name as JSON decodes them (the
/// reference: serde_json directly, not through the plugin).
fn decoded(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some((
        v["method"].as_str()?.to_string(),
        v["params"]["name"].as_str().unwrap_or_default().to_string(),
    ))
}

const PRINCIPALS: [&str; 4] = ["alice", "bob", "carol", "mallory"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    /// Arbitrary bytes, and arbitrary JSON in a request's fields, never panic.
    #[test]
    fn arbitrary_bodies_are_handled(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        method in prop_oneof![Just("tools/call".to_string()), ".{0,12}"],
        params in ".{0,40}",
        principal in prop::sample::select(PRINCIPALS.to_vec()),
    ) {
        let config = config();
        let structured = format!(r#"{{"jsonrpc":"2.0","id":1,"method":{},"params":{params}}}"#, json!(method));
        for b in [bytes.as_slice(), structured.as_bytes()] {
            if let Ask::Call { tool, arguments, .. } = ask(b) {
                let _ = verdict(&config, Some(principal), &tool, &arguments);
            }
        }
    }

    /// A `tools/call` whose method and tool name are respelled: if JSON decodes the method to
    /// `tools/call`, the policy decides on the decoded name, and that decision is the one the
    /// plain spelling of that name gets; otherwise the policy lets it by and the gateway, which
    /// dispatches on the exact decoded method, does not serve it as a call. An allow is only
    /// ever given to a name a rule allows as decoded.
    #[test]
    fn respelled_calls_get_the_decoded_names_decision_or_none(
        method in spelling(&["tools/call"]),
        name in spelling(&["py_pay", "py_add", "everything_echo"]),
        amount in prop_oneof![Just(5u32), Just(500u32)],
        dup in any::<u8>(),
        principal in prop::sample::select(PRINCIPALS.to_vec()),
    ) {
        let config = config();
        let body = body(&method, &name, amount, dup);
        let plain = |tool: &str| verdict(&config, Some(principal), tool, &json!({"amount": amount}));
        match (ask(&body), decoded(&body)) {
            (Ask::Call { tool, arguments, .. }, Some((m, n))) => {
                prop_assert_eq!(m.as_str(), "tools/call");
                prop_assert_eq!(&tool, &n, "the policy reads another name than JSON decodes");
                let got = verdict(&config, Some(principal), &tool, &arguments);
                prop_assert_eq!(got.is_ok(), plain(&n).is_ok());
                if got.is_ok() {
                    // Only names a rule allows, as they decode, are ever allowed.
                    let allowed = match principal {
                        "alice" => ["py_add", "everything_echo"].contains(&n.as_str()),
                        "bob" => n.starts_with("py_") && n != "py_pay",
                        "carol" => n == "py_pay" && amount <= 100,
                        _ => false,
                    };
                    prop_assert!(allowed, "{} may call {:?} ({})", principal, n, String::from_utf8_lossy(&body));
                }
            }
            (Ask::Call { .. }, None) => prop_assert!(false, "a call the reference cannot decode"),
            (_, Some((m, _))) => prop_assert_ne!(m.as_str(), "tools/call", "an unchecked call"),
            (_, None) => {}
        }
    }

    /// `*`/`?` globbing agrees with a reference matcher (dynamic programming over characters)
    /// on patterns and names made of look-alikes and wildcards.
    #[test]
    fn glob_matches_like_the_reference(
        pattern in "[ab*?а_]{0,8}",
        name in "[abа_Ａ\u{0}]{0,10}",
    ) {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        // m[i][j]: p[..i] matches n[..j].
        let mut m = vec![vec![false; n.len() + 1]; p.len() + 1];
        m[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=n.len() {
                m[i][j] = match p[i - 1] {
                    '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                    '?' => j > 0 && m[i - 1][j - 1],
                    c => j > 0 && n[j - 1] == c && m[i - 1][j - 1],
                };
            }
        }
        prop_assert_eq!(rules::glob(&pattern, &name), m[p.len()][n.len()]);
    }
}
