//! Weir: a WebAssembly plugin-driven programmable gateway. See `ARCHITECTURE.md` for the map.

pub mod admin;
pub mod authoring;
pub mod body;
pub mod capability;
pub mod chain;
pub mod config;
pub mod demo_backend;
pub mod diagnostic;
pub mod exchange;
pub mod gateway;
pub mod headers;
pub mod oci;
pub mod peer;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod sse;
pub mod stdio_bridge;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod worker;
