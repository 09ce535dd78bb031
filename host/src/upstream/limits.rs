//! Per-upstream concurrency limits. `max_requests` bounds the requests in flight to the
//! upstream over all workers; `max_connections` bounds them per worker (each worker has its own
//! pool, and an HTTP/1.1 connection carries one request at a time, so this bounds the pool's
//! connections; over HTTP/2 it bounds streams), with up to `max_pending` more waiting for a
//! slot. Past a limit the request is refused at once with 503 and `retry-after`: queueing
//! without bound is how a slow upstream turns into a gateway out of memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct Limits {
    max_requests: Option<usize>,
    in_flight: Arc<AtomicUsize>,
    /// One per worker, with `max_connections`.
    workers: Vec<WorkerLimit>,
}

struct WorkerLimit {
    slots: Arc<Semaphore>,
    max_pending: usize,
    pending: AtomicUsize,
}

/// A request's place under the limits, released when its response body is done.
pub(crate) struct Admission {
    in_flight: Option<Arc<AtomicUsize>>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(n) = &self.in_flight {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Limits {
    pub(crate) fn new(
        max_requests: Option<usize>,
        max_connections: Option<usize>,
        max_pending: Option<usize>,
        workers: usize,
    ) -> Limits {
        let workers = match max_connections {
            Some(max) => (0..workers.max(1))
                .map(|_| WorkerLimit {
                    slots: Arc::new(Semaphore::new(max)),
                    max_pending: max_pending.unwrap_or(0),
                    pending: AtomicUsize::new(0),
                })
                .collect(),
            None => Vec::new(),
        };
        Limits {
            max_requests,
            in_flight: Arc::new(AtomicUsize::new(0)),
            workers,
        }
    }

    /// Admits a request, waiting for a worker slot if a pending place is free. `Err` names the
    /// limit that refused it (the `limit` label of `weir_upstream_overflow_total`).
    pub(crate) async fn admit(&self) -> Result<Admission, &'static str> {
        let in_flight = match self.max_requests {
            Some(max) => {
                if self.in_flight.fetch_add(1, Ordering::Relaxed) >= max {
                    self.in_flight.fetch_sub(1, Ordering::Relaxed);
                    return Err("max_requests");
                }
                Some(self.in_flight.clone())
            }
            None => None,
        };
        // Built now, so that the counter is released on every early return below.
        let mut admission = Admission {
            in_flight,
            _slot: None,
        };
        if self.workers.is_empty() {
            return Ok(admission);
        }
        let w = &self.workers[crate::worker::current() % self.workers.len()];
        if let Ok(permit) = w.slots.clone().try_acquire_owned() {
            admission._slot = Some(permit);
            return Ok(admission);
        }
        if w.pending.fetch_add(1, Ordering::Relaxed) >= w.max_pending {
            w.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(if w.max_pending == 0 {
                "max_connections"
            } else {
                "max_pending"
            });
        }
        let permit = w.slots.clone().acquire_owned().await;
        w.pending.fetch_sub(1, Ordering::Relaxed);
        admission._slot = permit.ok();
        Ok(admission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_refuse_past_the_maximum_and_release_on_drop() {
        let l = Limits::new(Some(1), None, None, 1);
        let a = l.admit().await.expect("first");
        assert_eq!(l.admit().await.err(), Some("max_requests"));
        drop(a);
        assert!(l.admit().await.is_ok());

        let l = Limits::new(None, Some(1), None, 1);
        let a = l.admit().await.expect("first");
        assert_eq!(l.admit().await.err(), Some("max_connections"));
        drop(a);
        assert!(l.admit().await.is_ok());
    }
}
