//! The LLM gateway end to end: the official `openai` and `anthropic` Python SDKs through `weir`
//! with the `llm-gateway` plugin to fake providers (`tests/peers/llm_provider.py`) that speak
//! the real OpenAI and Anthropic wire formats and log every request they receive.

use crate::support::{
    Gateway, Peer, Redis, free_port, plugins_toml, repo_root, send, start_example,
};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// A fake provider (`tests/peers/llm_provider.py`, a [`Peer`]); killed on drop.
pub struct Provider(Peer);

impl std::ops::Deref for Provider {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl Provider {
    pub fn start(extra: &[&str]) -> Provider {
        Provider(Peer::python("llm_provider.py", free_port(), extra))
    }
}

/// Runs `tests/peers/llm_client.py`; one result per call.
pub fn sdk(base: &str, key: &str, calls: Value) -> Vec<Value> {
    let spec = json!({"base": base, "key": key, "calls": calls});
    let out = Command::new("python3")
        .arg(repo_root().join("tests/peers/llm_client.py"))
        .arg(spec.to_string())
        .output()
        .expect("run the SDK client (pip packages openai, anthropic)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

/// `providers`: (name, format, port, request_timeout); `models`: TOML lines `name = [...]`.
pub fn config(providers: &[(&str, &str, u16, &str)], models: &str, extra: &str) -> String {
    let mut s = String::new();
    let mut table = String::new();
    let mut names = Vec::new();
    for (name, format, port, timeout) in providers {
        s.push_str(&format!(
            "[upstreams.{name}]\nendpoints = [\"http://127.0.0.1:{port}\"]\nrequest_timeout = {timeout:?}\n"
        ));
        let secret = if *format == "openai" { "OA" } else { "AN" };
        table.push_str(&format!(
            "{name} = {{ upstream = {name:?}, format = {format:?}, secret = {secret:?} }}\n"
        ));
        names.push(format!("{name:?}"));
    }
    s.push_str(&plugins_toml(&[
        ("api-key", ""),
        (
            "llm-gateway",
            &format!(
                "instances = \"pooled\"\ncapabilities = {{ outbound = [{}], secrets = [\"OA\", \"AN\"], kv = \"llm\", metrics = true }}",
                names.join(", ")
            ),
        ),
    ]));
    s.push_str(&format!(
        "[secrets]\nOA = {{ env = \"TEST_OA_KEY\" }}\nAN = {{ env = \"TEST_AN_KEY\" }}\n{extra}\n\
         [[routes]]\nname = \"llm\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
         [[routes.chain]]\nplugin = \"api-key\"\nconfig = {{ keys = {{ \"k-alice\" = \"alice\", \"k-bob\" = \"bob\" }}, allow_bearer = true }}\n\
         [[routes.chain]]\nplugin = \"llm-gateway\"\n[routes.chain.config]\nmax_request_bytes = 65536\n\
         [routes.chain.config.providers]\n{table}[routes.chain.config.models]\n{models}\n"
    ));
    s
}

pub const KEYS: &[(&str, &str)] = &[("TEST_OA_KEY", "oa-secret"), ("TEST_AN_KEY", "an-secret")];

fn start(providers: &[(&str, &str, u16, &str)], models: &str) -> Gateway {
    Gateway::start_env(&config(providers, models, ""), KEYS)
}

/// An OpenAI-format provider (`oa`, model `gpt`) and an Anthropic-format one (`an`, model
/// `claude`) behind one gateway.
fn two_providers() -> (Provider, Provider, Gateway) {
    let oa = Provider::start(&[]);
    let an = Provider::start(&[]);
    let gw = start(
        &[
            ("oa", "openai", oa.port, "10s"),
            ("an", "anthropic", an.port, "10s"),
        ],
        "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\nclaude = [{ provider = \"an\", model = \"claude-x\" }]",
    );
    (oa, an, gw)
}

/// The usage records in the gateway's log.
pub fn records(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|l| {
            let start = l.find("llm-audit {")? + "llm-audit ".len();
            let rest = &l[start..];
            // The record is one JSON object; the log line adds fields after it.
            let mut de = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            de.next()?.ok()
        })
        .collect()
}

/// Waits until the log holds at least `n` usage records (failing only if that hangs).
fn wait_records(gw: &Gateway, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + crate::support::HANG_GUARD;
    loop {
        let r = records(gw);
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} usage records: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn both_sdks_get_answers_from_both_formats_streamed_or_not_with_tools() {
    let (oa, an, gw) = two_providers();
    let mut calls = Vec::new();
    for sdk_name in ["openai", "anthropic"] {
        for model in ["gpt", "claude"] {
            for stream in [false, true] {
                for tools in [false, true] {
                    calls.push(json!({"sdk": sdk_name, "model": model, "stream": stream, "tools": tools,
                                      "prompt": if tools { "weather in Paris?" } else { "hello there" },
                                      "include_usage": true}));
                }
            }
        }
    }
    let out = sdk(&gw.url(""), "k-alice", Value::Array(calls.clone()));
    for (call, result) in calls.iter().zip(&out) {
        let what = format!("{call} -> {result}");
        assert!(result.get("error").is_none(), "{what}");
        let tools = call["tools"] == true;
        if call["sdk"] == "openai" {
            if tools {
                assert_eq!(
                    result["tool_calls"],
                    json!([["get_weather", {"city": "Paris"}]]),
                    "{what}"
                );
                assert_eq!(result["finish"], "tool_calls", "{what}");
            } else {
                assert_eq!(result["text"], "echo: hello there", "{what}");
                assert_eq!(result["finish"], "stop", "{what}");
            }
            let usage = &result["usage"];
            assert!(
                usage["prompt_tokens"].as_u64() > Some(0)
                    && usage["completion_tokens"].as_u64() > Some(0),
                "{what}"
            );
        } else {
            if tools {
                assert_eq!(
                    result["tool_uses"],
                    json!([["get_weather", {"city": "Paris"}]]),
                    "{what}"
                );
                assert_eq!(result["stop"], "tool_use", "{what}");
            } else {
                assert_eq!(result["text"], "echo: hello there", "{what}");
                assert_eq!(result["stop"], "end_turn", "{what}");
            }
            assert!(result["usage"]["output"].as_u64() > Some(0), "{what}");
        }
    }
    // Each provider got its own key in its own header, never the client's, in its own format.
    let (to_oa, to_an) = (oa.received(), an.received());
    assert_eq!((to_oa.len(), to_an.len()), (8, 8));
    for r in &to_oa {
        assert_eq!(r["authorization"], "Bearer oa-secret");
        assert_eq!(r["path"], "/v1/chat/completions");
        assert_eq!(r["model"], "gpt-4o");
        if r["stream"] == true {
            assert_eq!(r["body"]["stream_options"]["include_usage"], true);
        }
    }
    for r in &to_an {
        assert_eq!(r["x_api_key"], "an-secret");
        assert_eq!(r["authorization"], Value::Null);
        assert_eq!(r["path"], "/v1/messages");
        assert_eq!(r["model"], "claude-x");
        assert!(r["body"]["max_tokens"].as_u64().is_some());
    }
    // A usage record per request, tokens from the streams included.
    let recs = wait_records(&gw, 16);
    assert_eq!(recs.len(), 16, "{recs:#?}");
    assert!(
        recs.iter()
            .all(|r| r["principal"] == "alice" && r["usage_reported"] == true)
    );
    assert!(
        recs.iter()
            .filter(|r| r["stream"] == true)
            .all(|r| r["output_tokens"].as_u64() > Some(0))
    );
}

#[test]
fn failures_before_the_first_byte_fall_back_and_a_broken_stream_ends_in_an_error() {
    let limited = Provider::start(&["--fail", "429"]);
    let broken = Provider::start(&["--fail", "500"]);
    let slow = Provider::start(&["--delay-ms", "5000"]);
    let cut = Provider::start(&["--cut-after", "2"]);
    let oa = Provider::start(&[]);
    let an = Provider::start(&[]);
    let gw = start(
        &[
            ("limited", "openai", limited.port, "10s"),
            ("broken", "anthropic", broken.port, "10s"),
            ("slow", "openai", slow.port, "1s"),
            ("cut", "openai", cut.port, "10s"),
            ("oa", "openai", oa.port, "10s"),
            ("an", "anthropic", an.port, "10s"),
        ],
        "a = [{ provider = \"limited\", model = \"m1\" }, { provider = \"an\", model = \"m2\" }]\n\
         b = [{ provider = \"broken\", model = \"m1\" }, { provider = \"oa\", model = \"m2\" }]\n\
         c = [{ provider = \"slow\", model = \"m1\" }, { provider = \"oa\", model = \"m2\" }]\n\
         d = [{ provider = \"cut\", model = \"m1\" }, { provider = \"oa\", model = \"m2\" }]\n\
         e = [{ provider = \"limited\", model = \"m1\" }]",
    );
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "a"},
            {"sdk": "openai", "model": "a", "stream": true},
            {"sdk": "anthropic", "model": "b", "stream": true},
            {"sdk": "openai", "model": "c"},
            {"sdk": "openai", "model": "d", "stream": true, "prompt": "one two three four five"},
            {"sdk": "anthropic", "model": "d", "stream": true, "prompt": "one two three four five"},
            {"sdk": "openai", "model": "e"},
        ]),
    );
    for i in [0, 1, 3] {
        assert_eq!(out[i]["text"], "echo: hello there", "{}", out[i]);
    }
    assert_eq!(out[2]["text"], "echo: hello there", "{}", out[2]);
    // After the first byte there is no falling back: the SDKs raise on the error event.
    for i in [4, 5] {
        let err = &out[i]["error"];
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.contains("event stream broke")),
            "{}",
            out[i]
        );
    }
    assert_eq!(cut.received().len(), 2);
    assert_eq!(oa.received().len(), 2, "b and c fell back to oa; d did not");
    // No fallback left: the provider's 429 in the client's format.
    assert_eq!(out[6]["error"]["status"], 429, "{}", out[6]);
    assert_eq!(out[6]["error"]["class"], "RateLimitError");

    let recs = wait_records(&gw, 5);
    let by_model = |m: &str| -> Vec<&Value> { recs.iter().filter(|r| r["model"] == m).collect() };
    for r in by_model("a") {
        assert_eq!(r["provider"], "an");
        assert!(
            r["fallback_from"][0]
                .as_str()
                .is_some_and(|f| f.starts_with("limited: HTTP 429"))
        );
        assert_eq!(r["outcome"], "ok");
    }
    assert!(
        by_model("b")[0]["fallback_from"][0]
            .as_str()
            .is_some_and(|f| f.starts_with("broken: HTTP 500"))
    );
    assert!(
        by_model("c")[0]["fallback_from"][0]
            .as_str()
            .is_some_and(|f| f.starts_with("slow: HTTP 504")),
        "{:?}",
        by_model("c")
    );
}

#[test]
fn a_token_budget_is_shared_by_two_gateways_and_counts_streamed_usage() {
    let redis = Redis::start();
    let oa = Provider::start(&[]);
    let an = Provider::start(&[]);
    let providers = [
        ("oa", "openai", oa.port, "10s"),
        ("an", "anthropic", an.port, "10s"),
    ];
    let models = "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\nclaude = [{ provider = \"an\", model = \"claude-x\" }]";
    // "hello there": 2 prompt + 3 completion tokens = 5 per request.
    let extra = format!("[kv]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let budgets = "\n[routes.chain.config.budgets]\nalice = { total_tokens = 30 }\n";
    let a = Gateway::start_env(&(config(&providers, models, &extra) + budgets), KEYS);
    let b = Gateway::start_env(&(config(&providers, models, &extra) + budgets), KEYS);
    let mut served = 0;
    let mut refused = None;
    for i in 0..12 {
        let gw = if i % 2 == 0 { &a } else { &b };
        // Streams from both formats: their usage is counted too.
        let call = match i % 3 {
            0 => json!({"sdk": "openai", "model": "claude", "stream": true}),
            1 => json!({"sdk": "anthropic", "model": "gpt", "stream": true}),
            _ => json!({"sdk": "openai", "model": "gpt"}),
        };
        let out = sdk(&gw.url(""), "k-alice", json!([call]));
        if out[0].get("error").is_some() {
            refused = Some(out[0].clone());
            break;
        }
        served += 1;
    }
    assert_eq!(served, 6, "30 tokens at 5 per request");
    let refused = refused.expect("the 7th request is refused");
    assert_eq!(refused["error"]["status"], 429, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token budget exhausted for alice: used 30 of 30")),
        "{refused}"
    );
    // bob has no budget.
    let out = sdk(
        &a.url(""),
        "k-bob",
        json!([{"sdk": "openai", "model": "gpt"}]),
    );
    assert_eq!(out[0]["text"], "echo: hello there");
}

async fn post(url: &str, body: &str) -> crate::support::Reply {
    send(
        Request::post(url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer k-alice")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn bad_requests_get_provider_style_errors_and_reach_no_provider() {
    let oa = Provider::start(&[]);
    let gw = start(
        &[("oa", "openai", oa.port, "10s")],
        "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]",
    );
    let chat = gw.url("/v1/chat/completions");
    let messages = gw.url("/v1/messages");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (&chat, "{not json".into(), 400, "invalid JSON"),
        (&chat, "[1, 2]".into(), 400, "must be a JSON object"),
        (
            &chat,
            r#"{"messages":[{"role":"user","content":"x"}]}"#.into(),
            400,
            "`model` is required",
        ),
        (
            &chat,
            r#"{"model":"gpt"}"#.into(),
            400,
            "`messages` is required",
        ),
        (
            &chat,
            r#"{"model":"gpt","messages":[]}"#.into(),
            400,
            "`messages` is required",
        ),
        (
            &chat,
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.into(),
            404,
            "The model `nope` does not exist",
        ),
        (
            &messages,
            r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#.into(),
            400,
            "`max_tokens` is required",
        ),
    ];
    for (url, body, status, text) in &cases {
        let r = post(url, body).await;
        assert_eq!(r.status.as_u16(), *status, "{body}: {}", r.text());
        let j = r.json();
        let message = if url.ends_with("/messages") {
            assert_eq!(j["type"], "error", "Anthropic shape: {j}");
            j["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            assert!(j["error"]["type"].is_string(), "OpenAI shape: {j}");
            j["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert!(message.contains(text), "{body}: {message}");
    }
    let huge = format!(
        r#"{{"model":"gpt","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(20_000)
    );
    assert_eq!(post(&chat, &huge).await.status.as_u16(), 413);
    let r = crate::support::get_with(&chat, &[("authorization", "Bearer k-alice")]).await;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
    assert_eq!(
        r.json()["error"]["type"],
        "invalid_request_error",
        "{}",
        r.text()
    );
    // Paths the gateway does not serve: Anthropic's shape under /v1/messages, OpenAI's elsewhere.
    let r = post(&gw.url("/v1/messages/count_tokens"), "{}").await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error", "{}", r.text());
    let r = post(&gw.url("/v1/completions"), "{}").await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid URL (POST /v1/completions)"
    );
    // The SDK sees its own exception types.
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([{"sdk": "openai", "model": "nope"}]),
    );
    assert_eq!(out[0]["error"]["class"], "NotFoundError");
    let out = sdk(
        &gw.url(""),
        "wrong-key",
        json!([{"sdk": "openai", "model": "gpt"}]),
    );
    assert_eq!(out[0]["error"]["status"], 401);
    // /v1/models lists the configured names.
    let r = crate::support::get_with(
        &gw.url("/v1/models"),
        &[("authorization", "Bearer k-alice")],
    )
    .await;
    assert_eq!(r.json()["data"][0]["id"], "gpt");
    assert_eq!(
        oa.received(),
        Vec::<Value>::new(),
        "nothing reached the provider"
    );
}

/// Sets the queue depth a fake vLLM endpoint reports.
async fn set_waiting(p: &Provider, waiting: u32) {
    let r = send(
        Request::post(format!(
            "http://127.0.0.1:{}/admin/load?waiting={waiting}",
            p.port
        ))
        .body(Full::new(Bytes::new()))
        .expect("request"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 204);
}

#[tokio::test]
async fn a_pool_of_self_hosted_endpoints_is_routed_by_their_queue_depth() {
    let pool: Vec<Provider> = ["5", "0", "9"]
        .iter()
        .map(|w| Provider::start(&["--waiting", w]))
        .collect();
    let mut toml = String::new();
    for (i, p) in pool.iter().enumerate() {
        toml.push_str(&format!(
            "[upstreams.v{i}]\nendpoints = [\"http://127.0.0.1:{}\"]\n",
            p.port
        ));
    }
    toml.push_str(&plugins_toml(&[(
        "llm-gateway",
        "instances = \"pooled\"\ncapabilities = { outbound = [\"v0\", \"v1\", \"v2\"], kv = \"llm\", metrics = true, secrets = [] }",
    )]));
    toml.push_str(
        "[[routes]]\nname = \"llm\"\nmatch = { path_prefix = \"/v1\" }\n[[routes.chain]]\nplugin = \"llm-gateway\"\n\
         [routes.chain.config.providers]\nvllm = { pool = [\"v0\", \"v1\", \"v2\"], format = \"openai\", load_ttl_ms = 200 }\n\
         [routes.chain.config.models]\nllama = [{ provider = \"vllm\", model = \"meta-llama/Llama-3.1-8B\" }]\n",
    );
    let gw = Gateway::start(&toml);
    let count = |p: &Provider| {
        p.received()
            .iter()
            .filter(|r| r["path"] == "/v1/chat/completions")
            .count()
    };
    let run = |n: usize| {
        let calls: Vec<Value> = (0..n)
            .map(|_| json!({"sdk": "openai", "model": "llama"}))
            .collect();
        let out = sdk(&gw.url(""), "none", Value::Array(calls));
        assert!(
            out.iter().all(|o| o["text"] == "echo: hello there"),
            "{out:?}"
        );
    };
    run(20);
    let first: Vec<usize> = pool.iter().map(count).collect();
    assert!(first[1] >= 16, "the idle endpoint takes ≥ 80%: {first:?}");
    // The loads change: v0 is now idle, v1 busy.
    set_waiting(&pool[0], 0).await;
    set_waiting(&pool[1], 30).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    run(20);
    let second: Vec<usize> = pool.iter().map(count).collect();
    let moved = second[0] - first[0];
    assert!(
        moved >= 16,
        "routing followed the load: {first:?} then {second:?}"
    );
    let recs = wait_records(&gw, 40);
    assert!(
        recs.iter().all(|r| r["provider"] == "vllm"
            && r["endpoint"].as_str().is_some_and(|e| e.starts_with('v')))
    );
}

#[test]
fn identical_requests_hit_the_exact_cache_and_paraphrases_the_semantic_one() {
    let oa = Provider::start(&[]);
    let emb = Provider::start(&[]);
    let toml = config(
        &[
            ("oa", "openai", oa.port, "10s"),
            ("emb", "openai", emb.port, "10s"),
        ],
        "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]",
        "",
    ) + "[routes.chain.config.cache]\nttl_s = 60\n\
         [routes.chain.config.cache.semantic]\nupstream = \"emb\"\nmodel = \"embed-1\"\nthreshold = 0.9\n";
    let gw = Gateway::start_env(&toml, KEYS);
    let ask = |key: &str, prompt: &str, stream: bool| {
        sdk(
            &gw.url(""),
            key,
            json!([{"sdk": "openai", "model": "gpt", "prompt": prompt, "stream": stream}]),
        )
        .remove(0)
    };
    let chats = || {
        oa.received()
            .iter()
            .filter(|r| r["path"] == "/v1/chat/completions")
            .count()
    };
    let first = ask("k-alice", "what is the capital of france", false);
    assert_eq!(first["text"], "echo: what is the capital of france");
    assert_eq!(chats(), 1);
    // Identical: from the cache, same answer, no provider call.
    assert_eq!(
        ask("k-alice", "what is the capital of france", false),
        first
    );
    assert_eq!(chats(), 1);
    // A paraphrase (cosine 0.94 with the fake's bag-of-words vectors): the cached answer.
    let para = ask("k-alice", "what is the capital city of france?", false);
    assert_eq!(para["text"], "echo: what is the capital of france");
    assert_eq!(chats(), 1);
    // Unrelated (0.34): a miss.
    let other = ask("k-alice", "tell me a joke about cats", false);
    assert_eq!(other["text"], "echo: tell me a joke about cats");
    assert_eq!(chats(), 2);
    // Another principal never sees alice's answers; streams are never served from the cache.
    ask("k-bob", "what is the capital of france", false);
    assert_eq!(chats(), 3);
    ask("k-alice", "what is the capital of france", true);
    assert_eq!(chats(), 4);
    let recs = wait_records(&gw, 6);
    let hits: Vec<&Value> = recs.iter().filter(|r| r["cache_hit"] != false).collect();
    assert_eq!(hits.len(), 2, "{recs:#?}");
    assert_eq!(hits[0]["cache_hit"], "exact");
    assert_eq!(hits[1]["cache_hit"], "semantic");
    // The embeddings went to the embeddings upstream.
    assert!(
        emb.received()
            .iter()
            .all(|r| r["path"] == "/v1/embeddings" && r["model"] == "embed-1")
    );
}

#[test]
fn the_llm_example_serves_both_sdks() {
    let fake = Provider::start(&[]);
    let (port, admin) = (free_port(), free_port());
    let gw = start_example(
        "llm",
        &[
            ("127.0.0.1:8080", format!("127.0.0.1:{port}")),
            ("127.0.0.1:9901", format!("127.0.0.1:{admin}")),
            ("127.0.0.1:9101", format!("127.0.0.1:{}", fake.port)),
        ],
        format!("127.0.0.1:{port}").parse().expect("addr"),
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ],
    );
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "claude-sonnet"},
            {"sdk": "anthropic", "model": "gpt-4o-mini", "stream": true},
            {"sdk": "openai", "model": "claude-sonnet"},
        ]),
    );
    assert_eq!(out[0]["text"], "echo: hello there");
    assert_eq!(out[1]["text"], "echo: hello there");
    assert_eq!(
        out[2], out[0],
        "the second identical request is a cache hit"
    );
    let received = fake.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["x_api_key"], "sk-ant-test");
    assert_eq!(received[1]["authorization"], "Bearer sk-test");
    let recs = wait_records(&gw, 3);
    assert!(
        recs.iter().any(|r| r["cost_usd"].as_f64() > Some(0.0)),
        "{recs:?}"
    );
}

#[test]
fn embeddings_and_responses_pass_through_to_openai_format_providers() {
    let oa = Provider::start(&[]);
    let an = Provider::start(&[]);
    let gw = start(
        &[
            ("oa", "openai", oa.port, "10s"),
            ("an", "anthropic", an.port, "10s"),
        ],
        "embed = [{ provider = \"oa\", model = \"embed-1\" }]\n\
         gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\n\
         claude = [{ provider = \"an\", model = \"claude-x\" }]",
    );
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai-embeddings", "model": "embed"},
            {"sdk": "openai-responses", "model": "gpt"},
            {"sdk": "openai-responses", "model": "gpt", "stream": true},
            {"sdk": "openai-responses", "model": "claude"},
        ]),
    );
    assert_eq!(out[0]["dims"], 64, "{}", out[0]);
    assert_eq!(out[1]["text"], "echo: hello there", "{}", out[1]);
    assert_eq!(out[2]["text"], "echo: hello there", "{}", out[2]);
    assert_eq!(out[2]["final"], "echo: hello there");
    // The Responses API has no Anthropic translation: a clear error, nothing sent.
    assert!(
        out[3]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs an OpenAI-format provider")),
        "{}",
        out[3]
    );
    assert!(an.received().is_empty());
    let paths: Vec<Value> = oa.received().iter().map(|r| r["path"].clone()).collect();
    assert_eq!(
        paths,
        json!(["/v1/embeddings", "/v1/responses", "/v1/responses"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    );
    assert!(
        oa.received()
            .iter()
            .all(|r| r["authorization"] == "Bearer oa-secret")
    );
    // Usage from both APIs is charged and recorded.
    let recs = wait_records(&gw, 3);
    assert!(
        recs.iter()
            .filter(|r| r["stream"] == false && r["status"] == 200)
            .all(|r| r["input_tokens"].as_u64() > Some(0)),
        "{recs:#?}"
    );
}

#[test]
fn system_parts_reach_the_provider_as_separate_blocks() {
    let (oa, an, gw) = two_providers();
    let parts = json!([{"type": "text", "text": "Part A."}, {"type": "text", "text": "Part B."}]);
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "claude", "system": parts},
            {"sdk": "openai", "model": "claude", "system": "Be brief."},
            {"sdk": "anthropic", "model": "gpt", "system": parts},
        ]),
    );
    assert!(
        out.iter().all(|o| o["text"] == "echo: hello there"),
        "{out:?}"
    );
    // OpenAI parts → Anthropic's `system` as text blocks, one per part, nothing joined.
    let to_an = an.received();
    assert_eq!(to_an[0]["body"]["system"], parts, "{}", to_an[0]);
    // A plain string stays a string.
    assert_eq!(to_an[1]["body"]["system"], "Be brief.");
    // Anthropic blocks → an OpenAI system message with the same text parts.
    let to_oa = oa.received();
    assert_eq!(
        to_oa[0]["body"]["messages"][0],
        json!({"role": "system", "content": parts}),
        "{}",
        to_oa[0]
    );
}

#[test]
fn streamed_usage_carries_the_cached_tokens_the_whole_answer_does() {
    let oa = Provider::start(&["--cached", "7"]);
    let an = Provider::start(&["--cached", "7"]);
    let gw = start(
        &[
            ("oa", "openai", oa.port, "10s"),
            ("an", "anthropic", an.port, "10s"),
        ],
        "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\nclaude = [{ provider = \"an\", model = \"claude-x\" }]",
    );
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "claude"},
            {"sdk": "openai", "model": "claude", "stream": true, "include_usage": true},
            {"sdk": "anthropic", "model": "gpt"},
            {"sdk": "anthropic", "model": "gpt", "stream": true},
        ]),
    );
    // An Anthropic provider's cache reads as OpenAI's cached_tokens, streamed or not.
    let (whole, streamed) = (&out[0]["usage"], &out[1]["usage"]);
    assert_eq!(
        whole["prompt_tokens_details"]["cached_tokens"], 7,
        "{whole}"
    );
    assert_eq!(streamed, whole, "streamed usage = whole usage");
    // An OpenAI provider's cached_tokens as Anthropic's cache_read_input_tokens, with
    // input_tokens leaving them out (as Anthropic counts), streamed or not.
    let (whole, streamed) = (&out[2]["usage"], &out[3]["usage"]);
    assert_eq!(whole["cache_read"], 7, "{whole}");
    assert_eq!(whole["input"], 2, "\"hello there\" uncached: {whole}");
    assert_eq!(streamed, whole, "streamed usage = whole usage");
}

#[test]
fn tool_call_arguments_that_are_not_json_are_refused_naming_the_call() {
    let (oa, an, gw) = two_providers();
    let history = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Par"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
    ]);
    let anthropic_history = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": "Paris"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]},
    ]);
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "claude", "messages": history, "tools": true},
            // Refused whichever provider serves the model: a fallback would translate it too.
            {"sdk": "openai", "model": "gpt", "messages": history, "tools": true, "stream": true},
            {"sdk": "anthropic", "model": "gpt", "messages": anthropic_history, "tools": true},
        ]),
    );
    for o in &out[..2] {
        let e = &o["error"];
        assert_eq!(e["class"], "BadRequestError", "{o}");
        assert_eq!(e["type"], "invalid_request_error", "{o}");
        assert_eq!(
            e["param"], "messages[1].tool_calls[0].function.arguments",
            "{o}"
        );
        assert_eq!(e["code"], "invalid_value", "{o}");
        let m = e["body"]["message"].as_str().unwrap_or_default();
        assert!(
            m.contains("`call_9` (get_weather)") && m.contains("not valid JSON"),
            "{o}"
        );
    }
    let e = &out[2]["error"];
    assert_eq!(e["class"], "BadRequestError", "{}", out[2]);
    assert_eq!(e["body"]["type"], "error");
    assert_eq!(e["body"]["error"]["type"], "invalid_request_error");
    assert_eq!(
        e["body"]["error"]["message"],
        "messages.1.content.0.tool_use.input: Input should be a valid dictionary"
    );
    assert!(oa.received().is_empty() && an.received().is_empty());
}

#[test]
fn an_unknown_model_is_answered_as_each_api_does() {
    let oa = Provider::start(&[]);
    let gw = start(
        &[("oa", "openai", oa.port, "10s")],
        "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]",
    );
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "gpt-9"},
            {"sdk": "openai", "model": "gpt-9", "stream": true},
            {"sdk": "anthropic", "model": "gpt-9"},
            {"sdk": "anthropic", "model": "gpt-9", "stream": true},
        ]),
    );
    for o in &out[..2] {
        let e = &o["error"];
        assert_eq!(
            (e["class"].as_str(), e["status"].as_u64()),
            (Some("NotFoundError"), Some(404)),
            "{o}"
        );
        assert_eq!(e["code"], "model_not_found", "{o}");
        // The openai SDK keeps the inner `error` object as the body.
        assert_eq!(
            e["body"],
            json!({"message": "The model `gpt-9` does not exist or you do not have access to it.",
                   "type": "invalid_request_error", "param": null, "code": "model_not_found"}),
            "{o}"
        );
    }
    for o in &out[2..] {
        let e = &o["error"];
        assert_eq!(
            (e["class"].as_str(), e["status"].as_u64()),
            (Some("NotFoundError"), Some(404)),
            "{o}"
        );
        assert_eq!(
            e["body"],
            json!({"type": "error", "error": {"type": "not_found_error", "message": "model: gpt-9"}}),
            "{o}"
        );
    }
    assert!(oa.received().is_empty());
}

#[tokio::test]
async fn gateway_errors_are_typed_for_each_client_api() {
    let failing_oa = Provider::start(&["--fail", "429"]);
    let failing_an = Provider::start(&["--fail", "500"]);
    let oa = Provider::start(&[]);
    let down = free_port();
    let toml = config(
        &[
            ("foa", "openai", failing_oa.port, "10s"),
            ("fan", "anthropic", failing_an.port, "10s"),
            ("oa", "openai", oa.port, "10s"),
            ("down", "openai", down, "10s"),
        ],
        "limited = [{ provider = \"foa\", model = \"m\" }]\n\
         broken = [{ provider = \"fan\", model = \"m\" }]\n\
         gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\n\
         gone = [{ provider = \"down\", model = \"m\" }]",
        "",
    ) + "\n[routes.chain.config.budgets]\nalice = { total_tokens = 5 }\nbob = { tokens_per_minute = 5 }\n";
    let gw = Gateway::start_env(&toml, KEYS);
    // A provider's errors in the other API's types; a provider down (the gateway's own 502)
    // as an error both SDKs parse, not plain text.
    let out = sdk(
        &gw.url(""),
        "k-bob",
        json!([
            {"sdk": "anthropic", "model": "limited"},
            {"sdk": "openai", "model": "broken"},
            {"sdk": "openai", "model": "gone"},
            {"sdk": "anthropic", "model": "gone", "stream": true},
        ]),
    );
    let e = &out[0]["error"];
    assert_eq!(e["class"], "RateLimitError", "{}", out[0]);
    assert_eq!(
        e["body"],
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "scripted failure 429"}})
    );
    let e = &out[1]["error"];
    assert_eq!(e["class"], "InternalServerError", "{}", out[1]);
    assert_eq!(e["type"], "server_error", "{}", out[1]);
    assert_eq!(e["body"]["message"], "scripted failure 500");
    let e = &out[2]["error"];
    assert_eq!(
        (e["class"].as_str(), e["status"].as_u64()),
        (Some("InternalServerError"), Some(502)),
        "{}",
        out[2]
    );
    assert_eq!(e["type"], "server_error", "{}", out[2]);
    assert!(
        e["body"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        out[2]
    );
    let e = &out[3]["error"];
    assert_eq!(e["status"], 502, "{}", out[3]);
    assert_eq!(e["body"]["type"], "error", "{}", out[3]);
    assert_eq!(e["body"]["error"]["type"], "api_error", "{}", out[3]);

    // A used-up total budget is OpenAI's exhausted quota, not worth retrying.
    let first = sdk(
        &gw.url(""),
        "k-alice",
        json!([{"sdk": "openai", "model": "gpt"}]),
    );
    assert_eq!(first[0]["text"], "echo: hello there");
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([{"sdk": "openai", "model": "gpt"}, {"sdk": "anthropic", "model": "gpt"}]),
    );
    let e = &out[0]["error"];
    assert_eq!(e["class"], "RateLimitError", "{}", out[0]);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("insufficient_quota"), Some("insufficient_quota")),
        "{}",
        out[0]
    );
    assert_eq!(
        out[1]["error"]["body"]["error"]["type"], "rate_limit_error",
        "{}",
        out[1]
    );
    let r = post(
        &gw.url("/v1/chat/completions"),
        r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(r.status.as_u16(), 429);
    assert_eq!(r.header("x-should-retry").as_deref(), Some("false"));
    assert_eq!(r.header("retry-after"), None);
    // A per-minute limit says when to come back: bob's first answer spends his 5 tokens, the
    // next request is refused (should the minute turn between them, the one after).
    let bob = |body: &'static str| {
        send(
            Request::post(gw.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .header("authorization", "Bearer k-bob")
                .body(Full::new(Bytes::from(body)))
                .expect("request"),
        )
    };
    let mut refused = None;
    for _ in 0..3 {
        let r =
            bob(r#"{"model":"gpt","messages":[{"role":"user","content":"hello there"}]}"#).await;
        if r.status.as_u16() == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("bob's per-minute limit refuses a request");
    assert_eq!(
        r.json()["error"]["code"],
        "rate_limit_exceeded",
        "{}",
        r.text()
    );
    assert!(
        r.header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s)),
        "{:?}",
        r.header("retry-after")
    );
}

/// With `error_format = "llm"`, the gateway's own refusals (before any plugin runs) are API
/// errors too; the 502 of a provider that is down reaches the client the same way.
#[test]
fn the_gateways_own_413_and_502_reach_both_sdks_as_api_errors() {
    let oa = Provider::start(&[]);
    let down = free_port();
    let route = "[[routes]]\nname = \"llm\"\n";
    let toml = config(
        &[
            ("oa", "openai", oa.port, "10s"),
            ("down", "anthropic", down, "10s"),
        ],
        "gpt = [{ provider = \"oa\", model = \"gpt-4o\" }]\ngone = [{ provider = \"down\", model = \"m\" }]",
        "",
    )
    .replacen(
        route,
        &format!("{route}error_format = \"llm\"\nmax_body_size = \"2KiB\"\n"),
        1,
    );
    assert!(toml.contains("error_format"), "{toml}");
    let gw = Gateway::start_env(&toml, KEYS);
    let big = "word ".repeat(1000);
    let out = sdk(
        &gw.url(""),
        "k-alice",
        json!([
            {"sdk": "openai", "model": "gpt", "prompt": big},
            {"sdk": "anthropic", "model": "gpt", "prompt": big, "stream": true},
            {"sdk": "openai", "model": "gone", "stream": true},
            {"sdk": "anthropic", "model": "gone"},
        ]),
    );
    // The openai SDK keeps the inner error object; the anthropic SDK the whole body.
    let e = &out[0]["error"];
    assert_eq!(e["status"], 413, "{}", out[0]);
    assert_eq!(e["type"], "invalid_request_error", "{}", out[0]);
    assert!(
        e["body"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too large")),
        "{}",
        out[0]
    );
    let e = &out[1]["error"];
    assert_eq!(e["status"], 413, "{}", out[1]);
    assert_eq!(e["body"]["type"], "error", "{}", out[1]);
    assert_eq!(
        e["body"]["error"]["type"], "request_too_large",
        "{}",
        out[1]
    );
    let e = &out[2]["error"];
    assert_eq!(
        (e["class"].as_str(), e["status"].as_u64()),
        (Some("InternalServerError"), Some(502)),
        "{}",
        out[2]
    );
    assert_eq!(e["type"], "server_error", "{}", out[2]);
    assert!(
        e["body"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("down")),
        "names the upstream: {}",
        out[2]
    );
    let e = &out[3]["error"];
    assert_eq!(
        (e["class"].as_str(), e["status"].as_u64()),
        (Some("InternalServerError"), Some(502)),
        "{}",
        out[3]
    );
    assert_eq!(e["body"]["error"]["type"], "api_error", "{}", out[3]);
    assert!(
        e["body"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("down")),
        "{}",
        out[3]
    );
    assert!(oa.received().is_empty(), "the 413s reached no provider");
}
