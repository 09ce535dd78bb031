//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, installed with its
//! own Node by `cargo xtask test`), server scenarios, `--suite all`, run against a fixture
//! server built with the Python `mcp` SDK (`tests/peers/mcp_conformance_server.py`): directly,
//! then through `weir` with `mcp-gateway` federating it alone, then federating it with a second
//! server. Every scenario that passes directly must pass through Weir.

use crate::support::{Gateway, Peer, free_port, plugins_toml, repo_root};
use serde_json::Value;
use std::process::Command;

/// The fixture server (`tests/peers/mcp_conformance_server.py`).
pub fn fixture() -> Peer {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/peers/mcp_conformance_server.py"))
        .args(["--port", &port.to_string()]);
    Peer::command(cmd, port, "the MCP conformance fixture server")
}

/// Runs the suite against `url`, then once more each scenario that failed: the suite reads
/// with fixed timeouts of a few seconds, which a busy machine can miss; a real failure fails
/// twice. The summary `tests/peers/mcp_conformance.py` prints, with second runs merged in.
fn run_suite(url: &str) -> Value {
    let mut summary = run_scenarios(url, &[]);
    let failed: Vec<String> = summary["scenarios"]
        .as_object()
        .expect("scenarios")
        .iter()
        .filter(|(_, s)| s["failed"] != 0)
        .map(|(name, _)| name.clone())
        .collect();
    if failed.is_empty() {
        return summary;
    }
    println!("{url}: running again {failed:?}");
    let again = run_scenarios(url, &failed);
    for name in &failed {
        let second = &again["scenarios"][name.as_str()];
        if second["failed"] == 0 {
            let first = summary["scenarios"][name.as_str()].clone();
            let delta = |k: &str| second[k].as_i64().unwrap_or(0) - first[k].as_i64().unwrap_or(0);
            for k in ["passed", "failed", "warnings"] {
                let total = summary["checks"][k].as_i64().unwrap_or(0) + delta(k);
                summary["checks"][k] = total.into();
            }
            summary["scenarios"][name.as_str()] = second.clone();
            summary["passed"] = (summary["passed"].as_i64().unwrap_or(0) + 1).into();
            summary["failed"] = (summary["failed"].as_i64().unwrap_or(0) - 1).into();
        }
    }
    summary
}

/// One run of the suite (all server scenarios, or `only`) against `url`.
fn run_scenarios(url: &str, only: &[String]) -> Value {
    let tools = repo_root().join("target/guest-tools/conformance/node_modules");
    let node = tools.join(".bin/node");
    let suite = tools.join("@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        node.exists() && suite.exists(),
        "the conformance suite is installed by `cargo xtask test` into {}",
        tools.display()
    );
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("python3")
        .arg(repo_root().join("tests/peers/mcp_conformance.py"))
        .arg("--node")
        .arg(&node)
        .arg("--suite-js")
        .arg(&suite)
        .args(["--url", url, "--out"])
        .arg(out_dir.path())
        .args(only.iter().flat_map(|s| ["--scenario", s.as_str()]))
        .output()
        .expect("run the conformance driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the conformance suite did not run: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("summary {stdout:?}: {e}"))
}

/// The gateway federating `servers` (name, endpoint, prefix).
fn gateway(servers: &[(&str, String, &str)]) -> Gateway {
    let mut toml = String::new();
    let mut table = Vec::new();
    for (name, endpoint, prefix) in servers {
        toml.push_str(&format!(
            "[upstreams.{name}]\nendpoints = [{endpoint:?}]\nrequest_timeout = \"30s\"\n"
        ));
        table.push(format!(
            "{name} = {{ upstream = {name:?}, prefix = {prefix:?} }}"
        ));
    }
    let grant: Vec<String> = servers.iter().map(|(n, _, _)| format!("{n:?}")).collect();
    toml.push_str(&plugins_toml(&[(
        "mcp-gateway",
        &format!(
            "capabilities = {{ outbound = [{}], kv = \"mcp\", secrets = [] }}",
            grant.join(", ")
        ),
    )]));
    toml.push_str(&format!(
        "[[routes]]\nname = \"mcp\"\nmatch = {{ path_prefix = \"/mcp\" }}\n\
         chain = [{{ plugin = \"mcp-gateway\", config = {{ servers = {{ {} }} }} }}]\n",
        table.join(", ")
    ));
    Gateway::start(&toml)
}

fn passed(summary: &Value) -> Vec<String> {
    let scenarios = summary["scenarios"].as_object().expect("scenarios");
    scenarios
        .iter()
        .filter(|(_, s)| s["failed"] == 0)
        .map(|(name, _)| name.clone())
        .collect()
}

fn tally(what: &str, summary: &Value) -> String {
    format!(
        "{what}: {} scenarios pass, {} fail; checks {} pass, {} fail, {} warn",
        summary["passed"],
        summary["failed"],
        summary["checks"]["passed"],
        summary["checks"]["failed"],
        summary["checks"]["warnings"]
    )
}

/// Scenarios that pass directly but not through `summary`, with their failures.
fn regressions(direct: &[String], summary: &Value) -> Vec<String> {
    direct
        .iter()
        .filter(|name| summary["scenarios"][name.as_str()]["failed"] != 0)
        .map(|name| {
            format!(
                "{name}: {}",
                summary["scenarios"][name.as_str()]["failures"]
            )
        })
        .collect()
}

#[test]
fn the_conformance_suite_passes_through_weir_wherever_it_passes_directly() {
    let server = fixture();
    let direct = run_suite(&format!("{}/mcp", server.endpoint()));
    let direct_passed = passed(&direct);
    // Guards against a suite that ran nothing: the fixture implements every scenario.
    assert!(
        direct_passed.len() >= 30,
        "{}; failing: {}",
        tally("directly", &direct),
        direct["scenarios"]
    );
    let single = gateway(&[("conf", server.endpoint(), "")]);
    let through_single = run_suite(&single.url("/mcp"));
    drop(single);
    let second = crate::mcp::McpServer::python(&[]);
    let federated = gateway(&[
        ("conf", server.endpoint(), ""),
        ("py", second.endpoint(), "py"),
    ]);
    let through_federated = run_suite(&federated.url("/mcp"));
    let report = [
        tally("directly", &direct),
        tally("through weir (one server)", &through_single),
        tally(
            "through weir (federated with a second server)",
            &through_federated,
        ),
    ]
    .join("\n");
    println!("{report}");
    // `cargo xtask test` prints these after the suite (test output is captured).
    let _ = std::fs::write(repo_root().join("target/mcp-conformance.txt"), &report);
    let mut lost = regressions(&direct_passed, &through_single);
    lost.extend(
        regressions(&direct_passed, &through_federated)
            .into_iter()
            .map(|r| format!("federated: {r}")),
    );
    assert!(
        lost.is_empty(),
        "{report}\npassing directly but not through weir:\n{}\nweir log:\n{}",
        lost.join("\n"),
        federated.log()
    );
}
