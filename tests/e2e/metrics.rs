//! The admin `/metrics` after a mix of requests (served, refused by a plugin, a plugin trap, no
//! route, an upstream down) and a reload: parsed as a Prometheus scraper parses it
//! (`prometheus-parse`), and every line checked against the text format.

use crate::support::{Backend, Gateway, free_port, get_with, plugins_toml};
use prometheus_parse::{Scrape, Value};
use std::time::{Duration, Instant};

/// Checks every line is a comment (`# HELP`/`# TYPE`) or `name{labels} value` with a valid
/// name, properly quoted labels and a number; and that every family is typed before its samples.
fn check_format(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_string()), "family typed twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                Some(
                    l.strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}")),
                ),
            ),
            None => (series, None),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad name: {line}"
        );
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.contains(*f) || typed.contains(name))
            })
            .unwrap_or(name);
        assert!(
            typed.contains(family) || typed.contains(name),
            "sample before its # TYPE: {line}"
        );
        if let Some(labels) = labels {
            // name="value" pairs, values quoted with \" and \\ escaped.
            let mut rest = labels;
            while !rest.is_empty() {
                let (key, after) = rest
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name: {line}"
                );
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
    }
}

fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_requests_failures_and_reloads() {
    let backend = Backend::start("app").await;
    let admin = free_port();
    let dead = free_port();
    let config = |tag: &str| {
        format!(
            "[admin]\naddress = \"127.0.0.1:{admin}\"\n[reload]\npoll_interval = \"50ms\"\n\
             [upstreams.app]\nendpoints = [\"{}\"]\n[upstreams.dead]\nendpoints = [\"http://127.0.0.1:{dead}\"]\n{}\
             [[routes]]\nname = \"api\"\nmatch = {{ path_prefix = \"/api\" }}\nupstream = \"app\"\nchain = [\n\
             {{ plugin = \"api-key\", config = {{ keys = {{ \"k\" = \"alice\" }} }} }},\n\
             {{ plugin = \"probe\", config = {{ tag = \"{tag}\" }} }},\n\
             {{ plugin = \"rate-limit\", config = {{ burst = 100, rate_per_second = 100 }} }},\n]\n\
             [[routes]]\nname = \"trap\"\nmatch = {{ path_prefix = \"/trap\" }}\nupstream = \"app\"\n\
             chain = [{{ plugin = \"probe\", config = {{ fail = \"trap\" }} }}]\n\
             [[routes]]\nname = \"down\"\nmatch = {{ path_prefix = \"/down\" }}\nupstream = \"dead\"\n",
            backend.endpoint(),
            plugins_toml(&[
                ("api-key", ""),
                ("probe", ""),
                ("rate-limit", "capabilities = { kv = \"rl\" }")
            ]),
        )
    };
    let port = free_port();
    let listener = format!("[[listeners]]\naddress = \"127.0.0.1:{port}\"\n");
    let gw = Gateway::start_raw(
        &format!("{listener}{}", config("one")),
        format!("127.0.0.1:{port}").parse().expect("addr"),
    );
    for _ in 0..5 {
        assert_eq!(
            get_with(&gw.url("/api/x"), &[("x-api-key", "k")])
                .await
                .status
                .as_u16(),
            200
        );
    }
    assert_eq!(get_with(&gw.url("/api/x"), &[]).await.status.as_u16(), 401);
    assert_eq!(get_with(&gw.url("/trap"), &[]).await.status.as_u16(), 500);
    assert_eq!(
        get_with(&gw.url("/nowhere"), &[]).await.status.as_u16(),
        404
    );
    assert_eq!(get_with(&gw.url("/down"), &[]).await.status.as_u16(), 502);
    // A reload.
    gw.write_config(&format!("{listener}{}", config("two")));
    crate::support::eventually("the reload to be seen", async || {
        let r = get_with(&gw.url("/api/x"), &[("x-api-key", "k")]).await;
        match r.seen("x-chain") {
            Some(tag) if tag == "two" => Ok(()),
            other => Err(format!("x-chain {other:?}")),
        }
    })
    .await;

    let text = crate::support::get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .text();
    check_format(&text);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let requests = |route, status| {
        counter(
            &scrape,
            "weir_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert!(requests("api", "200") >= 6.0, "{text}");
    assert_eq!(requests("api", "401"), 1.0);
    assert_eq!(requests("trap", "500"), 1.0);
    assert_eq!(requests("(none)", "404"), 1.0);
    assert_eq!(requests("down", "502"), 1.0);
    assert_eq!(
        counter(
            &scrape,
            "weir_upstream_requests_total",
            &[("upstream", "dead"), ("outcome", "error")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &scrape,
            "weir_plugin_hook_failures_total",
            &[("plugin", "probe"), ("kind", "trap")]
        ),
        1.0
    );
    assert!(counter(&scrape, "weir_config_reloads_total", &[]) >= 1.0);
    assert!(
        counter(
            &scrape,
            "weir_plugin_kv_calls_total",
            &[("plugin", "rate-limit"), ("outcome", "ok")]
        ) >= 6.0,
        "kv calls are counted"
    );
    assert!(
        counter(
            &scrape,
            "weir_plugin_instantiations_total",
            &[("plugin", "api-key")]
        ) >= 1.0
    );
    let latency = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "weir_request_duration_seconds" && s.labels.get("route") == Some("api")
        })
        .expect("latency histogram");
    let Value::Histogram(buckets) = &latency.value else {
        panic!("not a histogram: {latency:?}")
    };
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "buckets are cumulative"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "weir_plugin_hook_duration_seconds"
                && s.labels.get("plugin") == Some("api-key")),
        "hook latency"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_audit_logs_get_one_json_line_each() {
    let backend = Backend::start("app").await;
    let logs = tempfile::tempdir().expect("tempdir");
    let (access, audit) = (
        logs.path().join("access.log"),
        logs.path().join("audit.log"),
    );
    let gw = Gateway::start(&format!(
        "[logging]\naccess_log = {:?}\naudit_log = {:?}\n\
         access_log_fields = [\"route\", \"status\", \"principal\", \"method\", \"path\", \"upstream\", \"duration_ms\"]\n\
         [upstreams.app]\nendpoints = [\"{}\"]\n{}\
         [[routes]]\nname = \"agent\"\nupstream = \"app\"\nchain = [\n\
         {{ plugin = \"api-key\", config = {{ keys = {{ \"k\" = \"alice\" }} }} }},\n\
         {{ plugin = \"a2a\", config = {{}} }},\n]\n",
        access.display().to_string(),
        audit.display().to_string(),
        backend.endpoint(),
        plugins_toml(&[
            ("api-key", ""),
            ("a2a", "capabilities = { metrics = true }")
        ]),
    ));
    let r = crate::support::send(
        http::Request::post(gw.url("/rpc"))
            .header("x-api-key", "k")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t-9"}}"#,
            )))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(get_with(&gw.url("/x"), &[]).await.status.as_u16(), 401);
    let read = |p: &std::path::Path, n: usize| -> Vec<serde_json::Value> {
        let deadline = Instant::now() + crate::support::HANG_GUARD;
        loop {
            let lines: Vec<serde_json::Value> = std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).expect("every line is JSON"))
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} lines in {}: {lines:?}",
                p.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let access = read(&access, 2);
    assert_eq!(access.len(), 2, "{access:?}");
    assert_eq!(access[0]["route"], "agent");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["principal"], "alice");
    assert_eq!(access[0]["upstream"], "app");
    assert_eq!(access[0]["path"], "/rpc");
    assert!(access[0]["duration_ms"].as_f64().is_some());
    assert!(
        access[0].get("client").is_none(),
        "fields not listed are left out"
    );
    assert_eq!(access[1]["status"], 401);
    let audit = read(&audit, 1);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["plugin"], "a2a");
    assert_eq!(audit[0]["route"], "agent");
    assert_eq!(audit[0]["record"]["operation"], "GetTask");
    assert_eq!(audit[0]["record"]["task_id"], "t-9");
    assert_eq!(audit[0]["record"]["principal"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_labelling_by_client_input_cannot_grow_metrics_without_bound() {
    use futures_util::StreamExt;
    let backend = Backend::start("app").await;
    let admin = free_port();
    let gw = Gateway::start(&format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n{}[upstreams.app]\nendpoints = [\"{}\"]\n\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\n\
         chain = [{{ plugin = \"probe-metrics\", config = {{ count_by = \"x-anything\" }} }}]\n",
        plugins_toml(&[("probe-metrics", "capabilities = { metrics = true }")]),
        backend.endpoint()
    ));
    // An operator's plugin that makes a label of whatever a client sends: 10,000 values.
    let url = gw.url("/x");
    let sent = futures_util::stream::iter(0..10_000).map(|i| {
        let url = url.clone();
        async move {
            let r = get_with(&url, &[("x-anything", &format!("v{i}"))]).await;
            assert_eq!(r.status, 200);
        }
    });
    crate::support::hang_guard(
        "10,000 requests",
        sent.buffer_unordered(8).collect::<Vec<()>>(),
    )
    .await;
    let text = get_with(&format!("http://127.0.0.1:{admin}/metrics"), &[])
        .await
        .text();
    check_format(&text);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let series = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "weir_plugin_probe_requests_total")
        .count();
    assert_eq!(series, 1000, "the per-plugin series limit");
    let counted = counter(&scrape, "weir_plugin_probe_requests_total", &[]);
    let dropped = counter(
        &scrape,
        "weir_metrics_series_dropped_total",
        &[("plugin", "probe-metrics")],
    );
    assert_eq!(
        counted + dropped,
        10_000.0,
        "every recording counted or dropped"
    );
    assert_eq!(dropped, 9_000.0);
    assert!(
        gw.log().matches("metric dropped").count() <= 20,
        "drops logged at powers of two, not one line each"
    );
}
