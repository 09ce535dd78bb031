//! mTLS: a listener verifying client certificates against a CA (certificates made by Python's
//! `cryptography`, `tests/peers/make_certs.py`), the verified identity reaching plugins, the
//! `authorize` plugin deciding on it, and an upstream that itself requires a client certificate.

use crate::support::{Backend, Gateway, free_port, plugins_toml, repo_root};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn make_certs(dir: &Path) {
    let ok = Command::new("python3")
        .arg(repo_root().join("tests/peers/make_certs.py"))
        .arg(dir)
        .status()
        .expect("run make_certs.py")
        .success();
    assert!(ok, "make_certs.py failed");
}

/// An HTTPS GET with Python's `ssl` (optionally presenting `who`'s certificate).
fn get(url: &str, certs: &Path, who: Option<&str>) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/peers/tls_client.py"))
        .arg(url)
        .arg(certs.join("ca.pem"));
    if let Some(w) = who {
        cmd.arg(certs.join(format!("{w}.pem")))
            .arg(certs.join(format!("{w}.key")));
    }
    let out = cmd.output().expect("run tls_client.py");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "tls_client.py: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// Multi-threaded: the blocking Python clients must not stall the echo backend's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_and_their_identity_reaches_plugins() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let c = |f: &str| certs.path().join(f).display().to_string();
    let backend = Backend::start("app").await;

    // The inner gateway: requires a client certificate from ca.pem, and lets only alice in.
    let inner_port = free_port();
    let inner = Gateway::start_raw(
        &format!(
            "[[listeners]]\naddress = \"127.0.0.1:{inner_port}\"\n\
             tls = {{ cert = {:?}, key = {:?}, client_ca = {:?} }}\n\
             [upstreams.app]\nendpoints = [\"{}\"]\n{}\
             [[routes]]\nname = \"app\"\nupstream = \"app\"\nchain = [\n\
             {{ plugin = \"authorize\", config = {{ rules = [{{ principals = [\"alice\"], context = {{ \"tls.client.san.uri\" = [\"spiffe://example.org/*\"] }} }}] }} }},\n\
             {{ plugin = \"headers\", config = {{ request = {{ set = {{ \"x-principal\" = \"${{principal}}\", \"x-subject\" = \"${{ctx:tls.client.subject}}\", \"x-spiffe\" = \"${{ctx:tls.client.san.uri}}\" }} }} }} }},\n]\n",
            c("server.pem"),
            c("server.key"),
            c("ca.pem"),
            backend.endpoint(),
            plugins_toml(&[("authorize", ""), ("headers", "")]),
        ),
        format!("127.0.0.1:{inner_port}").parse().expect("addr"),
    );
    let url = format!("https://127.0.0.1:{inner_port}/hello");

    // No certificate, or one from another CA: the handshake fails; nothing reaches the route.
    for who in [None, Some("mallory")] {
        let r = get(&url, certs.path(), who);
        let err = r["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("CERTIFICATE")
                || err.contains("certificate")
                || err.contains("alert")
                || err.contains("reset"),
            "{who:?}: {r}"
        );
    }
    assert_eq!(backend.hits(), 0);

    // alice: verified, and her identity is the principal and context plugins see.
    let r = get(&url, certs.path(), Some("alice"));
    assert_eq!(r["status"], 200, "{r}");
    let seen: Value = serde_json::from_str(r["body"].as_str().expect("body")).expect("echo");
    assert_eq!(seen["headers"]["x-principal"], "alice");
    assert_eq!(seen["headers"]["x-spiffe"], "spiffe://example.org/alice");
    assert!(
        seen["headers"]["x-subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=alice")),
        "{seen}"
    );
    // bob has a valid certificate but the authorize rule does not admit him.
    let r = get(&url, certs.path(), Some("bob"));
    assert_eq!(r["status"], 403, "{r}");
    assert!(
        r["body"]
            .as_str()
            .is_some_and(|b| b.contains("bob may not GET /hello"))
    );
    assert_eq!(backend.hits(), 1);

    // The outer gateway reaches the inner one as alice: a client certificate toward an upstream.
    let outer = Gateway::start(&format!(
        "[upstreams.inner]\nendpoints = [\"https://127.0.0.1:{inner_port}\"]\n\
         ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n\
         [upstreams.inner-anonymous]\nendpoints = [\"https://127.0.0.1:{inner_port}\"]\nca_file = {:?}\n\
         [[routes]]\nname = \"as-alice\"\nmatch = {{ path_prefix = \"/as-alice\" }}\nupstream = \"inner\"\n\
         [[routes]]\nname = \"anonymous\"\nupstream = \"inner-anonymous\"\n",
        c("ca.pem"),
        c("alice.pem"),
        c("alice.key"),
        c("ca.pem"),
    ));
    let r = crate::support::get(&outer.url("/as-alice/x")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.seen("x-principal").as_deref(), Some("alice"));
    let r = crate::support::get(&outer.url("/x")).await;
    assert_eq!(
        r.status.as_u16(),
        502,
        "no client certificate, no connection: {}",
        r.text()
    );
    assert_eq!(backend.hits(), 2);

    // Half a client certificate is a configuration error naming the upstream.
    let (ok, out) = crate::support::check(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.x]\nendpoints = [\"https://127.0.0.1:1\"]\nclient_cert = {:?}\n\
         [[routes]]\nname = \"r\"\nupstream = \"x\"\n",
        c("alice.pem")
    ));
    assert!(!ok);
    assert!(
        out.contains("upstream \"x\": `client_cert` and `client_key` go together"),
        "{out}"
    );
    drop(inner);
}
