//! What the micro-benchmarks share: the exchange a hook is lent, as the proxy would build it.

use std::net::SocketAddr;
use std::sync::Arc;
use weir::exchange::{Context, Exchange, Phase};

/// A `GET` of `path` on route `bench` from 127.0.0.1, with these headers.
pub fn exchange(path: &str, headers: &[(&str, &str)], authority: Option<&str>) -> Box<Exchange> {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (request, ()) = req.body(()).expect("request").into_parts();
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    Box::new(Exchange {
        phase: Phase::Request,
        request,
        request_body: None,
        response: None,
        response_body: None,
        context: Context::default(),
        client_addr: client,
        authority: authority.map(str::to_owned),
        scheme: "http",
        route: Arc::from("bench"),
    })
}
