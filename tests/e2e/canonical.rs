//! One canonical view of every request (issue 18): a differential table of spellings of a
//! protected path, sent over a raw socket, through the router (a protected `/admin` route
//! beside an open catch-all) and the `authorize` plugin (paths allowed by glob). Each spelling
//! gets its plain form's decision or 400, never another allow; what the upstream receives is
//! what was decided on.

use crate::support::{Backend, Gateway, RawReply, plugins_toml, raw_http};

/// Spellings of `/admin/x` that backends commonly read as `/admin/x`: they must reach the
/// protected route (401 without the key; with it, the backend gets exactly `/admin/x`).
const SAME_AS_ADMIN: &[&str] = &[
    "/admin/x",
    "/%61dmin/x",
    "/a%64min/x",
    "/ad%6Din/x",
    "/adm%69n/x",
    "/admi%6e/x",
    "/%61%64%6d%69%6e/x",
    "/%61%64%6D%69%6E/x",
    "/open/../admin/x",
    "/open/%2e%2e/admin/x",
    "/open/%2E%2E/admin/x",
    "/open/.%2e/admin/x",
    "/open/%2e./admin/x",
    "/./admin/x",
    "/%2e/admin/x",
    "//admin/x",
    "///admin//x",
    "/admin/./x",
    "/admin/y/../x",
    "/../admin/x",
];

/// Spellings that backends read in different ways: refused (400) by default.
const AMBIGUOUS: &[&str] = &[
    "/open/..%2fadmin/x",
    "/open/..%2Fadmin/x",
    "/open/%2e%2e%2fadmin/x",
    "/admin%2fx",
    "/open/..%5cadmin/x",
    "/open/..\\admin/x",
    "/admin\\x",
    "/admin;jsessionid=1/x",
    "/admin%3bx/x",
    "/admin%00/x",
    "/open/%c0%ae%c0%ae/admin/x",
    "/open/%e0%80%ae%e0%80%ae/admin/x",
    "/admin%2",
    "/adm%zzin/x",
];

/// Spellings that are other paths once decoded once (as every backend decodes): double
/// encoding stays encoded. They may be served by the open route, and the upstream must then
/// not be told `/admin`.
const OTHER_PATHS: &[&str] = &["/%2561dmin/x", "/open/%252e%252e/admin/x", "/%252fadmin/x"];

fn config(backend: &Backend) -> String {
    format!(
        "{}[upstreams.app]\nendpoints = [\"{}\"]\n\
         [[routes]]\nname = \"admin\"\nmatch = {{ path_prefix = \"/admin\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"api-key\", config = {{ keys = {{ \"k-ops\" = \"ops\" }} }} }}]\n\
         [[routes]]\nname = \"reports\"\nmatch = {{ host = \"reports.example\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"authorize\", config = {{ rules = [{{ paths = [\"/public/*\"] }}] }} }}]\n\
         [[routes]]\nname = \"open\"\nupstream = \"app\"\n",
        plugins_toml(&[("api-key", ""), ("authorize", "")]),
        backend.endpoint()
    )
}

async fn send(gw: &Gateway, target: &str, host: &str, key: Option<&str>) -> RawReply {
    let key = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    let request =
        format!("GET {target} HTTP/1.1\r\nhost: {host}\r\n{key}connection: close\r\n\r\n");
    raw_http(gw.addr, request.as_bytes()).await
}

/// What a lenient backend makes of a path it receives: every escape decoded (once), `\` read
/// as `/`, `;` parameters dropped, dot segments removed, empty segments merged.
fn lenient(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let bytes = path.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                decoded.push(v);
                i += 3;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut kept: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    format!("/{}", kept.join("/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_protected_path_reaches_the_backend_without_the_key() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&config(&backend));
    for target in SAME_AS_ADMIN {
        let r = send(&gw, target, "gw.example", None).await;
        assert_eq!(
            r.status, 401,
            "{target}: the protected route, no key: {r:?}"
        );
        let r = send(&gw, target, "gw.example", Some("k-ops")).await;
        assert_eq!(r.status, 200, "{target} with the key: {r:?}");
        assert_eq!(
            r.json()["path"],
            "/admin/x",
            "{target}: the upstream gets the canonical path the route matched"
        );
    }
    for target in AMBIGUOUS {
        let r = send(&gw, target, "gw.example", None).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
        assert!(r.body.starts_with("weir: "), "{target}: {}", r.body);
    }
    for target in OTHER_PATHS {
        let r = send(&gw, target, "gw.example", None).await;
        assert_eq!(r.status, 200, "{target}: the open route: {r:?}");
        let seen = r.json()["path"].as_str().unwrap_or_default().to_string();
        assert!(
            !lenient(&seen).starts_with("/admin"),
            "{target}: the backend read {seen:?} as {}",
            lenient(&seen)
        );
    }
    // The lenient reading is itself checked: it would have let these through.
    assert_eq!(lenient("/open/..%2fadmin/x"), "/admin/x");
    assert_eq!(lenient("/admin;jsessionid=1/x"), "/admin/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_rule_decides_on_the_path_the_upstream_gets() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&config(&backend));
    let r = send(&gw, "/public/a", "reports.example", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    for target in [
        "/private/x",
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/./../private/x",
        "/public//../private/x",
        "/%70ublic/../private/x",
    ] {
        let r = send(&gw, target, "reports.example", None).await;
        assert_eq!(r.status, 403, "{target}: authorize sees /private/x: {r:?}");
    }
    for target in ["/public/..%2fprivate/x", "/public/..\\private/x"] {
        let r = send(&gw, target, "reports.example", None).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
    }
    let r = send(&gw, "/%70ublic/%61", "reports.example", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["path"], "/public/a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_match_in_their_canonical_form() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&config(&backend));
    for host in [
        "reports.example",
        "REPORTS.example",
        "reports.example.",
        "Reports.Example.:80",
    ] {
        let r = send(&gw, "/private/x", host, None).await;
        assert_eq!(r.status, 403, "{host}: the reports route: {r:?}");
    }
    let r = send(&gw, "/public/a", "Reports.Example.:80", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["headers"]["x-forwarded-host"],
        "reports.example",
        "plugins and the upstream see the canonical host"
    );
    let r = send(&gw, "/public/a", "reports..example", None).await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_options_keep_or_decode_what_the_defaults_refuse() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&format!(
        "[paths]\nescaped_slash = \"keep\"\nsemicolon = \"keep\"\nbackslash = \"slash\"\n{}",
        config(&backend)
    ));
    let r = send(&gw, "/files/a%2fb", "gw.example", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["path"], "/files/a%2Fb", "kept, one spelling");
    let r = send(&gw, "/open/..%2fadmin/x", "gw.example", None).await;
    assert_eq!(
        r.json()["path"],
        "/open/..%2Fadmin/x",
        "a segment, not `..`"
    );
    let r = send(&gw, "/m;v=1/x", "gw.example", None).await;
    assert_eq!(r.json()["path"], "/m;v=1/x");
    let r = send(&gw, "/open\\..\\admin\\x", "gw.example", None).await;
    assert_eq!(r.status, 401, "read as /admin/x: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_the_canonical_target_and_the_raw_one_on_request() {
    let backend = Backend::start("app").await;
    let gw = Gateway::start(&format!(
        "{}[upstreams.app]\nendpoints = [\"{}\"]\n\
         [[routes]]\nname = \"set\"\nmatch = {{ path_prefix = \"/set\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"probe\", config = {{ set_path = \"/open/%2e%2e/admin/%61?q=%2e\" }} }}]\n\
         [[routes]]\nname = \"bad\"\nmatch = {{ path_prefix = \"/bad\" }}\nupstream = \"app\"\n\
         chain = [{{ plugin = \"probe\", config = {{ set_path = \"/a%2fb\" }} }}]\n\
         [[routes]]\nname = \"seen\"\nupstream = \"app\"\n\
         chain = [{{ plugin = \"probe\", config = {{ echo_request = true, echo_context = [\"weir.raw-target\"] }} }}]\n",
        plugins_toml(&[("probe", "")]),
        backend.endpoint()
    ));
    let r = send(&gw, "/x/../%73een/./y?a=%2e", "Gw.Example.", None).await;
    let seen = r.json();
    assert_eq!(seen["path"], "/seen/y?a=%2e", "the query is left as sent");
    assert_eq!(seen["headers"]["x-seen-path"], "/seen/y?a=%2e");
    assert_eq!(seen["headers"]["x-seen-authority"], "gw.example");
    assert_eq!(
        seen["headers"]["x-ctx-weir.raw-target"],
        "/x/../%73een/./y?a=%2e"
    );
    let r = send(&gw, "/seen/plain", "gw.example", None).await;
    assert_eq!(
        r.json()["headers"]["x-ctx-weir.raw-target"],
        "<none>",
        "set only when the spelling differed"
    );

    let r = send(&gw, "/set", "gw.example", None).await;
    assert_eq!(r.json()["headers"]["x-probe-set-path"], "ok");
    assert_eq!(
        r.json()["path"],
        "/admin/a?q=%2e",
        "a path a plugin sets is made canonical too"
    );
    let r = send(&gw, "/bad", "gw.example", None).await;
    let seen = r.json();
    assert!(
        seen["headers"]["x-probe-set-path"]
            .as_str()
            .is_some_and(|s| s.contains("InvalidPath")),
        "{seen}"
    );
    assert_eq!(seen["path"], "/bad", "the refused path was not set");
}
