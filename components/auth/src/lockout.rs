//! Failed-login counting per login name, known account or not, so that a
//! lockout says nothing about whether the account exists: after
//! `lockout_threshold` failures within `lockout_window` seconds the name is
//! locked for `lockout_window` seconds.

use lamina_sdk::api::{ApiError, now};
use lamina_sdk::sql::Database;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The name's row key: a hash, so the table holds no typed-in names.
fn key(login: &str) -> String {
    hex::encode(Sha256::digest(login.trim().to_ascii_lowercase()))
}

/// `Err(429)` with `Retry-After` while `login` is locked.
pub fn check(db: &Database, login: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        locked_until: Option<i64>,
    }
    let row: Option<Row> = db.query_one(
        "SELECT locked_until FROM auth_login_failures WHERE login_key = $1",
        &[key(login).into()],
    )?;
    match row.and_then(|r| r.locked_until) {
        Some(until) if until > now() => Err(locked(until)),
        _ => Ok(()),
    }
}

/// Counts a failure; `Err(429)` if it locks the name. Returns whether the
/// name just got locked.
pub fn fail(db: &Database, config: &Config, login: &str) -> Result<bool, ApiError> {
    let now = now();
    let key = key(login);
    // A window that has ended starts over at one failure.
    db.execute(
        "INSERT INTO auth_login_failures (login_key, failures, window_ends, locked_until) \
         VALUES ($1, 1, $2, NULL) \
         ON CONFLICT (login_key) DO UPDATE SET \
           failures = CASE WHEN auth_login_failures.window_ends <= $3 THEN 1 \
                           ELSE auth_login_failures.failures + 1 END, \
           window_ends = CASE WHEN auth_login_failures.window_ends <= $3 THEN $2 \
                              ELSE auth_login_failures.window_ends END",
        &[
            key.as_str().into(),
            (now + config.lockout_window).into(),
            now.into(),
        ],
    )?;
    let locked = db.execute(
        "UPDATE auth_login_failures SET locked_until = $1, failures = 0, window_ends = $2 \
         WHERE login_key = $3 AND failures >= $4",
        &[
            (now + config.lockout_window).into(),
            now.into(),
            key.as_str().into(),
            config.lockout_threshold.into(),
        ],
    )? > 0;
    if locked {
        // Rows of names whose window and lock are over are dead weight.
        db.execute(
            "DELETE FROM auth_login_failures WHERE window_ends <= $1 \
             AND (locked_until IS NULL OR locked_until <= $1)",
            &[now.into()],
        )?;
    }
    Ok(locked)
}

/// Forgets the failures of `login` (it signed in).
pub fn clear(db: &Database, login: &str) -> Result<(), ApiError> {
    db.execute(
        "DELETE FROM auth_login_failures WHERE login_key = $1",
        &[key(login).into()],
    )?;
    Ok(())
}

/// The 429 for a name locked until `until`.
pub fn locked(until: i64) -> ApiError {
    ApiError::new(
        429,
        "too many failed logins",
        "too many failed logins for this account; try again later",
    )
    .retry_after((until - now()).max(1) as u64)
}
