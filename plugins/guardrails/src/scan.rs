//! One message inspected: every applicable detector run over each text of it, redactions
//! applied, and the hits tallied for the audit record. The protocol modules decide which texts
//! of a message are inspected; this module does not know protocols.

use crate::config::{Action, Guard, Redaction};
use crate::detect::{Kind, Span, injection_score};
use std::collections::HashMap;

/// A match of detector `det`.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub span: Span,
    pub det: usize,
}

/// Stable placeholders for one request and its answer: the same value redacted by the same
/// detector always becomes the same `<NAME_N>`.
#[derive(Default)]
pub struct Placeholders {
    seen: HashMap<(usize, String), String>,
    next: HashMap<usize, usize>,
}

impl Placeholders {
    fn get(&mut self, det: usize, name: &str, value: &str) -> String {
        if let Some(p) = self.seen.get(&(det, value.to_string())) {
            return p.clone();
        }
        let n = self.next.entry(det).or_insert(0);
        *n += 1;
        let p = format!("<{}_{}>", name.to_uppercase().replace('-', "_"), n);
        self.seen.insert((det, value.to_string()), p.clone());
        p
    }
}

/// What the inspection of one message found.
#[derive(Default, Debug)]
pub struct Tally {
    /// Hits per detector index.
    pub hits: Vec<(usize, u32)>,
    /// The first detector whose action is `block` and that hit.
    pub blocked: Option<usize>,
    /// The highest prompt-injection score seen, when that detector hit.
    pub score: Option<f64>,
}

impl Tally {
    pub fn note(&mut self, det: usize, action: Action, n: u32) {
        match self.hits.iter_mut().find(|(d, _)| *d == det) {
            Some((_, c)) => *c += n,
            None => self.hits.push((det, n)),
        }
        if action == Action::Block && self.blocked.is_none() {
            self.blocked = Some(det);
        }
    }
}

/// The inspection of one message (one direction) of one request.
pub struct Inspection<'a> {
    guard: &'a Guard,
    /// The detectors that apply (direction, principal), excluding `moderation`.
    active: Vec<usize>,
    pub placeholders: &'a mut Placeholders,
    pub tally: Tally,
}

impl<'a> Inspection<'a> {
    pub fn new(
        guard: &'a Guard,
        response: bool,
        principal: Option<&str>,
        placeholders: &'a mut Placeholders,
    ) -> Self {
        let active = (0..guard.detectors.len())
            .filter(|&i| {
                let d = &guard.detectors[i];
                !matches!(d.kind, Kind::Moderation(_)) && d.applies(response, principal)
            })
            .collect();
        Inspection {
            guard,
            active,
            placeholders,
            tally: Tally::default(),
        }
    }

    /// Every span match in `text`, by every active detector, in text order.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut out = Vec::new();
        let mut spans = Vec::new();
        for &det in &self.active {
            spans.clear();
            self.guard.detectors[det].kind.spans(text, &mut spans);
            out.extend(spans.iter().map(|&span| Found { span, det }));
        }
        out.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
        out
    }

    /// How many of the last words of `text` may be the beginning of an active phrase (0 when
    /// none): a stream holds them back, so a phrase split across deltas is still seen whole.
    /// The last word may be cut short (`project fal`).
    pub fn phrase_start(&self, text: &str) -> usize {
        let mut best = 0;
        for &d in &self.active {
            let Kind::Words(_, phrases) = &self.guard.detectors[d].kind else {
                continue;
            };
            let longest = phrases.iter().map(Vec::len).max().unwrap_or(0);
            let tail: Vec<String> = text
                .split_whitespace()
                .rev()
                .take(longest)
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            for p in phrases {
                for k in (best + 1..=p.len().min(tail.len())).rev() {
                    let t = &tail[tail.len() - k..];
                    let whole = t[..k - 1] == p[..k - 1];
                    if whole && p[k - 1].starts_with(t[k - 1].as_str()) {
                        best = k;
                        break;
                    }
                }
            }
        }
        best
    }

    /// Runs the prompt-injection detectors over `text`, tallying a hit.
    pub fn injection(&mut self, text: &str) {
        let mut computed = None;
        for &det in &self.active {
            let d = &self.guard.detectors[det];
            if let Kind::Injection(threshold) = d.kind {
                let (score, _) = *computed.get_or_insert_with(|| injection_score(text));
                if score >= threshold {
                    self.tally.note(det, d.action, 1);
                    self.tally.score = Some(self.tally.score.unwrap_or(0.0).max(score));
                }
            }
        }
    }

    /// `text` with the matches in `found` tallied and, for `redact` detectors, replaced.
    /// Overlapping matches are merged into the first (the longest at a position).
    pub fn apply(&mut self, text: &str, found: &[Found]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in found {
            let d = &self.guard.detectors[f.det];
            self.tally.note(f.det, d.action, 1);
            if d.action != Action::Redact || f.span.start < at {
                continue;
            }
            out.push_str(&text[at..f.span.start]);
            let value = &text[f.span.start..f.span.end];
            match d.redaction {
                Redaction::Mask => out.extend(
                    value
                        .chars()
                        .map(|c| if c.is_alphanumeric() { '*' } else { c }),
                ),
                Redaction::Placeholder => {
                    out.push_str(&self.placeholders.get(f.det, &d.name, value));
                }
            }
            at = f.span.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Inspects one whole text: injection heuristics, then span detectors. Returns the text to
    /// send on when it changed.
    pub fn text(&mut self, text: &str) -> Option<String> {
        self.injection(text);
        let found = self.find(text);
        if found.is_empty() {
            return None;
        }
        let out = self.apply(text, &found);
        (out != text).then_some(out)
    }

    pub fn guard(&self) -> &Guard {
        self.guard
    }
}
