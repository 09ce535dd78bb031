//! The proxy-wasm ABI host (0.2.1, the ABI of Envoy, Istio and Higress filters) on wasmtime.
//!
//! A filter is a core Wasm module built with one of the proxy-wasm SDKs (Rust, Go,
//! AssemblyScript, C++). [`Filter::load`] checks that it speaks the ABI; a [`FilterInstance`]
//! is one instance with its root context, configured as Envoy configures it
//! (`proxy_on_vm_start` with the VM configuration, `proxy_on_configure` with the plugin
//! configuration); [`FilterInstance::request_headers`] and
//! [`FilterInstance::response_headers`] run one HTTP context's header callbacks, with the
//! header maps held by the host and read and changed by the filter through host calls.
//!
//! Host calls this crate does not serve yet answer the ABI's `Unimplemented` status: a filter
//! sees an error value, the host never traps because of it.
//!
//! Shared data lives in a [`SharedData`] the caller gives every instance of a filter (with CAS
//! numbers); properties are the caller's, per request.
//!
//! Not yet here (the next steps toward running these filters in Weir chains): bodies, trailers,
//! `proxy_http_call` through `outbound`, shared data across replicas (through `kv`), tick
//! callbacks, metrics.

mod abi;
mod host;

pub use abi::Status;
pub use host::{Filter, FilterError, FilterInstance, Headers, LocalResponse, Outcome, SharedData};
