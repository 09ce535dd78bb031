//! Routing by host, path, method and header; rewrites; forwarded headers; the `router` plugin.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_method_and_header() {
    let (a, b, c, d, e) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
        Backend::start("e").await,
    );
    let gw = Gateway::start(&format!(
        r#"
[upstreams.a]
endpoints = ["{}"]
[upstreams.b]
endpoints = ["{}"]
[upstreams.c]
endpoints = ["{}"]
[upstreams.d]
endpoints = ["{}"]
[upstreams.e]
endpoints = ["{}"]

[[routes]]
name = "by-header"
match = {{ path_prefix = "/api", headers = {{ x-env = "canary" }} }}
upstream = "d"

[[routes]]
name = "by-host"
match = {{ host = "*.example.com" }}
upstream = "b"

[[routes]]
name = "by-method"
match = {{ path_prefix = "/api", method = ["POST", "PUT"] }}
upstream = "c"

[[routes]]
name = "by-prefix"
match = {{ path_prefix = "/api" }}
upstream = "a"
rewrite = {{ prefix = "/v1" }}

[[routes]]
name = "exact"
match = {{ path = "/exact" }}
upstream = "e"
"#,
        a.endpoint(),
        b.endpoint(),
        c.endpoint(),
        d.endpoint(),
        e.endpoint()
    ));

    let r = get(&gw.url("/api/items?x=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-backend").as_deref(), Some("a"));
    assert_eq!(
        r.json()["path"],
        "/v1/items?x=1",
        "prefix rewrite keeps the query"
    );

    let r = get_with(&gw.url("/anything"), &[("host", "shop.example.com")]).await;
    assert_eq!(r.header("x-backend").as_deref(), Some("b"));
    assert_eq!(
        r.seen("x-forwarded-host").as_deref(),
        Some("shop.example.com")
    );

    let r = post(&gw.url("/api/items"), "{}").await;
    assert_eq!(r.header("x-backend").as_deref(), Some("c"));
    assert_eq!(r.json()["body_len"], 2);

    let r = get_with(&gw.url("/api/items"), &[("x-env", "canary")]).await;
    assert_eq!(r.header("x-backend").as_deref(), Some("d"));

    let r = get(&gw.url("/exact")).await;
    assert_eq!(r.header("x-backend").as_deref(), Some("e"));

    let r = get(&gw.url("/exact/more")).await;
    assert_eq!(r.status, 404, "exact path does not match longer paths");
    assert!(r.text().contains("no route"), "{}", r.text());

    let r = get(&gw.url("/apix")).await;
    assert_eq!(r.status, 404, "prefix matches at segment boundaries only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_headers_and_strips_hop_by_hop() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "[upstreams.a]\nendpoints = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n",
        a.endpoint()
    ));
    let r = get_with(
        &gw.url("/h"),
        &[
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-custom", "kept"),
            ("proxy-authorization", "Basic c2VjcmV0"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.seen("x-private"),
        None,
        "fields named in Connection are dropped"
    );
    assert_eq!(r.seen("keep-alive"), None);
    assert_eq!(r.seen("x-custom").as_deref(), Some("kept"));
    assert_eq!(
        r.seen("proxy-authorization"),
        None,
        "the proxy's credential is consumed"
    );
    assert_eq!(
        r.seen("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "a client that is not a trusted proxy cannot claim an address"
    );
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_endpoints() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = Gateway::start(&format!(
        "[upstreams.pair]\nendpoints = [\"{}\", \"{}\"]\nbalance = \"round-robin\"\n[[routes]]\nname = \"r\"\nupstream = \"pair\"\n",
        a.endpoint(),
        b.endpoint()
    ));
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            get(&gw.url("/"))
                .await
                .header("x-backend")
                .unwrap_or_default(),
        );
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "b").count(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_plugin_chooses_upstreams() {
    let (stable, beta, v2, blue, green) = (
        Backend::start("stable").await,
        Backend::start("beta").await,
        Backend::start("v2").await,
        Backend::start("blue").await,
        Backend::start("green").await,
    );
    let gw = Gateway::start(&format!(
        r#"
[upstreams.stable]
endpoints = ["{}"]
[upstreams.beta]
endpoints = ["{}"]
[upstreams.v2]
endpoints = ["{}"]
[upstreams.blue]
endpoints = ["{}"]
[upstreams.green]
endpoints = ["{}"]
{}
[[routes]]
name = "split"
match = {{ path_prefix = "/split" }}
upstream = "stable"
chain = [{{ plugin = "router", config = {{ split = [{{ upstream = "blue", weight = 3 }}, {{ upstream = "green", weight = 1 }}], split_key = "x-user" }} }}]

[[routes]]
name = "rules"
upstream = "stable"
chain = [{{ plugin = "router", config = {{ rules = [{{ header = "x-tenant", equals = "beta", upstream = "beta" }}, {{ path_prefix = "/v2", upstream = "v2" }}] }} }}]
"#,
        stable.endpoint(),
        beta.endpoint(),
        v2.endpoint(),
        blue.endpoint(),
        green.endpoint(),
        plugins_toml(&[("router", "")])
    ));

    let r = get(&gw.url("/x")).await;
    assert_eq!(
        r.header("x-backend").as_deref(),
        Some("stable"),
        "no rule: route's upstream"
    );
    let r = get_with(&gw.url("/x"), &[("x-tenant", "beta")]).await;
    assert_eq!(r.header("x-backend").as_deref(), Some("beta"));
    let r = get(&gw.url("/v2/things")).await;
    assert_eq!(r.header("x-backend").as_deref(), Some("v2"));
    let r = get(&gw.url("/v2beta")).await;
    assert_eq!(
        r.header("x-backend").as_deref(),
        Some("stable"),
        "router path_prefix matches at segment boundaries"
    );

    // Weighted split, sticky per user: each user always lands on the same side, and over many
    // users both sides get traffic, roughly 3:1.
    let mut blue_count = 0;
    for user in 0..200 {
        let id = format!("user-{user}");
        let first = get_with(&gw.url("/split"), &[("x-user", &id)]).await;
        let again = get_with(&gw.url("/split"), &[("x-user", &id)]).await;
        let side = first.header("x-backend").unwrap_or_default();
        assert_eq!(
            again.header("x-backend").unwrap_or_default(),
            side,
            "sticky for {id}"
        );
        assert!(side == "blue" || side == "green", "{side}");
        if side == "blue" {
            blue_count += 1;
        }
    }
    assert!(
        (110..=190).contains(&blue_count),
        "blue got {blue_count} of 200"
    );
}
