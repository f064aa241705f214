//! Redis store: keys live under `<key_prefix><store>:` so several stores
//! (and several applications, with different prefixes) share one server.

use std::time::Duration;

use serde::Deserialize;

use super::{BackendError, default_max_value_size};
use crate::breaker::BreakerConfig;
use crate::capabilities::redis_conn::{self, Failure, RedisConn};
use crate::units::ByteSize;

/// `type = "redis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key this host writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Per-command timeout; past it the store reports `unavailable`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest value one `set` may store.
    #[serde(default = "default_max_value_size")]
    pub max_value_size: ByteSize,
}

fn default_prefix() -> String {
    "lamina:kv:".into()
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}

/// Adds `ARGV[1]` to `KEYS[1]`; sets the TTL `ARGV[2]` (ms, 0 = none) only
/// when the key is created, as the WIT contract says.
const INCREMENT: &str = r"
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
";

/// One Redis-backed store.
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConn,
    prefix: String,
    increment: std::sync::Arc<redis::Script>,
}

impl RedisStore {
    /// A store named `name`; connects on first use.
    pub fn new(name: &str, config: &RedisConfig, breaker: BreakerConfig) -> anyhow::Result<Self> {
        Ok(RedisStore {
            connection: RedisConn::connect_lazy(
                &format!("redis:kv:{name}"),
                &config.url,
                config.timeout,
                breaker,
            )?,
            prefix: format!("{}{name}:", config.key_prefix),
            increment: std::sync::Arc::new(redis::Script::new(INCREMENT)),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, BackendError> {
        self.connection.query(command).await.map_err(error)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.run(redis::cmd("GET").arg(self.key(key))).await
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.run(redis::cmd("MGET").arg(keys)).await
    }

    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let mut command = redis::cmd("SET");
        command.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(ttl.as_millis() as u64);
        }
        self.run(&command).await
    }

    pub async fn delete(&self, key: &str) -> Result<bool, BackendError> {
        self.run::<u64>(redis::cmd("DEL").arg(self.key(key)))
            .await
            .map(|n| n > 0)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        self.run::<u64>(redis::cmd("EXISTS").arg(self.key(key)))
            .await
            .map(|n| n > 0)
    }

    /// SCAN for the prefix and UNLINK in batches: never blocks the server
    /// the way `KEYS` would.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, BackendError> {
        let pattern = redis_conn::escape_glob(&self.key(prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500),
                )
                .await?;
            if !keys.is_empty() {
                deleted += self.run::<u64>(redis::cmd("UNLINK").arg(&keys)).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, BackendError> {
        let ttl_ms = ttl.map_or(0, |t| t.as_millis() as u64);
        let mut invocation = self.increment.key(self.key(key));
        invocation.arg(delta).arg(ttl_ms);
        self.connection.invoke(&invocation).await.map_err(error)
    }
}

fn error(failure: Failure) -> BackendError {
    if failure.is_unavailable() {
        BackendError::Unavailable(failure.to_string())
    } else {
        BackendError::Invalid(failure.to_string())
    }
}
