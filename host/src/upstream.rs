//! Named upstreams: endpoints chosen round-robin, a pooled keep-alive client per upstream
//! (HTTP/1.1, h2c, or HTTPS with ALPN), connect and response-head timeouts, and errors that
//! become 502/504 responses naming the upstream.

use crate::body::Body;
use crate::config::{Limits, UpstreamConfig, UpstreamProtocol};
use crate::tls;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Endpoint {
    scheme: Scheme,
    authority: Authority,
}

pub struct Upstream {
    pub name: String,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    /// One pool per worker thread, so connections stay on the thread that uses them.
    clients: Vec<Client<HttpsConnector<HttpConnector>, Body>>,
    request_timeout: Duration,
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
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

impl Upstream {
    /// Builds the upstream's client. `ca_file` and `client_cert` (certificate, key) are already
    /// resolved against the config's directory.
    pub fn new(
        name: &str,
        cfg: &UpstreamConfig,
        limits: &Limits,
        ca_file: Option<&Path>,
        client_cert: Option<(&Path, &Path)>,
        workers: usize,
    ) -> Result<Upstream, String> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|ep| {
                let uri = crate::config::check_endpoint(ep.get_ref())?;
                let parts = uri.into_parts();
                Ok(Endpoint {
                    scheme: parts.scheme.unwrap_or(Scheme::HTTP),
                    authority: parts
                        .authority
                        .ok_or_else(|| format!("no host in {ep:?}"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(
            cfg.connect_timeout.unwrap_or(limits.connect_timeout).0,
        ));
        let tls = tls::client_config(ca_file, client_cert).map_err(|e| e.to_string())?;
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = match cfg.protocol {
            UpstreamProtocol::Auto => builder.enable_all_versions().wrap_connector(http),
            UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
            UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(http),
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        if cfg.protocol == UpstreamProtocol::Http2 {
            client.http2_only(true);
        }
        Ok(Upstream {
            name: name.to_string(),
            endpoints,
            next: AtomicUsize::new(0),
            clients: (0..workers.max(1))
                .map(|_| client.build(connector.clone()))
                .collect(),
            request_timeout: cfg.request_timeout.unwrap_or(limits.request_timeout).0,
        })
    }

    fn pick(&self) -> &Endpoint {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len().max(1);
        &self.endpoints[i]
    }

    /// Sends `req` (whose URI holds only path and query) to the next endpoint and waits for the
    /// response head, at most the request timeout.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        let ep = self.pick().clone();
        let endpoint = format!("{}://{}", ep.scheme, ep.authority);
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(ep.scheme);
        parts.authority = Some(ep.authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| UpstreamError::Failed {
            upstream: self.name.clone(),
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        // The client sets Host (HTTP/1.1) or :authority (HTTP/2) from the endpoint; the
        // client's own host travels in x-forwarded-host.
        req.headers_mut().remove(http::header::HOST);
        *req.version_mut() = http::Version::HTTP_11;

        let client = &self.clients[crate::worker::current() % self.clients.len()];
        match tokio::time::timeout(self.request_timeout, client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
                endpoint,
            }),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&self.name, endpoint, &e)),
        }
    }
}

fn classify(
    upstream: &str,
    endpoint: String,
    err: &hyper_util::client::legacy::Error,
) -> UpstreamError {
    let mut reason = err.to_string();
    let mut timed_out = false;
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            timed_out = true;
        }
        source = s.source();
    }
    let upstream = upstream.to_string();
    if timed_out {
        UpstreamError::Timeout { upstream, endpoint }
    } else if err.is_connect() {
        UpstreamError::Unreachable {
            upstream,
            endpoint,
            reason,
        }
    } else {
        UpstreamError::Failed {
            upstream,
            endpoint,
            reason,
        }
    }
}
