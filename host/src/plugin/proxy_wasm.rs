//! proxy-wasm filters as chain entries: the ABI host of `weir-proxy-wasm` driven by Weir's
//! hooks, under the same limits as components.
//!
//! A hook becomes the filter's stream callbacks: `on-request` opens an HTTP context and runs
//! the request's headers (and, with `body = "buffered"`, its whole body), `on-response` the
//! response's; streamed bodies go chunk by chunk through the body callbacks, held while the
//! filter pauses them. HTTP calls the filter dispatches are made through the plugin's
//! `outbound` grant while the stream waits, outside the call's CPU budget (as a component's
//! `outbound` waits are), and each response is delivered before the stream goes on. Every
//! callback runs under the hook's execution budget and wall-clock backstop and the plugin's
//! memory limit; a failure is a [`HookFailure`] like a component's.

use super::budget::{CallLimits, metered};
use super::filter_head::{
    apply_request, apply_response, expects_no_body, local, request_pairs, trailer_map, write_back,
};
use super::host::MemoryLimiter;
use super::instance::{Bounds, arm_with, classify};
use super::{BodyAccess, BodyEnd, PluginInfo, RequestDecision, ResponseDecision};
use super::{Direction, FilterSettings, HookFailure, LoadedPlugin, PluginSettings};
use crate::capability::{PluginCapabilities, Services};
use crate::config::FilterBody;
use crate::exchange::Exchange;
use bytes::Bytes;
use http::HeaderMap;
use std::collections::VecDeque;
use std::sync::Arc;
use weir_proxy_wasm::{
    CallResponse, Configuration, Env, Filter, FilterError, FilterInstance, HttpCall, Outcome, Side,
};

/// The embedder's part of a filter instance's store: its memory limit and call limits.
pub(crate) struct FilterHost {
    limiter: MemoryLimiter,
    call: CallLimits,
}

type Instance = FilterInstance<FilterHost>;

/// A loaded filter: the linked module, its settings and the services its instances use.
pub(crate) struct FilterCode {
    filter: Filter<FilterHost>,
    settings: FilterSettings,
    env: Env,
}

/// The largest HTTP call response body a filter is handed.
const CALL_BODY_LIMIT: u32 = 1 << 20;

impl FilterCode {
    pub(super) fn new(
        name: &str,
        module: wasmtime::Module,
        settings: &PluginSettings,
        caps: &Arc<PluginCapabilities>,
        services: &Services,
    ) -> Result<FilterCode, String> {
        let filter = Filter::new(module).map_err(|e| match e {
            FilterError::NotAFilter(why) => why,
            other => other.to_string(),
        })?;
        let plugin: Arc<str> = name.into();
        let env = Env {
            shared: super::filter_services::shared_store(&plugin, caps, services),
            metrics: super::filter_services::metric_sink(&plugin, caps),
            clusters: caps.outbound.names().into(),
        };
        Ok(FilterCode {
            filter,
            settings: settings.filter.clone(),
            env,
        })
    }

    /// What the chain needs to know of every instance: a response hook always (the response
    /// callbacks), bodies as the operator chose.
    pub(super) fn info(&self) -> PluginInfo {
        let limit = u32::try_from(self.settings.body_limit).unwrap_or(u32::MAX);
        let body = match self.settings.body {
            FilterBody::Streamed => BodyAccess::Streamed,
            FilterBody::Buffered => BodyAccess::Buffered(limit),
            FilterBody::None => BodyAccess::None,
        };
        PluginInfo {
            response_hook: true,
            request_body: body,
            response_body: body,
        }
    }
}

/// One filter instance serving a chain entry, and what it holds of the current request.
pub(crate) struct FilterRun {
    instance: Instance,
    code: Arc<FilterCode>,
    plugin: Arc<str>,
    caps: Arc<PluginCapabilities>,
    /// Body bytes the filter paused, per direction (request, response).
    held: [Vec<u8>; 2],
    /// The plugin's digest, for callback spans.
    digest: Arc<str>,
    /// The wait allowed an HTTP call the filter gave no timeout (the plugin's `hook_timeout`).
    call_timeout: std::time::Duration,
    /// The request's trace while a head callback runs: each callback gets a span under it
    /// (body callbacks get none, as body hooks get none).
    trace: Option<opentelemetry::Context>,
}

/// What a callback's span says it decided.
trait Describe {
    fn describe(&self) -> String;
}

impl Describe for Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Continue => "continue".into(),
            Outcome::Pause => "pause".into(),
            Outcome::Respond(r) => format!("respond {}", r.status),
        }
    }
}

impl Describe for () {
    fn describe(&self) -> String {
        "done".into()
    }
}

impl FilterRun {
    /// Instantiates the filter and configures its root context with the chain entry's
    /// configuration, metered as one call.
    pub(super) async fn create(
        plugin: &LoadedPlugin,
        code: &Arc<FilterCode>,
        config: &str,
        bounds: Bounds,
    ) -> Result<FilterRun, HookFailure> {
        let host = FilterHost {
            limiter: MemoryLimiter {
                limit: plugin.settings.memory_limit,
                peak: 0,
            },
            call: CallLimits::default(),
        };
        let meter = bounds.meter(&host.call);
        let configuration = Configuration {
            vm: code.settings.vm_config.clone().into_bytes(),
            plugin: config.as_bytes().to_vec(),
            root_id: code.settings.root_id.clone(),
        };
        let setup = |store: &mut wasmtime::Store<weir_proxy_wasm::State<FilterHost>>| {
            store.limiter(|s| &mut s.user.limiter);
            store.epoch_deadline_callback(|ctx| {
                ctx.data().user.call.check()?;
                Ok(wasmtime::UpdateDeadline::Yield(1))
            });
            arm_with(store, bounds, |s| &mut s.user.call);
        };
        let env = code.env.clone();
        let created = FilterInstance::new(&code.filter, configuration, env, host, setup);
        let created = metered(meter, async { Ok(created.await) }).await;
        let mut run = match created {
            Ok(Ok(instance)) => FilterRun {
                instance,
                code: code.clone(),
                plugin: plugin.name.clone(),
                caps: plugin.caps.clone(),
                held: [Vec::new(), Vec::new()],
                digest: plugin.digest.as_str().into(),
                call_timeout: plugin.settings.hook_timeout,
                trace: None,
            },
            Ok(Err(e)) => return Err(failure(e)),
            Err(e) => return Err(classify(e)),
        };
        run.flush_logs();
        Ok(run)
    }

    pub(super) fn memory_peak(&self) -> usize {
        self.instance.user().limiter.peak
    }

    /// Runs the callback `name` (`f` on the instance) as one metered call under `bounds`, in
    /// its own span when the request is traced.
    async fn guard<R: Describe>(
        &mut self,
        bounds: Bounds,
        name: &'static str,
        f: impl AsyncFnOnce(&mut Instance) -> Result<R, FilterError>,
    ) -> Result<R, HookFailure> {
        let span = self
            .trace
            .as_ref()
            .and_then(|cx| crate::telemetry::hook(cx, &self.plugin, &self.digest, name));
        arm_with(self.instance.store_mut(), bounds, |s| &mut s.user.call);
        let meter = bounds.meter(&self.instance.user().call);
        let instance = &mut self.instance;
        let result = metered(meter, async { Ok(f(instance).await) }).await;
        self.flush_logs();
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(failure(e)),
            Err(e) => Err(classify(e)),
        };
        if span.is_some() {
            let outcome = result.as_ref().map(Describe::describe);
            crate::telemetry::end_hook(span, outcome.map_err(ToString::to_string));
        }
        result
    }

    /// The filter's log lines, into the gateway's log with the plugin's name.
    fn flush_logs(&mut self) {
        let plugin = &*self.plugin;
        let (lines, dropped) = self.instance.take_logs();
        if dropped > 0 {
            tracing::warn!(
                plugin,
                dropped,
                "filter log lines dropped (too many in one call)"
            );
        }
        for (level, message) in lines {
            match level {
                0 => tracing::trace!(plugin, "{message}"),
                1 => tracing::debug!(plugin, "{message}"),
                2 => tracing::info!(plugin, "{message}"),
                3 => tracing::warn!(plugin, "{message}"),
                _ => tracing::error!(plugin, "{message}"),
            }
        }
    }

    /// Makes the HTTP calls the filter dispatched and delivers their responses, while the
    /// stream is paused for them; what the stream does then. Calls dispatched by a callback
    /// that did not pause are made and delivered too, without changing its outcome unless
    /// the filter answers.
    async fn settle(
        &mut self,
        bounds: Bounds,
        mut out: Outcome,
        response: bool,
    ) -> Result<Outcome, HookFailure> {
        let mut queue = VecDeque::new();
        loop {
            for call in self.instance.take_calls() {
                queue.push_back((call.token, self.start_call(call)));
            }
            let Some((token, pending)) = queue.pop_front() else {
                return Ok(out);
            };
            // Waiting on the network: outside the call, so it costs no budget.
            let reply = match pending {
                Some(pending) => self.finish_call(pending).await,
                None => None,
            };
            let next = self
                .guard(bounds, "proxy_on_http_call_response", async |f| {
                    f.call_response(token, reply, response).await
                })
                .await?;
            if matches!(out, Outcome::Pause) || matches!(next, Outcome::Respond(_)) {
                out = next;
            }
        }
    }

    fn start_call(&self, call: HttpCall) -> Option<crate::capability::outbound::PendingCall> {
        let pseudo = |name: &str| {
            call.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let spec = crate::capability::outbound::CallSpec {
            upstream: call.cluster.clone(),
            method: pseudo(":method").unwrap_or_default(),
            path: pseudo(":path").unwrap_or_default(),
            headers: call
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect(),
            body: call.body,
            // No timeout from the filter: the hook's backstop bounds the wait instead.
            timeout_ms: u32::try_from(call.timeout.as_millis())
                .ok()
                .filter(|ms| *ms > 0)
                .or_else(|| u32::try_from(self.call_timeout.as_millis()).ok()),
        };
        match self.caps.outbound.start(spec) {
            Ok(pending) => Some(pending),
            Err(e) => {
                let plugin = &*self.plugin;
                tracing::warn!(plugin, cluster = call.cluster, error = %e, "proxy_http_call failed");
                None
            }
        }
    }

    async fn finish_call(
        &self,
        mut pending: crate::capability::outbound::PendingCall,
    ) -> Option<CallResponse> {
        let upstream = pending.upstream.clone();
        let read = async {
            let mut incoming = pending.wait().await?;
            let body = incoming.read_body(CALL_BODY_LIMIT).await?;
            let mut headers = vec![(":status".to_string(), incoming.status.to_string())];
            headers.extend(incoming.headers.clone());
            Ok::<_, crate::capability::outbound::OutboundError>(CallResponse {
                headers,
                body,
                trailers: Vec::new(),
            })
        };
        match read.await {
            Ok(reply) => Some(reply),
            Err(e) => {
                let plugin = &*self.plugin;
                tracing::warn!(plugin, upstream, error = %e, "proxy_http_call failed");
                None
            }
        }
    }

    /// `on-request`: a new HTTP context, the request's headers and, when buffered, its body.
    pub(super) async fn on_request(
        &mut self,
        bounds: Bounds,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Result<RequestDecision, HookFailure>) {
        let result = self.request(bounds, &mut ex).await;
        (ex, result)
    }

    async fn request(
        &mut self,
        bounds: Bounds,
        ex: &mut Exchange,
    ) -> Result<RequestDecision, HookFailure> {
        self.trace = Some(ex.trace.clone());
        let properties = super::filter_services::RequestProperties::of(ex, &self.plugin);
        self.held = [Vec::new(), Vec::new()];
        self.guard(bounds, "proxy_on_context_create", async |f| {
            f.begin(Some(Box::new(properties))).await
        })
        .await?;
        let buffered = self.code.settings.body == FilterBody::Buffered;
        let headers = request_pairs(ex);
        let mut body = match buffered {
            true => ex
                .request_body
                .take()
                .map(|b| b.to_vec())
                .unwrap_or_default(),
            false => Vec::new(),
        };
        let no_body = if buffered {
            body.is_empty()
        } else {
            expects_no_body(&ex.request.headers)
        };
        let out = self
            .guard(bounds, "proxy_on_request_headers", async |f| {
                f.headers(Side::Request, headers, no_body).await
            })
            .await?;
        let mut out = self.settle(bounds, out, false).await?;
        if buffered && !no_body && !matches!(out, Outcome::Respond(_)) {
            let o = self
                .guard(bounds, "proxy_on_request_body", async |f| {
                    f.body(Side::Request, &mut body, true).await
                })
                .await?;
            out = self.settle(bounds, o, false).await?;
        }
        apply_request(ex, self.instance.header_map(Side::Request))?;
        write_back(ex, &self.instance);
        if buffered {
            ex.request_body = Some(Bytes::from(body));
        }
        match out {
            Outcome::Continue => Ok(RequestDecision::Continue),
            Outcome::Respond(r) => Ok(RequestDecision::Respond(local(r))),
            // Streamed: the filter may be waiting for the body, which its body callbacks get.
            Outcome::Pause if !buffered && !no_body => Ok(RequestDecision::Continue),
            Outcome::Pause => Err(waits_for_nothing()),
        }
    }

    /// `on-response`: the response's headers and, when buffered, its body; then, unless the
    /// body still streams, the end of the HTTP context.
    pub(super) async fn on_response(
        &mut self,
        bounds: Bounds,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Result<ResponseDecision, HookFailure>) {
        let result = self.response(bounds, &mut ex).await;
        (ex, result)
    }

    async fn response(
        &mut self,
        bounds: Bounds,
        ex: &mut Exchange,
    ) -> Result<ResponseDecision, HookFailure> {
        self.trace = Some(ex.trace.clone());
        let Some(response) = ex.response.as_mut() else {
            return Ok(ResponseDecision::Continue);
        };
        let code = i64::from(response.status.as_u16()).to_le_bytes().to_vec();
        self.instance.set_property("response.code", code);
        let mut headers = vec![(":status".to_string(), response.status.as_str().to_string())];
        headers.extend(crate::headers::to_fields(&response.headers));
        let settings = &self.code.settings;
        let buffered = settings.body == FilterBody::Buffered;
        let mut body = match buffered {
            true => ex
                .response_body
                .take()
                .map(|b| b.to_vec())
                .unwrap_or_default(),
            false => Vec::new(),
        };
        let streams = settings.body == FilterBody::Streamed;
        let eos = if buffered { body.is_empty() } else { !streams };
        let out = self
            .guard(bounds, "proxy_on_response_headers", async |f| {
                f.headers(Side::Response, headers, eos).await
            })
            .await?;
        let mut out = self.settle(bounds, out, true).await?;
        if buffered && !eos && !matches!(out, Outcome::Respond(_)) {
            let o = self
                .guard(bounds, "proxy_on_response_body", async |f| {
                    f.body(Side::Response, &mut body, true).await
                })
                .await?;
            out = self.settle(bounds, o, true).await?;
        }
        apply_response(ex, self.instance.header_map(Side::Response))?;
        if buffered {
            ex.response_body = Some(Bytes::from(body));
        }
        if !streams {
            self.guard(bounds, "proxy_on_done", async |f| f.done().await)
                .await?;
        }
        match out {
            Outcome::Respond(r) => Ok(ResponseDecision::Replace(local(r))),
            Outcome::Continue => Ok(ResponseDecision::Continue),
            Outcome::Pause if streams => Ok(ResponseDecision::Continue),
            Outcome::Pause => Err(waits_for_nothing()),
        }
    }

    /// The root context's tick period, if the filter asked for ticks.
    pub(super) fn tick_period(&self) -> Option<std::time::Duration> {
        let ms = self.instance.tick_period_ms();
        (ms > 0).then(|| std::time::Duration::from_millis(u64::from(ms)))
    }

    /// One tick of the root context (`proxy_on_tick`), and the HTTP calls it dispatched.
    pub(super) async fn tick(&mut self, bounds: Bounds) -> Result<(), HookFailure> {
        self.guard(bounds, "proxy_on_tick", async |f| f.tick().await)
            .await?;
        self.settle(bounds, Outcome::Continue, false)
            .await
            .map(drop)
    }

    /// One chunk of a streamed body: held while the filter pauses, released when it continues.
    pub(super) async fn on_body_chunk(
        &mut self,
        bounds: Bounds,
        direction: Direction,
        chunk: &[u8],
    ) -> Result<Vec<u8>, HookFailure> {
        let side = usize::from(matches!(direction, Direction::Response));
        self.trace = None;
        let mut body = std::mem::take(&mut self.held[side]);
        body.extend_from_slice(chunk);
        let out = self.body_callback(bounds, side, &mut body, false).await?;
        match out {
            Outcome::Continue => Ok(body),
            Outcome::Pause if body.len() > self.code.settings.body_limit => {
                Err(HookFailure::BadDecision(format!(
                    "held more than body_limit ({} bytes) of a paused body",
                    self.code.settings.body_limit
                )))
            }
            Outcome::Pause => {
                self.held[side] = body;
                Ok(Vec::new())
            }
            Outcome::Respond(_) => Err(answered_too_late()),
        }
    }

    /// The end of a streamed body: the last body callback (`end_of_stream` unless trailers
    /// follow), the trailers callback with `trailers` (which come back as the filter left
    /// them; what it held of the body goes on with them, as in Envoy), then, for the response,
    /// the end of the HTTP context.
    pub(super) async fn on_body_end(
        &mut self,
        bounds: Bounds,
        direction: Direction,
        trailers: &mut HeaderMap,
    ) -> Result<BodyEnd, HookFailure> {
        let side = usize::from(matches!(direction, Direction::Response));
        self.trace = None;
        let mut body = std::mem::take(&mut self.held[side]);
        let end = trailers.is_empty();
        let mut out = self.body_callback(bounds, side, &mut body, end).await?;
        if !end {
            let which = if side == 0 {
                Side::Request
            } else {
                Side::Response
            };
            let mut pairs = crate::headers::to_fields(trailers);
            let o = self
                .guard(bounds, "proxy_on_trailers", async |f| {
                    f.trailers(which, &mut pairs).await
                })
                .await?;
            let after = self.settle(bounds, o, side == 1).await?;
            // The trailers end the stream: what was held goes on unless the filter answered.
            out = match (out, after) {
                (Outcome::Respond(r), _) | (_, Outcome::Respond(r)) => Outcome::Respond(r),
                _ => Outcome::Continue,
            };
            *trailers = trailer_map(&pairs)?;
        }
        if side == 1 {
            self.guard(bounds, "proxy_on_done", async |f| f.done().await)
                .await?;
        }
        match out {
            Outcome::Continue => Ok(BodyEnd {
                tail: body,
                trailers: Vec::new(),
            }),
            Outcome::Pause => Err(waits_for_nothing()),
            Outcome::Respond(_) => Err(answered_too_late()),
        }
    }

    async fn body_callback(
        &mut self,
        bounds: Bounds,
        side: usize,
        body: &mut Vec<u8>,
        end: bool,
    ) -> Result<Outcome, HookFailure> {
        let out = self
            .guard(bounds, "proxy_on_body", async |f| {
                let side = if side == 0 {
                    Side::Request
                } else {
                    Side::Response
                };
                f.body(side, body, end).await
            })
            .await?;
        self.settle(bounds, out, side == 1).await
    }
}

fn failure(e: FilterError) -> HookFailure {
    match e {
        FilterError::Failed(e) => classify(e),
        refused @ FilterError::Refused { .. } => HookFailure::Rejected(refused.to_string()),
        FilterError::NotAFilter(why) => HookFailure::Instantiate(why),
    }
}

fn waits_for_nothing() -> HookFailure {
    HookFailure::BadDecision(
        "the filter paused the stream with no HTTP call in flight and nothing more to come".into(),
    )
}

fn answered_too_late() -> HookFailure {
    HookFailure::BadDecision(
        "the filter answered from a body callback after the headers had gone on \
         (give the plugin body = \"buffered\" to let it answer there)"
            .into(),
    )
}
