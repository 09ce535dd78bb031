//! Stdio MCP servers as upstreams: the gateway runs `server-everything` in stdio mode and
//! bridges it to HTTP; the real Python `mcp` client reaches it through a plain route and
//! through `mcp-gateway` federation.

use crate::mcp::{McpServer, client, everything_js};
use crate::support::{Gateway, check, plugins_toml, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn stdio_upstream(name: &str) -> String {
    format!(
        "[upstreams.{name}]\nstdio = {{ command = \"node\", args = [{:?}, \"stdio\"] }}\nrequest_timeout = \"20s\"\n",
        everything_js().display().to_string()
    )
}

/// Pids of running server-everything processes in stdio mode.
fn stdio_server_pids() -> Vec<u32> {
    let target = everything_js().display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(&target) && cmdline.trim_end().ends_with("stdio")).then_some(pid)
        })
        .collect()
}

#[test]
fn a_stdio_server_is_reachable_through_a_route_and_through_federation() {
    let py = McpServer::python(&[]);
    let before = stdio_server_pids();
    let config = format!(
        "{}[upstreams.py]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"direct\"\nmatch = {{ path_prefix = \"/direct\" }}\nrewrite = {{ prefix = \"/\" }}\nupstream = \"everything\"\n\
         [[routes]]\nname = \"federated\"\nmatch = {{ path_prefix = \"/mcp\" }}\n\
         chain = [{{ plugin = \"mcp-gateway\", config = {{ servers = {{ ev = {{ upstream = \"everything\", path = \"/\" }}, py = {{ upstream = \"py\" }} }} }} }}]\n",
        stdio_upstream("everything"),
        py.endpoint(),
        plugins_toml(&[(
            "mcp-gateway",
            "capabilities = { outbound = [\"everything\", \"py\"], kv = \"mcp\", secrets = [] }"
        )]),
    );
    let gw = Gateway::start(&config);
    let mine: Vec<u32> = stdio_server_pids()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(mine.len(), 1, "one process for the upstream: {mine:?}");

    // Two independent client sessions share the one stdio session.
    for _ in 0..2 {
        let out = client(
            &gw.url("/direct/"),
            "legacy",
            json!({}),
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "echo", "args": {"message": "over stdio"}},
                {"op": "call", "name": "trigger-long-running-operation",
                 "args": {"duration": 0.9, "steps": 3}, "progress": true},
            ]),
        );
        let tools = out[0]["tools"].as_array().expect("tools");
        assert!(tools.iter().any(|t| t == "echo"), "{tools:?}");
        assert_eq!(out[1]["text"], "Echo: over stdio");
        let progress = out[2]["progress"].as_array().expect("progress");
        assert_eq!(progress.len(), 3, "{}", out[2]);
        let first = progress[0][3].as_f64().unwrap_or_default();
        let done = out[2]["done_at_s"].as_f64().unwrap_or_default();
        assert!(
            done - first > 0.3,
            "progress arrived as it happened: {}",
            out[2]
        );
    }
    // Federated with an HTTP server, in both eras.
    for mode in ["legacy", "2026-07-28"] {
        let out = client(
            &gw.url("/mcp"),
            mode,
            json!({}),
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "ev_echo", "args": {"message": "federated"}},
                {"op": "call", "name": "py_add", "args": {"a": 1, "b": 1}},
            ]),
        );
        let tools = out[0]["tools"].as_array().expect("tools");
        assert!(
            tools.iter().any(|t| t == "ev_echo") && tools.iter().any(|t| t == "py_add"),
            "{mode}: {tools:?}"
        );
        assert_eq!(out[1]["text"], "Echo: federated", "{mode}");
        assert_eq!(out[2]["text"], "2", "{mode}");
    }

    // The process dies: the bridge restarts it, re-initialises it, and calls work again.
    for pid in &mine {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client(
            &gw.url("/direct/"),
            "legacy",
            json!({}),
            json!([{"op": "call", "name": "echo", "args": {"message": "after restart"}}]),
        );
        if out[0]["text"] == "Echo: after restart" {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", out[0]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = gw.log();
    assert!(log.contains("stdio MCP server exited; restarting"), "{log}");
    assert!(log.contains("stdio MCP server restarted"));
    assert!(log.contains("stdio MCP server: "), "stderr reaches the log");
    let after: Vec<u32> = stdio_server_pids()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(after.len(), 1, "one new process: {after:?}");
    assert_ne!(after, mine);
    drop(gw);
}

#[tokio::test]
async fn garbage_gets_json_rpc_errors_and_the_server_keeps_working() {
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nname = \"direct\"\nupstream = \"everything\"\n",
        stdio_upstream("everything")
    ));
    let post = |body: &'static str| {
        send(
            Request::post(gw.url("/"))
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("request"),
        )
    };
    let code = |r: &crate::support::Reply| -> Option<i64> {
        serde_json::from_slice::<Value>(&r.body).ok()?["error"]["code"].as_i64()
    };
    let r = post("{not json").await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (400, Some(-32700)),
        "{}",
        r.text()
    );
    let r = post(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!((r.status.as_u16(), code(&r)), (400, Some(-32600)));
    let r = post(r#""hello""#).await;
    assert_eq!(r.status.as_u16(), 400);
    let r = post(r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["id"], 7);
    assert!(r.header("mcp-session-id").is_some());
    let r = post(r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#).await;
    assert_eq!(
        r.json()["id"],
        "x",
        "ids are the client's own: {}",
        r.text()
    );
    let r = crate::support::get(&gw.url("/")).await;
    assert_eq!(r.status.as_u16(), 405);
}

#[test]
fn stdio_config_errors_name_the_upstream() {
    let listener = "[[listeners]]\naddress = \"127.0.0.1:1\"\n";
    let route = "[[routes]]\nname = \"r\"\nupstream = \"s\"\n";
    let (ok, out) = check(&format!(
        "{listener}[upstreams.s]\nendpoints = [\"http://127.0.0.1:1\"]\nstdio = {{ command = \"node\" }}\n{route}"
    ));
    assert!(!ok);
    assert!(
        out.contains("upstream \"s\": give either `endpoints` or `stdio`, not both"),
        "{out}"
    );
    let (ok, out) = check(&format!(
        "{listener}[upstreams.s]\nrequest_timeout = \"1s\"\n{route}"
    ));
    assert!(!ok);
    assert!(
        out.contains("upstream \"s\": `endpoints` is empty (give `endpoints` or `stdio`)"),
        "{out}"
    );
    let (ok, out) = check(&format!(
        "{listener}[upstreams.s]\nstdio = {{ command = \"no-such-mcp-server-xyz\" }}\n{route}"
    ));
    assert!(!ok);
    assert!(
        out.contains("upstream \"s\": cannot start stdio MCP server `no-such-mcp-server-xyz`: not found on PATH"),
        "{out}"
    );
    let (ok, out) = check(&format!(
        "{listener}[upstreams.s]\nstdio = {{ command = \"node\", shell = true }}\n{route}"
    ));
    assert!(!ok);
    assert!(out.contains("unknown field `shell`"), "{out}");
}
