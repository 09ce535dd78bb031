//! `cargo xtask`: the project's tasks, so that a fresh machine needs only two commands.
//!
//! - `run`:     build the plugins and the gateway, start the demo backend and run the quickstart.
//! - `test [--hogs N]`: everything CI runs (installs what the tests need first); with `--hogs`,
//!   while N processes burn a CPU each alongside (the suite must pass on a busy machine).
//! - `plugins`: build the first-party plugins for wasm32-wasip2.
//! - `bench [--duration S] [--connections N] [--rounds N] [--weir PATH] [--no-micro] [--profile]`:
//!   the benchmark: nginx, Weir with 0 and 3 plugins in interleaved rounds over HTTP/1.1 and
//!   h2c, then the other targets and the memory figures; prints ratios. `--weir`: a prebuilt
//!   gateway (nothing built, micro-benchmarks skipped); `--profile`: perf flame graphs.
//! - `bench-swaps [N]`: swap a plugin N times under the file watcher; prints RSS after 10 and N.
//! - `bench-start`: startup time with a cold and a warm compiled-plugin cache.
//! - `bench-languages`: the `allowlist` example in Rust, C, Python and JavaScript.
//! - `bench-mcp`: an MCP `tools/call` round trip through the MCP gateway plugins vs directly.
//! - `bench-llm`: a chat completion through `llm-gateway` (with and without translation) vs
//!   directly, and the time to the first streamed token.
//! - `bench-guardrails`: the same LLM route with and without every built-in guardrail detector:
//!   cost per KiB scanned and added time to the first streamed token.
//! - `console [--check]`: build the web console into `host/console/dist` (`--check`: fail if
//!   the committed build is not what the sources make); prints what it adds to the binary.
//! - `modules [-v]`: the host crates' module graphs; fails on a cycle.
//! - `fn-length [N]`: the N longest host functions; fails if one is over 100 lines.
//! - `bench-proxy-wasm`: a proxy-wasm header filter (proxy-wasm Rust SDK) vs the `headers` WIT
//!   plugin making the same edits, both pooled (also part of `bench`).
//! - `bench-telemetry`: proxy throughput with tracing off, at 100 % and at 1 % sampling.

mod bench;
mod console;
mod fn_length;
mod modules;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The host crates, by their `src` directory (`fn-length` and `modules` check them all).
pub(crate) const HOST_CRATES: &[&str] = &[
    "host/src",
    "host/config/src",
    "host/wire/src",
    "host/oci/src",
    "host/stdio-bridge/src",
    "host/proxy-wasm/src",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("run") => run(),
        Some("test") => test(&args[1..]),
        Some("hog") => hog(),
        Some("plugins") => plugins(),
        Some("console") => console::console(&args[1..]),
        Some("modules") => modules::check(args.get(1).is_some_and(|a| a == "-v")),
        Some("fn-length") => {
            fn_length::check(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10))
        }
        Some("bench") => bench::bench(&args[1..]),
        Some("bench-swaps") => bench::swaps(&args[1..]),
        Some("bench-start") => bench::start(&args[1..]),
        Some("bench-languages") => bench::languages(&args[1..]),
        Some("bench-mcp") => bench::mcp(&args[1..]),
        Some("bench-llm") => bench::llm(&args[1..]),
        Some("bench-guardrails") => bench::guardrails(&args[1..]),
        Some("bench-proxy-wasm") => bench::proxy_wasm(&args[1..]),
        Some("bench-telemetry") => bench::telemetry(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <run|test [--hogs N]|plugins|console [--check]|modules [-v]|fn-length [N]|bench|bench-swaps [N]|bench-start|bench-languages|bench-mcp|bench-llm|bench-guardrails|bench-proxy-wasm|bench-telemetry>"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn sh(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the wasm32-wasip2 target if missing.
/// The wasm targets: wasm32-wasip2 for the plugins, wasm32-unknown-unknown for the proxy-wasm
/// filters the `weir-proxy-wasm` tests build with the proxy-wasm Rust SDK.
fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(o) = out else {
        eprintln!("rustup not found; assuming the wasm targets are installed");
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&o.stdout).to_string();
    // wasip2 for components; unknown-unknown and wasip1 for the proxy-wasm test filters.
    for target in ["wasm32-wasip2", "wasm32-unknown-unknown", "wasm32-wasip1"] {
        if !installed.lines().any(|l| l.trim() == target) {
            sh(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    Ok(())
}

pub(crate) fn plugins() -> Result<()> {
    ensure_wasm_target()?;
    sh(cargo().args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
        "plugins/Cargo.toml",
    ]))
}

/// Kills a child process when dropped.
pub(crate) struct Guard(pub Child);
impl Drop for Guard {
    /// SIGTERM first, so servers with worker processes (nginx) take their workers down too;
    /// SIGKILL if it has not exited within two seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..200 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run() -> Result<()> {
    plugins()?;
    sh(cargo().args(["build", "-p", "weir"]))?;
    let weir = root().join("target/debug/weir");
    let _backend = Guard(
        Command::new(&weir)
            .args(["demo-backend", "--listen", "127.0.0.1:9001"])
            .spawn()
            .context("starting the demo backend")?,
    );
    eprintln!(
        "\nWeir on http://127.0.0.1:8080 — try:\n  curl -i http://127.0.0.1:8080/hello\n  curl -i -H 'x-api-key: demo-key' http://127.0.0.1:8080/hello\n"
    );
    sh(Command::new(&weir).args(["run", "--config", "examples/quickstart/weir.toml"]))
}

/// Whether `tool` is on the PATH (or in /usr/sbin, where Debian puts daemons).
fn have(tool: &str) -> bool {
    succeeds(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
        || std::path::Path::new("/usr/sbin").join(tool).exists()
}

/// Installs the Debian packages (program, package) whose program is missing: CI machines and
/// new checkouts start bare.
pub(crate) fn ensure_debian(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

/// Python packages the end-to-end tests use as real peers.
const PY_PACKAGES: &[(&str, &str)] = &[
    ("grpc", "grpcio==1.85.3"),
    // Builds Python plugins (`weir plugin build`); the conformance suite needs it.
    ("componentize_py", "componentize-py==0.25.1"),
    // The MCP SDK: client and server peers of the MCP gateway tests.
    ("mcp", "mcp==2.3.0"),
    // The official LLM SDKs, clients of the LLM gateway tests.
    ("openai", "openai==3.54.0"),
    ("anthropic", "anthropic==2.12.0"),
    // A2A agents and the Python A2A client.
    ("a2a", "a2a-sdk[http-server]==1.3.0"),
    // Signs the tokens of the JWT tests.
    ("jwt", "pyjwt[crypto]==2.15.1"),
    // Renders the Helm chart with Helm's own Go SDK, and validates the manifests against the
    // Kubernetes schemas (tests/deploy).
    ("helm_python", "helm-python-sdk==0.2.2"),
    ("kubernetes_validate", "kubernetes-validate==1.37.0"),
    ("yaml", "pyyaml"),
];

/// npm packages for JavaScript plugins (componentize-js) and for turning C core modules into
/// components (jco 1.34.0: 1.35.0 cannot read WIT directories). Installed into
/// `target/guest-tools`, which `weir plugin build` searches (`WEIR_TOOLS`).
const NPM_PACKAGES: &[&str] = &[
    "@bytecodealliance/componentize-js@0.23.0",
    "@bytecodealliance/jco@1.34.0",
    // The MCP reference server, an upstream of the MCP gateway tests (HTTP and stdio).
    "@modelcontextprotocol/server-everything@2026.8.31",
    // The JavaScript A2A client of the A2A tests.
    "@a2a-js/sdk@1.3.0",
];

/// The official MCP conformance suite, and the Node it needs (≥ 22.19, newer than Debian's)
/// from npm's `node-linux-<arch>` package; kept apart from the guest tools so that this `node`
/// never shadows the system's. The test runs `node_modules/.bin/node`.
const CONFORMANCE_SUITE: &str = "@modelcontextprotocol/conformance@0.1.16";
const CONFORMANCE_NODE: &str = "22.23.5";

/// Installs the conformance suite and its Node into `target/guest-tools/conformance`.
fn ensure_conformance_suite() -> Result<()> {
    let dir = guest_tools_dir()?.join("conformance");
    let suite = dir.join("node_modules/@modelcontextprotocol/conformance/package.json");
    if suite.exists() && dir.join("node_modules/.bin/node").exists() {
        return Ok(());
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => bail!("no Node package for the conformance suite on {other}"),
    };
    std::fs::create_dir_all(&dir)?;
    sh(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(CONFORMANCE_SUITE)
        .arg(format!("node-linux-{arch}@{CONFORMANCE_NODE}")))
}

/// The C toolchain for wasm32-wasi from Debian (clang, the linker, wasi-libc and the wasm32
/// compiler-rt builtins), and node/npm for the npm packages.
pub(crate) fn ensure_guest_toolchains() -> Result<()> {
    ensure_debian(&[
        ("clang", "clang"),
        ("wasm-ld", "lld"),
        ("node", "nodejs"),
        ("npm", "npm"),
    ])?;
    let builtins = std::path::Path::new("/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi");
    if !std::path::Path::new("/usr/lib/wasm32-wasi/libc.a").exists() || !builtins.exists() {
        sh(Command::new("apt-get").args(["update", "-qq"]))?;
        sh(Command::new("apt-get").args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "wasi-libc",
            "libclang-rt-14-dev-wasm32",
        ]))?;
    }
    ensure_conformance_suite()?;
    let tools = guest_tools_dir()?;
    let have_all = ["componentize-js", "jco", "mcp-server-everything"]
        .iter()
        .all(|t| tools.join("node_modules/.bin").join(t).exists())
        && tools.join("node_modules/@a2a-js/sdk/package.json").exists();
    if !have_all {
        std::fs::create_dir_all(&tools)?;
        sh(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tools)
            .args(NPM_PACKAGES))?;
    }
    Ok(())
}

/// npm packages of the console's browser tests: Playwright's library (driving Debian's
/// Chromium; no browser download) and axe-core (the accessibility rules).
const BROWSER_PACKAGES: &[&str] = &["playwright-core@1.64.1", "axe-core@4.14.1"];

/// Debian's Chromium and the browser-test packages, in `target/guest-tools/browser`.
fn ensure_browser() -> Result<()> {
    ensure_debian(&[("chromium", "chromium")])?;
    // Screenshots need a font; Chromium without recommends brings none.
    if !Path::new("/usr/share/fonts/truetype/dejavu").exists() {
        sh(Command::new("apt-get").args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "fonts-dejavu-core",
        ]))?;
    }
    let dir = guest_tools_dir()?.join("browser");
    let have = ["playwright-core", "axe-core"].iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    });
    if !have {
        std::fs::create_dir_all(&dir)?;
        sh(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args(BROWSER_PACKAGES))?;
    }
    Ok(())
}

/// Where the npm guest toolchains live: `target/guest-tools` of this checkout.
pub(crate) fn guest_tools_dir() -> Result<std::path::PathBuf> {
    Ok(std::env::current_dir()?.join("target/guest-tools"))
}

pub(crate) fn ensure_python_packages() -> Result<()> {
    for (module, package) in PY_PACKAGES {
        if !succeeds(Command::new("python3").args(["-c", &format!("import {module}")])) {
            sh(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                package,
            ]))?;
        }
    }
    Ok(())
}

/// The Rust proxy-wasm filters under `tests/proxy-wasm/`, each its own workspace.
const PROXY_WASM_FIXTURES: [&str; 4] = [
    "rust-filter",
    "rust-sdk-filters",
    "higress-key-auth",
    "header-filter",
];

fn test(args: &[String]) -> Result<()> {
    let hogs = match args {
        [] => 0,
        [flag, n] if flag == "--hogs" => n.parse().context("--hogs takes a number")?,
        _ => bail!("usage: cargo xtask test [--hogs N]"),
    };
    let _hogs = Hogs::start(hogs)?;
    ensure_wasm_target()?;
    ensure_python_packages()?;
    // A real Redis for the shared key-value backend tests, a real OCI registry (and htpasswd
    // for its auth) for the plugin distribution tests.
    ensure_debian(&[
        ("redis-server", "redis-server"),
        ("docker-registry", "docker-registry"),
        ("htpasswd", "apache2-utils"),
        // The round-robin load balancer in front of the replica tests.
        ("nginx", "nginx"),
    ])?;
    // Python, JavaScript and C plugin toolchains for the conformance suite.
    ensure_guest_toolchains()?;
    // Chromium and Playwright for the console's browser tests; the console's bundle must be
    // what its sources build.
    ensure_browser()?;
    console::console(&["--check".to_string()])?;
    plugins()?;
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    fn_length::check(5)?;
    modules::check(false)?;
    sh(cargo().args([
        "fmt",
        "--all",
        "--check",
        "--manifest-path",
        "plugins/Cargo.toml",
    ]))?;
    // The proxy-wasm fixtures are workspaces of their own (built by the tests that run them).
    for fixture in PROXY_WASM_FIXTURES {
        let manifest = format!("tests/proxy-wasm/{fixture}/Cargo.toml");
        sh(cargo().args(["fmt", "--check", "--manifest-path", &manifest]))?;
    }
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Guest crates build for wasm32-wasip2 only.
    for manifest in ["plugins/Cargo.toml", "sdk/rust/Cargo.toml"] {
        sh(cargo().args([
            "clippy",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
            manifest,
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // The plugins' own unit tests (pure logic: policy rules, translation) run natively; those of
    // their wire crate `weir-wire` (JSON-RPC, SSE) run with the root workspace below.
    sh(cargo().args([
        "test",
        "--quiet",
        "--manifest-path",
        "plugins/Cargo.toml",
        "-p",
        "mcp-policy",
        "-p",
        "mcp-gateway",
        "-p",
        "llm-gateway",
        "-p",
        "a2a",
        "-p",
        "jwt-auth",
        "-p",
        "cache",
        "-p",
        "guardrails",
    ]))?;
    // The SDK's doc examples compile (`no_run`: they call host imports) so they cannot rot.
    sh(cargo().args([
        "test",
        "--quiet",
        "--doc",
        "--manifest-path",
        "sdk/rust/Cargo.toml",
    ]))?;
    let tallies = std::env::current_dir()?.join("target/mcp-conformance.txt");
    let _ = std::fs::remove_file(&tallies);
    sh(cargo()
        .args(["test", "--workspace"])
        .env("WEIR_TOOLS", guest_tools_dir()?))?;
    // What the MCP conformance test counted, directly and through Weir.
    if let Ok(text) = std::fs::read_to_string(&tallies) {
        println!("\nMCP conformance suite (server scenarios):\n{text}");
    }
    Ok(())
}

/// CPU-burning processes at normal priority, for as long as this value lives: the suite run
/// beside them shows that a busy machine slows the gateway down without failing it.
pub(crate) struct Hogs(Vec<Child>);

impl Hogs {
    pub(crate) fn start(n: usize) -> Result<Hogs> {
        let exe = std::env::current_exe()?;
        let children = (0..n)
            .map(|_| Command::new(&exe).arg("hog").spawn())
            .collect::<std::io::Result<Vec<_>>>()?;
        if n > 0 {
            eprintln!("xtask: {n} CPU hog(s) running alongside the tests");
        }
        Ok(Hogs(children))
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `cargo xtask hog`: burns one CPU until its parent goes away (so a killed `xtask test` leaves
/// no hog behind).
fn hog() -> Result<()> {
    let parent = std::os::unix::process::parent_id();
    let mut x = 1u64;
    loop {
        for i in 0..10_000_000u64 {
            x = std::hint::black_box(x.rotate_left(5) ^ i);
        }
        if std::os::unix::process::parent_id() != parent {
            return Ok(());
        }
    }
}
