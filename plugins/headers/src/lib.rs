//! `headers`: sets, adds and removes request and response headers.
//!
//! ```toml
//! config = { request = { set = { "x-user" = "${principal}" }, remove = ["cookie"] },
//!            response = { add = { "x-served-by" = "weir" } } }
//! ```
//! Values may use `${principal}`, `${route}` and `${ctx:KEY}` (a context attribute). A header
//! whose value expands to nothing is left out.

use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::{Decision, EditError, Info, Plugin, ResponseDecision, context, request, response};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Ops {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

impl Ops {
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    fn check(&self, side: &str) -> Result<(), String> {
        for name in self
            .set
            .keys()
            .chain(self.add.keys())
            .chain(self.remove.iter())
        {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !ok {
                return Err(format!("{side}: invalid header name {name:?}"));
            }
        }
        for value in self.set.values().chain(self.add.values()) {
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "{side}: header value {value:?} contains CR, LF or NUL"
                ));
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        set: fn(&str, &str) -> Result<(), EditError>,
        add: fn(&str, &str) -> Result<(), EditError>,
        remove: fn(&str) -> Result<(), EditError>,
    ) {
        for name in &self.remove {
            let _ = remove(name);
        }
        for (name, value) in &self.set {
            if let Some(v) = expand(value) {
                let _ = set(name, &v);
            }
        }
        for (name, value) in &self.add {
            if let Some(v) = expand(value) {
                let _ = add(name, &v);
            }
        }
    }
}

/// Expands `${principal}`, `${route}` and `${ctx:KEY}`; `None` if the result is empty.
fn expand(template: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let var = &rest[start + 2..start + end];
        let value = match var {
            "principal" => context::principal(),
            "route" => Some(request::route()),
            _ => var.strip_prefix("ctx:").and_then(context::get),
        };
        out.push_str(&value.unwrap_or_default());
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: Ops,
    #[serde(default)]
    response: Ops,
}

struct Headers(Config);

impl Plugin for Headers {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.request.check("request")?;
        config.response.check("response")?;
        if config.request.is_empty() && config.response.is_empty() {
            return Err("nothing to do: give `request` or `response` operations".into());
        }
        Ok(Headers(config))
    }

    fn info(&self) -> Info {
        Info {
            response_hook: !self.0.response.is_empty(),
            ..Info::default()
        }
    }

    fn on_request(&mut self) -> Decision {
        self.0.request.apply(
            request::set_header,
            request::append_header,
            request::remove_header,
        );
        Decision::Continue
    }

    fn on_response(&mut self) -> ResponseDecision {
        self.0.response.apply(
            response::set_header,
            response::append_header,
            response::remove_header,
        );
        ResponseDecision::Continue
    }
}

weir_sdk::plugin!(Headers);
