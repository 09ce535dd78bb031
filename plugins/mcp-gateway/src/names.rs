//! Namespacing: `<server><sep><tool>` for tools and prompts, `<server>+<uri>` for resources.
//!
//! LLM providers reject tool names over 64 characters, so a longer public name is cut and ends
//! in a hash of the full one; the cut name is remembered in `kv` so calls map back.

use weir_sdk::kv;

/// The longest public tool or prompt name.
pub const MAX_NAME: usize = 64;

/// The public name of `tool` on `server`, and whether it had to be shortened.
pub fn public(server: &str, sep: &str, tool: &str) -> (String, bool) {
    let full = format!("{server}{sep}{tool}");
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

/// The server and original name behind a public name, if it names one of `servers`.
pub fn resolve<'a>(
    public: &str,
    sep: &str,
    servers: impl Iterator<Item = &'a String>,
) -> Option<(String, String)> {
    let server = servers
        .filter(|s| {
            public.len() > s.len() + sep.len()
                && public.starts_with(s.as_str())
                && public[s.len()..].starts_with(sep)
        })
        .max_by_key(|s| s.len())?;
    let rest = &public[server.len() + sep.len()..];
    let original = if public.len() == MAX_NAME {
        kv::get(&key(public))
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_else(|| rest.to_string())
    } else {
        rest.to_string()
    };
    Some((server.clone(), original))
}

/// `<server>+<uri>`.
pub fn public_uri(server: &str, uri: &str) -> String {
    format!("{server}+{uri}")
}

/// The server and original URI behind a public resource URI.
pub fn resolve_uri<'a>(
    public: &str,
    mut servers: impl Iterator<Item = &'a String>,
) -> Option<(String, String)> {
    let (server, uri) = public.split_once('+')?;
    servers
        .any(|s| s == server)
        .then(|| (server.to_string(), uri.to_string()))
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
