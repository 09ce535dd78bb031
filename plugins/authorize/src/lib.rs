//! `authorize`: authorisation as configuration. A request goes on if any rule matches it, else
//! it is answered 403. A rule matches when every condition it has holds; each condition is a list
//! of globs (`*` any run, `?` one character), any of which may match:
//!
//! ```toml
//! chain = [{ plugin = "authorize", config = { rules = [
//!   { principals = ["alice", "spiffe://example.org/ns/prod/*"] },
//!   { context = { "tls.client.san.dns" = ["*.ops.example.org"] }, methods = ["GET"], paths = ["/status*"] },
//! ] } }]
//! ```
//!
//! Conditions: `principals` (the request's principal, from `api-key`, `jwt-auth` or a client
//! certificate), `context` (context attributes by name, e.g. `jwt.tenant` or
//! `tls.client.fingerprint`), `methods`, `paths` (the path without the query). A request
//! without a principal never matches `principals`.

#![forbid(unsafe_code)]

use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::{Decision, LocalResponse, Plugin, context, log, request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    principals: Option<Vec<String>>,
    #[serde(default)]
    context: BTreeMap<String, Vec<String>>,
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    rules: Vec<Rule>,
}

/// `*` and `?` globbing.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn any(list: &[String], value: &str) -> bool {
    list.iter().any(|p| glob(p, value))
}

struct Authorize(Config);

impl Rule {
    fn matches(&self, principal: Option<&str>, method: &str, path: &str) -> bool {
        if let Some(ps) = &self.principals
            && !principal.is_some_and(|p| any(ps, p))
        {
            return false;
        }
        if let Some(ms) = &self.methods
            && !ms.iter().any(|m| m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        if let Some(paths) = &self.paths
            && !any(paths, path)
        {
            return false;
        }
        self.context
            .iter()
            .all(|(key, globs)| context::get(key).is_some_and(|v| any(globs, &v)))
    }
}

impl Plugin for Authorize {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.rules.is_empty() {
            return Err("`rules` is empty: nothing would ever be allowed".into());
        }
        for (i, r) in config.rules.iter().enumerate() {
            if r.principals.is_none()
                && r.context.is_empty()
                && r.methods.is_none()
                && r.paths.is_none()
            {
                return Err(format!(
                    "rule {} has no condition (it would allow everything)",
                    i + 1
                ));
            }
        }
        Ok(Authorize(config))
    }

    fn on_request(&mut self) -> Decision {
        let principal = context::principal();
        let method = request::method();
        let path = request::path();
        let path = path.split('?').next().unwrap_or_default();
        if self
            .0
            .rules
            .iter()
            .any(|r| r.matches(principal.as_deref(), &method, path))
        {
            return Decision::Continue;
        }
        let who = principal.as_deref().unwrap_or("anonymous");
        log::info(&format!("authorize: refused {who} {method} {path}"));
        Decision::Respond(
            LocalResponse::new(403).text(format!("weir: {who} may not {method} {path}\n")),
        )
    }
}

weir_sdk::plugin!(Authorize);
