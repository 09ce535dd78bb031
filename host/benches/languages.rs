//! The cost of the `allowlist` example plugin in each SDK language, without networking:
//! component size, cold compile (`Component::new`, no disk cache), a fresh instance
//! (instantiate + `init`), and one `on-request` on a reused instance. Prints a Markdown table.
//!
//! Run: `cargo bench -p weir --bench languages` after building the examples
//! (`weir plugin build examples/allowlist/<lang>`; `cargo xtask bench-languages` does both).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::capability::kv::{KvHandle, KvStore};
use weir::capability::{Granted, PluginCapabilities};
use weir::config::{InstancePolicy, KvConfig, RuntimeConfig};
use weir::exchange::Exchange;
use weir::plugin::{PluginInstance, Runtime};

fn exchange() -> Box<Exchange> {
    common::exchange("/bench", &[("x-user", "alice")], None)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/allowlist");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // No disk cache: every load is a cold compile.
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: Some("".into()),
        ..RuntimeConfig::default()
    })?;
    let store = KvStore::new(&KvConfig::default(), 1).map_err(anyhow::Error::msg)?;
    let settings = common::settings(InstancePolicy::Pooled, Duration::from_secs(10));
    let config = r#"{"allow":["alice"]}"#;
    println!(
        "| language | component | cold compile | fresh instance (instantiate + init) | hook on a reused instance |"
    );
    println!("|---|---:|---:|---:|---:|");
    for lang in ["rust", "c", "python", "js"] {
        let wasm = root.join(lang).join("allowlist.wasm");
        let Ok(bytes) = std::fs::read(&wasm) else {
            println!("| {lang} | not built ({}) | | | |", wasm.display());
            continue;
        };
        let caps = PluginCapabilities {
            grants: Granted {
                kv: true,
                ..Granted::default()
            },
            kv: Some(KvHandle::new(store.clone(), lang)),
            ..PluginCapabilities::default()
        };
        let t = Instant::now();
        let plugin = runtime.load_bytes(lang, &wasm, &bytes, settings.clone(), Arc::new(caps))?;
        let compile = t.elapsed();
        let (fresh, hook) = rt.block_on(async {
            let mut fresh = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                let instance = PluginInstance::new(&plugin, config).await?;
                fresh.push(t.elapsed().as_secs_f64() * 1e6);
                drop(instance);
            }
            let mut instance = PluginInstance::new(&plugin, config).await?;
            let mut ex = exchange();
            let mut hook = Vec::new();
            for _ in 0..2000 {
                let t = Instant::now();
                let (back, result) = instance.on_request(ex).await;
                hook.push(t.elapsed().as_secs_f64() * 1e6);
                anyhow::ensure!(result.is_ok(), "{lang}: hook failed: {result:?}");
                ex = back;
            }
            Ok::<_, anyhow::Error>((median(fresh), median(hook)))
        })?;
        println!(
            "| {lang} | {:.1} KiB | {:.0} ms | {fresh:.0} µs | {hook:.1} µs |",
            bytes.len() as f64 / 1024.0,
            compile.as_secs_f64() * 1e3
        );
        runtime.retain_compiled(&[]);
    }
    Ok(())
}
