//! DNS-rebinding protection, as the MCP transport specification asks of servers: a request whose
//! `Origin` is not allowed gets 403 before anything else happens, whatever its method; one whose
//! `Host` is not allowed (when hosts are configured) gets 421. A client that sends no `Origin`
//! (every non-browser client) is not affected.
//!
//! A pattern is an origin (`https://app.example.com`), an origin with any port
//! (`http://localhost:*`), or `*` (anything). Hosts are `host` or `host:port`, with `:*` too.

/// Origins allowed when the config names none: the loopback ones, on any port (a page served
/// by the same machine, such as a local inspector).
const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://[::1]:*",
    "https://[::1]:*",
];

/// The config's `allowed_origins` and `allowed_hosts`.
#[derive(Default, Clone)]
pub struct Protection {
    /// Origins a browser client may come from. Default: loopback origins only.
    pub allowed_origins: Option<Vec<String>>,
    /// `Host` values the endpoint answers to. Default: any (the gateway's own routes already
    /// match hosts).
    pub allowed_hosts: Option<Vec<String>>,
}

/// Why a request was refused: the status and the text.
pub struct Refused(pub u16, pub String);

impl Protection {
    pub fn validate(&self) -> Result<(), String> {
        let lists = [&self.allowed_origins, &self.allowed_hosts];
        for pattern in lists.into_iter().flatten().flatten() {
            if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
                return Err(format!(
                    "origin/host pattern {pattern:?} is empty or has spaces"
                ));
            }
        }
        Ok(())
    }

    /// Checks the request's `Origin` header and authority.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), Refused> {
        if let Some(origin) = origin {
            let allowed = match &self.allowed_origins {
                Some(list) => list.iter().any(|p| matches(p, origin)),
                None => LOOPBACK_ORIGINS.iter().any(|p| matches(p, origin)),
            };
            if !allowed {
                return Err(Refused(403, format!("origin {origin:?} is not allowed")));
            }
        }
        if let (Some(list), Some(host)) = (&self.allowed_hosts, host)
            && !list.iter().any(|p| matches(p, host))
        {
            return Err(Refused(421, format!("host {host:?} is not served here")));
        }
        Ok(())
    }
}

/// Whether `value` matches `pattern`, case-insensitively: equal, or equal up to a `:*` port.
fn matches(pattern: &str, value: &str) -> bool {
    let (pattern, value) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    if pattern == "*" || pattern == value {
        return true;
    }
    let Some(base) = pattern.strip_suffix(":*") else {
        return false;
    };
    if value == base {
        return true;
    }
    value
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Protection {
        Protection::default()
    }

    #[test]
    fn no_origin_passes_and_a_foreign_one_is_refused() {
        assert!(default().check(None, Some("evil.example.com")).is_ok());
        let Err(Refused(status, _)) =
            default().check(Some("http://evil.example.com"), Some("evil.example.com"))
        else {
            panic!("a foreign origin passed");
        };
        assert_eq!(status, 403);
    }

    #[test]
    fn loopback_origins_pass_by_default_on_any_port() {
        for origin in [
            "http://localhost:6274",
            "http://127.0.0.1",
            "https://[::1]:8443",
        ] {
            assert!(default().check(Some(origin), None).is_ok(), "{origin}");
        }
        for origin in ["http://localhost.evil.com", "http://127.0.0.1:80x", "null"] {
            assert!(default().check(Some(origin), None).is_err(), "{origin}");
        }
    }

    #[test]
    fn configured_origins_and_hosts_replace_the_defaults() {
        let p = Protection {
            allowed_origins: Some(vec!["https://app.example.com".into()]),
            allowed_hosts: Some(vec!["mcp.example.com".into(), "localhost:*".into()]),
        };
        assert!(p.check(Some("https://APP.example.com"), None).is_ok());
        assert!(p.check(Some("http://localhost:1"), None).is_err());
        assert!(p.check(None, Some("localhost:8080")).is_ok());
        assert!(matches!(
            p.check(None, Some("evil.example.com")),
            Err(Refused(421, _))
        ));
    }
}
