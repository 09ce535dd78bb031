//! proxy-wasm against WIT: the same header edits (one request header set, one response header
//! set) by the `headers` WIT plugin and by a proxy-wasm filter built with the proxy-wasm Rust
//! SDK (`tests/proxy-wasm/header-filter`), both pooled, in interleaved rounds of one run; the
//! filter with no body callbacks (as the WIT plugin has none) and with its default streamed
//! bodies. Part of `cargo xtask bench`; alone as `cargo xtask bench-proxy-wasm`.

use super::{Options, Sample, free_port, median, start_weir, wrk};
use crate::{Guard, sh};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The targets, in the order of a round: (name, slug).
const TARGETS: [(&str, &str); 4] = [
    ("weir, no plugins", "plain"),
    ("weir, WIT `headers` plugin, pooled", "wit"),
    (
        "weir, proxy-wasm header filter, pooled, body = none",
        "filter",
    ),
    (
        "weir, proxy-wasm header filter, pooled, bodies streamed",
        "filter-streamed",
    ),
];

/// Builds the header filter for wasm32-unknown-unknown; its path.
fn build_filter() -> Result<PathBuf> {
    let dir = std::env::current_dir()?.join("tests/proxy-wasm/header-filter");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh(Command::new(cargo)
        .args(["build", "--quiet", "--release", "--target"])
        .arg("wasm32-unknown-unknown")
        .current_dir(&dir))?;
    Ok(dir.join("target/wasm32-unknown-unknown/release/header_filter.wasm"))
}

fn config(slug: &str, port: u16, backend: u16, plugins: &Path, filter: &Path) -> Result<String> {
    let mut s = format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.backend]\nendpoints = [\"http://127.0.0.1:{backend}\"]\n"
    );
    let (plugin, entry) = match slug {
        "plain" => {
            s.push_str("[[routes]]\nname = \"bench\"\nupstream = \"backend\"\n");
            return Ok(s);
        }
        "wit" => (
            format!(
                "path = {:?}",
                plugins.join("headers.wasm").display().to_string()
            ),
            "{ plugin = \"p\", config = { request = { set = { \"x-user\" = \"bench\" } }, response = { set = { \"x-served-by\" = \"weir\" } } } }",
        ),
        "filter" | "filter-streamed" => {
            let body = if slug == "filter" { "none" } else { "streamed" };
            (
                format!(
                    "path = {:?}\nkind = \"proxy-wasm\"\nbody = \"{body}\"",
                    filter.display().to_string()
                ),
                "{ plugin = \"p\" }",
            )
        }
        other => bail!("no target {other}"),
    };
    s.push_str(&format!(
        "[plugins.p]\n{plugin}\ninstances = \"pooled\"\n\
         [[routes]]\nname = \"bench\"\nupstream = \"backend\"\nchain = [{entry}]\n"
    ));
    Ok(s)
}

/// Checks that a target does the edits it is measured for: the response header.
fn check(port: u16, slug: &str) -> Result<()> {
    let (head, _) = super::http_get(port, "/bench")?;
    if slug != "plain" && !head.to_ascii_lowercase().contains("x-served-by: weir") {
        bail!("{slug}: the response lacks x-served-by:\n{head}");
    }
    Ok(())
}

/// Measures the [`TARGETS`] against `backend` in interleaved rounds (a one-second warm-up
/// each, then `o.rounds` rounds of each in turn); the median round per target.
pub(super) fn measure(
    weir: &Path,
    plugins: &Path,
    dir: &Path,
    backend: u16,
    o: &Options,
) -> Result<Vec<(&'static str, Sample)>> {
    let filter = build_filter()?;
    let mut running: Vec<(Guard, u16)> = Vec::new();
    for (_, slug) in TARGETS {
        let port = free_port()?;
        let config = config(slug, port, backend, plugins, &filter)?;
        let guard = start_weir(weir, dir, &format!("pw-{slug}"), &config, port)?;
        check(port, slug)?;
        wrk(port, o, 1)?;
        running.push((guard, port));
    }
    let mut rounds: Vec<Vec<Sample>> = TARGETS.iter().map(|_| Vec::new()).collect();
    for _ in 0..o.rounds {
        for ((_, port), samples) in running.iter().zip(&mut rounds) {
            samples.push(wrk(*port, o, o.duration)?);
        }
    }
    let results = TARGETS
        .iter()
        .zip(rounds)
        .map(|((name, _), samples)| {
            let errors = samples.iter().map(|s| s.errors).sum();
            let m = median(samples);
            (*name, Sample { errors, ..m })
        })
        .collect::<Vec<_>>();
    for (name, s) in &results {
        if s.errors > 0 {
            bail!("{name}: wrk saw {} errors", s.errors);
        }
    }
    Ok(results)
}

pub(super) fn print(results: &[(&str, Sample)], o: &Options) {
    println!(
        "\n## proxy-wasm filter vs WIT plugin (HTTP/1.1, wrk -t{} -c{} -d{}s, median of {} interleaved rounds)\n",
        o.connections.min(2),
        o.connections,
        o.duration,
        o.rounds
    );
    super::print_samples(results);
    let [plain, wit, filter, streamed] = [0, 1, 2, 3].map(|i| results[i].1);
    println!("\n| ratio | value |\n|---|---:|");
    println!(
        "| proxy-wasm header filter / WIT header plugin (req/s) | {:.2} |",
        filter.rps / wit.rps
    );
    println!(
        "| ... with bodies streamed / WIT header plugin (req/s) | {:.2} |",
        streamed.rps / wit.rps
    );
    println!(
        "| WIT header plugin / no plugins (req/s) | {:.2} |",
        wit.rps / plain.rps
    );
    println!(
        "| proxy-wasm header filter / no plugins (req/s) | {:.2} |",
        filter.rps / plain.rps
    );
    println!(
        "| p50 added by the filter over the WIT plugin | {:+.3} ms |",
        filter.p50_ms - wit.p50_ms
    );
}

/// `cargo xtask bench-proxy-wasm`: only this comparison.
pub fn proxy_wasm(args: &[String]) -> Result<()> {
    let o = super::options(args)?;
    super::ensure_tools()?;
    let (weir, plugins) = super::build_release(o.weir.as_deref())?;
    let dir = super::tempdir()?;
    let (backend_guard, backend) = super::start_backend(&dir)?;
    let results = measure(&weir, &plugins, &dir, backend, &o)?;
    print(&results, &o);
    drop(backend_guard);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
