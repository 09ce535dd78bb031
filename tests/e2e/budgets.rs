//! Execution budgets: a plugin call is bounded by the CPU time it uses itself, not by the time
//! it waits for a thread, so a busy worker slows hooks down without failing them; a loop is
//! still stopped, and a call that keeps waiting meets the wall-clock backstop.

use crate::support::*;
use std::time::Instant;

/// One worker (so concurrent hooks interleave on one thread), a `worker` probe that does the
/// CPU work each request asks for (`x-probe-rounds`) under a 250 ms budget, and a `sleepy` probe
/// that waits without running under a 300 ms backstop.
fn gateway(backend: &Backend, metering: &str) -> Gateway {
    let path = plugin("probe").display().to_string();
    Gateway::start(&format!(
        "[runtime]\nworkers = 1\nmetering = \"{metering}\"\n\
         [upstreams.a]\nendpoints = [\"{}\"]\n\
         [plugins.worker]\npath = {path:?}\ninstances = \"pooled\"\nhook_budget = \"250ms\"\n\
         [plugins.looper]\npath = {path:?}\nhook_budget = \"50ms\"\n\
         [plugins.sleepy]\npath = {path:?}\nhook_timeout = \"300ms\"\n\
         [[routes]]\nname = \"work\"\nmatch = {{ path_prefix = \"/work\" }}\nupstream = \"a\"\n\
         chain = [{{ plugin = \"worker\", config = {{ work = 1 }} }}]\n\
         [[routes]]\nname = \"loop\"\nmatch = {{ path_prefix = \"/loop\" }}\nupstream = \"a\"\n\
         chain = [{{ plugin = \"looper\", config = {{ fail = \"loop\" }} }}]\n\
         [[routes]]\nname = \"sleep\"\nmatch = {{ path_prefix = \"/sleep\" }}\nupstream = \"a\"\n\
         chain = [{{ plugin = \"sleepy\", config = {{ fail = \"sleep\" }} }}]\n",
        backend.endpoint()
    ))
}

async fn work(gw: &Gateway, rounds: u64) -> Reply {
    let rounds = rounds.to_string();
    get_with(&gw.url("/work"), &[("x-probe-rounds", &rounds)]).await
}

/// The rounds of work one request needs to take at least 40 ms of elapsed time on its own
/// (so at most 80 ms of CPU time: well inside the 250 ms budget). Elapsed time only picks the
/// workload; nothing is asserted on it.
async fn calibrate(gw: &Gateway) -> u64 {
    let mut rounds = 1u64 << 18;
    for _ in 0..24 {
        let start = Instant::now();
        let r = work(gw, rounds).await;
        assert_eq!(
            r.status,
            200,
            "calibrating with {rounds} rounds: {}",
            r.text()
        );
        if start.elapsed().as_millis() >= 40 {
            break;
        }
        rounds *= 2;
    }
    rounds
}

/// Twelve hooks that each need a third of their budget at most, run at once on one worker: each
/// waits for the other eleven (the hooks yield to each other every 5 ms), so each takes several
/// times its budget in elapsed time. Counted as elapsed time they would fail; counted as their
/// own execution, every one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_sharing_one_worker_each_get_their_own_budget() {
    let backend = Backend::start("a").await;
    let gw = gateway(&backend, "cpu-time");
    let rounds = calibrate(&gw).await;
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let url = gw.url("/work");
            tokio::spawn(async move {
                let rounds = rounds.to_string();
                get_with(&url, &[("x-probe-rounds", &rounds)]).await
            })
        })
        .collect();
    for r in requests {
        let r = hang_guard("a working request", r).await.expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.seen("x-probe-work"), Some(rounds.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_loops_uses_up_its_budget() {
    let backend = Backend::start("a").await;
    for metering in ["cpu-time", "fuel"] {
        let gw = gateway(&backend, metering);
        let r = hang_guard("the looping request", get(&gw.url("/loop"))).await;
        assert_eq!(r.status, 500, "{metering}: {}", r.text());
        assert!(
            r.text().contains("plugin \"looper\" on route \"loop\"")
                && r.text().contains("used up its execution budget"),
            "{metering}: {}",
            r.text()
        );
        // The worker is free again.
        assert_eq!(work(&gw, 1).await.status, 200);
    }
}

/// Waiting is not execution, so the budget never ends a hook that sleeps; the backstop does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_waits_meets_the_backstop() {
    let backend = Backend::start("a").await;
    let gw = gateway(&backend, "cpu-time");
    let r = hang_guard("the sleeping request", get(&gw.url("/sleep"))).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("plugin \"sleepy\"") && r.text().contains("exceeded its hook timeout"),
        "{}",
        r.text()
    );
    assert_eq!(
        backend.hits(),
        0,
        "a failed fail-closed hook forwards nothing"
    );
}

/// `init` at load has its own budget: an `init` that does not finish is refused, naming the
/// route and the plugin, and `weir check` says so without serving anything.
#[test]
fn an_init_that_never_ends_is_refused_at_load() {
    let path = plugin("probe").display().to_string();
    let (ok, text) = check(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[upstreams.a]\nendpoints = [\"http://127.0.0.1:9\"]\n\
         [plugins.slow]\npath = {path:?}\ninstances = \"pooled\"\ninit_budget = \"100ms\"\n\
         [[routes]]\nname = \"r\"\nupstream = \"a\"\n\
         chain = [{{ plugin = \"slow\", config = {{ init_work = 9223372036854775807 }} }}]\n"
    ));
    assert!(!ok, "{text}");
    assert!(
        text.contains("route \"r\"")
            && text.contains("plugin \"slow\"")
            && text.contains("used up its execution budget (100ms of CPU time)"),
        "{text}"
    );
}
