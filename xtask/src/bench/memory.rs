//! The memory figures of `cargo xtask bench`, in resident memory (`VmRSS`):
//!
//! - **per idle connection**: 1,000 keep-alive HTTP/1.1 connections (500 if the open-file limit
//!   is low) each make one request and stay open; the RSS after minus before, over the count.
//!   For Weir with no plugins (the gateway process) and nginx as a proxy (its worker processes).
//! - **per fresh instance in flight**: [`HELD`] requests through the 3-plugin chain with fresh
//!   instances are held at an upstream inside the xtask; the RSS while held minus before,
//!   less the same growth of Weir with no plugins (connections and request state), over the
//!   instances alive per request ([`KEPT_PER_REQUEST`]).
//! - **per pooled instance**: the same with pooled instances and pools allowed to keep every
//!   instance (`pool_max_idle`); once the requests are answered and their connections closed,
//!   the pools keep what they grew to. The RSS then minus before, less the same growth of Weir
//!   with no plugins, over the instances created meanwhile (`weir_plugin_instantiations_total`
//!   on the admin `/metrics`).
//!
//! The gateway's heap is on transparent huge pages, so its RSS grows in 2 MiB steps: each figure
//! is good to about 2 MiB over its count (±2 KiB per connection, ±10 KiB per instance).

use super::proxy::{Env, Headline};
use super::{free_port, http_get, rss_kib, start_weir, wait_for, weir_config};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Idle connections for the per-connection figure.
const IDLE: usize = 1000;
/// Requests held in flight at the upstream for the per-instance figures.
const HELD: usize = 200;
/// Instances of the 3-plugin chain alive per request in flight: `headers` keeps its instance
/// until the response (its `response` config makes it declare a response hook); `api-key` and
/// `router` declare none, so the chain lets go of theirs after their request hook.
const KEPT_PER_REQUEST: usize = 1;
/// Every wait here gives up after this.
const DEADLINE: Duration = Duration::from_secs(60);
/// The request every client sends: what the chain's `api-key` wants, like wrk's.
const REQUEST: &[u8] =
    b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: bench-key\r\nx-user: alice\r\n\r\n";

/// The figures as (what, value) rows.
pub(super) type Figures = Vec<(String, String)>;

pub(super) fn figures(env: &Env) -> Result<Figures> {
    let mut rows = Vec::new();
    let n = idle_connections();
    for target in [Headline::Plain, Headline::Nginx] {
        let running = target.start(env)?;
        let kib = per_idle_connection(running.h1, n, &running.pids()?)?;
        let name = target.name();
        rows.push((
            format!("{name}: RSS per idle HTTP/1.1 connection ({n} connections)"),
            format!("{kib:.1} KiB"),
        ));
    }
    let upstream = HeldUpstream::start()?;
    let plain = holding(env, &upstream, None)?;
    let fresh = holding(env, &upstream, Some("fresh"))?;
    let pooled = holding(env, &upstream, Some("pooled"))?;
    let mib = |kib: f64| format!("{:.2} MiB", kib / 1024.0);
    let each = |kib: f64| format!("{kib:.0} KiB ({:.3} MiB)", kib / 1024.0);
    let (plain_held, plain_after) = (plain.held - plain.idle, plain.after - plain.idle);
    let (fresh_held, pooled_after) = (fresh.held - fresh.idle, pooled.after - pooled.idle);
    let per_fresh = (fresh_held - plain_held) as f64 / (HELD * KEPT_PER_REQUEST) as f64;
    let per_pooled = (pooled_after - plain_after) as f64 / pooled.created.max(1) as f64;
    rows.extend([
        (
            format!("weir, no plugins: RSS added while {HELD} requests are held at the upstream"),
            mib(plain_held as f64),
        ),
        (
            format!("weir, 3 plugins, fresh: RSS added while {HELD} requests are held"),
            mib(fresh_held as f64),
        ),
        (
            format!(
                "RSS per fresh instance in flight (fresh − no plugins) / ({HELD} × {KEPT_PER_REQUEST})"
            ),
            each(per_fresh),
        ),
        (
            "weir, no plugins: RSS left after the held requests, connections closed".into(),
            mib(plain_after as f64),
        ),
        (
            format!(
                "weir, 3 plugins, pooled: RSS left after the held requests ({} instances created)",
                pooled.created
            ),
            mib(pooled_after as f64),
        ),
        (
            "RSS per pooled instance (pooled − no plugins) / instances created".into(),
            each(per_pooled),
        ),
    ]);
    Ok(rows)
}

pub(super) fn print(figures: &Figures) {
    println!("\n## Memory (RSS)\n\n| figure | value |\n|---|---:|");
    for (what, value) in figures {
        println!("| {what} | {value} |");
    }
}

/// [`IDLE`], or 500 if this process may not open that many files (with room for the rest).
fn idle_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    match soft {
        Some(limit) if limit < IDLE + 100 => {
            eprintln!("open-file limit {limit}: 500 idle connections instead of {IDLE}");
            500
        }
        _ => IDLE,
    }
}

fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// One request on `s`, which stays open; fails unless the answer is a 200.
fn one_request(s: &mut TcpStream) -> Result<()> {
    s.write_all(REQUEST)?;
    match read_response(s)? {
        200 => Ok(()),
        status => bail!("got {status}, not 200"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (the head, then a `content-length` or chunked body); returns its status.
fn read_response(s: &mut TcpStream) -> Result<u16> {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = Vec::new();
    let mut more = |buf: &mut Vec<u8>| -> Result<()> {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).context("reading a response")?;
        if n == 0 || Instant::now() > deadline {
            bail!("the connection ended before the response did");
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    let body = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        more(&mut buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..body]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("a response without a status")?;
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < body + length {
            more(&mut buf)?;
        }
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !buf[body..].starts_with(b"0\r\n\r\n") && find(&buf[body..], b"\n0\r\n\r\n").is_none()
        {
            more(&mut buf)?;
        }
    } else {
        bail!("a response without a length:\n{head}");
    }
    Ok(status)
}

fn rss_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|&pid| rss_kib(pid)).sum()
}

/// KiB of RSS (of `pids`, summed) per idle keep-alive connection, over `n` connections.
fn per_idle_connection(port: u16, n: usize, pids: &[u32]) -> Result<f64> {
    // The first requests set up upstream connections, buffers and allocator arenas.
    for _ in 0..20 {
        one_request(&mut connect(port)?)?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_sum(pids);
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = connect(port)?;
        one_request(&mut s)?;
        open.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_sum(pids);
    drop(open);
    Ok((after as f64 - before as f64) / n as f64)
}

/// One gateway's RSS (KiB) around [`HELD`] requests held at the upstream.
struct Holding {
    /// After a warm-up of sequential requests.
    idle: i64,
    /// While the requests are held.
    held: i64,
    /// After they were answered and their connections closed.
    after: i64,
    /// Plugin instances created from the warm-up on.
    created: i64,
}

/// Weir with `policy`'s 3-plugin chain (none: no plugins) in front of `upstream`, through a
/// warm-up, [`HELD`] requests held, then released.
fn holding(env: &Env, upstream: &HeldUpstream, policy: Option<&str>) -> Result<Holding> {
    let (port, admin) = (free_port()?, free_port()?);
    // Pools keep every instance they create (the default keeps 64 per chain entry), so that
    // the instances created are the instances alive.
    let config = weir_config(port, upstream.port, &env.plugins, policy).replace(
        "instances = \"pooled\"\n",
        "instances = \"pooled\"\npool_max_idle = 1000\n",
    );
    let config = format!("[admin]\naddress = \"127.0.0.1:{admin}\"\n{config}");
    let name = format!("memory-{}", policy.unwrap_or("plain"));
    let gateway = start_weir(&env.weir, &env.dir, &name, &config, port)?;
    wait_for(admin, "admin API")?;
    let pid = gateway.0.id();
    for _ in 0..20 {
        one_request(&mut connect(port)?)?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let (created, idle) = (instantiations(admin)?, rss_kib(pid));
    upstream.hold();
    let mut clients = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut s = connect(port)?;
        s.write_all(REQUEST)?;
        clients.push(s);
    }
    upstream.wait_for(HELD)?;
    std::thread::sleep(Duration::from_millis(200));
    let held = rss_kib(pid);
    upstream.release();
    for s in &mut clients {
        match read_response(s)? {
            200 => {}
            status => bail!("{name}: a held request got {status}"),
        }
    }
    drop(clients);
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    let created = instantiations(admin)? - created;
    eprintln!(
        "{name}: RSS {idle} KiB idle, {held} KiB with {HELD} requests held, {after} KiB after; \
         {created} plugin instances created"
    );
    let kib = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(Holding {
        idle: kib(idle),
        held: kib(held),
        after: kib(after),
        created,
    })
}

/// `weir_plugin_instantiations_total`, summed over plugins (0 without plugins).
fn instantiations(admin: u16) -> Result<i64> {
    let (head, body) = http_get(admin, "/metrics")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("admin /metrics: {head}");
    }
    Ok(body
        .lines()
        .filter(|l| l.starts_with("weir_plugin_instantiations_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64)
}

/// An HTTP/1.1 upstream inside the xtask: answers `200 ok` at once, except between
/// [`HeldUpstream::hold`] and [`HeldUpstream::release`], when every request waits, so that the
/// gateway keeps it in flight with all it holds (connections, exchange, plugin instances).
struct HeldUpstream {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<Hold>,
    changed: Condvar,
    stop: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct Hold {
    held: bool,
    /// Requests that arrived since `hold`.
    arrived: usize,
}

impl HeldUpstream {
    fn start() -> Result<HeldUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(&listener, &accepting));
        Ok(HeldUpstream {
            port,
            shared,
            accept: Some(accept),
        })
    }

    fn set(&self, change: impl FnOnce(&mut Hold)) {
        if let Ok(mut state) = self.shared.state.lock() {
            change(&mut state);
        }
        self.shared.changed.notify_all();
    }

    /// Holds the requests from now on, counting them from zero.
    fn hold(&self) {
        self.set(|s| {
            s.held = true;
            s.arrived = 0;
        });
    }

    fn release(&self) {
        self.set(|s| s.held = false);
    }

    /// Waits until `n` requests are held.
    fn wait_for(&self, n: usize) -> Result<()> {
        let state = self
            .shared
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, DEADLINE, |s| s.arrived < n)
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        if state.arrived < n {
            bail!(
                "only {} of {n} requests reached the upstream",
                state.arrived
            );
        }
        Ok(())
    }
}

impl Drop for HeldUpstream {
    /// Stops every thread: the accept loop is woken by one last connection, the connections
    /// notice within their read timeout.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set(|s| s.held = false);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections = self
            .shared
            .connections
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for connection in connections {
            let _ = connection.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, say: try again shortly rather than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let serving = shared.clone();
        let connection = std::thread::spawn(move || serve(stream, &serving));
        if let Ok(mut connections) = shared.connections.lock() {
            connections.push(connection);
        }
    }
}

/// Answers the requests (heads without bodies: the benchmark's GETs) of one connection.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(end) = find(&pending, b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
            continue;
        };
        pending.drain(..end + 4);
        wait_while_held(shared);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// Counts a request that arrives while held and waits for the release (or the stop, or
/// [`DEADLINE`]).
fn wait_while_held(shared: &Shared) {
    let Ok(mut state) = shared.state.lock() else {
        return;
    };
    if !state.held {
        return;
    }
    state.arrived += 1;
    shared.changed.notify_all();
    let _ = shared.changed.wait_timeout_while(state, DEADLINE, |s| {
        s.held && !shared.stop.load(Ordering::SeqCst)
    });
}
