//! Instants a duration away, without overflow. Config durations are bounded at parse time
//! (24 h), but some durations come from plugins (a `kv` TTL in milliseconds) or add up
//! (a hook deadline moved by each wait), and `Instant + Duration` panics on overflow.

use std::time::{Duration, Instant};

/// About a century: later than anything the gateway waits for, early enough to be representable.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `start + d`, or the farthest representable instant up to a century away when that overflows.
pub(crate) fn after(start: Instant, d: Duration) -> Instant {
    start
        .checked_add(d)
        .or_else(|| start.checked_add(FAR))
        .unwrap_or(start)
}

/// `start + d` for an expiry: `None` (never) when it cannot be represented.
pub(crate) fn expiry(start: Instant, d: Duration) -> Option<Instant> {
    start.checked_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_panics() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(after(now, Duration::MAX) > now);
        assert_eq!(expiry(now, Duration::MAX), None);
        assert_eq!(
            expiry(now, Duration::from_millis(u64::MAX)),
            now.checked_add(Duration::from_millis(u64::MAX))
        );
    }
}
