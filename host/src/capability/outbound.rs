//! The `outbound` capability: HTTP calls from a plugin to the named upstreams it was granted.
//!
//! The target is always an upstream from the config, never a URL: the plugin gives a name and a
//! path, the host picks the endpoint and sets `host`/`:authority` from it (a `host` header from
//! the plugin is dropped, hop-by-hop headers too). Each call runs as its own tokio task, so it
//! proceeds while the plugin goes on; waiting for it suspends only the plugin's fiber.

use crate::upstream::{Upstream, UpstreamBody, UpstreamError};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Calls one instance may have in flight at once; more is refused as an invalid request.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// Why an outbound call failed; mirrors `outbound-error` in the WIT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutboundError {
    #[error("upstream \"{0}\" is not granted to this plugin")]
    NotGranted(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Failed(String),
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("this call was already waited for")]
    AlreadyConsumed,
}

/// What a plugin asked to send, as plain data (from `outgoing-request`).
pub(crate) struct CallSpec {
    pub(crate) upstream: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout_ms: Option<u32>,
}

/// The upstreams one plugin may call.
#[derive(Default)]
pub struct OutboundGrant {
    upstreams: HashMap<String, Arc<Upstream>>,
}

impl OutboundGrant {
    pub(crate) fn new(upstreams: HashMap<String, Arc<Upstream>>) -> OutboundGrant {
        OutboundGrant { upstreams }
    }

    /// The granted upstreams' names.
    pub(crate) fn names(&self) -> Vec<String> {
        self.upstreams.keys().cloned().collect()
    }

    /// Checks the grant and the request, then starts the call.
    pub(crate) fn start(&self, spec: CallSpec) -> Result<PendingCall, OutboundError> {
        let Some(upstream) = self.upstreams.get(&spec.upstream).cloned() else {
            return Err(OutboundError::NotGranted(spec.upstream));
        };
        let (head, body) = build(&spec)?;
        let timeout = spec
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        let task = tokio::spawn(async move {
            // A plugin's call has no selection key: a hashing upstream balances it as
            // `least-request` would.
            let sent = async {
                let payload = crate::upstream::Payload::Bytes(body);
                let opts = crate::upstream::SendOptions::default();
                upstream.send(head, payload, opts).await.result
            };
            let result = match timeout {
                Some(t) => match tokio::time::timeout(t, sent).await {
                    Ok(r) => r,
                    Err(_) => return Err(OutboundError::Timeout),
                },
                None => sent.await,
            };
            result.map_err(|e| match e {
                UpstreamError::Timeout { .. } => OutboundError::Timeout,
                other => OutboundError::Failed(other.to_string()),
            })
        });
        Ok(PendingCall {
            upstream: spec.upstream,
            task: Some(task),
            read_timeout: timeout.unwrap_or(Duration::from_secs(60)),
        })
    }
}

fn build(spec: &CallSpec) -> Result<(http::request::Parts, Bytes), OutboundError> {
    let invalid = |m: String| OutboundError::InvalidRequest(m);
    let method = Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| invalid(format!("method {:?}", spec.method)))?;
    if !spec.path.starts_with('/') {
        return Err(invalid(format!("path {:?} must start with '/'", spec.path)));
    }
    let uri: http::Uri = spec
        .path
        .parse::<http::uri::PathAndQuery>()
        .map_err(|_| invalid(format!("path {:?}", spec.path)))?
        .into();
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| invalid(format!("header name {k:?}")))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| invalid(format!("value of header {k}")))?;
        headers.append(name, value);
    }
    // The endpoint decides where this goes: no Host tricks, no connection-level headers.
    headers.remove(http::header::HOST);
    crate::headers::strip_hop_by_hop(headers, false);
    if !spec.body.is_empty() {
        headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(spec.body.len()),
        );
    }
    Ok((req.into_parts().0, Bytes::from(spec.body.clone())))
}

/// A call in flight (`pending-response`). Dropping it cancels the call.
pub struct PendingCall {
    pub(crate) upstream: String,
    task: Option<JoinHandle<Result<Response<UpstreamBody>, OutboundError>>>,
    read_timeout: Duration,
}

impl PendingCall {
    /// Waits for the response head.
    pub(crate) async fn wait(&mut self) -> Result<IncomingCall, OutboundError> {
        let task = self.task.take().ok_or(OutboundError::AlreadyConsumed)?;
        let response = task
            .await
            .map_err(|e| OutboundError::Failed(format!("call task failed: {e}")))??;
        let (parts, body) = response.into_parts();
        Ok(IncomingCall {
            status: parts.status.as_u16(),
            headers: crate::headers::to_fields(&parts.headers),
            body: Some(body),
            read_timeout: self.read_timeout,
        })
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A response whose head arrived (`incoming-response`).
pub struct IncomingCall {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    body: Option<UpstreamBody>,
    /// Longest wait for the next chunk.
    read_timeout: Duration,
}

impl IncomingCall {
    /// The next data chunk, `None` at the end. Trailers are skipped.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, OutboundError> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            let frame = tokio::time::timeout(self.read_timeout, body.frame())
                .await
                .map_err(|_| OutboundError::Timeout)?;
            match frame {
                None => {
                    self.body = None;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.body = None;
                    return Err(OutboundError::Failed(format!("reading body: {e}")));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The body itself, to be read without this call's read timeout (a stream that may be
    /// quiet for long, see [`super::events`]).
    pub(crate) fn into_body(mut self) -> Option<UpstreamBody> {
        self.body.take()
    }

    /// The rest of the body, at most `limit` bytes.
    pub(crate) async fn read_body(&mut self, limit: u32) -> Result<Vec<u8>, OutboundError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if out.len() + chunk.len() > limit as usize {
                self.body = None;
                return Err(OutboundError::TooLarge(u64::from(limit)));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
