//! `POST /mcp/catalog` on the admin API: the MCP catalog (tools, prompts, resources) of a route
//! as the principal behind some credentials sees it — after every plugin of the route, the
//! federation of `mcp-gateway` and the filtering of `mcp-policy` included — because the gateway
//! asks its own route for it, through a plain listener on loopback, with those credentials.
//!
//! The request body: `{"route": "mcp", "headers": {"x-api-key": "…"}}`. The gateway opens an
//! MCP session on the route (2025-06-18, which `mcp-gateway` serves whatever its servers speak),
//! asks for each list following `nextCursor` for at most [`MAX_PAGES`] pages, and ends the
//! session. A list the route refuses is reported in `errors`; the others still come back.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::time::Duration;

const MAX_PAGES: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(10);
const LISTS: &[(&str, &str)] = &[
    ("tools/list", "tools"),
    ("prompts/list", "prompts"),
    ("resources/list", "resources"),
];

/// Why the catalog could not be asked for at all.
pub(crate) struct Refused(pub StatusCode, pub String);

fn refused(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused(status, message.into())
}

/// Where to call the route: a plain listener it serves on (loopback for a wildcard address),
/// its path and the host it matches.
fn target(described: &Value, route: &str) -> Result<(String, String, Option<String>), Refused> {
    let routes = described["routes"].as_array().cloned().unwrap_or_default();
    let r = routes
        .iter()
        .find(|r| r["name"] == route)
        .ok_or_else(|| refused(StatusCode::NOT_FOUND, format!("no route {route:?}")))?;
    let m = &r["match"];
    let path = m["path"]
        .as_str()
        .or(m["path_prefix"].as_str())
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                format!("route {route:?} matches no path to call"),
            )
        })?;
    let serves = |name: &Value| {
        r["listeners"]
            .as_array()
            .is_none_or(|ls| ls.iter().any(|l| l == name))
    };
    let listeners = described["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let address = listeners
        .iter()
        .find(|l| l["tls"] == false && serves(&l["name"]))
        .and_then(|l| l["address"].as_str())
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                format!("route {route:?} is on no plain-HTTP listener"),
            )
        })?;
    let address = address
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    let host = m["host"]
        .as_str()
        .map(|h| h.trim_start_matches("*.").to_string());
    Ok((address, path.to_string(), host))
}

/// The JSON-RPC answer to request `id` in a JSON or event-stream body.
fn answer(content_type: Option<&str>, body: &[u8], id: u64) -> Option<Value> {
    if weir_wire::is_event_stream(content_type) {
        return weir_wire::sse::parse_all(body)
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data()?).ok())
            .find(|v| v["id"] == id);
    }
    serde_json::from_slice(body).ok()
}

/// An MCP session with the route, as a client in the 2025-06-18 era speaks it (which every
/// route of `mcp-gateway` serves, whatever its servers speak).
struct Session {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    /// The credentials, the route's host, and once initialised the session and version.
    headers: Vec<(String, String)>,
}

impl Session {
    async fn post(
        &self,
        method: http::Method,
        body: Option<Value>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
        let mut req = Request::builder()
            .method(method)
            .uri(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "no answer within 10 s".to_string())?
            .map_err(|e| format!("calling the route: {e}"))?;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(TIMEOUT, body.collect())
            .await
            .map_err(|_| "the answer did not end within 10 s".to_string())?
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// One request; its result, or why not.
    async fn rpc(
        &self,
        id: u64,
        method: &str,
        params: Value,
    ) -> Result<(Value, http::HeaderMap), String> {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, headers, bytes) = self.post(http::Method::POST, Some(body)).await?;
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
        let v = answer(ct, &bytes, id).ok_or_else(|| {
            format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })?;
        if let Some(e) = v.get("error") {
            return Err(format!("JSON-RPC error {}: {}", e["code"], e["message"]));
        }
        Ok((v["result"].clone(), headers))
    }

    async fn initialize(&mut self) -> Result<(), String> {
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": {},
                            "clientInfo": {"name": "weir-console", "version": env!("CARGO_PKG_VERSION")}});
        let (result, headers) = self.rpc(0, "initialize", params).await?;
        if let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.headers
                .push(("mcp-session-id".into(), sid.to_string()));
        }
        let version = result["protocolVersion"].as_str().unwrap_or("2025-06-18");
        self.headers
            .push(("mcp-protocol-version".into(), version.to_string()));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(http::Method::POST, Some(note)).await.map(|_| ())
    }

    /// Every page of one list.
    async fn list(&self, method: &str, key: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let params = cursor.as_ref().map_or(json!({}), |c| json!({"cursor": c}));
            let (result, _) = self.rpc(page as u64 + 1, method, params).await?;
            items.extend(result[key].as_array().cloned().unwrap_or_default());
            cursor = result["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok(items)
    }
}

/// The catalog of the route named in `body`, seen with its credentials.
pub(crate) async fn catalog(described: &Value, body: &[u8]) -> Result<Value, Refused> {
    let ask: Value = serde_json::from_slice(body).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let route = ask["route"].as_str().ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "`route` (a route name) is required",
        )
    })?;
    let (address, path, host) = target(described, route)?;
    let mut headers: Vec<(String, String)> = ask["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    if let Some(h) = host {
        headers.push(("host".into(), h));
    }
    let url = format!("http://{address}{path}");
    let mut session = Session {
        client: Client::builder(TokioExecutor::new()).build_http(),
        url: url.clone(),
        headers,
    };
    let mut out = json!({"route": route, "url": url, "errors": {}});
    if let Err(e) = session.initialize().await {
        out["errors"]["initialize"] = json!(e);
        return Ok(out);
    }
    for &(method, key) in LISTS {
        match session.list(method, key).await {
            Ok(items) => out[key] = Value::Array(items),
            Err(e) => out["errors"][key] = json!(e),
        }
    }
    // End the session: the route's servers need not keep it.
    let _ = session.post(http::Method::DELETE, None).await;
    Ok(out)
}
