//! `allowlist` in Rust: see ../README.md for the behaviour, identical in every language.

use serde::Deserialize;
use weir_sdk::{
    BodyAccess, Decision, Info, LocalResponse, Plugin, ResponseDecision, context, kv, request,
    response,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default = "default_tag")]
    tag: String,
    #[serde(default)]
    upper_body: bool,
    #[serde(default)]
    count: bool,
}

fn default_header() -> String {
    "x-user".into()
}
fn default_tag() -> String {
    "rust".into()
}

struct Allowlist(Config);

impl Plugin for Allowlist {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.allow.is_empty() {
            return Err("`allow` must not be empty".into());
        }
        Ok(Allowlist(config))
    }

    fn info(&self) -> Info {
        Info {
            response_hook: true,
            request_body: if self.0.upper_body {
                BodyAccess::Buffered(64 * 1024)
            } else {
                BodyAccess::None
            },
            ..Info::default()
        }
    }

    fn on_request(&mut self) -> Decision {
        let c = &self.0;
        if request::header("x-trap").is_some() {
            panic!("allowlist trap requested");
        }
        let user = match request::header(&c.header) {
            Some(u) if c.allow.contains(&u) => u,
            _ => {
                return Decision::Respond(
                    LocalResponse::new(403)
                        .header("x-denied-by", c.tag.clone())
                        .text("denied"),
                );
            }
        };
        let _ = request::set_header("x-allowed-user", &user);
        context::set_principal(&user);
        if c.count
            && let Ok(seen) = kv::increment(&format!("seen:{user}"), 1, None)
        {
            let _ = request::set_header("x-seen", &seen.to_string());
        }
        if c.upper_body {
            let body = request::body().unwrap_or_default();
            let _ = request::set_body(&body.to_ascii_uppercase());
        }
        Decision::Continue
    }

    fn on_response(&mut self) -> ResponseDecision {
        let _ = response::set_header("x-policy", &self.0.tag);
        ResponseDecision::Continue
    }
}

weir_sdk::plugin!(Allowlist);
