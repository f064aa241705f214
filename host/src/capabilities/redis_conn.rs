//! The Redis connection of the kv and queue backends and the rate limiter: a lazily
//! connected, multiplexed, self-reconnecting `ConnectionManager`, so the host
//! starts (and keeps serving) while Redis is down.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Opens a lazy connection manager for `url`; nothing is dialled until the
/// first command.
pub fn connect_lazy(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Whether an error means "Redis is unreachable or slow" (as opposed to
/// "Redis refused this command").
pub fn is_unavailable(error: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    !matches!(
        error.kind(),
        ErrorKind::Server(_)
            | ErrorKind::Extension
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
    )
}

/// Runs a Redis command future under `timeout`; `Err(None)` = timed out.
pub async fn timed<T>(
    timeout: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Option<redis::RedisError>> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Some(error)),
        Err(_) => Err(None),
    }
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
