//! Every hit, audited and counted: one `guardrail-audit {...}` record per detector that hit in a
//! message (the gateway adds the plugin, route and trace id and writes it to the audit log),
//! and the counter `weir_plugin_guardrail_hits_total{detector, action, direction}`. Records name
//! the detector and count its matches; **never** what matched. Metric labels are configured
//! detector names and fixed sets only.

use crate::config::Guard;
use crate::scan::Tally;
use serde_json::{Value, json};
use weir_sdk::{log, metrics};

/// Where a record comes from.
pub struct Scope<'a> {
    pub direction: &'static str,
    pub protocol: &'static str,
    pub principal: Option<&'a str>,
}

/// One record and one count per detector that hit.
pub fn hits(guard: &Guard, tally: &Tally, scope: &Scope) {
    for &(det, n) in &tally.hits {
        let d = &guard.detectors[det];
        let mut extra = json!({"kind": d.kind_name, "count": n});
        if let (Some(score), crate::detect::Kind::Injection(_)) = (tally.score, &d.kind) {
            extra["score"] = json!((score * 100.0).round() / 100.0);
        }
        write(&d.name, d.action.name(), scope, extra, u64::from(n));
    }
}

/// A record for an event that is not a detector's match (`uninspectable`, a moderation
/// failure): `detector` is a fixed name.
pub fn write(detector: &str, action: &str, scope: &Scope, extra: Value, n: u64) {
    let mut line = json!({
        "event": "guardrail",
        "direction": scope.direction,
        "protocol": scope.protocol,
        "principal": scope.principal,
        "detector": detector,
        "action": action,
    });
    if let (Some(l), Value::Object(e)) = (line.as_object_mut(), extra) {
        l.extend(e);
    }
    log::info(&format!("guardrail-audit {line}"));
    metrics::counter_add(
        "guardrail_hits",
        n,
        &[
            ("detector", detector),
            ("action", action),
            ("direction", scope.direction),
        ],
    );
}
