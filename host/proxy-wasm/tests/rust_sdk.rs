//! A filter built with the proxy-wasm Rust SDK (crates.io `proxy-wasm`, unchanged), run by this
//! crate's host: configuration, header edits in both directions, a local response, logging, a
//! tick period, and host calls it does not serve yet answered with a status, not a trap.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use weir_proxy_wasm::{
    Configuration, Env, Filter, FilterError, FilterInstance, Outcome, SharedData, Side,
};

/// Builds `tests/proxy-wasm/rust-filter` for wasm32-unknown-unknown (once per test binary).
fn filter_bytes() -> Vec<u8> {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = BUILT.get_or_init(|| {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/proxy-wasm/rust-filter");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .current_dir(&dir)
            .status()
            .expect("cargo build of the proxy-wasm fixture");
        assert!(
            status.success(),
            "building {} failed (rustup target add wasm32-unknown-unknown)",
            dir.display()
        );
        dir.join("target/wasm32-unknown-unknown/release/rust_filter.wasm")
    });
    std::fs::read(path).expect("the built filter")
}

fn engine() -> wasmtime::Engine {
    wasmtime::Engine::default()
}

fn load(engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Filter<()>, FilterError> {
    let module = wasmtime::Module::new(engine, bytes)
        .map_err(|e| FilterError::NotAFilter(format!("not a core Wasm module: {e}")))?;
    Filter::new(module)
}

async fn instance(
    filter: &Filter<()>,
    plugin: &[u8],
    shared: &SharedData,
) -> Result<FilterInstance<()>, FilterError> {
    let config = Configuration {
        vm: Vec::new(),
        plugin: plugin.to_vec(),
        root_id: String::new(),
    };
    let env = Env {
        shared: Arc::new(shared.clone()),
        ..Env::default()
    };
    FilterInstance::new(filter, config, env, (), |_| {}).await
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const CONFIG: &[u8] = br#"{"header": "x-proxy-wasm", "value": "rust-sdk", "deny_if": "x-deny"}"#;

#[tokio::test]
async fn a_rust_sdk_filter_edits_headers_both_ways_and_answers_locally() {
    let engine = engine();
    let filter = load(&engine, &filter_bytes()).expect("a proxy-wasm filter");
    assert_eq!(filter.abi(), "0.2.1");
    let shared = SharedData::default();
    let mut f = instance(&filter, CONFIG, &shared)
        .await
        .expect("configured");
    assert_eq!(f.tick_period_ms(), 5000);
    assert!(
        f.take_logs()
            .0
            .iter()
            .any(|(_, m)| m == "configured: header x-proxy-wasm")
    );

    let req = headers(&[(":path", "/a"), (":method", "GET"), ("x-remove-me", "1")]);
    let props = vec![("request.path".to_string(), b"/a".to_vec())];
    f.begin(Some(Box::new(props))).await.expect("begin");
    assert_eq!(
        f.headers(Side::Request, req, true).await.expect("request"),
        Outcome::Continue
    );
    assert_eq!(
        f.header_map(Side::Request).clone(),
        headers(&[
            (":path", "/a"),
            (":method", "GET"),
            ("x-path-property", "/a"),
            ("x-request-count", "1"),
            ("x-proxy-wasm", "rust-sdk"),
            ("x-headers-seen", "3")
        ])
    );
    let resp = headers(&[(":status", "200")]);
    assert_eq!(
        f.headers(Side::Response, resp, false)
            .await
            .expect("response"),
        Outcome::Continue
    );
    assert_eq!(
        f.header_map(Side::Response).clone(),
        headers(&[(":status", "200"), ("x-filtered-path", "/a")])
    );
    f.done().await.expect("done");

    // Shared data is shared: a second instance given the same store counts on.
    let mut g = instance(&filter, CONFIG, &shared)
        .await
        .expect("configured");
    let req = headers(&[(":path", "/c")]);
    g.begin(None).await.expect("begin");
    g.headers(Side::Request, req, true).await.expect("request");
    let req = g.header_map(Side::Request).clone();
    assert!(
        req.contains(&("x-request-count".into(), "2".into())),
        "{req:?}"
    );
    // No `request.path` property given: the filter reads none and sets no header.
    assert!(!req.iter().any(|(k, _)| k == "x-path-property"), "{req:?}");

    // The next request gets a new HTTP context, and a local response.
    let req = headers(&[(":path", "/b"), ("x-deny", "yes")]);
    f.begin(None).await.expect("begin");
    match f.headers(Side::Request, req, true).await.expect("request") {
        Outcome::Respond(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(r.body, b"denied\n");
            assert_eq!(r.headers, headers(&[("x-denied-by", "rust-filter")]));
        }
        other => panic!("no local response: {other:?}"),
    }
}

#[tokio::test]
async fn bad_configuration_and_non_filters_are_refused_clearly() {
    let engine = engine();
    let filter = load(&engine, &filter_bytes()).expect("a proxy-wasm filter");
    let err = instance(&filter, b"{not json", &SharedData::default())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            &err,
            FilterError::Refused { what: "plugin configuration", said: Some(s) }
                if s.starts_with("bad configuration")
        ),
        "{err}"
    );
    // A component or any module without the ABI marker is not a filter.
    let plain = wat_module();
    let err = load(&engine, &plain).err().expect("refused");
    assert!(err.to_string().contains("proxy_abi_version"), "{err}");
    let err = load(&engine, b"garbage").err().expect("refused");
    assert!(err.to_string().contains("not a core Wasm module"), "{err}");
}

/// The smallest valid core module (magic and version): no exports at all.
fn wat_module() -> Vec<u8> {
    b"\0asm\x01\0\0\0".to_vec()
}
