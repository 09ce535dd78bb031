//! `cargo xtask bench-mcp [--duration SECS] [--rounds N]`
//!
//! A `tools/call` round trip to a real Python MCP server (`tests/peers/mcp_server.py`),
//! directly and through Weir (`mcp-gateway` alone, and behind `api-key` + `mcp-policy`), with
//! the same load generator in the same run. Requests are 2026-07-28 (stateless) so every one
//! is a whole call. One connection gives the latency Weir adds (p50/p99); eight give throughput
//! as a ratio to the direct path, where the Python server is the bottleneck.

use super::{Sample, free_port, measure_script, options, start_weir, tempdir};
use anyhow::{Result, bail};
use std::path::Path;

/// A modern `tools/call` of `name`, as wrk's Lua script.
fn script(dir: &Path, file: &str, name: &str) -> Result<String> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"a":1,"b":2}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = '{body}'\n\
         wrk.headers[\"content-type\"] = \"application/json\"\n\
         wrk.headers[\"accept\"] = \"application/json, text/event-stream\"\n\
         wrk.headers[\"mcp-protocol-version\"] = \"2026-07-28\"\n\
         wrk.headers[\"mcp-method\"] = \"tools/call\"\n\
         wrk.headers[\"mcp-name\"] = \"{name}\"\n\
         wrk.headers[\"x-api-key\"] = \"bench-key\"\n"
    );
    let path = dir.join(file);
    std::fs::write(&path, lua)?;
    Ok(path.display().to_string())
}

/// One POST of the script's request; the answer must carry the tool's result.
fn check(port: u16, name: &str) -> Result<()> {
    use std::io::{Read, Write};
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"a":1,"b":2}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n\
         mcp-method: tools/call\r\nmcp-name: {name}\r\nx-api-key: bench-key\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.contains("\"result\"") || !out.contains("\"3\"") {
        bail!("tools/call {name} on port {port} did not answer 3:\n{out}");
    }
    Ok(())
}

fn weir_config(port: u16, py: u16, plugins: &Path, policy: bool) -> String {
    let plugin = |name: &str, file: &str, caps: &str| {
        format!(
            "[plugins.{name}]\npath = {:?}\ninstances = \"pooled\"\n{caps}\n",
            plugins.join(format!("{file}.wasm")).display().to_string()
        )
    };
    let mut s = format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[upstreams.py]\nendpoints = [\"http://127.0.0.1:{py}\"]\n"
    );
    s.push_str(&plugin(
        "mcp-gateway",
        "mcp_gateway",
        "capabilities = { outbound = [\"py\"], kv = \"mcp\", secrets = [] }",
    ));
    let mut chain = String::new();
    if policy {
        s.push_str(&plugin("api-key", "api_key", ""));
        s.push_str(&plugin(
            "mcp-policy",
            "mcp_policy",
            "capabilities = { metrics = true }",
        ));
        chain.push_str(
            "{ plugin = \"api-key\", config = { keys = { \"bench-key\" = \"bench\" } } },\n\
             { plugin = \"mcp-policy\", config = { rules = [{ principals = [\"bench\"], allow = [\"py_*\"] }], \
             arguments = [{ tool = \"py_add\", argument = \"a\", max = 100 }] } },\n",
        );
    }
    s.push_str(&format!(
        "[[routes]]\nname = \"mcp\"\nmatch = {{ path_prefix = \"/mcp\" }}\nchain = [\n{chain}\
         {{ plugin = \"mcp-gateway\", config = {{ servers = {{ py = {{ upstream = \"py\" }} }} }} }},\n]\n"
    ));
    s
}

pub fn mcp(args: &[String]) -> Result<()> {
    let o = options(args)?;
    super::ensure_tools()?;
    crate::ensure_python_packages()?;
    let (weir, plugin_dir) = super::build_release(o.weir.as_deref())?;
    let dir = tempdir()?;

    let py = free_port()?;
    let _peer = super::start_peer("mcp_server.py", py, &dir.join("received.jsonl"))?;

    let mut rows: Vec<(&str, Sample, Sample)> = Vec::new();
    for (label, policy) in [
        ("directly", None),
        ("weir, mcp-gateway", Some(false)),
        ("weir, api-key + mcp-policy + mcp-gateway", Some(true)),
    ] {
        let (port, name, _guard) = match policy {
            None => (py, "add", None),
            Some(policy) => {
                let port = free_port()?;
                let g = start_weir(
                    &weir,
                    &dir,
                    &format!("mcp-{policy}"),
                    &weir_config(port, py, &plugin_dir, policy),
                    port,
                )?;
                (port, "py_add", Some(g))
            }
        };
        check(port, name)?;
        let lua = script(&dir, &format!("{name}-{port}.lua"), name)?;
        let url = format!("http://127.0.0.1:{port}/mcp");
        let one = measure_script(&url, &lua, 1, &o)?;
        let eight = measure_script(&url, &lua, 8, &o)?;
        eprintln!(
            "{label:<44} p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s",
            one.p50_ms, one.p99_ms, eight.rps
        );
        rows.push((label, one, eight));
    }
    let (_, direct1, direct8) = rows[0];
    println!(
        "\n## MCP tools/call round trip (wrk -t2 -d{}s, median of {} rounds; Python MCP server)\n",
        o.duration, o.rounds
    );
    println!(
        "| path | p50 ms (1 conn) | p99 ms (1 conn) | added p50 / p99 ms | req/s (8 conns) | / direct |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for (label, one, eight) in &rows {
        println!(
            "| {label} | {:.2} | {:.2} | {:+.2} / {:+.2} | {:.0} | {:.2} |",
            one.p50_ms,
            one.p99_ms,
            one.p50_ms - direct1.p50_ms,
            one.p99_ms - direct1.p99_ms,
            eight.rps,
            eight.rps / direct8.rps
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
