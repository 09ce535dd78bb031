//! Event streams that break. Once a `text/event-stream` response has started, its status can no
//! longer say that the upstream failed, and an SSE client that sees the connection end cannot
//! tell a truncated answer from a complete one. So when the body breaks mid-way, the gateway
//! first sends one last event,
//!
//! ```text
//! event: error
//! data: {"type":"error","error":{"type":"upstream_error","message":"..."}}
//! ```
//!
//! (the shape both the OpenAI and the Anthropic SDKs raise on) and ends the body there. It ends
//! it cleanly on purpose: hyper drops data still buffered when a body fails, which would lose
//! the very event that explains the failure. The gateway's log has the upstream's error.

use crate::body::{Body, BoxError};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Whether a response's `content-type` is `text/event-stream`.
pub fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// The event sent when the stream breaks.
pub fn error_event(message: &str) -> Bytes {
    let data = serde_json::json!({
        "type": "error",
        "error": {"type": "upstream_error", "message": message},
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// `body`, ending with an error event instead of the error that breaks it.
pub fn with_error_event(body: Body) -> Body {
    ErrorEvent {
        inner: body,
        broke: false,
    }
    .boxed_unsync()
}

struct ErrorEvent {
    inner: Body,
    /// The error event went out; the body is over.
    broke: bool,
}

impl HttpBody for ErrorEvent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.broke {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "event stream broke mid-way; ended it with an error event");
                self.broke = true;
                let event = error_event(&format!("weir: the event stream broke: {e}"));
                Poll::Ready(Some(Ok(Frame::data(event))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.broke || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
