//! Micro-benchmark of capability calls from a plugin, without HTTP: the cost of one `kv` get,
//! set and increment on the embedded store and on a real Redis (if `redis-server` is installed),
//! as ratios to the cheapest host call (`request.header`) measured in the same run.
//!
//! Run: `cargo bench -p weir --bench capabilities` (needs the plugins built:
//! `cargo xtask plugins`). The `kv-bench` fixture makes N calls of one kind per hook.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::capability::kv::{KvHandle, KvStore};
use weir::capability::{Granted, PluginCapabilities};
use weir::config::{InstancePolicy, KvBackendKind, KvConfig, Millis, RuntimeConfig};
use weir::exchange::Exchange;
use weir::plugin::{LoadedPlugin, PluginInstance, Runtime};

/// Calls per hook; the per-call cost is the hook's time divided by this.
const CALLS: u32 = 1000;

fn exchange() -> Box<Exchange> {
    common::exchange("/bench", &[("x-api-key", "k-1")], None)
}

/// Median per-call time in µs of `op`, over `hooks` hooks of `CALLS` calls each.
async fn per_call(plugin: &LoadedPlugin, op: &str, hooks: usize) -> anyhow::Result<f64> {
    let config = format!(r#"{{"op":"{op}","n":{CALLS}}}"#);
    let mut instance = PluginInstance::new(plugin, &config).await?;
    let mut ex = exchange();
    let mut samples = Vec::with_capacity(hooks);
    for _ in 0..hooks {
        let t = Instant::now();
        let (back, result) = instance.on_request(ex).await;
        samples.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS));
        ex = back;
        anyhow::ensure!(result.is_ok(), "hook failed: {result:?}");
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Redis, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let guard = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((guard, port))
}

fn main() -> anyhow::Result<()> {
    let wasm = common::built_plugin("kv_bench")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Runtime::new(&RuntimeConfig::default())?;
    let settings = common::settings(InstancePolicy::Pooled, Duration::from_secs(10));
    let load = |store: Option<Arc<KvStore>>| {
        let caps = PluginCapabilities {
            grants: Granted {
                kv: true,
                ..Granted::default()
            },
            kv: store.map(|s| KvHandle::new(s, "bench")),
            ..PluginCapabilities::default()
        };
        runtime.load("kv-bench", &wasm, settings.clone(), Arc::new(caps))
    };

    let memory = KvStore::new(&KvConfig::default(), 1).map_err(anyhow::Error::msg)?;
    let redis = start_redis();
    rt.block_on(async {
        let plugin = load(Some(memory))?;
        let header = per_call(&plugin, "header", 200).await?;
        println!("{:<36} {header:>8.3} µs/call (baseline)", "request.header");
        let mut rows = vec![];
        for op in ["get", "set", "increment"] {
            rows.push((
                format!("kv {op}, memory"),
                per_call(&plugin, op, 200).await?,
            ));
        }
        match &redis {
            Some((_guard, port)) => {
                let config = KvConfig {
                    backend: KvBackendKind::Redis,
                    url: Some(toml::Spanned::new(
                        0..0,
                        format!("redis://127.0.0.1:{port}"),
                    )),
                    timeout: Millis(Duration::from_secs(2)),
                    ..KvConfig::default()
                };
                let store = KvStore::new(&config, 1).map_err(anyhow::Error::msg)?;
                let plugin = load(Some(store))?;
                for op in ["get", "set", "increment"] {
                    rows.push((
                        format!("kv {op}, redis (loopback)"),
                        per_call(&plugin, op, 10).await?,
                    ));
                }
            }
            None => println!("(redis-server not found: Redis rows skipped)"),
        }
        for (name, us) in rows {
            println!(
                "{name:<36} {us:>8.3} µs/call   {:>7.1}x a header read",
                us / header
            );
        }
        Ok(())
    })
}
