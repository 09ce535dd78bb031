//! What flows through `mcp-gateway` besides request and answer, end to end with the official
//! Python client, `@modelcontextprotocol/server-everything` and Python `mcp` servers: servers'
//! requests to the client and its answers (both eras), resumed streams, one resource naming
//! everywhere, subscriptions and completion, notifications and cancellation.

use crate::mcp::{McpServer, client, gateway_config, post_raw, start, strings, tools};
use crate::support::{Gateway, eventually, hang_guard};
use serde_json::{Value, json};

/// `server-everything` (`ev_`) and the Python server (`py_`) federated by one gateway.
fn ev_and_py() -> (McpServer, McpServer, Gateway) {
    let ev = McpServer::everything();
    let py = McpServer::python(&[]);
    let gw = start(&[("ev", ev.endpoint()), ("py", py.endpoint())], "");
    (ev, py, gw)
}

/// The last line of an answering client: what the servers asked it.
fn answered(out: &[Value]) -> Vec<String> {
    strings(out.last().expect("output"), "answered")
}

#[test]
fn servers_requests_are_answered_by_the_client_in_both_eras() {
    let (_ev, py, gw) = ev_and_py();
    // Legacy: sampling, elicitation and roots requests from either server reach the client
    // over the call's stream, and its answers reach the server that asked.
    let out = answering_client(
        &gw,
        "legacy",
        json!([
            {"op": "call", "name": "ev_trigger-sampling-request",
             "args": {"prompt": "hello weir", "maxTokens": 5}},
            {"op": "call", "name": "ev_trigger-elicitation-request", "args": {}},
            {"op": "call", "name": "py_confirm", "args": {"action": "deploy"}},
        ]),
    );
    assert!(
        out[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("sampled: ") && t.contains("hello weir")),
        "the client's sample came back to the tool: {}",
        out[0]
    );
    assert_eq!(out[1]["is_error"], false, "{}", out[1]);
    assert_eq!(out[2]["text"], "deploy: accept (asked in the session)");
    let asked = answered(&out);
    for method in ["sampling/createMessage", "elicitation/create"] {
        assert!(
            asked.iter().filter(|m| *m == method).count() >= 1,
            "{method} not asked: {asked:?}"
        );
    }
    // 2026-07-28: the server asks by multi-round-trip (`input_required`); the result reaches
    // the client as it is and its retry, with the answer, reaches the server.
    let out = answering_client(
        &gw,
        "2026-07-28",
        json!([
            {"op": "call", "name": "py_confirm", "args": {"action": "ship"}},
        ]),
    );
    assert_eq!(out[0]["text"], "ship: accept (state asked:ship)", "{out:?}");
    assert_eq!(answered(&out), vec!["elicitation/create"]);
    // Both rounds went to the server in its own era: no session, the headers it checks.
    let rounds: Vec<Value> = py
        .received()
        .into_iter()
        .filter(|m| m["method"] == "tools/call" && m["mcp_name"] == "confirm")
        .collect();
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    for r in &rounds {
        assert_eq!(r["session"], Value::Null, "{r}");
        assert_eq!(r["version"], "2026-07-28", "{r}");
        assert_eq!(r["mcp_method"], "tools/call", "{r}");
    }
}

/// `server-everything` asks for roots on its standalone stream (tied to no call), which the
/// gateway passes through when it federates that server alone.
#[test]
fn a_single_servers_own_requests_reach_the_client_on_the_standalone_stream() {
    let ev = McpServer::everything();
    let gw = start(&[("ev", ev.endpoint())], "");
    let out = answering_client(
        &gw,
        "legacy",
        json!([{"op": "call", "name": "ev_get-roots-list", "args": {}}]),
    );
    assert!(
        out[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("file:///weir-test-root")),
        "the client's roots reached the server: {}",
        out[0]
    );
    assert!(
        answered(&out).contains(&"roots/list".to_string()),
        "{out:?}"
    );
}

fn answering_client(gw: &Gateway, mode: &str, ops: Value) -> Vec<Value> {
    crate::mcp::client_spec(json!({
        "url": gw.url("/mcp"), "mode": mode, "answer": true, "ops": ops,
    }))
}

#[test]
fn a_stream_cut_mid_call_resumes_from_the_server_that_sent_it() {
    // The conformance fixture, whose `test_reconnection` tool closes its stream mid-call.
    let conf = crate::mcp_conformance::fixture();
    let py = McpServer::python(&[]);
    let gw = start(&[("conf", conf.endpoint()), ("py", py.endpoint())], "");
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({}),
        json!([{"op": "call", "name": "conf_test_reconnection", "args": {}}]),
    );
    assert_eq!(out[0]["text"], "Reconnection test completed", "{out:?}");
    // The same by hand: the POST's stream ends without the answer, and the last event id it
    // gave, replayed as Last-Event-ID, brings the answer from the server that sent it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = gw.url("/mcp");
        let sid = raw_session(&url).await;
        let h = [("mcp-session-id", sid.as_str()), ("mcp-protocol-version", "2025-11-25")];
        let cut = post_raw(
            &url,
            &h,
            r#"{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"conf_test_reconnection","arguments":{}}}"#,
        )
        .await;
        let text = cut.text();
        assert!(!text.contains("Reconnection test completed"), "{text}");
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .next_back()
            .unwrap_or_else(|| panic!("no event id in {text}"))
            .to_string();
        assert!(last.starts_with("conf:"), "event ids name the server: {last}");
        let answer = resume(&url, &sid, &last).await;
        assert_eq!(answer["id"], "call-1", "the client's own id: {answer}");
        assert_eq!(
            answer["result"]["content"][0]["text"],
            "Reconnection test completed"
        );
    });
}

/// GET with `Last-Event-ID`, read as it streams (the server keeps the resumed stream open)
/// until the answer to a call arrives.
async fn resume(url: &str, sid: &str, last: &str) -> Value {
    use http_body_util::BodyExt;
    let req = http::Request::get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", last)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let resp = crate::support::http1_client()
        .request(req)
        .await
        .expect("GET through weir");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body();
    let mut seen = String::new();
    loop {
        let frame = hang_guard("the resumed stream's answer", body.frame())
            .await
            .unwrap_or_else(|| panic!("the stream ended without an answer: {seen}"))
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
        let answer = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m.get("result").is_some());
        if let Some(answer) = answer {
            return answer;
        }
    }
}

/// A legacy session opened by hand; its id.
async fn raw_session(url: &str) -> String {
    let init = post_raw(
        url,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    init.header("mcp-session-id").expect("session id")
}

#[test]
fn resources_keep_one_name_everywhere_and_named_requests_reach_their_owner() {
    let (_ev, _py, gw) = ev_and_py();
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({}),
        json!([
            {"op": "call", "name": "ev_get-resource-links", "args": {"count": 2}},
            {"op": "call", "name": "ev_get-resource-reference",
             "args": {"resourceType": "Text", "resourceId": 3}},
            {"op": "prompt", "name": "ev_resource-prompt",
             "args": {"resourceType": "Text", "resourceId": "4"}},
            {"op": "complete", "prompt": "ev_completable-prompt", "arg": "department",
             "value": "Eng"},
            {"op": "subscribe", "uri": "ev+demo://resource/dynamic/text/1"},
            {"op": "unsubscribe", "uri": "ev+demo://resource/dynamic/text/1"},
        ]),
    );
    let links = uris(&out[0]);
    assert!(!links.is_empty(), "{}", out[0]);
    let mut everywhere = links.clone();
    everywhere.extend(uris(&out[1]));
    everywhere.extend(uris(&out[2]));
    assert_eq!(everywhere.len(), links.len() + 2, "{out:?}");
    for uri in &everywhere {
        assert!(uri.starts_with("ev+demo://"), "{uri} in {out:?}");
    }
    assert_eq!(out[3]["values"], json!(["Engineering"]), "{}", out[3]);
    assert_eq!(out[4]["ok"], true, "{}", out[4]);
    assert_eq!(out[5]["ok"], true, "{}", out[5]);
    // Every name a tool or prompt handed out can be read back through the gateway.
    let reads: Vec<Value> = everywhere
        .iter()
        .map(|u| json!({"op": "read", "uri": u}))
        .collect();
    let read = client(&gw.url("/mcp"), "legacy", json!({}), Value::Array(reads));
    for (uri, r) in everywhere.iter().zip(&read) {
        assert_eq!(r["uris"], json!([uri]), "reading {uri}: {r}");
    }
}

fn uris(v: &Value) -> Vec<String> {
    strings(v, "uris")
}

#[test]
fn a_single_servers_notifications_reach_the_client_with_names_mapped() {
    let ev = McpServer::everything();
    let gw = start(&[("ev", ev.endpoint())], "");
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({}),
        json!([
            {"op": "subscribe", "uri": "ev+demo://resource/dynamic/text/1"},
            {"op": "call", "name": "ev_toggle-subscriber-updates", "args": {}},
            {"op": "notification", "method": "notifications/resources/updated"},
        ]),
    );
    assert_eq!(
        out[2]["params"]["uri"], "ev+demo://resource/dynamic/text/1",
        "{out:?}"
    );
    drop(gw);
    let py = McpServer::python(&[]);
    let gw = start(&[("py", py.endpoint())], "");
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({}),
        json!([
            {"op": "list_tools"},
            {"op": "call", "name": "py_grow", "args": {}},
            {"op": "notification", "method": "notifications/tools/list_changed"},
            {"op": "list_tools"},
        ]),
    );
    assert!(!tools(&out[0]).contains(&"py_grown".to_string()), "{out:?}");
    assert_eq!(out[1]["text"], "grew");
    assert!(tools(&out[3]).contains(&"py_grown".to_string()), "{out:?}");
    // 2026-07-28: the same change reaches a `subscriptions/listen` stream, routed to the server
    // in its era; the filter's resource URIs are the server's own on the way there and public
    // again in the acknowledgement.
    let out = client(
        &gw.url("/mcp"),
        "2026-07-28",
        json!({}),
        json!([{"op": "listen", "tools": true, "resources": ["py+data://greeting"],
                "call": "py_grow", "args": {}}]),
    );
    assert_eq!(out[0]["event"], "ToolsListChanged", "{out:?}");
    assert_eq!(
        out[0]["honored"]["resourceSubscriptions"],
        json!(["py+data://greeting"]),
        "{out:?}"
    );
    let listen = py
        .received()
        .into_iter()
        .find(|m| m["method"] == "subscriptions/listen")
        .expect("the listen request reached the server");
    assert_eq!(listen["session"], Value::Null, "{listen}");
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_on_its_server_under_the_id_it_got_there() {
    let py = McpServer::python(&[]);
    let gw = Gateway::start_env(
        &gateway_config(&[("py", py.endpoint())], "", ""),
        &[("WEIR_TEST_PY_TOKEN", "server-secret")],
    );
    let url = gw.url("/mcp");
    let sid = raw_session(&url).await;
    let headers = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let (u, s) = (url.clone(), sid.clone());
    let call = tokio::spawn(async move {
        let h = [
            ("mcp-session-id", s.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        post_raw(
            &u,
            &h,
            r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"py_slow","arguments":{"steps":600}}}"#,
        )
        .await
    });
    let upstream_id = eventually("the call to reach the server", async || {
        py.received()
            .into_iter()
            .find(|m| m["method"] == "tools/call" && m["name"] == "slow")
            .map(|m| m["id"].clone())
            .ok_or_else(|| format!("{:?}", py.received()))
    })
    .await;
    assert_ne!(upstream_id, json!(42), "the server sees the gateway's id");
    let r = post_raw(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":42,"reason":"changed my mind"}}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 202);
    let cancelled = py
        .received()
        .into_iter()
        .find(|m| m["method"] == "notifications/cancelled")
        .expect("the cancellation reached the server");
    assert_eq!(cancelled["request_id"], upstream_id);
    call.abort();
}

/// The JSON-RPC answer in a reply, JSON or SSE.
fn answer_of(r: &crate::support::Reply) -> Value {
    let text = r.text();
    serde_json::from_str(&text).ok().unwrap_or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("no answer in {text}"))
    })
}

#[tokio::test]
async fn a_servers_tasks_are_named_for_it_and_followed_there() {
    let ev = McpServer::everything();
    let py = McpServer::python(&[]);
    let gw = Gateway::start_env(
        &gateway_config(&[("ev", ev.endpoint()), ("py", py.endpoint())], "", ""),
        &[("WEIR_TEST_PY_TOKEN", "server-secret")],
    );
    let url = gw.url("/mcp");
    let sid = raw_session(&url).await;
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let rpc = |id: u32, method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    };
    let created = answer_of(
        &post_raw(
            &url,
            &h,
            rpc(
                2,
                "tools/call",
                json!({"name": "ev_simulate-research-query", "arguments": {"topic": "weirs"},
                       "task": {"ttl": 60000}}),
            ),
        )
        .await,
    );
    let task = created["result"]["task"]["taskId"].clone();
    assert!(
        task.as_str().is_some_and(|t| t.starts_with("weir:k:ev:")),
        "the task id names its server: {created}"
    );
    let done = eventually("the task to complete", async || {
        let got =
            answer_of(&post_raw(&url, &h, rpc(3, "tasks/get", json!({"taskId": task}))).await);
        match got["result"]["status"].as_str() {
            Some("completed") => Ok(got),
            _ => Err(got.to_string()),
        }
    })
    .await;
    assert_eq!(done["result"]["taskId"], task, "{done}");
    let result =
        answer_of(&post_raw(&url, &h, rpc(4, "tasks/result", json!({"taskId": task}))).await);
    assert_eq!(result["id"], 4, "{result}");
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("weirs"),
        "the task's result came from its server: {result}"
    );
    let listed = answer_of(&post_raw(&url, &h, rpc(5, "tasks/list", json!({}))).await);
    let ids: Vec<&Value> = listed["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|t| &t["taskId"])
        .collect();
    assert!(ids.contains(&&task), "{listed}");
    let unknown =
        answer_of(&post_raw(&url, &h, rpc(6, "tasks/get", json!({"taskId": "not-ours"}))).await);
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}

#[test]
fn servers_of_either_era_serve_clients_of_either_era() {
    // `server-everything` speaks only the legacy era; `new` only 2026-07-28 (the Python SDK's
    // modern side, with its legacy side refused).
    let ev = McpServer::everything();
    let new = McpServer::python(&["--modern-only"]);
    let gw = start(&[("ev", ev.endpoint()), ("new", new.endpoint())], "");
    for mode in ["legacy", "2026-07-28"] {
        let out = client(
            &gw.url("/mcp"),
            mode,
            json!({}),
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "ev_echo", "args": {"message": "hi"}},
                {"op": "call", "name": "new_add", "args": {"a": 2, "b": 3}},
            ]),
        );
        let listed = tools(&out[0]);
        for name in ["ev_echo", "new_add"] {
            assert!(listed.contains(&name.to_string()), "{mode}: {listed:?}");
        }
        assert!(
            out[1]["text"].as_str().is_some_and(|t| t.contains("hi")),
            "{mode}: {}",
            out[1]
        );
        assert_eq!(out[2]["text"], "5", "{mode}: {}", out[2]);
    }
    // What only a modern client can do, a legacy one is told plainly.
    let out = client(
        &gw.url("/mcp"),
        "legacy",
        json!({}),
        json!([{"op": "call", "name": "new_confirm", "args": {"action": "x"}}]),
    );
    assert!(
        out[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("input_required")),
        "{}",
        out[0]
    );
    // The modern-only server was spoken to in its era only: no session, its version.
    let received = new.received();
    let calls: Vec<&Value> = received
        .iter()
        .filter(|m| m["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 3, "{received:?}");
    for m in calls {
        assert_eq!(m["version"], "2026-07-28", "{m}");
        assert_eq!(m["session"], Value::Null, "{m}");
    }
}

#[test]
fn several_servers_notifications_and_requests_arrive_on_one_merged_stream() {
    let (_ev, _py, gw) = ev_and_py();
    // The client's one GET stream carries both servers' standalone streams: `py`'s
    // `list_changed`, `ev`'s resource updates, and `ev`'s own `roots/list` request, whose
    // answer must reach `ev` for its tool to finish.
    let out = answering_client(
        &gw,
        "legacy",
        // The first update proves the merged stream is up (a server drops what it has no
        // stream for); only then does `py` change its tools.
        json!([
            {"op": "subscribe", "uri": "ev+demo://resource/dynamic/text/1"},
            {"op": "call", "name": "ev_toggle-subscriber-updates", "args": {}},
            {"op": "notification", "method": "notifications/resources/updated"},
            {"op": "call", "name": "py_grow", "args": {}},
            {"op": "notification", "method": "notifications/tools/list_changed"},
            {"op": "call", "name": "ev_get-roots-list", "args": {}},
            {"op": "list_tools"},
        ]),
    );
    assert_eq!(
        out[2]["params"]["uri"], "ev+demo://resource/dynamic/text/1",
        "{out:?}"
    );
    assert_eq!(out[3]["text"], "grew", "{out:?}");
    assert!(
        out[4].get("params").is_some(),
        "list_changed from py: {out:?}"
    );
    assert!(
        out[5]["text"]
            .as_str()
            .is_some_and(|t| t.contains("file:///weir-test-root")),
        "ev's roots request on the merged stream was answered: {}",
        out[5]
    );
    assert!(tools(&out[6]).contains(&"py_grown".to_string()), "{out:?}");
    assert!(
        answered(&out).contains(&"roots/list".to_string()),
        "{out:?}"
    );
}
