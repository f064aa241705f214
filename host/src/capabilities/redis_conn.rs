//! The Redis connection of the kv and queue backends, the rate limiter and
//! the revocation list: a lazily connected, multiplexed, self-reconnecting
//! `ConnectionManager` (so the host starts, and keeps serving, while Redis is
//! down), a per-command timeout, and a circuit breaker so a dead server costs
//! one fast failure per call instead of a timeout.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::{FromRedisValue, RedisError};

use crate::breaker::{Breaker, BreakerConfig, Open};

/// One Redis server as a backend: connection, timeout and breaker. Clones
/// share all three.
#[derive(Clone)]
pub struct RedisConn {
    connection: ConnectionManager,
    timeout: Duration,
    breaker: Breaker,
}

/// Why a Redis command failed.
#[derive(Debug)]
pub enum Failure {
    /// The breaker is open: Redis failed repeatedly and is not asked.
    Open(Open),
    /// No answer within the timeout.
    TimedOut(Duration),
    /// Connection refused, reset, ...
    Unreachable(RedisError),
    /// Redis answered with an error (a script error, a wrong type, ...).
    Refused(RedisError),
}

impl Failure {
    /// Whether Redis itself is the problem (as opposed to the command).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, Failure::Refused(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Open(open) => write!(f, "redis: {open}"),
            Failure::TimedOut(timeout) => write!(f, "redis did not answer within {timeout:?}"),
            Failure::Unreachable(e) | Failure::Refused(e) => write!(f, "redis: {e}"),
        }
    }
}

impl RedisConn {
    /// A connection to `url` for the backend `name` (the breaker's label,
    /// e.g. `redis:kv:cache`); nothing is dialled until the first command.
    pub fn connect_lazy(
        name: &str,
        url: &str,
        timeout: Duration,
        breaker: BreakerConfig,
    ) -> anyhow::Result<RedisConn> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(RedisConn {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            timeout,
            breaker: Breaker::new(name, breaker),
        })
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Failure> {
        let mut connection = self.connection.clone();
        self.guarded(command.query_async(&mut connection)).await
    }

    /// Runs a pipeline (`MULTI`-less: one round trip).
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> Result<T, Failure> {
        let mut connection = self.connection.clone();
        self.guarded(pipeline.query_async(&mut connection)).await
    }

    /// Runs a Lua script (`EVALSHA`, loading it on first use).
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Failure> {
        let mut connection = self.connection.clone();
        self.guarded(invocation.invoke_async(&mut connection)).await
    }

    async fn guarded<T>(
        &self,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        self.breaker.admit().map_err(Failure::Open)?;
        let result = match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if is_unavailable(&error) => Err(Failure::Unreachable(error)),
            Ok(Err(error)) => Err(Failure::Refused(error)),
            Err(_) => Err(Failure::TimedOut(self.timeout)),
        };
        self.breaker
            .record(!result.as_ref().is_err_and(Failure::is_unavailable));
        result
    }
}

/// Whether an error means "Redis is unreachable or slow" (as opposed to
/// "Redis refused this command").
fn is_unavailable(error: &RedisError) -> bool {
    use redis::ErrorKind;
    !matches!(
        error.kind(),
        ErrorKind::Server(_)
            | ErrorKind::Extension
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
    )
}

/// Escapes glob metacharacters so a key prefix can be used in `SCAN MATCH`.
pub fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('*');
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(super::escape_glob("a*b?[c]"), "a\\*b\\?\\[c\\]*");
    }
}
