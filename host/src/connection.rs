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
//!   request in flight; HTTP/2: GOAWAY). A connection whose next request has begun to arrive, or
//!   that has not had its first request yet (a load balancer may have sent it just before the
//!   listener closed), is told once that request has begun, so it is served rather than cut; its
//!   head deadline still applies.
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
/// thread; atomics only because hyper requires `Send` services. Requests record times instead
/// of waking the supervisor: it looks when its next deadline comes, so a request costs it no
/// wake-up, and only the first bytes of a keep-alive head (which start an earlier deadline)
/// wake it.
pub(crate) struct Activity {
    /// When the connection was accepted; the times below count from it, in microseconds, plus
    /// one (zero means never).
    origin: Instant,
    /// Requests in flight, until their response body has gone.
    active: AtomicUsize,
    /// Requests started so far.
    started: AtomicU64,
    /// When the last request ended (its response body gone).
    ended_at: AtomicU64,
    /// When bytes arrived while no request was in flight: a head began.
    head_at: AtomicU64,
    /// The connection speaks HTTP/2 (known from its first request).
    h2: AtomicBool,
    head_began: Notify,
}

impl Activity {
    pub(crate) fn new(accepted: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            origin: accepted,
            active: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            ended_at: AtomicU64::new(0),
            head_at: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            head_began: Notify::new(),
        })
    }

    /// A request arrived (its head is read): counted in flight until the returned guard,
    /// moved into the response body, is dropped.
    pub(crate) fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.active.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        self.head_at.store(0, Relaxed);
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Relaxed);
        }
        InFlight(self.clone())
    }

    /// Now, as stored in `ended_at` and `head_at`.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A stored time as an instant (`None` for never).
    fn at(&self, stored: u64) -> Option<Instant> {
        let micros = stored.checked_sub(1)?;
        self.origin.checked_add(Duration::from_micros(micros))
    }

    /// No request in flight, and one is expected: none yet on this connection, or the bytes of
    /// the next one have arrived.
    fn awaiting_head(&self) -> bool {
        self.active.load(Relaxed) == 0
            && (self.started.load(Relaxed) == 0 || self.head_at.load(Relaxed) != 0)
    }

    fn bytes_arrived(&self) {
        if self.active.load(Relaxed) == 0 && self.head_at.load(Relaxed) == 0 {
            self.head_at.store(self.now(), Relaxed);
            self.head_began.notify_one();
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
        // The time first: a supervisor that sees nothing in flight sees when it ended.
        self.0.ended_at.store(self.0.now(), Relaxed);
        self.0.active.fetch_sub(1, Relaxed);
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

/// How often a draining connection that awaits a request looks whether it has begun.
const DRAIN_RECHECK: Duration = Duration::from_millis(10);

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
    /// Requests are in flight: look again later.
    Recheck,
}

/// Keeps one connection's deadlines; see the module's documentation.
pub(crate) struct Supervisor {
    activity: Arc<Activity>,
    timeouts: Timeouts,
    graceful_sent: bool,
    /// Shutdown began while a head was awaited: graceful once its request has begun.
    drain_pending: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<RequestMetrics>,
    listener: Arc<str>,
}

impl Supervisor {
    pub(crate) fn new(
        activity: Arc<Activity>,
        timeouts: Timeouts,
        shutdown: tokio::sync::watch::Receiver<bool>,
        metrics: Arc<RequestMetrics>,
        listener: Arc<str>,
    ) -> Supervisor {
        Supervisor {
            activity,
            timeouts,
            graceful_sent: false,
            drain_pending: false,
            shutdown,
            metrics,
            listener,
        }
    }

    /// The next deadline, and what it is for.
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        let a = &self.activity;
        // Config durations are at most a day: this never saturates, and it cannot panic.
        let after = |t: Instant, d: Duration| t.checked_add(d).unwrap_or(t);
        if a.active.load(Relaxed) > 0 {
            // Its own timeouts bound a request; the connection is looked at again later.
            return Some((after(Instant::now(), self.timeouts.idle), Expiry::Recheck));
        }
        if a.started.load(Relaxed) == 0 {
            return Some((after(a.origin, self.timeouts.header_read), Expiry::Head));
        }
        if !a.h2.load(Relaxed)
            && let Some(began) = a.at(a.head_at.load(Relaxed))
        {
            return Some((after(began, self.timeouts.header_read), Expiry::Head));
        }
        let idle_since = a.at(a.ended_at.load(Relaxed)).unwrap_or(a.origin);
        (!self.graceful_sent).then(|| (after(idle_since, self.timeouts.idle), Expiry::Idle))
    }

    /// Waits until the owner must act on the connection. The owner polls the connection next
    /// to this (`tokio::select!`) and stops when it ends by itself.
    pub(crate) async fn next(&mut self) -> Step {
        loop {
            if self.drain_pending && !self.activity.awaiting_head() {
                self.drain_pending = false;
                return Step::Graceful;
            }
            let mut deadline = self.deadline().map(|(at, _)| at);
            if self.drain_pending {
                // Nothing wakes the supervisor when a request begins: look again shortly.
                let soon = Instant::now() + DRAIN_RECHECK;
                deadline = Some(deadline.map_or(soon, |at| at.min(soon)));
            }
            let activity = self.activity.clone();
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let draining = self.graceful_sent;
            tokio::select! {
                // A head began: its deadline may be earlier than the one slept for.
                _ = activity.head_began.notified() => continue,
                _ = expired => {}
                _ = self.shutdown.wait_for(|stop| *stop), if !draining => {
                    self.graceful_sent = true;
                    if activity.awaiting_head() {
                        self.drain_pending = true;
                        continue;
                    }
                    return Step::Graceful;
                }
            }
            // The state may have moved while sleeping: act only on a deadline still due.
            match self.deadline() {
                Some((at, Expiry::Head)) if at <= Instant::now() => {
                    self.metrics
                        .connection_timeout(&self.listener, "header_read");
                    return Step::Close;
                }
                Some((at, Expiry::Idle)) if at <= Instant::now() => {
                    self.metrics.connection_timeout(&self.listener, "idle");
                    self.graceful_sent = true;
                    return Step::Graceful;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor(activity: &Arc<Activity>) -> Supervisor {
        let (_, shutdown) = tokio::sync::watch::channel(false);
        let timeouts = Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        Supervisor::new(
            activity.clone(),
            timeouts,
            shutdown,
            Arc::default(),
            "l".into(),
        )
    }

    fn kind(s: &Supervisor) -> Option<(Duration, &'static str)> {
        let origin = s.activity.origin;
        s.deadline().map(|(at, expiry)| {
            let name = match expiry {
                Expiry::Head => "head",
                Expiry::Idle => "idle",
                Expiry::Recheck => "recheck",
            };
            (at.saturating_duration_since(origin), name)
        })
    }

    #[test]
    fn deadlines_follow_the_connection() {
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        let s = supervisor(&activity);
        // Nothing yet: the first head is due header_read after the accept, bytes or not.
        assert_eq!(kind(&s), Some((Duration::from_secs(10), "head")));
        activity.bytes_arrived();
        assert_eq!(kind(&s), Some((Duration::from_secs(10), "head")));
        // A request in flight: no connection deadline, only a later look.
        let request = activity.begin(http::Version::HTTP_11);
        assert_eq!(kind(&s).map(|k| k.1), Some("recheck"));
        activity.bytes_arrived();
        assert_eq!(
            kind(&s).map(|k| k.1),
            Some("recheck"),
            "body bytes are not a head"
        );
        drop(request);
        // Idle: idle_timeout after the request ended.
        let (at, what) = kind(&s).expect("a deadline");
        assert_eq!(what, "idle");
        assert!(at >= Duration::from_secs(60), "{at:?}");
        // A keep-alive head began: header_read after its first bytes, before the idle one.
        activity.bytes_arrived();
        let (head, what) = kind(&s).expect("a deadline");
        assert_eq!(what, "head");
        assert!(head >= Duration::from_secs(10) && head < at, "{head:?}");
    }

    #[test]
    fn http2_connections_only_idle_out() {
        let activity = Activity::new(Instant::now());
        let s = supervisor(&activity);
        drop(activity.begin(http::Version::HTTP_2));
        // Pings and other frames between streams are not a head.
        activity.bytes_arrived();
        assert_eq!(kind(&s).map(|k| k.1), Some("idle"));
    }
}
