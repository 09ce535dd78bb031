//! Micro-benchmark of the plugin runtime, without networking: what one hook call costs on a
//! reused (pooled) instance, and what a fresh instance per request costs (store + instantiate +
//! `init` + one hook + drop). Prints medians and p99 in microseconds. Then the cost of metering:
//! the pooled hook with no interruption, with CPU-time budgets (the default) and with fuel.
//! Last, the same header edits by a WIT plugin and by a proxy-wasm filter, per request.
//!
//! Run: `cargo bench -p weir --bench hooks` (needs the plugins built: `cargo xtask plugins`).

mod common;

// The gateway's allocator (`main.rs`): instantiation allocates, and the figures should be the
// gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};
use weir::config::{InstancePolicy, Metering, RuntimeConfig};
use weir::exchange::Exchange;
use weir::plugin::{PluginInstance, Runtime};

const ITERATIONS: usize = 20_000;

fn exchange() -> Box<Exchange> {
    common::exchange(
        "/v1/items?limit=10",
        &[
            ("host", "api.example.com"),
            ("x-api-key", "k-1"),
            ("accept", "application/json"),
            ("user-agent", "bench/1.0"),
        ],
        Some("api.example.com"),
    )
}

/// The exchange a hook gave back, with the key `api-key` strips put back, so that every call
/// does the same work.
fn with_key(mut ex: Box<Exchange>) -> Box<Exchange> {
    ex.request
        .headers
        .insert("x-api-key", http::HeaderValue::from_static("k-1"));
    ex
}

/// Times a whole fresh instance per iteration: store + instantiate + `init` + one hook + drop.
async fn fresh_samples(
    plugin: &weir::plugin::LoadedPlugin,
    config: &str,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(ITERATIONS);
    let mut ex = exchange();
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        let mut instance = PluginInstance::new(plugin, config).await?;
        let (back, result) = instance.on_request(ex).await;
        drop(instance);
        samples.push(t.elapsed());
        anyhow::ensure!(result.is_ok(), "hook failed: {result:?}");
        ex = with_key(back);
    }
    Ok(samples)
}

/// Times instantiation alone (store + instantiate + drop), per iteration.
async fn instantiate_samples(plugin: &weir::plugin::LoadedPlugin) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        PluginInstance::instantiate_only(plugin).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// Times one on-request hook on a reused instance, per iteration.
async fn pooled_samples(
    plugin: &weir::plugin::LoadedPlugin,
    config: &str,
) -> anyhow::Result<Vec<Duration>> {
    pooled_n(plugin, config, ITERATIONS).await
}

async fn pooled_n(
    plugin: &weir::plugin::LoadedPlugin,
    config: &str,
    iterations: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut instance = PluginInstance::new(plugin, config).await?;
    let mut ex = exchange();
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let (back, result) = instance.on_request(ex).await;
        samples.push(t.elapsed());
        anyhow::ensure!(result.is_ok(), "hook failed: {result:?}");
        ex = with_key(back);
    }
    Ok(samples)
}

/// The pooled hook under each metering, rounds interleaved so drift hits all alike: the small
/// `api-key` hook (the per-call cost) and a `probe` hook doing 100,000 rounds of arithmetic
/// (the cost that grows with the guest's work).
async fn metering_costs(wasm: &std::path::Path, config: &str) -> anyhow::Result<()> {
    let kinds = [
        ("off", Metering::Off),
        ("cpu-time", Metering::CpuTime),
        ("fuel", Metering::Fuel),
    ];
    let probe = common::built_plugin("probe")?;
    let heavy = r#"{"work":100000}"#;
    let mut plugins = Vec::new();
    for (_, metering) in kinds {
        let runtime = Runtime::new(&RuntimeConfig {
            metering,
            ..RuntimeConfig::default()
        })?;
        let settings = common::settings(InstancePolicy::Pooled, Duration::from_secs(1));
        let small = runtime.load("api-key", wasm, settings.clone(), Default::default())?;
        let big = runtime.load("probe", &probe, settings, Default::default())?;
        plugins.push((small, big, runtime));
    }
    let mut all: Vec<(Vec<Duration>, Vec<Duration>)> = vec![Default::default(); kinds.len()];
    for _round in 0..3 {
        for (i, (small, big, _)) in plugins.iter().enumerate() {
            all[i].0.extend(pooled_samples(small, config).await?);
            all[i].1.extend(pooled_n(big, heavy, 300).await?);
        }
    }
    let (mut base_small, mut base_big) = (0.0, 0.0);
    for ((name, _), (small, big)) in kinds.iter().zip(all) {
        let s = summary(&format!("pooled api-key hook, metering = {name}"), small);
        let b = summary(&format!("pooled 100k-round hook, metering = {name}"), big);
        if base_small == 0.0 {
            (base_small, base_big) = (s, b);
        }
        println!(
            "    metering {name}: {:+.2} µs per small hook, {:+.1}% on the heavy hook, vs off",
            s - base_small,
            (b / base_big - 1.0) * 100.0
        );
    }
    Ok(())
}

/// Times a request hook and a response hook on a reused instance, per iteration: what a
/// plugin that edits both heads costs per request.
async fn both_hooks_samples(
    plugin: &weir::plugin::LoadedPlugin,
    config: &str,
) -> anyhow::Result<Vec<Duration>> {
    let mut instance = PluginInstance::new(plugin, config).await?;
    let mut ex = exchange();
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        ex.phase = weir::exchange::Phase::Request;
        ex.response = None;
        let t = Instant::now();
        let (mut back, result) = instance.on_request(ex).await;
        anyhow::ensure!(result.is_ok(), "request hook failed: {result:?}");
        back.phase = weir::exchange::Phase::Response;
        back.response = Some(http::Response::new(()).into_parts().0);
        let (back, result) = instance.on_response(back).await;
        samples.push(t.elapsed());
        anyhow::ensure!(result.is_ok(), "response hook failed: {result:?}");
        ex = back;
    }
    Ok(samples)
}

/// The same header edits (one request header, one response header) by the `headers` WIT
/// plugin and by a proxy-wasm filter built with the proxy-wasm Rust SDK, pooled, rounds
/// interleaved. The filter is built by `cargo xtask bench` / `bench-proxy-wasm`.
async fn proxy_wasm_costs(runtime: &Runtime) -> anyhow::Result<()> {
    let filter = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../tests/proxy-wasm/header-filter/target/wasm32-unknown-unknown/release/header_filter.wasm",
    );
    if !filter.exists() {
        println!(
            "(proxy-wasm hooks skipped: build {} first)",
            filter.display()
        );
        return Ok(());
    }
    let mut settings = common::settings(InstancePolicy::Pooled, Duration::from_millis(100));
    let wit = runtime.load(
        "headers",
        &common::built_plugin("headers")?,
        settings.clone(),
        Default::default(),
    )?;
    settings.filter.body = weir::config::FilterBody::None;
    let pw = runtime.load("header-filter", &filter, settings, Default::default())?;
    let wit_config =
        r#"{"request":{"set":{"x-user":"bench"}},"response":{"set":{"x-served-by":"weir"}}}"#;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _round in 0..3 {
        a.extend(both_hooks_samples(&wit, wit_config).await?);
        b.extend(both_hooks_samples(&pw, "").await?);
    }
    let wit = summary("pooled WIT headers: request + response hook", a);
    let pw = summary("pooled proxy-wasm filter: the same edits", b);
    println!(
        "    proxy-wasm / WIT per request: {:.2}x ({:+.2} µs)",
        pw / wit,
        pw - wit
    );
    Ok(())
}

fn summary(name: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    let (p50, p99) = (p(0.5), p(0.99));
    println!("{name:<44} p50 {p50:>8.2} µs   p99 {p99:>8.2} µs");
    p50
}

fn main() -> anyhow::Result<()> {
    let wasm = common::built_plugin("api_key")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Runtime::new(&RuntimeConfig::default())?;
    let settings = common::settings(InstancePolicy::Fresh, Duration::from_millis(100));
    let plugin = runtime.load("api-key", &wasm, settings, Default::default())?;
    let config = r#"{"keys":{"k-1":"alice"}}"#;
    let probe_wasm = common::built_plugin("probe")?;
    let probe = runtime.load(
        "probe",
        &probe_wasm,
        plugin.settings.clone(),
        Default::default(),
    )?;

    rt.block_on(async {
        let samples = pooled_samples(&plugin, config).await?;
        let pooled = summary("pooled: one on-request hook", samples);
        // A hook that does nothing (the probe with no config): what the host costs per call
        // (lending the exchange, arming the budget, the async call into the component).
        let samples = pooled_samples(&probe, "{}").await?;
        summary("pooled: empty hook (host cost per call)", samples);

        // Fresh instance per request: store + instantiate + init + hook + drop.
        let samples = fresh_samples(&plugin, config).await?;
        let fresh = summary("fresh: instantiate + init + hook + drop", samples);

        // The same with a plugin whose init has nothing to parse, to show the config's share.
        let samples = fresh_samples(&probe, "{}").await?;
        summary("fresh, empty config (probe): same steps", samples);
        let samples = instantiate_samples(&plugin).await?;
        let bare = summary("fresh: instantiate + drop (no init, no hook)", samples);
        println!(
            "    of the fresh api-key instance: instantiation {bare:.2} µs, init + hook {:.2} µs",
            fresh - bare
        );
        println!(
            "fresh/pooled cost ratio: {:.1}x   (target: fresh ≤ 10 µs: {})",
            fresh / pooled,
            if fresh <= 10.0 { "met" } else { "NOT met" }
        );
        metering_costs(&wasm, config).await?;
        proxy_wasm_costs(&runtime).await
    })
}
