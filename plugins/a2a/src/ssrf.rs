//! Push-notification webhooks are URLs a client asks the agent to call: an SSRF surface. A URL
//! is refused unless it is `http(s)` and its host is not a loopback, private, link-local,
//! shared, multicast or unspecified address, a `localhost` name or a cloud metadata name. Host
//! names are not resolved (plugins cannot); `allow_hosts` lists names or addresses that pass
//! anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
}

fn numeric_label(label: &str) -> bool {
    !label.is_empty()
        && (label.bytes().all(|b| b.is_ascii_digit())
            || label
                .strip_prefix("0x")
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Why `url` may not be a webhook, or `Ok` if it may.
pub fn check(url: &str, allow_hosts: &[String]) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("webhook URL {url:?} must be http or https"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("webhook URL {url:?} has no host"));
    }
    if allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        return Ok(());
    }
    let internal = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => internal_v4(ip),
        Ok(IpAddr::V6(ip)) => internal_v6(ip),
        // A numeric last label is an address in a form resolvers accept but `parse` does not
        // ("2130706433", "0x7f.1", "0177.0.0.1"): refused rather than guessed at.
        Err(_) if numeric_label(host.rsplit('.').next().unwrap_or_default()) => true,
        Err(_) => {
            host == "localhost"
                || host.ends_with(".localhost")
                || host == "metadata.google.internal"
                || host.ends_with(".internal")
                || host == "metadata"
        }
    };
    if internal {
        Err(format!(
            "webhook URL {url:?} points at an internal address ({host})"
        ))
    } else {
        Ok(())
    }
}

/// Every string under a `url` key in `value` (webhook configs nest differently per version).
pub fn urls(value: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(value, &mut out);
    out
}

fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("url", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused() {
        for bad in [
            "http://127.0.0.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3:8080/x",
            "http://192.168.0.1/",
            "http://172.20.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://localhost:9000/",
            "http://api.localhost/",
            "http://metadata.google.internal/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0.0.0.0/",
            "http://user@127.0.0.1/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert!(check(bad, &[]).is_err(), "{bad}");
        }
        for good in [
            "https://hooks.example.com/a2a",
            "http://93.184.216.34:8443/x",
            "https://[2606:4700::1]/",
        ] {
            assert!(check(good, &[]).is_ok(), "{good}");
        }
        assert!(check("http://127.0.0.1/", &["127.0.0.1".into()]).is_ok());
    }
}
