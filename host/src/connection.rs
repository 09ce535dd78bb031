//! One client connection's life after accept, around hyper's own state machine: the deadlines
//! hyper does not keep, and the drain.
//!
//! - **First head, from accept.** hyper-util's `auto` builder reads the HTTP/2 preface before
//!   handing the socket to either protocol, and hyper's header timer only starts after that, so
//!   a client that connects and sends nothing would hold its socket forever. The first request
//!   must arrive within `header_read_timeout` of the accept (a TLS handshake counts).
//! - **Later heads (HTTP/1.1 keep-alive), from their first byte.** hyper's own header timer
//!   starts as soon as a keep-alive connection waits, which would make it an idle timeout; it is
//!   off, and [`Watched`] notes instead when bytes arrive while no request is in flight.
//! - **Idle.** No request in flight (response bodies included) for `idle_timeout`: HTTP/1.1 is
//!   closed, HTTP/2 gets GOAWAY and closes once its streams are done.
//! - **Drain.** On shutdown every connection is told to finish gracefully (HTTP/1.1: after the
//!   request in flight; HTTP/2: GOAWAY).
//!
//! [`Activity`] is what the socket wrapper, the service and the [`Supervisor`] share; the
//! supervisor runs next to the hyper connection in its task and tells its owner what to do.

use crate::body::{self, Body};
use crate::request_metrics::RequestMetrics;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a connection's socket, its requests and its supervisor share. All on one worker
/// thread; atomics only because hyper requires `Send` services.
#[derive(Default)]
pub(crate) struct Activity {
    /// Requests in flight, until their response body has gone.
    active: AtomicUsize,
    /// Requests started and ended, so the supervisor sees activity it slept through.
    started: AtomicU64,
    ended: AtomicU64,
    /// Bytes arrived while no request was in flight: a head has begun.
    head_started: AtomicBool,
    /// The connection speaks HTTP/2 (known from its first request).
    h2: AtomicBool,
    changed: Notify,
}

impl Activity {
    /// A request arrived (its head is read): counted in flight until the returned guard,
    /// moved into the response body, is dropped.
    pub(crate) fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.active.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        self.head_started.store(false, Relaxed);
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Relaxed);
        }
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn bytes_arrived(&self) {
        if self.active.load(Relaxed) == 0 && !self.head_started.swap(true, Relaxed) {
            self.changed.notify_one();
        }
    }
}

/// A request in flight on its connection (see [`Activity::begin`]).
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    /// The response, still counted in flight until its body has been sent (or dropped).
    pub(crate) fn until_sent(self, resp: http::Response<Body>) -> http::Response<Body> {
        resp.map(|inner| {
            body::boxed(Tracked {
                inner,
                _in_flight: self,
            })
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
        self.0.ended.fetch_add(1, Relaxed);
        self.0.changed.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight.
    struct Tracked {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, body::BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A client socket (or TLS stream) that tells its [`Activity`] when bytes arrive.
    pub(crate) struct Watched<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
    }
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The two connection timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

/// What the owner of a connection should do next.
pub(crate) enum Step {
    /// Ask it to finish gracefully (`graceful_shutdown`), then ask the supervisor again.
    Graceful,
    /// Drop it: a head did not arrive in time.
    Close,
}

#[derive(Clone, Copy)]
enum Expiry {
    Head,
    Idle,
}

/// Keeps one connection's deadlines; see the module's documentation.
pub(crate) struct Supervisor {
    activity: Arc<Activity>,
    timeouts: Timeouts,
    accepted: Instant,
    idle_since: Instant,
    head_since: Option<Instant>,
    ended_seen: u64,
    graceful_sent: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<RequestMetrics>,
    listener: Arc<str>,
}

impl Supervisor {
    pub(crate) fn new(
        activity: Arc<Activity>,
        timeouts: Timeouts,
        accepted: Instant,
        shutdown: tokio::sync::watch::Receiver<bool>,
        metrics: Arc<RequestMetrics>,
        listener: Arc<str>,
    ) -> Supervisor {
        Supervisor {
            activity,
            timeouts,
            accepted,
            idle_since: accepted,
            head_since: None,
            ended_seen: 0,
            graceful_sent: false,
            shutdown,
            metrics,
            listener,
        }
    }

    /// Brings the idle and head clocks up to date with what happened since the last look.
    fn observe(&mut self) {
        let a = &self.activity;
        let now = Instant::now();
        let ended = a.ended.load(Relaxed);
        if a.active.load(Relaxed) > 0 {
            self.head_since = None;
            return;
        }
        if ended != self.ended_seen {
            self.ended_seen = ended;
            self.idle_since = now;
            self.head_since = None;
        }
        if a.head_started.load(Relaxed) && self.head_since.is_none() {
            self.head_since = Some(now);
        }
    }

    /// The next deadline, if any: none while a request is in flight (its own timeouts apply).
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        let a = &self.activity;
        // Config durations are at most a day, so this never saturates; it cannot panic either.
        let after = |t: Instant, d: Duration| t.checked_add(d).unwrap_or(t);
        if a.active.load(Relaxed) > 0 {
            return None;
        }
        if a.started.load(Relaxed) == 0 {
            return Some((
                after(self.accepted, self.timeouts.header_read),
                Expiry::Head,
            ));
        }
        if !a.h2.load(Relaxed)
            && let Some(since) = self.head_since
        {
            return Some((after(since, self.timeouts.header_read), Expiry::Head));
        }
        (!self.graceful_sent).then(|| (after(self.idle_since, self.timeouts.idle), Expiry::Idle))
    }

    /// Waits until the owner must act on the connection. The owner polls the connection next
    /// to this (`tokio::select!`) and stops when it ends by itself.
    pub(crate) async fn next(&mut self) -> Step {
        loop {
            self.observe();
            let deadline = self.deadline();
            let activity = self.activity.clone();
            let expired = async {
                match deadline {
                    Some((at, expiry)) => {
                        tokio::time::sleep_until(at).await;
                        expiry
                    }
                    None => std::future::pending().await,
                }
            };
            let draining = self.graceful_sent;
            let woken = tokio::select! {
                _ = activity.changed.notified() => None,
                expiry = expired => Some(expiry),
                _ = self.shutdown.wait_for(|stop| *stop), if !draining => {
                    self.graceful_sent = true;
                    return Step::Graceful;
                }
            };
            if let Some(expiry) = woken {
                // Something may have happened at the same moment: look again first.
                self.observe();
                if self.deadline().is_some_and(|(at, _)| at <= Instant::now()) {
                    return self.expired(expiry);
                }
            }
        }
    }

    fn expired(&mut self, expiry: Expiry) -> Step {
        match expiry {
            Expiry::Head => {
                self.metrics
                    .connection_timeout(&self.listener, "header_read");
                Step::Close
            }
            Expiry::Idle => {
                self.metrics.connection_timeout(&self.listener, "idle");
                self.graceful_sent = true;
                Step::Graceful
            }
        }
    }
}
