//! Header rules of a proxy: hop-by-hop fields (RFC 9110 §7.6.1) are not forwarded, upgrades keep
//! what they need, and `x-forwarded-*` tell the upstream who the client was: believed from a
//! trusted proxy, replaced for anyone else (a client could otherwise claim any address).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

/// Fields that apply to one connection only and never travel through a proxy.
/// `proxy-authorization` is the client's credential for this proxy: consumed here.
/// Names, not strings: removing by a string parses it into a name every time.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::PROXY_AUTHORIZATION,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// True for an HTTP/1.1 upgrade request (`Connection: upgrade` with an `Upgrade` field).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop fields and those named in `Connection`. For an upgrade, `Connection:
/// upgrade` and `Upgrade` are kept so the next hop sees the upgrade. `TE: trailers` is kept,
/// because gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most requests and responses carry none (a `Connection` field is one of them): one pass
    // over the few fields present instead of a lookup per name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade && let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// The client-supplied fields that say who the client was and how it connected.
const CLIENT_CLAIMS: [HeaderName; 6] = [
    header::FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `[forwarded] trusted_proxies`, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub(crate) fn new(config: &crate::config::ForwardedConfig) -> TrustedProxies {
        TrustedProxies(
            config
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::config::parse_net(p.get_ref()))
                .collect(),
        )
    }

    pub(crate) fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// A client's address as an `x-forwarded-for` entry, formatted once per connection.
pub fn client_address(client: SocketAddr) -> HeaderValue {
    let ip = client.ip().to_string();
    // An IP address is always a valid field value.
    HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets `x-forwarded-for`, `x-forwarded-proto` and `x-forwarded-host`. From a `trusted` proxy
/// the client (as [`client_address`] formatted it) is appended to the earlier hops and the
/// proxy's `Forwarded`, `X-Real-IP`, `-proto` and `-host` are kept; from anyone else every such
/// field is replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    scheme: &str,
    host: Option<&str>,
    trusted: bool,
) {
    if !trusted && headers.keys().any(|k| CLIENT_CLAIMS.contains(k)) {
        for name in &CLIENT_CLAIMS {
            headers.remove(name);
        }
    }
    let prev: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if prev.is_empty() {
        Ok(client.clone())
    } else {
        let ip = client.to_str().unwrap_or("unknown");
        HeaderValue::from_str(&format!("{}, {ip}", prev.join(", ")))
    };
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
        );
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(X_FORWARDED_HOST, v);
    }
}

/// Approximate size of a header block as sent in HTTP/1.1 (`name: value\r\n` each).
/// Header fields as (name, value) pairs in order, values decoded as UTF-8 with replacement
/// characters (what the WIT's `field` promises plugins).
pub fn to_fields(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

pub fn head_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn keeps_te_trailers_and_upgrade() {
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    fn claims() -> HeaderMap {
        map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("proxy-authorization", "Basic c2VjcmV0"),
        ])
    }

    #[test]
    fn a_trusted_proxys_claims_are_kept_and_appended_to() {
        let mut h = claims();
        let client: SocketAddr = "10.1.2.3:5000".parse().expect("addr");
        let trusted = TrustedProxies(vec!["10.0.0.0/8".parse().expect("net")]);
        assert!(trusted.trusts(client.ip()));
        let addr = client_address(client);
        set_forwarded(&mut h, &addr, "http", Some("api.example"), true);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn anyone_elses_claims_are_replaced_and_proxy_credentials_consumed() {
        let mut h = claims();
        let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert!(!TrustedProxies::default().trusts(client.ip()));
        strip_hop_by_hop(&mut h, false);
        let addr = client_address(client);
        set_forwarded(&mut h, &addr, "http", Some("api.example"), false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        for gone in ["forwarded", "x-real-ip", "proxy-authorization"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }
}
