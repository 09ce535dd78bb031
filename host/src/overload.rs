//! Load shedding: a worker serves at most `limits.max_requests_per_worker` requests at once.
//! Past it a request is answered 503 with `retry-after: 1` before routing, so no plugin runs
//! and no upstream is called: a busy gateway answers quickly that it is busy instead of
//! queueing work until everything times out (or memory runs out).
//!
//! A request counts from its head being read to its response head being returned (what
//! `proxy::handle` spans); a response body still streaming holds a connection, which
//! `limits.max_connections` bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The requests in flight on one worker. Shared by that worker's connections only, so the
/// counter is never contended; atomic because hyper requires `Send` services.
#[derive(Clone, Default, Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

/// One admitted request; leaves the count when dropped.
pub(crate) struct Admitted(InFlight);

impl InFlight {
    /// Admits one more request, unless `max` are already in flight.
    pub(crate) fn admit(&self, max: usize) -> Option<Admitted> {
        if self.0.fetch_add(1, Ordering::Relaxed) >= max {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Admitted(self.clone()))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit() {
        let worker = InFlight::default();
        let held: Vec<_> = (0..3).filter_map(|_| worker.admit(3)).collect();
        assert_eq!(held.len(), 3);
        assert!(worker.admit(3).is_none());
        drop(held);
        assert!(worker.admit(3).is_some());
    }
}
