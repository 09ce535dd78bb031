//! Host-side bindings for the `weir:plugin` WIT package. Every `bindgen!` lives here, so the
//! generated surface is in one place (as in wasmtime's `wasi-http`).

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    // Hooks run on tokio: calls into the guest are async so that WASI (which is async inside
    // wasmtime-wasi) works, and so a long hook yields to the executor at every epoch tick.
    // The `weir:plugin` imports themselves never block and stay synchronous.
    exports: { default: async },
});

pub use self::weir::plugin::types::{EditError, LocalResponse};
