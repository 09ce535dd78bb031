//! The MCP gateway end to end: the real Python `mcp` client (both eras) through `weir` with the
//! `mcp-gateway` and `mcp-policy` plugins to real servers: the reference
//! `@modelcontextprotocol/server-everything` (Node) and a Python `mcp` server
//! (`tests/peers/mcp_server.py`), which logs every message it receives.

use crate::support::{Gateway, Peer, free_port, plugins_toml, repo_root, send, start_example};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A real MCP server on a loopback port (a [`Peer`]); killed on drop.
pub struct McpServer(Peer);

impl std::ops::Deref for McpServer {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl McpServer {
    /// `tests/peers/mcp_server.py` (extra args such as `--paged 25`).
    pub fn python(extra: &[&str]) -> McpServer {
        McpServer::python_on(free_port(), extra)
    }

    pub fn python_on(port: u16, extra: &[&str]) -> McpServer {
        McpServer(Peer::python("mcp_server.py", port, extra))
    }

    /// `server-everything` over Streamable HTTP, bound to 127.0.0.1 by `tests/peers/loopback.mjs`.
    pub fn everything() -> McpServer {
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.arg("--import")
            .arg(repo_root().join("tests/peers/loopback.mjs"))
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string());
        McpServer(Peer::command(cmd, port, "server-everything"))
    }

    /// Names of the tools the server was asked to call.
    pub fn calls(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter(|m| m["method"] == "tools/call")
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect()
    }
}

pub fn everything_js() -> PathBuf {
    repo_root().join(
        "target/guest-tools/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    )
}

/// Runs `tests/peers/mcp_client.py` and returns one JSON value per op.
pub fn client(url: &str, mode: &str, headers: Value, ops: Value) -> Vec<Value> {
    client_spec(json!({"url": url, "mode": mode, "headers": headers, "ops": ops}))
}

/// Runs `tests/peers/mcp_client.py` with a whole spec (see the script).
pub fn client_spec(spec: Value) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/peers/mcp_client.py"))
        .arg(spec.to_string())
        .output()
        .expect("run the Python MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "MCP client failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("client output is JSON"))
        .collect()
}

/// The gateway config: `servers` maps a server name to its upstream endpoint.
pub fn gateway_config(servers: &[(&str, String)], chain_before: &str, extra: &str) -> String {
    let mut toml = String::new();
    let mut table = Vec::new();
    let names: Vec<String> = servers.iter().map(|(n, _)| format!("{n:?}")).collect();
    for (name, endpoint) in servers {
        toml.push_str(&format!(
            "[upstreams.{name}]\nendpoints = [{endpoint:?}]\nrequest_timeout = \"20s\"\nconnect_timeout = \"1s\"\n"
        ));
        let secret = if *name == "py" {
            ", secret = \"PY_TOKEN\""
        } else {
            ""
        };
        table.push(format!("{name} = {{ upstream = {name:?}{secret} }}"));
    }
    toml.push_str(&plugins_toml(&[
        (
            "mcp-gateway",
            &format!(
                "capabilities = {{ outbound = [{}], kv = \"mcp\", secrets = [\"PY_TOKEN\"] }}",
                names.join(", ")
            ),
        ),
        ("mcp-policy", "capabilities = { metrics = true }"),
        ("api-key", ""),
    ]));
    toml.push_str(&format!(
        "[secrets]\nPY_TOKEN = {{ env = \"WEIR_TEST_PY_TOKEN\" }}\n[admin]\naddress = \"127.0.0.1:{}\"\n\n\
         [[routes]]\nname = \"mcp\"\nmatch = {{ path_prefix = \"/mcp\" }}\nchain = [\n{chain_before}\
         {{ plugin = \"mcp-gateway\", config = {{ max_request_bytes = 65536, servers = {{ {} }} {extra} }} }},\n]\n",
        free_port(),
        table.join(", ")
    ));
    toml
}

pub fn start(servers: &[(&str, String)], chain_before: &str) -> Gateway {
    Gateway::start_env(
        &gateway_config(servers, chain_before, ""),
        &[("WEIR_TEST_PY_TOKEN", "server-secret")],
    )
}

pub fn tools(result: &Value) -> Vec<String> {
    strings(result, "tools")
}

/// The strings in `v[field]`, an array the client printed.
pub fn strings(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .iter()
        .map(|t| t.as_str().expect("a string").to_string())
        .collect()
}

#[test]
fn python_client_federates_two_real_servers_in_both_eras() {
    let everything = McpServer::everything();
    let py = McpServer::python(&[]);
    let gw = start(
        &[("everything", everything.endpoint()), ("py", py.endpoint())],
        "",
    );
    for mode in ["legacy", "2026-07-28"] {
        let out = client(
            &gw.url("/mcp"),
            mode,
            // A client credential that must never reach a server.
            json!({"authorization": "Bearer client-token"}),
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "py_add", "args": {"a": 2, "b": 3}},
                {"op": "call", "name": "everything_echo", "args": {"message": "hi"}},
                {"op": "read", "uri": "py+data://greeting"},
                {"op": "list_resources"},
                {"op": "call", "name": "py_slow", "args": {"steps": 6}, "progress": true},
                {"op": "call", "name": "everything_trigger-long-running-operation",
                 "args": {"duration": 1.2, "steps": 4}, "progress": true},
                {"op": "call", "name": "py_whoami"},
            ]),
        );
        let names = tools(&out[0]);
        for expected in [
            "everything_echo",
            "everything_trigger-long-running-operation",
            "py_add",
            "py_slow",
        ] {
            assert!(names.contains(&expected.to_string()), "{mode}: {names:?}");
        }
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("everything_") || n.starts_with("py_")),
            "{mode}: every tool is prefixed: {names:?}"
        );
        assert_eq!(out[1]["text"], "5", "{mode}: {}", out[1]);
        assert_eq!(out[2]["text"], "Echo: hi", "{mode}: {}", out[2]);
        assert_eq!(out[3]["uris"], json!(["py+data://greeting"]), "{mode}");
        assert_eq!(out[3]["texts"], json!(["hello from py"]), "{mode}");
        let uris = out[4]["uris"].as_array().expect("uris");
        assert!(
            uris.iter().any(|u| u == "py+data://greeting")
                && uris
                    .iter()
                    .any(|u| u.as_str().is_some_and(|u| u.starts_with("everything+"))),
            "{mode}: {uris:?}"
        );
        // Progress arrives while the tool runs, not with the answer.
        for (i, steps) in [(5, 6), (6, 4)] {
            let progress = out[i]["progress"].as_array().expect("progress");
            assert_eq!(progress.len(), steps, "{mode}: {}", out[i]);
            let first_at = progress[0][3].as_f64().expect("time");
            let done_at = out[i]["done_at_s"].as_f64().expect("time");
            assert!(
                done_at - first_at > 0.25,
                "{mode}: the first progress event came {first_at:.2}s in, the answer at {done_at:.2}s"
            );
            assert_eq!(progress[steps - 1][0], json!(steps as f64), "{mode}");
        }
        assert_eq!(out[5]["text"], "done after 6 steps", "{mode}");
        // The server got its own credential, never the client's.
        assert_eq!(out[7]["text"], "Bearer server-secret", "{mode}");
    }
    let received = py.received();
    assert!(
        received
            .iter()
            .all(|m| m["authorization"] == "Bearer server-secret"),
        "every message to the server carries the server's credential: {received:?}"
    );
}

#[test]
fn every_page_of_every_server_is_listed_and_long_names_stay_callable() {
    let paged = McpServer::python(&["--paged", "25"]);
    let py = McpServer::python(&[]);
    let gw = start(&[("paged", paged.endpoint()), ("py", py.endpoint())], "");
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({}),
        json!([{"op": "list_tools"}]),
    );
    let names = tools(&out[0]);
    for i in 0..25 {
        assert!(
            names.contains(&format!("paged_t{i:03}")),
            "paged_t{i:03} missing from {names:?}"
        );
    }
    assert!(names.contains(&"py_add".to_string()));
    let pages = paged
        .received()
        .iter()
        .filter(|m| m["method"] == "tools/list")
        .count();
    assert_eq!(pages, 3, "26 tools at 10 per page");
    // The 70-character original is cut to 64 and still calls the right tool.
    let long = names
        .iter()
        .find(|n| n.starts_with("paged_a_tool_with"))
        .expect("the long tool is listed")
        .clone();
    assert_eq!(long.len(), 64, "{long}");
    let out = client(
        &gw.url("/mcp"),
        "2026-07-28",
        json!({}),
        json!([{"op": "list_tools"}, {"op": "call", "name": long, "args": {}}]),
    );
    assert_eq!(
        out[1]["text"],
        format!(
            "ran a_tool_with_a_deliberately_long_name_{}",
            "x".repeat(40)
        )
    );
}

const POLICY: &str = concat!(
    r#"{ plugin = "api-key", config = { keys = { "k-alice" = "alice", "k-bob" = "bob" } } },"#,
    "\n",
    r#"{ plugin = "mcp-policy", config = { rules = ["#,
    r#"{ principals = ["alice"], allow = ["py_*", "everything_echo"], deny = ["py_whoami"] }, "#,
    r#"{ principals = ["*"], allow = ["everything_get-sum"] }], arguments = ["#,
    r#"{ tool = "py_read_file", argument = "path", starts_with = "/srv/public" }, "#,
    r#"{ tool = "py_pay", argument = "amount", max = 100 }] } },"#,
    "\n",
);

/// The audit records in the gateway's log.
fn audit(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|l| {
            let start = l.find("audit {")? + "audit ".len();
            let end = l.rfind('}')?;
            // The record is one JSON object; the log line adds fields after it.
            let mut depth = 0;
            let bytes = l.as_bytes();
            for (i, b) in bytes.iter().enumerate().take(end + 1).skip(start) {
                match b {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return serde_json::from_str(&l[start..=i]).ok();
                        }
                    }
                    _ => {}
                }
            }
            None
        })
        .collect()
}

#[test]
fn principals_see_and_call_only_their_tools_and_every_call_is_audited() {
    let everything = McpServer::everything();
    let py = McpServer::python(&[]);
    let gw = start(
        &[("everything", everything.endpoint()), ("py", py.endpoint())],
        POLICY,
    );
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({"x-api-key": "k-alice"}),
        json!([
            {"op": "list_tools"},
            {"op": "call", "name": "py_whoami"},
            {"op": "call", "name": "everything_get-env"},
            {"op": "call", "name": "py_read_file", "args": {"path": "/srv/public/report.txt"}},
            {"op": "call", "name": "py_read_file", "args": {"path": "/srv/public/../../etc/passwd"}},
            {"op": "call", "name": "py_pay", "args": {"amount": 40}},
            {"op": "call", "name": "py_pay", "args": {"amount": 400}},
        ]),
    );
    let mut seen = tools(&out[0]);
    seen.sort();
    assert_eq!(
        seen,
        [
            "everything_echo",
            "everything_get-sum",
            "py_add",
            "py_confirm",
            "py_grow",
            "py_pay",
            "py_read_file",
            "py_slow"
        ],
        "alice sees exactly what she may call"
    );
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error(&out[1]).contains("Forbidden: alice may not call py_whoami"),
        "{}",
        out[1]
    );
    assert!(error(&out[2]).contains("no rule allows it"), "{}", out[2]);
    assert_eq!(out[3]["text"], "contents of /srv/public/report.txt");
    assert!(
        error(&out[4]).contains("argument `path` must be under \"/srv/public\""),
        "{}",
        out[4]
    );
    assert_eq!(out[5]["text"], "paid 40.0");
    assert!(error(&out[6]).contains("argument `amount`"), "{}", out[6]);
    // Only the allowed calls reached the server.
    assert_eq!(py.calls(), ["read_file", "pay"]);

    // bob has only the everyone-rule.
    let out = client(
        &gw.url("/mcp"),
        "2026-07-28",
        json!({"x-api-key": "k-bob"}),
        json!([{"op": "list_tools"}, {"op": "call", "name": "py_add", "args": {"a": 1, "b": 1}}]),
    );
    assert_eq!(tools(&out[0]), ["everything_get-sum"]);
    assert!(error(&out[1]).contains("Forbidden: bob"), "{}", out[1]);
    assert_eq!(py.calls().len(), 2, "bob's call never reached the server");

    // One record per call, with the decision, reason and result.
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    let records = loop {
        let r = audit(&gw);
        if r.len() >= 7 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for 7 audit records: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(records.len(), 7, "{records:#?}");
    let find = |tool: &str, decision: &str| {
        records
            .iter()
            .filter(|r| r["tool"] == tool && r["decision"] == decision)
            .count()
    };
    assert_eq!(find("py_whoami", "deny"), 1);
    assert_eq!(find("py_read_file", "allow"), 1);
    assert_eq!(find("py_read_file", "deny"), 1);
    assert_eq!(find("py_pay", "allow"), 1);
    assert_eq!(find("py_pay", "deny"), 1);
    assert_eq!(find("py_add", "deny"), 1);
    let allowed = records
        .iter()
        .find(|r| r["tool"] == "py_pay" && r["decision"] == "allow")
        .expect("record");
    assert_eq!(allowed["principal"], "alice");
    assert_eq!(allowed["server"], "py");
    assert_eq!(allowed["status"], "ok");
    assert!(allowed["latency_ms"].as_f64().expect("latency") > 0.0);
    assert!(
        allowed["arguments"]
            .as_str()
            .is_some_and(|a| a.starts_with("sha256:")),
        "arguments are digested, not logged: {allowed}"
    );
    let denied = records
        .iter()
        .find(|r| r["tool"] == "py_read_file" && r["decision"] == "deny")
        .expect("record");
    assert!(
        denied["reason"]
            .as_str()
            .is_some_and(|r| r.contains("/srv/public"))
    );
    assert!(
        !gw.log().contains("/etc/passwd"),
        "argument values stay out of the log"
    );
}

#[test]
fn a_restarted_server_is_recovered_on_the_next_call() {
    let port = free_port();
    let py = McpServer::python_on(port, &[]);
    let gw = start(&[("py", py.endpoint())], "");
    let dir = tempfile::tempdir().expect("tempdir");
    let (signal, resume) = (dir.path().join("paused"), dir.path().join("resume"));
    let url = gw.url("/mcp");
    let (s, r) = (signal.clone(), resume.clone());
    let legacy = std::thread::spawn(move || {
        client(
            &url,
            "legacy",
            json!({}),
            json!([
                {"op": "call", "name": "py_add", "args": {"a": 1, "b": 2}},
                {"op": "pause", "signal": s, "resume": r},
                {"op": "call", "name": "py_add", "args": {"a": 3, "b": 4}},
                {"op": "list_tools"},
            ]),
        )
    });
    // A modern client too: its upstream session is the gateway's shared one.
    let modern_before = client(
        &gw.url("/mcp"),
        "2026-07-28",
        json!({}),
        json!([{"op": "call", "name": "py_add", "args": {"a": 5, "b": 5}}]),
    );
    assert_eq!(modern_before[0]["text"], "10");
    wait_for_file(&signal);
    // The server restarts: every session it had is gone.
    drop(py);
    let py = McpServer::python_on(port, &[]);
    std::fs::write(&resume, b"").expect("resume");
    let out = legacy.join().expect("client thread");
    assert_eq!(out[0]["text"], "3");
    assert_eq!(
        out[2]["text"], "7",
        "the call after the restart: {}",
        out[2]
    );
    assert!(
        !tools(&out[3]).is_empty(),
        "listing works on the new session"
    );
    let modern_after = client(
        &gw.url("/mcp"),
        "2026-07-28",
        json!({}),
        json!([{"op": "call", "name": "py_add", "args": {"a": 6, "b": 6}}]),
    );
    assert_eq!(modern_after[0]["text"], "12");
    // The new server saw a fresh session opened for the legacy client; the modern client's
    // call went in the 2026-07-28 era, which has no session to lose.
    let received = py.received();
    let methods: Vec<String> = received
        .iter()
        .filter_map(|m| m["method"].as_str().map(str::to_owned))
        .collect();
    assert!(methods.contains(&"initialize".to_string()), "{methods:?}");
    assert!(
        received
            .iter()
            .any(|m| m["method"] == "tools/call" && m["session"].is_null()),
        "{received:?}"
    );
    assert!(gw.log().contains("lost the session; re-initialising"));
}

pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dead_server_is_left_out_of_lists_and_its_calls_fail_clearly() {
    let everything = McpServer::everything();
    // Nothing listens here.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = start(&[("everything", everything.endpoint()), ("py", dead)], "");
    for mode in ["legacy", "2026-07-28"] {
        let out = client(
            &gw.url("/mcp"),
            mode,
            json!({}),
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "py_add", "args": {"a": 1, "b": 2}},
                {"op": "call", "name": "everything_echo", "args": {"message": "still here"}},
            ]),
        );
        let names = tools(&out[0]);
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with("everything_")),
            "{mode}: {names:?}"
        );
        let err = out[1]["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("MCP server \"py\" is unavailable"),
            "{mode}: {}",
            out[1]
        );
        assert_eq!(out[2]["text"], "Echo: still here");
    }
    assert!(
        gw.log().contains("tools/list left out server \\\"py\\\"")
            || gw.log().contains("tools/list left out server \"py\""),
        "{}",
        gw.log()
    );
}

pub async fn post_raw(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> crate::support::Reply {
    let mut b = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(body.into())).expect("request")).await
}

#[tokio::test]
async fn bad_input_gets_json_rpc_errors_and_nothing_reaches_a_server() {
    let py = McpServer::python(&[]);
    let gw = start(&[("py", py.endpoint())], "");
    let url = gw.url("/mcp");
    let code = |r: &crate::support::Reply| r.json()["error"]["code"].as_i64();

    let r = post_raw(&url, &[], "{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\":").await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (400, Some(-32700)),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["id"], Value::Null);
    let r = post_raw(&url, &[], r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (400, Some(-32600)),
        "{}",
        r.text()
    );
    assert!(r.text().contains("batches"));
    let r = post_raw(&url, &[], r#"{"jsonrpc":"2.0","id":1,"method":42}"#).await;
    assert_eq!((r.status.as_u16(), code(&r)), (400, Some(-32600)));
    // Legacy requests need a session, and a known one.
    let r = post_raw(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    let r = post_raw(
        &url,
        &[("mcp-session-id", "made-up")],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!((r.status.as_u16(), code(&r)), (404, Some(-32001)));

    let init = post_raw(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
    )
    .await;
    assert_eq!(init.status.as_u16(), 200);
    assert_eq!(init.json()["result"]["protocolVersion"], "2025-06-18");
    let sid = init.header("mcp-session-id").expect("session id");
    let in_session = [("mcp-session-id", sid.as_str())];
    let r = post_raw(
        &url,
        &in_session,
        r#"{"jsonrpc":"2.0","id":2,"method":"no/such"}"#,
    )
    .await;
    assert_eq!((r.status.as_u16(), code(&r)), (200, Some(-32601)));
    let r = post_raw(
        &url,
        &in_session,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope_add","arguments":{}}}"#,
    )
    .await;
    assert_eq!(code(&r), Some(-32602), "{}", r.text());
    assert!(r.text().contains("Unknown tool: nope_add"));
    let r = post_raw(
        &url,
        &in_session,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"forged"}}"#,
    )
    .await;
    assert_eq!(code(&r), Some(-32602));
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"py_add","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(100_000)
    );
    let r = post_raw(&url, &in_session, huge).await;
    assert_eq!(r.status.as_u16(), 413);
    // Modern requests: headers must match the body.
    let modern = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"py_add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let r = post_raw(
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "py_pay"),
        ],
        modern,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (400, Some(-32020)),
        "{}",
        r.text()
    );
    let r = post_raw(
        &url,
        &[
            ("mcp-protocol-version", "2030-01-01"),
            ("mcp-method", "tools/call"),
        ],
        modern.replace("2026-07-28", "2030-01-01"),
    )
    .await;
    assert_eq!((r.status.as_u16(), code(&r)), (400, Some(-32022)));
    assert_eq!(
        r.json()["error"]["data"]["supported"],
        json!(["2026-07-28"])
    );
    // A legacy request naming a version the gateway does not speak gets 400 and -32022.
    let bad_version = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "1999-01-01"),
    ];
    let r = post_raw(
        &url,
        &bad_version,
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (400, Some(-32022)),
        "{}",
        r.text()
    );
    // `initialized` concerns no server; a stream (GET) needs a session; answers to requests
    // the gateway never relayed are refused.
    let r = post_raw(
        &url,
        &in_session,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 202);
    let r = crate::support::get(&url).await;
    assert_eq!(r.status.as_u16(), 400);
    let r = post_raw(
        &url,
        &in_session,
        r#"{"jsonrpc":"2.0","id":"x","result":{}}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(
        py.received(),
        Vec::<Value>::new(),
        "nothing reached the server"
    );

    // DELETE ends the session.
    let r = send(
        Request::delete(&url)
            .header("mcp-session-id", sid.as_str())
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    let r = post_raw(
        &url,
        &in_session,
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 404);
}

#[test]
fn the_mcp_example_serves_alice() {
    let everything = McpServer::everything();
    let py = McpServer::python(&[]);
    let (port, admin) = (free_port(), free_port());
    let gw = start_example(
        "mcp",
        &[
            ("127.0.0.1:8080", format!("127.0.0.1:{port}")),
            ("127.0.0.1:9901", format!("127.0.0.1:{admin}")),
            ("127.0.0.1:3001", format!("127.0.0.1:{}", everything.port)),
            ("127.0.0.1:8001", format!("127.0.0.1:{}", py.port)),
        ],
        format!("127.0.0.1:{port}").parse().expect("addr"),
        &[("MCP_PY_TOKEN", "server-secret")],
    );
    let out = client(
        &gw.url("/mcp"),
        "auto",
        json!({"x-api-key": "k-alice"}),
        json!([
            {"op": "list_tools"},
            {"op": "call", "name": "py_add", "args": {"a": 1, "b": 2}},
            {"op": "call", "name": "py_read_file", "args": {"path": "/etc/passwd"}},
            {"op": "call", "name": "py_whoami"},
        ]),
    );
    let names = tools(&out[0]);
    assert!(names.contains(&"everything_echo".to_string()), "{names:?}");
    assert!(!names.contains(&"py_whoami".to_string()), "{names:?}");
    assert!(
        !names.contains(&"everything_get-env".to_string()),
        "{names:?}"
    );
    assert_eq!(out[1]["text"], "3");
    assert!(
        out[2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Forbidden")
    );
    assert!(
        out[3]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Forbidden")
    );
    assert_eq!(py.calls(), ["add"]);
    // Redacted audit: argument names and types, no values.
    let records = audit(&gw);
    assert!(
        records
            .iter()
            .any(|r| r["tool"] == "py_read_file" && r["arguments"] == json!({"path": "string"})),
        "{records:?}"
    );
}

/// DNS rebinding: a page on a foreign origin that reaches the gateway under its own host name
/// gets 403 for every method, before anything reaches a server; clients that send no `Origin`
/// (every non-browser client) and loopback pages work.
#[tokio::test]
async fn a_rebound_page_is_refused_for_every_method_and_a_local_one_works() {
    let py = McpServer::python(&[]);
    let gw = start(&[("py", py.endpoint())], "");
    let url = gw.url("/mcp");
    let evil = [
        ("origin", "http://evil.example.com"),
        ("host", "evil.example.com"),
    ];
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    for body in [
        init.to_string(),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.into(),
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"py+file:///x"}}"#
            .into(),
        r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"py_p"}}"#.into(),
    ] {
        let r = post_raw(&url, &evil, body.clone()).await;
        assert_eq!(r.status.as_u16(), 403, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], -32000, "{}", r.text());
        assert!(r.text().contains("evil.example.com"), "{}", r.text());
    }
    for method in [http::Method::GET, http::Method::DELETE] {
        let mut req = Request::builder().method(method.clone()).uri(&url);
        for (k, v) in evil {
            req = req.header(k, v);
        }
        let r = send(req.body(Full::new(Bytes::new())).expect("request")).await;
        assert_eq!(r.status.as_u16(), 403, "{method}: {}", r.text());
    }
    assert_eq!(
        py.received(),
        Vec::<Value>::new(),
        "nothing reached the server"
    );

    let local = format!("http://127.0.0.1:{}", gw.addr.port());
    for headers in [vec![], vec![("origin", local.as_str())]] {
        let r = post_raw(&url, &headers, init).await;
        assert_eq!(r.status.as_u16(), 200, "{headers:?}: {}", r.text());
        assert_eq!(r.json()["result"]["protocolVersion"], "2025-06-18");
    }
}

/// The admin address of a gateway started from [`gateway_config`].
fn admin_url(gw: &Gateway, path: &str) -> String {
    let config = std::fs::read_to_string(&gw.config).expect("config");
    let addr = config
        .split("[admin]\naddress = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an [admin] address");
    format!("http://{addr}{path}")
}

#[tokio::test]
async fn tool_names_made_up_by_clients_never_become_metric_labels() {
    let py = McpServer::python(&[]);
    let gw = start(&[("py", py.endpoint())], POLICY);
    let url = gw.url("/mcp");
    // `py_pay` is named in an argument rule; `py_*` allows the made-up names too.
    let mut ops = vec![json!({"op": "call", "name": "py_pay", "args": {"amount": 4}})];
    ops.extend((0..10).map(|i| json!({"op": "call", "name": format!("py_made_up_{i}")})));
    let (u, o) = (url.clone(), Value::Array(ops));
    let out = tokio::task::spawn_blocking(move || {
        client(&u, "legacy", json!({"x-api-key": "k-alice"}), o)
    })
    .await
    .expect("client");
    assert_eq!(out[0]["text"], "paid 4.0");
    // Allowed by `py_*`, unknown to the server: answered by the gateway, never sent on.
    assert!(
        out[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Unknown tool: py_made_up_0")),
        "{}",
        out[1]
    );
    assert_eq!(py.calls(), ["pay"], "made-up tools never reach the server");
    // 10,000 more distinct names, refused by the policy (alice may only call `py_*`), eight at
    // a time: each is counted, none becomes a label.
    use futures_util::StreamExt;
    let names = futures_util::stream::iter(0..10_000).map(|i| {
        let url = url.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": format!("made_up_{i}"), "arguments": {}}});
            let r = post_raw(&url, &[("x-api-key", "k-alice")], body.to_string()).await;
            assert!(
                r.text().contains("made_up_"),
                "refused naming the tool: {}",
                r.text()
            );
        }
    });
    crate::support::hang_guard(
        "10,000 made-up tool calls",
        names.buffer_unordered(8).collect::<Vec<()>>(),
    )
    .await;
    let scrape = admin_url(&gw, "/metrics");
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    let metrics = loop {
        let text = crate::support::hang_guard("a scrape", crate::support::get(&scrape))
            .await
            .text();
        let other = |decision: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("weir_plugin_mcp_tool_calls_total{")
                        && l.contains("tool=\"other\"")
                        && l.contains(&format!("decision=\"{decision}\""))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        if other("allow").is_some_and(|n| n >= 10.0) && other("deny").is_some_and(|n| n >= 10_000.0)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the made-up calls in the metrics: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_plugin_mcp_tool_calls_total{")
                && l.contains("tool=\"py_pay\"")),
        "a configured tool keeps its name: {metrics}"
    );
    assert!(!metrics.contains("made_up"), "{metrics}");
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("weir_plugin_mcp_tool_calls_total{"))
        .count();
    assert!(series <= 3, "bounded series: {metrics}");
}
