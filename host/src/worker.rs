//! Worker threads: one single-threaded event loop per CPU, each accepting on its own
//! `SO_REUSEPORT` socket and owning its own upstream connection pools, so a request is served
//! start to end on one thread without cross-thread wake-ups (the nginx model).

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running this code (0 outside workers, e.g. `weir check`).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Runs `f` on a new worker thread with its own current-thread tokio runtime.
pub fn spawn<F, Fut>(index: usize, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(format!("weir-worker-{index}"))
        .spawn(move || {
            WORKER.with(|w| w.set(index));
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(f()),
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start worker runtime")
                }
            }
        })
}
