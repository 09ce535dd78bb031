//! `cargo xtask bench-guardrails [--duration SECS] [--rounds N]`
//!
//! What the `guardrails` plugin costs, against the same route without it, in one run: one Weir
//! with two routes to the fake provider (`tests/peers/llm_provider.py`) through `llm-gateway`,
//! `/plain/…` and `/guarded/…`, the second with every built-in detector. The provider echoes
//! the prompt, so the plugin scans each prompt twice: in the request and in the answer.
//!
//! - **Cost per KiB scanned**: the added p50 latency (wrk, one connection) for prompts of 1, 16
//!   and 64 KiB of prose with digits, ids and one e-mail address per 4 KiB (so redaction runs),
//!   divided by the KiB scanned (twice the prompt).
//! - **Added time to first token** of a streamed answer (median of 30), which includes the
//!   stream's hold-back of the last word.

use super::llm::{chat, first_token_at};
use super::{Sample, free_port, measure_script, options, start_weir, tempdir};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// Every built-in detector, as an operator would configure a route.
const DETECTORS: &str = r#"
[[routes.chain.config.detectors]]
kind = "email"
action = "redact"
redaction = "placeholder"
[[routes.chain.config.detectors]]
kind = "phone"
action = "redact"
[[routes.chain.config.detectors]]
kind = "payment-card"
action = "redact"
[[routes.chain.config.detectors]]
kind = "iban"
action = "block"
[[routes.chain.config.detectors]]
kind = "us-ssn"
action = "redact"
[[routes.chain.config.detectors]]
kind = "ip-address"
action = "record"
[[routes.chain.config.detectors]]
kind = "cloud-key"
action = "block"
[[routes.chain.config.detectors]]
kind = "private-key"
action = "block"
[[routes.chain.config.detectors]]
kind = "bearer-token"
action = "redact"
[[routes.chain.config.detectors]]
kind = "jwt"
action = "redact"
[[routes.chain.config.detectors]]
name = "codenames"
kind = "words"
words = ["project falcon", "blue harvest"]
action = "block"
[[routes.chain.config.detectors]]
kind = "prompt-injection"
action = "block"
"#;

fn route(name: &str, plugins: &[&str]) -> String {
    let mut r = format!(
        "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\nrewrite = {{ prefix = \"/\" }}\n"
    );
    for p in plugins {
        r.push_str(&format!("[[routes.chain]]\nplugin = \"{p}\"\n"));
        if *p == "guardrails" {
            r.push_str("[routes.chain.config]\nmax_body_bytes = 1048576\n");
            r.push_str(DETECTORS);
        } else {
            r.push_str(
                "[routes.chain.config]\nmax_request_bytes = 1048576\n\
                 [routes.chain.config.providers]\noa = { upstream = \"fake\", format = \"openai\" }\n\
                 [routes.chain.config.models]\ngpt = [{ provider = \"oa\", model = \"m\" }]\n",
            );
        }
    }
    r
}

fn weir_config(port: u16, provider: u16, plugins: &Path) -> String {
    let wasm = |n: &str| plugins.join(format!("{n}.wasm")).display().to_string();
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.fake]\nendpoints = [\"http://127.0.0.1:{provider}\"]\n\
         [plugins.llm-gateway]\npath = {:?}\ninstances = \"pooled\"\n\
         capabilities = {{ outbound = [\"fake\"], kv = \"llm\", metrics = true, secrets = [] }}\n\
         [plugins.guardrails]\npath = {:?}\ninstances = \"pooled\"\n\
         capabilities = {{ outbound = [], metrics = true, secrets = [] }}\n\
         {}{}",
        wasm("llm_gateway"),
        wasm("guardrails"),
        route("plain", &["llm-gateway"]),
        route("guarded", &["guardrails", "llm-gateway"]),
    )
}

/// `kib` KiB of prose the detectors must read all of: numbers, ids and versions that are not
/// matches, and one e-mail address per 4 KiB that is.
fn prose(kib: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "order",
        "4155550123",
        "shipped",
        "on",
        "2026-11-30",
        "with",
        "version",
        "1.2.3",
        "and",
        "ticket",
        "ORD-77812",
        "was",
        "closed",
        "by",
        "the",
        "support",
        "team",
        "after",
        "review",
        "of",
        "12",
        "items",
    ];
    let mut s = String::with_capacity(kib * 1024 + 64);
    let mut i = 0;
    while s.len() < kib * 1024 {
        if i % 400 == 399 {
            s.push_str("reach me at someone@example.com ");
        }
        s.push_str(WORDS[i % WORDS.len()]);
        s.push(' ');
        i += 1;
    }
    s.truncate(kib * 1024);
    s
}

fn lua(dir: &Path, prefix: &str, kib: usize) -> Result<String> {
    let body = chat("gpt", false, &prose(kib));
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"content-type\"] = \"application/json\"\n"
    );
    let path = dir.join(format!("{prefix}-{kib}.lua"));
    std::fs::write(&path, lua)?;
    Ok(path.display().to_string())
}

fn ttft(port: u16, prefix: &str) -> Result<Duration> {
    let body = chat(
        "gpt",
        true,
        "tell me about the order 4155550123 and the weather",
    );
    let mut t = Vec::new();
    for _ in 0..30 {
        t.push(first_token_at(
            port,
            &format!("/{prefix}/v1/chat/completions"),
            &body,
        )?);
    }
    t.sort();
    Ok(t[15])
}

pub fn guardrails(args: &[String]) -> Result<()> {
    let o = options(args)?;
    super::ensure_tools()?;
    crate::ensure_python_packages()?;
    let (weir, plugin_dir) = super::build_release(o.weir.as_deref())?;
    let dir = tempdir()?;
    let provider = free_port()?;
    let _peer = super::start_peer("llm_provider.py", provider, Path::new("/dev/null"))?;
    let port = free_port()?;
    let _weir = start_weir(
        &weir,
        &dir,
        "guardrails",
        &weir_config(port, provider, &plugin_dir),
        port,
    )?;
    let url = |prefix: &str| format!("http://127.0.0.1:{port}/{prefix}/v1/chat/completions");
    let mut rows: Vec<(usize, Sample, Sample)> = Vec::new();
    for kib in [1, 16, 64] {
        let plain = measure_script(&url("plain"), &lua(&dir, "plain", kib)?, 1, &o)?;
        let guarded = measure_script(&url("guarded"), &lua(&dir, "guarded", kib)?, 1, &o)?;
        eprintln!(
            "{kib:>3} KiB: plain p50 {:.3} ms, guarded p50 {:.3} ms",
            plain.p50_ms, guarded.p50_ms
        );
        rows.push((kib, plain, guarded));
    }
    let (t_plain, t_guarded) = (ttft(port, "plain")?, ttft(port, "guarded")?);
    println!(
        "\n## guardrails: every built-in detector vs the same route without it (wrk -c1 -d{}s, median of {} rounds)\n",
        o.duration, o.rounds
    );
    println!(
        "| prompt | p50 without (ms) | p50 with (ms) | added (ms) | KiB scanned (request + echoed answer) | µs per KiB scanned | req/s with / without |\n\
         |---:|---:|---:|---:|---:|---:|---:|"
    );
    for (kib, plain, guarded) in &rows {
        let added = guarded.p50_ms - plain.p50_ms;
        let scanned = 2 * kib;
        println!(
            "| {kib} KiB | {:.3} | {:.3} | {added:+.3} | {scanned} | {:.1} | {:.2} |",
            plain.p50_ms,
            guarded.p50_ms,
            added * 1e3 / scanned as f64,
            guarded.rps / plain.rps
        );
    }
    println!(
        "\nStreamed answer, time to first token (median of 30): without {:.2} ms, with {:.2} ms, added {:+.2} ms",
        t_plain.as_secs_f64() * 1e3,
        t_guarded.as_secs_f64() * 1e3,
        (t_guarded.as_secs_f64() - t_plain.as_secs_f64()) * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
