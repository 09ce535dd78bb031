//! The proxy-wasm ABI host (0.2.1, and 0.2.0 where it differs: the ABI of Envoy, Istio and
//! Higress filters) on wasmtime.
//!
//! A filter is a core Wasm module built with one of the proxy-wasm SDKs (Rust, Go,
//! AssemblyScript, C++). [`Filter::new`] checks that it speaks the ABI and links the host calls
//! it imports; a [`FilterInstance`] is one instance with its root context, configured as Envoy
//! configures it (`proxy_on_vm_start` with the VM configuration, `proxy_on_configure` with the
//! plugin configuration). Per request, [`FilterInstance::begin`] opens an HTTP context and the
//! stream callbacks (headers, bodies, trailers) run on header maps and buffers the host holds
//! and the filter reads and changes through host calls; [`Outcome`] says what the filter
//! decided.
//!
//! This crate does no I/O: HTTP calls the filter dispatches are handed to the embedder
//! ([`FilterInstance::take_calls`]), which makes them and delivers each response
//! ([`FilterInstance::call_response`]); shared data and metrics go to the services of the
//! [`Env`] the embedder gives each instance. The embedder also owns the store's limits (its
//! data rides in [`State::user`]).
//!
//! Host calls this crate does not serve answer the ABI's `Unimplemented` status: a filter sees
//! an error value, the host never traps because of it.

mod abi;
mod filter;
mod link;
mod state;

pub use abi::{MetricKind, Status};
pub use filter::{
    Configuration, Filter, FilterError, FilterInstance, Outcome, Side, is_core_module,
};
pub use state::{
    BoxFuture, CallResponse, Env, Headers, HttpCall, LocalResponse, MetricSink, NoMetrics,
    PropertySource, SharedData, SharedStore, State, Versioned,
};
