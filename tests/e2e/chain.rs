//! Chain semantics: order, short-circuit with earlier response hooks, shared context, bodies,
//! instance policies, and the first-party auth and header plugins.

use crate::support::*;

fn probe(cfg: &str) -> String {
    format!("{{ plugin = \"probe\", config = {{ {cfg} }} }}")
}

/// A gateway with one catch-all route `r` to `backend` whose chain is `chain` (probe entries),
/// the probe plugin configured with `settings`.
fn probe_route(backend: &Backend, settings: &str, chain: &[String]) -> Gateway {
    Gateway::start(&format!(
        "[upstreams.a]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"r\"\nupstream = \"a\"\nchain = [{}]\n",
        backend.endpoint(),
        plugins_toml(&[("probe", settings)]),
        chain.join(", ")
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_hooks_in_order_response_hooks_in_reverse() {
    let a = Backend::start("a").await;
    let gw = probe_route(
        &a,
        "",
        &[
            probe("tag = \"one\""),
            probe("tag = \"two\""),
            probe("tag = \"three\""),
        ],
    );
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-chain").as_deref(), Some("one,two,three"));
    let resp_chain: Vec<_> = r
        .headers
        .get_all("x-chain")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    assert_eq!(resp_chain, ["three", "two", "one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_circuit_skips_rest_and_runs_earlier_response_hooks() {
    let a = Backend::start("a").await;
    let gw = probe_route(
        &a,
        "",
        &[
            probe("tag = \"first\""),
            probe("tag = \"guard\", respond = 403"),
            probe("tag = \"never\""),
        ],
    );
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "answered by guard");
    assert_eq!(r.header("x-responder").as_deref(), Some("guard"));
    assert_eq!(r.header("x-backend"), None, "upstream not called");
    let resp_chain: Vec<_> = r
        .headers
        .get_all("x-chain")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    assert_eq!(
        resp_chain,
        ["guard", "first"],
        "later plugin skipped, earlier ones ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_shared_within_a_request_only() {
    let a = Backend::start("a").await;
    let gw = probe_route(
        &a,
        "instances = \"pooled\"",
        &[
            probe("set_principal = \"alice\", set_context = { tenant = \"acme\" }"),
            probe("echo_context = [\"principal\", \"tenant\"]"),
        ],
    );
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.seen("x-ctx-principal").as_deref(), Some("alice"));
    assert_eq!(r.seen("x-ctx-tenant").as_deref(), Some("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_does_not_leak_between_requests_on_pooled_instances() {
    let a = Backend::start("a").await;
    // One chain entry, so one pool: it sets a principal and an attribute on requests carrying
    // `x-probe-set`, and on every request echoes what it sees once its own setting is done.
    let gw = probe_route(
        &a,
        "instances = \"pooled\"",
        &[probe(
            "set_principal = \"alice\", set_context = { tenant = \"acme\" }, \
             set_when_header = \"x-probe-set\", echo_context = [\"principal\", \"tenant\"], \
             count = true",
        )],
    );
    let served = |r: &Reply| -> u64 {
        r.seen("x-probe-count")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no x-probe-count: {}", r.text()))
    };
    for round in 0..3 {
        let setter = get_with(&gw.url("/"), &[("x-probe-set", "1")]).await;
        assert_eq!(setter.status, 200, "{}", setter.text());
        assert_eq!(setter.seen("x-ctx-principal").as_deref(), Some("alice"));
        assert_eq!(setter.seen("x-ctx-tenant").as_deref(), Some("acme"));

        let reader = get(&gw.url("/")).await;
        assert_eq!(reader.status, 200, "{}", reader.text());
        // Pooled: the same instance served both requests (its counter went on), so a context
        // kept by the instance would show here.
        assert_eq!(
            served(&reader),
            served(&setter) + 1,
            "round {round}: the same pooled instance served the setter and the reader"
        );
        assert_eq!(
            reader.seen("x-ctx-principal").as_deref(),
            Some("<none>"),
            "round {round}: the previous request's principal leaked into the next one"
        );
        assert_eq!(
            reader.seen("x-ctx-tenant").as_deref(),
            Some("<none>"),
            "round {round}: the previous request's context attribute leaked into the next one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instances_share_nothing() {
    let a = Backend::start("a").await;
    let gw = probe_route(&a, "", &[probe("count = true")]);
    for _ in 0..3 {
        let r = get(&gw.url("/")).await;
        assert_eq!(
            r.seen("x-probe-count").as_deref(),
            Some("1"),
            "a fresh instance per request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_and_change_bodies_when_they_ask() {
    let a = Backend::start("a").await;
    let gw = probe_route(
        &a,
        "",
        &[probe("upper_body = true, response_suffix = \"<<tail\"")],
    );
    let r = post(&gw.url("/"), "hello body").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("<<tail"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(text.trim_end_matches("<<tail")).expect("json");
    assert_eq!(json["body"], "HELLO BODY");
    assert_eq!(json["body_len"], 10);
    assert_eq!(
        r.header("content-length").as_deref(),
        Some(text.len().to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_and_headers_plugins() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        r#"[upstreams.a]
endpoints = ["{}"]
{}
[[routes]]
name = "r"
upstream = "a"
chain = [
  {{ plugin = "api-key", config = {{ keys = {{ "k-1" = "alice" }}, allow_bearer = true }} }},
  {{ plugin = "headers", config = {{ request = {{ set = {{ "x-user" = "${{principal}}" }}, remove = ["x-drop"] }}, response = {{ add = {{ "x-served-by" = "weir" }} }} }} }},
]
"#,
        a.endpoint(),
        plugins_toml(&[("api-key", ""), ("headers", "instances = \"pooled\"")]),
    ));
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("ApiKey realm=\"weir\", header=\"x-api-key\"")
    );
    assert_eq!(r.json()["error"], "missing_api_key");
    assert_eq!(r.header("x-served-by"), None, "headers plugin never ran");

    let r = get_with(&gw.url("/"), &[("x-api-key", "wrong")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_api_key");

    let r = get_with(&gw.url("/"), &[("x-api-key", "k-1"), ("x-drop", "1")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-user").as_deref(), Some("alice"));
    assert_eq!(r.seen("x-api-key"), None, "key not forwarded");
    assert_eq!(r.seen("x-drop"), None);
    assert_eq!(r.header("x-served-by").as_deref(), Some("weir"));

    let r = get_with(&gw.url("/"), &[("authorization", "Bearer k-1")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-user").as_deref(), Some("alice"));
    assert_eq!(r.seen("authorization"), None, "bearer key not forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plugin_in_many_routes_with_different_config() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "[upstreams.a]\nendpoints = [\"{}\"]\n{}[[routes]]\nname = \"one\"\nmatch = {{ path_prefix = \"/one\" }}\nupstream = \"a\"\nchain = [{}]\n[[routes]]\nname = \"two\"\nupstream = \"a\"\nchain = [{}]\n",
        a.endpoint(),
        plugins_toml(&[("probe", "instances = \"pooled\"")]),
        probe("tag = \"route-one\""),
        probe("tag = \"route-two\""),
    ));
    assert_eq!(
        get(&gw.url("/one")).await.seen("x-chain").as_deref(),
        Some("route-one")
    );
    assert_eq!(
        get(&gw.url("/two")).await.seen("x-chain").as_deref(),
        Some("route-two")
    );
    let log = gw.log();
    let loads = log.matches("compiling plugin").count()
        + log.matches("loaded compiled plugin from the cache").count();
    assert_eq!(
        loads, 1,
        "compiled (or loaded from the disk cache) once:\n{log}"
    );
}
