//! The request/response pair as plugins see it through the `request`, `response` and `context`
//! host interfaces. The pipeline owns it and lends it to one plugin instance per hook call.

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Which hook is running; decides which half of the exchange is writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

/// Everything a hook may read or change about one request.
#[derive(Debug)]
pub struct Exchange {
    pub phase: Phase,
    /// The request head. In the response phase, a copy of what was sent upstream.
    pub request: http::request::Parts,
    /// The buffered request body, when some plugin in the chain asked for it.
    pub request_body: Option<Bytes>,
    /// The response head, in the response phase.
    pub response: Option<http::response::Parts>,
    /// The buffered response body, when some plugin in the chain asked for it.
    pub response_body: Option<Bytes>,
    pub context: Context,
    pub client_addr: SocketAddr,
    /// The host the client asked for (`Host` or `:authority`), before the head was rewritten
    /// to origin-form for the upstream.
    pub authority: Option<String>,
    /// `http` or `https`, as the client connected.
    pub scheme: &'static str,
    pub route: Arc<str>,
    /// The request's trace span (a no-op context when telemetry is off).
    pub trace: opentelemetry::Context,
    /// `trace.*` attributes body hooks set, for the span's end.
    pub late_trace: LateAttributes,
    /// Event streams to follow a plugin's own answer (`outbound.answer-with-events`).
    pub merged: Option<crate::capability::events::MergedEvents>,
    /// The `[paths]` rules a path a plugin sets is made canonical with.
    pub paths: crate::config::PathsConfig,
}

/// The per-request context shared by the plugins of one chain.
#[derive(Debug, Default, Clone)]
pub struct Context {
    pub principal: Option<String>,
    pub attributes: HashMap<String, String>,
}

impl Exchange {
    /// Sets the request target's path (and query), made canonical by the `[paths]` rules as
    /// the client's was (a plugin cannot hand later plugins and the upstream a spelling they
    /// would read differently); `Err` when it has no canonical form.
    pub(crate) fn set_path(&mut self, path: &str) -> Result<(), ()> {
        let (p, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let canonical = match crate::canonical::path(p, &self.paths) {
            Ok(c) if p.starts_with('/') => c,
            _ => return Err(()),
        };
        let target = match query {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical.into_owned(),
        };
        let pq: http::uri::PathAndQuery = target.parse().map_err(|_| ())?;
        let mut parts = std::mem::take(&mut self.request.uri).into_parts();
        parts.path_and_query = Some(pq);
        self.request.uri = http::Uri::from_parts(parts).map_err(|_| ())?;
        Ok(())
    }

    /// A copy of the request head (without extensions) for the response phase.
    pub fn request_head_copy(parts: &http::request::Parts) -> http::request::Parts {
        let (mut copy, ()) = http::Request::new(()).into_parts();
        copy.method = parts.method.clone();
        copy.uri = parts.uri.clone();
        copy.version = parts.version;
        copy.headers = parts.headers.clone();
        copy
    }
}

/// `trace.*` attributes set by plugins from their body hooks (e.g. token counts, known at the
/// end of a streamed answer), added when the request span ends with the body.
pub type LateAttributes = Arc<Mutex<Vec<(String, String)>>>;
