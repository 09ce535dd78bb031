//! `outbound-probe`: a test fixture, not for production. Answers every request with JSON
//! describing one `outbound` call made with its config, so the end-to-end tests can exercise the
//! capability's edges: bodies read chunk by chunk, timeouts, invalid requests, header tricks.
//! Needs `capabilities = { outbound = [...] }`.

use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use weir_sdk::outbound::{self, OutboundError, Request};
use weir_sdk::{Decision, LocalResponse, Plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    upstream: String,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u32>,
    /// `chunks` (count chunks with `next-chunk`) or `body` (`read-body` with `limit`).
    #[serde(default = "default_read")]
    read: String,
    #[serde(default = "default_limit")]
    limit: u32,
    /// Call `wait` twice on the same call.
    #[serde(default)]
    wait_twice: bool,
}

fn default_method() -> String {
    "GET".into()
}
fn default_read() -> String {
    "body".into()
}
fn default_limit() -> u32 {
    1 << 20
}

fn error(e: &OutboundError) -> serde_json::Value {
    json!({ "error": format!("{e:?}") })
}

struct OutboundProbe(Config);

impl Plugin for OutboundProbe {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(OutboundProbe(config))
    }

    fn on_request(&mut self) -> Decision {
        let c = &self.0;
        let mut req = Request::new(&c.method, &c.upstream, &c.path);
        req.headers = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        req.timeout_ms = c.timeout_ms;
        let result = outbound::start(req).and_then(|call| {
            let resp = outbound::wait(&call)?;
            let second = c
                .wait_twice
                .then(|| outbound::wait(&call).err().map(|e| format!("{e:?}")));
            Ok((resp, second))
        });
        let answer = match result {
            Err(e) => error(&e),
            Ok((resp, second)) => {
                let status = resp.status();
                if c.read == "chunks" {
                    let mut chunks = 0u64;
                    let mut bytes = 0u64;
                    loop {
                        match resp.next_chunk() {
                            Ok(Some(chunk)) => {
                                chunks += 1;
                                bytes += chunk.len() as u64;
                            }
                            Ok(None) => {
                                break json!({"status": status, "chunks": chunks, "bytes": bytes});
                            }
                            Err(e) => break error(&e),
                        }
                    }
                } else {
                    match resp.read_body(c.limit) {
                        Ok(body) => json!({
                            "status": status,
                            "body": String::from_utf8_lossy(&body),
                            "second_wait": second,
                        }),
                        Err(e) => error(&e),
                    }
                }
            }
        };
        Decision::Respond(LocalResponse::new(200).json(&answer))
    }
}

weir_sdk::plugin!(OutboundProbe);
