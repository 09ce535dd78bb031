//! A2A through the gateway: real `a2a-sdk` agents (`tests/peers/a2a_agent.py`, spec 1.0, with
//! and without v0.3 compatibility) behind a route with the `a2a` plugin, driven by the real
//! Python (`a2a-sdk`) and JavaScript (`@a2a-js/sdk`) clients, which call whatever URL the card
//! gives them.

use crate::support::{Gateway, Peer, free_port, plugins_toml, repo_root, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::process::Command;

/// An `a2a-sdk` agent (`tests/peers/a2a_agent.py`, a [`Peer`]); killed on drop.
struct Agent(Peer);

impl std::ops::Deref for Agent {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl Agent {
    fn start(compat: bool) -> Agent {
        let extra: &[&str] = if compat { &["--compat"] } else { &[] };
        Agent(Peer::python("a2a_agent.py", free_port(), extra))
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
    let out = Command::new("python3")
        .arg(repo_root().join("tests/peers/a2a_client.py"))
        .arg(spec.to_string())
        .output()
        .expect("run the a2a-sdk client");
    assert!(
        out.status.success(),
        "a2a client failed: {}\n{}",
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
    // Garbage to a real agent: its own JSON-RPC parse error comes back; the gateway stays up.
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
        assert!(r.status.as_u16() < 500, "{body}: {} {}", r.status, r.text());
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
