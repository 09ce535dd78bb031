//! The two key-value backends give the same answers to the same calls: the memory store and a
//! real `redis-server`, driven through `weir::capability::kv::KvStore` directly.

use crate::support::Redis;
use std::time::Duration;
use weir::capability::kv::{KvError, KvStore};
use weir::config::{KvBackendKind, KvConfig};

/// Runs one fixed sequence of calls and returns every answer, as text.
async fn script(kv: &KvStore) -> Vec<String> {
    let mut out = Vec::new();
    let short = Some(Duration::from_millis(150));
    out.push(format!("{:?}", kv.get("ns:a").await));
    out.push(format!("{:?}", kv.set("ns:a", b"1", None).await));
    out.push(format!("{:?}", kv.increment("ns:a", 41, None).await));
    out.push(format!("{:?}", kv.get("ns:a").await));
    out.push(format!("{:?}", kv.set("ns:s", b"text", None).await));
    out.push(format!("{:?}", kv.increment("ns:s", 1, None).await));
    out.push(format!(
        "{:?}",
        kv.compare_and_swap("ns:c", None, b"v1", None).await
    ));
    out.push(format!(
        "{:?}",
        kv.compare_and_swap("ns:c", None, b"v2", None).await
    ));
    out.push(format!(
        "{:?}",
        kv.compare_and_swap("ns:c", Some(b"v0"), b"v2", None).await
    ));
    out.push(format!(
        "{:?}",
        kv.compare_and_swap("ns:c", Some(b"v1"), b"v2", short).await
    ));
    out.push(format!("{:?}", kv.get("ns:c").await));
    out.push(format!("{:?}", kv.increment("ns:n", 1, short).await));
    out.push(format!(
        "{:?}",
        kv.increment("ns:n", 1, Some(Duration::from_secs(60))).await
    ));
    out.push(format!("{:?}", kv.delete("ns:a").await));
    out.push(format!("{:?}", kv.delete("ns:a").await));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired: the CAS'd value and the counter whose first write set a short TTL.
    out.push(format!("{:?}", kv.get("ns:c").await));
    out.push(format!(
        "{:?}",
        kv.compare_and_swap("ns:c", None, b"again", None).await
    ));
    out.push(format!("{:?}", kv.get("ns:n").await));
    out
}

#[tokio::test]
async fn memory_and_redis_answer_alike() {
    let memory = KvStore::new(&KvConfig::default(), 1).expect("memory");
    let redis_server = Redis::start();
    let config = KvConfig {
        backend: KvBackendKind::Redis,
        url: Some(toml::Spanned::new(0..0, redis_server.url())),
        ..KvConfig::default()
    };
    let redis = KvStore::new(&config, 1).expect("redis");
    let expected = script(&memory).await;
    assert_eq!(
        expected[5],
        format!("{:?}", Err::<i64, _>(KvError::NotANumber))
    );
    assert_eq!(expected[15], "Ok(None)");
    assert_eq!(script(&redis).await, expected);
}

#[tokio::test]
async fn redis_unreachable_is_a_backend_error_not_a_hang() {
    let port = crate::support::free_port();
    let config = KvConfig {
        backend: KvBackendKind::Redis,
        url: Some(toml::Spanned::new(
            0..0,
            format!("redis://127.0.0.1:{port}"),
        )),
        timeout: weir::config::Millis(Duration::from_millis(200)),
        ..KvConfig::default()
    };
    let kv = KvStore::new(&config, 1).expect("store");
    let r = crate::support::hang_guard("a kv call to an unreachable Redis", kv.get("ns:k")).await;
    assert!(matches!(r, Err(KvError::Backend(_))), "{r:?}");
}
