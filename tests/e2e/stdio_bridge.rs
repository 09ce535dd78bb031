//! Stdio MCP servers as upstreams: the gateway runs the reference `server-everything` in stdio
//! mode as a child process and bridges it to MCP Streamable HTTP. The real Python `mcp` client
//! (`tests/peers/stdio_client.py`) and raw HTTP reach it through plain routes; `mcp-gateway`
//! federates it through `outbound` and `route` decisions.

use crate::support::{Gateway, check, free_port, plugins_toml, repo_root, send, weir_command};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn everything_js() -> PathBuf {
    repo_root().join(
        "target/guest-tools/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    )
}

/// `[upstreams.NAME]` running server-everything in stdio mode; `tag` is an extra argument the
/// server ignores, so that tests can tell processes apart by their command line.
fn stdio_upstream(name: &str, tag: &str, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\nstdio = {{ command = \"node\", args = [{:?}, \"stdio\", {tag:?}]{extra} }}\nrequest_timeout = \"30s\"\n",
        everything_js().display().to_string()
    )
}

/// A gateway started from `body` written into `dir` (so relative paths resolve there).
fn start_in(dir: tempfile::TempDir, body: &str) -> Gateway {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!("[[listeners]]\nname = \"main\"\naddress = \"{addr}\"\n\n{body}"),
    )
    .expect("write config");
    Gateway::start_file(dir, &path, addr)
}

/// Runs `tests/peers/stdio_client.py`: the session line, then one JSON value per op. Bounded:
/// the client is killed after two minutes.
fn client(url: &str, mode: &str, ops: Value) -> (Value, Vec<Value>) {
    let spec = json!({"url": url, "mode": mode, "ops": ops});
    let mut child = Command::new("python3")
        .arg(repo_root().join("tests/peers/stdio_client.py"))
        .arg(spec.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Python MCP client");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the MCP client did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(
        status.success(),
        "MCP client failed: {status}\nstdout: {out}\nstderr: {err}"
    );
    let mut lines = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("client output is JSON"));
    let session = lines.next().expect("a session line");
    (session, lines.collect())
}

/// Waits (at most `limit`) until `f` holds.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The `weir` process serving `gw` (the one running its config file).
fn gateway_pid(gw: &Gateway) -> u32 {
    let config = gw.config.display().to_string();
    all_pids()
        .into_iter()
        .find(|&p| {
            let c = cmdline(p);
            c.contains(" run ") && c.ends_with(&config)
        })
        .expect("the gateway's pid")
}

/// The gateway's server-everything children, with their command lines.
fn servers(gw: &Gateway) -> Vec<(u32, String)> {
    let gateway = gateway_pid(gw);
    let js = everything_js().display().to_string();
    all_pids()
        .into_iter()
        .filter(|&p| parent(p) == Some(gateway))
        .map(|p| (p, cmdline(p)))
        .filter(|(_, c)| c.contains(&js))
        .collect()
}

/// The pids of the gateway's servers whose command line ends with `tag`.
fn server_tagged(gw: &Gateway, tag: &str) -> Vec<u32> {
    servers(gw)
        .into_iter()
        .filter(|(_, c)| c.ends_with(&format!("stdio {tag}")))
        .map(|(p, _)| p)
        .collect()
}

fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// POSTs a JSON-RPC body, asking for JSON (or SSE with `sse`).
async fn post(url: &str, body: &str, sse: bool) -> crate::support::Reply {
    let accept = if sse {
        "application/json, text/event-stream"
    } else {
        "application/json"
    };
    send(
        Request::post(url)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

/// The `data` of each SSE event in a body.
fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            serde_json::from_str(data).ok()
        })
        .collect()
}

fn initialize(id: Value, capabilities: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": capabilities,
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string()
}

fn echo(id: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"message": message}}})
    .to_string()
}

/// Echo through `url` with raw JSON-RPC (initialize first: the server may be new).
async fn raw_echo(url: &str, message: &str) -> Value {
    let r = post(url, &initialize(json!(1), json!({})), false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let r = post(url, &echo(2, message), false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.json()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn clients_share_one_process_and_get_their_own_progress_and_logs() {
    // A relative command run in a relative working directory, with an extra variable.
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let script = bin.join("everything.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"launched in $(pwd)\" >&2\nexec node {:?} stdio shared\n",
            everything_js().display().to_string()
        ),
    )
    .expect("write script");
    set_mode(&script, 0o755);
    let gw = start_in(
        dir,
        "[upstreams.everything]\nstdio = { command = \"bin/everything.sh\", cwd = \"bin\", env = { WEIR_TEST_FOO = \"bar\" } }\nrequest_timeout = \"30s\"\n\
         [[routes]]\nname = \"mcp\"\nmatch = { path_prefix = \"/mcp\" }\nupstream = \"everything\"\n",
    );
    let url = gw.url("/mcp");
    // The script `exec`s node: until it has, the child's command line is the shell's.
    eventually(
        "the one stdio server to run node",
        Duration::from_secs(60),
        || servers(&gw).len() == 1,
    );
    let started = servers(&gw);
    assert_eq!(started.len(), 1, "{started:?}");

    // Two sessions one after the other: the second is initialised from the cache.
    let (session, out) = client(
        &url,
        "legacy",
        json!([
            {"op": "list_tools"},
            {"op": "call", "name": "echo", "args": {"message": "one"}},
            {"op": "call", "name": "get-env"},
        ]),
    );
    assert_eq!(session["server"], "mcp-servers/everything", "{session}");
    let tools = out[0]["tools"].as_array().expect("tools");
    assert!(
        tools.iter().any(|t| t == "trigger-long-running-operation"),
        "{tools:?}"
    );
    assert_eq!(out[1]["text"], "Echo: one", "{}", out[1]);
    let env: Value = serde_json::from_str(out[2]["text"].as_str().unwrap_or("{}")).expect("env");
    assert_eq!(env["WEIR_TEST_FOO"], "bar", "the configured variable");
    let (_, out) = client(
        &url,
        "legacy",
        json!([{"op": "call", "name": "echo", "args": {"message": "two"}}]),
    );
    assert_eq!(out[0]["text"], "Echo: two", "{}", out[0]);
    let log = gw.log();
    assert!(log.contains("initialize answered from the cache"), "{log}");
    let bin = gw.config.with_file_name("bin").display().to_string();
    assert!(
        log.contains(&format!("stdio MCP server: launched in {bin}")),
        "stderr in the log, cwd honoured: {log}"
    );

    // Two clients at once, whose ids and progress tokens collide: each gets its own progress,
    // as it happens; log notifications reach the requests in flight.
    let run = |url: String, with_logging: bool| {
        std::thread::spawn(move || {
            let mut ops = vec![];
            if with_logging {
                ops.push(json!({"op": "call", "name": "toggle-simulated-logging"}));
            }
            ops.push(
                json!({"op": "call", "name": "trigger-long-running-operation",
                            "args": {"duration": 4, "steps": 4}, "progress": true}),
            );
            if with_logging {
                ops.push(json!({"op": "call", "name": "toggle-simulated-logging"}));
            }
            client(&url, "legacy", Value::Array(ops)).1
        })
    };
    let (a, b) = (run(url.clone(), true), run(url.clone(), false));
    let (a, b) = (a.join().expect("client a"), b.join().expect("client b"));
    for long in [&a[1], &b[0]] {
        assert_eq!(
            long["text"], "Long running operation completed. Duration: 4 seconds, Steps: 4.",
            "{long}"
        );
        let progress = long["progress"].as_array().expect("progress");
        let steps: Vec<f64> = progress.iter().filter_map(|p| p[0].as_f64()).collect();
        assert_eq!(steps, [1.0, 2.0, 3.0, 4.0], "its own progress only: {long}");
        let first = progress[0][2].as_f64().unwrap_or_default();
        let done = long["done_at_s"].as_f64().unwrap_or_default();
        assert!(
            done - first > 1.0,
            "progress streamed before the result, not with it: {long}"
        );
    }
    let logs = a[2]["logs"].as_array().expect("logs");
    assert!(
        logs.iter()
            .any(|l| l.as_str().is_some_and(|s| s.contains("message"))),
        "a log notification reached the client: {a:?}"
    );
    assert_eq!(servers(&gw), started, "still the one process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_its_requests_and_is_restarted_and_reinitialised() {
    let gw = start_in(
        tempfile::tempdir().expect("tempdir"),
        &format!(
            "{}[[routes]]\nname = \"mcp\"\nupstream = \"everything\"\n",
            stdio_upstream("everything", "k", "")
        ),
    );
    let url = gw.url("/mcp");
    let r = post(&url, &initialize(json!(1), json!({})), false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let before = server_tagged(&gw, "k");
    assert_eq!(before.len(), 1);

    // A long call in flight when the process dies gets a JSON-RPC error with its own id.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call = json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 60, "steps": 60},
        "_meta": {"progressToken": "p"}}});
    let resp = http
        .request(
            Request::post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(Full::new(Bytes::from(call.to_string())))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body();
    let mut seen = String::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(frame) = tokio::time::timeout_at(deadline.into(), body.frame())
        .await
        .expect("the stream goes on")
    {
        if let Some(data) = frame.expect("frame").data_ref() {
            seen.push_str(&String::from_utf8_lossy(data));
        }
        if !killed && seen.contains("notifications/progress") {
            kill(before[0]);
            killed = true;
        }
    }
    let messages = sse_messages(&seen);
    let last = messages.last().expect("messages");
    assert_eq!(last["id"], 41, "{seen}");
    assert_eq!(last["error"]["code"], -32603, "{seen}");
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("stdio MCP server everything exited"),
        "{message}"
    );

    // The next calls work: a new process, initialised again by the bridge.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = post(&url, &echo(2, "after restart"), false).await;
        if r.status.as_u16() == 200
            && r.json()["result"]["content"][0]["text"] == "Echo: after restart"
        {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", r.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (session, out) = client(
        &url,
        "legacy",
        json!([{"op": "call", "name": "echo", "args": {"message": "python"}}]),
    );
    assert_eq!(session["server"], "mcp-servers/everything");
    assert_eq!(out[0]["text"], "Echo: python");
    let after = server_tagged(&gw, "k");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    let log = gw.log();
    for line in [
        "stdio MCP server exited; restarting",
        "stdio MCP server restarted",
        "stdio MCP server re-initialised",
        "stdio MCP server: Starting default (STDIO) server...",
    ] {
        assert!(log.contains(line), "{line:?} in {log}");
    }
}

#[tokio::test]
async fn garbage_gets_json_rpc_errors_and_the_server_keeps_working() {
    let gw = start_in(
        tempfile::tempdir().expect("tempdir"),
        &format!(
            "{}[[routes]]\nname = \"mcp\"\nupstream = \"everything\"\nmax_body_size = \"4KiB\"\n",
            stdio_upstream("everything", "g", "")
        ),
    );
    let url = gw.url("/mcp");
    let error = |r: &crate::support::Reply| -> (u16, Value) {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        (r.status.as_u16(), v["error"]["code"].clone())
    };

    // The first initialize says the client can sample and has roots: the server will ask.
    let r = post(
        &url,
        &initialize(json!(7), json!({"sampling": {}, "roots": {}})),
        false,
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["id"], 7);
    assert_eq!(
        r.json()["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );
    let first = r.header("mcp-session-id").expect("a session id");
    assert!(
        first.len() >= 16 && first.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "{first}"
    );
    let r = post(
        &url,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        false,
    )
    .await;
    assert_eq!(r.status.as_u16(), 202);

    let r = post(&url, "{not json", false).await;
    assert_eq!(error(&r), (400, json!(-32700)), "{}", r.text());
    let r = post(&url, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, false).await;
    assert_eq!(error(&r), (400, json!(-32600)), "{}", r.text());
    assert!(
        r.text().contains("batches are not supported"),
        "{}",
        r.text()
    );
    let r = post(&url, r#""hello""#, false).await;
    assert_eq!(error(&r), (400, json!(-32600)));
    let r = post(
        &url,
        r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
        false,
    )
    .await;
    assert_eq!(error(&r), (400, json!(-32600)));
    let r = post(&url, r#"{"jsonrpc":"2.0","id":5,"result":{}}"#, false).await;
    assert_eq!(r.status.as_u16(), 202, "a response is accepted");
    let big = echo(3, &"x".repeat(8192));
    let r = post(&url, &big, false).await;
    assert_eq!(r.status.as_u16(), 413, "the route's body limit applies");

    // Later initializes are answered from the cache, each with the caller's id and a new session.
    let r = post(&url, &initialize(json!("again"), json!({})), true).await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let answer = sse_messages(&r.text()).pop().expect("an answer");
    assert_eq!(answer["id"], "again");
    assert_eq!(
        answer["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );
    let second = r.header("mcp-session-id").expect("a session id");
    assert_ne!(first, second);

    assert_eq!(crate::support::get(&url).await.status.as_u16(), 405);
    let delete = send(
        Request::delete(&url)
            .header("mcp-session-id", &second)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(delete.status.as_u16(), 200);

    // The server asks the client to sample: the bridge says no, and the call still ends.
    let sample = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "trigger-sampling-request", "arguments": {"prompt": "hi"}}});
    let r = post(&url, &sample.to_string(), true).await;
    let answer = sse_messages(&r.text()).pop().expect("an answer");
    assert_eq!(answer["id"], 8, "{}", r.text());
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(answer.to_string().contains("-32601"), "{answer}");

    // Ids are the client's own, and the same process kept working throughout.
    let r = post(&url, r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#, false).await;
    assert_eq!(r.json()["id"], "x", "{}", r.text());
    let r = post(&url, &echo(9, "still here"), false).await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "Echo: still here");
    let log = gw.log();
    assert!(
        log.contains("answered method-not-found") && log.contains("sampling/createMessage"),
        "{log}"
    );
    assert!(!log.contains("stdio MCP server exited"), "{log}");
}

#[tokio::test]
async fn reloads_keep_unchanged_servers_and_replace_changed_ones() {
    let route = |name: &str, upstream: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\nupstream = \"{upstream}\"\n"
        )
    };
    let a = format!(
        "[reload]\nwatch = false\n{}{}",
        stdio_upstream("a", "a", ""),
        route("a", "a")
    );
    let with_b = |b_env: &str, extra: &str| {
        format!(
            "{a}{}{}{extra}",
            stdio_upstream("b", "b", &format!(", env = {{ V = {b_env:?} }}")),
            route("b", "b")
        )
    };
    let gw = start_in(tempfile::tempdir().expect("tempdir"), &with_b("1", ""));
    let outcomes = |log: &str| {
        log.matches("configuration reloaded").count() + log.matches("reload refused").count()
    };
    let reload = |body: String, n: usize| {
        gw.write_config(&format!(
            "[[listeners]]\nname = \"main\"\naddress = \"{}\"\n\n{body}",
            gw.addr
        ));
        gw.signal("HUP");
        eventually(&format!("reload {n}"), Duration::from_secs(60), || {
            outcomes(&gw.log()) >= n
        });
    };
    let (pa, pb) = (server_tagged(&gw, "a"), server_tagged(&gw, "b"));
    assert_eq!((pa.len(), pb.len()), (1, 1), "{:?}", servers(&gw));

    // Unchanged upstreams (another route added): the same processes.
    reload(with_b("1", &route("other", "a")), 1);
    assert!(gw.log().contains("configuration reloaded"));
    assert_eq!(
        (server_tagged(&gw, "a"), server_tagged(&gw, "b")),
        (pa.clone(), pb.clone())
    );
    let text = |v: Value| v["result"]["content"][0]["text"].clone();
    assert_eq!(text(raw_echo(&gw.url("/other"), "a").await), "Echo: a");

    // b's table changed: b gets a new process and the old one stops; a stays.
    reload(with_b("2", ""), 2);
    eventually("the old b to stop", Duration::from_secs(60), || {
        let now = server_tagged(&gw, "b");
        now.len() == 1 && now != pb
    });
    assert_eq!(server_tagged(&gw, "a"), pa);
    let pb2 = server_tagged(&gw, "b");
    assert_eq!(text(raw_echo(&gw.url("/b"), "b").await), "Echo: b");

    // A refused reload changes nothing.
    reload(with_b("3", &route("bad", "nope")), 3);
    assert!(gw.log().contains("reload refused"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        (server_tagged(&gw, "a"), server_tagged(&gw, "b")),
        (pa.clone(), pb2)
    );

    // b removed: its process stops; a still answers.
    reload(a.clone(), 4);
    eventually("b to stop", Duration::from_secs(60), || {
        server_tagged(&gw, "b").is_empty()
    });
    assert_eq!(server_tagged(&gw, "a"), pa);
    assert!(gw.log().contains("stdio MCP server stopped"));
    assert_eq!(
        text(raw_echo(&gw.url("/a"), "still a").await),
        "Echo: still a"
    );
}

#[test]
fn a_stdio_server_is_federated_by_mcp_gateway() {
    let gw = start_in(
        tempfile::tempdir().expect("tempdir"),
        &format!(
            "{}{}[[routes]]\nname = \"federated\"\nmatch = {{ path_prefix = \"/mcp\" }}\n\
             chain = [{{ plugin = \"mcp-gateway\", config = {{ servers = {{ ev = {{ upstream = \"everything\", path = \"/\" }} }} }} }}]\n",
            stdio_upstream("everything", "f", ""),
            plugins_toml(&[(
                "mcp-gateway",
                "capabilities = { outbound = [\"everything\"], kv = \"mcp\", secrets = [] }"
            )]),
        ),
    );
    for mode in ["legacy", "2026-07-28"] {
        let (_, out) = client(
            &gw.url("/mcp"),
            mode,
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "ev_echo", "args": {"message": "federated"}},
            ]),
        );
        let tools = out[0]["tools"].as_array().expect("tools");
        assert!(tools.iter().any(|t| t == "ev_echo"), "{mode}: {tools:?}");
        assert_eq!(out[1]["text"], "Echo: federated", "{mode}: {}", out[1]);
    }
    assert_eq!(server_tagged(&gw, "f").len(), 1);
}

#[test]
fn stdio_config_errors_name_the_upstream() {
    let listener = "[[listeners]]\naddress = \"127.0.0.1:1\"\n";
    let route = "[[routes]]\nname = \"r\"\nupstream = \"s\"\n";
    let errors = |upstream: &str| {
        let (ok, out) = check(&format!("{listener}[upstreams.s]\n{upstream}\n{route}"));
        assert!(!ok, "{out}");
        out.lines()
            .filter(|l| l.starts_with("error: "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        errors("endpoints = [\"http://127.0.0.1:1\"]\nstdio = { command = \"node\" }"),
        ["error: weir.toml:5:9: upstream \"s\": give either `endpoints` or `stdio`, not both"]
    );
    assert_eq!(
        errors("request_timeout = \"1s\""),
        [
            "error: weir.toml:3:1: upstream \"s\": `endpoints` is empty (give `endpoints` or `stdio`)"
        ]
    );
    assert_eq!(
        errors("stdio = { command = \"no-such-mcp-server-xyz\" }"),
        [
            "error: weir.toml:4:9: upstream \"s\": cannot start stdio MCP server `no-such-mcp-server-xyz`: not found on PATH"
        ]
    );
    assert_eq!(
        errors("stdio = { command = \"/nonexistent/mcp-server\" }"),
        [
            "error: weir.toml:4:9: upstream \"s\": cannot start stdio MCP server `/nonexistent/mcp-server`: /nonexistent/mcp-server not found"
        ]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("server.js");
    std::fs::write(&plain, "").expect("write");
    set_mode(&plain, 0o644);
    let plain = plain.display().to_string();
    assert_eq!(
        errors(&format!("stdio = {{ command = {plain:?} }}")),
        [format!(
            "error: weir.toml:4:9: upstream \"s\": cannot start stdio MCP server `{plain}`: {plain} is not executable"
        )]
    );
    assert_eq!(
        errors("stdio = { command = \"node\", cwd = \"/nonexistent-dir\" }"),
        [
            "error: weir.toml:4:9: upstream \"s\": stdio MCP server `cwd` /nonexistent-dir: not a directory"
        ]
    );
    assert_eq!(
        errors("stdio = { command = \"node\", env = { \"A=B\" = \"1\" } }\nca_file = \"ca.pem\""),
        [
            "error: weir.toml:4:9: upstream \"s\": `stdio.env`: invalid variable name \"A=B\"",
            "error: weir.toml:4:9: upstream \"s\": `ca_file` does not apply to a `stdio` upstream (the gateway serves it over plain HTTP/1.1 on loopback)",
        ]
    );
    let (ok, out) = check(&format!(
        "{listener}[upstreams.s]\nstdio = {{ command = \"node\", shell = true }}\n{route}"
    ));
    assert!(!ok);
    assert!(out.contains("unknown field `shell`"), "{out}");

    // `weir check` starts nothing: this command would leave a file behind.
    let marker = dir.path().join("started");
    let script = dir.path().join("server.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {:?}\n", marker.display().to_string()),
    )
    .expect("write");
    set_mode(&script, 0o755);
    let (ok, out) = check(&format!(
        "{listener}[upstreams.s]\nstdio = {{ command = {:?} }}\n{route}",
        script.display().to_string()
    ));
    assert!(ok, "{out}");
    assert!(!marker.exists(), "weir check ran the server");

    // `weir run` refuses a command that cannot start, naming the upstream, and serves nothing.
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "{listener}[upstreams.s]\nstdio = {{ command = \"no-such-mcp-server-xyz\" }}\n{route}"
        ),
    )
    .expect("write");
    let mut run = weir_command()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(s)) = run.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            panic!("weir run did not refuse the config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = run.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    assert!(!status.success());
    assert!(
        stderr.contains("upstream \"s\": cannot start stdio MCP server `no-such-mcp-server-xyz`: not found on PATH"),
        "{stderr}"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
