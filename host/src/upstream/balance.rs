//! Choosing an endpoint: weighted round-robin, least-request (the less loaded of two endpoints
//! drawn at random by weight, "power of two choices"), or a consistent-hash ring. Every policy
//! skips endpoints that are ejected, unhealthy or already tried by this request; when that
//! leaves none, it falls back step by step (tried ones, then every endpoint) rather than fail.

use super::Endpoint;
use crate::config::{Balance, HashBy, defaults};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How one upstream picks.
pub(crate) struct Balancer {
    kind: Balance,
    /// Round-robin: endpoint indexes in a smooth weighted order, walked by `next`.
    schedule: Vec<usize>,
    next: AtomicUsize,
    /// Hash: (point, endpoint index), sorted by point.
    ring: Vec<(u64, usize)>,
    pub(crate) hash_by: Option<HashBy>,
}

impl Balancer {
    pub(crate) fn new(kind: Balance, hash_by: Option<HashBy>, endpoints: &[Endpoint]) -> Balancer {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        Balancer {
            kind,
            schedule: smooth_schedule(&weights),
            next: AtomicUsize::new(0),
            ring: if kind == Balance::Hash {
                ring(endpoints)
            } else {
                Vec::new()
            },
            hash_by,
        }
    }

    /// The endpoint for the next try; `key` is the request's hash (hash balancing), `tried`
    /// the endpoints this request already used.
    pub(crate) fn pick(&self, endpoints: &[Endpoint], key: Option<u64>, tried: &[usize]) -> usize {
        let now = super::health::now_ms();
        let available = |i: usize| endpoints[i].state.available_at(now);
        // Fallbacks in order: fresh and available; available; fresh; anything.
        let levels: [&dyn Fn(usize) -> bool; 4] = [
            &|i| available(i) && !tried.contains(&i),
            &available,
            &|i| !tried.contains(&i),
            &|_| true,
        ];
        for ok in levels {
            if !(0..endpoints.len()).any(ok) {
                continue;
            }
            let picked = match (self.kind, key) {
                (Balance::Hash, Some(h)) => self.on_ring(h, ok),
                (Balance::RoundRobin, _) => self.round_robin(ok),
                _ => least_request(endpoints, ok),
            };
            if let Some(i) = picked {
                return i;
            }
        }
        0
    }

    fn round_robin(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.schedule.len())
            .map(|k| self.schedule[(start + k) % self.schedule.len()])
            .find(|&i| ok(i))
    }

    /// The first usable endpoint clockwise from `h`.
    fn on_ring(&self, h: u64, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = self.ring.partition_point(|&(p, _)| p < h);
        (0..self.ring.len())
            .map(|k| self.ring[(start + k) % self.ring.len()].1)
            .find(|&i| ok(i))
    }
}

/// Two endpoints drawn by weight; the one with fewer requests in flight per weight wins (the
/// first drawn on a tie). Cheap, and it steers away from a slow endpoint without the herd
/// behaviour of always taking the single least-loaded one.
fn least_request(endpoints: &[Endpoint], ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    let a = weighted_draw(endpoints, &|i| ok(i))?;
    let Some(b) = weighted_draw(endpoints, &|i| i != a && ok(i)) else {
        return Some(a);
    };
    // Requests in flight per weight. An idle pair ties and the tie goes to the first drawn, so
    // at low load the weights alone decide the shares.
    let load = |i: usize| (endpoints[i].state.in_flight() as u64, endpoints[i].weight);
    let ((la, wa), (lb, wb)) = (load(a), load(b));
    // la/wa <= lb/wb, without division.
    Some(if la * u64::from(wb) <= lb * u64::from(wa) {
        a
    } else {
        b
    })
}

fn weighted_draw(endpoints: &[Endpoint], ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = (0..endpoints.len())
        .filter(|&i| ok(i))
        .map(|i| u64::from(endpoints[i].weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = random() % total;
    for i in (0..endpoints.len()).filter(|&i| ok(i)) {
        let w = u64::from(endpoints[i].weight);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// Nginx's smooth weighted round-robin, run once over the whole cycle: weights 3 and 1 give
/// `a a b a`, not `a a a b`.
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some(best) = (0..weights.len()).max_by_key(|&i| (current[i], usize::MAX - i)) else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// Virtual nodes for every endpoint, placed by hashing its URL: an endpoint's points do not
/// depend on the others, so removing one moves only the keys that were on it.
fn ring(endpoints: &[Endpoint]) -> Vec<(u64, usize)> {
    // At most about `MAX_RING` points in all, however large the weights: fewer virtual nodes per
    // unit of weight then (the shares stay proportional, only a little less even).
    const MAX_RING: u32 = 100_000;
    let total: u32 = endpoints.iter().map(|e| e.weight).sum::<u32>().max(1);
    let per_weight = (MAX_RING / total).clamp(1, defaults::HASH_VNODES);
    let mut ring = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        for v in 0..per_weight * ep.weight {
            ring.push((hash(format!("{}#{v}", ep.label).as_bytes()), i));
        }
    }
    ring.sort_unstable();
    ring
}

/// FNV-1a with a final avalanche (splitmix64): stable across processes and releases, unlike
/// the standard library's hasher, and spread well enough for ring points.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(crate::worker::current());
        h.finish() | 1
    });
}

/// A per-thread pseudo-random number (xorshift; balancing and jitter need no more).
pub(crate) fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        mix(x)
    })
}

/// A pseudo-random number in [0, 1).
pub(crate) fn random_unit() -> f64 {
    (random() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_weights_interleave() {
        assert_eq!(smooth_schedule(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_schedule(&[1, 1]), vec![0, 1]);
    }

    #[test]
    fn random_unit_stays_in_range() {
        assert!(
            (0..1000)
                .map(|_| random_unit())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
