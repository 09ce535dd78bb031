//! The loopback HTTP front of a bridge: MCP Streamable HTTP, legacy era, on any path.
//!
//! POST one JSON-RPC message: a request is answered with an SSE stream (its progress and log
//! notifications, then its response; the stream ends there) or, for a client that does not
//! accept `text/event-stream`, with the response as JSON; a notification or response gets 202.
//! Batches, malformed JSON and non-messages get 400 with a JSON-RPC error. Each `initialize`
//! gets a fresh `Mcp-Session-Id`; any session id is accepted afterwards, since all clients share
//! the child's one session. GET is 405 (no standalone stream: notifications not tied to a
//! request are not relayed) and DELETE 200 (the shared session stays).

use super::session::{Event, Session, Ticket};
use crate::body::{self, Body};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;
use weir_wire::jsonrpc::{self, Message};

/// The largest message accepted from a client. Routes apply their own `max_body_size` before
/// this; it bounds what a local process talking to the port directly can make us buffer.
const MAX_BODY: usize = 16 << 20;

/// Serves `session` on a new loopback port until `stop` turns true; returns the address.
/// Connections already open go on (their requests drain) after that.
pub(super) fn serve(
    session: Arc<Session>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "stdio bridge accept failed");
                        continue;
                    }
                },
            };
            let session = session.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let session = session.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&session, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn with_status(body: Body, status: StatusCode) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = with_status(body::full(Bytes::from(v.to_string())), status);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A 4xx with a JSON-RPC error that has no id (the message could not be read as a request).
fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    json_response(status, &jsonrpc::error(&Value::Null, code, message, None))
}

/// 16 random bytes in hex: cryptographically random, visible ASCII as the spec asks.
fn session_id() -> Option<HeaderValue> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).ok()
}

async fn handle(session: &Arc<Session>, req: Request<Incoming>) -> Response<Body> {
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return with_status(body::empty(), StatusCode::OK),
        _ => {
            let mut r = with_status(body::empty(), StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("POST, DELETE"),
            );
            return r;
        }
    }
    let sse = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let client_session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (msg, kind) = match read_message(req).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    match kind {
        Message::Notification { .. } => {
            session.notify(msg, client_session.as_deref());
            with_status(body::empty(), StatusCode::ACCEPTED)
        }
        Message::Response { .. } => {
            session.respond(&msg);
            with_status(body::empty(), StatusCode::ACCEPTED)
        }
        Message::Request { method, .. } => {
            let ticket = session.request(msg, client_session);
            let mut response = answer(ticket, sse).await;
            if method == "initialize"
                && let Some(id) = session_id()
            {
                response.headers_mut().insert("mcp-session-id", id);
            }
            response
        }
    }
}

/// Reads one POSTed JSON-RPC message (bounded), classified by `weir-wire`'s rules; a body that
/// is not one becomes the JSON-RPC error answer.
async fn read_message(req: Request<Incoming>) -> Result<(Value, Message), Response<Body>> {
    let Ok(bytes) = body::collect_limited(req.into_body(), MAX_BODY).await else {
        return Err(rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: the message is too large",
        ));
    };
    let invalid = |e: jsonrpc::Invalid| rpc_error(StatusCode::BAD_REQUEST, e.code(), &e.message());
    let msg: Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(jsonrpc::Invalid::Parse(e.to_string())))?;
    // The session forwards the message as it came (ids rewritten); the classification is a copy.
    let kind = jsonrpc::classify(msg.clone()).map_err(invalid)?;
    Ok((msg, kind))
}

/// The answer to one request: an event stream of its notifications then its answer, or (for a
/// client that does not accept SSE) the answer alone as JSON.
async fn answer(mut ticket: Ticket, sse: bool) -> Response<Body> {
    if sse {
        let mut r = Response::new(Body::new(Events {
            ticket,
            done: false,
        }));
        let headers = r.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        return r;
    }
    loop {
        match ticket.events.recv().await {
            Some(Event::Answer(a)) => return json_response(StatusCode::OK, &a),
            Some(Event::Notification(_)) => {}
            None => {
                return rpc_error(
                    StatusCode::BAD_GATEWAY,
                    jsonrpc::INTERNAL_ERROR,
                    "the stdio MCP server did not answer",
                );
            }
        }
    }
}

/// The SSE body of one request: its notifications, then its answer. Dropping it (the client
/// left) drops the ticket, which forgets the request.
struct Events {
    ticket: Ticket,
    done: bool,
}

impl HttpBody for Events {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, body::BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let msg = match self.ticket.events.poll_recv(cx) {
            Poll::Ready(Some(Event::Notification(m))) => m,
            Poll::Ready(Some(Event::Answer(m))) => {
                self.done = true;
                m
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let event = format!("event: message\ndata: {msg}\n\n");
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
