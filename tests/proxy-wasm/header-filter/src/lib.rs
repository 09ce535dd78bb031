//! Sets `x-user: bench` on every request and `x-served-by: weir` on every response, as the
//! `headers` WIT plugin does in the benchmark's chain: the same work through the other ABI.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Headers) });
}}

struct Headers;

impl Context for Headers {}

impl HttpContext for Headers {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_request_header("x-user", Some("bench"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-served-by", Some("weir"));
        Action::Continue
    }
}
