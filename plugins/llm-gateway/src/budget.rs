//! Token budgets per principal, in `kv` so every replica shares them (with `[kv] backend =
//! "redis"`). Admission checks what is already charged; an answer is charged when it has been
//! delivered, from the provider's reported usage (streams included). One admitted request may
//! therefore overshoot; the next is refused.

use crate::config::Budget;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_sdk::kv;

fn minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn read(key: &str) -> u64 {
    kv::get(key)
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn total_key(who: &str) -> String {
    format!("llm:total:{who}")
}

fn minute_key(who: &str, minute: u64) -> String {
    format!("llm:minute:{who}:{minute}")
}

/// Why a request is refused: the message and, for the per-minute limit, seconds to wait.
pub struct Exhausted(pub String, pub Option<u64>);

/// Whether `who` may start another request.
pub fn admit(who: &str, budget: &Budget) -> Result<(), Exhausted> {
    if let Some(total) = budget.total_tokens {
        let used = read(&total_key(who));
        if used >= total {
            return Err(Exhausted(
                format!("token budget exhausted for {who}: used {used} of {total} tokens"),
                None,
            ));
        }
    }
    if let Some(per_minute) = budget.tokens_per_minute {
        let used = read(&minute_key(who, minute()));
        if used >= per_minute {
            let wait = 60
                - SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() % 60);
            return Err(Exhausted(
                format!("tokens-per-minute limit reached for {who}: {used} of {per_minute}"),
                Some(wait),
            ));
        }
    }
    Ok(())
}

/// Charges `tokens` to `who`; returns the total charged so far (`None` if `kv` failed).
pub fn charge(who: &str, tokens: u64) -> Option<u64> {
    let delta = i64::try_from(tokens).unwrap_or(i64::MAX);
    let total = kv::increment(&total_key(who), delta, None)
        .ok()
        .and_then(|t| u64::try_from(t).ok());
    if tokens == 0 {
        return total;
    }
    let _ = kv::increment(
        &minute_key(who, minute()),
        delta,
        Some(Duration::from_secs(120)),
    );
    total
}
