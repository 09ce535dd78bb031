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
use crate::chain::{Held, Hook, HookSite, Invoked};
use crate::observe::Observer;
use crate::plugin::{BodyEnd, Direction};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// `body`, passed through `filters` (in order) chunk by chunk.
pub(crate) fn filter(
    body: Body,
    direction: Direction,
    filters: Vec<Arc<Held>>,
    route: Arc<str>,
    observer: Arc<Observer>,
) -> Body {
    let (tx, rx) = mpsc::channel(1);
    let pump = Pump {
        direction,
        active: filters.into_iter().map(Some).collect(),
        route,
        observer,
        tx,
    };
    tokio::spawn(pump.run(body));
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

/// One streamed body on its way through its plugins.
struct Pump {
    direction: Direction,
    /// The filters still in the stream, in the order the body passes them; a fail-open
    /// failure leaves a `None`.
    active: Vec<Option<Arc<Held>>>,
    route: Arc<str>,
    observer: Arc<Observer>,
    tx: Sender,
}

impl Pump {
    async fn run(mut self, mut body: Body) {
        let mut trailers = HeaderMap::new();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    // The source broke: pass the error on; `on-body-end` is not called.
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let out = self.through(0, data).await;
                    if !self.forward(out).await {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.extend(t);
                    }
                }
            }
        }
        // The end: each plugin's tail passes the plugins after it.
        for i in 0..self.active.len() {
            let Some(held) = self.active[i].clone() else {
                continue;
            };
            let end = match self
                .call(&held, i, Hook::BodyEnd, None, &mut trailers)
                .await
            {
                Ok(Some(Ended::End(end))) => end,
                Ok(_) => continue,
                Err(abort) => {
                    let _ = self.tx.send(Err(abort)).await;
                    return;
                }
            };
            self.add_trailers(&held, end.trailers, &mut trailers);
            if !end.tail.is_empty() {
                let out = self.through(i + 1, Bytes::from(end.tail)).await;
                if !self.forward(out).await {
                    return;
                }
            }
        }
        if !trailers.is_empty() {
            let _ = self.tx.send(Ok(Frame::trailers(trailers))).await;
        }
    }

    /// Sends what passed, or ends the stream with the abort. `false` when the stream is over
    /// (aborted, or the receiver went away).
    async fn forward(&self, out: Result<Bytes, Abort>) -> bool {
        match out {
            Ok(data) if data.is_empty() => true,
            Ok(data) => self.tx.send(Ok(Frame::data(data))).await.is_ok(),
            Err(abort) => {
                let _ = self.tx.send(Err(abort)).await;
                false
            }
        }
    }

    /// Passes one chunk through the active filters from index `from` on.
    async fn through(&mut self, from: usize, mut data: Bytes) -> Result<Bytes, Abort> {
        for i in from..self.active.len() {
            let Some(held) = self.active[i].clone() else {
                continue;
            };
            // A fail-open failure (`None`) lets the chunk pass unchanged.
            if let Some(Ended::Chunk(out)) = self
                .call(
                    &held,
                    i,
                    Hook::BodyChunk,
                    Some(&data),
                    &mut HeaderMap::new(),
                )
                .await?
            {
                data = Bytes::from(out);
            }
            if data.is_empty() {
                break;
            }
        }
        Ok(data)
    }

    /// One body hook on filter `i` through the chain entry's one invocation. A fail-open
    /// failure takes the filter out of the stream (`Ok(None)`); fail-closed aborts it.
    async fn call(
        &mut self,
        held: &Held,
        i: usize,
        hook: Hook,
        chunk: Option<&Bytes>,
        trailers: &mut HeaderMap,
    ) -> Result<Option<Ended>, Abort> {
        let site = HookSite {
            route: &self.route,
            trace: None,
            observer: &self.observer,
        };
        let direction = self.direction;
        let mut slot = held.instance.lock().await;
        let ((), invoked) = held
            .entry
            .invoke(
                &site,
                hook,
                &mut slot,
                (),
                async |instance, ()| {
                    let result = match chunk {
                        Some(data) => instance
                            .on_body_chunk(direction, data)
                            .await
                            .map(Ended::Chunk),
                        None => instance
                            .on_body_end(direction, trailers)
                            .await
                            .map(Ended::End),
                    };
                    ((), result)
                },
                |_| String::new(),
            )
            .await;
        drop(slot);
        match invoked {
            Invoked::Done(ended) => Ok(Some(ended)),
            Invoked::Skipped => {
                self.active[i] = None;
                Ok(None)
            }
            Invoked::Refused(_) => Err(aborted(held)),
        }
    }

    fn add_trailers(
        &self,
        held: &Held,
        from_plugin: Vec<(String, String)>,
        trailers: &mut HeaderMap,
    ) {
        for (k, v) in from_plugin {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                (Ok(k), Ok(v)) => {
                    trailers.append(k, v);
                }
                _ => tracing::warn!(
                    plugin = &*held.entry.plugin.name,
                    route = &*self.route,
                    trailer = k.as_str(),
                    "invalid trailer from plugin dropped"
                ),
            }
        }
    }
}

/// What a body hook returned.
enum Ended {
    Chunk(Vec<u8>),
    End(BodyEnd),
}

fn aborted(held: &Held) -> BoxError {
    Box::new(StreamAborted {
        plugin: held.entry.plugin.name.to_string(),
    })
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
