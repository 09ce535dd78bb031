//! Accepting connections under pressure: the per-listener connection cap and the backoff when
//! `accept` itself fails.
//!
//! A listener at `max_connections` still accepts, then closes at once: the client learns right
//! away instead of waiting in the kernel's backlog, and the backlog does not fill with
//! connections nobody will serve. When `accept` fails for lack of file descriptors or memory
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM), retrying at once would spin and log thousands of lines a
//! second: the loop sleeps instead, 10 ms doubling to 1 s, logs once per burst and counts each.

use crate::request_metrics::RequestMetrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The open connections of one listener, across its workers.
#[derive(Clone)]
pub(crate) struct Slots {
    listener: Arc<str>,
    open: Arc<AtomicUsize>,
    metrics: Arc<RequestMetrics>,
}

/// One open connection; gives its slot back when dropped.
pub(crate) struct Slot(Slots);

impl Slots {
    pub(crate) fn new(listener: Arc<str>, metrics: Arc<RequestMetrics>) -> Slots {
        Slots {
            listener,
            open: Arc::new(AtomicUsize::new(0)),
            metrics,
        }
    }

    /// A slot for a new connection, or `None` (counted) when `max` are open.
    pub(crate) fn take(&self, max: usize) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.metrics
                .connection_refused(&self.listener, "max_connections");
            return None;
        }
        self.metrics.connection_open(&self.listener, 1);
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.connection_open(&self.0.listener, -1);
    }
}

/// The backoff state of one accept loop.
pub(crate) struct Backoff {
    listener: Arc<str>,
    metrics: Arc<RequestMetrics>,
    pause: Option<Duration>,
    failures: u64,
}

impl Backoff {
    pub(crate) fn new(listener: Arc<str>, metrics: Arc<RequestMetrics>) -> Backoff {
        Backoff {
            listener,
            metrics,
            pause: None,
            failures: 0,
        }
    }

    /// An accept succeeded: a burst of failures, if any, is over.
    pub(crate) fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                listener = &*self.listener,
                failures = self.failures,
                "accepting connections again"
            );
        }
        self.pause = None;
        self.failures = 0;
    }

    /// An accept failed: how long to wait before the next (zero for errors that concern only
    /// the one connection, such as a client that reset it while queued).
    pub(crate) fn failed(&mut self, e: &std::io::Error) -> Duration {
        let kind = kind(e);
        self.metrics.accept_error(&self.listener, kind);
        if kind == "other" {
            tracing::debug!(listener = &*self.listener, error = %e, "accept failed");
            return Duration::ZERO;
        }
        self.failures += 1;
        let pause = match self.pause {
            None => {
                tracing::warn!(
                    listener = &*self.listener,
                    error = %e,
                    "accept failed: backing off (up to 1 s between tries; logged once per burst)"
                );
                FIRST_PAUSE
            }
            Some(p) => (p * 2).min(LONGEST_PAUSE),
        };
        self.pause = Some(pause);
        pause
    }
}

/// The metric's `kind` of an accept error.
fn kind(e: &std::io::Error) -> &'static str {
    use rustix::io::Errno;
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::MFILE | Errno::NFILE) => "fd_limit",
        Some(Errno::NOBUFS | Errno::NOMEM) => "no_memory",
        _ => "other",
    }
}

/// Raises this process's soft limit of open files to its hard limit, so the connection cap, not
/// the default soft limit (often 1024), decides how many clients are served. Logs the result.
pub(crate) fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        tracing::info!(open_files = ?limit.current, "open file limit");
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(from = ?limit.current, to = ?limit.maximum, "raised the open file limit")
        }
        Err(e) => {
            tracing::warn!(open_files = ?limit.current, error = %e, "cannot raise the open file limit")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_doubling_and_resets() {
        let mut b = Backoff::new("l".into(), Arc::default());
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let pauses: Vec<_> = (0..9).map(|_| b.failed(&emfile).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.accepted();
        assert_eq!(b.failed(&emfile), FIRST_PAUSE);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&reset), Duration::ZERO);
    }

    #[test]
    fn slots_cap_open_connections() {
        let slots = Slots::new("l".into(), Arc::default());
        let a = slots.take(2).expect("first");
        let _b = slots.take(2).expect("second");
        assert!(slots.take(2).is_none());
        drop(a);
        assert!(slots.take(2).is_some());
    }
}
