//! Namespacing: `<prefix><sep><tool>` for tools and prompts, `<prefix>+<uri>` for resources;
//! the prefix is the server's name unless configured (`""` for one unprefixed server).
//!
//! LLM providers reject tool names over 64 characters, so a longer public name is cut and ends
//! in a hash of the full one; the cut name is remembered in `kv` so calls map back.

use crate::config::Config;
use weir_sdk::kv;

/// The longest public tool or prompt name.
pub const MAX_NAME: usize = 64;

/// The public name of `tool` under `prefix`, and whether it had to be shortened. An empty
/// prefix (an unprefixed server) keeps the name as it is.
pub fn public(prefix: &str, sep: &str, tool: &str) -> (String, bool) {
    if prefix.is_empty() {
        return (tool.to_string(), false);
    }
    let full = format!("{prefix}{sep}{tool}");
    if full.len() <= MAX_NAME {
        return (full, false);
    }
    let suffix = format!("{sep}{:08x}", fnv1a(full.as_bytes()) as u32);
    let mut keep = MAX_NAME - suffix.len();
    while !full.is_char_boundary(keep) {
        keep -= 1;
    }
    (format!("{}{suffix}", &full[..keep]), true)
}

/// Remembers the original of a shortened name.
pub fn remember(public: &str, original: &str) {
    let _ = kv::set(&key(public), original.as_bytes(), None);
}

/// The server and original name behind a public name: the server whose prefix it starts with
/// (the longest such), else the unprefixed server, if there is one.
pub fn resolve(public: &str, config: &Config) -> Option<(String, String)> {
    let (server, rest, maybe_cut) = split(public, config)?;
    let original = if maybe_cut {
        kv::get(&key(public))
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or(rest)
    } else {
        rest
    };
    Some((server, original))
}

/// [`resolve`] without the lookup of shortened names: the server, the rest of the name, and
/// whether the name may be one [`public`] shortened (then `kv` has the original). A prefixed name
/// longer than [`MAX_NAME`] is no public name (those are shortened), so it names nothing: calls
/// must use the name `tools/list` gave, the one policies are written for.
pub fn split(public: &str, config: &Config) -> Option<(String, String, bool)> {
    let sep = config.separator.as_str();
    let prefixed = config
        .servers
        .keys()
        .map(|s| (s, config.prefix(s)))
        .filter(|(_, p)| {
            !p.is_empty()
                && public.len() > p.len() + sep.len()
                && public.starts_with(p)
                && public[p.len()..].starts_with(sep)
        })
        .max_by_key(|(_, p)| p.len());
    let Some((server, prefix)) = prefixed else {
        return config
            .unprefixed()
            .map(|s| (s.to_string(), public.to_string(), false));
    };
    if public.len() > MAX_NAME {
        return None;
    }
    // A shortened name is MAX_NAME bytes, or up to 3 fewer when the cut fell inside a character.
    let maybe_cut = public.len() + 3 >= MAX_NAME;
    let rest = &public[prefix.len() + sep.len()..];
    Some((server.clone(), rest.to_string(), maybe_cut))
}

/// `<prefix>+<uri>`, or the URI itself for an unprefixed server.
pub fn public_uri(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        uri.to_string()
    } else {
        format!("{prefix}+{uri}")
    }
}

/// The server and original URI behind a public resource URI: the server whose prefix is
/// before its first `+`, else the unprefixed server.
pub fn resolve_uri(public: &str, config: &Config) -> Option<(String, String)> {
    if let Some((prefix, uri)) = public.split_once('+')
        && let Some(server) = config
            .servers
            .keys()
            .find(|s| !prefix.is_empty() && config.prefix(s) == prefix)
    {
        return Some((server.clone(), uri.to_string()));
    }
    config
        .unprefixed()
        .map(|s| (s.to_string(), public.to_string()))
}

fn key(public: &str) -> String {
    format!("mcp-gateway:name:{public}")
}

/// FNV-1a, 64-bit: a stable hash with no dependency (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Servers `py`, `pyth` (prefix `pyth`), `ev` (prefix `everything`), and, when asked, `plain`
    /// unprefixed; `sep` between prefix and tool.
    fn config(sep: &str, unprefixed: bool) -> Config {
        let mut servers = json!({
            "py": {"upstream": "py"},
            "pyth": {"upstream": "pyth"},
            "ev": {"upstream": "ev", "prefix": "everything"},
        });
        if unprefixed {
            servers["plain"] = json!({"upstream": "plain", "prefix": ""});
        }
        serde_json::from_value(json!({"servers": servers, "separator": sep})).expect("a config")
    }

    /// Tool names and their respellings: separators, case, look-alikes (Cyrillic `а`,
    /// full-width, mathematical letters), NUL, whitespace, multi-byte characters at any cut.
    fn name(max: usize) -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-z_.-]{1,6}",
            prop::sample::select(vec![
                "py",
                "pyth",
                "everything",
                "_",
                "__",
                ".",
                "-",
                "PY",
                "Py",
                "ру",
                "ｐｙ",
                "𝐩𝐲",
                "\0",
                " ",
                "\t",
                "\u{a0}",
                "é",
                "€",
                "𝄞",
                "add",
                "pay",
            ])
            .prop_map(str::to_string),
        ];
        prop::collection::vec(piece, 0..max).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

        /// Whatever name a client sends, the tool the gateway calls is published under exactly
        /// that name (or, for a name that may be shortened, the one `kv` maps it back from):
        /// the name `mcp-policy` decided on is the tool that runs. No trimming, no case folding,
        /// and no over-long, unshortened alias of a shortened name.
        #[test]
        fn a_resolved_name_is_the_published_name(
            sep in prop::sample::select(vec!["_", "__", ".", "-"]),
            unprefixed in any::<bool>(),
            client in name(24),
        ) {
            let config = config(sep, unprefixed);
            if let Some((server, rest, maybe_cut)) = split(&client, &config) {
                let published = public(config.prefix(&server), sep, &rest);
                prop_assert!(
                    published == (client.clone(), false) || maybe_cut,
                    "{client:?} calls {rest:?} on {server}, published as {published:?}"
                );
                prop_assert!(client.len() <= MAX_NAME || config.prefix(&server).is_empty());
            }
        }

        /// Every name the gateway publishes resolves back to its server and tool: directly, or
        /// through `kv` for a shortened one (whatever its length once cut between characters).
        #[test]
        fn every_published_name_resolves_back(
            sep in prop::sample::select(vec!["_", "__", ".", "-"]),
            server in prop::sample::select(vec!["py", "pyth", "ev"]),
            tool in name(40),
        ) {
            let config = config(sep, false);
            let (published, cut) = public(config.prefix(server), sep, &tool);
            let resolved = split(&published, &config);
            prop_assume!(!tool.is_empty());
            let Some((s, rest, maybe_cut)) = resolved else {
                return Err(TestCaseError::fail(format!("{published:?} resolves to nothing")));
            };
            prop_assert_eq!(s, server);
            if cut {
                prop_assert!(maybe_cut, "shortened {:?} ({} bytes) is not looked up", published, published.len());
            } else {
                prop_assert_eq!(rest, tool);
            }
        }
    }

    #[test]
    fn long_names_are_cut_to_64_with_a_stable_hash() {
        assert_eq!(public("py", "_", "add"), ("py_add".to_string(), false));
        let tool = "t".repeat(80);
        let (a, cut) = public("srv", "_", &tool);
        assert!(cut);
        assert_eq!(a.len(), MAX_NAME);
        assert!(a.starts_with("srv_ttt"));
        assert_eq!(public("srv", "_", &tool).0, a, "stable");
        let (b, _) = public("srv", "_", &format!("{tool}x"));
        assert_ne!(a, b, "different tools, different names");
        // Multi-byte characters are never split.
        let (c, _) = public("srv", "_", &"é".repeat(40));
        assert!(c.len() <= MAX_NAME);
    }
}
