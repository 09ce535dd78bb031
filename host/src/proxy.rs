//! The request path, top to bottom:
//!
//! listener → **route** → limits → hop-by-hop + rewrite + `x-forwarded-*` → (buffer body if a
//! plugin asked) → **request chain** → **upstream** (or the local response; the request body
//! streams up through plugins that asked for it chunk by chunk) → (buffer response body if
//! asked) → **response chain** (reverse) → client (the response body streaming through plugins
//! that asked for it).
//!
//! Everything that can go wrong here ends as a response to the client: 404 (no route), 413/431
//! (limits), 500 naming the plugin (fail-closed), 502/504 naming the upstream.
//!
//! Around it: a trace span per request, per hook and per upstream attempt (`telemetry`), the
//! request metrics and the access log (`handle`).

use crate::body::{self, Body, CollectError, Limited};
use crate::chain::{ChainRun, Local, RequestOutcome, replace_response};
use crate::exchange::{Context, Exchange, Phase};
use crate::headers;
use crate::plugin::Direction;
use crate::snapshot::Snapshot;
use crate::stream;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub scheme: &'static str,
    /// The verified client certificate's identity (mTLS listeners).
    pub peer: Option<Arc<crate::peer::PeerIdentity>>,
}

/// Who answered, carried on the response for the request metrics and the access log.
#[derive(Clone)]
struct AnsweredBy {
    route: Arc<str>,
    principal: Option<String>,
    upstream: Option<String>,
    trace_id: Option<String>,
}

impl AnsweredBy {
    fn of(ex: &Exchange, upstream: Option<String>) -> AnsweredBy {
        // The rest is for the access log only: not copied when there is none.
        let logged = crate::access_log::access_enabled();
        AnsweredBy {
            route: ex.route.clone(),
            principal: ex.context.principal.clone().filter(|_| logged),
            upstream: upstream.filter(|_| logged),
            trace_id: logged
                .then(|| crate::telemetry::trace_id(&ex.trace))
                .flatten(),
        }
    }
}

/// Handles one request with the snapshot that was current when it arrived.
pub async fn handle(snap: Arc<Snapshot>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let logged = crate::access_log::access_enabled()
        .then(|| (req.method().to_string(), req.uri().path().to_string()));
    let client = conn.client;
    let resp = pipeline(snap, conn, req).await;
    let by = resp.extensions().get::<AnsweredBy>();
    let route = by.map_or("(none)", |r| &*r.route);
    let elapsed = started.elapsed();
    crate::request_metrics::request(route, resp.status().as_u16(), elapsed);
    if let Some((method, path)) = logged {
        crate::access_log::access(serde_json::json!({
            "method": method,
            "path": path,
            "status": resp.status().as_u16(),
            "route": by.map(|b| &*b.route),
            "upstream": by.and_then(|b| b.upstream.as_deref()),
            "principal": by.and_then(|b| b.principal.as_deref()),
            "client": client.ip().to_string(),
            "duration_ms": (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            "trace_id": by.and_then(|b| b.trace_id.as_deref()),
        }));
    }
    resp
}

async fn pipeline(
    snap: Arc<Snapshot>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
) -> Response<Body> {
    // Limits on the head (hyper's own buffer limit cannot go below 8 KiB).
    let target_len = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    let head_size = headers::head_size(req.headers()) + target_len;
    if head_size > snap.limits.max_header_size.as_usize() {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large",
        );
    }
    let upgrade = headers::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let head_request = parts.method == http::Method::HEAD;

    // Route.
    let Some(route) = snap.route(&conn.listener, &parts).cloned() else {
        return error(StatusCode::NOT_FOUND, "no route matches this request");
    };

    // Limits: a declared length over the limit is refused before reading anything.
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body_size) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let (limited, too_large) = Limited::new(incoming, route.max_body_size);

    // Normalise the head before plugins see it.
    let client_host = crate::router::request_host(&parts.uri, &parts.headers).map(str::to_owned);
    headers::strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
    if let Some(rw) = &route.rewrite
        && let Ok(pq) = rw.apply(&parts.uri).parse::<http::uri::PathAndQuery>()
    {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = Some(pq);
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }
    headers::set_forwarded(
        &mut parts.headers,
        conn.client,
        conn.scheme,
        client_host.as_deref(),
    );
    // Upstreams get origin-form; the endpoint supplies scheme and authority.
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(pq);
    }

    // Buffer the body only if a plugin asked for it.
    let mut stream = Some(limited);
    let mut request_body = None;
    if let Some(limit) = route.chain.request_body_limit
        && let Some(whole) = stream.take()
    {
        let limit = limit.min(route.max_body_size);
        match body::collect_limited(Box::pin(whole), limit).await {
            Ok(bytes) => request_body = Some(bytes),
            Err(CollectError::TooLarge(_)) => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            Err(CollectError::Read(_)) if too_large.load(Ordering::Relaxed) => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            Err(CollectError::Read(e)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("reading request body: {e}"),
                );
            }
        }
    }

    // Request chain.
    let trace = crate::telemetry::request(&parts, &route.name, conn.client);
    let mut ex = Box::new(Exchange {
        phase: Phase::Request,
        request: parts,
        request_body,
        response: None,
        response_body: None,
        context: match &conn.peer {
            Some(peer) => Context {
                principal: peer.principal().map(str::to_owned),
                attributes: peer.attributes(),
            },
            None => Context::default(),
        },
        client_addr: conn.client,
        authority: client_host,
        scheme: conn.scheme,
        route: route.name.clone(),
        trace,
        late_trace: Default::default(),
    });
    let mut run = ChainRun::new(route.clone());
    let outcome;
    (ex, outcome) = run
        .request_phase(ex, |name| snap.upstreams.contains_key(name))
        .await;

    // Upstream, or the local response.
    let mut upstream_name = None;
    let mut upstream_body: Option<Incoming> = None;
    let mut upstream_upgrade = None;
    match outcome {
        RequestOutcome::Respond(local) => replace_response(&mut ex, local),
        RequestOutcome::Forward { upstream } => {
            let target = match upstream {
                Some(name) => snap.upstreams.get(&name).cloned(),
                None => route.upstream.clone(),
            };
            let Some(target) = target else {
                return finish_local(
                    &mut run,
                    ex,
                    Local::text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "weir: route \"{}\" has no upstream and no plugin answered\n",
                            route.name
                        ),
                    ),
                )
                .await;
            };
            let head = if run.has_response_hooks() {
                Exchange::request_head_copy(&ex.request)
            } else {
                std::mem::replace(&mut ex.request, http::Request::new(()).into_parts().0)
            };
            let (mut head, mut out_body) = match ex.request_body.clone() {
                Some(bytes) => {
                    let mut head = head;
                    set_length(&mut head.headers, bytes.len());
                    (head, body::full(bytes))
                }
                None => (head, stream.take().map_or_else(body::empty, body::boxed)),
            };
            // Plugins that stream the request body see it on its way up.
            let streamers = run.request_streamers();
            if !streamers.is_empty() {
                head.headers.remove(http::header::CONTENT_LENGTH);
                out_body =
                    stream::filter(out_body, Direction::Request, streamers, route.name.clone());
            }
            upstream_name = crate::access_log::access_enabled().then(|| target.name.clone());
            let attempt = crate::telemetry::upstream(&ex.trace, &target.name, &mut head.headers);
            let sent = target.send(Request::from_parts(head, out_body)).await;
            crate::telemetry::end_upstream(
                attempt,
                sent.as_ref()
                    .map(|r| r.status().as_u16())
                    .map_err(ToString::to_string),
            );
            crate::request_metrics::upstream(
                &target.name,
                match &sent {
                    Ok(_) => "ok",
                    Err(crate::upstream::UpstreamError::Timeout { .. }) => "timeout",
                    Err(_) => "error",
                },
            );
            match sent {
                Ok(mut resp) => {
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        upstream_upgrade = Some(hyper::upgrade::on(&mut resp));
                    }
                    let (parts, incoming) = resp.into_parts();
                    ex.response = Some(parts);
                    upstream_body = Some(incoming);
                }
                Err(e) => {
                    let status = if too_large.load(Ordering::Relaxed) {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        e.status()
                    };
                    tracing::warn!(route = &*route.name, error = %e, "upstream request failed");
                    let mut local = Local::text(status, format!("weir: {e}\n"));
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        local = Local::text(status, "weir: request body too large\n".into());
                    }
                    replace_response(&mut ex, local);
                }
            }
        }
    }

    // Response chain.
    let mut streamers = Vec::new();
    if run.is_active() {
        if run.has_response_hooks()
            && let Some(limit) = route.chain.response_body_limit
            && let Some(incoming) = upstream_body.take()
        {
            match body::collect_limited(incoming, limit).await {
                Ok(bytes) => ex.response_body = Some(bytes),
                Err(e) => replace_response(
                    &mut ex,
                    Local::text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "weir: upstream response body could not be buffered for plugins: {e}\n"
                        ),
                    ),
                ),
            }
        }
        ex.phase = Phase::Response;
        (ex, streamers) = run.response_phase(ex).await;
    }
    drop(run);

    // To the client.
    let mut parts = ex
        .response
        .take()
        .unwrap_or_else(|| http::Response::new(()).into_parts().0);
    crate::telemetry::finish_request(&ex.trace, parts.status.as_u16(), &ex.context);
    let is_upgrade = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    headers::strip_hop_by_hop(&mut parts.headers, is_upgrade);
    let body = match (ex.response_body.take(), upstream_body) {
        (Some(bytes), _) => {
            // A HEAD answer or a 204/304 keeps the upstream's framing headers as they were.
            if !head_request && !matches!(parts.status.as_u16(), 204 | 304) {
                set_length(&mut parts.headers, bytes.len());
            }
            body::full(bytes)
        }
        (None, Some(incoming)) => body::boxed(incoming),
        (None, None) => body::empty(),
    };
    // Plugins that stream the response body see it on its way down; its length may change.
    let body = if streamers.is_empty() || head_request {
        body
    } else {
        parts.headers.remove(http::header::CONTENT_LENGTH);
        stream::filter(body, Direction::Response, streamers, route.name.clone())
    };
    // A broken event stream ends with an error event, not as if it were complete.
    let body = if crate::sse::is_event_stream(&parts.headers) && !head_request {
        crate::sse::with_error_event(body)
    } else {
        body
    };
    if let (true, Some(down), Some(up)) = (is_upgrade, upgrade, upstream_upgrade) {
        tokio::spawn(tunnel(down, up));
    }
    // The request span ends when the body has gone (body hooks may still add attributes).
    let body = crate::telemetry::end_with_body(body, ex.trace.clone(), ex.late_trace.clone());
    let mut resp = Response::from_parts(parts, body);
    resp.extensions_mut()
        .insert(AnsweredBy::of(&ex, upstream_name));
    resp
}

/// Runs the response chain on a local response and returns it.
async fn finish_local(run: &mut ChainRun, mut ex: Box<Exchange>, local: Local) -> Response<Body> {
    replace_response(&mut ex, local);
    if run.has_response_hooks() {
        ex.phase = Phase::Response;
        // A gateway error is not streamed through plugins.
        (ex, _) = run.response_phase(ex).await;
    }
    let parts = ex
        .response
        .take()
        .unwrap_or_else(|| http::Response::new(()).into_parts().0);
    let bytes = ex.response_body.take().unwrap_or_default();
    crate::telemetry::finish_request(&ex.trace, parts.status.as_u16(), &ex.context);
    crate::telemetry::end_request(&ex.trace, &ex.late_trace);
    let mut resp = Response::from_parts(parts, body::full(bytes.clone()));
    set_length(resp.headers_mut(), bytes.len());
    resp.extensions_mut().insert(AnsweredBy::of(&ex, None));
    resp
}

fn set_length(headers: &mut http::HeaderMap, len: usize) {
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// A short plain-text error from the gateway itself.
pub fn error(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(body::full(Bytes::from(format!("weir: {msg}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Copies bytes both ways between an upgraded client connection and the upstream's.
async fn tunnel(down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut down = hyper_util::rt::TokioIo::new(down);
    let mut up = hyper_util::rt::TokioIo::new(up);
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}
