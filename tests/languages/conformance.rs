//! The conformance suite: one table of behaviours, run through the real gateway against the
//! `allowlist` example plugin written in every SDK language (`examples/allowlist/`): decisions,
//! header mutations, the shared context, body access, `kv`, config refusals, a trap (a Rust
//! panic, a Python or JavaScript exception, a C `abort()`) under both `on_error` policies, and a
//! capability used without a grant. Each language builds with `weir plugin build`.

use crate::support::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Builds `examples/allowlist/<lang>` once per test binary; returns the component.
fn example(lang: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(lang.to_string())
        .or_insert_with(|| {
            let dir = repo_root().join("examples/allowlist").join(lang);
            let out = weir_command()
                .args(["plugin", "build"])
                .arg(&dir)
                .output()
                .expect("run weir plugin build");
            assert!(
                out.status.success(),
                "building the {lang} example failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            dir.join("allowlist.wasm")
        })
        .clone()
}

fn plugin_table(lang: &str, grant: bool) -> String {
    let caps = if grant {
        format!("capabilities = {{ kv = \"allowlist-{lang}\" }}\n")
    } else {
        String::new()
    };
    format!(
        "[plugins.allowlist]\npath = {:?}\ninstances = \"pooled\"\n{caps}",
        example(lang).display().to_string()
    )
}

fn entry(config: &str, on_error: &str) -> String {
    format!("{{ plugin = \"allowlist\", on_error = \"{on_error}\", config = {{ {config} }} }}")
}

fn suite_config(lang: &str, backend: &Backend) -> String {
    let routes = [
        (
            "plain",
            entry("allow = [\"alice\", \"bob\"]", "fail-closed")
                + ", { plugin = \"probe\", config = { echo_context = [\"principal\"] } }",
        ),
        (
            "count",
            entry("allow = [\"alice\"], count = true", "fail-closed"),
        ),
        (
            "body",
            entry("allow = [\"alice\"], upper_body = true", "fail-closed"),
        ),
        (
            "open",
            entry(
                "allow = [\"alice\"], header = \"x-member\", tag = \"custom\"",
                "fail-open",
            ),
        ),
    ];
    let mut s = format!(
        "[upstreams.app]\nendpoints = [\"{}\"]\n{}{}",
        backend.endpoint(),
        plugin_table(lang, true),
        plugins_toml(&[("probe", "")])
    );
    for (name, chain) in routes {
        s.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\nupstream = \"app\"\nchain = [{chain}]\n"
        ));
    }
    s
}

/// Runs the whole table against one language.
async fn conformance(lang: &str) {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&suite_config(lang, &backend));
    let user = |u: &'static str| [("x-user", u)];

    // Allowed: continue, with request mutations and the principal for later plugins.
    let r = get_with(&gw.url("/plain/x"), &user("alice")).await;
    assert_eq!(r.status, 200, "{lang}: {}", r.text());
    assert_eq!(r.seen("x-allowed-user").as_deref(), Some("alice"), "{lang}");
    assert_eq!(
        r.seen("x-ctx-principal").as_deref(),
        Some("alice"),
        "{lang}"
    );
    assert_eq!(
        r.header("x-policy").as_deref(),
        Some(lang),
        "{lang}: response hook"
    );

    // Denied and missing: a local response, which still gets the plugin's response hook.
    for headers in [&user("mallory")[..], &[]] {
        let r = get_with(&gw.url("/plain/x"), headers).await;
        assert_eq!(r.status, 403, "{lang}");
        assert_eq!(r.text(), "denied", "{lang}");
        assert_eq!(r.header("x-denied-by").as_deref(), Some(lang), "{lang}");
        assert_eq!(r.header("x-policy").as_deref(), Some(lang), "{lang}");
    }
    let before = backend.hits();

    // kv: a counter per user.
    for n in ["1", "2"] {
        let r = get_with(&gw.url("/count"), &user("alice")).await;
        assert_eq!(r.seen("x-seen").as_deref(), Some(n), "{lang}: {}", r.text());
    }
    assert_eq!(backend.hits(), before + 2);

    // Body access: buffered, replaced.
    let r = send(
        http::Request::post(gw.url("/body"))
            .header("x-user", "alice")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                "hello conformance",
            )))
            .expect("request"),
    )
    .await;
    assert_eq!(r.json()["body"], "HELLO CONFORMANCE", "{lang}");

    // Config: another header and tag.
    let r = get_with(&gw.url("/open"), &[("x-member", "alice")]).await;
    assert_eq!(r.status, 200, "{lang}");
    assert_eq!(r.header("x-policy").as_deref(), Some("custom"), "{lang}");

    // A trap: fail-closed answers 500 naming the plugin; the guest's message is in the log.
    let r = get_with(&gw.url("/plain/x"), &[("x-user", "alice"), ("x-trap", "1")]).await;
    assert_eq!(r.status, 500, "{lang}");
    assert_eq!(
        r.header("x-weir-error").as_deref(),
        Some("plugin"),
        "{lang}"
    );
    assert!(
        r.text().contains("plugin \"allowlist\""),
        "{lang}: {}",
        r.text()
    );
    // fail-open skips the plugin (its response hook too).
    let r = get_with(&gw.url("/open"), &[("x-member", "alice"), ("x-trap", "1")]).await;
    assert_eq!(r.status, 200, "{lang}");
    assert_eq!(r.header("x-policy"), None, "{lang}");
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("plugin=\"allowlist\"") && l.contains("allowlist trap requested")),
        "{lang}: the guest's message is not in the log:\n{log}"
    );

    // The instance pool recovered: later requests work.
    let r = get_with(&gw.url("/plain/x"), &user("bob")).await;
    assert_eq!(r.status, 200, "{lang}");

    // Refused configurations, located and named.
    let base = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.app]\nendpoints = [\"http://127.0.0.1:1\"]\n{}",
        plugin_table(lang, true)
    );
    let route = |config: &str| {
        format!(
            "[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{}]\n",
            entry(config, "fail-closed")
        )
    };
    let (ok, out) = check(&(base.clone() + &route("allow = []")));
    assert!(!ok, "{lang}");
    assert!(
        out.contains("route \"r\": plugin \"allowlist\": rejected its config: ")
            && out.contains("`allow` must not be empty"),
        "{lang}: {out}"
    );
    let (ok, out) = check(&(base + &route("allow = [\"a\"], bogus = 1")));
    assert!(!ok, "{lang}");
    assert!(
        out.contains("rejected its config") && out.contains("bogus"),
        "{lang}: {out}"
    );

    // The capability it uses, not granted: refused at load.
    let (ok, out) = check(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.app]\nendpoints = [\"http://127.0.0.1:1\"]\n{}{}",
        plugin_table(lang, false),
        route("allow = [\"a\"]")
    ));
    assert!(!ok, "{lang}");
    assert!(
        out.contains("plugin \"allowlist\"")
            && out.contains("imports weir:plugin/kv@0.2.0 but is not granted `kv`"),
        "{lang}: {out}"
    );
}

#[tokio::test]
async fn rust() {
    conformance("rust").await;
}

#[tokio::test]
async fn python() {
    conformance("python").await;
}

#[tokio::test]
async fn js() {
    conformance("js").await;
}

#[tokio::test]
async fn c() {
    conformance("c").await;
}
