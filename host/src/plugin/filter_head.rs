//! The exchange as a proxy-wasm filter sees it: its heads as header pairs (pseudo-headers
//! first, as Envoy passes them), and the filter's edits back into the exchange, checked.

use super::HookFailure;
use super::LocalResponse;
use super::filter_services::ATTRIBUTES;
use crate::exchange::Exchange;
use http::{HeaderMap, HeaderName, HeaderValue};
use weir_proxy_wasm::{FilterInstance, Headers};

/// Whether a request head announces no body (Envoy's `end_of_stream` on the headers).
pub(super) fn expects_no_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    match length {
        Some(n) => n.trim() == "0",
        None => !headers.contains_key(http::header::TRANSFER_ENCODING),
    }
}

pub(super) fn local(r: weir_proxy_wasm::LocalResponse) -> LocalResponse {
    LocalResponse {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

/// The request head as Envoy hands it to filters: pseudo-headers first.
pub(super) fn request_pairs(ex: &Exchange) -> Headers {
    let req = &ex.request;
    let authority = ex.authority.clone().or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let path = req
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let mut pairs = vec![
        (":authority".to_string(), authority.unwrap_or_default()),
        (":path".to_string(), path),
        (":method".to_string(), req.method.as_str().to_string()),
        (":scheme".to_string(), ex.scheme.to_string()),
    ];
    pairs.extend(crate::headers::to_fields(&req.headers));
    pairs
}

/// Pseudo-headers (`:path`, `:status`...) as the filter left them.
type Pseudo<'a> = Vec<(&'a str, &'a str)>;

/// Header fields back from the filter; pseudo-headers are returned apart.
fn fields(pairs: &[(String, String)]) -> Result<(HeaderMap, Pseudo<'_>), HookFailure> {
    let mut map = HeaderMap::with_capacity(pairs.len());
    let mut pseudo = Vec::new();
    for (k, v) in pairs {
        if k.starts_with(':') {
            pseudo.push((k.as_str(), v.as_str()));
            continue;
        }
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| HookFailure::BadDecision(format!("invalid header name {k:?}")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| HookFailure::BadDecision(format!("invalid value for header {k}")))?;
        map.append(name, value);
    }
    Ok((map, pseudo))
}

/// Trailers back from the filter, checked like header fields.
pub(super) fn trailer_map(pairs: &[(String, String)]) -> Result<HeaderMap, HookFailure> {
    fields(pairs).map(|(map, _)| map)
}

/// The filter's request head into the exchange: fields, and a changed `:path` or `:method`
/// (a path made canonical as the client's was).
pub(super) fn apply_request(
    ex: &mut Exchange,
    pairs: &[(String, String)],
) -> Result<(), HookFailure> {
    let (map, pseudo) = fields(pairs)?;
    ex.request.headers = map;
    for (k, v) in pseudo {
        match k {
            ":path" if ex.request.uri.path_and_query().map(|p| p.as_str()) != Some(v) => {
                ex.set_path(v)
                    .map_err(|_| HookFailure::BadDecision(format!("invalid :path {v:?}")))?;
            }
            ":method" if ex.request.method.as_str() != v => {
                ex.request.method = http::Method::from_bytes(v.as_bytes())
                    .map_err(|_| HookFailure::BadDecision(format!("invalid :method {v:?}")))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The filter's response head into the exchange: fields and a changed `:status`.
pub(super) fn apply_response(
    ex: &mut Exchange,
    pairs: &[(String, String)],
) -> Result<(), HookFailure> {
    let (map, pseudo) = fields(pairs)?;
    let Some(response) = ex.response.as_mut() else {
        return Ok(());
    };
    response.headers = map;
    if let Some((_, status)) = pseudo.iter().find(|(k, _)| *k == ":status") {
        response.status = status
            .parse::<u16>()
            .ok()
            .and_then(|s| http::StatusCode::from_u16(s).ok())
            .ok_or_else(|| HookFailure::BadDecision(format!("invalid :status {status:?}")))?;
    }
    Ok(())
}

/// What the filter set among Weir's properties goes into the request's context, for the
/// plugins after it: `weir.principal` and `weir.attributes.<key>` (UTF-8 only).
pub(super) fn write_back<T: Send>(ex: &mut Exchange, instance: &FilterInstance<T>) {
    if let Some(p) = instance.property("weir.principal")
        && let Ok(p) = std::str::from_utf8(p)
        && ex.context.principal.as_deref() != Some(p)
    {
        ex.context.principal = Some(p.to_string());
    }
    for (k, v) in instance.properties_under(ATTRIBUTES) {
        let (Some(key), Ok(value)) = (k.strip_prefix(ATTRIBUTES), std::str::from_utf8(v)) else {
            continue;
        };
        if ex.context.attributes.get(key).map(String::as_str) != Some(value) {
            ex.context
                .attributes
                .insert(key.to_string(), value.to_string());
        }
    }
}
