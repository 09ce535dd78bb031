//! Streamed bodies: passes a body chunk by chunk through the plugins that asked for it
//! (`body-access::streamed`), each chunk through every plugin in the order the message travels,
//! then `on-body-end` for the tails and trailers.
//!
//! A task per streamed body reads the source, calls the plugins and hands the result to a
//! channel of one frame: the source is not read again until the receiver took the last frame,
//! so a slow client slows the upstream down instead of filling memory (backpressure).
//!
//! A plugin that fails mid-stream is handled by its `on_error`: `fail-open` leaves it out for
//! the rest of the body; `fail-closed` ends the body with an error (the headers are gone, so the
//! client sees a broken stream, not a 500).

use crate::body::{Body, BoxError};
use crate::chain::{Held, failed};
use crate::plugin::Direction;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// `body`, passed through `filters` (in order) chunk by chunk.
pub fn filter(body: Body, direction: Direction, filters: Vec<Arc<Held>>, route: Arc<str>) -> Body {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(pump(body, direction, filters, route, tx));
    Body::new(Channel { rx })
}

type Sender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

#[derive(Debug, thiserror::Error)]
#[error("plugin \"{plugin}\" failed while streaming the body (fail-closed)")]
struct StreamAborted {
    plugin: String,
}

/// Why a chunk could not pass: the stream must end with this error.
type Abort = BoxError;

async fn pump(
    mut body: Body,
    direction: Direction,
    filters: Vec<Arc<Held>>,
    route: Arc<str>,
    tx: Sender,
) {
    let mut active: Vec<Option<Arc<Held>>> = filters.into_iter().map(Some).collect();
    let mut trailers = HeaderMap::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // The source broke: pass the error on; `on-body-end` is not called.
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        match frame.into_data() {
            Ok(data) => match through(&mut active, 0, direction, data, &route).await {
                Ok(out) if out.is_empty() => {}
                Ok(out) => {
                    if tx.send(Ok(Frame::data(out))).await.is_err() {
                        return; // the receiver went away
                    }
                }
                Err(abort) => {
                    let _ = tx.send(Err(abort)).await;
                    return;
                }
            },
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    // The end: each plugin's tail passes the plugins after it.
    for i in 0..active.len() {
        let Some(held) = active[i].clone() else {
            continue;
        };
        let end = {
            let mut slot = held.instance.lock().await;
            let Some(instance) = slot.as_mut() else {
                continue;
            };
            let end = instance.on_body_end(direction).await;
            if end.is_err() {
                slot.take();
            }
            end
        };
        let end = match end {
            Ok(end) => end,
            Err(failure) => match failed(&route, held.entry(), failure) {
                None => {
                    active[i] = None;
                    continue;
                }
                Some(_) => {
                    let _ = tx.send(Err(aborted(&held))).await;
                    return;
                }
            },
        };
        for (k, v) in end.trailers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                (Ok(k), Ok(v)) => {
                    trailers.append(k, v);
                }
                _ => tracing::warn!(
                    plugin = &*held.entry().plugin.name,
                    route = &*route,
                    trailer = k.as_str(),
                    "invalid trailer from plugin dropped"
                ),
            }
        }
        if !end.tail.is_empty() {
            match through(&mut active, i + 1, direction, Bytes::from(end.tail), &route).await {
                Ok(out) if out.is_empty() => {}
                Ok(out) => {
                    if tx.send(Ok(Frame::data(out))).await.is_err() {
                        return;
                    }
                }
                Err(abort) => {
                    let _ = tx.send(Err(abort)).await;
                    return;
                }
            }
        }
    }
    if !trailers.is_empty() {
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    }
}

fn aborted(held: &Held) -> BoxError {
    Box::new(StreamAborted {
        plugin: held.entry().plugin.name.to_string(),
    })
}

/// Passes one chunk through the active filters from index `from` on.
async fn through(
    active: &mut [Option<Arc<Held>>],
    from: usize,
    direction: Direction,
    mut data: Bytes,
    route: &str,
) -> Result<Bytes, Abort> {
    for slot in active.iter_mut().skip(from) {
        let Some(held) = slot.clone() else {
            continue;
        };
        let result = {
            let mut instance = held.instance.lock().await;
            let Some(i) = instance.as_mut() else {
                *slot = None;
                continue;
            };
            let result = i.on_body_chunk(direction, &data).await;
            if result.is_err() {
                instance.take();
            }
            result
        };
        match result {
            Ok(out) => data = Bytes::from(out),
            Err(failure) => match failed(route, held.entry(), failure) {
                None => *slot = None, // fail-open: the chunk passes unchanged
                Some(_) => return Err(aborted(&held)),
            },
        }
        if data.is_empty() {
            break;
        }
    }
    Ok(data)
}

/// The receiving end of a pumped body.
struct Channel {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
