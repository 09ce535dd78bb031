//! Named upstreams: endpoints chosen by a balancer ([`balance`]), kept healthy by passive
//! ejection and active checks ([`health`]), called through a pooled keep-alive client per
//! worker (HTTP/1.1, h2c, or HTTPS with ALPN; [`client`]), under concurrency limits
//! ([`limits`]), with retries under a budget ([`retry`]). Failures become 502/503/504
//! responses naming the upstream.
//!
//! [`Upstream::send`] is the one way out: the proxy's requests and plugins' `outbound` calls.

pub(crate) mod balance;
mod client;
mod h1;
pub(crate) mod health;
mod limits;
pub(crate) mod retry;

use crate::body::Body;
use crate::config::{HashBy, Limits, RetryConfig, UpstreamConfig, UpstreamProtocol};
use crate::request_metrics::RequestMetrics;
use bytes::Bytes;
use client::Failure;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use retry::{Policy, Reason};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// One endpoint of an upstream.
pub(crate) struct Endpoint {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// `scheme://authority`, as in the config: the metrics' `endpoint` label.
    pub(crate) label: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) state: health::EndpointState,
}

/// What the request path and the checker task share.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) metrics: Arc<RequestMetrics>,
}

pub struct Upstream {
    pub name: String,
    /// Its outcome series, resolved on first use.
    pub(crate) series: crate::request_metrics::UpstreamSeries,
    shared: Arc<Shared>,
    balancer: balance::Balancer,
    /// HTTP/1.1 connections to the `http://` endpoints, per worker (`None`: there are none, or
    /// the upstream speaks HTTP/2).
    h1: Option<Arc<h1::H1Pool>>,
    /// One pool per worker thread, so connections stay on the thread that uses them: for HTTPS
    /// and HTTP/2 endpoints.
    clients: Vec<HttpClient>,
    /// Per worker, without a pool: the one retry after a stale pooled connection.
    fresh: Vec<HttpClient>,
    request_timeout: Duration,
    retry: Option<RetryConfig>,
    budget: retry::Budget,
    outlier: health::Outlier,
    limits: limits::Limits,
    /// Dropped with the upstream (and so with its snapshot): the checks stop.
    _checker: Option<health::Checker>,
}

/// Why an upstream call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream \"{upstream}\" ({endpoint}) is unreachable: {reason}")]
    Unreachable {
        upstream: String,
        endpoint: String,
        reason: String,
    },
    #[error("upstream \"{upstream}\" ({endpoint}) timed out")]
    Timeout { upstream: String, endpoint: String },
    #[error("upstream \"{upstream}\" ({endpoint}) failed: {reason}")]
    Failed {
        upstream: String,
        endpoint: String,
        reason: String,
    },
    #[error("upstream \"{upstream}\" is over its {limit} limit")]
    Overflow {
        upstream: String,
        limit: &'static str,
    },
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Overflow { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `retry-after` seconds to answer with, for a refusal that will pass soon.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(self, UpstreamError::Overflow { .. }).then_some(1)
    }
}

/// A request body as `send` gets it: bytes it can send again, or a stream it can send once.
pub(crate) enum Payload {
    Bytes(Bytes),
    Stream(Body),
}

/// What a request brings to endpoint selection and retries besides its head.
#[derive(Default, Clone, Copy)]
pub(crate) struct SendOptions<'a> {
    /// The exchange's principal (set by plugins), for `hash_by = "principal"`.
    pub(crate) principal: Option<&'a str>,
    /// The route's `retry` keys, over the upstream's.
    pub(crate) retry: Option<&'a RetryConfig>,
}

/// The outcome of `send` and the number of tries it took (0 when a limit refused it).
pub(crate) struct Sent {
    pub(crate) result: Result<Response<UpstreamBody>, UpstreamError>,
    pub(crate) attempts: u32,
}

impl Upstream {
    /// Builds the upstream's clients and starts its health checks. `ca_file` and `client_cert`
    /// (certificate, key) are already resolved against the config's directory.
    pub(crate) fn new(
        name: &str,
        cfg: &UpstreamConfig,
        limits: &Limits,
        tls: (Option<&Path>, Option<(&Path, &Path)>),
        workers: usize,
        metrics: Arc<RequestMetrics>,
    ) -> Result<Upstream, String> {
        let endpoints = endpoints(cfg)?;
        let hash_by = cfg
            .hash_by
            .as_ref()
            .map(|h| HashBy::parse(h.get_ref()))
            .transpose()?;
        let balancer = balance::Balancer::new(cfg.balance(), hash_by, &endpoints);
        let clients = client::build(cfg, limits, tls.0, tls.1, workers)?;
        let plain: Vec<bool> = endpoints
            .iter()
            .map(|ep| ep.scheme == Scheme::HTTP && cfg.protocol != UpstreamProtocol::Http2)
            .collect();
        let max_idle = cfg.max_connections.as_ref().map(|m| *m.get_ref());
        let h1 = h1::H1Pool::new(clients.tcp, &plain, workers, clients.idle_timeout, max_idle);
        let shared = Arc::new(Shared {
            name: name.into(),
            endpoints,
            metrics,
        });
        let checker = cfg.health_check.as_ref().and_then(|h| {
            health::spawn_checks(shared.clone(), h.get_ref().clone(), clients.checks.clone())
        });
        let retry = cfg.retry.as_ref().map(|r| r.get_ref().clone());
        let limit = |l: &Option<toml::Spanned<usize>>| l.as_ref().map(|v| *v.get_ref());
        Ok(Upstream {
            series: crate::request_metrics::UpstreamSeries::new(name.into()),
            name: name.to_string(),
            balancer,
            h1,
            clients: clients.pooled,
            fresh: clients.fresh,
            request_timeout: cfg.request_timeout.unwrap_or(limits.request_timeout).0,
            budget: retry::Budget::new(retry.as_ref()),
            retry,
            outlier: health::Outlier::new(cfg.outlier.as_ref().map(|o| o.get_ref().clone())),
            limits: limits::Limits::new(
                limit(&cfg.max_requests),
                limit(&cfg.max_connections),
                limit(&cfg.max_pending),
                workers,
            ),
            shared,
            _checker: checker,
        })
    }

    /// The retry policy a request to this upstream runs under, given its route's keys.
    pub(crate) fn policy<'a>(&'a self, route: Option<&'a RetryConfig>) -> Option<Policy<'a>> {
        Policy::resolve(self.retry.as_ref(), route)
    }

    /// The admin API's view: every endpoint with its state.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let endpoints: Vec<serde_json::Value> = self
            .shared
            .endpoints
            .iter()
            .map(|ep| {
                let mut v = ep.state.describe();
                v["url"] = ep.label.to_string().into();
                v["weight"] = ep.weight.into();
                v
            })
            .collect();
        serde_json::json!({ "name": self.name, "endpoints": endpoints })
    }

    /// Sends a request (its URI holds only path and query) and waits for the response head:
    /// picks an endpoint, and tries again, elsewhere when it can, while the retry policy, the
    /// budget and the request's time allow. The body is replayed only when it is [`Payload::Bytes`].
    pub(crate) async fn send(
        &self,
        head: http::request::Parts,
        payload: Payload,
        opts: SendOptions<'_>,
    ) -> Sent {
        let deadline = Instant::now() + self.request_timeout;
        let admission = match tokio::time::timeout_at(deadline, self.limits.admit()).await {
            Ok(Ok(a)) => a,
            Ok(Err(limit)) => return self.overflow(limit),
            Err(_) => return self.overflow("max_pending"),
        };
        let policy = self.policy(opts.retry);
        // The budget is a share of the requests that may be retried; the others (most, where
        // no retry is configured) skip its lock, which all workers share.
        if policy.is_some() {
            self.budget.request();
        }
        let mut run = Run {
            head,
            payload: Some(payload),
            key: self.hash_key_of(opts.principal),
            tried: Vec::new(),
            stale_retry_used: false,
            again: None,
        };
        run.key = run.key.or_else(|| self.header_key(&run.head));
        loop {
            // The retry after a stale pooled connection goes to the same endpoint, unpooled.
            let (i, fresh) = match run.again.take() {
                Some(i) => (i, true),
                None => (
                    self.balancer
                        .pick(&self.shared.endpoints, run.key, &run.tried),
                    false,
                ),
            };
            run.tried.push(i);
            let attempts = run.tried.len() as u32;
            let Some(req) = run.request(&self.shared.endpoints[i]) else {
                let e = self.failed(i, "the request body was already sent".into());
                return Sent {
                    result: Err(e),
                    attempts,
                };
            };
            let timeout = try_timeout(policy.as_ref(), deadline);
            let outcome = self.try_once(i, req, timeout, fresh).await;
            let next = match self.next_step(outcome, policy.as_ref(), &mut run, deadline) {
                Step::Done(result) => {
                    return Sent::done(result, admission, attempts, &self.shared, i);
                }
                Step::Retry(reason, wait) => (reason, wait),
            };
            self.shared.metrics.retry(&self.name, next.0.as_str());
            if !next.1.is_zero() {
                tokio::time::sleep_until((Instant::now() + next.1).min(deadline)).await;
            }
            if Instant::now() >= deadline {
                let e = UpstreamError::Timeout {
                    upstream: self.name.clone(),
                    endpoint: self.shared.endpoints[i].label.to_string(),
                };
                return Sent {
                    result: Err(e),
                    attempts,
                };
            }
        }
    }

    /// One try on endpoint `i`: the response head, or the error and what kind it was. Counts
    /// it in flight meanwhile, and tells the outlier detector how it went.
    async fn try_once(
        &self,
        i: usize,
        req: Request<Body>,
        timeout: Duration,
        fresh: bool,
    ) -> Result<Answer, (UpstreamError, Failure)> {
        let ep = &self.shared.endpoints[i];
        ep.state.start_request();
        let result = match tokio::time::timeout(timeout, self.call(i, req, fresh)).await {
            Err(_) => Err((
                UpstreamError::Timeout {
                    upstream: self.name.clone(),
                    endpoint: ep.label.to_string(),
                },
                Failure::Timeout,
            )),
            Ok(result) => result,
        };
        ep.state.end_request();
        // A failure that says nothing about the endpoint's health (a protocol error, a request
        // the client could not build) neither counts against it nor clears its record.
        match &result {
            Ok((resp, _)) => {
                let gateway_error = matches!(resp.status().as_u16(), 502..=504);
                self.outlier.record(&self.shared, i, gateway_error);
            }
            Err((_, Failure::Other)) => {}
            Err(_) => self.outlier.record(&self.shared, i, true),
        }
        result
    }

    /// One call on endpoint `i`: this worker's HTTP/1.1 pool for a plain `http://` endpoint,
    /// else hyper-util's client (`fresh`: without a pool, for the retry after a stale pooled
    /// connection).
    async fn call(
        &self,
        i: usize,
        req: Request<Body>,
        fresh: bool,
    ) -> Result<Answer, (UpstreamError, Failure)> {
        let ep = &self.shared.endpoints[i];
        if !fresh && let Some(h1) = self.h1.as_ref().filter(|p| p.serves(i)) {
            let (resp, lent) = h1.send(&self.name, i, ep, req).await?;
            return Ok((resp, Some(lent)));
        }
        let worker = crate::worker::current();
        let client = if fresh {
            &self.fresh[worker % self.fresh.len()]
        } else {
            &self.clients[worker % self.clients.len()]
        };
        match client.request(req).await {
            Ok(resp) => Ok((resp, None)),
            Err(e) => Err(client::classify(&self.name, &ep.label, &e)),
        }
    }

    /// After a try: done, or why and after how long to try again.
    fn next_step(
        &self,
        outcome: Result<Answer, (UpstreamError, Failure)>,
        policy: Option<&Policy<'_>>,
        run: &mut Run,
        deadline: Instant,
    ) -> Step {
        // No time left for another try: this outcome is the answer.
        if Instant::now() >= deadline {
            return Step::Done(outcome.map_err(|(e, _)| e));
        }
        let reason = match &outcome {
            Ok((resp, _))
                if policy.is_some_and(|p| p.statuses.contains(&resp.status().as_u16())) =>
            {
                Reason::Status
            }
            Ok(_) => return Step::Done(outcome.map_err(|(e, _)| e)),
            Err((_, Failure::Connect)) => Reason::Connect,
            Err((_, Failure::Timeout)) => Reason::Timeout,
            Err((_, Failure::Reset)) => Reason::Reset,
            Err((_, Failure::Other)) => return Step::Done(outcome.map_err(|(e, _)| e)),
        };
        let replayable = run.payload.is_some();
        let method = &run.head.method;
        // A pooled connection the server closed as we wrote to it: once, on a fresh connection,
        // whatever the policy (the request most likely never reached the application).
        if reason == Reason::Reset
            && !run.stale_retry_used
            && replayable
            && retry::idempotent(method)
        {
            run.stale_retry_used = true;
            run.again = run.tried.last().copied();
            return Step::Retry(Reason::StaleConnection, Duration::ZERO);
        }
        let Some(p) = policy else {
            return Step::Done(outcome.map_err(|(e, _)| e));
        };
        // The free retry after a stale connection does not count against `attempts`.
        let tries = run.tried.len() as u32 - u32::from(run.stale_retry_used);
        if !replayable || tries >= p.attempts || !p.allows(method, reason) {
            return Step::Done(outcome.map_err(|(e, _)| e));
        }
        if !self.budget.try_retry() {
            self.shared.metrics.retry_budget_exhausted(&self.name);
            return Step::Done(outcome.map_err(|(e, _)| e));
        }
        Step::Retry(reason, p.backoff(tries))
    }

    fn overflow(&self, limit: &'static str) -> Sent {
        self.shared.metrics.overflow(&self.name, limit);
        Sent {
            result: Err(UpstreamError::Overflow {
                upstream: self.name.clone(),
                limit,
            }),
            attempts: 0,
        }
    }

    fn failed(&self, i: usize, reason: String) -> UpstreamError {
        UpstreamError::Failed {
            upstream: self.name.clone(),
            endpoint: self.shared.endpoints[i].label.to_string(),
            reason,
        }
    }

    /// The hash of the request's `hash_by` key when it is the principal.
    fn hash_key_of(&self, principal: Option<&str>) -> Option<u64> {
        match self.balancer.hash_by {
            Some(HashBy::Principal) => principal.map(|p| balance::hash(p.as_bytes())),
            _ => None,
        }
    }

    /// The hash of the request's `hash_by` header or cookie. A request without one is
    /// balanced as by `least-request`.
    fn header_key(&self, head: &http::request::Parts) -> Option<u64> {
        match self.balancer.hash_by.as_ref()? {
            HashBy::Header(name) => head
                .headers
                .get(name.as_str())
                .map(|v| balance::hash(v.as_bytes())),
            HashBy::Cookie(name) => head
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| balance::hash(v.as_bytes())),
            HashBy::Principal => None,
        }
    }
}

/// One request's tries so far.
struct Run {
    head: http::request::Parts,
    /// `None` once a streamed body has been sent.
    payload: Option<Payload>,
    key: Option<u64>,
    tried: Vec<usize>,
    stale_retry_used: bool,
    /// The endpoint to try again on a fresh connection.
    again: Option<usize>,
}

impl Run {
    /// The request for a try on `ep`; `None` when its body cannot be sent again.
    fn request(&mut self, ep: &Endpoint) -> Option<Request<Body>> {
        let body = match self.payload.take()? {
            Payload::Bytes(b) => {
                self.payload = Some(Payload::Bytes(b.clone()));
                crate::body::full(b)
            }
            Payload::Stream(body) => body,
        };
        let mut parts = self.head.uri.clone().into_parts();
        parts.scheme = Some(ep.scheme.clone());
        parts.authority = Some(ep.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        let mut req = Request::new(body);
        *req.method_mut() = self.head.method.clone();
        *req.uri_mut() = Uri::from_parts(parts).ok()?;
        *req.headers_mut() = self.head.headers.clone();
        // The client sets Host (HTTP/1.1) or :authority (HTTP/2) from the endpoint; the
        // client's own host travels in x-forwarded-host.
        req.headers_mut().remove(http::header::HOST);
        *req.version_mut() = http::Version::HTTP_11;
        Some(req)
    }
}

/// A response head, and the pooled HTTP/1.1 connection it came on, to give back when its body
/// ends.
type Answer = (Response<Incoming>, Option<h1::Lent>);

enum Step {
    Done(Result<Answer, UpstreamError>),
    Retry(Reason, Duration),
}

impl Sent {
    /// The final result, its body holding the request's admission and its endpoint's
    /// in-flight count until it is done.
    fn done(
        result: Result<Answer, UpstreamError>,
        admission: limits::Admission,
        attempts: u32,
        shared: &Arc<Shared>,
        i: usize,
    ) -> Sent {
        let result = result.map(|(resp, lent)| {
            shared.endpoints[i].state.start_request();
            let lease = Lease {
                _admission: admission,
                shared: shared.clone(),
                endpoint: i,
            };
            // An upgraded connection belongs to the tunnel, never to the pool.
            let lent = lent.filter(|_| resp.status() != StatusCode::SWITCHING_PROTOCOLS);
            resp.map(|inner| UpstreamBody::new(inner, lease, lent))
        });
        Sent { result, attempts }
    }
}

/// The time one try may take: the policy's per-try timeout, within what is left of the
/// request's.
fn try_timeout(policy: Option<&Policy<'_>>, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    policy
        .and_then(|p| p.per_try_timeout)
        .map_or(left, |t| t.min(left))
}

fn endpoints(cfg: &UpstreamConfig) -> Result<Vec<Endpoint>, String> {
    cfg.endpoints
        .iter()
        .map(|ep| {
            let url = ep.get_ref().url();
            let uri = crate::config::check_endpoint(url)?;
            let parts = uri.into_parts();
            let scheme = parts.scheme.unwrap_or(Scheme::HTTP);
            let authority = parts
                .authority
                .ok_or_else(|| format!("no host in {url:?}"))?;
            Ok(Endpoint {
                label: format!("{scheme}://{authority}").into(),
                scheme,
                authority,
                weight: ep.get_ref().weight().max(1),
                state: health::EndpointState::default(),
            })
        })
        .collect()
}

/// Holds a response's share of its upstream's limits and its endpoint's in-flight count.
struct Lease {
    _admission: limits::Admission,
    shared: Arc<Shared>,
    endpoint: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.endpoints[self.endpoint].state.end_request();
    }
}

/// An upstream's response body: releases the request's lease when it ends or is dropped, and
/// gives its pooled connection back when it ends (only then: a body dropped early leaves the
/// connection unusable).
pub(crate) struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    lent: Option<h1::Lent>,
}

impl UpstreamBody {
    fn new(inner: Incoming, lease: Lease, lent: Option<h1::Lent>) -> UpstreamBody {
        use http_body::Body as _;
        let mut body = UpstreamBody {
            inner,
            lease: Some(lease),
            lent,
        };
        // Nothing to read (a HEAD answer, a 204, `content-length: 0`): complete already.
        if body.inner.is_end_stream()
            && let Some(lent) = body.lent.take()
        {
            lent.give_back();
        }
        body
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // Released as soon as the body is complete, not when the last reader drops it: the
        // endpoint is free for the balancer from then on.
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.lease = None;
        }
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended && let Some(lent) = self.lent.take() {
            lent.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(toml_text: &str) -> Upstream {
        let cfg: UpstreamConfig = toml::from_str(toml_text).expect("config");
        let metrics = Arc::new(RequestMetrics::default());
        Upstream::new("u", &cfg, &Limits::default(), (None, None), 1, metrics).expect("upstream")
    }

    #[tokio::test]
    async fn dropping_an_upstream_stops_its_health_checks() {
        let u =
            upstream("endpoints = [\"http://127.0.0.1:9\"]\n[health_check]\ninterval = \"10ms\"\n");
        assert!(u._checker.is_some(), "a checker runs");
        let shared = Arc::downgrade(&u.shared);
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(u);
        // The aborted task drops its share of the state at its next poll.
        for _ in 0..100 {
            if shared.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the checker task outlived its upstream");
    }

    #[test]
    fn hash_keys_come_from_the_header_cookie_or_principal() {
        let head = |name: &str, value: &str| {
            Request::builder()
                .header(name, value)
                .body(())
                .expect("request")
                .into_parts()
                .0
        };
        let by_cookie = upstream(
            "endpoints = [\"http://127.0.0.1:9\"]\nbalance = \"hash\"\nhash_by = \"cookie:sid\"\n",
        );
        let key = by_cookie.header_key(&head("cookie", "a=1; sid=xyz"));
        assert_eq!(key, Some(balance::hash(b"xyz")));
        assert_eq!(by_cookie.header_key(&head("cookie", "a=1")), None);
        let by_principal = upstream(
            "endpoints = [\"http://127.0.0.1:9\"]\nbalance = \"hash\"\nhash_by = \"principal\"\n",
        );
        assert_eq!(
            by_principal.hash_key_of(Some("alice")),
            Some(balance::hash(b"alice"))
        );
        assert_eq!(by_principal.header_key(&head("x-user", "bob")), None);
    }
}
