//! Forgets rows that can no longer be used, a bounded batch per call, from
//! the requests that create such rows (login and refresh): the tables stay
//! proportional to live sessions without a scheduler. In order: expired
//! refresh tokens, then sessions idle for a whole refresh lifetime with no
//! token left, expired reset and email-confirmation tokens, and
//! login-failure counters whose window and lock are over. Each condition
//! has its own index (migrations 0004, 0005), so once the backlog is gone
//! a call costs a few index probes. Rotated-out refresh tokens are kept
//! until they expire, so reuse detection holds for a token's lifetime.

use lamina_sdk::api::now;
use lamina_sdk::sql::{Database, Sql};

use crate::config::Config;

/// Rows each statement deletes at most per call: far more than a login or
/// refresh creates, so no call waits long and the tables do not grow with
/// use. (Failed logins and forgotten-password requests create rows
/// without sweeping; the next logins catch up.)
const BATCH: i64 = 100;

/// Deletes a batch of dead rows; a failure is logged, never the caller's.
pub fn sweep(db: &Database, config: &Config) {
    let now = now();
    let idle_since = now - config.refresh_ttl as i64;
    let statements: [(&str, i64); 5] = [
        (
            "DELETE FROM auth_refresh_tokens WHERE token_hash IN \
             (SELECT token_hash FROM auth_refresh_tokens WHERE expires_at <= $1 LIMIT $2)",
            now,
        ),
        (
            // Every token of such a session has expired (each lives
            // `refresh_ttl` from the session's last use).
            "DELETE FROM auth_sessions WHERE id IN \
             (SELECT s.id FROM auth_sessions s WHERE s.last_used_at <= $1 AND NOT EXISTS \
              (SELECT 1 FROM auth_refresh_tokens t WHERE t.session_id = s.id) LIMIT $2)",
            idle_since,
        ),
        (
            "DELETE FROM auth_password_resets WHERE token_hash IN \
             (SELECT token_hash FROM auth_password_resets WHERE expires_at <= $1 LIMIT $2)",
            now,
        ),
        (
            "DELETE FROM auth_email_confirmations WHERE token_hash IN \
             (SELECT token_hash FROM auth_email_confirmations WHERE expires_at <= $1 LIMIT $2)",
            now,
        ),
        (
            // Past its round, and a quiet `lockout_window` past its last
            // delay (until then it remembers how long the next one is).
            "DELETE FROM auth_login_failures WHERE login_key IN \
             (SELECT login_key FROM auth_login_failures WHERE window_ends <= $1 \
              AND (locked_until IS NULL OR locked_until <= $1) LIMIT $2)",
            now - config.lockout_window,
        ),
    ];
    for (statement, before) in statements {
        if let Err(e) = db.execute(statement, &[before.into(), BATCH.into()]) {
            eprintln!("auth: sweep failed: {e:?}");
        }
    }
}
