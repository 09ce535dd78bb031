//! Whole-config checks that serde cannot express: names that refer to each other, addresses and
//! URLs that must parse, and combinations that make no sense. All errors are collected.

use super::{Config, OneOrMany};
use crate::diagnostic::Diagnostic;
use std::collections::HashSet;
use std::net::SocketAddr;
use toml::Spanned;

pub(super) fn validate(config: &Config) -> Vec<Diagnostic> {
    let mut c = Checker {
        config,
        errors: Vec::new(),
    };
    let listener_names = c.listeners();
    c.limits();
    c.admin();
    c.forwarded();
    c.upstreams();
    c.telemetry();
    c.plugins();
    c.secrets();
    c.kv();
    c.routes(&listener_names);
    c.errors
}

/// Collects the errors of one file, section by section.
struct Checker<'a> {
    config: &'a Config,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, span: std::ops::Range<usize>, subject: &str, msg: String) {
        self.errors.push(
            Diagnostic::new(msg)
                .about(subject.to_string())
                .at(self.config.location(span)),
        );
    }

    /// An error about the whole file (no span to point at).
    fn file_err(&mut self, msg: &str) {
        self.errors.push(Diagnostic::new(format!(
            "{}: {msg}",
            self.config.path.display()
        )));
    }

    /// `[[listeners]]`; returns their names for the routes' references.
    fn listeners(&mut self) -> HashSet<String> {
        let file = &self.config.file;
        if file.listeners.is_empty() {
            self.file_err(
                "no [[listeners]]: add one, e.g. `[[listeners]]\\naddress = \"127.0.0.1:8080\"`",
            );
        }
        let mut names = HashSet::new();
        for l in &file.listeners {
            let addr = l.get_ref().address.get_ref();
            let name = l.get_ref().name.clone().unwrap_or_else(|| addr.clone());
            let subject = format!("listener \"{name}\"");
            if addr.parse::<SocketAddr>().is_err() {
                self.err(
                    l.get_ref().address.span(),
                    &subject,
                    format!("invalid address {addr:?}: expected ip:port, e.g. \"127.0.0.1:8080\""),
                );
            }
            if !names.insert(name.clone()) {
                self.err(l.span(), &subject, "duplicate listener name".into());
            }
        }
        names
    }

    /// `[limits]` (and the admin and kv counts): zero would refuse everything or never wait,
    /// which is never what was meant. (Upper bounds are the units' own, at parse time.)
    fn limits(&mut self) {
        let file = &self.config.file;
        let l = &file.limits;
        let counts = [
            (
                "[limits] max_requests_per_worker",
                l.max_requests_per_worker,
            ),
            ("[limits] max_connections", l.max_connections),
            (
                "[admin] max_connections",
                file.admin
                    .as_ref()
                    .map_or(1, |a| a.get_ref().max_connections),
            ),
            ("[kv] breaker_failures", file.kv.breaker_failures as usize),
        ];
        for (key, n) in counts {
            if n == 0 {
                self.file_err(&format!("{key} must be at least 1"));
            }
        }
        let timeouts = [
            ("header_read_timeout", l.header_read_timeout),
            ("idle_timeout", l.idle_timeout),
            ("http2_keepalive_interval", l.http2_keepalive_interval),
            ("http2_keepalive_timeout", l.http2_keepalive_timeout),
            ("request_body_timeout", l.request_body_timeout),
        ];
        for (key, t) in timeouts {
            if t.0.is_zero() {
                self.file_err(&format!("[limits] {key} must be longer than 0"));
            }
        }
    }

    fn admin(&mut self) {
        if let Some(admin) = &self.config.file.admin {
            let a = admin.get_ref();
            let addr = a.address.get_ref();
            match addr.parse::<SocketAddr>() {
                Err(_) => self.err(
                    admin.span(),
                    "admin",
                    format!("invalid address {addr:?}: expected ip:port, e.g. \"127.0.0.1:9901\""),
                ),
                Ok(sa) if a.allow_unauthenticated && !sa.ip().is_loopback() => self.err(
                    admin.span(),
                    "admin",
                    format!(
                        "allow_unauthenticated is only allowed on a loopback address, not {addr}: set a `token`"
                    ),
                ),
                Ok(_) => {}
            }
            self.admin_token(a);
        }
    }

    /// `token_secret` names a `[secrets]` entry, and is not given with `token`.
    fn admin_token(&mut self, a: &super::AdminConfig) {
        let Some(name) = &a.token_secret else {
            return;
        };
        if a.token.is_some() {
            self.err(
                name.span(),
                "admin",
                "token and token_secret are both set: keep one".to_string(),
            );
        } else if !self.config.file.secrets.contains_key(name.get_ref()) {
            self.err(
                name.span(),
                "admin",
                format!(
                    "token_secret {:?} is not in [secrets]: add it there, e.g. {} = {{ file = \"...\" }}",
                    name.get_ref(),
                    name.get_ref()
                ),
            );
        }
    }

    /// `[forwarded] trusted_proxies`: each an address or a CIDR range.
    fn forwarded(&mut self) {
        for p in &self.config.file.forwarded.trusted_proxies {
            if super::parse_net(p.get_ref()).is_none() {
                self.err(
                    p.span(),
                    "forwarded",
                    format!(
                        "trusted_proxies: {:?} is not an address or CIDR range, e.g. \"10.0.0.0/8\"",
                        p.get_ref()
                    ),
                );
            }
        }
    }

    fn upstreams(&mut self) {
        for (name, up) in &self.config.file.upstreams {
            let subject = format!("upstream \"{name}\"");
            match (up.get_ref().endpoints.is_empty(), &up.get_ref().stdio) {
                (true, None) => self.err(
                    up.span(),
                    &subject,
                    "`endpoints` is empty (give `endpoints` or `stdio`)".into(),
                ),
                (false, Some(s)) => self.err(
                    s.span(),
                    &subject,
                    "give either `endpoints` or `stdio`, not both".into(),
                ),
                (true, Some(s)) => {
                    for msg in check_stdio(up.get_ref(), s.get_ref()) {
                        self.err(s.span(), &subject, msg);
                    }
                }
                _ => {}
            }
            for ep in &up.get_ref().endpoints {
                if let Err(msg) = check_endpoint(ep.get_ref().url()) {
                    self.err(ep.span(), &subject, msg);
                }
                let weight = ep.get_ref().weight();
                if !(1..=super::defaults::MAX_WEIGHT).contains(&weight) {
                    self.err(
                        ep.span(),
                        &subject,
                        format!(
                            "endpoint weight {weight} is out of range: use 1 to {}",
                            super::defaults::MAX_WEIGHT
                        ),
                    );
                }
            }
            self.resilience(up, &subject);
        }
    }

    /// An upstream's balancing, limits, retry, outlier and health-check settings.
    fn resilience(&mut self, up: &Spanned<super::UpstreamConfig>, subject: &str) {
        let u = up.get_ref();
        let hash = u.balance() == super::Balance::Hash;
        match (&u.hash_by, hash) {
            (None, true) => {
                let span = u.balance.as_ref().map_or(up.span(), Spanned::span);
                self.err(
                    span,
                    subject,
                    "balance = \"hash\" needs `hash_by` (\"header:NAME\", \"cookie:NAME\" or \"principal\")".into(),
                );
            }
            (Some(h), true) => {
                if let Err(msg) = super::HashBy::parse(h.get_ref()) {
                    self.err(h.span(), subject, msg);
                }
            }
            (Some(h), false) => self.err(
                h.span(),
                subject,
                "`hash_by` is only used with balance = \"hash\"".into(),
            ),
            (None, false) => {}
        }
        for limit in [&u.max_connections, &u.max_requests].into_iter().flatten() {
            if *limit.get_ref() == 0 {
                self.err(
                    limit.span(),
                    subject,
                    "a limit of 0 would refuse every request".into(),
                );
            }
        }
        if let (Some(p), None) = (&u.max_pending, &u.max_connections) {
            self.err(
                p.span(),
                subject,
                "`max_pending` needs `max_connections`".into(),
            );
        }
        for t in [u.connect_timeout, u.request_timeout, u.pool_idle_timeout]
            .into_iter()
            .flatten()
        {
            if t.0.is_zero() {
                self.err(up.span(), subject, "timeouts must be above 0".into());
            }
        }
        if let Some(r) = &u.retry {
            self.retry(r, subject, true);
        }
        if let Some(o) = &u.outlier {
            self.outlier(o, subject);
        }
        if let Some(h) = &u.health_check {
            self.health_check(h, subject);
        }
    }

    /// A `retry` table, of an upstream or (`upstream == false`) of a route.
    fn retry(&mut self, r: &Spanned<super::RetryConfig>, subject: &str, upstream: bool) {
        let rc = r.get_ref();
        let mut bad = Vec::new();
        if rc.attempts.is_some_and(|a| !(1..=10).contains(&a)) {
            bad.push("`attempts` must be 1 to 10".to_string());
        }
        for s in rc.statuses.iter().flatten() {
            if !(100..=599).contains(s) {
                bad.push(format!("`statuses`: {s} is not an HTTP status"));
            }
        }
        if rc.per_try_timeout.is_some_and(|t| t.0.is_zero()) {
            bad.push("`per_try_timeout` must be above 0".into());
        }
        let base = rc
            .backoff_base
            .map_or(super::defaults::BACKOFF_BASE, |m| m.0);
        let max = rc.backoff_max.map_or(super::defaults::BACKOFF_MAX, |m| m.0);
        if base > max {
            bad.push(format!(
                "`backoff_base` ({base:?}) is above `backoff_max` ({max:?})"
            ));
        }
        if max > std::time::Duration::from_secs(60) {
            bad.push("`backoff_max` above 60s would hold requests far too long".into());
        }
        if rc.budget_ratio.is_some_and(|b| !(0.0..=10.0).contains(&b)) {
            bad.push("`budget_ratio` must be between 0 and 10".into());
        }
        if !upstream && (rc.budget_ratio.is_some() || rc.budget_min_per_second.is_some()) {
            bad.push("the retry budget (`budget_*`) is set on the upstream, not the route".into());
        }
        for msg in bad {
            self.err(r.span(), subject, format!("retry: {msg}"));
        }
    }

    fn outlier(&mut self, o: &Spanned<super::OutlierConfig>, subject: &str) {
        let oc = o.get_ref();
        let mut bad = Vec::new();
        if oc.consecutive_failures == 0 {
            bad.push("`consecutive_failures` must be at least 1");
        }
        if oc.base_ejection_time.0.is_zero() {
            bad.push("`base_ejection_time` must be above 0");
        }
        if oc.max_ejection_time.0 < oc.base_ejection_time.0 {
            bad.push("`max_ejection_time` is below `base_ejection_time`");
        }
        if oc.max_ejected_percent > 100 {
            bad.push("`max_ejected_percent` must be 0 to 100");
        }
        for msg in bad {
            self.err(o.span(), subject, format!("outlier: {msg}"));
        }
    }

    fn health_check(&mut self, h: &Spanned<super::HealthCheckConfig>, subject: &str) {
        let hc = h.get_ref();
        let mut bad = Vec::new();
        if !hc.path.starts_with('/') || hc.path.parse::<http::uri::PathAndQuery>().is_err() {
            bad.push(format!(
                "`path` {:?} must be a path starting with '/'",
                hc.path
            ));
        }
        if hc.interval.0 < std::time::Duration::from_millis(10) {
            bad.push("`interval` must be at least 10ms".into());
        }
        if hc.timeout.0.is_zero() {
            bad.push("`timeout` must be above 0".into());
        }
        if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
            bad.push("thresholds must be at least 1".into());
        }
        for msg in bad {
            self.err(h.span(), subject, format!("health_check: {msg}"));
        }
    }

    fn telemetry(&mut self) {
        let Some(t) = &self.config.file.telemetry else {
            return;
        };
        let tc = t.get_ref();
        if !(0.0..=1.0).contains(&tc.sampling) {
            self.err(
                t.span(),
                "telemetry",
                format!("`sampling` must be between 0 and 1, got {}", tc.sampling),
            );
        }
        if let Err(msg) = check_endpoint(&tc.endpoint.replace("/v1/traces", "")) {
            self.err(t.span(), "telemetry", format!("`endpoint`: {msg}"));
        }
    }

    fn plugins(&mut self) {
        for (name, p) in &self.config.file.plugins {
            let subject = format!("plugin \"{name}\"");
            let limit = p.get_ref().memory_limit;
            if limit > super::ByteSize::gib(1) {
                self.err(
                    p.span(),
                    &subject,
                    format!("memory_limit {limit} is above the maximum of 1GiB"),
                );
            }
            self.grants(&subject, &p.get_ref().capabilities);
            self.filter_keys(&subject, p);
        }
    }

    /// The proxy-wasm keys belong to `kind = "proxy-wasm"` plugins only.
    fn filter_keys(&mut self, subject: &str, p: &Spanned<super::PluginConfig>) {
        let pc = p.get_ref();
        if pc.kind.as_ref().map(|k| *k.get_ref()) == Some(super::PluginKind::ProxyWasm) {
            return;
        }
        let spans = [
            ("body", pc.body.as_ref().map(Spanned::span)),
            ("body_limit", pc.body_limit.map(|_| p.span())),
            ("vm_config", pc.vm_config.as_ref().map(Spanned::span)),
            ("root_id", pc.root_id.as_ref().map(Spanned::span)),
        ];
        for (key, span) in spans {
            if let Some(span) = span {
                self.err(
                    span,
                    subject,
                    format!("`{key}` is for proxy-wasm filters: add kind = \"proxy-wasm\""),
                );
            }
        }
    }

    /// A plugin's `capabilities`: what they name must exist.
    fn grants(&mut self, subject: &str, grants: &super::CapabilityGrants) {
        let file = &self.config.file;
        if let Some(ns) = &grants.kv
            && !valid_namespace(ns.get_ref())
        {
            self.err(
                ns.span(),
                subject,
                format!(
                    "invalid kv namespace {:?}: use 1-64 characters from a-z, 0-9, '-', '_', '.'",
                    ns.get_ref()
                ),
            );
        }
        for up in grants.outbound.iter().flatten() {
            if !file.upstreams.contains_key(up.get_ref()) {
                self.err(
                    up.span(),
                    subject,
                    format!(
                        "outbound grant names unknown upstream \"{}\" (defined: {})",
                        up.get_ref(),
                        list(file.upstreams.keys())
                    ),
                );
            }
        }
        for secret in grants.secrets.iter().flatten() {
            if !file.secrets.contains_key(secret.get_ref()) {
                self.err(
                    secret.span(),
                    subject,
                    format!(
                        "secrets grant names unknown secret \"{}\" (defined in [secrets]: {})",
                        secret.get_ref(),
                        list(file.secrets.keys())
                    ),
                );
            }
        }
    }

    fn secrets(&mut self) {
        for (name, source) in &self.config.file.secrets {
            let s = source.get_ref();
            if s.env.is_some() == s.file.is_some() {
                self.err(
                    source.span(),
                    &format!("secret \"{name}\""),
                    "give exactly one of `env` or `file`".into(),
                );
            }
        }
    }

    fn kv(&mut self) {
        let kv = &self.config.file.kv;
        match (kv.backend, &kv.url) {
            (super::KvBackendKind::Redis, None) => self
                .file_err("[kv] backend = \"redis\" needs `url`, e.g. \"redis://127.0.0.1:6379\""),
            (super::KvBackendKind::Redis, Some(url)) if !url.get_ref().starts_with("redis://") => {
                self.err(
                    url.span(),
                    "kv",
                    format!(
                        "invalid url {:?}: expected redis://host:port[/db]",
                        url.get_ref()
                    ),
                );
            }
            (super::KvBackendKind::Memory, Some(url)) => self.err(
                url.span(),
                "kv",
                "`url` is only used with backend = \"redis\"".into(),
            ),
            _ => {}
        }
    }

    fn routes(&mut self, listener_names: &HashSet<String>) {
        let mut route_names = HashSet::new();
        for r in &self.config.file.routes {
            let route = r.get_ref();
            let name = route.name.get_ref();
            let subject = format!("route \"{name}\"");
            if name.is_empty() {
                self.err(route.name.span(), "route", "`name` is empty".into());
            } else if !route_names.insert(name.clone()) {
                self.err(route.name.span(), &subject, "duplicate route name".into());
            }
            self.route_references(r, &subject, listener_names);
            if let Some(retry) = &route.retry {
                self.retry(retry, &subject, false);
            }
            self.route_match(r, &subject);
            self.route_rewrite(r, &subject);
        }
    }

    /// What a route names (listeners, upstream, plugins) must exist.
    fn route_references(
        &mut self,
        r: &Spanned<super::RouteConfig>,
        subject: &str,
        listener_names: &HashSet<String>,
    ) {
        let file = &self.config.file;
        let route = r.get_ref();
        for l in route.listeners.iter().flatten() {
            if !listener_names.contains(l.get_ref()) {
                self.err(
                    l.span(),
                    subject,
                    format!("unknown listener \"{}\"", l.get_ref()),
                );
            }
        }
        if let Some(up) = &route.upstream
            && !file.upstreams.contains_key(up.get_ref())
        {
            self.err(
                up.span(),
                subject,
                format!(
                    "unknown upstream \"{}\" (defined: {})",
                    up.get_ref(),
                    list(file.upstreams.keys())
                ),
            );
        }
        if route.upstream.is_none() && route.chain.is_empty() {
            self.err(
                r.span(),
                subject,
                "no `upstream` and no `chain`: nothing could answer its requests".into(),
            );
        }
        for entry in &route.chain {
            let plugin = entry.get_ref().plugin.get_ref();
            if let Some(text) = &entry.get_ref().config_text {
                let kind = file
                    .plugins
                    .get(plugin)
                    .and_then(|p| p.get_ref().kind.as_ref());
                let why = if entry.get_ref().config.is_some() {
                    Some("`config_text` and `config` are alternatives: give one")
                } else if kind.map(|k| *k.get_ref()) != Some(super::PluginKind::ProxyWasm) {
                    Some("`config_text` is for plugins with kind = \"proxy-wasm\"")
                } else {
                    None
                };
                if let Some(why) = why {
                    self.err(text.span(), subject, why.to_string());
                }
            }
            if !file.plugins.contains_key(plugin) {
                self.err(
                    entry.get_ref().plugin.span(),
                    subject,
                    format!(
                        "unknown plugin \"{plugin}\" (defined: {})",
                        list(file.plugins.keys())
                    ),
                );
            }
        }
    }

    /// A route's `match` table.
    fn route_match(&mut self, r: &Spanned<super::RouteConfig>, subject: &str) {
        let m = &r.get_ref().matcher;
        for p in [&m.path_prefix, &m.path].into_iter().flatten() {
            if !p.get_ref().starts_with('/') {
                self.err(
                    p.span(),
                    subject,
                    format!("path {:?} must start with '/'", p.get_ref()),
                );
            }
        }
        if let (Some(_), Some(p)) = (&m.path_prefix, &m.path) {
            self.err(
                p.span(),
                subject,
                "`path` and `path_prefix` cannot both be set".into(),
            );
        }
        if let Some(h) = &m.host
            && (h.get_ref().is_empty() || h.get_ref().contains('/'))
        {
            self.err(h.span(), subject, format!("invalid host {:?}", h.get_ref()));
        }
        if let Some(methods) = &m.method {
            for method in methods_of(methods) {
                if http::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
                    self.err(r.span(), subject, format!("invalid method {method:?}"));
                }
            }
        }
        for (name, value) in &m.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err(
                    r.span(),
                    subject,
                    format!("invalid header name {name:?} in match.headers"),
                );
            }
            if http::HeaderValue::from_str(value).is_err() {
                self.err(
                    r.span(),
                    subject,
                    format!("invalid header value {value:?} for {name:?} in match.headers"),
                );
            }
        }
    }

    /// A route's `rewrite` table.
    fn route_rewrite(&mut self, r: &Spanned<super::RouteConfig>, subject: &str) {
        let route = r.get_ref();
        let Some(rw) = &route.rewrite else {
            return;
        };
        if rw.prefix.is_some() && rw.path.is_some() {
            self.err(
                r.span(),
                subject,
                "rewrite: `prefix` and `path` cannot both be set".into(),
            );
        }
        if rw.prefix.is_some() && route.matcher.path_prefix.is_none() {
            self.err(
                r.span(),
                subject,
                "rewrite.prefix needs match.path_prefix (it replaces the matched prefix)".into(),
            );
        }
        for p in [&rw.prefix, &rw.path].into_iter().flatten() {
            if !p.starts_with('/') {
                self.err(
                    r.span(),
                    subject,
                    format!("rewrite path {p:?} must start with '/'"),
                );
            }
        }
    }
}

/// A `stdio` upstream: a command to run, with settings that a process can take. (Whether the
/// command exists is checked when the snapshot is built, which `weir check` does too.)
fn check_stdio(up: &super::UpstreamConfig, s: &super::StdioSpec) -> Vec<String> {
    let mut errors = Vec::new();
    if s.command.trim().is_empty() {
        errors.push("`stdio.command` is empty".into());
    }
    let nul = |v: &str| v.contains('\0');
    if nul(&s.command) || s.args.iter().any(|a| nul(a)) || s.env.values().any(|v| nul(v)) {
        errors.push("`stdio` strings cannot contain NUL characters".into());
    }
    for k in s.env.keys() {
        if k.is_empty() || k.contains('=') || nul(k) {
            errors.push(format!("`stdio.env`: invalid variable name {k:?}"));
        }
    }
    let not_for_stdio = [
        ("ca_file", up.ca_file.is_some()),
        ("client_cert", up.client_cert.is_some()),
        ("client_key", up.client_key.is_some()),
        (
            "protocol",
            up.protocol != super::UpstreamProtocol::default(),
        ),
    ];
    for (key, set) in not_for_stdio {
        if set {
            errors.push(format!(
                "`{key}` does not apply to a `stdio` upstream (the gateway serves it over plain HTTP/1.1 on loopback)"
            ));
        }
    }
    errors
}

fn valid_namespace(ns: &str) -> bool {
    (1..=64).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn methods_of(m: &OneOrMany) -> Vec<String> {
    m.to_vec()
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// An endpoint is a base URL: scheme http or https, a host, an optional port, no path.
pub fn check_endpoint(ep: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = ep
        .parse()
        .map_err(|e| format!("invalid endpoint {ep:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "invalid endpoint {ep:?}: must start with http:// or https://"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid endpoint {ep:?}: no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "invalid endpoint {ep:?}: must not have a path; use the route's `rewrite` instead"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    fn errors(src: &str) -> Vec<String> {
        match Config::parse(Path::new("weir.toml"), src.to_string()) {
            Ok(_) => vec![],
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[upstreams.app]\nendpoints = [\"http://127.0.0.1:9000\"]\n";

    #[test]
    fn good_config_has_no_errors() {
        let src = format!("{BASE}[[routes]]\nname = \"r\"\nupstream = \"app\"\n");
        assert_eq!(errors(&src), Vec::<String>::new());
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let src = format!("{BASE}[[routes]]\nname = \"r\"\nupstraem = \"app\"\n");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("weir.toml:7:1: unknown field `upstraem`"),
            "{e:?}"
        );
    }

    #[test]
    fn invalid_toml_reports_line() {
        let e = errors("[[listeners]]\naddress = \n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("weir.toml:2:"), "{e:?}");
    }

    #[test]
    fn unknown_names_are_all_reported_with_route() {
        let src = format!(
            "{BASE}[[routes]]\nname = \"r\"\nupstream = \"nope\"\nchain = [{{ plugin = \"ghost\" }}]\n"
        );
        let e = errors(&src);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            "weir.toml:7:12: route \"r\": unknown upstream \"nope\" (defined: app)"
        );
        assert_eq!(
            e[1],
            "weir.toml:8:21: route \"r\": unknown plugin \"ghost\" (defined: none)"
        );
    }

    #[test]
    fn bad_match_header_value_and_memory_limit() {
        let src = format!(
            "{BASE}[plugins.p]\npath = \"p.wasm\"\nmemory_limit = \"2GiB\"\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nmatch = {{ headers = {{ x-a = \"bad\\u0001value\" }} }}\n"
        );
        let e = errors(&src);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            "weir.toml:5:1: plugin \"p\": memory_limit 2GiB is above the maximum of 1GiB"
        );
        assert!(e[1].contains("route \"r\": invalid header value"), "{e:?}");
    }

    #[test]
    fn durations_and_sizes_are_bounded_with_their_place() {
        let src = format!("{BASE}[limits]\ndrain_timeout = \"18446744073709551615s\"\n");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("weir.toml:6:17: "), "{e:?}");
        assert!(e[0].contains("too long: at most 24h"), "{e:?}");
        let src = format!("{BASE}[limits]\nmax_body_size = \"16777216TiB\"\n");
        let e = errors(&src);
        assert!(e[0].starts_with("weir.toml:6:17: "), "{e:?}");
        let src = format!("{BASE}[limits]\nmax_body_size = 18446744073709551615\n");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("weir.toml:6:17: "), "{e:?}");
        let src = format!("{BASE}[kv]\ntimeout = \"1441m\"\n");
        let e = errors(&src);
        assert!(e[0].starts_with("weir.toml:6:11: "), "{e:?}");
        assert!(e[0].contains("too long"), "{e:?}");
        let src = format!(
            "{BASE}[[routes]]\nname = \"r\"\nupstream = \"app\"\n[limits]\ndrain_timeout = \"24h\"\n"
        );
        assert!(errors(&src)[0].contains("unit"), "hours are not a unit");
        let src = format!(
            "{BASE}[[routes]]\nname = \"r\"\nupstream = \"app\"\n[limits]\ndrain_timeout = \"1440m\"\nmax_body_size = \"1024GiB\"\n"
        );
        assert_eq!(errors(&src), Vec::<String>::new());
    }

    #[test]
    fn zero_limits_are_refused() {
        let src = format!(
            "{BASE}[[routes]]\nname = \"r\"\nupstream = \"app\"\n[limits]\nmax_connections = 0\nidle_timeout = \"0s\"\n[kv]\nbreaker_failures = 0\n"
        );
        let e = errors(&src);
        assert_eq!(
            e,
            [
                "weir.toml: [limits] max_connections must be at least 1",
                "weir.toml: [kv] breaker_failures must be at least 1",
                "weir.toml: [limits] idle_timeout must be longer than 0",
            ]
        );
    }

    #[test]
    fn bad_endpoint_and_address() {
        let src = "[[listeners]]\naddress = \"localhost\"\n[upstreams.app]\nendpoints = [\"ftp://x\", \"http://h:1/p\"]\n";
        let e = errors(src);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("listener \"localhost\": invalid address"));
        assert!(e[1].contains("must start with http://"));
        assert!(e[2].contains("must not have a path"));
    }

    #[test]
    fn weighted_and_string_endpoints_mix() {
        let src = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[upstreams.app]\nendpoints = [\"http://127.0.0.1:9000\", { url = \"http://127.0.0.1:9001\", weight = 3 }]\nbalance = \"hash\"\nhash_by = \"header:x-user\"\n[upstreams.app.retry]\nattempts = 2\n[upstreams.app.outlier]\nconsecutive_failures = 2\n[upstreams.app.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nretry = { retry_non_idempotent = true }\n";
        assert_eq!(errors(src), Vec::<String>::new());
    }

    #[test]
    fn bad_balance_hash_and_weight_name_their_line() {
        let e = errors(&format!("{BASE}balance = \"random\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("weir.toml:5:11:"), "{e:?}");
        assert!(e[0].contains("unknown variant `random`"), "{e:?}");

        let e = errors(&format!("{BASE}balance = \"hash\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "weir.toml:5:11: upstream \"app\": balance = \"hash\" needs `hash_by`"
            ),
            "{e:?}"
        );

        let e = errors(&format!(
            "{BASE}balance = \"hash\"\nhash_by = \"header:\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("weir.toml:6:11: upstream \"app\": hash_by"),
            "{e:?}"
        );

        let src = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[upstreams.app]\nendpoints = [{ url = \"http://127.0.0.1:9000\", weight = 0 }]\n";
        let e = errors(src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("weir.toml:4:14: upstream \"app\": endpoint weight 0"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_retry_outlier_and_health_values() {
        let src = format!(
            "{BASE}[upstreams.app.retry]\nattempts = 0\nbackoff_base = \"2s\"\nbackoff_max = \"1s\"\n[upstreams.app.outlier]\nmax_ejected_percent = 101\n[upstreams.app.health_check]\npath = \"health\"\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nretry = {{ budget_ratio = 0.5 }}\n"
        );
        let e = errors(&src);
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e.iter().any(|m| m.contains("retry: `attempts`")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("`backoff_base`")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("outlier: `max_ejected_percent`")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("health_check: `path`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("route \"r\": retry: the retry budget")),
            "{e:?}"
        );
    }
    #[test]
    fn the_admin_token_secret_must_name_a_secret_and_not_come_with_a_token() {
        let src = format!("{BASE}[admin]\ntoken_secret = \"ADMIN\"\n");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(":16: admin: token_secret \"ADMIN\" is not in [secrets]"),
            "{e:?}"
        );
        let both = format!(
            "{BASE}[secrets]\nADMIN = {{ env = \"X\" }}\n[admin]\ntoken = \"t\"\ntoken_secret = \"ADMIN\"\n"
        );
        let e = errors(&both);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("token and token_secret are both set"),
            "{e:?}"
        );
        let good = format!(
            "{BASE}[secrets]\nADMIN = {{ env = \"X\" }}\n[admin]\ntoken_secret = \"ADMIN\"\nunauthenticated_probes = true\n"
        );
        assert_eq!(errors(&good), Vec::<String>::new());
    }
}
