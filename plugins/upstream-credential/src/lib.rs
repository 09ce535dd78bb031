//! `upstream-credential`: attaches a credential from the operator's `[secrets]` to requests on
//! their way upstream, so clients never hold it and never choose it. Whatever the client sent in
//! that header is removed first.
//!
//! Config: `secret` (the secret's name, required), `header` (default `authorization`), `prefix`
//! (default `""`, e.g. `"Bearer "`). Needs `capabilities = { secrets = ["<secret>"] }`. If the
//! secret cannot be read (not granted), the request is answered 500 and the reason logged:
//! sending it upstream without its credential would only fail later and less clearly.

use serde::Deserialize;
use weir_sdk::secrets::{self, SecretError};
use weir_sdk::{Decision, LocalResponse, Plugin, log, request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    secret: String,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    prefix: String,
}

fn default_header() -> String {
    "authorization".into()
}

struct UpstreamCredential(Config);

impl Plugin for UpstreamCredential {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.secret.is_empty() || config.header.is_empty() {
            return Err("`secret` and `header` must not be empty".into());
        }
        Ok(UpstreamCredential(config))
    }

    fn on_request(&mut self) -> Decision {
        let c = &self.0;
        let _ = request::remove_header(&c.header);
        match secrets::get(&c.secret) {
            Ok(value) => match request::set_header(&c.header, &format!("{}{value}", c.prefix)) {
                Ok(()) => Decision::Continue,
                Err(e) => {
                    log::error(&format!(
                        "secret {:?} is not a valid header value: {e:?}",
                        c.secret
                    ));
                    Decision::Respond(
                        LocalResponse::new(500).text("upstream credential unavailable\n"),
                    )
                }
            },
            Err(SecretError::NotGranted(name)) => {
                log::error(&format!("secret {name:?} is not granted to this plugin"));
                Decision::Respond(LocalResponse::new(500).text("upstream credential unavailable\n"))
            }
        }
    }
}

weir_sdk::plugin!(UpstreamCredential);
