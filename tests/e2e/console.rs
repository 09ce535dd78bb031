//! The web console (`/ui` on the admin listener) in a real browser: `tests/console/console.mjs`
//! drives Debian's Chromium with Playwright against a gateway with real plugins and traffic.
//! Screenshots of every view, wide and narrow, go to `target/console-screenshots`.

use crate::support::{Backend, Gateway, free_port, plugin, repo_root};
use serde_json::Value;
use std::process::Command;

const TOKEN: &str = "console-test-token";

fn config(listen: u16, admin: u16, backend: &str, headers_wasm: &str) -> String {
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
         {{ plugin = \"guardrails\", config = {{ detectors = [{{ kind = \"email\", action = \"record\" }}] }} }},\n]\n",
        api_key = plugin("api-key").display().to_string(),
        guardrails = plugin("guardrails").display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_operates_the_gateway_in_a_real_browser() {
    let backend = Backend::start("app").await;
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    // The upload replaces the plugin's file: give it a copy of its own.
    let headers = dir.path().join("headers.wasm");
    std::fs::copy(plugin("headers"), &headers).expect("copy the headers plugin");
    let path = dir.path().join("weir.toml");
    let good = config(
        listen,
        admin,
        &backend.endpoint(),
        &headers.display().to_string(),
    );
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
        Some(6),
        "{summary}"
    );
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
    assert_eq!(summary["screenshots"].as_array().map(Vec::len), Some(12));
    // The broken upload changed nothing on disk either.
    assert_eq!(
        std::fs::read(dir.path().join("headers.wasm")).expect("headers"),
        before
    );
    drop(gw);
}
