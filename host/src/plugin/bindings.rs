//! Host-side bindings for the `weir:plugin` WIT package. Every `bindgen!` lives here, so the
//! generated surface is in one place (as in wasmtime's `wasi-http`).

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    // Hooks run on tokio: calls into the guest are async so that WASI (which is async inside
    // wasmtime-wasi) works, and so a long hook yields to the executor at every epoch tick.
    exports: { default: async },
    // Imports that wait on the network are async: the guest's fiber is suspended and its
    // worker thread serves other requests meanwhile. The rest never block and stay synchronous.
    imports: {
        "weir:plugin/kv.get": async,
        "weir:plugin/kv.set": async,
        "weir:plugin/kv.delete": async,
        "weir:plugin/kv.increment": async,
        "weir:plugin/kv.compare-and-swap": async,
        "weir:plugin/outbound.wait": async,
        "weir:plugin/outbound.send": async,
        "weir:plugin/outbound.[method]incoming-response.next-chunk": async,
        "weir:plugin/outbound.[method]incoming-response.read-body": async,
    },
    with: {
        "weir:plugin/outbound.pending-response": crate::capability::outbound::PendingCall,
        "weir:plugin/outbound.incoming-response": crate::capability::outbound::IncomingCall,
    },
});

pub(crate) use self::weir::plugin::types::{BodyAccess, EditError, LocalResponse};
