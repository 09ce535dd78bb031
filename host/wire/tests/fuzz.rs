//! Randomised property tests of the JSON-RPC classifier and the SSE parser (issue 18): arbitrary
//! input never panics, methods come out exactly as JSON decodes them (no trimming or case
//! folding a policy could be fooled by), and SSE events do not depend on where chunks split.
//!
//! No dependency: a fixed-seed xorshift generator, so failures reproduce; each property runs a
//! bounded number of cases (2,000-3,000) as an ordinary test.

use serde_json::{Value, json};
use weir_wire::jsonrpc::{self, Invalid, Message};
use weir_wire::sse;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, max: usize, alphabet: &[u8]) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| {
                if alphabet.is_empty() {
                    self.next() as u8
                } else {
                    *self.pick(alphabet)
                }
            })
            .collect()
    }
}

/// Valid messages to start mutating from.
const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"py_add","arguments":{"a":1}}}"#,
    r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#,
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"m"}}"#,
    r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
];

/// A seed with a few bytes replaced, inserted or removed.
fn mutated(rng: &mut Rng) -> Vec<u8> {
    let mut b = rng.pick(SEEDS).as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let i = rng.below(b.len() + 1);
        let byte = *rng.pick(b"{}[]\":,\\u0-9aeflnrstu \x00\xff\xc3\xa9");
        match rng.below(3) {
            0 if i < b.len() => b[i] = byte,
            1 => b.insert(i, byte),
            _ if i < b.len() => {
                b.remove(i);
            }
            _ => {}
        }
    }
    b
}

/// The classification JSON-RPC 2.0 asks for, written out independently of the crate.
fn reference(body: &[u8]) -> Result<Message, Invalid> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Invalid::Parse(e.to_string()))?;
    let Value::Object(mut o) = v else {
        return Err(if v.is_array() {
            Invalid::Batch
        } else {
            Invalid::NotJsonRpc("")
        });
    };
    if o.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(Invalid::NotJsonRpc(""));
    }
    let id = o.remove("id");
    if id
        .as_ref()
        .is_some_and(|i| !(i.is_string() || i.is_i64() || i.is_u64()))
    {
        return Err(Invalid::NotJsonRpc(""));
    }
    match (o.remove("method"), id) {
        (Some(Value::String(method)), id) => {
            let params = o.remove("params").unwrap_or(Value::Null);
            if !(params.is_object() || params.is_null()) {
                return Err(Invalid::NotJsonRpc(""));
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        (None, Some(id)) if o.contains_key("result") || o.contains_key("error") => {
            Ok(Message::Response { id, body: o })
        }
        _ => Err(Invalid::NotJsonRpc("")),
    }
}

/// Errors compared by kind only (the messages are the crate's).
fn same(a: &Result<Message, Invalid>, b: &Result<Message, Invalid>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(Invalid::Parse(_)), Err(Invalid::Parse(_))) => true,
        (Err(Invalid::Batch), Err(Invalid::Batch)) => true,
        (Err(Invalid::NotJsonRpc(_)), Err(Invalid::NotJsonRpc(_))) => true,
        _ => false,
    }
}

#[test]
fn arbitrary_bodies_classify_as_the_reference_does() {
    let mut rng = Rng::new(0x5eed_0001);
    for case in 0..3000 {
        let body = match case % 3 {
            0 => rng.bytes(200, &[]),
            1 => rng.bytes(120, br#"{}[]":,0123456789.-eE truenlfasu\"#),
            _ => mutated(&mut rng),
        };
        let got = jsonrpc::parse(&body);
        if let Err(e) = &got {
            // Every refusal maps to a standard code and a message.
            assert!([jsonrpc::PARSE_ERROR, jsonrpc::INVALID_REQUEST].contains(&e.code()));
            assert!(!e.message().is_empty());
        }
        let want = reference(&body);
        assert!(
            same(&got, &want),
            "case {case}: {:?}: {got:?} != {want:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Respellings of `tools/call`: case, look-alikes, NUL, whitespace, zero-width characters,
/// written raw or as JSON escapes (`\u0074`, `\/`, surrogate pairs).
fn respelled(rng: &mut Rng) -> String {
    let mut chars: Vec<char> = "tools/call".chars().collect();
    for _ in 0..rng.below(3) {
        let i = rng.below(chars.len());
        match rng.below(4) {
            0 => chars[i] = chars[i].to_ascii_uppercase(),
            1 => chars[i] = *rng.pick(&['о', 'ѕ', 'ｔ', 'ӏ', '∕', 'с', 'а']),
            2 => chars.insert(
                i,
                *rng.pick(&['\0', ' ', '\t', '\u{200b}', '\u{feff}', '\u{a0}', '\n']),
            ),
            _ => {}
        }
    }
    let mut lit = String::from("\"");
    for c in chars {
        match rng.below(4) {
            0 => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    lit.push_str(&format!("\\u{u:04X}"));
                }
            }
            1 if c == '/' => lit.push_str("\\/"),
            _ if c == '"' || c == '\\' => {
                lit.push('\\');
                lit.push(c);
            }
            _ => lit.push(c),
        }
    }
    lit.push('"');
    lit
}

#[test]
fn methods_come_out_exactly_as_json_decodes_them() {
    let mut rng = Rng::new(0x5eed_0002);
    let mut calls = 0;
    for case in 0..3000 {
        let lit = respelled(&mut rng);
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{case},"method":{lit},"params":{{"name":"x"}}}}"#);
        let decoded: Option<String> = serde_json::from_str(&lit).ok();
        match (jsonrpc::parse(body.as_bytes()), decoded) {
            (Ok(Message::Request { method, .. }), Some(d)) => {
                assert_eq!(method, d, "{lit}");
                calls += usize::from(method == "tools/call");
            }
            (Err(Invalid::Parse(_)), None) => {}
            (got, d) => panic!("{lit}: {got:?}, JSON decodes it to {d:?}"),
        }
    }
    // Some respellings only escape characters: those must decode to the plain method.
    assert!(calls > 100, "only {calls} escaped spellings of tools/call");
}

/// SSE bodies made of field names, separators, every line ending, BOMs, comments and
/// multi-byte characters (some cut in half).
fn sse_body(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"data",
        b"event",
        b"id",
        b"retry",
        b": ",
        b":",
        b" ",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\r\r",
        b"\xEF\xBB\xBF",
        b"{\"jsonrpc\":\"2.0\"}",
        b"42",
        b"\0",
        b"\xc3",
        b"\xa9",
        b"\xc3\xa9",
        b"x",
    ];
    let mut b = Vec::new();
    for _ in 0..rng.below(40) {
        b.extend_from_slice(rng.pick::<&[u8]>(PIECES));
    }
    if rng.below(4) == 0 {
        b.extend(rng.bytes(40, &[]));
    }
    b
}

#[test]
fn sse_events_do_not_depend_on_chunk_boundaries() {
    let mut rng = Rng::new(0x5eed_0003);
    let mut events = 0;
    for case in 0..3000 {
        let body = sse_body(&mut rng);
        let whole = sse::parse_all(&body);
        events += whole.len();
        let mut p = sse::Parser::default();
        let mut chunked = Vec::new();
        let mut rest = body.as_slice();
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(8));
            chunked.extend(p.push(&rest[..n]));
            rest = &rest[n..];
        }
        chunked.extend(p.finish());
        assert_eq!(
            whole,
            chunked,
            "case {case}: {:?}",
            String::from_utf8_lossy(&body)
        );
        for e in &whole {
            // The accessors never panic, and re-encoding an event parses back to it.
            let _ = (e.data(), e.event_type(), e.id(), e.retry());
            let again = sse::parse_all(&e.encode());
            let kept: Vec<&(String, String)> = e
                .fields
                .iter()
                .filter(|(n, v)| !n.contains([':', '\r', '\n']) && !v.contains(['\r', '\n']))
                .collect();
            if kept.len() == e.fields.len() && !e.fields[0].0.starts_with('\u{feff}') {
                assert_eq!(again, vec![e.clone()], "case {case}: {e:?}");
            }
        }
    }
    assert!(events > 3000, "only {events} events in 3000 bodies");
}
