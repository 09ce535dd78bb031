//! Host-side bindings for the `weir:plugin` WIT package. Every `bindgen!` lives here, so the
//! generated surface is in one place (as in wasmtime's `wasi-http`).

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});

pub use weir::plugin::types::{EditError, LocalResponse};
