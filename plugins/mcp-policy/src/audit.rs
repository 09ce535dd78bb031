//! The audit record of one `tools/call`: to the log (one JSON object after `audit `) and to the
//! metrics `weir_plugin_mcp_tool_calls_total` and `weir_plugin_mcp_tool_call_seconds`, whose
//! labels are bounded (configured tool names or `other`; status `ok`, `tool-error`, `error`).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use weir_sdk::{log, metrics};

/// How arguments appear in the record.
#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Arguments {
    /// A SHA-256 of the arguments' JSON (keys sorted): equal calls can be matched up, nothing
    /// is disclosed.
    #[default]
    Digest,
    /// Argument names with their JSON types, no values.
    Redacted,
    /// The arguments as sent. Only for servers whose arguments carry no secrets.
    Full,
}

pub struct Record<'a> {
    pub principal: Option<&'a str>,
    pub server: &'a str,
    pub tool: &'a str,
    /// Whether `tool` is a name the operator configured, which metrics may carry.
    pub known_tool: bool,
    pub arguments: &'a Value,
    pub decision: &'a str,
    pub reason: Option<&'a str>,
    pub status: &'a str,
    pub latency_ms: f64,
}

fn shown(mode: Arguments, args: &Value) -> Value {
    match mode {
        Arguments::Full => args.clone(),
        Arguments::Digest => {
            let hash = Sha256::digest(args.to_string().as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            json!(format!("sha256:{hex}"))
        }
        Arguments::Redacted => match args {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), json!(type_name(v))))
                    .collect::<Map<_, _>>(),
            ),
            other => json!(type_name(other)),
        },
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub fn write(record: &Record, mode: Arguments) {
    let line = json!({
        "event": "mcp.tools/call",
        "principal": record.principal,
        "server": record.server,
        "tool": record.tool,
        "arguments": shown(mode, record.arguments),
        "decision": record.decision,
        "reason": record.reason,
        "status": record.status,
        "latency_ms": (record.latency_ms * 1000.0).round() / 1000.0,
    });
    log::info(&format!("audit {line}"));
    // Metric labels come only from configured names and fixed sets, never from what a client
    // sent: a made-up tool name is counted as `other` (the log above keeps the real one).
    let (server, tool) = if record.known_tool {
        (record.server, record.tool)
    } else {
        ("other", "other")
    };
    let status = match record.status {
        s @ ("ok" | "tool-error") => s,
        _ => "error",
    };
    let labels = [
        ("server", server),
        ("tool", tool),
        ("decision", record.decision),
        ("status", status),
    ];
    metrics::counter_add("mcp_tool_calls", 1, &labels);
    if record.decision == "allow" {
        metrics::histogram_record(
            "mcp_tool_call_seconds",
            record.latency_ms / 1000.0,
            &[("server", server), ("tool", tool)],
        );
    }
}
