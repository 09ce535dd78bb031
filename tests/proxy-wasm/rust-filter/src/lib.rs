//! Header edits, configuration parsing, a local response, a tick period, logging, properties
//! and a shared-data counter updated with compare-and-swap: what the SDK's published examples
//! (`http_headers`, `http_config`, `http_auth_random`, shared data) cover.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use serde::Deserialize;

#[derive(Deserialize, Clone, Default)]
struct Config {
    /// Added to every request.
    header: String,
    value: String,
    /// A request carrying this header is refused with 403.
    deny_if: Option<String>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    config: Config,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("no configuration");
            return false;
        };
        match serde_json::from_slice(&bytes) {
            Ok(c) => {
                self.config = c;
                self.set_tick_period(std::time::Duration::from_secs(5));
                log::info!("configured: header {}", self.config.header);
                true
            }
            Err(e) => {
                log::error!("bad configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    config: Config,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(deny) = &self.config.deny_if
            && self.get_http_request_header(deny).is_some()
        {
            self.send_http_response(403, vec![("x-denied-by", "rust-filter")], Some(b"denied\n"));
            return Action::Pause;
        }
        let seen = self.get_http_request_headers().len();
        let path = self
            .get_property(vec!["request", "path"])
            .map(|p| String::from_utf8_lossy(&p).into_owned());
        if let Some(path) = path {
            self.set_http_request_header("x-path-property", Some(&path));
        }
        // Count requests in shared data: read, add one, write back if nobody wrote meanwhile.
        let count = loop {
            let (value, cas) = self.get_shared_data("requests");
            let n = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            match self.set_shared_data("requests", Some(n.to_string().as_bytes()), cas) {
                Ok(()) => break n,
                Err(Status::CasMismatch) => continue,
                Err(e) => {
                    log::error!("shared data: {e:?}");
                    break 0;
                }
            }
        };
        self.set_http_request_header("x-request-count", Some(&count.to_string()));
        self.set_http_request_header(&self.config.header, Some(&self.config.value));
        self.add_http_request_header("x-headers-seen", &seen.to_string());
        self.set_http_request_header("x-remove-me", None);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        self.add_http_response_header("x-filtered-path", &path);
        Action::Continue
    }
}
