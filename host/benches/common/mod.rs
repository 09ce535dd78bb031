//! What the micro-benchmarks share: the exchange a hook is lent, as the proxy would build it,
//! where the built plugins are, and measuring settings. Not every bench uses every item.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir::config::InstancePolicy;
use weir::exchange::{Context, Exchange, Phase};
use weir::plugin::PluginSettings;

/// A first-party plugin's built component, or a hint to build it.
pub fn built_plugin(file: &str) -> anyhow::Result<PathBuf> {
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{file}.wasm"));
    anyhow::ensure!(
        wasm.exists(),
        "{} missing: run `cargo xtask plugins`",
        wasm.display()
    );
    Ok(wasm)
}

/// Plugin settings for measuring: no pool recycling, the given policy and execution budget.
pub fn settings(policy: InstancePolicy, hook_budget: Duration) -> PluginSettings {
    PluginSettings {
        policy,
        hook_budget,
        pool_max_requests: u64::MAX,
        pool_max_memory: usize::MAX,
        ..PluginSettings::default()
    }
}

/// A `GET` of `path` on route `bench` from 127.0.0.1, with these headers.
pub fn exchange(path: &str, headers: &[(&str, &str)], authority: Option<&str>) -> Box<Exchange> {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (request, ()) = req.body(()).expect("request").into_parts();
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    Box::new(Exchange {
        phase: Phase::Request,
        request,
        request_body: None,
        response: None,
        response_body: None,
        context: Context::default(),
        client_addr: client,
        authority: authority.map(str::to_owned),
        scheme: "http",
        route: Arc::from("bench"),
        trace: opentelemetry::Context::new(),
        late_trace: Default::default(),
        merged: None,
        paths: Default::default(),
    })
}
