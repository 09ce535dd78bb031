//! The web console (`/ui` on the admin listener) in a real browser: `tests/console/console.mjs`
//! drives Debian's Chromium with Playwright against a gateway with real plugins and traffic.
//! Screenshots of every view, wide and narrow, go to `target/console-screenshots`.

use crate::llm::Provider;
use crate::mcp::McpServer;
use crate::support::{Backend, Gateway, free_port, plugin, repo_root};
use serde_json::Value;
use std::process::Command;

const TOKEN: &str = "console-test-token";

/// Where the test's peers are: the echo backend, the Python MCP server, the fake LLM provider.
struct Peers<'a> {
    backend: &'a str,
    mcp: &'a str,
    llm: &'a str,
}

/// An MCP route (alice may see two of the Python server's tools) and an LLM route (alice has a
/// budget of 1,000 tokens).
fn agent_routes(p: &Peers) -> String {
    format!(
        "[upstreams.py]\nendpoints = [\"{mcp}\"]\n[upstreams.oa]\nendpoints = [\"{llm}\"]\n\
         [plugins.mcp-gateway]\npath = {gw:?}\ncapabilities = {{ outbound = [\"py\"], kv = \"mcp\", secrets = [] }}\n\
         [plugins.mcp-policy]\npath = {policy:?}\ncapabilities = {{ metrics = true }}\n\
         [plugins.llm-gateway]\npath = {llm_gw:?}\ninstances = \"pooled\"\n\
         capabilities = {{ outbound = [\"oa\"], kv = \"llm\", secrets = [], metrics = true }}\n\
         [[routes]]\nname = \"mcp\"\nmatch = {{ path_prefix = \"/mcp\" }}\nchain = [\n\
         {{ plugin = \"api-key\", config = {{ keys = {{ \"k-alice\" = \"alice\" }} }} }},\n\
         {{ plugin = \"mcp-policy\", config = {{ rules = [{{ principals = [\"alice\"], allow = [\"py_add\", \"py_read_file\"] }}] }} }},\n\
         {{ plugin = \"mcp-gateway\", config = {{ servers = {{ py = {{ upstream = \"py\" }} }} }} }},\n]\n\
         [plugins.probe]\npath = {probe:?}\n\
         [[routes]]\nname = \"flaky\"\nmatch = {{ path_prefix = \"/flaky\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"probe\", config = {{ fail = \"trap\" }}, on_error = \"fail-open\" }}]\n\
         [[routes]]\nname = \"llm\"\nmatch = {{ path_prefix = \"/v1\" }}\nchain = [\n\
         {{ plugin = \"api-key\", config = {{ keys = {{ \"k-alice\" = \"alice\" }}, allow_bearer = true }} }},\n\
         {{ plugin = \"llm-gateway\", config = {{ providers = {{ oa = {{ upstream = \"oa\", format = \"openai\" }} }}, \
         models = {{ gpt = [{{ provider = \"oa\", model = \"m\" }}] }}, budgets = {{ alice = {{ total_tokens = 1000 }} }} }} }},\n]\n",
        mcp = p.mcp,
        llm = p.llm,
        gw = plugin("mcp-gateway").display().to_string(),
        policy = plugin("mcp-policy").display().to_string(),
        llm_gw = plugin("llm-gateway").display().to_string(),
        probe = plugin("probe").display().to_string(),
    )
}

fn config(listen: u16, admin: u16, peers: &Peers, headers_wasm: &str) -> String {
    let backend = peers.backend;
    let agents = agent_routes(peers);
    format!(
        "[[listeners]]\nname = \"main\"\naddress = \"127.0.0.1:{listen}\"\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\ntoken = \"{TOKEN}\"\n\
         [upstreams.app]\nendpoints = [\"{backend}\"]\n\
         [plugins.api-key]\npath = {api_key:?}\n\
         [plugins.headers]\npath = {headers_wasm:?}\ninstances = \"pooled\"\n\
         [plugins.guardrails]\npath = {guardrails:?}\ninstances = \"pooled\"\n\
         capabilities = {{ metrics = true, outbound = [], secrets = [] }}\n\
         [[routes]]\nname = \"app\"\nmatch = {{ path_prefix = \"/app\" }}\nupstream = \"app\"\n\
         chain = [\n\
         {{ plugin = \"api-key\", config = {{ keys = {{ \"k-alice\" = \"alice\" }} }} }},\n\
         {{ plugin = \"headers\", config = {{ response = {{ set = {{ \"x-console\" = \"yes\" }} }} }} }},\n\
         {{ plugin = \"guardrails\", config = {{ detectors = [{{ kind = \"email\", action = \"record\" }}] }} }},\n]\n{agents}",
        api_key = plugin("api-key").display().to_string(),
        guardrails = plugin("guardrails").display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_operates_the_gateway_in_a_real_browser() {
    let backend = Backend::start("app").await;
    let py = McpServer::python(&[]);
    let provider = Provider::start(&[]);
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    // The upload replaces the plugin's file: give it a copy of its own.
    let headers = dir.path().join("headers.wasm");
    std::fs::copy(plugin("headers"), &headers).expect("copy the headers plugin");
    let path = dir.path().join("weir.toml");
    let (backend_url, mcp_url, llm_url) = (backend.endpoint(), py.endpoint(), provider.endpoint());
    let peers = Peers {
        backend: &backend_url,
        mcp: &mcp_url,
        llm: &llm_url,
    };
    let good = config(listen, admin, &peers, &headers.display().to_string());
    std::fs::write(&path, &good).expect("config");
    // Line 4 is broken: the console must show the error with its line.
    let mut broken: Vec<&str> = good.lines().collect();
    broken.insert(3, "address = 8080");
    let broken_path = dir.path().join("broken.toml");
    std::fs::write(&broken_path, broken.join("\n")).expect("broken config");
    let before = std::fs::read(&headers).expect("headers");
    let addr = format!("127.0.0.1:{listen}").parse().expect("addr");
    let gw = Gateway::start_file(tempfile::tempdir().expect("tempdir"), &path, addr);
    // Some traffic for the audit view before the browser comes.
    for _ in 0..3 {
        let r = crate::support::get_with(
            &gw.url("/app/mail?to=bob@example.com"),
            &[("x-api-key", "k-alice")],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // A plugin failure for the plugins view (fail-open: the request is served).
    let r = crate::support::get(&gw.url("/flaky/x")).await;
    assert_eq!(r.status, 200);
    // Usage for the LLM view: two completions charged to alice's budget.
    for _ in 0..2 {
        let req = http::Request::post(gw.url("/v1/chat/completions"))
            .header("authorization", "Bearer k-alice")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"model":"gpt","messages":[{"role":"user","content":"hello there"}]}"#,
            )))
            .expect("request");
        let r = crate::support::send(req).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let shots = repo_root().join("target/console-screenshots");
    let tools = repo_root().join("target/guest-tools/browser/node_modules");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(repo_root().join("tests/console/console.mjs"))
            .env("MODULES", &tools)
            .env("CONSOLE", format!("http://127.0.0.1:{admin}/ui"))
            .env("TOKEN", TOKEN)
            .env("GATEWAY", format!("http://127.0.0.1:{listen}"))
            .env("API_KEY", "k-alice")
            .env("CONFIG", &path)
            .env("BROKEN", &broken_path)
            .env("PLUGIN", "headers")
            .env("HEADER", "x-console")
            .env("SCREENSHOTS", &shots)
            .env("CHROMIUM", "/usr/bin/chromium")
            .output()
            .expect("run node (installed by `cargo xtask test`)")
    });
    // Generous: only against a hang (the browser test takes well under a minute idle).
    let out = tokio::time::timeout(std::time::Duration::from_secs(600), run)
        .await
        .expect("the browser test hung")
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no summary ({e}): {stdout}"));
    assert_eq!(
        summary["views"].as_object().map(|v| v.len()),
        Some(8),
        "{summary}"
    );
    // alice sees the two tools mcp-policy allows her, not the Python server's others.
    assert_eq!(
        summary["mcp_tools"],
        serde_json::json!(["py_add", "py_read_file"]),
        "{summary}"
    );
    // Two completions of 2 + 3 tokens each (the fake provider counts words) out of 1,000.
    assert_eq!(summary["llm_remaining"], "990", "{summary}");
    assert_eq!(
        summary["origins"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
    assert!(
        summary["reload_errors"]
            .to_string()
            .contains("weir.toml:4:"),
        "{summary}"
    );
    assert_eq!(summary["screenshots"].as_array().map(Vec::len), Some(16));
    // The broken upload changed nothing on disk either.
    assert_eq!(
        std::fs::read(dir.path().join("headers.wasm")).expect("headers"),
        before
    );
    drop(gw);
}
