//! The chain entry's configuration, validated once at `init` into [`Guard`]: the detectors in
//! order, each with its action, direction and principals.

use crate::detect::Kind;
use serde::Deserialize;

/// What happens when a detector hits.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Refuse the message in the client's own error format.
    Block,
    /// Replace what matched (see [`Redaction`]) and let the message go on.
    Redact,
    /// Let the message go on untouched; only the audit record and the metric see the hit.
    Record,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Record => "record",
        }
    }
}

/// How a redacted match is written.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Redaction {
    /// Every letter and digit becomes `*`; separators stay, so the shape survives.
    #[default]
    Mask,
    /// `<DETECTOR_N>`: the same value gets the same placeholder throughout one request and its
    /// answer, so a model can still tell two redacted values apart.
    Placeholder,
}

/// Which messages a detector looks at.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum On {
    Request,
    Response,
}

/// What to do when a body cannot be inspected (not UTF-8, a binary protocol such as gRPC, or a
/// response larger than `max_body_bytes`).
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Uninspectable {
    /// Refuse it: what cannot be inspected cannot be let through unseen (the default).
    #[default]
    Block,
    /// Let it through and record that it was not inspected.
    Allow,
}

/// How a blocked MCP `tools/call` is answered.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum McpBlock {
    /// A tool result with `isError: true`, which the model sees and can react to (the default).
    #[default]
    ToolError,
    /// A JSON-RPC error.
    Error,
}

/// The external moderation call (the OpenAI moderation API's shape).
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ModerationConfig {
    /// The named upstream that serves `POST {path}` (it must be in the `outbound` grant).
    pub upstream: String,
    #[serde(default = "default_moderation_path")]
    pub path: String,
    /// Sent as `model` when set.
    #[serde(default)]
    pub model: Option<String>,
    /// A `[secrets]` name sent as `Authorization: Bearer …` (it must be in the `secrets` grant).
    #[serde(default)]
    pub secret: Option<String>,
    /// How long to wait for the verdict; the request waits at most this long for it.
    #[serde(default = "default_moderation_timeout")]
    pub timeout_ms: u32,
    /// When the service fails, times out or answers nonsense: `block` (fail closed, the
    /// default) or `allow` (fail open).
    #[serde(default)]
    pub on_failure: Uninspectable,
    /// Only these categories count as a hit; empty: the service's own `flagged`.
    #[serde(default)]
    pub categories: Vec<String>,
}

fn default_moderation_path() -> String {
    "/v1/moderations".into()
}
fn default_moderation_timeout() -> u32 {
    2000
}

/// One detector as written in the config.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// The detector's kind (see [`Kind`]).
    pub kind: String,
    /// Its name in audit records and metric labels; defaults to the kind.
    #[serde(default)]
    pub name: Option<String>,
    pub action: Action,
    #[serde(default)]
    pub redaction: Redaction,
    /// Which directions it inspects; default both (`moderation`: the request only).
    #[serde(default)]
    pub on: Option<Vec<On>>,
    /// Only for these principals (empty: everyone).
    #[serde(default)]
    pub principals: Vec<String>,
    /// Never for these principals.
    #[serde(default)]
    pub except_principals: Vec<String>,
    /// `regex`: the patterns (Rust `regex` syntax).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// `words`: words or phrases, matched case-insensitively as whole words.
    #[serde(default)]
    pub words: Vec<String>,
    /// `prompt-injection`: the score (0–1) from which it hits; default 0.5.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `moderation`: the service.
    #[serde(default)]
    pub moderation: Option<ModerationConfig>,
}

/// The whole chain entry's configuration.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub detectors: Vec<DetectorConfig>,
    /// The largest request body inspected (a larger one is answered 413 by the gateway) and
    /// the largest non-streamed response body inspected (beyond: `uninspectable`).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u32,
    /// The most text of a streamed answer held back at once, waiting to see whether it is the
    /// start of a match (see docs/plugins.md).
    #[serde(default = "default_max_holdback")]
    pub max_holdback: usize,
    #[serde(default)]
    pub uninspectable: Uninspectable,
    #[serde(default)]
    pub mcp_block: McpBlock,
}

/// 1 MiB: with every detector on, inspecting it takes about 50 ms of CPU, half the default
/// `hook_budget` (docs/plugins.md says how to raise both).
fn default_max_body() -> u32 {
    1 << 20
}
fn default_max_holdback() -> usize {
    4096
}

/// A detector ready to run.
pub struct Detector {
    pub name: String,
    /// The kind as configured (`payment-card`), for audit records.
    pub kind_name: String,
    pub kind: Kind,
    pub action: Action,
    pub redaction: Redaction,
    pub request: bool,
    pub response: bool,
    principals: Vec<String>,
    except_principals: Vec<String>,
}

impl Detector {
    /// Whether it inspects this direction for this principal.
    pub fn applies(&self, response: bool, principal: Option<&str>) -> bool {
        let direction = if response {
            self.response
        } else {
            self.request
        };
        let p = principal.unwrap_or_default();
        direction
            && (self.principals.is_empty() || self.principals.iter().any(|x| x == p))
            && !self.except_principals.iter().any(|x| x == p)
    }
}

/// The validated configuration.
pub struct Guard {
    pub detectors: Vec<Detector>,
    pub max_body_bytes: u32,
    pub max_holdback: usize,
    pub uninspectable: Uninspectable,
    pub mcp_block: McpBlock,
}

/// A name usable as a metric label value and in a placeholder.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Guard {
    pub fn new(c: Config) -> Result<Guard, String> {
        if c.detectors.is_empty() {
            return Err("`detectors`: list at least one detector".into());
        }
        if c.max_holdback < 64 {
            return Err(format!(
                "`max_holdback` is {}: at least 64 is needed to catch a split card number",
                c.max_holdback
            ));
        }
        let mut detectors: Vec<Detector> = Vec::new();
        for (i, d) in c.detectors.into_iter().enumerate() {
            let name = d.name.clone().unwrap_or_else(|| d.kind.clone());
            let at = format!("`detectors[{i}]` ({name})");
            if !valid_name(&name) {
                return Err(format!(
                    "{at}: `name` must be 1–64 letters, digits, `-` or `_`"
                ));
            }
            if detectors.iter().any(|x| x.name == name) {
                return Err(format!(
                    "{at}: another detector is already named {name:?}; give one a `name`"
                ));
            }
            let kind = Kind::parse(&d).map_err(|e| format!("{at}: {e}"))?;
            if d.action == Action::Redact && !kind.redacts() {
                return Err(format!(
                    "{at}: a `{}` detector finds no span to redact; use `block` or `record`",
                    d.kind
                ));
            }
            let default_on = if matches!(kind, Kind::Moderation(_)) {
                vec![On::Request]
            } else {
                vec![On::Request, On::Response]
            };
            let on = d.on.clone().unwrap_or(default_on);
            if on.is_empty() {
                return Err(format!("{at}: `on` is empty, so it would never run"));
            }
            if matches!(kind, Kind::Moderation(_)) && on.contains(&On::Response) {
                return Err(format!(
                    "{at}: moderation runs on requests only (an answer's verdict would come \
                     after the answer has begun to reach the client)"
                ));
            }
            detectors.push(Detector {
                name,
                kind_name: d.kind.clone(),
                kind,
                action: d.action,
                redaction: d.redaction,
                request: on.contains(&On::Request),
                response: on.contains(&On::Response),
                principals: d.principals,
                except_principals: d.except_principals,
            });
        }
        Ok(Guard {
            detectors,
            max_body_bytes: c.max_body_bytes,
            max_holdback: c.max_holdback,
            uninspectable: c.uninspectable,
            mcp_block: c.mcp_block,
        })
    }
}
