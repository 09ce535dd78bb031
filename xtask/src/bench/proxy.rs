//! `cargo xtask bench`: proxy throughput in three load shapes, the ratios that matter, the memory
//! figures, then (optionally) profiles and the micro-benchmarks. See the module doc of `bench`.

use super::{
    BENCH_HEADERS, Options, Sample, build_release, children, ensure_tools, free_port, measure,
    median, parse_latency, start_backend, start_nginx, start_weir, tempdir, wait_for, weir_config,
    weir_handler_config, wrk_threads,
};
use super::{filters, memory, profile};
use crate::{Guard, sh};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// What every part of the benchmark needs: the binaries, a scratch directory, the backend.
pub(super) struct Env {
    pub(super) weir: PathBuf,
    pub(super) plugins: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) backend: u16,
}

/// The targets of the headline comparison, in the order of a round.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Headline {
    Nginx,
    Plain,
    Pooled,
}

pub(super) const HEADLINE: [Headline; 3] = [Headline::Nginx, Headline::Plain, Headline::Pooled];

impl Headline {
    pub(super) fn name(self) -> &'static str {
        match self {
            Headline::Nginx => "nginx reverse proxy",
            Headline::Plain => "weir, no plugins",
            Headline::Pooled => "weir, 3 plugins, pooled",
        }
    }

    /// Starts the target and waits until it listens.
    pub(super) fn start(self, env: &Env) -> Result<Running> {
        if self == Headline::Nginx {
            return start_nginx_proxy(env);
        }
        let port = free_port()?;
        let (slug, chain) = match self {
            Headline::Pooled => ("pooled", Some("pooled")),
            _ => ("plain", None),
        };
        let config = weir_config(port, env.backend, &env.plugins, chain);
        Ok(Running {
            guard: start_weir(&env.weir, &env.dir, slug, &config, port)?,
            h1: port,
            // The plain listener serves HTTP/1.1 and h2c with prior knowledge alike.
            h2: port,
            workers: None,
        })
    }
}

/// A started headline target.
pub(super) struct Running {
    guard: Guard,
    /// Where it serves HTTP/1.1.
    pub(super) h1: u16,
    /// Where it serves HTTP/2 over cleartext with prior knowledge.
    pub(super) h2: u16,
    /// nginx: its worker processes, which serve the requests (the master only supervises).
    workers: Option<usize>,
}

impl Running {
    /// The processes serving requests: nginx's workers, or the gateway.
    pub(super) fn pids(&self) -> Result<Vec<u32>> {
        let pid = self.guard.0.id();
        let Some(workers) = self.workers else {
            return Ok(vec![pid]);
        };
        // The master forks its workers after binding its ports, so they may still be coming.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = children(pid);
            if found.len() >= workers {
                return Ok(found);
            }
            if Instant::now() > deadline {
                bail!("nginx {pid} has {} workers, not {workers}", found.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// nginx as a reverse proxy to the backend, 2 workers, HTTP/1.1 on one port and h2c with prior
/// knowledge on another. `keepalive_requests`: the default (1,000) closes client connections,
/// and upstream ones, every 1,000 requests; h2load does not reconnect, and reconnecting is not
/// what is being compared. (It covers HTTP/2 too: `http2_max_requests` is obsolete since
/// nginx 1.19.7 and only draws a warning.)
fn start_nginx_proxy(env: &Env) -> Result<Running> {
    let (h1, h2, backend) = (free_port()?, free_port()?, env.backend);
    let guard = start_nginx(
        &env.dir,
        "proxy",
        2,
        &format!(
            "upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; keepalive_requests 1000000; }}\n  \
             server {{ listen 127.0.0.1:{h1}; listen 127.0.0.1:{h2} http2; keepalive_requests 1000000;\n    \
             location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
    )?;
    wait_for(h1, "nginx proxy")?;
    wait_for(h2, "nginx proxy (h2c)")?;
    Ok(Running {
        guard,
        h1,
        h2,
        workers: Some(2),
    })
}

/// How the load generator drives a target.
#[derive(Clone, Copy)]
enum Shape {
    /// wrk over HTTP/1.1.
    Http1 { threads: u64, connections: u64 },
    /// h2load over cleartext HTTP/2 with prior knowledge: clients, each with this many
    /// concurrent streams.
    Http2 { clients: u64, streams: u64 },
}

impl Shape {
    fn label(self) -> String {
        match self {
            Shape::Http1 {
                threads,
                connections,
            } => format!("HTTP/1.1, wrk -t{threads} -c{connections}"),
            Shape::Http2 { clients, streams } => {
                format!("HTTP/2 (h2c), h2load -c{clients} -m{streams}")
            }
        }
    }

    fn run(self, target: &Running, seconds: u64) -> Result<Sample> {
        match self {
            Shape::Http1 {
                threads,
                connections,
            } => wrk_threads(
                &format!("http://127.0.0.1:{}/bench", target.h1),
                &BENCH_HEADERS,
                threads,
                connections,
                seconds,
            ),
            Shape::Http2 { clients, streams } => h2load(target.h2, clients, streams, seconds),
        }
    }
}

/// h2load for `seconds` against `port` (h2c with prior knowledge, h2load's default for http).
fn h2load(port: u16, clients: u64, streams: u64, seconds: u64) -> Result<Sample> {
    let url = format!("http://127.0.0.1:{port}/bench");
    let out = Command::new("h2load")
        .args(["-c", &clients.to_string(), "-m", &streams.to_string()])
        .args(["-D", &seconds.to_string()])
        .args(BENCH_HEADERS)
        .arg(&url)
        .output()
        .context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Sample::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // `finished in 5.00s, 70000.00 req/s, 3.21MB/s`
            s.rps = rest
                .split(", ")
                .find_map(|part| part.strip_suffix(" req/s"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            s.errors = h2load_errors(rest);
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // min, max, mean, sd, +/- sd
            s.mean_ms = rest
                .split_whitespace()
                .nth(2)
                .and_then(parse_latency)
                .unwrap_or(0.0);
        }
    }
    if s.rps == 0.0 {
        bail!("h2load produced no result for {url}:\n{text}");
    }
    Ok(s)
}

/// From `N total, N started, N done, N succeeded, F failed, E errored, T timeout`: F + E + T.
/// The counts overlap (failed includes errored); only whether the sum is zero matters.
fn h2load_errors(counts: &str) -> u64 {
    counts
        .split(", ")
        .filter_map(|count| {
            let (n, what) = count.trim().split_once(' ')?;
            let failure = matches!(what, "failed" | "errored" | "timeout");
            failure.then(|| n.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// The headline targets in one shape: a one-second warm-up each, then `rounds` rounds with each
/// target once per round, in turn. Per target: the median round, with every run's errors.
fn interleaved(targets: &[Running], shape: Shape, o: &Options) -> Result<Vec<Sample>> {
    let mut errors = Vec::new();
    for target in targets {
        errors.push(shape.run(target, 1)?.errors);
    }
    let mut runs: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..o.rounds {
        for ((target, rounds), errors) in targets.iter().zip(&mut runs).zip(&mut errors) {
            let sample = shape.run(target, o.duration)?;
            *errors += sample.errors;
            rounds.push(sample);
        }
    }
    Ok(runs
        .into_iter()
        .zip(errors)
        .map(|(rounds, errors)| Sample {
            errors,
            ..median(rounds)
        })
        .collect())
}

/// The shapes of the headline comparison: the issue's, the historical one, and HTTP/2.
fn shapes(o: &Options) -> [Shape; 3] {
    [
        Shape::Http1 {
            threads: 1,
            connections: 32,
        },
        Shape::Http1 {
            threads: o.connections.min(2),
            connections: o.connections,
        },
        Shape::Http2 {
            clients: 8,
            streams: 16,
        },
    ]
}

/// Per shape, the headline targets' samples in [`HEADLINE`] order. The targets run side by
/// side throughout (an idle one costs nothing); any error fails the run.
fn headline(env: &Env, o: &Options) -> Result<Vec<(Shape, Vec<Sample>)>> {
    let running = HEADLINE
        .iter()
        .map(|h| h.start(env))
        .collect::<Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for shape in shapes(o) {
        let samples = interleaved(&running, shape, o)?;
        for (target, s) in HEADLINE.iter().zip(&samples) {
            let name = target.name();
            eprintln!("{:<34} {name:<26} {:>10.0} req/s", shape.label(), s.rps);
            if s.errors > 0 {
                bail!("{name}, {}: {} errors", shape.label(), s.errors);
            }
        }
        results.push((shape, samples));
    }
    Ok(results)
}

/// The targets measured one after the other with `wrk -t2 -c<connections>`: (name, slug).
const OTHERS: [(&str, &str); 5] = [
    ("backend directly", "backend"),
    ("weir, 3 plugins, pooled, unmetered", "unmetered"),
    ("weir, 3 plugins, pooled, 2 CPU hogs", "hogged"),
    ("weir, 3 plugins, fresh", "fresh"),
    ("weir, handler plugin outbound", "handler"),
];

fn start_other(env: &Env, slug: &str, port: u16) -> Result<Guard> {
    let pooled = weir_config(port, env.backend, &env.plugins, Some("pooled"));
    let config = match slug {
        "unmetered" => format!("[runtime]\nmetering = \"off\"\n{pooled}"),
        "hogged" => pooled,
        "fresh" => weir_config(port, env.backend, &env.plugins, Some("fresh")),
        "handler" => weir_handler_config(port, env.backend, &env.plugins),
        other => bail!("no target {other}"),
    };
    start_weir(&env.weir, &env.dir, slug, &config, port)
}

/// The [`OTHERS`], each started, measured and stopped in turn.
fn others(env: &Env, o: &Options) -> Result<Vec<(&'static str, Sample)>> {
    let mut results = Vec::new();
    for (name, slug) in OTHERS {
        let (_guard, port) = if slug == "backend" {
            (None, env.backend)
        } else {
            let port = free_port()?;
            (Some(start_other(env, slug, port)?), port)
        };
        // The hogs run while this target is measured: errors are counted, not fatal.
        let hogged = slug == "hogged";
        let _hogs = crate::Hogs::start(if hogged { 2 } else { 0 })?;
        let m = measure(port, o)?;
        if m.errors > 0 && !hogged {
            bail!("{name}: wrk saw {} errors", m.errors);
        }
        eprintln!("{name:<34} {:>10.0} req/s", m.rps);
        results.push((name, m));
    }
    Ok(results)
}

pub fn bench(args: &[String]) -> Result<()> {
    let o = super::options(args)?;
    ensure_tools()?;
    if o.profile {
        crate::ensure_debian(&[("perf", "linux-perf")])?;
    }
    let (weir, plugins) = build_release(o.weir.as_deref())?;
    let dir = tempdir()?;
    let (backend_guard, backend) = start_backend(&dir)?;
    let env = Env {
        weir,
        plugins,
        dir,
        backend,
    };
    let shapes = headline(&env, &o)?;
    let others = others(&env, &o)?;
    let filters = filters::measure(&env.weir, &env.plugins, &env.dir, env.backend, &o)?;
    let memory = memory::figures(&env)?;
    print_shapes(&shapes, &o);
    print_others(&others, &o);
    print_ratios(&shapes, &others);
    filters::print(&filters, &o);
    memory::print(&memory);
    if o.profile {
        profile::run(&env, &o)?;
    }
    drop(backend_guard);
    let _ = std::fs::remove_dir_all(&env.dir);
    micro(&o)
}

fn print_shapes(shapes: &[(Shape, Vec<Sample>)], o: &Options) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    for (shape, samples) in shapes {
        println!(
            "\n## {} (-d{}s, median of {} interleaved rounds, {cpus} CPUs)\n",
            shape.label(),
            o.duration,
            o.rounds
        );
        let h2 = matches!(shape, Shape::Http2 { .. });
        if h2 {
            println!("| target | req/s | mean ms |\n|---|---:|---:|");
        } else {
            println!("| target | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|");
        }
        for (target, s) in HEADLINE.iter().zip(samples) {
            let name = target.name();
            if h2 {
                println!("| {name} | {:.0} | {:.3} |", s.rps, s.mean_ms);
            } else {
                println!(
                    "| {name} | {:.0} | {:.3} | {:.3} |",
                    s.rps, s.p50_ms, s.p99_ms
                );
            }
        }
    }
}

fn print_others(others: &[(&str, Sample)], o: &Options) {
    println!(
        "\n## Other targets (HTTP/1.1, wrk -t{} -c{} -d{}s, median of {} rounds, one after the other)\n",
        o.connections.min(2),
        o.connections,
        o.duration,
        o.rounds
    );
    super::print_samples(others);
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Per shape the two targets of the issue; then, against the `-t2 -c<connections>` shape, the
/// figures reported without a target.
fn print_ratios(shapes: &[(Shape, Vec<Sample>)], others: &[(&str, Sample)]) {
    println!("\n## Ratios\n\n| ratio | load | value | target |\n|---|---|---:|---|");
    for (shape, s) in shapes {
        let (nginx, plain, pooled) = (s[0], s[1], s[2]);
        let (label, h2) = (shape.label(), matches!(shape, Shape::Http2 { .. }));
        let want = if h2 { 1.2 } else { 1.0 };
        let r = plain.rps / nginx.rps;
        println!(
            "| weir no-plugin / nginx | {label} | {r:.2} | ≥ {want:.2} ({}) |",
            verdict(r >= want)
        );
        let r = pooled.rps / plain.rps;
        println!(
            "| 3-plugin chain pooled / no-plugin | {label} | {r:.2} | ≥ 0.85 ({}) |",
            verdict(r >= 0.85)
        );
        let (what, added) = if h2 {
            ("mean", pooled.mean_ms - plain.mean_ms)
        } else {
            ("p99", pooled.p99_ms - plain.p99_ms)
        };
        println!("| {what} latency added by the pooled chain | {label} | {added:+.3} ms | |");
    }
    let Some((shape, s)) = shapes.get(1) else {
        return;
    };
    let (plain, pooled, label) = (s[1], s[2], shape.label());
    let get = |name: &str| {
        others
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    };
    let fresh = get("weir, 3 plugins, fresh");
    let handler = get("weir, handler plugin outbound");
    let unmetered = get("weir, 3 plugins, pooled, unmetered");
    let hogged = get("weir, 3 plugins, pooled, 2 CPU hogs");
    let rows = [
        ("3-plugin chain fresh / no-plugin", fresh.rps / plain.rps),
        (
            "upstream call via a plugin's `outbound` / host proxy path",
            handler.rps / plain.rps,
        ),
        (
            "pooled chain with CPU-time budgets / without any interruption",
            pooled.rps / unmetered.rps,
        ),
    ];
    for (what, r) in rows {
        println!("| {what} | {label} | {r:.2} | (reported) |");
    }
    println!(
        "| errors of the pooled chain while 2 CPU hogs run | {label} | {} | 0 ({}) |",
        hogged.errors,
        verdict(hogged.errors == 0)
    );
}

/// The hook and capability micro-benchmarks, which compile the gateway: not with a prebuilt one
/// (`--weir`), nor with `--no-micro`.
fn micro(o: &Options) -> Result<()> {
    if o.weir.is_some() || o.no_micro {
        let why = if o.weir.is_some() {
            "--weir"
        } else {
            "--no-micro"
        };
        println!("\n(micro-benchmarks skipped: {why}; they compile the gateway)");
        return Ok(());
    }
    for (title, bench) in [
        ("Hook micro-benchmark", "hooks"),
        ("Capability calls (kv)", "capabilities"),
    ] {
        println!("\n## {title}\n");
        sh(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["bench", "--quiet", "-p", "weir", "--bench", bench]),
        )?;
    }
    Ok(())
}
