//! The detectors: what each kind finds, and how its settings are checked. Kinds that find spans
//! (everything but `prompt-injection` and `moderation`) can redact.

mod injection;
mod pii;
mod secrets;

pub use injection::score as injection_score;
pub use secrets::open_private_key;

use crate::config::{DetectorConfig, ModerationConfig};
use regex::Regex;

/// Where a match lies in a text, in bytes (always on character boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A detector's kind, with its compiled settings.
pub enum Kind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    IpAddress,
    CloudKey,
    PrivateKey,
    BearerToken,
    Jwt,
    /// Operator patterns.
    Regex(Vec<Regex>),
    /// Operator words and phrases, one case-insensitive whole-word pattern, and each phrase
    /// as lower-case words (a stream holds back the words that may begin one).
    Words(Regex, Vec<Vec<String>>),
    /// Heuristic prompt-injection score, hitting from this threshold.
    Injection(f64),
    /// The external moderation service.
    Moderation(ModerationConfig),
}

/// The kinds a config may name.
pub const KINDS: &[&str] = &[
    "email",
    "phone",
    "payment-card",
    "iban",
    "us-ssn",
    "ip-address",
    "cloud-key",
    "private-key",
    "bearer-token",
    "jwt",
    "regex",
    "words",
    "prompt-injection",
    "moderation",
];

impl Kind {
    /// The kind a detector's config describes; refuses settings that belong to another kind.
    pub fn parse(d: &DetectorConfig) -> Result<Kind, String> {
        let stray = [
            ("patterns", !d.patterns.is_empty(), "regex"),
            ("words", !d.words.is_empty(), "words"),
            ("threshold", d.threshold.is_some(), "prompt-injection"),
            ("moderation", d.moderation.is_some(), "moderation"),
        ];
        for (field, set, owner) in stray {
            if set && d.kind != owner {
                return Err(format!(
                    "`{field}` belongs to kind `{owner}`, not `{}`",
                    d.kind
                ));
            }
        }
        Ok(match d.kind.as_str() {
            "email" => Kind::Email,
            "phone" => Kind::Phone,
            "payment-card" => Kind::PaymentCard,
            "iban" => Kind::Iban,
            "us-ssn" => Kind::UsSsn,
            "ip-address" => Kind::IpAddress,
            "cloud-key" => Kind::CloudKey,
            "private-key" => Kind::PrivateKey,
            "bearer-token" => Kind::BearerToken,
            "jwt" => Kind::Jwt,
            "regex" => {
                if d.patterns.is_empty() {
                    return Err("`patterns`: list at least one pattern".into());
                }
                let compiled = d
                    .patterns
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        // A pattern that matches the empty string would "redact" nothing
                        // everywhere; refuse it rather than flood the audit log.
                        let r = Regex::new(p).map_err(|e| format!("`patterns[{i}]`: {e}"))?;
                        if r.is_match("") {
                            return Err(format!("`patterns[{i}]` matches the empty text"));
                        }
                        Ok(r)
                    })
                    .collect::<Result<_, String>>()?;
                Kind::Regex(compiled)
            }
            "words" => {
                if d.words.iter().any(|w| w.trim().is_empty()) || d.words.is_empty() {
                    return Err("`words`: list at least one word, none empty".into());
                }
                let alternatives: Vec<String> =
                    d.words.iter().map(|w| regex::escape(w.trim())).collect();
                let pattern = format!(r"(?i)\b(?:{})\b", alternatives.join("|"));
                let phrases = d
                    .words
                    .iter()
                    .map(|w| w.split_whitespace().map(str::to_lowercase).collect())
                    .collect();
                let r = Regex::new(&pattern).map_err(|e| format!("`words`: {e}"))?;
                Kind::Words(r, phrases)
            }
            "prompt-injection" => {
                let t = d.threshold.unwrap_or(0.5);
                if !(t > 0.0 && t <= 1.0) {
                    return Err(format!("`threshold` is {t}: it must be in (0, 1]"));
                }
                Kind::Injection(t)
            }
            "moderation" => {
                let m = d
                    .moderation
                    .clone()
                    .ok_or("`moderation`: name the service (`{ upstream = \"…\" }`)")?;
                if m.timeout_ms == 0 {
                    return Err("`moderation.timeout_ms` must be above 0".into());
                }
                if !m.path.starts_with('/') {
                    return Err(format!(
                        "`moderation.path` {:?} must start with `/`",
                        m.path
                    ));
                }
                Kind::Moderation(m)
            }
            other => {
                return Err(format!(
                    "unknown kind {other:?}; the kinds are {}",
                    KINDS.join(", ")
                ));
            }
        })
    }

    /// Whether it finds spans (and so can redact).
    pub fn redacts(&self) -> bool {
        !matches!(self, Kind::Injection(_) | Kind::Moderation(_))
    }

    /// The spans it finds in `text` (none for the kinds that do not find spans).
    pub fn spans(&self, text: &str, out: &mut Vec<Span>) {
        match self {
            Kind::Email => pii::email(text, out),
            Kind::Phone => pii::phone(text, out),
            Kind::PaymentCard => pii::payment_card(text, out),
            Kind::Iban => pii::iban(text, out),
            Kind::UsSsn => pii::us_ssn(text, out),
            Kind::IpAddress => pii::ip_address(text, out),
            Kind::CloudKey => secrets::cloud_key(text, out),
            Kind::PrivateKey => secrets::private_key(text, out),
            Kind::BearerToken => secrets::bearer_token(text, out),
            Kind::Jwt => secrets::jwt(text, out),
            Kind::Regex(list) => {
                for r in list {
                    out.extend(r.find_iter(text).map(|m| Span {
                        start: m.start(),
                        end: m.end(),
                    }));
                }
            }
            Kind::Words(r, _) => out.extend(r.find_iter(text).map(|m| Span {
                start: m.start(),
                end: m.end(),
            })),
            Kind::Injection(_) | Kind::Moderation(_) => {}
        }
    }
}

/// The texts `f` finds in `text` (for the scanners' tests).
#[cfg(test)]
pub fn found(f: fn(&str, &mut Vec<Span>), text: &str) -> Vec<String> {
    let mut v = Vec::new();
    f(text, &mut v);
    v.iter().map(|s| text[s.start..s.end].to_string()).collect()
}
