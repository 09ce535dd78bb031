//! Plugins from a real OCI registry (Debian's `docker-registry` on loopback): `weir plugin push`
//! in the CNCF Wasm layout, `inspect`, a gateway running an `oci://` plugin, starting from the
//! local cache when the registry is down, a tampered blob refused by digest, htpasswd auth, a
//! moved tag swapped live, and a proxy-wasm filter pushed in the Envoy/Istio layout.

use crate::support::*;
use std::path::Path;
use std::time::Duration;

/// Runs `weir plugin ...` with its own cache directory; returns (success, stdout, stderr).
fn weir_plugin(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = weir_command()
        .arg("plugin")
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .envs(env.iter().copied())
        .output()
        .expect("run weir plugin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn push(cache: &Path, wasm: &str, reference: &str, env: &[(&str, &str)]) -> String {
    let file = plugin(wasm).display().to_string();
    let (ok, out, err) = weir_plugin(cache, &["push", &file, reference], env);
    assert!(ok, "push failed: {out}{err}");
    out.trim()
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .expect("digest printed")
}

fn gateway_config(backend: &Backend, reference: &str, extra: &str) -> String {
    format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n[plugins.probe]\npath = \"{reference}\"\n{extra}\n[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"probe\", config = {{ variant = true, tag = \"oci\" }} }}]\n",
        backend.endpoint()
    )
}

#[tokio::test]
async fn push_inspect_and_run_from_a_registry_then_from_the_cache() {
    let mut registry = Registry::start(None);
    let cache = tempfile::tempdir().expect("cache");
    let cache_env = cache.path().display().to_string();
    let reference = registry.reference("weir/probe:1.0");
    let digest = push(cache.path(), "probe", &reference, &[]);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The CNCF TAG-Runtime layout.
    let (ok, out, err) = weir_plugin(cache.path(), &["inspect", &reference], &[]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    assert_eq!(info["manifest_digest"], digest);
    assert_eq!(
        info["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        info["config_media_type"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(info["layers"][0]["media_type"], "application/wasm");
    assert_eq!(info["config"]["architecture"], "wasm");
    assert_eq!(info["config"]["os"], "wasip2");
    let exports: Vec<&str> = info["config"]["component"]["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for e in ["init", "on-request", "on-response"] {
        assert!(exports.contains(&e), "{exports:?}");
    }
    assert!(
        info["config"]["component"]["imports"]
            .as_array()
            .expect("imports")
            .iter()
            .any(|i| i == "weir:plugin/request@0.2.0")
    );
    assert_eq!(
        info["config"]["layerDigests"][0],
        info["layers"][0]["digest"]
    );
    assert_eq!(
        info["annotations"]["dev.weir.plugin.world"],
        "weir:plugin/plugin@0.2.0"
    );

    // A gateway loads it by reference and the plugin acts on requests.
    let backend = Backend::start("app").await;
    let config = gateway_config(&backend, &reference, "pull = \"always\"");
    let env = [("XDG_CACHE_HOME", cache_env.as_str())];
    let gw = Gateway::start_env(&config, &env);
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-chain").as_deref(), Some("oci"));
    assert_eq!(r.header("x-probe-variant").as_deref(), Some("a"));
    assert!(
        gw.log().contains(&digest),
        "the manifest digest is recorded:\n{}",
        gw.log()
    );
    drop(gw);

    // Registry down at restart: the gateway starts from its cache and says so.
    registry.stop();
    let gw = Gateway::start_env(&config, &env);
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.seen("x-chain").as_deref(), Some("oci"));
    assert!(
        gw.log()
            .contains("registry unreachable; using the cached plugin"),
        "{}",
        gw.log()
    );
    drop(gw);

    // Without a cache and without the registry, it is a clear configuration error.
    let empty = tempfile::tempdir().expect("cache");
    let (ok, err) = check_env(
        &config,
        &[("XDG_CACHE_HOME", &empty.path().display().to_string())],
    );
    assert!(!ok);
    assert!(
        err.contains("plugin \"probe\"") && err.contains("is not in the local cache"),
        "{err}"
    );
}

/// `weir check` with extra environment variables.
fn check_env(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{config}"),
    )
    .expect("write config");
    let out = weir_command()
        .args(["check", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("run weir check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_tampered_blob_is_refused_by_digest() {
    let registry = Registry::start(None);
    let cache = tempfile::tempdir().expect("cache");
    let reference = registry.reference("weir/tampered:1.0");
    push(cache.path(), "probe_b", &reference, &[]);
    // Corrupt the component in the registry's own storage (same digest, other bytes).
    let component = std::fs::read(plugin("probe_b")).expect("component");
    let layer = weir::plugin::digest(&component);
    let hex = layer.trim_start_matches("sha256:");
    let data = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).expect("stored blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).expect("tamper");

    let fresh = tempfile::tempdir().expect("cache");
    let (ok, _, err) = weir_plugin(fresh.path(), &["pull", &reference], &[]);
    assert!(!ok);
    assert!(
        err.contains(&format!("digest mismatch: expected {layer}"))
            && err.contains("refusing to load it"),
        "{err}"
    );
    // And a pinned manifest digest that does not match is refused too.
    let wrong = format!(
        "{}@sha256:{}",
        reference.trim_end_matches(":1.0"),
        "0".repeat(64)
    );
    let (ok, _, _) = weir_plugin(fresh.path(), &["pull", &wrong], &[]);
    assert!(!ok);
}

#[tokio::test]
async fn registry_auth_refuses_anonymous_and_accepts_credentials() {
    let registry = Registry::start(Some(("weir", "s3cret")));
    let cache = tempfile::tempdir().expect("cache");
    let reference = registry.reference("weir/private:1.0");
    let file = plugin("probe").display().to_string();
    let (ok, out, err) = weir_plugin(cache.path(), &["push", &file, &reference], &[]);
    assert!(!ok, "anonymous push must fail: {out}");
    assert!(err.contains("registry 127.0.0.1:"), "{err}");
    let creds = [
        ("WEIR_REGISTRY_USERNAME", "weir"),
        ("WEIR_REGISTRY_PASSWORD", "s3cret"),
    ];
    push(cache.path(), "probe", &reference, &creds);
    let (ok, _, _) = weir_plugin(
        tempfile::tempdir().expect("c").path(),
        &["pull", &reference],
        &[],
    );
    assert!(!ok, "anonymous pull must fail");

    // Docker's config.json works too.
    let docker = tempfile::tempdir().expect("docker config");
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("weir:s3cret");
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{auth}"}}}}}}"#,
            registry.port
        ),
    )
    .expect("write config.json");
    let docker_env = docker.path().display().to_string();
    let (ok, out, err) = weir_plugin(
        tempfile::tempdir().expect("c").path(),
        &["pull", &reference],
        &[("DOCKER_CONFIG", &docker_env)],
    );
    assert!(ok, "{out}{err}");

    // The gateway pulls with credentials.
    let backend = Backend::start("app").await;
    let gw_cache = tempfile::tempdir().expect("cache");
    let gw_cache_env = gw_cache.path().display().to_string();
    let gw = Gateway::start_env(
        &gateway_config(&backend, &reference, ""),
        &[creds[0], creds[1], ("XDG_CACHE_HOME", &gw_cache_env)],
    );
    assert_eq!(
        get(&gw.url("/x")).await.seen("x-chain").as_deref(),
        Some("oci")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_swapped_live_without_failed_requests() {
    let registry = Registry::start(None);
    let cache = tempfile::tempdir().expect("cache");
    let cache_env = cache.path().display().to_string();
    let reference = registry.reference("weir/live:stable");
    push(cache.path(), "probe", &reference, &[]);
    let backend = Backend::start("app").await;
    let gw = Gateway::start_env(
        &format!(
            "[reload]\nregistry_poll = \"300ms\"\n{}",
            gateway_config(&backend, &reference, "pull = \"always\"")
        ),
        &[("XDG_CACHE_HOME", &cache_env)],
    );
    assert_eq!(
        get(&gw.url("/x"))
            .await
            .header("x-probe-variant")
            .as_deref(),
        Some("a")
    );

    // Clients keep going while the tag moves to the other build, until it serves.
    let url = gw.url("/x");
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = tokio::spawn({
        let served = served.clone();
        async move {
            let mut failures = 0;
            loop {
                let r = get(&url).await;
                if r.status != 200 {
                    failures += 1;
                }
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if r.header("x-probe-variant").as_deref() == Some("b") {
                    return failures;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    eventually("the clients to be under way", async || {
        match served.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Err("no request yet".into()),
            _ => Ok(()),
        }
    })
    .await;
    push(cache.path(), "probe_b", &reference, &[]);
    let failures = hang_guard("the new build to serve after the tag moved", load)
        .await
        .expect("load");
    assert_eq!(failures, 0, "no request failed during the swap");
    assert!(
        gw.log().contains("registry tag moved; reloading"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn signatures_are_required_when_configured() {
    let registry = Registry::start(None);
    let cache = tempfile::tempdir().expect("cache");
    let keys = tempfile::tempdir().expect("keys");
    let keys_dir = keys.path().display().to_string();
    let (ok, out, err) = weir_plugin(cache.path(), &["keygen", &keys_dir], &[]);
    assert!(ok, "{out}{err}");
    let other = tempfile::tempdir().expect("keys");
    let (ok, _, _) = weir_plugin(
        cache.path(),
        &["keygen", &other.path().display().to_string()],
        &[],
    );
    assert!(ok);
    // Never overwrites a key.
    let (ok, _, err) = weir_plugin(cache.path(), &["keygen", &keys_dir], &[]);
    assert!(!ok && err.contains("not overwriting a key"), "{err}");

    let signed = registry.reference("weir/signed:1.0");
    let file = plugin("probe").display().to_string();
    let key = keys.path().join("weir-signing.key").display().to_string();
    let (ok, out, err) = weir_plugin(
        cache.path(),
        &["push", &file, &signed, "--sign-key", &key],
        &[],
    );
    assert!(ok && out.contains("signed "), "{out}{err}");
    let unsigned = registry.reference("weir/unsigned:1.0");
    push(cache.path(), "probe", &unsigned, &[]);
    let wrongly = registry.reference("weir/wrongly:1.0");
    push(cache.path(), "probe_b", &wrongly, &[]);
    let other_key = other.path().join("weir-signing.key").display().to_string();
    let (ok, _, err) = weir_plugin(cache.path(), &["sign", &wrongly, "--key", &other_key], &[]);
    assert!(ok, "{err}");

    let public = keys.path().join("weir-signing.pub").display().to_string();
    let verify = format!("pull = \"always\"\nverify = {{ public_key = {public:?} }}");
    let backend = Backend::start("app").await;
    let gw_cache = tempfile::tempdir().expect("cache");
    let env = [("XDG_CACHE_HOME", gw_cache.path().to_str().expect("utf-8"))];

    // Correctly signed: accepted.
    let gw = Gateway::start_env(&gateway_config(&backend, &signed, &verify), &env);
    assert_eq!(
        get(&gw.url("/x")).await.seen("x-chain").as_deref(),
        Some("oci")
    );
    assert!(
        gw.log().contains("plugin signature verified"),
        "{}",
        gw.log()
    );
    drop(gw);

    // Unsigned and wrongly signed: refused, naming the plugin and the reason.
    let (ok, err) = check_env(&gateway_config(&backend, &unsigned, &verify), &env);
    assert!(!ok);
    assert!(
        err.contains("plugin \"probe\"")
            && err.contains("is not signed, and `verify` requires a signature"),
        "{err}"
    );
    let (ok, err) = check_env(&gateway_config(&backend, &wrongly, &verify), &env);
    assert!(!ok);
    assert!(
        err.contains("the signature does not verify with the configured public key")
            && err.contains("refusing to load it"),
        "{err}"
    );
    // Without `verify`, the unsigned plugin loads.
    let (ok, err) = check_env(&gateway_config(&backend, &unsigned, ""), &env);
    assert!(ok, "{err}");
}

#[tokio::test]
async fn an_artifact_in_the_envoy_istio_layout_is_pullable() {
    // Pushed with oci-client directly, the way Istio's WasmPlugin images are laid out: an image
    // config and one `application/vnd.module.wasm.content.layer.v1+wasm` layer.
    let registry = Registry::start(None);
    let component = std::fs::read(plugin("probe")).expect("component");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reference = oci_client::Reference::with_tag(
        format!("127.0.0.1:{}", registry.port),
        "istio/probe".into(),
        "v1".into(),
    );
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let layers = [oci_client::client::ImageLayer::new(
        component.clone(),
        "application/vnd.module.wasm.content.layer.v1+wasm".into(),
        None,
    )];
    let config = oci_client::client::Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    client
        .push(
            &reference,
            &layers,
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("push the Istio-layout artifact");
    let cache = tempfile::tempdir().expect("cache");
    let (ok, out, err) = weir_plugin(
        cache.path(),
        &["pull", &registry.reference("istio/probe:v1")],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&weir::plugin::digest(&component)), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_wasm_filter_is_pushed_in_the_envoy_layout_and_runs_from_the_registry() {
    let registry = Registry::start(None);
    let cache = tempfile::tempdir().expect("cache");
    let filter = crate::proxy_wasm::rust_filter("header-filter", None);
    let reference = registry.reference("filters/headers:1.0");
    let file = filter.display().to_string();
    let (ok, out, err) = weir_plugin(cache.path(), &["push", &file, &reference], &[]);
    assert!(ok, "push failed: {out}{err}");

    // The layout Envoy and Istio pull: one module layer, the module's own bytes.
    let (ok, out, err) = weir_plugin(cache.path(), &["inspect", &reference], &[]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    let layer = &info["layers"][0];
    assert_eq!(
        info["config_media_type"],
        "application/vnd.module.wasm.config.v1+json"
    );
    assert_eq!(
        layer["media_type"], "application/vnd.module.wasm.content.layer.v1+wasm",
        "{info:#}"
    );
    let bytes = std::fs::read(&filter).expect("filter");
    assert_eq!(layer["digest"], weir::plugin::digest(&bytes), "{info:#}");

    // A gateway runs it from the registry; its kind is read from the module.
    let backend = Backend::start("app").await;
    let config = format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n[plugins.headers]\npath = \"{reference}\"\n\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"headers\" }}]\n",
        backend.endpoint()
    );
    let cache_env = cache.path().display().to_string();
    let gw = Gateway::start_env(&config, &[("XDG_CACHE_HOME", &cache_env)]);
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-user").as_deref(), Some("bench"));
    assert_eq!(r.header("x-served-by").as_deref(), Some("weir"));
}
