//! A circuit breaker in front of the Redis backend. While Redis is unreachable every call would
//! wait out the kv timeout, and a rate-limited request would pay that wait on every hook; after
//! `failures` calls in a row that could not reach Redis, the breaker opens and calls fail at
//! once (the `kv-error::backend` plugins already handle) for `cooldown`. Then exactly one call
//! probes Redis (half-open): success closes the breaker, failure opens it for another cooldown.
//! Shared by every worker: the state is one small mutex, held for a few instructions per call.

use super::KvError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail at once until `until`.
    Open { until: Instant },
    /// One probe call is in flight; the others fail at once.
    HalfOpen,
}

/// The breaker's states as the metrics number them (`weir_kv_breaker_state`).
const CLOSED: usize = 0;
const OPEN: usize = 1;
const HALF_OPEN: usize = 2;

pub(crate) struct Breaker {
    failures: u32,
    cooldown: Duration,
    state: Mutex<State>,
    /// Times the breaker entered closed, open, half-open.
    entered: [AtomicU64; 3],
}

/// Permission for one call; tell the breaker how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]. A permit dropped without either (the call was cancelled, e.g. with its
/// request) counts as neither for a closed breaker, and as a failed probe for a half-open one,
/// so the breaker is never left waiting for a probe that will not report.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub(crate) fn new(failures: u32, cooldown: Duration) -> Breaker {
        Breaker {
            failures: failures.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
            entered: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value, valid whatever panicked while it was held.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, state: &mut State, next: State) {
        let index = match next {
            State::Closed { .. } => CLOSED,
            State::Open { .. } => OPEN,
            State::HalfOpen => HALF_OPEN,
        };
        if std::mem::discriminant(state) != std::mem::discriminant(&next) {
            self.entered[index].fetch_add(1, Ordering::Relaxed);
            match next {
                State::Open { .. } => tracing::warn!(
                    cooldown = ?self.cooldown,
                    "redis kv: circuit breaker open, kv calls fail at once until a probe succeeds"
                ),
                State::Closed { .. } => tracing::info!("redis kv: circuit breaker closed"),
                State::HalfOpen => tracing::debug!("redis kv: circuit breaker probing"),
            }
        }
        *state = next;
    }

    /// May a call go to Redis now? `Err` when the breaker is open (or probing).
    pub(crate) fn admit(&self) -> Result<Permit<'_>, KvError> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                self.enter(&mut state, State::HalfOpen);
                true
            }
            State::Open { .. } | State::HalfOpen => {
                return Err(KvError::Backend(
                    "redis unavailable (circuit breaker open)".into(),
                ));
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    fn report(&self, probe: bool, reached: bool) {
        let mut state = self.lock();
        let next = match (*state, reached) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            // A call admitted before the breaker opened reports late: it changes nothing.
            (State::Open { .. }, false) => return,
            (State::HalfOpen, false) if !probe => return,
            (_, false) => State::Open {
                until: crate::deadline::after(Instant::now(), self.cooldown),
            },
        };
        self.enter(&mut state, next);
    }

    /// The state as the metrics number it, and the times each state was entered.
    pub(crate) fn stats(&self) -> (i64, [u64; 3]) {
        let state = match *self.lock() {
            State::Closed { .. } => CLOSED,
            State::Open { .. } => OPEN,
            State::HalfOpen => HALF_OPEN,
        };
        let entered = [0, 1, 2].map(|i| self.entered[i].load(Ordering::Relaxed));
        (state as i64, entered)
    }
}

impl Permit<'_> {
    /// Redis answered (whatever the answer: an error reply still means it is reachable).
    pub(crate) fn succeeded(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, true);
    }

    /// The call could not reach Redis: refused, timed out, cut.
    pub(crate) fn failed(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.report(true, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(40));
        // A success in between starts the count again.
        for _ in 0..2 {
            b.admit().expect("closed").failed();
        }
        b.admit().expect("closed").succeeded();
        for _ in 0..2 {
            b.admit().expect("closed").failed();
        }
        assert_eq!(b.stats().0, 0);
        b.admit().expect("closed").failed();
        assert_eq!(b.stats(), (1, [0, 1, 0]));
        assert!(b.admit().is_err(), "open: fails at once");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.admit().expect("the probe");
        assert!(b.admit().is_err(), "one probe at a time");
        probe.failed();
        assert_eq!(b.stats(), (1, [0, 2, 1]));
        std::thread::sleep(Duration::from_millis(60));
        b.admit().expect("the next probe").succeeded();
        assert_eq!(b.stats(), (0, [1, 2, 2]));
        b.admit().expect("closed again").succeeded();
    }

    #[test]
    fn a_cancelled_probe_reopens_and_late_failures_change_nothing() {
        let b = Breaker::new(1, Duration::from_millis(20));
        let early = b.admit().expect("closed");
        b.admit().expect("closed").failed();
        early.failed();
        assert_eq!(b.stats(), (1, [0, 1, 0]));
        std::thread::sleep(Duration::from_millis(40));
        drop(b.admit().expect("the probe"));
        assert_eq!(b.stats().0, 1, "a dropped probe counts as failed");
    }
}
