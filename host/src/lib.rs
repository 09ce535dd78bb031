//! Weir: a WebAssembly plugin-driven programmable gateway. See `ARCHITECTURE.md` for the map.
//!
//! The library exists for the `weir` binary (`main.rs`), the benchmarks and the end-to-end
//! tests; it exports only the modules they use. Everything else is `pub(crate)`.

// Used by the binary, the benchmarks or the tests.
pub mod authoring;
pub mod capability;
pub use weir_config as config;
pub mod demo_backend;
pub use weir_config::diagnostic;
pub mod exchange;
pub mod gateway;
pub use weir_oci as oci;
pub mod plugin;

// The gateway's insides.
pub(crate) mod accept;
pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod body;
pub(crate) mod canonical;
pub(crate) mod catalog;
pub(crate) mod chain;
pub(crate) mod connection;
pub mod console;
pub(crate) mod control;
pub(crate) mod deadline;
pub(crate) mod describe;
pub(crate) mod error_body;
pub(crate) mod headers;
pub(crate) mod observe;
pub(crate) mod overload;
pub(crate) mod peer;
pub(crate) mod proxy;
pub(crate) mod reload;
pub(crate) mod request_metrics;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod snapshot;
pub(crate) mod sse;
pub(crate) mod stream;
pub(crate) mod telemetry;
pub(crate) mod tls;
pub(crate) mod upstream;
pub(crate) mod worker;
