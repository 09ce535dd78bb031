//! The loopback HTTP front of a bridge: MCP Streamable HTTP (legacy era). POST one JSON-RPC
//! message; a request is answered with an SSE stream (its progress and log notifications, then
//! the answer) or, for clients that do not accept one, JSON; notifications get 202. GET is 405
//! (no standalone stream), DELETE 200 (the stdio session is shared and stays).

use super::child::Bridge;
use crate::body::{self, Body};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// The largest message accepted from a client.
const MAX_BODY: usize = 16 << 20;

/// Serves `bridge` on a new loopback port until it stops; returns the address.
pub fn serve(bridge: Arc<Bridge>) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let mut stopped = bridge.stopped();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stopped.changed() => return,
                a = listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let bridge = bridge.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let bridge = bridge.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&bridge, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}),
    )
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    r
}

fn session_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(bridge: &Bridge, req: Request<Incoming>) -> Response<Body> {
    match *req.method() {
        http::Method::POST => {}
        http::Method::DELETE => return empty(StatusCode::OK),
        _ => {
            let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
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
    let bytes = match body::collect_limited(req.into_body(), MAX_BODY as u64).await {
        Ok(b) => b,
        Err(_) => return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, -32600, "body too large"),
    };
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                &format!("Parse error: {e}"),
            );
        }
    };
    let Some(obj) = msg.as_object() else {
        let what = if msg.is_array() {
            "batches are not supported"
        } else {
            "not a JSON-RPC message"
        };
        return rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            &format!("Invalid Request: {what}"),
        );
    };
    let is_request = obj.contains_key("method") && obj.get("id").is_some_and(|i| !i.is_null());
    if !is_request {
        if obj.contains_key("method") {
            bridge.notify(&msg);
        }
        return empty(StatusCode::ACCEPTED);
    }
    let initialize = obj.get("method").and_then(Value::as_str) == Some("initialize");
    let mut rx = bridge.request(msg);
    let mut response = if sse {
        let mut r = Response::new(Body::new(Events { rx, done: false }));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        r
    } else {
        let mut answer = None;
        while let Some(m) = rx.recv().await {
            if m.get("id").is_some() && m.get("method").is_none() {
                answer = Some(m);
                break;
            }
        }
        match answer {
            Some(a) => json_response(StatusCode::OK, &a),
            None => rpc_error(
                StatusCode::BAD_GATEWAY,
                -32603,
                "the stdio MCP server did not answer",
            ),
        }
    };
    if initialize && let Ok(v) = HeaderValue::from_str(&session_id()) {
        response.headers_mut().insert("mcp-session-id", v);
    }
    response
}

/// The SSE body of one request: its messages until the answer.
struct Events {
    rx: mpsc::UnboundedReceiver<Value>,
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
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(m)) => {
                if m.get("id").is_some() && m.get("method").is_none() {
                    self.done = true;
                }
                let event = format!("event: message\ndata: {m}\n\n");
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
