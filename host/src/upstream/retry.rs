//! Retries: the policy a request runs under (the upstream's `retry` table with the route's keys
//! over it), the upstream's retry budget, and the jittered backoff between tries.
//!
//! The budget is what keeps retries from multiplying an outage: when every endpoint fails, each
//! request would otherwise become `attempts` requests, piling load on a service that is already
//! down. Retries may add at most `budget_ratio` of the requests seen in the last
//! [`defaults::BUDGET_WINDOW`], plus `budget_min_per_second` (so a quiet upstream can still
//! retry at all). Past it, the failure goes to the client as it is.

use crate::config::{RetryConfig, defaults};
use http::Method;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a try is retried (the `reason` label of `weir_upstream_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The connection could not be made: nothing was sent.
    Connect,
    /// The connection broke before the response head.
    Reset,
    /// The try's time ran out.
    Timeout,
    /// A status from the policy's list.
    Status,
    /// A pooled connection the server had closed: tried again once on a fresh one.
    StaleConnection,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Reset => "reset",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
            Reason::StaleConnection => "stale-connection",
        }
    }
}

/// The retry settings one request runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    pub(crate) attempts: u32,
    pub(crate) statuses: &'a [u16],
    pub(crate) per_try_timeout: Option<Duration>,
    backoff_base: Duration,
    backoff_max: Duration,
    pub(crate) non_idempotent: bool,
    pub(crate) max_replay_body: u64,
}

impl<'a> Policy<'a> {
    /// The route's keys over the upstream's, over the defaults; `None` when neither has a
    /// `retry` table (no retries then, but for a stale pooled connection).
    pub(crate) fn resolve(
        upstream: Option<&'a RetryConfig>,
        route: Option<&'a RetryConfig>,
    ) -> Option<Policy<'a>> {
        if upstream.is_none() && route.is_none() {
            return None;
        }
        macro_rules! key {
            ($field:ident) => {
                route
                    .and_then(|r| r.$field.as_ref())
                    .or_else(|| upstream.and_then(|u| u.$field.as_ref()))
            };
        }
        Some(Policy {
            attempts: key!(attempts).copied().unwrap_or(defaults::RETRY_ATTEMPTS),
            statuses: key!(statuses).map_or(&defaults::RETRY_STATUSES[..], Vec::as_slice),
            per_try_timeout: key!(per_try_timeout).map(|m| m.0),
            backoff_base: key!(backoff_base).map_or(defaults::BACKOFF_BASE, |m| m.0),
            backoff_max: key!(backoff_max).map_or(defaults::BACKOFF_MAX, |m| m.0),
            non_idempotent: key!(retry_non_idempotent).copied().unwrap_or(false),
            max_replay_body: key!(max_replay_body).map_or(defaults::MAX_REPLAY_BODY, |b| b.0),
        })
    }

    /// May a request with `method` be tried again after a try that failed for `reason`? A
    /// failed connect sent nothing, so any method may; otherwise only idempotent ones, unless
    /// the policy says otherwise.
    pub(crate) fn allows(&self, method: &Method, reason: Reason) -> bool {
        reason == Reason::Connect || self.non_idempotent || idempotent(method)
    }

    /// The wait before retry number `n` (1 for the first retry): "full jitter", a random time
    /// up to `base * 2^(n-1)` capped at `max`, so retries of many requests spread out instead
    /// of arriving together.
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        let cap = exp.min(self.backoff_max);
        cap.mul_f64(crate::upstream::balance::random_unit())
    }
}

/// RFC 9110's idempotent methods: repeating them has the effect of sending them once.
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Requests and retries per second over the last [`defaults::BUDGET_WINDOW`].
const SLOTS: usize = 10;

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    second: u64,
    requests: u64,
    retries: u64,
}

/// One upstream's retry budget (shared by all workers and routes).
#[derive(Debug)]
pub(crate) struct Budget {
    ratio: f64,
    min_per_second: u32,
    epoch: Instant,
    slots: Mutex<[Slot; SLOTS]>,
}

impl Budget {
    pub(crate) fn new(cfg: Option<&RetryConfig>) -> Budget {
        Budget {
            ratio: cfg
                .and_then(|c| c.budget_ratio)
                .unwrap_or(defaults::BUDGET_RATIO),
            min_per_second: cfg
                .and_then(|c| c.budget_min_per_second)
                .unwrap_or(defaults::BUDGET_MIN_PER_SECOND),
            epoch: Instant::now(),
            slots: Mutex::new([Slot::default(); SLOTS]),
        }
    }

    fn with_slot<T>(&self, f: impl FnOnce(&mut [Slot; SLOTS], usize, u64) -> T) -> T {
        let second = self.epoch.elapsed().as_secs();
        let i = usize::try_from(second % SLOTS as u64).unwrap_or(0);
        // A poisoned lock only means another thread panicked mid-update: the counts are still
        // usable numbers.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots[i].second != second {
            slots[i] = Slot {
                second,
                ..Slot::default()
            };
        }
        f(&mut slots, i, second)
    }

    /// Counts a request (its first try).
    pub(crate) fn request(&self) {
        self.with_slot(|slots, i, _| slots[i].requests += 1);
    }

    /// Takes one retry from the budget, if there is one left.
    pub(crate) fn try_retry(&self) -> bool {
        let window = defaults::BUDGET_WINDOW.as_secs().max(1);
        self.with_slot(|slots, i, now| {
            let recent = slots
                .iter()
                .filter(|s| now.saturating_sub(s.second) < window);
            let (requests, retries) =
                recent.fold((0u64, 0u64), |(q, r), s| (q + s.requests, r + s.retries));
            let allowed =
                self.ratio * requests as f64 + f64::from(self.min_per_second) * window as f64;
            if (retries as f64) < allowed {
                slots[i].retries += 1;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_the_ratio_plus_the_minimum() {
        let cfg = RetryConfig {
            budget_ratio: Some(0.5),
            budget_min_per_second: Some(0),
            ..RetryConfig::default()
        };
        let b = Budget::new(Some(&cfg));
        for _ in 0..10 {
            b.request();
        }
        let granted = (0..20).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 5);
    }

    #[test]
    fn route_keys_override_upstream_keys() {
        let up = RetryConfig {
            attempts: Some(5),
            statuses: Some(vec![500]),
            ..RetryConfig::default()
        };
        let route = RetryConfig {
            attempts: Some(2),
            retry_non_idempotent: Some(true),
            ..RetryConfig::default()
        };
        let p = Policy::resolve(Some(&up), Some(&route)).expect("policy");
        assert_eq!(p.attempts, 2);
        assert_eq!(p.statuses, &[500]);
        assert!(p.allows(&Method::POST, Reason::Status));
        assert!(Policy::resolve(None, None).is_none());
        let empty = RetryConfig::default();
        let d = Policy::resolve(Some(&empty), None).expect("policy");
        assert!(!d.allows(&Method::POST, Reason::Status));
        assert!(d.allows(&Method::POST, Reason::Connect));
        assert!(d.backoff(30) <= defaults::BACKOFF_MAX);
    }
}
