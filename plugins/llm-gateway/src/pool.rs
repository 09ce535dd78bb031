//! Inference routing across a pool of self-hosted endpoints (vLLM and other servers exporting
//! vLLM's metrics): each endpoint's `/metrics` is scraped through `outbound`, the load kept in
//! `kv` for `load_ttl_ms` (one scrape per endpoint per period, shared by every instance), and the
//! request goes to the endpoint with the lowest score
//! `vllm:num_requests_waiting + kv_cache_weight × vllm:kv_cache_usage_perc`. Ties rotate. An
//! endpoint whose metrics cannot be read is used only if none can.

use std::time::Duration;
use weir_sdk::{kv, log, outbound};

/// What an endpoint reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub waiting: f64,
    pub kv_cache: f64,
}

/// Reads the vLLM gauges from Prometheus text (summed over label sets).
pub fn parse(text: &str) -> Option<Load> {
    let mut waiting = None;
    let mut kv_cache: Option<f64> = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or_default().trim();
        match metric {
            "vllm:num_requests_waiting" => *waiting.get_or_insert(0.0) += value,
            // The older name of the same gauge.
            "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" => {
                kv_cache = Some(kv_cache.map_or(value, |k| k.max(value)));
            }
            _ => {}
        }
    }
    Some(Load {
        waiting: waiting?,
        kv_cache: kv_cache.unwrap_or(0.0),
    })
}

fn key(upstream: &str) -> String {
    format!("llm:load:{upstream}")
}

fn cached(upstream: &str) -> Option<Option<Load>> {
    let raw = kv::get(&key(upstream)).ok()??;
    let text = String::from_utf8(raw).ok()?;
    if text == "unreachable" {
        return Some(None);
    }
    let (w, k) = text.split_once(' ')?;
    Some(Some(Load {
        waiting: w.parse().ok()?,
        kv_cache: k.parse().ok()?,
    }))
}

/// The loads of `pool`, scraping (concurrently) those not known within `ttl`.
pub fn loads(pool: &[String], metrics_path: &str, ttl: Duration) -> Vec<Option<Load>> {
    let known: Vec<Option<Option<Load>>> = pool.iter().map(|u| cached(u)).collect();
    let calls: Vec<_> = pool
        .iter()
        .zip(&known)
        .map(|(u, k)| {
            k.is_none()
                .then(|| outbound::start(outbound::Request::get(u, metrics_path).timeout_ms(500)))
        })
        .collect();
    pool.iter()
        .zip(known)
        .zip(calls)
        .map(|((u, known), call)| {
            if let Some(k) = known {
                return k;
            }
            let load = call
                .and_then(|c| c.ok())
                .and_then(|c| outbound::wait(&c).ok())
                .filter(|r| r.status() == 200)
                .and_then(|r| r.read_body(1 << 20).ok())
                .and_then(|b| parse(&String::from_utf8_lossy(&b)));
            let stored = match load {
                Some(l) => format!("{} {}", l.waiting, l.kv_cache),
                None => {
                    log::warn(&format!(
                        "llm-gateway: no load metrics from endpoint \"{u}\""
                    ));
                    "unreachable".into()
                }
            };
            let _ = kv::set(&key(u), stored.as_bytes(), Some(ttl));
            load
        })
        .collect()
}

/// The endpoint of `pool` to use now.
pub fn pick(pool: &[String], metrics_path: &str, ttl: Duration, kv_cache_weight: f64) -> String {
    let loads = loads(pool, metrics_path, ttl);
    let score =
        |l: &Option<Load>| l.map_or(f64::INFINITY, |l| l.waiting + kv_cache_weight * l.kv_cache);
    let best = loads.iter().map(score).fold(f64::INFINITY, f64::min);
    let tied: Vec<usize> = (0..pool.len())
        .filter(|&i| score(&loads[i]) <= best || best.is_infinite())
        .collect();
    let turn = kv::increment("llm:pool-turn", 1, None).unwrap_or(0);
    let i = tied[usize::try_from(turn).unwrap_or(0) % tied.len().max(1)];
    pool[i].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_gauge_names() {
        let text = "# TYPE x gauge\nvllm:num_requests_waiting{model_name=\"a\"} 3\n\
                    vllm:num_requests_waiting{model_name=\"b\"} 2\nvllm:gpu_cache_usage_perc{model_name=\"a\"} 0.5\n";
        assert_eq!(
            parse(text),
            Some(Load {
                waiting: 5.0,
                kv_cache: 0.5
            })
        );
        assert_eq!(parse("other_metric 1\n"), None);
    }
}
