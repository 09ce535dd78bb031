//! Route matching: host, path (prefix at a segment boundary, or exact), method and headers, tried
//! in config order; and the route's path rewrite.

use crate::config::{MatchConfig, RewriteConfig};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

#[derive(Debug, Clone)]
enum HostMatch {
    Exact(String),
    /// `*.example.com`: any subdomain (stored as `.example.com`).
    Suffix(String),
}

#[derive(Debug, Clone)]
enum PathMatch {
    Prefix(String),
    Exact(String),
}

/// A compiled `match` table.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    host: Option<HostMatch>,
    path: Option<PathMatch>,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Matcher {
    /// Builds a matcher from an already validated `match` table.
    pub fn new(m: &MatchConfig) -> Matcher {
        let host = m.host.as_ref().map(|h| {
            let h = h.get_ref().to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(rest) => HostMatch::Suffix(rest.to_string()),
                None => HostMatch::Exact(h),
            }
        });
        let path = match (&m.path_prefix, &m.path) {
            (_, Some(p)) => Some(PathMatch::Exact(p.get_ref().clone())),
            (Some(p), None) => Some(PathMatch::Prefix(
                p.get_ref().trim_end_matches('/').to_string(),
            )),
            (None, None) => None,
        };
        let methods = m
            .method
            .as_ref()
            .map(|m| {
                m.to_vec()
                    .iter()
                    .filter_map(|s| Method::from_bytes(s.to_ascii_uppercase().as_bytes()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let headers = m
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
                let value = if v == "*" {
                    None
                } else {
                    Some(HeaderValue::from_str(v).ok()?)
                };
                Some((name, value))
            })
            .collect();
        Matcher {
            host,
            path,
            methods,
            headers,
        }
    }

    pub fn matches(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if let Some(hm) = &self.host {
            let Some(host) = host.map(strip_port) else {
                return false;
            };
            let host = host.to_ascii_lowercase();
            let ok = match hm {
                HostMatch::Exact(h) => host == *h,
                HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            };
            if !ok {
                return false;
            }
        }
        match &self.path {
            Some(PathMatch::Exact(p)) if path != p => return false,
            Some(PathMatch::Prefix(p)) if !prefix_matches(p, path) => return false,
            _ => {}
        }
        self.headers.iter().all(|(name, want)| match want {
            None => headers.contains_key(name),
            Some(v) => headers.get_all(name).iter().any(|have| have == v),
        })
    }

    /// The matched path prefix, for `rewrite.prefix`.
    fn prefix(&self) -> Option<&str> {
        match &self.path {
            Some(PathMatch::Prefix(p)) => Some(p),
            _ => None,
        }
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`. An empty prefix (from `/`)
/// matches everything.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// The host part of an authority, without port (IPv6 brackets kept).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// The client's requested host: `:authority` (HTTP/2, absolute-form) or the `Host` header.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority().map(|a| a.as_str()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

/// A compiled `rewrite` table.
#[derive(Debug, Clone)]
pub enum Rewrite {
    Prefix {
        matched: String,
        replacement: String,
    },
    Path(String),
}

impl Rewrite {
    pub fn new(r: &RewriteConfig, matcher: &Matcher) -> Option<Rewrite> {
        if let Some(p) = &r.path {
            return Some(Rewrite::Path(p.clone()));
        }
        let replacement = r.prefix.clone()?;
        Some(Rewrite::Prefix {
            matched: matcher.prefix()?.to_string(),
            replacement,
        })
    }

    /// The rewritten path and query for `uri`.
    pub fn apply(&self, uri: &Uri) -> String {
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let path = match self {
            Rewrite::Path(p) => p.clone(),
            Rewrite::Prefix {
                matched,
                replacement,
            } => {
                let rest = uri
                    .path()
                    .strip_prefix(matched.as_str())
                    .unwrap_or(uri.path());
                let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => format!("{replacement}{}", &rest[1..]),
                    (false, false) if !rest.is_empty() => format!("{replacement}/{rest}"),
                    _ => format!("{replacement}{rest}"),
                };
                if joined.is_empty() {
                    "/".to_string()
                } else {
                    joined
                }
            }
        };
        format!("{path}{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(toml_src: &str) -> Matcher {
        let m: MatchConfig = toml::from_str(toml_src).expect("valid match");
        Matcher::new(&m)
    }

    #[test]
    fn prefix_at_segment_boundary() {
        let m = matcher("path_prefix = \"/api\"");
        let h = HeaderMap::new();
        assert!(m.matches(&Method::GET, None, "/api", &h));
        assert!(m.matches(&Method::GET, None, "/api/x", &h));
        assert!(!m.matches(&Method::GET, None, "/apix", &h));
        let all = matcher("path_prefix = \"/\"");
        assert!(all.matches(&Method::GET, None, "/anything", &h));
    }

    #[test]
    fn host_method_headers() {
        let m = matcher(
            "host = \"*.example.com\"\nmethod = [\"GET\", \"POST\"]\nheaders = { x-env = \"prod\", x-any = \"*\" }",
        );
        let mut h = HeaderMap::new();
        h.insert("x-env", HeaderValue::from_static("prod"));
        h.insert("x-any", HeaderValue::from_static("whatever"));
        assert!(m.matches(&Method::POST, Some("a.example.com:8080"), "/", &h));
        assert!(!m.matches(&Method::PUT, Some("a.example.com"), "/", &h));
        assert!(!m.matches(&Method::GET, Some("example.com"), "/", &h));
        h.insert("x-env", HeaderValue::from_static("dev"));
        assert!(!m.matches(&Method::GET, Some("a.example.com"), "/", &h));
    }

    #[test]
    fn rewrites() {
        let m = matcher("path_prefix = \"/api\"");
        let r = Rewrite::Prefix {
            matched: m.prefix().expect("prefix").to_string(),
            replacement: "/v1".into(),
        };
        assert_eq!(
            r.apply(&"/api/items?x=1".parse().expect("uri")),
            "/v1/items?x=1"
        );
        assert_eq!(r.apply(&"/api".parse().expect("uri")), "/v1");
        let root = Rewrite::Prefix {
            matched: "/api".into(),
            replacement: "/".into(),
        };
        assert_eq!(root.apply(&"/api/items".parse().expect("uri")), "/items");
        assert_eq!(root.apply(&"/api".parse().expect("uri")), "/");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
