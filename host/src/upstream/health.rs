//! Endpoint health: what the request path observes (passive outlier ejection) and what the
//! upstream's checker task probes (active health checks). An endpoint takes traffic while it is
//! neither ejected nor unhealthy; the balancer falls back to the others when all are down.
//!
//! Ejection: after `consecutive_failures` failed tries in a row (connect errors, resets,
//! timeouts, 502/503/504), an endpoint is left out for `base_ejection_time` × the number of
//! times it has been ejected, at most `max_ejection_time`, and never when that would leave more
//! than `max_ejected_percent` of the endpoints ejected. Active checks mark an endpoint unhealthy
//! after `unhealthy_threshold` failed probes and healthy again after `healthy_threshold`
//! passing ones, which also ends an ejection early.

use super::{Endpoint, HttpClient};
use crate::config::{HealthCheckConfig, OutlierConfig};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call (ejection deadlines are kept as such, in atomics). Never 0.
pub(crate) fn now_ms() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// One endpoint's live state, shared by the workers and the checker task.
#[derive(Debug, Default)]
pub(crate) struct EndpointState {
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    /// `now_ms()` when the current ejection ends; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Set by failing active checks.
    unhealthy: AtomicBool,
}

impl EndpointState {
    pub(crate) fn available_at(&self, now: u64) -> bool {
        !self.unhealthy.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn start_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_request(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn ejected_at(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// The admin API's view.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let now = now_ms();
        let state = if self.unhealthy.load(Ordering::Relaxed) {
            "unhealthy"
        } else if self.ejected_at(now) {
            "ejected"
        } else {
            "healthy"
        };
        serde_json::json!({
            "state": state,
            "consecutive_failures": self.consecutive_failures.load(Ordering::Relaxed),
            "in_flight": self.in_flight(),
            "ejections": self.ejections.load(Ordering::Relaxed),
        })
    }
}

/// Passive outlier detection over one upstream's endpoints.
pub(crate) struct Outlier {
    cfg: Option<OutlierConfig>,
}

impl Outlier {
    pub(crate) fn new(cfg: Option<OutlierConfig>) -> Outlier {
        Outlier { cfg }
    }

    /// Records the outcome of a try on `endpoints[i]`; ejects it when it keeps failing.
    pub(crate) fn record(&self, up: &super::Shared, i: usize, failed: bool) {
        let ep = &up.endpoints[i].state;
        if !failed {
            ep.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = ep.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(cfg) = &self.cfg else { return };
        let now = now_ms();
        if failures < cfg.consecutive_failures || ep.ejected_at(now) {
            return;
        }
        let ejected = up
            .endpoints
            .iter()
            .filter(|e| e.state.ejected_at(now))
            .count();
        let allowed = up.endpoints.len() * cfg.max_ejected_percent as usize / 100;
        if ejected >= allowed {
            return;
        }
        let n = ep.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = cfg
            .base_ejection_time
            .0
            .saturating_mul(n)
            .min(cfg.max_ejection_time.0);
        let until = now + u64::try_from(time.as_millis()).unwrap_or(u64::MAX / 2);
        ep.ejected_until.store(until, Ordering::Relaxed);
        ep.consecutive_failures.store(0, Ordering::Relaxed);
        let label = &up.endpoints[i].label;
        tracing::warn!(
            upstream = &*up.name,
            endpoint = &**label,
            ejection = n,
            ?time,
            "endpoint ejected"
        );
        up.metrics.ejection(&up.name, label);
    }
}

/// Aborts the checker task when the upstream (its snapshot) is dropped, so a reload leaves no
/// task behind.
pub(crate) struct Checker(tokio::task::JoinHandle<()>);

impl Drop for Checker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the active checks of `up`'s endpoints, on the runtime building the snapshot (not a
/// worker's). `None` outside a runtime (nothing to run them on).
pub(crate) fn spawn_checks(
    up: Arc<super::Shared>,
    cfg: HealthCheckConfig,
    client: HttpClient,
) -> Option<Checker> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(Checker(handle.spawn(check_loop(up, cfg, client))))
}

async fn check_loop(up: Arc<super::Shared>, cfg: HealthCheckConfig, client: HttpClient) {
    // Streaks of passing (positive) or failing (negative) probes, per endpoint.
    let mut streaks = vec![0i64; up.endpoints.len()];
    let mut ticker = tokio::time::interval(cfg.interval.0);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let probes = up
            .endpoints
            .iter()
            .map(|ep| probe(&client, ep, &cfg.path, cfg.timeout.0));
        let results = futures_util::future::join_all(probes).await;
        for (i, passed) in results.into_iter().enumerate() {
            let s = &mut streaks[i];
            *s = match (passed, *s) {
                (true, n) if n > 0 => n + 1,
                (true, _) => 1,
                (false, n) if n < 0 => n - 1,
                (false, _) => -1,
            };
            apply(&up, i, *s, &cfg);
        }
    }
}

/// Turns a streak into a transition, when it crosses a threshold.
fn apply(up: &super::Shared, i: usize, streak: i64, cfg: &HealthCheckConfig) {
    let ep = &up.endpoints[i];
    let unhealthy = ep.state.unhealthy.load(Ordering::Relaxed);
    if streak >= i64::from(cfg.healthy_threshold) {
        let was_ejected = ep.state.ejected_at(now_ms());
        if unhealthy || was_ejected {
            ep.state.unhealthy.store(false, Ordering::Relaxed);
            ep.state.ejected_until.store(0, Ordering::Relaxed);
            ep.state.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::info!(
                upstream = &*up.name,
                endpoint = &*ep.label,
                "endpoint healthy"
            );
            up.metrics.health_transition(&up.name, &ep.label, "healthy");
        }
    } else if -streak >= i64::from(cfg.unhealthy_threshold) && !unhealthy {
        ep.state.unhealthy.store(true, Ordering::Relaxed);
        tracing::warn!(
            upstream = &*up.name,
            endpoint = &*ep.label,
            "endpoint unhealthy"
        );
        up.metrics
            .health_transition(&up.name, &ep.label, "unhealthy");
    }
}

/// One probe: `GET path`, passing on a 2xx answer within `timeout`.
async fn probe(client: &HttpClient, ep: &Endpoint, path: &str, timeout: Duration) -> bool {
    let Ok(uri) = http::Uri::builder()
        .scheme(ep.scheme.clone())
        .authority(ep.authority.clone())
        .path_and_query(path)
        .build()
    else {
        return false;
    };
    let mut req = http::Request::new(crate::body::empty());
    *req.uri_mut() = uri;
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("weir-health-check"),
    );
    matches!(
        tokio::time::timeout(timeout, client.request(req)).await,
        Ok(Ok(resp)) if resp.status().is_success()
    )
}
