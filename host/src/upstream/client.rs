//! The HTTP clients of one upstream (a pooled one per worker, an unpooled one per worker for
//! the retry after a stale pooled connection, one for health checks) and what their errors
//! mean for retries and ejection.

use super::{HttpClient, UpstreamError};
use crate::config::{Limits, UpstreamConfig, UpstreamProtocol, defaults};
use crate::tls;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::Path;

/// The clients `Upstream::new` needs.
pub(crate) struct Clients {
    /// The plain-TCP connector, for the HTTP/1.1 pool of `http://` endpoints (`h1.rs`).
    pub(crate) tcp: HttpConnector,
    /// How long pooled connections may stay idle (`pool_idle_timeout`).
    pub(crate) idle_timeout: std::time::Duration,
    pub(crate) pooled: Vec<HttpClient>,
    pub(crate) fresh: Vec<HttpClient>,
    pub(crate) checks: HttpClient,
}

pub(crate) fn build(
    cfg: &UpstreamConfig,
    limits: &Limits,
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    workers: usize,
) -> Result<Clients, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(
        cfg.connect_timeout.unwrap_or(limits.connect_timeout).0,
    ));
    let tcp = http.clone();
    let tls = tls::client_config(ca_file, client_cert).map_err(|e| e.to_string())?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = match cfg.protocol {
        UpstreamProtocol::Auto => builder.enable_all_versions().wrap_connector(http),
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
        UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(http),
    };
    let idle = cfg
        .pool_idle_timeout
        .map_or(defaults::POOL_IDLE_TIMEOUT, |m| m.0);
    let mut pooled = Client::builder(TokioExecutor::new());
    pooled
        .pool_idle_timeout(idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if let Some(max) = &cfg.max_connections {
        pooled.pool_max_idle_per_host(*max.get_ref());
    }
    let mut fresh = Client::builder(TokioExecutor::new());
    fresh.pool_max_idle_per_host(0).timer(TokioTimer::new());
    if cfg.protocol == UpstreamProtocol::Http2 {
        pooled.http2_only(true);
        fresh.http2_only(true);
    }
    let workers = workers.max(1);
    Ok(Clients {
        tcp,
        idle_timeout: idle,
        pooled: (0..workers)
            .map(|_| pooled.build(connector.clone()))
            .collect(),
        fresh: (0..workers)
            .map(|_| fresh.build(connector.clone()))
            .collect(),
        checks: fresh.build(connector),
    })
}

/// What kind of failure a client error was, for retries and outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Timeout,
    /// The connection closed or reset before the response head: also the way a pooled
    /// connection the server had just closed fails (closed before the message completed, reset,
    /// broken pipe, or canceled before it was sent).
    Reset,
    Other,
}

pub(crate) fn classify(
    upstream: &str,
    endpoint: &str,
    err: &hyper_util::client::legacy::Error,
) -> (UpstreamError, Failure) {
    classify_chain(upstream, endpoint, err, err.is_connect())
}

/// Classifies an error by its chain of sources: timeouts, resets of a connection the server had
/// closed, and (when `connecting`) failures to reach the endpoint.
pub(crate) fn classify_chain(
    upstream: &str,
    endpoint: &str,
    err: &(dyn std::error::Error + 'static),
    connecting: bool,
) -> (UpstreamError, Failure) {
    let mut reason = err.to_string();
    let (mut timed_out, mut stale) = (false, false);
    let mut source = Some(err);
    while let Some(s) = source {
        if !std::ptr::addr_eq(s, err) {
            reason = format!("{reason}: {s}");
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            timed_out |= io.kind() == TimedOut;
            stale |= matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted);
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            stale |= h.is_incomplete_message() || h.is_canceled();
        }
        source = s.source();
    }
    let (upstream, endpoint) = (upstream.to_string(), endpoint.to_string());
    if timed_out {
        (
            UpstreamError::Timeout { upstream, endpoint },
            Failure::Timeout,
        )
    } else if connecting {
        let e = UpstreamError::Unreachable {
            upstream,
            endpoint,
            reason,
        };
        (e, Failure::Connect)
    } else {
        let kind = if stale || reason.contains("connection closed") {
            Failure::Reset
        } else {
            Failure::Other
        };
        let e = UpstreamError::Failed {
            upstream,
            endpoint,
            reason,
        };
        (e, kind)
    }
}
