//! The request path, as named phases. Each phase is one function; each says when it runs and
//! what its failures become. A request passes them top to bottom and leaves through one exit,
//! [`handle`], where the snapshot's [`Observer`] records its metrics and access-log line.
//!
//! | phase | runs | an error there becomes |
//! |---|---|---|
//! | (shedding) | first: the worker is at `max_requests_per_worker` (`overload.rs`) | 503 with `retry-after: 1` |
//! | [`check_head`] | first, on the head as received | 431 |
//! | [`route`] | after the head check | 404 (no route) |
//! | [`check_length`] | once the route (and its body limit) is known | 413 (declared length) |
//! | [`normalise`] | before any plugin sees the head | — (hop-by-hop dropped, rewrite, `x-forwarded-*`, origin-form) |
//! | [`buffer`] | only when a plugin asked for the whole request body | 413 / 400, 408 past `request_body_timeout` |
//! | [`Flight::request_chain`] | plugins' `on-request`, in chain order | a plugin's answer, or 500 naming it (fail-closed) |
//! | [`Flight::forward`] | unless a plugin answered; the body streams up through `streamed` plugins | 502/504 naming the upstream, 413 |
//! | [`Flight::response_chain`] | plugins' `on-response`, in reverse, when any is left | 502 (response body not bufferable), a plugin's replacement, 500 |
//! | [`Flight::into_response`] | last: framing, streamed response plugins, SSE error event, upgrade tunnel | — |
//!
//! Everything that can go wrong ends as a response to the client. Retries happen inside
//! `Upstream::send`, only before any of the response reached the client.

use crate::body::{self, Body, BodyFaults, CollectError, Limited};
use crate::chain::{ChainRun, Local, OwnAnswer, RequestOutcome, replace_response};
use crate::error_body::ErrorStyle;
use crate::exchange::{Context, Exchange, Phase};
use crate::headers;
use crate::observe::Answered;
use crate::plugin::Direction;
use crate::snapshot::{Route, Snapshot};
use crate::stream;
use crate::upstream::{Payload, SendOptions, Upstream, UpstreamBody};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) listener: Arc<str>,
    pub(crate) client: SocketAddr,
    /// `client`'s address as an `x-forwarded-for` entry, formatted once per connection.
    pub(crate) client_address: http::HeaderValue,
    pub(crate) scheme: &'static str,
    /// The verified client certificate's identity (mTLS listeners).
    pub(crate) peer: Option<Arc<crate::peer::PeerIdentity>>,
    /// The requests in flight on this connection's worker.
    pub(crate) in_flight: crate::overload::InFlight,
}

/// Handles one request with the snapshot that was current when it arrived. The one exit.
pub(crate) async fn handle(
    snap: Arc<Snapshot>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let observer = snap.observer.clone();
    let start = observer.request_started(&req, conn.client);
    // Phase: shedding. The admission is held until the response head is returned.
    let (resp, answered) = match conn.in_flight.admit(snap.limits.max_requests_per_worker) {
        None => {
            observer.shed("max_requests_per_worker");
            (overloaded(), Answered::default())
        }
        Some(_admitted) => serve(snap, &conn, req).await,
    };
    observer.request_finished(start, resp.status().as_u16(), &answered);
    resp
}

/// An admitted request: its phases, or the gateway's own answer when one refused it.
async fn serve(
    snap: Arc<Snapshot>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> (Response<Body>, Answered) {
    let http1 = req.version() < http::Version::HTTP_2;
    match admit(snap, conn, req).await {
        Ok((flight, ex)) => flight.run(ex).await,
        Err(Refusal { refused, style }) => {
            let Refused(status, msg) = refused;
            let mut resp = error(style, status, &msg);
            if status == StatusCode::REQUEST_TIMEOUT && http1 {
                // The rest of the body is still on its way: this connection cannot carry
                // another request. (HTTP/2 resets just the stream.)
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            (resp, Answered::default())
        }
    }
}

/// The phases before any plugin runs: the head checked, made canonical, routed, normalised,
/// the body buffered if a plugin asked. An `Err` is the gateway's own answer.
async fn admit(
    snap: Arc<Snapshot>,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
) -> Result<(Flight, Box<Exchange>), Refusal> {
    check_head(&snap, &req)?;
    let client_upgrade = headers::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let raw_target = canonicalise(&snap, conn, &mut parts)?;
    let route = route(&snap, conn, &parts)?;
    let style = ErrorStyle::resolve(route.error_format, parts.uri.path(), &parts.headers);
    let styled = |refused| Refusal { refused, style };
    check_length(&route, &parts).map_err(styled)?;
    let (limited, faults) = Limited::new(incoming, route.max_body_size);
    let trusted = snap.forwarded.trusts(conn.client.ip());
    let authority = normalise(&route, conn, &mut parts, client_upgrade.is_some(), trusted);
    let body_timeout = snap.limits.request_body_timeout.0;
    let (request_body, streaming) = buffer(&route, limited, &faults, body_timeout)
        .await
        .inspect_err(|Refused(status, _)| {
            if *status == StatusCode::REQUEST_TIMEOUT {
                snap.observer.timed_out(&conn.listener, "request_body");
            }
        })
        .map_err(styled)?;
    let observer = snap.observer.clone();
    let head_request = parts.method == http::Method::HEAD;
    let mut context = peer_context(conn);
    if let Some(raw) = raw_target {
        context.attributes.insert(RAW_TARGET.into(), raw);
    }
    let ex = Box::new(Exchange {
        phase: Phase::Request,
        trace: observer.request_span(&parts, &route.name, conn.client),
        request: parts,
        request_body,
        response: None,
        response_body: None,
        context,
        client_addr: conn.client,
        authority,
        scheme: conn.scheme,
        route: route.name.clone(),
        late_trace: Default::default(),
        merged: None,
        paths: snap.paths,
    });
    let run = ChainRun::new(route.chain.clone(), route.name.clone(), observer);
    let flight = Flight {
        snap,
        route,
        run,
        style,
        head_request,
        client_upgrade,
        streaming,
        faults,
        upstream: None,
        upstream_body: None,
        merged: None,
        upstream_upgrade: None,
    };
    Ok((flight, ex))
}

/// The context attribute holding the request target as the client sent it, set only when it
/// differs from the canonical one (for plugins that must see the raw spelling).
const RAW_TARGET: &str = "weir.raw-target";

/// The gateway's own answer before any plugin ran: a status and a short message.
struct Refused(StatusCode, Cow<'static, str>);

/// A refusal and the format its answer takes (the route's, once a route is known).
struct Refusal {
    refused: Refused,
    style: ErrorStyle,
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Refusal {
        Refusal {
            refused,
            style: ErrorStyle::Text,
        }
    }
}

/// Phase: the request target in its one canonical form (see `canonical.rs`), before routing
/// and before any plugin sees it; the upstream gets the same form. Refuses what has none
/// (400), `CONNECT` (405: the gateway does not tunnel) and a request without exactly one host
/// (400). Returns the target as sent when it differed.
fn canonicalise(
    snap: &Snapshot,
    conn: &ConnInfo,
    parts: &mut http::request::Parts,
) -> Result<Option<String>, Refused> {
    let bad = |msg: String| Refused(StatusCode::BAD_REQUEST, msg.into());
    if parts.method == http::Method::CONNECT {
        return Err(Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: the gateway does not tunnel".into(),
        ));
    }
    // `Some` only when the host field must be (re)written.
    let host = match one_host(parts)? {
        None => None,
        Some((given, in_field)) => match crate::canonical::host(given, conn.scheme) {
            Ok(Cow::Borrowed(_)) if in_field => None,
            Ok(h) => Some(h.into_owned()),
            Err(e) => return Err(bad(e.to_string())),
        },
    };
    let raw = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let (raw_path, query) = raw
        .split_once('?')
        .map_or((raw, None), |(p, q)| (p, Some(q)));
    let path = crate::canonical::path(raw_path, &snap.paths).map_err(|e| bad(e.to_string()))?;
    let changed = matches!(path, Cow::Owned(_));
    let raw_target = changed.then(|| raw.to_string());
    if changed {
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        parts.uri = target
            .parse()
            .map_err(|_| bad("the request target is not valid".into()))?;
    } else if parts.uri.authority().is_some()
        && let Some(pq) = parts.uri.path_and_query().cloned()
    {
        // Origin-form: the canonical host goes in the `Host` field below, and routing must
        // not read the authority as the client spelled it.
        parts.uri = http::Uri::from(pq);
    }
    if let Some(h) = host {
        let value = HeaderValue::from_str(&h).map_err(|_| bad(format!("invalid host {h:?}")))?;
        parts.headers.insert(http::header::HOST, value);
    }
    Ok(raw_target)
}

/// The one host of a request: the target's authority (HTTP/2 `:authority`, an absolute-form
/// target) or the `Host` field. More than one `Host`, a `Host` that differs from the
/// authority, or an HTTP/1.1 request without any is malformed (RFC 9112 §3.2, RFC 9113
/// §8.3.1). Says whether it came from the `Host` field (else it must be written there).
fn one_host(parts: &http::request::Parts) -> Result<Option<(&str, bool)>, Refused> {
    let bad = |msg: &'static str| Refused(StatusCode::BAD_REQUEST, msg.into());
    let mut fields = parts.headers.get_all(http::header::HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err(bad("more than one Host field"));
    }
    let field = field
        .map(|v| v.to_str().map_err(|_| bad("the Host field is not text")))
        .transpose()?;
    match (parts.uri.authority(), field) {
        (Some(a), Some(h))
            if parts.version >= http::Version::HTTP_2 && !a.as_str().eq_ignore_ascii_case(h) =>
        {
            Err(bad("the Host field differs from :authority"))
        }
        (Some(a), _) => Ok(Some((a.as_str(), false))),
        (None, Some(h)) => Ok(Some((h, true))),
        (None, None) if parts.version == http::Version::HTTP_11 => {
            Err(bad("an HTTP/1.1 request needs a Host field"))
        }
        (None, None) => Ok(None),
    }
}

/// Phase: limits on the head as received (hyper's own buffer limit cannot go below 8 KiB).
fn check_head(snap: &Snapshot, req: &Request<Incoming>) -> Result<(), Refused> {
    let target_len = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    let head_size = headers::head_size(req.headers()) + target_len;
    if head_size > snap.limits.max_header_size.as_usize() {
        return Err(Refused(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large".into(),
        ));
    }
    Ok(())
}

/// Phase: the first route, in file order, that serves this listener and matches.
fn route(
    snap: &Snapshot,
    conn: &ConnInfo,
    parts: &http::request::Parts,
) -> Result<Arc<Route>, Refused> {
    snap.route(&conn.listener, parts).cloned().ok_or_else(|| {
        Refused(
            StatusCode::NOT_FOUND,
            "no route matches this request".into(),
        )
    })
}

/// Phase: a declared length over the route's limit is refused before reading anything.
fn check_length(route: &Route, parts: &http::request::Parts) -> Result<(), Refused> {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body_size) {
        return Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".into(),
        ));
    }
    Ok(())
}

/// Phase: the head as plugins and the upstream see it: hop-by-hop fields dropped, the route's
/// rewrite applied, `x-forwarded-*` set (the client's own kept only from a `trusted` proxy),
/// the target in origin-form (the endpoint supplies scheme and authority). Returns the host the
/// client asked for.
fn normalise(
    route: &Route,
    conn: &ConnInfo,
    parts: &mut http::request::Parts,
    upgrade: bool,
    trusted: bool,
) -> Option<String> {
    let client_host = crate::router::request_host(&parts.uri, &parts.headers).map(str::to_owned);
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if let Some(rw) = &route.rewrite
        && let Ok(pq) = rw.apply(&parts.uri).parse::<http::uri::PathAndQuery>()
    {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = Some(pq);
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }
    headers::set_forwarded(
        &mut parts.headers,
        &conn.client_address,
        conn.scheme,
        client_host.as_deref(),
        trusted,
    );
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(pq);
    }
    client_host
}

/// A request body on its way up: still streaming, unless a plugin asked for it whole.
type Streaming = Option<Limited<Incoming>>;

/// Phase: buffers the request body, only if a plugin asked for it (up to the largest size any
/// plugin declared, within the route's limit), within `limits.request_body_timeout` in all: a
/// client trickling a body would otherwise hold the request (and its worker slot) forever.
async fn buffer(
    route: &Route,
    limited: Limited<Incoming>,
    faults: &BodyFaults,
    timeout: std::time::Duration,
) -> Result<(Option<Bytes>, Streaming), Refused> {
    let Some(limit) = route.chain.request_body_limit else {
        return Ok((None, Some(limited)));
    };
    let limit = limit.min(route.max_body_size);
    let Ok(collected) =
        tokio::time::timeout(timeout, body::collect_limited(Box::pin(limited), limit)).await
    else {
        return Err(Refused(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time".into(),
        ));
    };
    match collected {
        Ok(bytes) => Ok((Some(bytes), None)),
        Err(CollectError::TooLarge(_)) => Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".into(),
        )),
        Err(CollectError::Read(_)) if faults.too_large.load(Ordering::Relaxed) => Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".into(),
        )),
        Err(CollectError::Read(e)) => Err(Refused(
            StatusCode::BAD_REQUEST,
            format!("reading request body: {e}").into(),
        )),
    }
}

/// The verified client certificate's identity as the chain's starting context.
fn peer_context(conn: &ConnInfo) -> Context {
    match &conn.peer {
        Some(peer) => Context {
            principal: peer.principal().map(str::to_owned),
            attributes: peer.attributes(),
        },
        None => Context::default(),
    }
}

/// One admitted request, from its first plugin to the response handed to the client.
struct Flight {
    snap: Arc<Snapshot>,
    route: Arc<Route>,
    run: ChainRun,
    /// The format of the gateway's own error answers on this route.
    style: ErrorStyle,
    head_request: bool,
    /// The client's side of an upgrade (WebSocket), if it asked for one.
    client_upgrade: Option<OnUpgrade>,
    /// The request body, unless it was buffered.
    streaming: Streaming,
    /// What went wrong with the streaming body, if anything.
    faults: Arc<BodyFaults>,
    /// The upstream that answered and the tries it took, for the access log.
    upstream: Option<(String, u32)>,
    upstream_body: Option<UpstreamBody>,
    /// A plugin's answer (its body) to be followed by event streams
    /// (`outbound.answer-with-events`).
    merged: Option<(crate::capability::events::MergedEvents, Bytes)>,
    upstream_upgrade: Option<OnUpgrade>,
}

impl Flight {
    async fn run(mut self, ex: Box<Exchange>) -> (Response<Body>, Answered) {
        let snap = self.snap.clone();
        // Phase: the plugins' request hooks, in chain order.
        let (mut ex, outcome) = self
            .run
            .request_phase(ex, |name| snap.upstreams.contains_key(name))
            .await;
        match outcome {
            RequestOutcome::Respond(local) => {
                replace_response(&mut ex, local);
                // A handler's answer may go on with event streams it started.
                if let Some(merged) = ex.merged.take() {
                    let head = ex.response_body.take().unwrap_or_default();
                    if let Some(parts) = ex.response.as_mut() {
                        parts.headers.remove(http::header::CONTENT_LENGTH);
                    }
                    self.merged = Some((merged, head));
                }
            }
            RequestOutcome::Forward { upstream } => self.forward(&mut ex, upstream).await,
        }
        let (ex, streamers) = self.response_chain(ex).await;
        let series = &self.route.series;
        let answered = snap.observer.answered(&ex, series, self.upstream.as_ref());
        (self.into_response(ex, streamers), answered)
    }

    /// Phase: sends the request upstream (the route's, or the one a plugin chose) and keeps its
    /// response head in the exchange; a failure becomes the gateway's 502/504 (or 413).
    async fn forward(&mut self, ex: &mut Exchange, chosen: Option<String>) {
        let target = match chosen {
            Some(name) => self.snap.upstreams.get(&name).cloned(),
            None => self.route.upstream.clone(),
        };
        let Some(target) = target else {
            let msg = format!(
                "weir: route \"{}\" has no upstream and no plugin answered\n",
                self.route.name
            );
            return replace_response(ex, Local::text(StatusCode::BAD_GATEWAY, msg));
        };
        let (mut head, payload) = match self.upstream_request(ex, &target).await {
            Ok(request) => request,
            Err(local) => return replace_response(ex, local),
        };
        let observer = &self.snap.observer;
        let call = observer.upstream_started(&ex.trace, &target.name, &mut head.headers);
        let opts = SendOptions {
            principal: ex.context.principal.as_deref(),
            retry: self.route.retry.as_ref(),
        };
        let sent = target.send(head, payload, opts).await;
        observer.upstream_finished(call, &target.series, &sent.result, sent.attempts);
        if observer.access_enabled() {
            self.upstream = Some((target.name.clone(), sent.attempts));
        }
        match sent.result {
            Ok(mut resp) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    self.upstream_upgrade = Some(hyper::upgrade::on(&mut resp));
                }
                let (parts, incoming) = resp.into_parts();
                ex.response = Some(parts);
                self.upstream_body = Some(incoming);
            }
            Err(e) => {
                tracing::warn!(route = &*self.route.name, error = %e, "upstream request failed");
                let local = if self.faults.too_large.load(Ordering::Relaxed) {
                    let msg = "weir: request body too large\n".to_string();
                    Local::text(StatusCode::PAYLOAD_TOO_LARGE, msg)
                } else if self.faults.broken.load(Ordering::Relaxed) {
                    // The client's body broke (bad framing, a reset): the client's fault.
                    let msg = format!("weir: malformed request body: {e}\n");
                    Local::text(StatusCode::BAD_REQUEST, msg)
                } else {
                    let mut local = Local::text(e.status(), format!("weir: {e}\n"));
                    if let Some(secs) = e.retry_after() {
                        local
                            .headers
                            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
                    }
                    local
                };
                replace_response(ex, local);
            }
        }
    }

    /// The request as the upstream gets it: the head (a copy, when response hooks will still
    /// read it) with the buffered body, or the streaming body through `streamed` plugins. A body
    /// that a retry may need to replay is bytes: buffered by a plugin, absent, or small enough
    /// to buffer now (see [`Flight::replayable`]).
    async fn upstream_request(
        &mut self,
        ex: &mut Exchange,
        target: &Upstream,
    ) -> Result<(http::request::Parts, Payload), Local> {
        let mut head = if self.run.has_response_hooks() {
            Exchange::request_head_copy(&ex.request)
        } else {
            std::mem::replace(&mut ex.request, http::Request::new(()).into_parts().0)
        };
        let streamers = self.run.request_streamers();
        let body = match (ex.request_body.clone(), self.streaming.take()) {
            (Some(bytes), _) => {
                set_length(&mut head.headers, bytes.len());
                if streamers.is_empty() {
                    return Ok((head, Payload::Bytes(bytes)));
                }
                body::full(bytes)
            }
            (None, Some(limited)) if streamers.is_empty() => {
                return self.replayable(head, limited, target).await;
            }
            (None, Some(limited)) => body::boxed(limited),
            (None, None) if streamers.is_empty() => {
                return Ok((head, Payload::Bytes(Bytes::new())));
            }
            (None, None) => body::empty(),
        };
        head.headers.remove(http::header::CONTENT_LENGTH);
        let body = stream::filter(
            body,
            Direction::Request,
            streamers,
            self.route.name.clone(),
            self.snap.observer.clone(),
        );
        Ok((head, Payload::Stream(body)))
    }

    /// A streaming request body as bytes when a retry could replay it: absent, or declared no
    /// longer than the retry policy's `max_replay_body` on a request the policy may retry.
    async fn replayable(
        &self,
        head: http::request::Parts,
        limited: Limited<Incoming>,
        target: &Upstream,
    ) -> Result<(http::request::Parts, Payload), Local> {
        use http_body::Body as _;
        if limited.is_end_stream() {
            return Ok((head, Payload::Bytes(Bytes::new())));
        }
        let declared = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limit = match (target.policy(self.route.retry.as_ref()), declared) {
            (Some(p), Some(n))
                if n <= p.max_replay_body
                    && (p.non_idempotent || crate::upstream::retry::idempotent(&head.method)) =>
            {
                n.min(self.route.max_body_size)
            }
            _ => return Ok((head, Payload::Stream(body::boxed(limited)))),
        };
        match body::collect_limited(Box::pin(limited), limit).await {
            Ok(bytes) => Ok((head, Payload::Bytes(bytes))),
            Err(CollectError::TooLarge(_)) => Err(Local::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "weir: request body too large\n".into(),
            )),
            Err(CollectError::Read(_)) if self.faults.too_large.load(Ordering::Relaxed) => {
                Err(Local::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "weir: request body too large\n".into(),
                ))
            }
            Err(CollectError::Read(e)) => Err(Local::text(
                StatusCode::BAD_REQUEST,
                format!("weir: reading request body: {e}\n"),
            )),
        }
    }

    /// Phase: the response hooks in reverse, on the upstream's response or a local one (the
    /// response body buffered first if a plugin asked). Returns the plugins that stream the
    /// response body.
    async fn response_chain(
        &mut self,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Vec<Arc<crate::chain::Held>>) {
        if !self.run.is_active() {
            return (ex, Vec::new());
        }
        if self.run.has_response_hooks()
            && let Some(limit) = self.route.chain.response_body_limit
            && let Some(incoming) = self.upstream_body.take()
        {
            match body::collect_limited(incoming, limit).await {
                Ok(bytes) => ex.response_body = Some(bytes),
                Err(e) => {
                    let msg = format!(
                        "weir: upstream response body could not be buffered for plugins: {e}\n"
                    );
                    replace_response(&mut ex, Local::text(StatusCode::BAD_GATEWAY, msg));
                }
            }
        }
        ex.phase = Phase::Response;
        self.run.response_phase(ex).await
    }

    /// Phase: the response as the client gets it: hop-by-hop fields dropped, framing for a
    /// buffered body, streamed plugins, the SSE error event, the upgrade tunnel, and the
    /// request span ended with the body.
    fn into_response(
        mut self,
        mut ex: Box<Exchange>,
        streamers: Vec<Arc<crate::chain::Held>>,
    ) -> Response<Body> {
        let head_request = self.head_request;
        let mut parts = ex
            .response
            .take()
            .unwrap_or_else(|| http::Response::new(()).into_parts().0);
        if parts.extensions.remove::<OwnAnswer>().is_some() && self.style != ErrorStyle::Text {
            let msg = ex.response_body.as_deref().unwrap_or_default();
            let (content_type, body) = self
                .style
                .render(parts.status, &String::from_utf8_lossy(msg));
            parts
                .headers
                .insert(http::header::CONTENT_TYPE, content_type);
            ex.response_body = Some(body);
        }
        let observer = self.snap.observer.clone();
        observer.response_span(&ex.trace, parts.status.as_u16(), &ex.context);
        let is_upgrade = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        headers::strip_hop_by_hop(&mut parts.headers, is_upgrade);
        let mut body = match (ex.response_body.take(), self.upstream_body.take()) {
            (Some(bytes), _) => {
                // A HEAD answer or a 204/304 keeps the upstream's framing headers as they were.
                if !head_request && !matches!(parts.status.as_u16(), 204 | 304) {
                    set_length(&mut parts.headers, bytes.len());
                }
                body::full(bytes)
            }
            (None, Some(incoming)) => body::boxed(incoming),
            (None, None) => match self.merged.take() {
                Some((merged, head)) => merged.into_body(head),
                None => body::empty(),
            },
        };
        // Plugins that stream the response body see it on its way down; its length may change.
        // Not a gRPC Trailers-Only answer (its status in the head, no body): it must end with
        // the head, or clients read the head as initial metadata and miss the status.
        let trailers_only = {
            use http_body::Body as _;
            body.is_end_stream() && parts.headers.contains_key("grpc-status")
        };
        if !streamers.is_empty() && !head_request && !trailers_only {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let route = self.route.name.clone();
            body = stream::filter(
                body,
                Direction::Response,
                streamers,
                route,
                observer.clone(),
            );
        }
        // A broken event stream ends with an error event, not as if it were complete.
        if crate::sse::is_event_stream(&parts.headers) && !head_request {
            body = crate::sse::with_error_event(body);
        }
        if let (true, Some(down), Some(up)) = (
            is_upgrade,
            self.client_upgrade.take(),
            self.upstream_upgrade.take(),
        ) {
            tokio::spawn(tunnel(down, up));
        }
        // The request span ends when the body has gone (body hooks may still add attributes).
        let body = observer.end_span_with_body(body, ex.trace.clone(), ex.late_trace.clone());
        Response::from_parts(parts, body)
    }
}

fn set_length(headers: &mut http::HeaderMap, len: usize) {
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// The answer to a request shed because its worker is at `max_requests_per_worker`.
fn overloaded() -> Response<Body> {
    let mut resp = error(
        ErrorStyle::Text,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded: too many requests in flight, retry shortly",
    );
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A short error from the gateway itself, in the route's format (`weir: …` text before routing).
pub(crate) fn error(style: ErrorStyle, status: StatusCode, msg: &str) -> Response<Body> {
    let (content_type, body) = style.render(status, msg);
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
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
