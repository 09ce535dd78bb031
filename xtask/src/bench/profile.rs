//! `cargo xtask bench --profile`: where the CPU time goes on the hot path. Each of Weir with no
//! plugins, Weir with the pooled 3-plugin chain and (for comparison) the nginx proxy is started
//! alone, put under `wrk -t1 -c32`, and recorded with `perf` (DWARF call graphs) for a few
//! seconds. Writes `target/bench-profile/<target>.svg` (flame graph) and `<target>.folded`
//! (folded stacks, kernel frames marked `_[k]`), and prints where the samples' leaf frames are
//! (kernel, the target's own binary, compiled plugins, shared libraries) and the top functions
//! by self time.

use super::proxy::{Env, Headline};
use super::{BENCH_HEADERS, Options};
use crate::{Guard, sh};
use anyhow::{Context, Result, bail};
use inferno::collapse::Collapse;
use inferno::collapse::perf::{Folder, Options as FoldOptions};
use inferno::flamegraph::color::{MultiPalette, Palette};
use inferno::flamegraph::{self, Options as FlameOptions};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds perf records, once the load has run for half a second.
const RECORD_SECONDS: u64 = 3;
/// Functions listed per target.
const TOP: usize = 15;

pub(super) fn run(env: &Env, o: &Options) -> Result<()> {
    let out = std::env::current_dir()?.join("target/bench-profile");
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    let mut profiles = Vec::new();
    for target in [Headline::Plain, Headline::Pooled, Headline::Nginx] {
        profiles.push((target, record(env, o, target, &out)?));
    }
    for (target, profile) in &profiles {
        profile.print(target.name());
    }
    println!(
        "\n(flame graphs and folded stacks in {}; profiling took {:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `weir, no plugins` → `weir-no-plugins`.
fn slug(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Starts `target`, loads it and records it; writes its flame graph and folded stacks.
fn record(env: &Env, o: &Options, target: Headline, out: &Path) -> Result<Profile> {
    let running = target.start(env)?;
    let pids = running.pids()?;
    let exe = std::fs::read_link(format!("/proc/{}/exe", pids[0]))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // The load outlasts the recording, so that every sample is of a loaded target.
    let seconds = (o.duration + 2).max(RECORD_SECONDS + 2);
    let load = Guard(
        Command::new("wrk")
            .args(["-t1", "-c32", &format!("-d{seconds}s")])
            .args(BENCH_HEADERS)
            .arg(format!("http://127.0.0.1:{}/bench", running.h1))
            .stdout(Stdio::null())
            .spawn()
            .context("starting wrk")?,
    );
    std::thread::sleep(Duration::from_millis(500));
    let slug = slug(target.name());
    let data = out.join(format!("{slug}.perf.data"));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let recorded = sh(Command::new("perf")
        .args(["record", "-F", "999", "-g", "--call-graph", "dwarf,16384"])
        .args(["-p", &pids.join(","), "-o"])
        .arg(&data)
        .args(["--", "sleep", &RECORD_SECONDS.to_string()]));
    drop(load);
    let script = recorded.and_then(|()| perf_script(&data));
    // Hundreds of MiB of stack copies: not kept.
    let _ = std::fs::remove_file(&data);
    let script = script?;
    let folded = fold(&script)?;
    if folded.trim().is_empty() {
        bail!("perf recorded no samples of {}", target.name());
    }
    std::fs::write(out.join(format!("{slug}.folded")), &folded)?;
    let svg = out.join(format!("{slug}.svg"));
    let title = format!("{}: wrk -t1 -c32, perf -F 999", target.name());
    flame_graph(&folded, &title, &svg)?;
    let (top, total) = top_self(&folded);
    Ok(Profile {
        shares: shares(&script, &exe),
        exe,
        top,
        total,
    })
}

/// `perf script` without inline frames: resolving them through the debug info takes minutes on
/// the gateway's binary; the flame graph does not need them.
fn perf_script(data: &Path) -> Result<String> {
    let out = Command::new("perf")
        .args(["script", "--no-inline", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    if !out.status.success() {
        bail!("perf script -i {} failed: {}", data.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The folded stacks, each sample weighed by its period (ns of cpu-clock), kernel frames
/// marked `_[k]`.
fn fold(script: &str) -> Result<String> {
    let mut options = FoldOptions::default();
    options.annotate_kernel = true;
    let mut folded = Vec::new();
    Folder::from(options).collapse(script.as_bytes(), &mut folded)?;
    Ok(String::from_utf8(folded)?)
}

fn flame_graph(folded: &str, title: &str, path: &Path) -> Result<()> {
    let mut options = FlameOptions::default();
    options.title = title.to_string();
    options.count_name = "ns".into();
    options.colors = Palette::Multi(MultiPalette::Rust);
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    flamegraph::from_lines(&mut options, folded.lines(), file)
        .with_context(|| format!("writing {}", path.display()))
}

/// The [`TOP`] leaf frames by summed weight, and the total weight.
fn top_self(folded: &str) -> (Vec<(String, u64)>, u64) {
    let mut by_leaf: HashMap<&str, u64> = HashMap::new();
    let mut total = 0;
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *by_leaf.entry(leaf).or_default() += count;
        total += count;
    }
    let mut top: Vec<(String, u64)> = by_leaf
        .into_iter()
        .map(|(leaf, count)| (leaf.to_string(), count))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP);
    (top, total)
}

/// Where the samples' leaf frames are, by weight.
#[derive(Default)]
struct Shares {
    /// The kernel and its vDSO (`clock_gettime`), which inferno marks `_[k]` alike.
    kernel: u64,
    /// The target's own binary.
    own: u64,
    /// Plugins compiled by Wasmtime, mapped from the compiled-plugin cache (`*.cwasm`).
    plugins: u64,
    libraries: u64,
    /// Frames perf could not place in any mapping.
    unresolved: u64,
    samples: u64,
}

/// Sorts every sample of `perf script` by the module of its first (leaf) frame.
fn shares(script: &str, exe: &str) -> Shares {
    let mut s = Shares::default();
    // A sample's weight until its leaf frame has been counted.
    let mut weight = None;
    for line in script.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            weight = Some(period(line));
            s.samples += 1;
            continue;
        }
        let Some(w) = weight.take() else {
            continue;
        };
        // `    ffffffff81b69a79 _copy_from_iter+0x119 ([kernel.kallsyms])`
        let module = line
            .trim_end()
            .strip_suffix(')')
            .and_then(|l| l.rsplit_once(" ("))
            .map_or("", |(_, m)| m);
        // `[kernel.kallsyms]`, `[vdso]`, modules; `[unknown]` is no mapping at all.
        let kernel = module.ends_with(".ko") || (module.starts_with('[') && module != "[unknown]");
        let bucket = if kernel {
            &mut s.kernel
        } else if module == exe {
            &mut s.own
        } else if module.ends_with(".cwasm") {
            &mut s.plugins
        } else if module.starts_with('/') && !module.starts_with("//anon") {
            &mut s.libraries
        } else {
            &mut s.unresolved
        };
        *bucket += w;
    }
    s
}

/// A sample's period, from its header `comm pid time: PERIOD event:` (the number after the
/// timestamp); 1 if there is none.
fn period(header: &str) -> u64 {
    let words: Vec<&str> = header.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0].ends_with(':'))
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1)
}

struct Profile {
    exe: String,
    shares: Shares,
    top: Vec<(String, u64)>,
    total: u64,
}

impl Profile {
    fn print(&self, name: &str) {
        let s = &self.shares;
        println!(
            "\n## Profile: {name} (wrk -t1 -c32, perf -F 999 for {RECORD_SECONDS} s, {} samples)\n",
            s.samples
        );
        let sum = (s.kernel + s.own + s.plugins + s.libraries + s.unresolved).max(1) as f64;
        let pct = |w: u64| 100.0 * w as f64 / sum;
        println!("| leaf frame in | % of samples |\n|---|---:|");
        println!("| kernel (and vDSO) | {:.1} |", pct(s.kernel));
        println!("| own code ({}) | {:.1} |", self.exe, pct(s.own));
        println!("| compiled plugins (Wasm) | {:.1} |", pct(s.plugins));
        println!("| shared libraries | {:.1} |", pct(s.libraries));
        println!("| no mapping | {:.1} |", pct(s.unresolved));
        println!("\n| function (self time; `_[k]`: kernel) | % of samples |\n|---|---:|");
        let total = self.total.max(1) as f64;
        for (function, weight) in &self.top {
            let mut cell: String = function.replace('|', "\\|").chars().take(120).collect();
            if function.chars().count() > 120 {
                cell.push('…');
            }
            println!("| `{cell}` | {:.1} |", 100.0 * *weight as f64 / total);
        }
    }
}
