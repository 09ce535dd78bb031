//! The Redis key-value backend, for several gateway replicas sharing state. One multiplexed,
//! auto-reconnecting connection per worker thread, made on first use (so the gateway starts even
//! while Redis is down; calls fail with `kv-error::backend` until it is back). Increment with a
//! first-write TTL and compare-and-swap run as Lua scripts, which Redis executes atomically.
//! Keys are stored under `weir:` so the gateway's keys are easy to tell apart on a shared server.
//! Every call passes the circuit breaker (`breaker.rs`), which fails calls at once while Redis
//! is known to be unreachable.

use super::KvError;
use super::breaker::Breaker;
use crate::config::KvConfig;
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::OnceCell;

/// INCRBY that sets the TTL only when it created the key.
const INCREMENT: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
";

/// SET if the current value is ARGV[2] (or, with ARGV[1] = '1', if the key is absent).
const COMPARE_AND_SWAP: &str = r"
local cur = redis.call('GET', KEYS[1])
local ok
if ARGV[1] == '1' then ok = (cur == false) else ok = (cur == ARGV[2]) end
if not ok then return 0 end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
";

pub struct RedisKv {
    client: redis::Client,
    connections: Vec<OnceCell<ConnectionManager>>,
    timeout: Duration,
    breaker: Breaker,
    increment: redis::Script,
    compare_and_swap: redis::Script,
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

/// Whether an error means Redis could not be reached (what the breaker counts), as opposed to
/// an answer Redis gave (a script error, a wrong type).
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

fn stored(key: &str) -> String {
    format!("weir:{key}")
}

fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map(|t| t.as_millis().max(1).to_string())
        .unwrap_or_default()
}

impl RedisKv {
    pub(crate) fn new(config: &KvConfig, url: &str, workers: usize) -> Result<RedisKv, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid redis url: {e}"))?;
        Ok(RedisKv {
            client,
            connections: (0..workers.max(1)).map(|_| OnceCell::new()).collect(),
            timeout: config.timeout.0,
            breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown.0),
            increment: redis::Script::new(INCREMENT),
            compare_and_swap: redis::Script::new(COMPARE_AND_SWAP),
        })
    }

    /// The circuit breaker's state and transitions, for `/metrics`.
    pub(crate) fn breaker_stats(&self) -> (i64, [u64; 3]) {
        self.breaker.stats()
    }

    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        let cell = &self.connections[crate::worker::current() % self.connections.len()];
        let conn = tokio::time::timeout(
            self.timeout,
            cell.get_or_try_init(|| self.client.get_connection_manager()),
        )
        .await
        .map_err(|_| KvError::Backend("timed out connecting to redis".into()))?
        .map_err(backend)?;
        Ok(conn.clone())
    }

    /// Runs one call (connecting first if needed) under the breaker and the configured
    /// timeout; `error` turns an error Redis returned into the plugin's.
    async fn guarded<T, Fut>(
        &self,
        call: impl FnOnce(ConnectionManager) -> Fut,
        error: fn(redis::RedisError) -> KvError,
    ) -> Result<T, KvError>
    where
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let permit = self.breaker.admit()?;
        let conn = match self.connection().await {
            Ok(conn) => conn,
            Err(e) => {
                permit.failed();
                return Err(e);
            }
        };
        match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(value)) => {
                permit.succeeded();
                Ok(value)
            }
            Ok(Err(e)) => {
                if unreachable(&e) {
                    permit.failed();
                } else {
                    permit.succeeded();
                }
                Err(error(e))
            }
            Err(_) => {
                permit.failed();
                Err(KvError::Backend("redis timed out".into()))
            }
        }
    }

    /// Runs one command.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, KvError> {
        self.guarded(
            |mut conn| async move { cmd.query_async(&mut conn).await },
            backend,
        )
        .await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.run(redis::Cmd::get(stored(key))).await
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(stored(key)).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ttl_arg(Some(t)));
        }
        self.run::<()>(cmd).await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.run::<i64>(redis::Cmd::del(stored(key)))
            .await
            .map(|n| n > 0)
    }

    pub(crate) async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        let mut call = self.increment.key(stored(key));
        call.arg(delta).arg(ttl_arg(ttl));
        self.guarded(
            |mut conn| async move { call.invoke_async::<i64>(&mut conn).await },
            |e| {
                if e.to_string().contains("not an integer") {
                    KvError::NotANumber
                } else {
                    backend(e)
                }
            },
        )
        .await
    }

    pub(crate) async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut call = self.compare_and_swap.key(stored(key));
        call.arg(if expected.is_none() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl_arg(ttl));
        self.guarded(
            |mut conn| async move { call.invoke_async::<i64>(&mut conn).await },
            backend,
        )
        .await
        .map(|n| n == 1)
    }
}
