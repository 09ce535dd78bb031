//! Plugins in every SDK language, through the real `weir` binary: the conformance suite
//! (`examples/allowlist` in Rust, Python, JavaScript and C), `weir plugin new | build | test`, and
//! the custom guardrail examples (`examples/guardrails`, Python and JavaScript) on one chain.
//!
//! A test binary of its own because building and compiling Python and JavaScript components
//! takes seconds of CPU each: `cargo test` runs test binaries one after another, so this load
//! never overlaps the timing-sensitive tests in `tests/e2e`.

#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;

mod authoring;
mod conformance;
mod guardrails;
