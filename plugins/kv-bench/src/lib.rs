//! `kv-bench`: a benchmark fixture, not for production. Each `on-request` makes `n` host calls of
//! one kind (`op`: `header`, `get`, `set` or `increment`) and answers 200, so
//! `host/benches/capabilities.rs` can price one call. Needs `capabilities = { kv = "..." }`.

use serde::Deserialize;
use std::hint::black_box;
use weir_sdk::{Decision, LocalResponse, Plugin, kv, request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    op: String,
    n: u32,
}

struct KvBench(Config);

impl Plugin for KvBench {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        match config.op.as_str() {
            "header" | "get" | "set" | "increment" => Ok(KvBench(config)),
            other => Err(format!("unknown op {other:?}")),
        }
    }

    fn on_request(&mut self) -> Decision {
        let mut failures = 0u32;
        for _ in 0..self.0.n {
            let ok = match self.0.op.as_str() {
                "header" => black_box(request::header("x-api-key")).is_some(),
                "get" => kv::get("bench-key").is_ok(),
                "set" => kv::set("bench-key", b"a small value", None).is_ok(),
                _ => kv::increment("bench-counter", 1, None).is_ok(),
            };
            failures += u32::from(!ok);
        }
        if failures > 0 {
            return Decision::Respond(
                LocalResponse::new(500).text(format!("{failures} calls failed")),
            );
        }
        Decision::Respond(LocalResponse::new(200))
    }
}

weir_sdk::plugin!(KvBench);
