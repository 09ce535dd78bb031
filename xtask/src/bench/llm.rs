//! `cargo xtask bench-llm [--duration SECS] [--rounds N]`
//!
//! A chat completion against the fake provider (`tests/peers/llm_provider.py`, which speaks
//! both formats), directly and through Weir's `llm-gateway`: without translation (OpenAI client,
//! OpenAI-format provider) and with it (OpenAI client, Anthropic-format provider), in the same
//! run. Non-streamed: latency on one connection and throughput on eight (wrk). Streamed:
//! time to the first content token, measured by reading the raw response.

use super::{Sample, free_port, measure_script, options, start_weir, tempdir};
use anyhow::{Result, bail};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn body(model: &str, stream: bool) -> String {
    chat(model, stream, "hello there")
}

/// A chat completion request asking `prompt` (plain text: quotes, backslashes and line ends
/// are escaped here, nothing else is).
pub(super) fn chat(model: &str, stream: bool, prompt: &str) -> String {
    let prompt = prompt
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
    )
}

fn script(dir: &Path, file: &str, model: &str) -> Result<String> {
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"content-type\"] = \"application/json\"\n\
         wrk.headers[\"authorization\"] = \"Bearer bench-key\"\n",
        body(model, false)
    );
    let path = dir.join(file);
    std::fs::write(&path, lua)?;
    Ok(path.display().to_string())
}

/// Seconds until the first content token of a streamed completion arrives.
fn first_token(port: u16, model: &str) -> Result<Duration> {
    first_token_at(port, "/v1/chat/completions", &body(model, true))
}

/// Seconds until the first content token (the fake provider's `echo:`) of the streamed
/// completion `body` posted to `path` arrives.
pub(super) fn first_token_at(port: u16, path: &str, body: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         content-type: application/json\r\nauthorization: Bearer bench-key\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("stream from port {port} ended without a token");
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(5).any(|w| w == b"echo:") {
            return Ok(started.elapsed());
        }
    }
}

fn weir_config(port: u16, provider: u16, plugins: &Path) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.fake]\nendpoints = [\"http://127.0.0.1:{provider}\"]\n\
         [plugins.llm-gateway]\npath = {:?}\ninstances = \"pooled\"\n\
         capabilities = {{ outbound = [\"fake\"], kv = \"llm\", metrics = true, secrets = [] }}\n\
         [[routes]]\nname = \"llm\"\nmatch = {{ path_prefix = \"/v1\" }}\n[[routes.chain]]\nplugin = \"llm-gateway\"\n\
         [routes.chain.config.providers]\noa = {{ upstream = \"fake\", format = \"openai\" }}\n\
         an = {{ upstream = \"fake\", format = \"anthropic\" }}\n\
         [routes.chain.config.models]\ngpt = [{{ provider = \"oa\", model = \"m\" }}]\n\
         claude = [{{ provider = \"an\", model = \"m\" }}]\n",
        plugins.join("llm_gateway.wasm").display().to_string()
    )
}

pub fn llm(args: &[String]) -> Result<()> {
    let o = options(args)?;
    super::ensure_tools()?;
    crate::ensure_python_packages()?;
    let (weir, plugin_dir) = super::build_release(o.weir.as_deref())?;
    let dir = tempdir()?;
    let provider = free_port()?;
    let _peer = super::start_peer(
        "llm_provider.py",
        provider,
        std::path::Path::new("/dev/null"),
    )?;
    let port = free_port()?;
    let _weir = start_weir(
        &weir,
        &dir,
        "llm",
        &weir_config(port, provider, &plugin_dir),
        port,
    )?;

    let mut rows: Vec<(&str, Sample, Sample, Duration)> = Vec::new();
    for (label, port, model) in [
        ("directly", provider, "m"),
        ("weir, OpenAI → OpenAI-format provider", port, "gpt"),
        (
            "weir, OpenAI → Anthropic-format provider (translated)",
            port,
            "claude",
        ),
    ] {
        let lua = script(&dir, &format!("{model}-{port}.lua"), model)?;
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        let one = measure_script(&url, &lua, 1, &o)?;
        let eight = measure_script(&url, &lua, 8, &o)?;
        let mut ttft = Vec::new();
        for _ in 0..30 {
            ttft.push(first_token(port, model)?);
        }
        ttft.sort();
        eprintln!(
            "{label:<56} p50 {:.2} ms, {:.0} req/s, first token {:.1} ms",
            one.p50_ms,
            eight.rps,
            ttft[15].as_secs_f64() * 1e3
        );
        rows.push((label, one, eight, ttft[15]));
    }
    let (_, d1, d8, dt) = rows[0];
    println!(
        "\n## LLM completion through llm-gateway (wrk -d{}s, median of {} rounds; fake provider)\n",
        o.duration, o.rounds
    );
    println!(
        "| path | p50 ms (1 conn) | added p50 ms | req/s (8 conns) | / direct | first token ms (median of 30) | added |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    );
    for (label, one, eight, ttft) in &rows {
        println!(
            "| {label} | {:.2} | {:+.2} | {:.0} | {:.2} | {:.1} | {:+.1} |",
            one.p50_ms,
            one.p50_ms - d1.p50_ms,
            eight.rps,
            eight.rps / d8.rps,
            ttft.as_secs_f64() * 1e3,
            (ttft.as_secs_f64() - dt.as_secs_f64()) * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
