//! What bounds one call into a plugin: its **execution budget**, the CPU time its own execution
//! uses, and a generous wall-clock **backstop**.
//!
//! The budget is measured with the worker thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) within
//! every poll of the call's future: a hook's fiber runs only inside those polls, so the sum is
//! the time the plugin (and the host calls it made) actually ran, whatever else the machine or
//! the worker was doing. In a call's first poll the clock is read from its first epoch tick on
//! (see [`Meter::resume`]), so a short call costs no clock read at all. Time the fiber waits for
//! its thread, or for the network inside a `kv` or `outbound` call, is not counted. The engine's
//! epoch tick (every 5 ms) is where the running call checks its budget and yields to other
//! requests; the backstop catches what the budget cannot see: a call that keeps waiting, whether
//! for its thread or in a host call (WASI clocks), where a timer ends it.
//!
//! ARCHITECTURE.md ("Execution budgets") says why this and not wasmtime fuel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Raised at an epoch tick once a call has used its execution budget.
#[derive(Debug, thiserror::Error)]
#[error("execution budget of {0:?} CPU time used up")]
pub(crate) struct BudgetExceeded(pub(crate) Duration);

/// Raised at an epoch tick once a call has run past its wall-clock backstop.
#[derive(Debug, thiserror::Error)]
#[error("wall-clock backstop of {0:?} passed")]
pub(crate) struct BackstopPassed(pub(crate) Duration);

/// One call's account, shared between the call's future (which adds each poll's CPU time and
/// enforces the backstop while the call waits) and the store's epoch callback (which checks
/// both mid-poll). Both run on the worker thread; atomics only because the store must be `Send`.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Nanoseconds used by the polls that have finished.
    used: AtomicU64,
    /// The thread's CPU clock when it was first read in the current poll ([`UNREAD`] before).
    resumed: AtomicU64,
    /// Whether CPU time is measured (`false` under fuel metering: the backstop only).
    cpu: AtomicBool,
    /// Whether the current call has been polled before.
    polled: AtomicBool,
    /// The backstop, in nanoseconds since [`epoch`].
    deadline: AtomicU64,
}

/// `Meter::resumed` before the clock was read in the current poll.
const UNREAD: u64 = 0;

impl Meter {
    /// A poll starts. The first poll of a call reads the clock lazily, at its first epoch tick:
    /// most hook calls end within one poll and before any tick, and reading the thread CPU
    /// clock is a system call (about half a microsecond, as much as a small hook). Later polls
    /// (the call yielded at a tick, or waited in a host call) read it at once. What a call runs
    /// before its first tick (at most one tick, 5 ms) is therefore not counted.
    fn resume(&self) {
        let later = self.polled.swap(true, Ordering::Relaxed);
        let at = if later && self.cpu.load(Ordering::Relaxed) {
            thread_cpu_ns().max(UNREAD + 1)
        } else {
            UNREAD
        };
        self.resumed.store(at, Ordering::Relaxed);
    }

    /// A poll ends: adds what it ran since the clock was first read in it.
    fn pause(&self) {
        let resumed = self.resumed.load(Ordering::Relaxed);
        if resumed != UNREAD && self.cpu.load(Ordering::Relaxed) {
            let ran = thread_cpu_ns().saturating_sub(resumed);
            self.used.fetch_add(ran, Ordering::Relaxed);
        }
    }

    /// CPU time used so far, including the poll running now (call only from inside a poll, at
    /// an epoch tick).
    fn used_now(&self) -> u64 {
        if !self.cpu.load(Ordering::Relaxed) {
            return 0;
        }
        let now = thread_cpu_ns().max(UNREAD + 1);
        let resumed = match self.resumed.load(Ordering::Relaxed) {
            UNREAD => {
                self.resumed.store(now, Ordering::Relaxed);
                now
            }
            at => at,
        };
        let running = now.saturating_sub(resumed);
        self.used.load(Ordering::Relaxed).saturating_add(running)
    }

    fn deadline(&self) -> Instant {
        let ns = self.deadline.load(Ordering::Relaxed);
        crate::deadline::after(epoch(), Duration::from_nanos(ns))
    }

    fn set_deadline(&self, at: Instant) {
        let ns = at.saturating_duration_since(epoch()).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        self.deadline.store(ns, Ordering::Relaxed);
    }
}

/// The instant deadlines are counted from (the process's first call).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// The limits of the call running in a store, kept in its `HostState`.
#[derive(Debug)]
pub(crate) struct CallLimits {
    meter: Arc<Meter>,
    budget: Duration,
    backstop: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            meter: Arc::default(),
            budget: Duration::MAX,
            backstop: Duration::MAX,
        }
    }
}

impl CallLimits {
    /// Starts a call with `budget` of CPU time (`None`: not measured) and `backstop` of
    /// elapsed time.
    pub(crate) fn start(&mut self, budget: Option<Duration>, backstop: Duration) {
        self.meter.used.store(0, Ordering::Relaxed);
        self.meter.polled.store(false, Ordering::Relaxed);
        self.meter.cpu.store(budget.is_some(), Ordering::Relaxed);
        self.budget = budget.unwrap_or(Duration::MAX);
        self.backstop = backstop;
        // Durations are bounded at validation; an absurd one still only means "never".
        self.meter
            .set_deadline(crate::deadline::after(Instant::now(), backstop));
    }

    /// Moves the backstop by time spent waiting on the network in a capability call (bounded by
    /// that call's own timeout).
    pub(crate) fn waited(&mut self, since: Instant) {
        let moved = crate::deadline::after(self.meter.deadline(), since.elapsed());
        self.meter.set_deadline(moved);
    }

    /// At an epoch tick: an error ends the call; `Ok` lets it go on (after a yield).
    pub(crate) fn check(&self) -> wasmtime::Result<()> {
        if u128::from(self.meter.used_now()) > self.budget.as_nanos() {
            return Err(BudgetExceeded(self.budget).into());
        }
        if Instant::now() >= self.meter.deadline() {
            return Err(BackstopPassed(self.backstop).into());
        }
        Ok(())
    }

    /// The meter this store's calls are counted on (see [`metered`]).
    pub(crate) fn meter(&self) -> (Arc<Meter>, Duration) {
        (self.meter.clone(), self.backstop)
    }

    /// CPU time the last call used.
    #[cfg(test)]
    fn used(&self) -> Duration {
        Duration::from_nanos(self.meter.used.load(Ordering::Relaxed))
    }
}

/// Wraps a call's future so that its polls are counted on the meter and, while it waits (a
/// fiber suspended in a host call runs no Wasm, so no epoch check sees it), the backstop still
/// ends it. `None`: an unmetered runtime reads no clock and sets no timer.
pub(crate) fn metered<F, T>(meter: Option<(Arc<Meter>, Duration)>, inner: F) -> Metered<F>
where
    F: Future<Output = wasmtime::Result<T>>,
{
    Metered {
        inner,
        meter,
        backstop: None,
    }
}

pin_project_lite::pin_project! {
    /// A plugin call's future, measured: every poll adds the thread CPU time it took.
    pub(crate) struct Metered<F> {
        #[pin]
        inner: F,
        meter: Option<(Arc<Meter>, Duration)>,
        // Armed the first time the call waits; most calls never do.
        backstop: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F, T> Future for Metered<F>
where
    F: Future<Output = wasmtime::Result<T>>,
{
    type Output = wasmtime::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some((meter, backstop)) = this.meter else {
            return this.inner.poll(cx);
        };
        meter.resume();
        let out = this.inner.poll(cx);
        meter.pause();
        if out.is_ready() {
            return out;
        }
        let deadline = tokio::time::Instant::from_std(meter.deadline());
        let sleep = this
            .backstop
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(BackstopPassed(*backstop).into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(for_: Duration) {
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < for_.as_nanos() as u64 {
            std::hint::black_box(0);
        }
    }

    #[test]
    fn a_call_over_its_budget_fails_the_check() {
        let mut limits = CallLimits::default();
        limits.start(Some(Duration::from_millis(5)), Duration::from_secs(3600));
        limits.meter.resume();
        // The first tick of the poll reads the clock; the next counts from there.
        assert!(limits.check().is_ok());
        spin(Duration::from_millis(6));
        let err = limits.check().expect_err("over budget");
        assert!(err.downcast_ref::<BudgetExceeded>().is_some());
    }

    #[test]
    fn time_outside_the_polls_is_not_counted() {
        let mut limits = CallLimits::default();
        limits.start(Some(Duration::from_millis(20)), Duration::from_secs(3600));
        limits.meter.resume();
        assert!(limits.check().is_ok());
        spin(Duration::from_millis(10));
        limits.meter.pause();
        assert!(
            limits.used() >= Duration::from_millis(10),
            "{:?}",
            limits.used()
        );
        // CPU spent between polls (another request on the same thread) is not the call's.
        spin(Duration::from_millis(30));
        limits.meter.resume();
        assert!(limits.check().is_ok(), "used {:?}", limits.used());
        spin(Duration::from_millis(15));
        let err = limits.check().expect_err("10 + 15 ms used of 20");
        assert!(err.downcast_ref::<BudgetExceeded>().is_some());
    }

    /// A long call yields at every tick, so each of its polls lasts about one tick: all but the
    /// first must be counted whole.
    #[test]
    fn a_call_that_yields_at_every_tick_is_counted() {
        let mut limits = CallLimits::default();
        limits.start(Some(Duration::from_millis(20)), Duration::from_secs(3600));
        for _ in 0..5 {
            limits.meter.resume();
            spin(Duration::from_millis(6));
            // The tick: checked, then the call yields.
            if limits.check().is_err() {
                return;
            }
            limits.meter.pause();
        }
        panic!(
            "5 polls of 6 ms passed a 20 ms budget: used {:?}",
            limits.used()
        );
    }

    #[test]
    fn sleeping_is_not_execution_but_the_backstop_sees_it() {
        let mut limits = CallLimits::default();
        limits.start(Some(Duration::from_millis(50)), Duration::from_millis(20));
        limits.meter.resume();
        std::thread::sleep(Duration::from_millis(40));
        let err = limits.check().expect_err("past the backstop");
        assert!(err.downcast_ref::<BackstopPassed>().is_some());
        assert!(limits.used() < Duration::from_millis(50));
    }

    #[test]
    fn an_absurd_backstop_does_not_overflow() {
        let mut limits = CallLimits::default();
        limits.start(Some(Duration::MAX), Duration::MAX);
        limits.waited(Instant::now());
        limits.meter.resume();
        assert!(limits.check().is_ok());
    }
}
