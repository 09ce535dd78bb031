//! `cargo xtask bench [--duration SECS] [--connections N] [--rounds N] [--weir PATH]
//! [--no-micro] [--profile]`
//!
//! One run measures, with the same backend (an nginx `return 200`) behind every target:
//!
//! - the headline targets — nginx as a reverse proxy, Weir with no plugins and Weir with a
//!   3-plugin Rust chain (pooled instances) — all started at once and measured in interleaved
//!   rounds (nginx, Weir, chain; nginx, Weir, chain; ...; the median round per target), so that
//!   a machine getting slower during the run shifts them alike; in three load shapes: HTTP/1.1
//!   with `wrk -t1 -c32`, HTTP/1.1 with `wrk -t2 -c<connections>` (default 50), and cleartext
//!   HTTP/2 with prior knowledge with `h2load -c8 -m16`;
//! - then, one after the other with `wrk -t2 -c<connections>`: the backend directly, the chain
//!   unmetered, the chain beside 2 CPU hogs, the chain with fresh instances, and a handler
//!   plugin making the upstream call itself;
//! - proxy-wasm against WIT: the `headers` WIT plugin and a proxy-wasm header filter doing the
//!   same edits, pooled, in interleaved rounds (`bench/filters.rs`);
//! - memory: RSS per idle connection (Weir and nginx), per pooled instance and per fresh
//!   instance in flight (see `bench/memory.rs`).
//!
//! It prints one table per load shape, the ratios with their targets ("met" / "NOT met") and
//! the memory figures, then runs the hook and capability micro-benchmarks (`cargo bench`).
//!
//! - `--weir PATH`: use this gateway binary instead of building one; the plugins must already
//!   be built (`cargo xtask plugins`). The micro-benchmarks, which compile the gateway, are
//!   then skipped.
//! - `--no-micro`: skip the micro-benchmarks.
//! - `--profile`: afterwards, record the no-plugin gateway, the pooled chain and the nginx proxy
//!   with `perf` under `wrk -t1 -c32`; writes flame graphs and folded stacks to
//!   `target/bench-profile/` and prints each one's top functions by self time.
//!
//! Everything binds to 127.0.0.1 and every run is bounded in time. Compare ratios, not absolute
//! numbers: this machine is shared.

mod filters;
mod guardrails;
mod llm;
mod mcp;
mod memory;
mod profile;
mod proxy;
mod telemetry;
pub use filters::proxy_wasm;
pub use guardrails::guardrails;
pub use llm::llm;
pub use mcp::mcp;
pub use proxy::bench;
pub use telemetry::telemetry;

use crate::{Guard, plugins, sh};
use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    duration: u64,
    connections: u64,
    rounds: usize,
    /// A prebuilt gateway to run instead of building one.
    weir: Option<PathBuf>,
    no_micro: bool,
    profile: bool,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        duration: 5,
        connections: 50,
        rounds: 3,
        weir: None,
        no_micro: false,
        profile: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} takes a value"));
        let number = |v: &String| v.parse::<u64>().with_context(|| format!("{a} {v}"));
        match a.as_str() {
            "--duration" => o.duration = number(value()?)?,
            "--connections" => o.connections = number(value()?)?,
            "--rounds" => o.rounds = usize::try_from(number(value()?)?)?,
            "--weir" => o.weir = Some(PathBuf::from(value()?)),
            "--no-micro" => o.no_micro = true,
            "--profile" => o.profile = true,
            other => bail!("unknown option {other}"),
        }
    }
    // A median needs a round, and wrk a connection per thread.
    if o.rounds == 0 || o.duration == 0 || o.connections == 0 {
        bail!("--rounds, --duration and --connections must be at least 1");
    }
    Ok(o)
}

/// Installs wrk, h2load, nginx and redis-server from Debian if missing.
fn ensure_tools() -> Result<()> {
    crate::ensure_debian(&[
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("nginx", "nginx-light"),
        ("redis-server", "redis-server"),
    ])
}

fn nginx_bin() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start_nginx(dir: &Path, name: &str, workers: u32, server: &str) -> Result<Guard> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(&prefix)?;
    let p = prefix.display();
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/cb;\n  proxy_temp_path {p}/pt;\n  \
         fastcgi_temp_path {p}/ft;\n  uwsgi_temp_path {p}/ut;\n  scgi_temp_path {p}/st;\n  {server}\n}}\n"
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new(nginx_bin())
        .args(["-e", "stderr", "-p"])
        .arg(&prefix)
        .arg("-c")
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Guard(child))
}

/// The benchmark backend: nginx answering a fixed 200, one worker. Returns it and its port.
/// `keepalive_requests`: by default nginx closes a connection after 1,000 requests, which
/// would make every client (wrk, the gateways' pools) reconnect all the time.
fn start_backend(dir: &Path) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let guard = start_nginx(
        dir,
        "backend",
        1,
        &format!(
            "server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000; \
             location / {{ return 200 \"hello from the backend\\n\"; }} }}"
        ),
    )?;
    wait_for(port, "backend nginx")?;
    Ok((guard, port))
}

fn start_weir(weir: &Path, dir: &Path, name: &str, config: &str, port: u16) -> Result<Guard> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    let child = Command::new(weir)
        .args(["run", "--config"])
        .arg(&path)
        .env("WEIR_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .context("starting weir")?;
    let guard = Guard(child);
    wait_for(port, name)?;
    Ok(guard)
}

#[derive(Clone, Copy, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Mean latency: h2load reports no percentiles.
    mean_ms: f64,
    /// Non-2xx responses and socket errors wrk counted (h2load: failed, errored, timed out).
    errors: u64,
}

/// A table of named wrk samples: req/s, p50 and p99.
fn print_samples(rows: &[(&str, Sample)]) {
    println!("| target | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|");
    for (name, s) in rows {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} |",
            s.rps, s.p50_ms, s.p99_ms
        );
    }
}

fn parse_latency(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// The headers every request carries: the chain's `api-key` wants the key.
const BENCH_HEADERS: [&str; 4] = ["-H", "x-api-key: bench-key", "-H", "x-user: alice"];

fn wrk(port: u16, o: &Options, seconds: u64) -> Result<Sample> {
    wrk_at(
        &format!("http://127.0.0.1:{port}/bench"),
        &BENCH_HEADERS,
        o.connections,
        seconds,
    )
}

/// wrk against `url` with `extra` arguments (headers, `-s script.lua`).
fn wrk_at(url: &str, extra: &[&str], connections: u64, seconds: u64) -> Result<Sample> {
    // wrk needs at least one connection per thread.
    wrk_threads(url, extra, connections.min(2), connections, seconds)
}

/// [`wrk_at`] with `threads` load-generating threads.
fn wrk_threads(
    url: &str,
    extra: &[&str],
    threads: u64,
    connections: u64,
    seconds: u64,
) -> Result<Sample> {
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .args(extra)
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Sample::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => s.rps = v.parse().unwrap_or(0.0),
            (Some("50%"), Some(v)) => s.p50_ms = parse_latency(v).unwrap_or(0.0),
            (Some("99%"), Some(v)) => s.p99_ms = parse_latency(v).unwrap_or(0.0),
            _ => {}
        }
        s.errors += wrk_errors(line);
    }
    if s.rps == 0.0 {
        bail!("wrk produced no result for {url}:\n{text}");
    }
    Ok(s)
}

/// The errors in one line of wrk's report: `Non-2xx or 3xx responses: N` and
/// `Socket errors: connect A, read B, write C, timeout D`.
fn wrk_errors(line: &str) -> u64 {
    let line = line.trim();
    let numbers = |rest: &str| {
        rest.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>()
    };
    if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
        numbers(rest)
    } else if let Some(rest) = line.strip_prefix("Socket errors:") {
        numbers(rest)
    } else {
        0
    }
}

/// One target: a one-second warm-up (connections, pools, caches), then the median round, with
/// the errors of every round added up.
fn measure(port: u16, o: &Options) -> Result<Sample> {
    let mut errors = wrk(port, o, 1)?.errors;
    let mut rounds = Vec::new();
    for _ in 0..o.rounds {
        let round = wrk(port, o, o.duration)?;
        errors += round.errors;
        rounds.push(round);
    }
    Ok(Sample {
        errors,
        ..median(rounds)
    })
}

/// Starts `python3 tests/peers/SCRIPT --port PORT --log LOG` (the test peers' convention) and
/// waits for it to listen.
fn start_peer(script: &str, port: u16, log: &Path) -> Result<Guard> {
    let guard = Guard(
        Command::new("python3")
            .arg(std::env::current_dir()?.join("tests/peers").join(script))
            .args(["--port", &port.to_string(), "--log"])
            .arg(log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {script}"))?,
    );
    wait_for(port, script)?;
    Ok(guard)
}

/// Like [`measure`], with a wrk Lua script (the request to send) against `url`.
fn measure_script(url: &str, lua: &str, connections: u64, o: &Options) -> Result<Sample> {
    wrk_at(url, &["-s", lua], connections, 1)?;
    let mut rounds = Vec::new();
    for _ in 0..o.rounds {
        let round = wrk_at(url, &["-s", lua], connections, o.duration)?;
        if round.errors > 0 {
            bail!("wrk saw {} errors from {url}", round.errors);
        }
        rounds.push(round);
    }
    Ok(median(rounds))
}

/// Median of the rounds by req/s.
fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    v[v.len() / 2]
}

fn weir_config(port: u16, backend: u16, plugin_dir: &Path, chain: Option<&str>) -> String {
    let mut s = format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.backend]\nendpoints = [\"http://127.0.0.1:{backend}\"]\n"
    );
    match chain {
        None => s.push_str("[[routes]]\nname = \"bench\"\nupstream = \"backend\"\n"),
        Some(policy) => {
            for (name, file) in [
                ("api-key", "api_key"),
                ("headers", "headers"),
                ("router", "router"),
            ] {
                s.push_str(&format!(
                    "[plugins.{name}]\npath = {:?}\ninstances = \"{policy}\"\n",
                    plugin_dir
                        .join(format!("{file}.wasm"))
                        .display()
                        .to_string()
                ));
            }
            s.push_str(
                r#"[[routes]]
name = "bench"
upstream = "backend"
chain = [
  { plugin = "api-key", config = { keys = { "bench-key" = "bench" } } },
  { plugin = "headers", config = { request = { set = { "x-user" = "${principal}" } }, response = { set = { "x-served-by" = "weir" } } } },
  { plugin = "router", config = { rules = [{ header = "x-tenant", equals = "beta", upstream = "backend" }] } },
]
"#,
            );
        }
    }
    s
}

/// A route answered by the `fan-out` handler plugin making one outbound call to the backend:
/// the plugin path for an upstream call, to compare with the host's own proxy path.
fn weir_handler_config(port: u16, backend: u16, plugin_dir: &Path) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.backend]\nendpoints = [\"http://127.0.0.1:{backend}\"]\n\
         [plugins.fan-out]\npath = {:?}\ninstances = \"pooled\"\ncapabilities = {{ outbound = [\"backend\"] }}\n\
         [[routes]]\nname = \"bench\"\nchain = [{{ plugin = \"fan-out\", config = {{ upstreams = [\"backend\"] }} }}]\n",
        plugin_dir.join("fan_out.wasm").display().to_string()
    )
}

/// The processes whose parent is `pid` (nginx's workers), from `/proc/*/stat`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // The command name (field 2) may hold spaces and parentheses; the fields after its
            // last `)` are state, then the parent's pid.
            let after = stat.rsplit_once(')')?.1;
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The gateway binary and the plugins' directory. With `weir` (a prebuilt binary) nothing is
/// built: the plugins must be in place already.
fn build_release(weir: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let root = std::env::current_dir()?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(|t| root.join(t));
    let plugins_dir = match &target {
        Some(target) => target.join("wasm32-wasip2/release"),
        None => root.join("plugins/target/wasm32-wasip2/release"),
    };
    if let Some(weir) = weir {
        let weir = root.join(weir);
        if !weir.is_file() {
            bail!("--weir {}: no such file", weir.display());
        }
        if !plugins_dir.join("api_key.wasm").is_file() {
            bail!(
                "no plugins in {} (build them with `cargo xtask plugins`)",
                plugins_dir.display()
            );
        }
        return Ok((weir, plugins_dir));
    }
    build_gateway()?;
    let weir = match &target {
        Some(target) => target.join("release/weir"),
        None => root.join("target/release/weir"),
    };
    Ok((weir, plugins_dir))
}

/// Builds the plugins and the release gateway. Both builds follow `CARGO_TARGET_DIR` when it is
/// set (the plugins then land in its `wasm32-wasip2/release`), so the benchmarks never run stale
/// binaries from elsewhere.
fn build_gateway() -> Result<()> {
    plugins()?;
    sh(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--release",
            "-p",
            "weir",
        ]),
    )
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A raw HTTP/1.1 GET (the xtask has no HTTP client dependency): returns the head (status line
/// and headers) and the body.
fn http_get(port: u16, path: &str) -> Result<(String, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((head.to_string(), body.to_string()))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Config swaps measured after the plugin swaps.
const CONFIG_SWAPS: usize = 100;

/// The swaps benchmark's gateway: one pooled `probe` answering every request itself, marking
/// the response with its config's `tag` (`x-chain`) and its build (`x-probe-variant`).
fn swaps_config(port: u16, plugin: &Path, tag: &str) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [reload]\npoll_interval = \"20ms\"\n[upstreams.a]\nendpoints = [\"http://127.0.0.1:9\"]\n\
         [plugins.probe]\npath = {:?}\ninstances = \"pooled\"\n\
         [[routes]]\nname = \"r\"\nupstream = \"a\"\n\
         chain = [{{ plugin = \"probe\", config = {{ respond = 200, variant = true, tag = \"{tag}\" }} }}]\n",
        plugin.display().to_string()
    )
}

/// The config tag and plugin build one response shows.
fn version(port: u16) -> Result<(String, String)> {
    let (head, _) = http_get(port, "/")?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    Ok((header("x-chain"), header("x-probe-variant")))
}

/// Replaces `path` atomically (write beside, then rename), as an operator would.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Time from `change` (writing a file) to the first response showing `want`, polling every
/// millisecond.
fn swap_latency(
    port: u16,
    want: (&str, &str),
    change: impl FnOnce() -> Result<()>,
) -> Result<Duration> {
    let written = Instant::now();
    change()?;
    loop {
        let (tag, variant) = version(port)?;
        if (tag.as_str(), variant.as_str()) == want {
            return Ok(written.elapsed());
        }
        if written.elapsed() > Duration::from_secs(60) {
            bail!("{want:?} not served 60 s after the change (still {tag:?}, {variant:?})");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `| what | swaps | p50 | p95 | max |` for a set of swap latencies.
fn latency_row(what: &str, mut took: Vec<Duration>) -> String {
    took.sort();
    if took.is_empty() {
        return format!("| {what} | 0 | | | |");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |pct: usize| took[(took.len() * pct / 100).min(took.len() - 1)];
    format!(
        "| {what} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        took.len(),
        ms(at(50)),
        ms(at(95)),
        ms(took[took.len() - 1])
    )
}

/// `cargo xtask bench-swaps [N]`: swaps a plugin file N times (default 1000) between two builds,
/// then the config 100 times (a tag), each time polling until a response shows the new version.
/// Prints the gateway's RSS after 10 plugin swaps and after N (old compiled code must be dropped
/// once unused, so the two should be close) and the swap latency: from writing the file to the
/// first response that shows the change.
pub fn swaps(args: &[String]) -> Result<()> {
    let n: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let (weir, built) = build_release(None)?;
    let builds = [
        std::fs::read(built.join("probe.wasm"))?,
        std::fs::read(built.join("probe_b.wasm"))?,
    ];
    let dir = tempdir()?;
    let plugin = dir.join("probe.wasm");
    std::fs::write(&plugin, &builds[0])?;
    let port = free_port()?;
    let guard = start_weir(
        &weir,
        &dir,
        "swaps",
        &swaps_config(port, &plugin, "A"),
        port,
    )?;
    let config = dir.join("swaps.toml");
    let pid = guard.0.id();
    let started = Instant::now();
    let mut after_10 = 0;
    let mut plugin_swaps = Vec::with_capacity(n);
    for i in 1..=n {
        let variant = if i % 2 == 1 { "b" } else { "a" };
        plugin_swaps.push(swap_latency(port, ("A", variant), || {
            replace_file(&plugin, &builds[i % 2])
        })?);
        if i == 10 {
            after_10 = rss_kib(pid);
        }
        if i % 100 == 0 || i == 10 {
            eprintln!("after {i} swaps: RSS {} MiB", rss_kib(pid) / 1024);
        }
    }
    let after_n = rss_kib(pid);
    let plugin_secs = started.elapsed().as_secs_f64();
    let variant = if n % 2 == 1 { "b" } else { "a" };
    let mut config_swaps = Vec::with_capacity(CONFIG_SWAPS);
    for i in 1..=CONFIG_SWAPS {
        let tag = if i % 2 == 1 { "B" } else { "A" };
        config_swaps.push(swap_latency(port, (tag, variant), || {
            replace_file(&config, swaps_config(port, &plugin, tag).as_bytes())
        })?);
    }
    let ratio = after_n as f64 / after_10.max(1) as f64;
    println!("\n## Plugin swaps ({n}, {plugin_secs:.1} s)\n");
    println!("| after | RSS |\n|---|---:|");
    println!("| 10 swaps | {} MiB |", after_10 / 1024);
    println!("| {n} swaps | {} MiB |", after_n / 1024);
    println!(
        "\nRSS after {n} / after 10: {ratio:.2} (target ≤ 1.20: {})",
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );
    println!(
        "\n## Swap latency (file written → first response showing it; watcher polls every 20 ms)\n"
    );
    println!("| swap | swaps | p50 | p95 | max |\n|---|---:|---:|---:|---:|");
    println!("{}", latency_row("plugin file", plugin_swaps));
    println!("{}", latency_row("config (tag)", config_swaps));
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `cargo xtask bench-start`: time from starting the release gateway with the 3-plugin chain to
/// its listener accepting, with an empty compiled-plugin cache (cold) and with the cache the
/// first start filled (warm). Median of 5 starts each.
pub fn start(_args: &[String]) -> Result<()> {
    let (weir, plugin_dir) = build_release(None)?;
    let dir = tempdir()?;
    let time_start = |cache: &Path| -> Result<Duration> {
        let port = free_port()?;
        let config = format!(
            "[runtime]\ncache_dir = {:?}\n{}",
            cache.display().to_string(),
            weir_config(port, 9, &plugin_dir, Some("pooled"))
        );
        let t = Instant::now();
        let guard = start_weir(&weir, &dir, "start", &config, port)?;
        let took = t.elapsed();
        drop(guard);
        Ok(took)
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..5 {
        let cache = dir.join(format!("cache-{i}"));
        cold.push(time_start(&cache)?);
        warm.push(time_start(&cache)?);
    }
    cold.sort();
    warm.sort();
    println!("\n## Startup with 3 plugins (median of 5)\n");
    println!("| cache | time to listening |\n|---|---:|");
    println!("| cold (compile) | {:.0} ms |", cold[2].as_secs_f64() * 1e3);
    println!(
        "| warm (load compiled) | {:.0} ms |",
        warm[2].as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `cargo xtask bench-languages`: the `allowlist` example in each SDK language on a route,
/// through the gateway (req/s against the same gateway without plugins), then the
/// `languages` micro-benchmark (size, cold compile, fresh instance, hook call).
pub fn languages(args: &[String]) -> Result<()> {
    let o = options(args)?;
    ensure_tools()?;
    crate::ensure_guest_toolchains()?;
    let (weir, plugin_dir) = build_release(o.weir.as_deref())?;
    let examples = std::env::current_dir()?.join("examples/allowlist");
    for lang in LANGUAGES {
        sh(Command::new(&weir)
            .args(["plugin", "build"])
            .arg(examples.join(lang))
            .env("WEIR_TOOLS", crate::guest_tools_dir()?))?;
    }
    let dir = tempdir()?;
    let (_backend, backend) = start_backend(&dir)?;

    let mut rows = Vec::new();
    for target in std::iter::once("no plugin").chain(LANGUAGES) {
        let port = free_port()?;
        let config = match target {
            "no plugin" => weir_config(port, backend, &plugin_dir, None),
            lang => format!(
                "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.backend]\nendpoints = [\"http://127.0.0.1:{backend}\"]\n\
                 [plugins.allowlist]\npath = {:?}\ninstances = \"pooled\"\ncapabilities = {{ kv = \"bench\" }}\n\
                 [[routes]]\nname = \"bench\"\nupstream = \"backend\"\nchain = [{{ plugin = \"allowlist\", config = {{ allow = [\"alice\"] }} }}]\n",
                examples
                    .join(lang)
                    .join("allowlist.wasm")
                    .display()
                    .to_string()
            ),
        };
        let _guard = start_weir(
            &weir,
            &dir,
            &format!("lang-{target}").replace(' ', "-"),
            &config,
            port,
        )?;
        let m = measure(port, &o)?;
        if m.errors > 0 {
            bail!("{target}: wrk saw {} errors", m.errors);
        }
        eprintln!("{target:<12} {:>10.0} req/s", m.rps);
        rows.push((target, m));
    }
    let base = rows[0].1.rps;
    println!(
        "\n## The allowlist plugin per language (wrk -t2 -c{} -d{}s, median of {} rounds, pooled instances)\n",
        o.connections, o.duration, o.rounds
    );
    println!("| target | req/s | / no plugin | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|");
    for (name, s) in &rows {
        println!(
            "| {name} | {:.0} | {:.2} | {:.3} | {:.3} |",
            s.rps,
            s.rps / base,
            s.p50_ms,
            s.p99_ms
        );
    }
    println!("\n## Per component (no networking)\n");
    sh(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "bench",
            "--quiet",
            "-p",
            "weir",
            "--bench",
            "languages",
        ]),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const LANGUAGES: [&str; 4] = ["rust", "c", "python", "js"];
