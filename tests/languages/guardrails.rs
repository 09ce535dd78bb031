//! The custom guardrail examples (`examples/guardrails/`): `employee-id` in Python blocks
//! requests carrying an employee id, `project-code` in JavaScript redacts project code names.
//! Each is built with `weir plugin build` and chained on one route of a real gateway, in the
//! order an operator puts them after the built-in `guardrails` plugin, in front of the echo
//! backend (which answers with the body it received). Then each example's own `smoke.toml`
//! runs through `weir plugin test`, so the examples' documented checks cannot rot.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

fn example_dir(dir: &str) -> PathBuf {
    repo_root().join("examples/guardrails").join(dir)
}

fn succeeded(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `weir plugin build DIR`; returns the component it wrote.
fn build(dir: &Path, name: &str) -> PathBuf {
    let out = weir_command()
        .args(["plugin", "build"])
        .arg(dir)
        .output()
        .expect("run weir plugin build");
    succeeded(&format!("weir plugin build {}", dir.display()), &out);
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(wasm.exists(), "{} not written", wasm.display());
    wasm
}

/// `weir plugin test DIR`: every case of the example's `smoke.toml` passes.
fn smoke(dir: &Path, name: &str) {
    let out = weir_command()
        .args(["plugin", "test"])
        .arg(dir)
        .output()
        .expect("run weir plugin test");
    let stdout = succeeded(&format!("weir plugin test {}", dir.display()), &out);
    let cases = std::fs::read_to_string(dir.join("smoke.toml"))
        .expect("smoke.toml")
        .matches("[[case]]")
        .count();
    assert!(
        stdout.contains(&format!("{name}: {cases} smoke cases passed")),
        "{stdout}"
    );
}

async fn post_json(url: &str, body: &str) -> Reply {
    send(
        http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

/// A chat request whose one user message is `content` (JSON-escaped by serde, so the test's
/// strings are what the plugins decode).
fn chat(content: &str) -> String {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]}).to_string()
}

/// The `guardrail-audit {...}` records in the gateway's log, each with the log line's
/// `plugin` field (the host adds it after the message).
fn audit_records(log: &str) -> Vec<(Value, String)> {
    log.lines()
        .filter_map(|l| {
            let start = l.find("guardrail-audit {")? + "guardrail-audit ".len();
            // The record is one JSON object; the log line adds fields after it.
            let record = serde_json::Deserializer::from_str(&l[start..])
                .into_iter::<Value>()
                .next()?
                .ok()?;
            let plugin = l.split("plugin=\"").nth(1)?.split('"').next()?.to_string();
            Some((record, plugin))
        })
        .collect()
}

/// The message of a refusal must name the detector and never echo what it matched.
fn assert_names_detector_only(r: &Reply, message: &Value, secret: &str) {
    let message = message.as_str().unwrap_or_else(|| panic!("{}", r.text()));
    assert!(message.contains("'employee-id'"), "{message}");
    assert!(!r.text().contains(secret), "{}", r.text());
}

#[tokio::test]
async fn custom_guardrails_in_python_and_js_block_and_redact_on_one_chain() {
    let employee = example_dir("python-employee-id");
    let project = example_dir("js-project-code");
    let employee_wasm = build(&employee, "employee-id");
    let project_wasm = build(&project, "project-code");

    let backend = Backend::start("app").await;
    let logs = tempfile::tempdir().expect("tempdir");
    let audit_log = logs.path().join("audit.log");
    // `/v1`: the examples' chain, as the README puts it after `guardrails`. `/globex`: the same
    // Python plugin with another prefix, so the pattern comes from the config.
    let gw = Gateway::start(&format!(
        "[logging]\naudit_log = {audit:?}\n\
         [upstreams.app]\nendpoints = [\"{endpoint}\"]\n\
         [plugins.employee-id]\npath = {employee:?}\ninstances = \"pooled\"\n\
         [plugins.project-code]\npath = {project:?}\ninstances = \"pooled\"\n\
         [plugins.guardrails]\npath = {builtin:?}\ninstances = \"pooled\"\n\
         capabilities = {{ metrics = true, outbound = [], secrets = [] }}\n\
         [[routes]]\nname = \"llm\"\nmatch = {{ path_prefix = \"/v1\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"employee-id\" }}, {{ plugin = \"project-code\" }}]\n\
         [[routes]]\nname = \"globex\"\nmatch = {{ path_prefix = \"/globex\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"employee-id\", config = {{ prefix = \"GLOBEX\" }} }}]\n\
         [[routes]]\nname = \"chained\"\nmatch = {{ path_prefix = \"/chained\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"guardrails\", config = {{ detectors = [{{ kind = \"email\", action = \"redact\" }}] }} }}, \
         {{ plugin = \"employee-id\" }}, {{ plugin = \"project-code\" }}]\n",
        audit = audit_log.display().to_string(),
        endpoint = backend.endpoint(),
        employee = employee_wasm.display().to_string(),
        project = project_wasm.display().to_string(),
        builtin = plugin("guardrails").display().to_string(),
    ));

    // An employee id: 400 in OpenAI's error shape, and the upstream never sees the request.
    let hits = backend.hits();
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("Reset the laptop of ACME-123456, please."),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let error = &r.json()["error"];
    assert_eq!(error["type"], "invalid_request_error", "{}", r.text());
    assert_eq!(error["code"], "guardrail_blocked", "{}", r.text());
    assert!(error["param"].is_null(), "{}", r.text());
    assert_names_detector_only(&r, &error["message"], "123456");
    assert_eq!(backend.hits(), hits, "the upstream saw a blocked request");

    // Anthropic's Messages API gets Anthropic's shape.
    let r = post_json(&gw.url("/v1/messages"), &chat("I am ACME-654321")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["type"], "error", "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_names_detector_only(&r, &r.json()["error"]["message"], "654321");

    // Seven digits are not an id; nothing else matches either: the body arrives untouched.
    let seven = chat("Ticket ACME-1234567 is closed.");
    let r = post_json(&gw.url("/v1/chat/completions"), &seven).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], seven.as_str());

    // Project codes arrive as `[project]`, each of them; five letters are not a code.
    let codes = chat("Status of PRJ-ABCD and PRJ-WXYZ? Not PRJ-ABCDE.");
    let r = post_json(&gw.url("/v1/chat/completions"), &codes).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let redacted = codes
        .replacen("PRJ-ABCD", "[project]", 1)
        .replace("PRJ-WXYZ", "[project]");
    assert!(redacted.contains("Not PRJ-ABCDE."), "{redacted}");
    assert_eq!(r.json()["body"], redacted.as_str());
    assert_eq!(
        r.seen("content-length"),
        Some(redacted.len().to_string()),
        "the host sets the new length"
    );

    // A code spelled with JSON escapes is the same code once decoded.
    let escaped = r#"{"messages":[{"role":"user","content":"PRJ-\u0041BCD"}]}"#;
    let r = post_json(&gw.url("/v1/chat/completions"), escaped).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upstream: Value = serde_json::from_str(r.json()["body"].as_str().expect("body"))
        .expect("the redacted body is still JSON");
    assert_eq!(upstream["messages"][0]["content"], "[project]");

    // Both in one request: the first plugin blocks, so the second never runs (one record).
    let hits = backend.hits();
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("ACME-111111 on PRJ-ABCD"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(backend.hits(), hits);

    // The prefix is configuration: on `/globex`, ACME ids pass and GLOBEX ids are blocked,
    // answered in plain JSON on a path of neither LLM API.
    let r = post_json(&gw.url("/globex/notes"), &chat("ACME-123456")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&gw.url("/globex/notes"), &chat("GLOBEX-123456")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["status"], 400, "{}", r.text());
    assert_names_detector_only(&r, &r.json()["error"]["message"], "123456");

    // Audit: one record per blocked request and per redacted one, in the gateway's log, never
    // with a matched value; `principal` is null, as no plugin here authenticates.
    let block = json!({"detector": "employee-id", "action": "block", "direction": "request",
                       "plugin": "employee-id", "principal": null});
    let redact = |count: u64| {
        json!({"detector": "project-code", "action": "redact", "count": count,
               "direction": "request", "plugin": "project-code", "principal": null})
    };
    let expected = vec![
        (block.clone(), "employee-id"),
        (block.clone(), "employee-id"),
        (redact(2), "project-code"),
        (redact(1), "project-code"),
        (block.clone(), "employee-id"),
        (block, "employee-id"),
    ];
    let records = eventually("6 guardrail audit records in the log", async || {
        let records = audit_records(&gw.log());
        if records.len() >= expected.len() {
            Ok(records)
        } else {
            Err(format!("{records:?}"))
        }
    })
    .await;
    let got: Vec<(Value, &str)> = records.iter().map(|(r, p)| (r.clone(), &**p)).collect();
    assert_eq!(got, expected);
    let log = gw.log();
    for line in log.lines().filter(|l| l.contains("guardrail-audit")) {
        for secret in ["123456", "654321", "111111", "PRJ-"] {
            assert!(!line.contains(secret), "{line}");
        }
    }

    // The gateway also writes them to the audit log, with the route.
    let audit = eventually("6 lines in the audit log", async || {
        let lines: Vec<Value> = std::fs::read_to_string(&audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        if lines.len() >= expected.len() {
            Ok(lines)
        } else {
            Err(format!("{lines:?}"))
        }
    })
    .await;
    let logged: Vec<(&Value, &Value, &Value)> = audit
        .iter()
        .map(|l| (&l["route"], &l["plugin"], &l["record"]))
        .collect();
    let routes = ["llm", "llm", "llm", "llm", "llm", "globex"].map(Value::from);
    let plugins: Vec<Value> = expected.iter().map(|(_, p)| Value::from(*p)).collect();
    let want: Vec<(&Value, &Value, &Value)> = routes
        .iter()
        .zip(&plugins)
        .zip(&expected)
        .map(|((route, plugin), (record, _))| (route, plugin, record))
        .collect();
    assert_eq!(logged, want);

    // After the built-in `guardrails` (here redacting e-mail addresses): each plugin of the chain
    // sees the request as the one before left it.
    let both = chat("Mail a@example.com about PRJ-ABCD");
    let r = post_json(&gw.url("/chained/v1/chat/completions"), &both).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upstream: Value = serde_json::from_str(r.json()["body"].as_str().expect("body"))
        .expect("the body is still JSON");
    assert_eq!(
        upstream["messages"][0]["content"],
        "Mail *@*******.*** about [project]"
    );
    let hits = backend.hits();
    let r = post_json(
        &gw.url("/chained/v1/chat/completions"),
        &chat("a@example.com is ACME-222222"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(backend.hits(), hits, "the upstream saw a blocked request");
    let records = eventually("the built-in plugin's records", async || {
        let n = audit_records(&gw.log())
            .iter()
            .filter(|(r, p)| p == "guardrails" && r["detector"] == "email")
            .count();
        if n == 2 { Ok(n) } else { Err(format!("{n}")) }
    })
    .await;
    assert_eq!(records, 2);

    // The examples' own smoke tests (they build again, so not while the gateway runs on them).
    drop(gw);
    smoke(&employee, "employee-id");
    smoke(&project, "project-code");
}
