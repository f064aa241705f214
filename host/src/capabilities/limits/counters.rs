//! Budget counters: tokens charged per scope and period, reserved
//! atomically so that no interleaving of generations on any number of
//! hosts charges past a limit. In the host database (the default: durable,
//! and shared when that database is PostgreSQL) or in Redis.

use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::capabilities::bindings::lamina::platform::sql::Value;
use crate::capabilities::redis_conn::RedisConn;
use crate::capabilities::sql::Database;

/// `[limits.counters]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CountersConfig {
    /// The host database (`lamina_budget_counters`).
    #[default]
    Sql,
    /// Redis, shared by every host using the same server and prefix.
    Redis(RedisCounters),
}

/// `type = "redis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisCounters {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every counter's key (apart from the kv stores' keys, so
    /// no component granted a store can reach them).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Per-command timeout; past it generations are refused (503).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    "lamina:limits:".into()
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}

/// One counter a reservation charges.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The scope and period (see `rules::Scope::counter_key`).
    pub key: String,
    /// Tokens the period allows.
    pub limit: u64,
    /// When the counter may be forgotten (seconds since the epoch): past
    /// its period, with room for generations still settling.
    pub expires_at: i64,
}

/// Where counters live.
pub enum Counters {
    Sql(Database),
    Redis {
        conn: RedisConn,
        prefix: String,
        reserve: redis::Script,
        settle: redis::Script,
    },
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS lamina_budget_counters (
    key TEXT PRIMARY KEY,
    used BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
)";

/// Adds `ARGV[1]` to every key if each stays within its limit
/// (`ARGV[1 + i]`), setting its expiry (`ARGV[1 + n + i]`, ms since the
/// epoch); returns 0, or the 1-based index of the first that would not fit.
const RESERVE: &str = r"
local amount = tonumber(ARGV[1])
local n = #KEYS
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + amount > tonumber(ARGV[1 + i]) then return i end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], amount)
  redis.call('PEXPIREAT', KEYS[i], ARGV[1 + n + i])
end
return 0
";

/// Adds `ARGV[1]` (negative: a release) to every key, never below zero.
const SETTLE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[1])
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 0
";

fn unavailable(e: impl std::fmt::Display) -> String {
    format!("the budget counters cannot be reached: {e}")
}

impl Counters {
    /// Opens the configured backend; `host` is the host database.
    pub async fn open(
        config: &CountersConfig,
        host: &Database,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Counters> {
        Ok(match config {
            CountersConfig::Sql => {
                host.execute(SCHEMA, vec![])
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot create the budget counters: {e:?}"))?;
                Counters::Sql(host.clone())
            }
            CountersConfig::Redis(redis) => Counters::Redis {
                conn: RedisConn::connect_lazy("redis:limits", &redis.url, redis.timeout, breaker)?,
                prefix: format!("{}budget:", redis.key_prefix),
                reserve: redis::Script::new(RESERVE),
                settle: redis::Script::new(SETTLE),
            },
        })
    }

    /// Adds `amount` to every charge's counter if each stays within its
    /// limit, else to none: `Ok(Err(i))` names the first that would not
    /// fit. `Err` when the counters cannot be reached.
    pub async fn reserve(
        &self,
        charges: &[Charge],
        amount: u64,
    ) -> Result<Result<(), usize>, String> {
        let amount = amount.min(i64::MAX as u64) as i64;
        match self {
            Counters::Sql(db) => {
                for (i, charge) in charges.iter().enumerate() {
                    let created = db
                        .execute(
                            "INSERT INTO lamina_budget_counters (key, used, expires_at) \
                             VALUES ($1, 0, $2) ON CONFLICT (key) DO NOTHING",
                            vec![
                                Value::Text(charge.key.clone()),
                                Value::Int(charge.expires_at),
                            ],
                        )
                        .await
                        .map_err(|e| unavailable(format!("{e:?}")))?;
                    if created == 1 {
                        purge_expired(db).await;
                    }
                    let fitted = db
                        .execute(
                            "UPDATE lamina_budget_counters SET used = used + $2 \
                             WHERE key = $1 AND used + $2 <= $3",
                            vec![
                                Value::Text(charge.key.clone()),
                                Value::Int(amount),
                                Value::Int(charge.limit.min(i64::MAX as u64) as i64),
                            ],
                        )
                        .await;
                    match fitted {
                        Ok(1) => {}
                        outcome => {
                            // Give back what the earlier counters took.
                            let taken: Vec<String> =
                                charges[..i].iter().map(|c| c.key.clone()).collect();
                            self.settle(&taken, -amount).await?;
                            return match outcome {
                                Ok(_) => Ok(Err(i)),
                                Err(e) => Err(unavailable(format!("{e:?}"))),
                            };
                        }
                    }
                }
                Ok(Ok(()))
            }
            Counters::Redis {
                conn,
                prefix,
                reserve,
                ..
            } => {
                let mut invocation = reserve.prepare_invoke();
                for charge in charges {
                    invocation.key(format!("{prefix}{}", charge.key));
                }
                invocation.arg(amount);
                for charge in charges {
                    invocation.arg(charge.limit);
                }
                for charge in charges {
                    invocation.arg(charge.expires_at.saturating_mul(1000));
                }
                let refused: usize = conn.invoke(&invocation).await.map_err(unavailable)?;
                Ok(match refused {
                    0 => Ok(()),
                    i => Err(i - 1),
                })
            }
        }
    }

    /// Adds `delta` (negative to release) to each counter, never below 0.
    pub async fn settle(&self, keys: &[String], delta: i64) -> Result<(), String> {
        if keys.is_empty() || delta == 0 {
            return Ok(());
        }
        match self {
            Counters::Sql(db) => {
                for key in keys {
                    db.execute(
                        "UPDATE lamina_budget_counters SET used = CASE \
                         WHEN used + $2 < 0 THEN 0 ELSE used + $2 END WHERE key = $1",
                        vec![Value::Text(key.clone()), Value::Int(delta)],
                    )
                    .await
                    .map_err(|e| unavailable(format!("{e:?}")))?;
                }
                Ok(())
            }
            Counters::Redis {
                conn,
                prefix,
                settle,
                ..
            } => {
                let mut invocation = settle.prepare_invoke();
                for key in keys {
                    invocation.key(format!("{prefix}{key}"));
                }
                invocation.arg(delta);
                conn.invoke::<i64>(&invocation)
                    .await
                    .map(drop)
                    .map_err(unavailable)
            }
        }
    }

    /// Tokens charged (or held) on `key` so far.
    pub async fn used(&self, key: &str) -> Result<u64, String> {
        match self {
            Counters::Sql(db) => {
                let rows = db
                    .query(
                        "SELECT used FROM lamina_budget_counters WHERE key = $1",
                        vec![Value::Text(key.to_owned())],
                    )
                    .await
                    .map_err(|e| unavailable(format!("{e:?}")))?;
                Ok(match rows.rows.first().and_then(|r| r.first()) {
                    Some(Value::Int(n)) => (*n).max(0) as u64,
                    _ => 0,
                })
            }
            Counters::Redis { conn, prefix, .. } => {
                let used: Option<i64> = conn
                    .query(redis::cmd("GET").arg(format!("{prefix}{key}")))
                    .await
                    .map_err(unavailable)?;
                Ok(used.unwrap_or(0).max(0) as u64)
            }
        }
    }
}

/// Drops counters of periods long over (once per new counter, so the
/// table stays as large as the live periods).
async fn purge_expired(db: &Database) {
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = db
        .execute(
            "DELETE FROM lamina_budget_counters WHERE expires_at < $1",
            vec![Value::Int(now)],
        )
        .await
    {
        tracing::debug!("could not purge old budget counters: {e:?}");
    }
}
