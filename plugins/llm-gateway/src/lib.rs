//! `llm-gateway`: one OpenAI-compatible (and Anthropic-compatible) endpoint in front of many
//! providers. A client speaks `POST /v1/chat/completions` or `POST /v1/messages` with a model
//! name from the config; the plugin sends the request to that model's first target, translated
//! into the provider's format, with the provider's key (never the client's), and translates the
//! answer back — streamed answers event by event. Before anything has reached the client, a 429,
//! 5xx or timeout moves on to the next target. Usage is charged to the principal's token
//! budget and written to a usage record.
//!
//! The route needs no `upstream`. Config: see [`config::Config`].

#![forbid(unsafe_code)]

mod budget;
mod cache;
mod config;
mod errors;
mod pool;
mod translate;

use config::{Config, Format, Target};
use errors::ApiError;
use serde_json::{Value, json};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use translate::stream::Stream;
use translate::{Usage, request as req, response as resp};
use weir_sdk::outbound;
use weir_sdk::{
    BodyAccess, BodyEnd, Decision, Direction, Info, LocalResponse, Plugin, ResponseDecision,
    context, log, metrics, request, response, secrets,
};
use weir_wire::is_event_stream;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request on its way: what the response side and fallbacks need.
struct Pending {
    client: Format,
    client_model: String,
    body: Value,
    targets: Vec<Target>,
    /// The target in use.
    attempt: usize,
    stream: bool,
    client_wants_usage: bool,
    principal: String,
    started: Instant,
    /// Providers that failed before this one, with why.
    failed: Vec<String>,
    status: u16,
    /// The upstream that served (a pool member, for pools).
    endpoint: String,
    /// Where to cache the answer (a cache miss), with the prompt's embedding.
    cache: Option<(String, Option<Vec<f64>>)>,
    /// An OpenAI API passed through untranslated (`/v1/embeddings`, `/v1/responses`).
    passthrough: Option<&'static str>,
}

/// How the answer is brought into the client's format.
enum Answer {
    Stream(Stream),
    /// A pass-through stream: the bytes go on untouched.
    Raw,
    /// A whole JSON answer (success or error), converted at the end.
    Whole {
        from: Format,
        error: bool,
        buf: Vec<u8>,
        usage: Option<Usage>,
    },
}

/// A request ready for one target.
struct Built {
    upstream: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    format: Format,
}

struct LlmGateway {
    config: Config,
    pending: Option<Pending>,
    answer: Option<Answer>,
}

fn is_retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

impl LlmGateway {
    /// The request for target `i`, in its provider's format and with its credential.
    fn build(&self, p: &Pending, i: usize) -> Result<Built, ApiError> {
        let target = &p.targets[i];
        let provider =
            self.config.providers.get(&target.provider).ok_or_else(|| {
                ApiError::internal(&format!("unknown provider {}", target.provider))
            })?;
        if let Some(api) = p.passthrough
            && provider.format != Format::Openai
        {
            // The client asked for an API this model cannot give: its request, not the gateway.
            return Err(ApiError::invalid(&format!(
                "model `{}`: {api} needs an OpenAI-format provider",
                p.client_model
            ))
            .param("model"));
        }
        let body = match (p.client, provider.format) {
            _ if p.passthrough.is_some() => {
                let mut b = p.body.clone();
                b["model"] = json!(target.model);
                b
            }
            (Format::Openai, Format::Openai) => req::openai_to_openai(&p.body, &target.model).0,
            (Format::Openai, Format::Anthropic) => req::openai_to_anthropic(
                &p.body,
                &target.model,
                self.config.default_max_tokens,
                &provider.anthropic_version,
            )?,
            (Format::Anthropic, Format::Openai) => req::anthropic_to_openai(&p.body, &target.model),
            (Format::Anthropic, Format::Anthropic) => {
                let mut b = p.body.clone();
                b["model"] = json!(target.model);
                b
            }
        };
        let key = match &provider.secret {
            Some(name) => Some(
                secrets::get(name)
                    .map_err(|_| ApiError::internal(&format!("secret {name:?} is not granted")))?,
            ),
            None => None,
        };
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        let path = match provider.format {
            Format::Openai => {
                if let Some(k) = key {
                    headers.push(("authorization".into(), format!("Bearer {k}")));
                }
                format!(
                    "{}{}",
                    provider.base_path,
                    p.passthrough.unwrap_or("/v1/chat/completions")
                )
            }
            Format::Anthropic => {
                if let Some(k) = key {
                    headers.push(("x-api-key".into(), k));
                }
                headers.push((
                    "anthropic-version".into(),
                    provider.anthropic_version.clone(),
                ));
                format!("{}/v1/messages", provider.base_path)
            }
        };
        let upstream = match &provider.upstream {
            Some(u) => u.clone(),
            None => pool::pick(
                &provider.pool,
                &provider.metrics_path,
                std::time::Duration::from_millis(provider.load_ttl_ms),
                provider.kv_cache_weight,
            ),
        };
        Ok(Built {
            upstream,
            path,
            headers,
            body: body.to_string().into_bytes(),
            format: provider.format,
        })
    }

    fn refuse(&self, format: Format, error: &ApiError) -> Decision {
        Decision::Respond(error.answer(format))
    }

    fn models(&self) -> Decision {
        let data: Vec<Value> = self
            .config
            .models
            .keys()
            .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "weir"}))
            .collect();
        Decision::Respond(LocalResponse::new(200).json(&json!({"object": "list", "data": data})))
    }

    /// Validates, checks cache and budget, and routes to the model's first target.
    /// `passthrough` names an OpenAI API sent on untranslated.
    fn start(&mut self, client: Format, passthrough: Option<&'static str>) -> Decision {
        let raw = request::body().unwrap_or_default();
        let body: Value = match serde_json::from_slice(&raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return self.refuse(client, &ApiError::invalid("the body must be a JSON object"));
            }
            Err(e) => {
                return self.refuse(client, &ApiError::invalid(&format!("invalid JSON: {e}")));
            }
        };
        let Some(model) = body["model"].as_str().map(str::to_owned) else {
            return self.refuse(
                client,
                &ApiError::invalid("`model` is required").param("model"),
            );
        };
        if passthrough.is_none() && body["messages"].as_array().is_none_or(|m| m.is_empty()) {
            return self.refuse(
                client,
                &ApiError::invalid("`messages` is required and must not be empty")
                    .param("messages"),
            );
        }
        if client == Format::Anthropic && !body["max_tokens"].is_u64() {
            return self.refuse(
                client,
                &ApiError::invalid("`max_tokens` is required").param("max_tokens"),
            );
        }
        let checked = match (client, passthrough) {
            (_, Some(_)) => Ok(()),
            (Format::Openai, None) => req::check_openai(&body),
            (Format::Anthropic, None) => req::check_anthropic(&body),
        };
        if let Err(e) = checked {
            return self.refuse(client, &e);
        }
        let Some(targets) = self.config.models.get(&model).cloned() else {
            return self.refuse(client, &ApiError::unknown_model(&model));
        };
        let principal = context::principal().unwrap_or_else(|| "anonymous".into());
        let stream = body["stream"].as_bool() == Some(true);
        let mut cache_slot = None;
        if let Some(cache) = self
            .config
            .cache
            .as_ref()
            .filter(|_| !stream && passthrough.is_none())
        {
            let client_name = if client == Format::Openai {
                "openai"
            } else {
                "anthropic"
            };
            match cache::lookup(cache, &principal, client_name, &model, &body) {
                cache::Lookup::Hit { body: answer, how } => {
                    let line = json!({"event": "llm.request", "principal": principal, "model": model,
                                      "provider": "cache", "stream": false, "input_tokens": 0,
                                      "output_tokens": 0, "status": 200, "outcome": "ok",
                                      "cache_hit": how, "fallback_from": []});
                    log::info(&format!("llm-audit {line}"));
                    metrics::counter_add(
                        "llm_cache_hits",
                        1,
                        &[("model", model.as_str()), ("kind", how)],
                    );
                    return Decision::Respond(
                        LocalResponse::new(200)
                            .header("content-type", "application/json")
                            .header("x-weir-cache", how)
                            .body(answer),
                    );
                }
                cache::Lookup::Miss { key, vector } => cache_slot = Some((key, vector)),
            }
        }
        if let Some(b) = self.config.budget(Some(&principal))
            && let Err(budget::Exhausted(why, wait)) = budget::admit(&principal, &b)
        {
            let error = match wait {
                Some(w) => ApiError::rate_limited(&why, w),
                None => ApiError::quota(&why),
            };
            return self.refuse(client, &error);
        }
        let client_wants_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let pending = Pending {
            client,
            client_model: model,
            body,
            targets,
            attempt: 0,
            stream,
            client_wants_usage,
            principal,
            started: Instant::now(),
            failed: Vec::new(),
            status: 0,
            endpoint: String::new(),
            cache: cache_slot,
            passthrough,
        };
        let built = match self.build(&pending, 0) {
            Ok(b) => b,
            Err(e) => return self.refuse(client, &e),
        };
        // The client's credentials stay here.
        for h in [
            "authorization",
            "x-api-key",
            "anthropic-version",
            "anthropic-beta",
            "cookie",
            "content-length",
        ] {
            let _ = request::remove_header(h);
        }
        for (name, value) in &built.headers {
            let _ = request::set_header(name, value);
        }
        if request::set_body(&built.body).is_err() || request::set_path(&built.path).is_err() {
            return self.refuse(client, &ApiError::internal("cannot rewrite the request"));
        }
        let mut pending = pending;
        pending.endpoint = built.upstream.clone();
        // GenAI attributes on the request's trace span (see the host's telemetry).
        context::set("trace.gen_ai.request.model", &pending.client_model);
        context::set("trace.gen_ai.provider.name", &pending.targets[0].provider);
        context::set("trace.gen_ai.response.model", &pending.targets[0].model);
        context::set(
            "trace.gen_ai.system",
            if built.format == Format::Openai {
                "openai"
            } else {
                "anthropic"
            },
        );
        self.pending = Some(pending);
        Decision::Route(built.upstream)
    }

    fn answer_for(
        &self,
        p: &Pending,
        from: Format,
        status: u16,
        content_type: Option<&str>,
    ) -> Answer {
        if p.passthrough.is_some() && status < 400 && is_event_stream(content_type) {
            return Answer::Raw;
        }
        if status < 400 && p.stream && is_event_stream(content_type) {
            Answer::Stream(Stream::new(
                from,
                p.client,
                p.client_wants_usage,
                &p.client_model,
                now(),
            ))
        } else {
            Answer::Whole {
                from,
                error: status >= 400,
                buf: Vec::new(),
                usage: None,
            }
        }
    }

    /// Tries the targets after the current one; the first that answers below 400 replaces the
    /// failed answer (nothing has reached the client yet).
    fn fall_back(&mut self, mut p: Pending, why: String) -> (Pending, Option<LocalResponse>) {
        p.failed
            .push(format!("{}: {why}", p.targets[p.attempt].provider));
        for i in p.attempt + 1..p.targets.len() {
            let built = match self.build(&p, i) {
                Ok(b) => b,
                Err(e) => {
                    p.failed
                        .push(format!("{}: {}", p.targets[i].provider, e.message()));
                    continue;
                }
            };
            let endpoint = built.upstream.clone();
            let mut call = outbound::Request::post(&built.upstream, &built.path, built.body);
            call.headers = built.headers;
            match outbound::send(call) {
                Ok(r) if !is_retryable(r.status()) => {
                    let status = r.status();
                    let ct = r
                        .headers()
                        .into_iter()
                        .find(|(n, _)| n == "content-type")
                        .map(|(_, v)| v);
                    match r.read_body(self.config.max_response_bytes) {
                        Ok(body) => {
                            p.attempt = i;
                            p.endpoint = endpoint;
                            self.answer =
                                Some(self.answer_for(&p, built.format, status, ct.as_deref()));
                            let mut local = LocalResponse::new(status).body(body);
                            if status >= 400 {
                                // Converted to the client's JSON error in `on_body_end`.
                                local = local.header("content-type", "application/json");
                            } else if let Some(ct) = ct {
                                local = local.header("content-type", ct);
                            }
                            log::warn(&format!(
                                "llm-gateway: {} served by {} after {}",
                                p.client_model,
                                p.targets[i].provider,
                                p.failed.join("; ")
                            ));
                            return (p, Some(local));
                        }
                        Err(e) => p.failed.push(format!("{}: {e:?}", p.targets[i].provider)),
                    }
                }
                Ok(r) => p
                    .failed
                    .push(format!("{}: HTTP {}", p.targets[i].provider, r.status())),
                Err(e) => p.failed.push(format!("{}: {e:?}", p.targets[i].provider)),
            }
        }
        (p, None)
    }

    fn record(&self, p: &Pending, usage: Option<Usage>, outcome: &str) {
        let target = &p.targets[p.attempt];
        let u = usage.unwrap_or_default();
        let cost = (u.input as f64 * target.input_per_mtok
            + u.output as f64 * target.output_per_mtok)
            / 1e6;
        let used = budget::charge(&p.principal, u.input + u.output);
        // What the principal has used of its total budget, for the record's readers (the
        // console shows what remains).
        let budget = self.config.budget(Some(&p.principal)).map(|b| {
            json!({"used_tokens": used, "total_tokens": b.total_tokens,
                   "tokens_per_minute": b.tokens_per_minute})
        });
        let line = json!({
            "event": "llm.request",
            "principal": p.principal,
            "model": p.client_model,
            "provider": target.provider,
            "provider_model": target.model,
            "endpoint": p.endpoint,
            "stream": p.stream,
            "input_tokens": u.input,
            "output_tokens": u.output,
            "usage_reported": usage.is_some(),
            "cost_usd": (cost * 1e6).round() / 1e6,
            "latency_ms": (p.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            "status": p.status,
            "outcome": outcome,
            "fallback_from": p.failed,
            "cache_hit": false,
            "budget": budget,
        });
        log::info(&format!("llm-audit {line}"));
        let labels = [
            ("model", p.client_model.as_str()),
            ("provider", target.provider.as_str()),
            ("principal", p.principal.as_str()),
        ];
        metrics::counter_add("llm_tokens_input", u.input, &labels);
        metrics::counter_add("llm_tokens_output", u.output, &labels);
        metrics::counter_add(
            "llm_requests",
            1,
            &[
                ("model", p.client_model.as_str()),
                ("provider", target.provider.as_str()),
                ("outcome", outcome),
            ],
        );
    }
}

impl Plugin for LlmGateway {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(LlmGateway {
            config,
            pending: None,
            answer: None,
        })
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            request_body: BodyAccess::Buffered(self.config.max_request_bytes),
            response_body: BodyAccess::Streamed,
        }
    }

    fn on_request(&mut self) -> Decision {
        self.pending = None;
        self.answer = None;
        let path = request::path();
        let path = path.split('?').next().unwrap_or_default();
        let method = request::method();
        let client = match path {
            "/v1/chat/completions" => Format::Openai,
            "/v1/messages" => Format::Anthropic,
            "/v1/models" if method == "GET" => return self.models(),
            "/v1/embeddings" if method == "POST" => {
                return self.start(Format::Openai, Some("/v1/embeddings"));
            }
            "/v1/responses" if method == "POST" => {
                return self.start(Format::Openai, Some("/v1/responses"));
            }
            _ => {
                // Anthropic's SDK calls more under /v1/messages (count_tokens, batches).
                let format = if path.starts_with("/v1/messages/") {
                    Format::Anthropic
                } else {
                    Format::Openai
                };
                return self.refuse(format, &ApiError::unknown_endpoint(&method, path));
            }
        };
        if method != "POST" {
            return self.refuse(client, &ApiError::method(&method, path));
        }
        self.start(client, None)
    }

    fn on_response(&mut self) -> ResponseDecision {
        let Some(mut p) = self.pending.take() else {
            return ResponseDecision::Continue;
        };
        let status = response::status();
        let from = self
            .config
            .providers
            .get(&p.targets[p.attempt].provider)
            .map_or(Format::Openai, |pr| pr.format);
        if is_retryable(status) && p.attempt + 1 < p.targets.len() {
            let (back, local) = self.fall_back(p, format!("HTTP {status}"));
            p = back;
            if let Some(local) = local {
                p.status = local.status;
                let t = &p.targets[p.attempt];
                context::set("trace.gen_ai.provider.name", &t.provider);
                context::set("trace.gen_ai.response.model", &t.model);
                self.pending = Some(p);
                return ResponseDecision::Replace(local);
            }
        }
        p.status = status;
        let ct = response::header("content-type");
        if status >= 400 {
            // Whatever the error body was (the gateway's own 502 is plain text), the client gets
            // JSON in its format (see `on_body_end`).
            let _ = response::set_header("content-type", "application/json");
        }
        self.answer = Some(self.answer_for(&p, from, status, ct.as_deref()));
        self.pending = Some(p);
        ResponseDecision::Continue
    }

    fn on_body_chunk(&mut self, direction: Direction, chunk: Vec<u8>) -> Vec<u8> {
        match (&mut self.answer, direction) {
            (Some(Answer::Stream(s)), Direction::Response) => s.chunk(&chunk),
            (Some(Answer::Raw), _) => chunk,
            (Some(Answer::Whole { buf, .. }), Direction::Response) => {
                buf.extend_from_slice(&chunk);
                Vec::new()
            }
            _ => chunk,
        }
    }

    fn on_body_end(&mut self, direction: Direction) -> BodyEnd {
        if direction != Direction::Response {
            return BodyEnd::default();
        }
        let (Some(answer), Some(p)) = (self.answer.take(), self.pending.take()) else {
            return BodyEnd::default();
        };
        let (tail, usage, outcome) = match answer {
            Answer::Raw => (Vec::new(), None, "ok"),
            Answer::Stream(mut s) => {
                let tail = s.end();
                let outcome = if s.finished { "ok" } else { "truncated" };
                (tail, s.usage, outcome)
            }
            Answer::Whole {
                from,
                error: true,
                buf,
                ..
            } => (
                errors::convert(from, p.client, p.status, &buf),
                None,
                "error",
            ),
            Answer::Whole {
                from,
                buf,
                mut usage,
                ..
            } => {
                let out = match serde_json::from_slice::<Value>(&buf) {
                    Ok(v) => {
                        let (converted, u) = match (from, p.client) {
                            (Format::Anthropic, Format::Openai) => {
                                resp::anthropic_to_openai(&v, now())
                            }
                            (Format::Openai, Format::Anthropic) => resp::openai_to_anthropic(&v),
                            (Format::Openai, Format::Openai) => {
                                (v.clone(), translate::openai_usage(&v["usage"]))
                            }
                            (Format::Anthropic, Format::Anthropic) => {
                                (v.clone(), translate::anthropic_usage(&v["usage"]))
                            }
                        };
                        usage = Some(u);
                        let out = if from == p.client {
                            buf
                        } else {
                            converted.to_string().into_bytes()
                        };
                        if let (Some(cache), Some((key, vector)), true) =
                            (&self.config.cache, &p.cache, (200..300).contains(&p.status))
                        {
                            cache::store(
                                cache,
                                &p.principal,
                                &p.client_model,
                                key,
                                vector.as_deref(),
                                &out,
                            );
                        }
                        out
                    }
                    Err(_) => buf,
                };
                (out, usage, "ok")
            }
        };
        self.record(&p, usage, outcome);
        if let Some(u) = usage {
            // On the request's span, which ends with this body.
            context::set("trace.gen_ai.usage.input_tokens", &u.input.to_string());
            context::set("trace.gen_ai.usage.output_tokens", &u.output.to_string());
        }
        BodyEnd {
            tail,
            trailers: Vec::new(),
        }
    }
}

weir_sdk::plugin!(LlmGateway);
