//! The plugin's config: the MCP servers it federates and how names are namespaced.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The federated servers by short name; the name becomes the prefix of their tools.
    pub servers: BTreeMap<String, Server>,
    /// Between the server name and the tool or prompt name (`<server><separator><tool>`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Idle lifetime of a client session and of the upstream sessions made for it.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_s: u64,
    /// Per upstream call; `None` uses each upstream's `request_timeout`.
    pub timeout_ms: Option<u32>,
    /// The most the gateway reads of one upstream answer it has to parse.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: u32,
    /// The most a client may POST; larger bodies get 413 before any parsing.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u32,
    /// `serverInfo.name` the gateway presents to clients.
    #[serde(default = "default_name")]
    pub name: String,
    /// Origins a browser client may come from (DNS-rebinding protection); default: loopback.
    pub allowed_origins: Option<Vec<String>>,
    /// `Host` values the endpoint answers to; default: any.
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The named upstream (`[upstreams.NAME]`) serving this MCP server.
    pub upstream: String,
    /// What its tool and prompt names start with (`<prefix><separator><tool>`) and its resource
    /// URIs (`<prefix>+<uri>`); default: the server's name. `""` keeps its names as they are (at
    /// most one server may be unprefixed; names no other server's prefix claims are its).
    pub prefix: Option<String>,
    /// Its MCP endpoint.
    #[serde(default = "default_path")]
    pub path: String,
    /// A secret (granted through `secrets`) sent as this server's credential. The client's own
    /// credentials are never forwarded.
    pub secret: Option<String>,
    /// The header carrying the secret.
    #[serde(default = "default_secret_header")]
    pub secret_header: String,
    /// Put before the secret's value, e.g. `"Bearer "`.
    #[serde(default = "default_secret_prefix")]
    pub secret_prefix: String,
}

fn default_separator() -> String {
    "_".into()
}
fn default_session_ttl() -> u64 {
    3600
}
fn default_max_response() -> u32 {
    16 << 20
}
fn default_max_request() -> u32 {
    1 << 20
}
fn default_name() -> String {
    "weir".into()
}
fn default_path() -> String {
    "/mcp".into()
}
fn default_secret_header() -> String {
    "authorization".into()
}
fn default_secret_prefix() -> String {
    "Bearer ".into()
}

/// Characters allowed in tool names by the MCP guidance (SEP-986).
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl Config {
    /// The prefix of `server`'s public names (`""`: unprefixed).
    pub fn prefix<'a>(&'a self, server: &'a str) -> &'a str {
        match self.servers.get(server).and_then(|s| s.prefix.as_deref()) {
            Some(p) => p,
            None => server,
        }
    }

    /// The server whose names are not prefixed, if there is one.
    pub fn unprefixed(&self) -> Option<&str> {
        self.servers
            .keys()
            .find(|name| self.prefix(name).is_empty())
            .map(String::as_str)
    }

    pub fn protection(&self) -> crate::origin::Protection {
        crate::origin::Protection {
            allowed_origins: self.allowed_origins.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.protection().validate()?;
        if self.servers.is_empty() {
            return Err("`servers` is empty".into());
        }
        if self.separator.is_empty() || !self.separator.chars().all(name_char) {
            return Err(format!(
                "`separator` must be one or more of [A-Za-z0-9_.-], got {:?}",
                self.separator
            ));
        }
        for (name, s) in &self.servers {
            if name.is_empty() || !name.chars().all(name_char) || name.len() > 32 {
                return Err(format!(
                    "server name {name:?} must be 1–32 characters of [A-Za-z0-9_.-]"
                ));
            }
            if name.contains(&self.separator) {
                return Err(format!(
                    "server name {name:?} contains the separator {:?}; names could not be split back",
                    self.separator
                ));
            }
            if name.contains('+') {
                return Err(format!("server name {name:?} must not contain '+'"));
            }
            if s.upstream.is_empty() {
                return Err(format!("server {name:?}: `upstream` is empty"));
            }
            if !s.path.starts_with('/') {
                return Err(format!(
                    "server {name:?}: `path` must start with '/', got {:?}",
                    s.path
                ));
            }
        }
        self.validate_prefixes()?;
        if self.session_ttl_s == 0 {
            return Err("`session_ttl_s` must be greater than 0".into());
        }
        if self.timeout_ms == Some(0) {
            return Err("`timeout_ms` must be greater than 0".into());
        }
        Ok(())
    }

    fn validate_prefixes(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeMap::new();
        for name in self.servers.keys() {
            let prefix = self.prefix(name);
            if !prefix.is_empty()
                && (!prefix.chars().all(name_char)
                    || prefix.len() > 32
                    || prefix.contains(&self.separator))
            {
                return Err(format!(
                    "server {name:?}: `prefix` {prefix:?} must be 1–32 characters of [A-Za-z0-9_.-] \
                     without the separator {:?} (or \"\" for none)",
                    self.separator
                ));
            }
            if let Some(other) = seen.insert(prefix, name) {
                return Err(if prefix.is_empty() {
                    format!(
                        "servers {other:?} and {name:?} are both unprefixed; at most one may be"
                    )
                } else {
                    format!("servers {other:?} and {name:?} have the same prefix {prefix:?}")
                });
            }
        }
        Ok(())
    }
}
