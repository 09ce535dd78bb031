//! A2A through the gateway: real `a2a-sdk` agents (`tests/peers/a2a_agent.py`, spec 1.0, with
//! and without v0.3 compatibility, optionally also over gRPC) behind a route with the `a2a`
//! plugin, driven by the real Python (`a2a-sdk`, JSON-RPC, HTTP+JSON and gRPC) and JavaScript
//! (`@a2a-js/sdk`) clients, which call whatever URL the card gives them.

use crate::support::{Gateway, Peer, free_port, h2c_client, plugins_toml, read, repo_root, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::process::Command;

/// An `a2a-sdk` agent (`tests/peers/a2a_agent.py`, a [`Peer`]); killed on drop.
struct Agent(Peer, Option<u16>);

impl std::ops::Deref for Agent {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl Agent {
    fn start(compat: bool) -> Agent {
        let extra: &[&str] = if compat { &["--compat"] } else { &[] };
        Agent(Peer::python("a2a_agent.py", free_port(), extra), None)
    }

    /// An agent also serving the gRPC binding (v1.0, and v0.3 with `compat`) on its own port.
    fn start_grpc(compat: bool) -> Agent {
        let grpc = free_port();
        let mut extra = vec!["--grpc-port".to_string(), grpc.to_string()];
        if compat {
            extra.push("--compat".into());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Agent(
            Peer::python("a2a_agent.py", free_port(), &extra),
            Some(grpc),
        )
    }

    fn grpc_port(&self) -> u16 {
        self.1.expect("an agent started with start_grpc")
    }

    /// The gRPC methods the agent served, in order.
    fn grpc_calls(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter_map(|r| r["grpc"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A route per agent at `/agents/NAME`, behind `api-key` and `a2a`.
fn gateway(agents: &[(&str, u16)], a2a_config: &str) -> Gateway {
    let mut toml = plugins_toml(&[
        ("api-key", ""),
        ("a2a", "capabilities = { metrics = true }"),
    ]);
    for (name, port) in agents {
        toml.push_str(&format!(
            "[upstreams.{name}]\nendpoints = [\"http://127.0.0.1:{port}\"]\n\
             [[routes]]\nname = {name:?}\nmatch = {{ path_prefix = \"/agents/{name}\" }}\nrewrite = {{ prefix = \"/\" }}\n\
             upstream = {name:?}\nchain = [\n\
             {{ plugin = \"api-key\", config = {{ keys = {{ \"k-alice\" = \"alice\", \"k-bob\" = \"bob\" }} }} }},\n\
             {{ plugin = \"a2a\", config = {{ public_prefix = \"/agents/{name}\" {a2a_config} }} }},\n]\n"
        ));
    }
    Gateway::start(&toml)
}

fn python_client(url: &str, binding: &str, key: &str) -> Value {
    let spec = json!({"url": url, "binding": binding, "headers": {"x-api-key": key}});
    run_peer("a2a_client.py", &spec)
}

/// Runs a Python a2a-sdk client from `tests/peers` with `spec` (JSON), never through a proxy the
/// environment may name; returns what it prints.
fn run_peer(script: &str, spec: &Value) -> Value {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/peers").join(script))
        .arg(spec.to_string())
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("grpc_proxy")
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn audit(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|l| {
            let start = l.find("a2a-audit {")? + "a2a-audit ".len();
            serde_json::Deserializer::from_str(&l[start..])
                .into_iter::<Value>()
                .next()?
                .ok()
        })
        .collect()
}

#[test]
fn sdk_clients_discover_agents_through_the_gateway_and_stay_on_it() {
    let modern = Agent::start(false);
    let compat = Agent::start(true);
    let gw = gateway(&[("modern", modern.port), ("compat", compat.port)], "");
    for (name, agent) in [("modern", &modern), ("compat", &compat)] {
        let base = gw.url(&format!("/agents/{name}"));
        for binding in ["JSONRPC", "HTTP+JSON"] {
            let out = python_client(&base, binding, "k-alice");
            let urls = out["card_urls"].as_array().expect("urls");
            assert!(
                !urls.is_empty()
                    && urls
                        .iter()
                        .all(|u| u.as_str().is_some_and(|u| u.starts_with(&base))),
                "{name}: the card points at the gateway: {urls:?}"
            );
            assert_eq!(
                out["sent"]["state"], "TASK_STATE_COMPLETED",
                "{name} {binding}"
            );
            assert_eq!(out["sent"]["text"], "echo: hello");
            assert_eq!(
                out["streamed"]["kinds"],
                json!(["task", "status_update", "artifact_update", "status_update"]),
                "{name} {binding}"
            );
            assert_eq!(out["streamed"]["text"], "echo: stream me");
            assert_eq!(out["task"]["got"], "TASK_STATE_WORKING");
            assert_eq!(out["task"]["cancelled"], "TASK_STATE_CANCELED");
        }
        assert!(!agent.received().is_empty());
    }
    // Every operation went through the gateway (the agents are reachable directly too).
    let ops: Vec<String> = audit(&gw)
        .iter()
        .filter_map(|r| r["operation"].as_str().map(str::to_owned))
        .collect();
    for op in [
        "SendMessage",
        "SendStreamingMessage",
        "GetTask",
        "CancelTask",
    ] {
        assert_eq!(
            ops.iter().filter(|o| *o == op).count(),
            if op == "SendStreamingMessage" { 8 } else { 4 },
            "{op} in {ops:?}"
        );
    }

    // The JavaScript SDK against the v1.0 agent.
    let base = gw.url("/agents/modern");
    let out = Command::new("node")
        .arg(repo_root().join("tests/peers/a2a_client.mjs"))
        .arg(&base)
        .arg(repo_root().join("target/guest-tools/node_modules"))
        .arg("x-api-key=k-alice")
        .output()
        .expect("run the @a2a-js/sdk client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let js: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        js["card_urls"].as_array().is_some_and(|u| u
            .iter()
            .all(|u| u.as_str().is_some_and(|u| u.starts_with(&base)))),
        "{js}"
    );
    assert_eq!(
        js["kinds"],
        json!(["task", "statusUpdate", "artifactUpdate", "statusUpdate"])
    );
    assert_eq!(
        js["sent"]["artifacts"][0]["parts"][0]["content"]["value"],
        "echo: hello"
    );
    // TASK_STATE_WORKING = 2, TASK_STATE_CANCELED = 5 in the SDK's numeric enum.
    assert_eq!(
        (js["got"].clone(), js["cancelled"].clone()),
        (json!(2), json!(5))
    );
}

async fn post(url: &str, key: &str, version: Option<&str>, body: Value) -> crate::support::Reply {
    let mut b = Request::post(url)
        .header("content-type", "application/json")
        .header("x-api-key", key);
    if let Some(v) = version {
        b = b.header("a2a-version", v);
    }
    send(
        b.body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn v03_clients_get_v03_answers_and_the_v03_card_shape_is_rewritten() {
    let compat = Agent::start(true);
    let gw = gateway(&[("compat", compat.port)], "");
    let base = gw.url("/agents/compat");
    let card = crate::support::get_with(
        &format!("{base}/.well-known/agent-card.json"),
        &[("x-api-key", "k-alice")],
    )
    .await;
    assert_eq!(card.status.as_u16(), 200);
    assert!(
        card.header("etag").is_none(),
        "the upstream's ETag no longer fits"
    );
    let card = card.json();
    assert_eq!(card["url"], format!("{base}/"), "v0.3 `url`");
    assert_eq!(card["protocolVersion"], "0.3");
    let v03 = post(
        &format!("{base}/"),
        "k-alice",
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
            "messageId": "m1", "role": "user", "kind": "message",
            "parts": [{"kind": "text", "text": "hi v0.3"}]}}}),
    )
    .await;
    let task = &v03.json()["result"];
    assert_eq!(task["kind"], "task", "v0.3 shapes: {}", v03.text());
    assert_eq!(task["status"]["state"], "completed");
    let id = task["id"].as_str().expect("task id").to_string();
    let got = post(
        &format!("{base}/"),
        "k-alice",
        None,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": id}}),
    )
    .await;
    assert_eq!(got.json()["result"]["id"], json!(id));
    let ops: Vec<Value> = audit(&gw).iter().map(|r| r["operation"].clone()).collect();
    assert_eq!(
        ops,
        json!(["SendMessage", "GetTask"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    );
    assert!(audit(&gw).iter().all(|r| r["a2a_version"] == "0.3"));
}

#[tokio::test]
async fn operations_are_authorised_per_principal_and_internal_webhooks_refused() {
    let agent = Agent::start(true);
    let gw = gateway(
        &[("echo", agent.port)],
        ", access = { alice = { allow = [\"*\"] }, bob = { allow = [\"SendMessage\", \"GetTask\"] } }",
    );
    let base = gw.url("/agents/echo");
    let cancels = [
        (
            format!("{base}/"),
            Some("1.0"),
            json!({"jsonrpc": "2.0", "id": 1, "method": "CancelTask", "params": {"id": "t1"}}),
        ),
        (
            format!("{base}/"),
            None,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": "t1"}}),
        ),
        (
            format!("{base}/rest/tasks/t1:cancel"),
            Some("1.0"),
            json!({}),
        ),
    ];
    for (url, version, body) in &cancels {
        let r = post(url, "k-bob", *version, body.clone()).await;
        assert_eq!(r.status.as_u16(), 403, "{url} {body}");
        assert!(
            r.text().contains("bob may not use CancelTask"),
            "{}",
            r.text()
        );
    }
    // bob may send; carol is unknown to the api-key plugin.
    let ok = post(
        &format!("{base}/"),
        "k-bob",
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {"message": {
            "messageId": "b1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}),
    )
    .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text());
    assert!(ok.json()["result"]["task"].is_object());

    for target in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://localhost:8080/hook",
    ] {
        let bodies = [
            (
                format!("{base}/"),
                Some("1.0"),
                json!({"jsonrpc": "2.0", "id": 4, "method": "CreateTaskPushNotificationConfig",
                "params": {"taskId": "t1", "config": {"url": target}}}),
            ),
            (
                format!("{base}/"),
                None,
                json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/pushNotificationConfig/set",
                "params": {"taskId": "t1", "pushNotificationConfig": {"url": target}}}),
            ),
            (
                format!("{base}/"),
                Some("1.0"),
                json!({"jsonrpc": "2.0", "id": 6, "method": "SendMessage", "params": {
                "message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
                "configuration": {"taskPushNotificationConfig": {"url": target}}}}),
            ),
            (
                format!("{base}/rest/tasks/t1/pushNotificationConfigs"),
                Some("1.0"),
                json!({"url": target}),
            ),
        ];
        for (url, version, body) in &bodies {
            let r = post(url, "k-alice", *version, body.clone()).await;
            assert_eq!(r.status.as_u16(), 403, "{target} via {body}: {}", r.text());
            assert!(
                r.text().contains("points at an internal address"),
                "{}",
                r.text()
            );
        }
    }
    // A public webhook goes on to the agent (which then answers for itself).
    let r = post(
        &format!("{base}/"),
        "k-alice",
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": 7, "method": "CreateTaskPushNotificationConfig",
               "params": {"taskId": "t1", "config": {"url": "https://hooks.example.com/a2a"}}}),
    )
    .await;
    assert_ne!(r.status.as_u16(), 403, "{}", r.text());
    let methods: Vec<Value> = agent
        .received()
        .iter()
        .map(|r| r["method"].clone())
        .collect();
    assert_eq!(
        methods,
        json!(["SendMessage", "CreateTaskPushNotificationConfig"])
            .as_array()
            .cloned()
            .unwrap_or_default(),
        "only the allowed calls reached the agent"
    );
    let denied = audit(&gw)
        .iter()
        .filter(|r| r["decision"] == "deny")
        .count();
    assert_eq!(denied, 3 + 5 * 4);
}

#[tokio::test]
async fn a_malformed_card_and_garbage_bodies_get_clear_errors() {
    // An "agent" whose card is not JSON: a tiny HTTP server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "{\"name\": \"broken\", \"supportedInterfaces\": [";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let agent = Agent::start(false);
    let gw = gateway(&[("broken", port), ("echo", agent.port)], "");
    let r = crate::support::get_with(
        &gw.url("/agents/broken/.well-known/agent-card.json"),
        &[("x-api-key", "k-alice")],
    )
    .await;
    assert!(
        r.text().contains("the agent's card is malformed"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("127.0.0.1"), "no internal address leaks");
    assert!(gw.log().contains("agent's card is malformed"));
    // Garbage to a real agent: no operation to authorise, so refused (fail-closed) with the
    // JSON-RPC error a server gives; the gateway stays up.
    for body in ["{not json", "[]", "\"just a string\""] {
        let r = send(
            Request::post(gw.url("/agents/echo/"))
                .header("content-type", "application/json")
                .header("x-api-key", "k-alice")
                .header("a2a-version", "1.0")
                .body(Full::new(Bytes::from(body)))
                .expect("request"),
        )
        .await;
        assert_eq!(r.status.as_u16(), 200, "{body}: {} {}", r.status, r.text());
        let want = if body.starts_with('{') {
            -32700
        } else {
            -32600
        };
        assert_eq!(r.json()["error"]["code"], want, "{body}: {}", r.text());
    }
    let ok = post(
        &gw.url("/agents/echo/"),
        "k-alice",
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
            "messageId": "m", "role": "ROLE_USER", "parts": [{"text": "still fine"}]}}}),
    )
    .await;
    assert_eq!(ok.status.as_u16(), 200);
}

// ---------------------------------------------------------------------------------------------
// gRPC binding, unclassified requests, bounded metrics

/// One agent behind the gateway over HTTP (`/agents/echo`) and gRPC (routes for both gRPC
/// services, to the agent's h2c port), both chains `api-key` then `a2a` with `a2a_config`. The
/// HTTP route's `a2a` names the gateway as the gRPC address; the gRPC routes' `a2a` reads no
/// response bodies (`rewrite_cards = false`). Admin on its own port (token `t`).
struct GrpcSetup {
    gw: Gateway,
    admin: u16,
}

fn grpc_gateway(agent: &Agent, a2a_config: &str) -> GrpcSetup {
    let port = free_port();
    let admin = free_port();
    let mut toml = format!(
        "[[listeners]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n"
    );
    toml.push_str(&plugins_toml(&[
        ("api-key", ""),
        ("a2a", "capabilities = { metrics = true }"),
    ]));
    let chain = |extra: &str| {
        format!(
            "chain = [\n\
             {{ plugin = \"api-key\", config = {{ keys = {{ \"k-alice\" = \"alice\", \"k-bob\" = \"bob\" }} }} }},\n\
             {{ plugin = \"a2a\", config = {{ public_prefix = \"/agents/echo\" {extra} {a2a_config} }} }},\n]\n"
        )
    };
    toml.push_str(&format!(
        "[upstreams.echo]\nendpoints = [\"http://127.0.0.1:{http}\"]\n\
         [upstreams.echo-grpc]\nendpoints = [\"http://127.0.0.1:{grpc}\"]\nprotocol = \"http2\"\n\
         [[routes]]\nname = \"echo-grpc\"\nmatch = {{ path_prefix = \"/lf.a2a.v1.A2AService\" }}\nupstream = \"echo-grpc\"\n{c1}\
         [[routes]]\nname = \"echo-grpc-v03\"\nmatch = {{ path_prefix = \"/a2a.v1.A2AService\" }}\nupstream = \"echo-grpc\"\n{c1}\
         [[routes]]\nname = \"echo\"\nmatch = {{ path_prefix = \"/agents/echo\" }}\nrewrite = {{ prefix = \"/\" }}\nupstream = \"echo\"\n{c2}",
        http = agent.port,
        grpc = agent.grpc_port(),
        c1 = chain(", rewrite_cards = false"),
        c2 = chain(&format!(", grpc_url = \"127.0.0.1:{port}\"")),
    ));
    let gw = Gateway::start_raw(&toml, format!("127.0.0.1:{port}").parse().expect("addr"));
    GrpcSetup { gw, admin }
}

/// Runs `tests/peers/a2a_grpc_client.py` (the a2a-sdk client over gRPC) with `spec`.
fn grpc_client(spec: Value) -> Value {
    run_peer("a2a_grpc_client.py", &spec)
}

/// A protobuf length-delimited field.
fn pb(field: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u8::try_from(bytes.len()).expect("short test fields");
    [&[field << 3 | 2, len][..], bytes].concat()
}

/// A gateway refusal as gRPC: Trailers-Only with status 7 (`PERMISSION_DENIED`).
fn assert_denied(r: &crate::support::Reply) {
    assert_eq!(
        r.header("grpc-status").as_deref(),
        Some("7"),
        "{:?}",
        r.headers
    );
}

/// A raw unary gRPC call over h2c: (HTTP status, headers, body length).
async fn raw_grpc(gw: &Gateway, path: &str, key: &str, message: &[u8]) -> crate::support::Reply {
    let len = u32::try_from(message.len()).expect("small message");
    let body = [&[0u8][..], &len.to_be_bytes(), message].concat();
    let req = Request::post(gw.url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-api-key", key)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    read(
        h2c_client()
            .request(req)
            .await
            .expect("gRPC call through weir"),
    )
    .await
}

#[test]
fn grpc_calls_are_authorised_audited_and_refused_with_grpc_statuses() {
    let agent = Agent::start_grpc(true);
    let setup = grpc_gateway(
        &agent,
        ", access = { alice = { allow = [\"*\"] }, bob = { allow = [\"GetTask\"] } }",
    );
    let gw = &setup.gw;
    let target = gw.addr.to_string();
    let card_from = gw.url("/agents/echo");
    let alice = grpc_client(
        json!({"target": target, "card_from": card_from, "key": "k-alice",
                                   "calls": [{"op": "send", "text": "hi over grpc"}]}),
    );
    let sent = &alice["results"][0];
    assert_eq!(sent["code"], "OK", "{alice}\n{}", gw.log());
    assert_eq!(sent["state"], "TASK_STATE_COMPLETED", "{alice}");
    assert_eq!(sent["text"], "echo: hi over grpc");
    let task = sent["task_id"].as_str().expect("task id");
    // bob may only get tasks.
    let bob = grpc_client(
        json!({"target": target, "card_from": card_from, "key": "k-bob",
        "calls": [{"op": "send", "text": "not allowed"}, {"op": "get", "id": task},
                  {"op": "get", "id": "no-such-task"}]}),
    );
    let (refused, got) = (&bob["results"][0], &bob["results"][1]);
    assert_eq!(refused["code"], "PERMISSION_DENIED", "{bob}");
    assert!(
        refused["details"]
            .as_str()
            .is_some_and(|d| d.contains("bob may not use SendMessage")),
        "{bob}"
    );
    assert_eq!(got["code"], "OK", "{bob}");
    assert_eq!(got["task_id"], task);
    assert_eq!(got["state"], "TASK_STATE_COMPLETED");
    // The agent's own error (a Trailers-Only answer) comes through intact.
    assert_eq!(bob["results"][2]["code"], "NOT_FOUND", "{bob}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // The refusal is Trailers-Only: HTTP 200, the status in the headers, no body.
        let msg = pb(2, &[pb(1, b"m1"), pb(5, &pb(1, b"hi"))].concat());
        let r = raw_grpc(gw, "/lf.a2a.v1.A2AService/SendMessage", "k-bob", &msg).await;
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/grpc")
        );
        assert_eq!(r.header("grpc-status").as_deref(), Some("7"));
        assert!(
            r.header("grpc-message")
                .is_some_and(|m| m.contains("bob may not use SendMessage")),
            "{:?}",
            r.headers
        );
        assert!(r.body.is_empty());
        // The v0.3 service's names map to the same operations.
        let r = raw_grpc(
            gw,
            "/a2a.v1.A2AService/TaskSubscription",
            "k-bob",
            &pb(1, b"tasks/x"),
        )
        .await;
        assert_denied(&r);
        assert!(
            r.header("grpc-message")
                .is_some_and(|m| m.contains("SubscribeToTask"))
        );
        // What is no A2A method is refused, whoever asks.
        let r = raw_grpc(gw, "/lf.a2a.v1.A2AService/Frobnicate", "k-alice", b"").await;
        assert_denied(&r);
        // A webhook at an internal address, in the protobuf body, is refused (v1.0 layout:
        // TaskPushNotificationConfig{task_id = 3, url = 4}).
        let hook = [
            pb(3, task.as_bytes()),
            pb(4, b"http://169.254.169.254/latest"),
        ]
        .concat();
        let r = raw_grpc(
            gw,
            "/lf.a2a.v1.A2AService/CreateTaskPushNotificationConfig",
            "k-alice",
            &hook,
        )
        .await;
        assert_denied(&r);
        assert!(
            r.header("grpc-message")
                .is_some_and(|m| m.contains("internal address")),
            "{:?}",
            r.headers
        );
    });

    // Only the allowed calls reached the agent.
    assert_eq!(
        agent.grpc_calls(),
        [
            "/lf.a2a.v1.A2AService/SendMessage",
            "/lf.a2a.v1.A2AService/GetTask",
            "/lf.a2a.v1.A2AService/GetTask"
        ],
        "{}",
        gw.log()
    );
    let grpc_audit: Vec<(Value, Value, Value)> = audit(gw)
        .into_iter()
        .filter(|r| r["binding"] == "GRPC")
        .map(|r| {
            (
                r["principal"].clone(),
                r["operation"].clone(),
                r["decision"].clone(),
            )
        })
        .collect();
    let expect = |p: &str, o: &str, d: &str| (json!(p), json!(o), json!(d));
    assert_eq!(
        grpc_audit,
        [
            expect("alice", "SendMessage", "allow"),
            expect("bob", "SendMessage", "deny"),
            expect("bob", "GetTask", "allow"),
            expect("bob", "GetTask", "allow"),
            expect("bob", "SendMessage", "deny"),
            expect("bob", "SubscribeToTask", "deny"),
            expect("alice", "other", "deny"),
            expect("alice", "CreateTaskPushNotificationConfig", "deny"),
        ],
        "{}",
        gw.log()
    );
}

#[test]
fn the_card_sends_grpc_clients_to_the_gateway_and_they_get_through() {
    let agent = Agent::start_grpc(false);
    let setup = grpc_gateway(&agent, "");
    let gw = &setup.gw;
    let base = gw.url("/agents/echo");
    let out = grpc_client(json!({"url": base, "key": "k-alice",
                                 "calls": [{"op": "send", "text": "found you"}, {"op": "get", "id": "$task"}]}));
    let card = out["card"].as_array().expect("card interfaces");
    let grpc: Vec<&Value> = card.iter().filter(|i| i["binding"] == "GRPC").collect();
    assert_eq!(grpc.len(), 1, "{out}");
    assert_eq!(grpc[0]["url"], gw.addr.to_string(), "{out}");
    for i in card {
        let url = i["url"].as_str().unwrap_or_default();
        assert!(
            !url.contains(&agent.port.to_string()) && !url.contains(&agent.grpc_port().to_string()),
            "no interface leads around the gateway: {out}"
        );
    }
    assert_eq!(out["dialled"], json!([gw.addr.to_string()]));
    assert_eq!(out["results"][0]["code"], "OK", "{out}\n{}", gw.log());
    assert_eq!(out["results"][0]["text"], "echo: found you");
    assert_eq!(out["results"][1]["state"], "TASK_STATE_COMPLETED", "{out}");
    assert_eq!(
        agent.grpc_calls(),
        [
            "/lf.a2a.v1.A2AService/SendMessage",
            "/lf.a2a.v1.A2AService/GetTask"
        ]
    );
    assert_eq!(
        audit(gw)
            .iter()
            .filter(|r| r["binding"] == "GRPC" && r["decision"] == "allow")
            .count(),
        2
    );

    // Without a gRPC address for the gateway, the card offers no gRPC interface at all.
    let plain = gateway(&[("echo", agent.port)], "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let card = rt
        .block_on(crate::support::get_with(
            &plain.url("/agents/echo/.well-known/agent-card.json"),
            &[("x-api-key", "k-alice")],
        ))
        .json();
    let bindings: Vec<&Value> = card["supportedInterfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|i| &i["protocolBinding"])
        .collect();
    assert_eq!(bindings, [&json!("JSONRPC"), &json!("HTTP+JSON")], "{card}");
}

#[tokio::test]
async fn encoded_and_unclassified_requests_are_refused_unless_allowed() {
    let agent = Agent::start(false);
    let gw = gateway(
        &[("echo", agent.port)],
        ", access = { alice = { allow = [\"GetTask\"] } }",
    );
    let open = Agent::start(false);
    let lax = gateway(&[("open", open.port)], ", allow_unclassified = true");
    let send =
        json!({"message": {"messageId": "e1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}});
    for path in [
        "message:send",
        "message%3Asend",
        "message%3asend",
        "Message:Send",
        "message:stream",
    ] {
        let r = post(
            &gw.url(&format!("/agents/echo/rest/{path}")),
            "k-alice",
            Some("1.0"),
            send.clone(),
        )
        .await;
        // 400 if the host refuses the spelling itself; never through.
        assert!(
            matches!(r.status.as_u16(), 400 | 403),
            "{path}: {} {}",
            r.status,
            r.text()
        );
    }
    // A batch, a method-less call, an unknown method and a GET of nothing A2A: not operations,
    // refused (JSON-RPC ones with the error a JSON-RPC server gives for what it does not serve).
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send}]);
    for (body, code) in [
        (batch, -32600),
        (
            json!({"jsonrpc": "2.0", "id": 2, "method": "x-made-up"}),
            -32601,
        ),
        (json!({"jsonrpc": "2.0", "id": 3, "params": send}), -32600),
    ] {
        let r = post(
            &gw.url("/agents/echo/"),
            "k-alice",
            Some("1.0"),
            body.clone(),
        )
        .await;
        assert_eq!(r.status.as_u16(), 200, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code, "{body}: {}", r.text());
    }
    let r = crate::support::get_with(&gw.url("/agents/echo/"), &[("x-api-key", "k-alice")]).await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());
    assert!(
        agent.received().is_empty(),
        "nothing reached the agent: {:?}",
        agent.received()
    );
    // With `allow_unclassified`, the unknown method reaches the agent (audited as `other`), but
    // a percent-encoded path is still refused.
    let r = post(
        &lax.url("/agents/open/"),
        "k-alice",
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": 3, "method": "x-made-up"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert!(
        r.text().contains("-32601"),
        "the agent's method-not-found: {}",
        r.text()
    );
    let r = post(
        &lax.url("/agents/open/rest/tasks%2Fx"),
        "k-alice",
        Some("1.0"),
        json!({}),
    )
    .await;
    assert!(matches!(r.status.as_u16(), 400 | 403), "{}", r.text());
    assert!(
        audit(&lax)
            .iter()
            .any(|a| a["operation"] == "other" && a["decision"] == "allow")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_methods_add_no_metric_series() {
    let agent = Agent::start_grpc(false);
    let setup = grpc_gateway(&agent, "");
    let gw = &setup.gw;
    let scrape = format!("http://127.0.0.1:{}/metrics", setup.admin);
    let metrics = async || {
        let r = crate::support::get_with(&scrape, &[("authorization", "Bearer t")]).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.text()
    };
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
            .collect()
    };
    let url = gw.url("/agents/echo/");
    let call = |i: usize| {
        let url = url.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": i, "method": format!("made/up/{i}")});
            let r = post(&url, "k-alice", Some("1.0"), body).await;
            // The gateway answers as a JSON-RPC server does for a method it does not serve.
            assert_eq!(r.status.as_u16(), 200, "{}", r.text());
            assert_eq!(r.json()["error"]["code"], -32601, "{}", r.text());
            assert_eq!(r.json()["id"], i);
        }
    };
    // A few first, so every series the refusals touch exists before the count.
    for i in 0..10 {
        call(i).await;
    }
    let before = series(&metrics().await);
    let mut pending = tokio::task::JoinSet::new();
    for i in 10..10_010 {
        pending.spawn(call(i));
        if pending.len() >= 16 {
            pending.join_next().await.expect("task").expect("call");
        }
    }
    while let Some(done) = pending.join_next().await {
        done.expect("call");
    }
    let text = crate::support::eventually("the 10,010 refusals counted", async || {
        let text = metrics().await;
        let other = text
            .lines()
            .find(|l| {
                l.starts_with("weir_plugin_a2a_operations_total{")
                    && l.contains("operation=\"other\"")
                    && l.contains("decision=\"deny\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        match other {
            Some(n) if n >= 10_010.0 => Ok(text),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    let after = series(&text);
    let ops: std::collections::BTreeSet<String> = after
        .iter()
        .filter(|s| s.starts_with("weir_plugin_a2a_operations_total{"))
        .filter_map(|s| {
            Some(
                s.split("operation=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    let known = [
        "SendMessage",
        "SendStreamingMessage",
        "GetTask",
        "ListTasks",
        "CancelTask",
        "SubscribeToTask",
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
        "GetExtendedAgentCard",
        "other",
    ];
    assert!(
        !ops.is_empty() && ops.iter().all(|o| known.contains(&o.as_str())),
        "{ops:?}"
    );
    assert!(!text.contains("made/up"), "no client string in the metrics");
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(
        new.len() <= 4,
        "10,000 made-up methods added {} series: {new:?}",
        new.len()
    );
    assert!(agent.received().is_empty(), "refused before the agent");
}
