//! Guessing limits. Every attempt on a key (a login name, known account or
//! not, so a lockout says nothing about whether the account exists; or a
//! user's current-password check) is counted *before* the password is
//! checked, so parallel guesses cannot outrun the count: at most
//! `lockout_threshold` passwords are checked per key within
//! `lockout_window` seconds, then the key is locked for `lockout_window`.
//! A success clears the key.
//!
//! A name and its account's other name (email vs username) are counted
//! apart, so an account takes at most twice the threshold per window;
//! merging them would tell existing accounts from unknown names.

use lamina_sdk::api::{ApiError, now};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The row key: a hash, so the table holds no typed-in names.
fn row_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().to_ascii_lowercase()))
}

/// Counts an attempt on `key`; `Err(429)` with `Retry-After` while it is
/// locked or once the attempts of this window are used up.
pub fn attempt(db: &Database, config: &Config, key: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        failures: i64,
        locked_until: Option<i64>,
    }
    let now = now();
    let row_key = row_key(key);
    // A window that has ended starts over.
    let row: Option<Row> = db.query_one(
        "INSERT INTO auth_login_failures (login_key, failures, window_ends, locked_until) \
         VALUES ($1, 1, $2, NULL) \
         ON CONFLICT (login_key) DO UPDATE SET \
           failures = CASE WHEN auth_login_failures.window_ends <= $3 THEN 1 \
                           ELSE auth_login_failures.failures + 1 END, \
           window_ends = CASE WHEN auth_login_failures.window_ends <= $3 THEN $2 \
                              ELSE auth_login_failures.window_ends END \
         RETURNING failures, locked_until",
        &[
            row_key.as_str().into(),
            (now + config.lockout_window).into(),
            now.into(),
        ],
    )?;
    let row = row.expect("an upsert returns its row");
    match row.locked_until {
        Some(until) if until > now => Err(locked(until)),
        _ if row.failures > config.lockout_threshold => Err(lock(db, config, &row_key)?),
        _ => Ok(()),
    }
}

/// After a wrong password: locks `key` if that was the last attempt of
/// the window (`Err(429)`).
pub fn failed(db: &Database, config: &Config, key: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        failures: i64,
    }
    let row_key = row_key(key);
    let row: Option<Row> = db.query_one(
        "SELECT failures FROM auth_login_failures WHERE login_key = $1",
        &[row_key.as_str().into()],
    )?;
    if row.is_some_and(|r| r.failures >= config.lockout_threshold) {
        return Err(lock(db, config, &row_key)?);
    }
    Ok(())
}

/// After a right password: forgets the attempts on `key`.
pub fn succeeded(db: &Database, key: &str) -> Result<(), ApiError> {
    db.execute(
        "DELETE FROM auth_login_failures WHERE login_key = $1",
        &[row_key(key).into()],
    )?;
    Ok(())
}

/// Locks the row; returns the 429 to answer with. Rows whose window and
/// lock are over are dead weight and go too.
fn lock(db: &Database, config: &Config, row_key: &str) -> Result<ApiError, ApiError> {
    let now = now();
    let until = now + config.lockout_window;
    db.execute(
        "UPDATE auth_login_failures SET locked_until = $1, failures = 0, window_ends = $2 \
         WHERE login_key = $3",
        &[until.into(), until.into(), row_key.into()],
    )?;
    db.execute(
        "DELETE FROM auth_login_failures WHERE window_ends <= $1 \
         AND (locked_until IS NULL OR locked_until <= $1)",
        &[now.into()],
    )?;
    Ok(locked(until))
}

/// The 429 for a key locked until `until`.
fn locked(until: i64) -> ApiError {
    ApiError::new(
        429,
        "too many attempts",
        "too many failed attempts; try again later",
    )
    .retry_after((until - now()).max(1) as u64)
}
