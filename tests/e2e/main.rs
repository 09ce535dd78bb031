//! End-to-end tests: the real `weir` binary, real plugins built for wasm32-wasip2, real HTTP
//! servers and clients on 127.0.0.1.

mod support;

mod a2a;
mod budgets;
mod canonical;
mod capabilities;
mod chain;
mod config_errors;
mod connections;
mod console;
mod deploy;
mod edges;
mod failures;
mod guardrails;
mod jwt;
mod kv_backends;
mod llm;
mod logging;
mod mcp;
mod mcp_conformance;
mod mcp_streams;
mod metrics;
mod mtls;
mod oci;
mod protocols;
mod proxy_wasm;
mod reload;
mod replicas;
mod resilience;
mod routing;
mod stdio_bridge;
mod streaming;
mod telemetry;
