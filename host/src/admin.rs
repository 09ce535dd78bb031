//! The admin API, on its own listener (`[admin]`), JSON out:
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /health` | 200 while the process runs |
//! | `GET /ready` | 200 while serving, 503 once shutdown began |
//! | `GET /config` | active generation, activation time, config and plugin digests, last reload error |
//! | `GET /plugins` | each plugin: path, digest, routes using it, instantiations, failures |
//! | `GET /routes` | each route in match order: match, rewrite, upstream, chain (plugin, instance policy, `on_error`, grants, config with credentials redacted) |
//! | `GET /audit?limit=N` | the last audit records plugins wrote (at most 1,000 kept), newest first |
//! | `POST /mcp/catalog` | an MCP route's tools, prompts and resources as the principal behind the given credentials sees them (see [`crate::catalog`]) |
//! | `GET /ui`, `/ui/*` | the web console's static files (no data: every view reads the API with the token; see [`crate::console`]) |
//! | `GET /upstreams` | each upstream's endpoints: URL, weight, state (healthy, ejected, unhealthy), consecutive failures, requests in flight, ejections |
//! | `GET /metrics` | the gateway's series and the plugins', Prometheus text format 0.0.4 |
//! | `POST /reload` | reload now: 200 with the new generation, or 422 with every error |
//! | `PUT /plugins/{name}` | upload a component: validated with every route using it, then written over the plugin's file and activated; 400 with the reason if invalid |
//!
//! With `token` set, every request needs `Authorization: Bearer <token>` (else 401); a client
//! that presented too many wrong tokens gets 429 for a while, whatever it presents. Without a token the API is
//! read-only (`POST`/`PUT` get 403) unless `allow_unauthenticated` (loopback only) opens it.

use crate::accept::{Backoff, Slots};
use crate::body::{self, Body};
use crate::connection::{Activity, Step, Supervisor, Watched};
use crate::control::Control;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Largest component accepted by `PUT /plugins/{name}`.
const MAX_UPLOAD: usize = 256 << 20;

/// Serves the admin API until the task is aborted, with the listeners' defences: at most
/// `max_connections` open, accept backoff, and the head and idle timeouts of `[limits]`
/// (read at start, like the rest of `[admin]`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Control>,
    access: Access,
    max_connections: usize,
) {
    let access = Arc::new(access);
    let name: Arc<str> = Arc::from("admin");
    let metrics = gateway.runtime.services.requests.clone();
    let slots = Slots::new(name.clone(), metrics.clone());
    let mut backoff = Backoff::new(name.clone(), metrics.clone());
    let limits = gateway.current().limits.clone();
    let builder = Arc::new(crate::server::connection_builder(&limits));
    let timeouts = crate::server::timeouts(&limits);
    loop {
        let (stream, client) = match listener.accept().await {
            Ok((stream, addr)) => (stream, addr.ip()),
            Err(e) => {
                tokio::time::sleep(backoff.failed(&e)).await;
                continue;
            }
        };
        backoff.accepted();
        let Some(slot) = slots.take(max_connections) else {
            continue;
        };
        let activity = Activity::new(tokio::time::Instant::now());
        let mut supervisor = Supervisor::new(
            activity.clone(),
            timeouts,
            gateway.shutdown_signal(),
            metrics.clone(),
            name.clone(),
        );
        let (gateway, access, builder) = (gateway.clone(), access.clone(), builder.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(Watched::new(stream, activity.clone()));
            let svc = service_fn(move |req: Request<Incoming>| {
                let in_flight = activity.begin(req.version());
                let gateway = gateway.clone();
                let access = access.clone();
                async move {
                    let resp = match crate::console::asset(&req) {
                        Some(file) => file,
                        None => match access.check(client, &req) {
                            Ok(()) => handle(&gateway, req).await,
                            Err(refusal) => *refusal,
                        },
                    };
                    Ok::<_, std::convert::Infallible>(in_flight.until_sent(resp))
                }
            });
            // Owned: a connection borrowing the builder trips the compiler's `Send` inference.
            let http = builder.serve_connection_with_upgrades(io, svc).into_owned();
            tokio::pin!(http);
            loop {
                let step = tokio::select! {
                    _ = http.as_mut() => break,
                    step = supervisor.next() => step,
                };
                match step {
                    Step::Graceful => http.as_mut().graceful_shutdown(),
                    Step::Close => break,
                }
            }
            drop(slot);
        });
    }
}

fn reply(status: StatusCode, value: Value) -> Response<Body> {
    let mut resp = Response::new(body::full(format!("{value:#}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Who may use the admin API (`[admin] token` or `token_secret`, `allow_unauthenticated`,
/// `unauthenticated_probes`).
pub(crate) enum Access {
    /// Every request presents this bearer token (but probes, when `probes_open`).
    Token {
        token: String,
        failures: Failures,
        probes_open: bool,
    },
    /// No token: reads only.
    ReadOnly,
    /// No token, everything allowed (the operator opted in, on loopback).
    Open,
}

/// Failed token checks per client address: an allowance of [`FAILURE_BURST`] tries that
/// refills at one per second. The try that empties it locks the address out for
/// [`LOCKOUT`]: every request from it then gets 429 without the token being looked at, so
/// guessing is slow and a guesser learns nothing while locked out.
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<IpAddr, Allowance>>);

/// One address's tries left (as of `at`) and the end of its lockout, if any.
#[derive(Clone, Copy)]
struct Allowance {
    tries: f64,
    at: Instant,
    locked_until: Option<Instant>,
}

const FAILURE_BURST: f64 = 10.0;
const LOCKOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Addresses remembered at most (those with a full allowance are forgotten first).
const FAILURE_CLIENTS: usize = 4096;

impl Allowance {
    fn fresh(now: Instant) -> Allowance {
        Allowance {
            tries: FAILURE_BURST,
            at: now,
            locked_until: None,
        }
    }

    fn tries_at(&self, now: Instant) -> f64 {
        (self.tries + now.saturating_duration_since(self.at).as_secs_f64()).min(FAILURE_BURST)
    }
}

impl Failures {
    fn locked(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip)
            .and_then(|a| a.locked_until)
            .is_some_and(|until| now < until)
    }

    fn fail(&self, ip: IpAddr, now: Instant) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= FAILURE_CLIENTS {
            map.retain(|_, a| a.tries_at(now) < FAILURE_BURST);
        }
        let a = map.entry(ip).or_insert_with(|| Allowance::fresh(now));
        let tries = a.tries_at(now) - 1.0;
        *a = if tries < 1.0 {
            // Locked out; the allowance refills from the end of the lockout.
            let until = now + LOCKOUT;
            Allowance {
                tries: 0.0,
                at: until,
                locked_until: Some(until),
            }
        } else {
            Allowance {
                tries,
                at: now,
                locked_until: None,
            }
        };
    }
}

impl Access {
    /// The access `[admin]` asks for; the token read from its `[secrets]` entry when it names one
    /// (an error names the secret; validation has checked the entry exists).
    pub(crate) fn new(config: &crate::config::Config) -> anyhow::Result<Access> {
        let Some(admin) = &config.file.admin else {
            return Ok(Access::ReadOnly);
        };
        let a = admin.get_ref();
        let token = match (&a.token, &a.token_secret) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(name)) => Some(Self::secret(config, name)?),
            (None, None) => None,
        };
        let probes_open = a.unauthenticated_probes;
        Ok(match (token, a.allow_unauthenticated) {
            (Some(token), _) => Access::Token {
                token,
                failures: Failures::default(),
                probes_open,
            },
            (None, true) => {
                tracing::warn!(
                    "admin API without a token, allow_unauthenticated: anyone who can reach it can reload and replace plugins"
                );
                Access::Open
            }
            (None, false) => {
                tracing::warn!(
                    "admin API without a token: read-only (set [admin] token to reload or upload plugins)"
                );
                Access::ReadOnly
            }
        })
    }

    fn secret(
        config: &crate::config::Config,
        name: &toml::Spanned<String>,
    ) -> anyhow::Result<String> {
        let at = config.location(name.span());
        let source = config.file.secrets.get(name.get_ref()).map(|s| s.get_ref());
        match source.and_then(|s| crate::capability::secrets::read(config, s)) {
            Some(Ok(token)) if !token.is_empty() => Ok(token),
            Some(Ok(_)) => anyhow::bail!("{at}: admin: token_secret {:?} is empty", name.get_ref()),
            Some(Err(e)) => anyhow::bail!("{at}: admin: token_secret {:?}: {e}", name.get_ref()),
            None => anyhow::bail!(
                "{at}: admin: token_secret {:?} is not in [secrets]",
                name.get_ref()
            ),
        }
    }

    /// `Ok` when the request may go on; else the answer.
    fn check(&self, client: IpAddr, req: &Request<Incoming>) -> Result<(), Box<Response<Body>>> {
        match self {
            Access::Open => Ok(()),
            Access::ReadOnly if matches!(*req.method(), Method::GET | Method::HEAD) => Ok(()),
            Access::ReadOnly => Err(Box::new(reply(
                StatusCode::FORBIDDEN,
                json!({"error": "the admin API has no token and is read-only: set [admin] token"}),
            ))),
            Access::Token {
                probes_open: true, ..
            } if is_probe(req) => Ok(()),
            Access::Token {
                token, failures, ..
            } => {
                let now = Instant::now();
                if failures.locked(client, now) {
                    let mut r = reply(
                        StatusCode::TOO_MANY_REQUESTS,
                        json!({"error": "too many failed attempts; retry later"}),
                    );
                    r.headers_mut().insert(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from(LOCKOUT.as_secs()),
                    );
                    return Err(Box::new(r));
                }
                if presents(token, req) {
                    return Ok(());
                }
                // Only a presented token is a guess: a browser's token-less requests (the
                // console's icon, a page opened before signing in) never lock anyone out.
                if req.headers().contains_key(http::header::AUTHORIZATION) {
                    failures.fail(client, now);
                }
                let mut r = reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "a valid bearer token is required"}),
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"weir-admin\""),
                );
                Err(Box::new(r))
            }
        }
    }
}

/// `GET /health` or `GET /ready` (what `unauthenticated_probes` opens).
fn is_probe(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET && matches!(req.uri().path(), "/health" | "/ready")
}

/// The request carries `Authorization: Bearer <token>` (the scheme in any case, RFC 9110
/// §11.1), compared in constant time: the token is a credential.
fn presents(token: &str, req: &Request<Incoming>) -> bool {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim());
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn handle(gateway: &Control, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/health") => reply(StatusCode::OK, json!({"status": "ok"})),
        (Method::GET, "/ready") => {
            if gateway.is_leaving() {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"ready": false, "reason": "shutting down"}),
                )
            } else {
                reply(StatusCode::OK, json!({"ready": true}))
            }
        }
        (Method::GET, "/config") => config(gateway),
        (Method::GET, "/plugins") => plugins(gateway),
        (Method::GET, "/metrics") => metrics(gateway),
        (Method::GET, "/upstreams") => upstreams(gateway),
        (Method::GET, "/routes") => reply(StatusCode::OK, (*gateway.current().described).clone()),
        (Method::GET, "/audit") => audit(req.uri().query()),
        (Method::POST, "/reload") => match gateway.reload("admin API", &HashMap::new()).await {
            Ok(generation) => reply(StatusCode::OK, json!({"generation": generation})),
            Err(d) => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"errors": d.0.iter().map(ToString::to_string).collect::<Vec<_>>()}),
            ),
        },
        (Method::POST, "/mcp/catalog") => mcp_catalog(gateway, req).await,
        (Method::PUT, p) if p.starts_with("/plugins/") => {
            let name = p.trim_start_matches("/plugins/").to_string();
            upload(gateway, name, req).await
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no admin endpoint {path}")}),
        ),
    }
}

fn config(gateway: &Control) -> Response<Body> {
    let status = gateway.status();
    let snap = gateway.current();
    // The digest of the text the active snapshot was built from, not of the file now.
    let config_digest = &snap.config_digest;
    let mut plugins: Vec<Value> = snap
        .plugins
        .values()
        .map(
            |p| json!({"name": &*p.name, "path": p.path.display().to_string(), "digest": p.digest}),
        )
        .collect();
    plugins.sort_by_key(|v| v["name"].as_str().unwrap_or("").to_string());
    reply(
        StatusCode::OK,
        json!({
            "generation": status.generation,
            "activated_at": unix(status.activated_at),
            "reloads": status.reloads,
            "reload_failures": status.failures,
            "config": {"path": gateway.config_path.display().to_string(), "digest": config_digest},
            "plugins": plugins,
            "last_reload_error": status.last_error.map(|(at, errors)| json!({"at": unix(at), "errors": errors})),
        }),
    )
}

fn plugins(gateway: &Control) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let snap = gateway.current();
    let mut out: Vec<Value> = snap
        .plugins
        .values()
        .map(|p| {
            let routes: Vec<&str> = snap
                .routes
                .iter()
                .filter(|r| r.chain.entries.iter().any(|e| Arc::ptr_eq(&e.plugin, p)))
                .map(|r| &*r.name)
                .collect();
            json!({
                "name": &*p.name,
                "path": p.path.display().to_string(),
                "digest": p.digest,
                "instances": format!("{:?}", p.settings.policy).to_lowercase(),
                "routes": routes,
                "instantiations": p.stats.instantiations.load(Relaxed),
                "failures": p.stats.failures.load(Relaxed),
                "recent_failures": p.stats.recent_failures(&p.settings.health),
                "recent_failure_reasons": p.stats.recent_reasons().into_iter()
                    .map(|(at, route, reason)| json!({"at": unix(at), "route": route, "reason": reason}))
                    .collect::<Vec<_>>(),
                "healthy": p.stats.recent_failures(&p.settings.health) <= p.settings.health.max_failures,
            })
        })
        .collect();
    out.sort_by_key(|v| v["name"].as_str().unwrap_or("").to_string());
    reply(StatusCode::OK, json!({"plugins": out}))
}

/// A request body of at most `limit` bytes, or the 400 that says why not (`what` names it).
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    what: &str,
) -> Result<Bytes, Box<Response<Body>>> {
    match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(Box::new(reply(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("reading {what}: {e}")}),
        ))),
    }
}

/// `POST /mcp/catalog`: read-only, but it sends credentials to a route, so it needs the
/// same access as a change (a token, or an open API).
async fn mcp_catalog(gateway: &Control, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req, 64 << 10, "the body").await {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let described = gateway.current().described.clone();
    match crate::catalog::catalog(&described, &body).await {
        Ok(v) => reply(StatusCode::OK, v),
        Err(crate::catalog::Refused(status, message)) => reply(status, json!({"error": message})),
    }
}

/// `GET /audit?limit=N` (default 200).
fn audit(query: Option<&str>) -> Response<Body> {
    let limit = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let records = crate::access_log::recent_audit(limit);
    reply(
        StatusCode::OK,
        json!({"records": records, "kept": crate::access_log::RECENT}),
    )
}

fn upstreams(gateway: &Control) -> Response<Body> {
    let snap = gateway.current();
    let mut out: Vec<Value> = snap.upstreams.values().map(|u| u.describe()).collect();
    out.sort_by_key(|v| v["name"].as_str().unwrap_or("").to_string());
    reply(StatusCode::OK, json!({"upstreams": out}))
}

/// The gateway's series and the plugins' (the `metrics` capability), rendered by one registry
/// in the Prometheus text format; the counters kept outside `RequestMetrics` are read now.
fn metrics(gateway: &Control) -> Response<Body> {
    use crate::request_metrics::{CONTENT_TYPE, Elsewhere, scrape};
    use std::sync::atomic::Ordering::Relaxed;
    let status = gateway.status();
    let elsewhere = Elsewhere {
        plugins: gateway
            .current()
            .plugins
            .values()
            .map(|p| {
                let stats = &p.stats;
                let (created, failed) = (
                    stats.instantiations.load(Relaxed),
                    stats.failures.load(Relaxed),
                );
                (p.name.clone(), created, failed)
            })
            .collect(),
        reloads: status.reloads,
        reload_failures: status.failures,
        spans_exported: crate::telemetry::exported(),
        spans_dropped: crate::telemetry::dropped(),
        log_lines_dropped: crate::access_log::dropped(),
        kv_breaker: gateway.runtime.services.kv_breaker(),
    };
    let services = &gateway.runtime.services;
    match scrape(
        &services.requests,
        &elsewhere,
        Box::new(services.metrics.clone()),
    ) {
        Ok(text) => {
            let mut resp = Response::new(body::full(text));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(CONTENT_TYPE),
            );
            resp
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("rendering the metrics: {e}")}),
        ),
    }
}

async fn upload(gateway: &Control, name: String, req: Request<Incoming>) -> Response<Body> {
    let Some(path) = gateway.current().plugins.get(&name).map(|p| p.path.clone()) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no plugin \"{name}\" in the active configuration")}),
        );
    };
    let bytes = match read_body(req, MAX_UPLOAD, "the upload").await {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let overrides = HashMap::from([(name.clone(), bytes.to_vec())]);
    match gateway.reload("admin upload", &overrides).await {
        Ok(generation) => {
            // Persist it, so the file matches what runs (and a restart keeps it). Write beside
            // and rename, so the file watcher never sees half a component.
            let tmp = path.with_extension(format!("upload-{}", std::process::id()));
            let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
            match written {
                Ok(()) => reply(
                    StatusCode::OK,
                    json!({"plugin": name, "digest": crate::plugin::digest(&bytes), "generation": generation}),
                ),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": format!("activated, but writing {} failed: {e}", path.display())}),
                ),
            }
        }
        Err(d) => reply(
            StatusCode::BAD_REQUEST,
            json!({"errors": d.0.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_try_that_empties_the_allowance_locks_the_address_out() {
        let failures = Failures::default();
        let (ip, other): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("ip"),
            "192.0.2.2".parse().expect("ip"),
        );
        let t0 = Instant::now();
        for _ in 0..9 {
            failures.fail(ip, t0);
            assert!(!failures.locked(ip, t0));
        }
        failures.fail(ip, t0);
        assert!(
            failures.locked(ip, t0 + LOCKOUT / 2),
            "locked for the whole lockout"
        );
        assert!(!failures.locked(other, t0), "per address");
        let after = t0 + LOCKOUT;
        assert!(!failures.locked(ip, after));
        failures.fail(ip, after);
        assert!(
            failures.locked(ip, after),
            "no fresh allowance after a lockout"
        );
    }
}
