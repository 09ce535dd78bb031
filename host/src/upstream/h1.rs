//! Pooled HTTP/1.1 connections to plain `http://` endpoints, one idle list per endpoint and
//! worker, on hyper's connection API.
//!
//! Why not hyper-util's pooled client for these: per request it locks a pool keyed by a hashed
//! `(scheme, authority)`, and, because a response body is still streaming when its head
//! arrives, it spawns a task that puts the connection back once it is idle. Here the worker
//! takes a connection from its own list and the response body ([`super::UpstreamBody`]) puts it
//! back when it ends; it is ready again by the next request (at once, in practice; one that is
//! not, after a yield, is left to finish and close). TLS and HTTP/2 endpoints keep hyper-util's
//! client.
//!
//! A connection is never put back after a response that did not end (a body dropped early, an
//! error, an upgrade): it is dropped, and hyper closes it. One whose server closed it, or idle
//! for longer than the upstream's `pool_idle_timeout`, is never used again: dropped when next
//! taken, and closed by the reaper task, which looks every quarter of that timeout, so that the
//! gateway closes an idle connection before the server does.

use super::client::{Failure, classify_chain};
use super::{Endpoint, UpstreamError};
use crate::body::Body;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// The idle connections of one upstream's `http://` endpoints.
pub(crate) struct H1Pool {
    connector: HttpConnector,
    /// By endpoint (`None`: not plain HTTP/1.1).
    idle: Vec<Option<Shards>>,
    idle_timeout: Duration,
    /// Idle connections kept per endpoint and worker.
    max_idle: usize,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// One endpoint's idle connections, by worker.
type Shards = Box<[Mutex<Vec<Idle>>]>;

/// A connection in use: the response body gives it back with [`Lent::give_back`] when it ends.
pub(crate) struct Lent {
    pool: Arc<H1Pool>,
    endpoint: usize,
    worker: usize,
    sender: SendRequest<Body>,
}

impl Lent {
    pub(crate) fn give_back(self) {
        let Some(Some(shards)) = self.pool.idle.get(self.endpoint) else {
            return;
        };
        if let Ok(mut idle) = shards[self.worker].lock()
            && idle.len() < self.pool.max_idle
        {
            idle.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

impl H1Pool {
    /// A pool for the endpoints that `eligible` says are plain HTTP/1.1, or `None` if none is.
    pub(crate) fn new(
        connector: HttpConnector,
        eligible: &[bool],
        workers: usize,
        idle_timeout: Duration,
        max_idle: Option<usize>,
    ) -> Option<Arc<H1Pool>> {
        eligible.iter().any(|e| *e).then(|| {
            let shards = || {
                (0..workers.max(1))
                    .map(|_| Mutex::new(Vec::new()))
                    .collect()
            };
            let pool = Arc::new(H1Pool {
                connector,
                idle: eligible.iter().map(|e| e.then(shards)).collect(),
                idle_timeout,
                max_idle: max_idle.unwrap_or(usize::MAX),
            });
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(reap(Arc::downgrade(&pool), idle_timeout));
            }
            pool
        })
    }

    /// Closes the connections idle for longer than `idle_timeout`.
    fn close_expired(&self) {
        for shard in self.idle.iter().flatten().flat_map(|s| s.iter()) {
            if let Ok(mut idle) = shard.lock() {
                idle.retain(|c| c.since.elapsed() <= self.idle_timeout && !c.sender.is_closed());
            }
        }
    }

    /// Whether endpoint `i` goes through this pool.
    pub(crate) fn serves(&self, i: usize) -> bool {
        matches!(self.idle.get(i), Some(Some(_)))
    }

    /// Sends `req` (its URI absolute, as for hyper-util's client) on an idle connection to
    /// endpoint `i`, or a new one; returns the response head and the connection to give back.
    pub(crate) async fn send(
        self: &Arc<Self>,
        upstream: &str,
        i: usize,
        ep: &Endpoint,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lent), (UpstreamError, Failure)> {
        let worker = crate::worker::current();
        let mut sender = match self.idle_connection(i, worker).await {
            Some(sender) => sender,
            None => self.connect(upstream, ep).await?,
        };
        origin_form(&mut req, ep);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| classify_chain(upstream, &ep.label, &e, false))?;
        let worker = worker % self.shards(i);
        let lent = Lent {
            pool: self.clone(),
            endpoint: i,
            worker,
            sender,
        };
        Ok((resp, lent))
    }

    fn shards(&self, i: usize) -> usize {
        self.idle
            .get(i)
            .and_then(Option::as_ref)
            .map_or(1, |s| s.len())
    }

    /// The most recently returned connection of this worker that is still open and ready.
    async fn idle_connection(&self, i: usize, worker: usize) -> Option<SendRequest<Body>> {
        let shards = self.idle.get(i)?.as_ref()?;
        let shard = &shards[worker % shards.len()];
        loop {
            let idle = shard.lock().ok()?.pop()?;
            if idle.sender.is_closed() || idle.since.elapsed() > self.idle_timeout {
                continue;
            }
            // Given back when its response body ended, it is ready once its connection task has
            // run past that end (at once, in practice; else after a yield). One still busy (a
            // request body still going up after an early answer) is left to finish and close:
            // waiting for it could hold this request until its timeout.
            if !idle.sender.is_ready() {
                tokio::task::yield_now().await;
            }
            if idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
    }

    async fn connect(
        &self,
        upstream: &str,
        ep: &Endpoint,
    ) -> Result<SendRequest<Body>, (UpstreamError, Failure)> {
        let uri = http::Uri::builder()
            .scheme(ep.scheme.clone())
            .authority(ep.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| unreachable(upstream, ep, e.to_string()))?;
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| classify_chain(upstream, &ep.label, &e, true))?;
        let (sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(io)
            .await
            .map_err(|e| classify_chain(upstream, &ep.label, &e, true))?;
        let label = ep.label.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = &*label, error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Until the pool is dropped (with its upstream's snapshot): closes expired idle connections.
async fn reap(pool: std::sync::Weak<H1Pool>, idle_timeout: Duration) {
    let period = (idle_timeout / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.close_expired();
    }
}

fn unreachable(upstream: &str, ep: &Endpoint, reason: String) -> (UpstreamError, Failure) {
    let e = UpstreamError::Unreachable {
        upstream: upstream.to_string(),
        endpoint: ep.label.to_string(),
        reason,
    };
    (e, Failure::Connect)
}

/// The request as it goes on the wire: an origin-form target and `Host` naming the endpoint (its
/// port only when not 80), as hyper-util's client writes them.
fn origin_form(req: &mut Request<Body>, ep: &Endpoint) {
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *req.uri_mut() = http::Uri::from(pq);
    let host = match ep.authority.port_u16() {
        None | Some(80) => ep.authority.host(),
        Some(_) => ep.authority.as_str(),
    };
    if let Ok(v) = HeaderValue::from_str(host) {
        req.headers_mut().insert(http::header::HOST, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_origin_form_and_host_names_the_endpoint() {
        let ep = |url: &str| {
            let uri: http::Uri = url.parse().expect("url");
            let parts = uri.into_parts();
            Endpoint {
                scheme: parts.scheme.expect("scheme"),
                authority: parts.authority.expect("authority"),
                label: url.into(),
                weight: 1,
                state: Default::default(),
            }
        };
        let cases = [
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/a?b=1",
                "/a?b=1",
                "127.0.0.1:8080",
            ),
            (
                "http://example.com:80",
                "http://example.com:80/",
                "/",
                "example.com",
            ),
            ("http://[::1]:9", "http://[::1]:9/x", "/x", "[::1]:9"),
        ];
        for (endpoint, uri, target, host) in cases {
            let mut req = Request::new(crate::body::empty());
            *req.uri_mut() = uri.parse().expect("uri");
            origin_form(&mut req, &ep(endpoint));
            assert_eq!(req.uri().to_string(), target, "{endpoint}");
            assert_eq!(req.headers()[http::header::HOST], host, "{endpoint}");
        }
    }
}
