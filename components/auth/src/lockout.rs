//! Guessing limits (OWASP ASVS v4 2.2.1: anti-automation without a lock
//! an attacker can hold forever). Every attempt is counted *before* the
//! password is checked, so parallel guesses cannot outrun the count, on
//! two kinds of key:
//!
//! - the login name (known account or not, so a delay says nothing about
//!   whether the account exists), or a user's current-password check:
//!   after `lockout_threshold` failures the key waits `lockout_delay`
//!   seconds, twice that after the next `lockout_threshold`, and so on up
//!   to `lockout_window`; a quiet `lockout_window` after a delay forgets
//!   the escalation, a success clears the key. The owner is slowed for
//!   minutes, not locked out for as long as anyone keeps guessing;
//! - the client's address (an IPv6 client by its /64): at most
//!   `client_lockout_threshold` failures per `lockout_window`, spread over
//!   as many names as it likes, then the same escalating delays. Only
//!   failures count (an office's many good logins behind one address do
//!   not), and a success does not clear them (an attacker's own account
//!   would); parallel guesses are bounded by the `login` rate-limit class.
//!
//! A name and its account's other name (email vs username) are counted
//! apart, so an account takes at most twice the threshold per round;
//! merging them would tell existing accounts from unknown names.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, now};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// One counted key and how many failures it may have per round.
pub struct Key {
    /// A hash, so the table holds no typed-in names or addresses.
    row: String,
    threshold: i64,
    counting: Counting,
}

/// What a key counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// Every attempt, before the password is checked; a success clears it.
    Attempts,
    /// Failures only; a success does not clear them.
    Failures,
}

impl Key {
    /// A login name (email or username, any case).
    pub fn login(config: &Config, name: &str) -> Key {
        Key {
            row: hash(&name.trim().to_ascii_lowercase()),
            threshold: config.lockout_threshold,
            counting: Counting::Attempts,
        }
    }

    /// A signed-in user's checks of their current password.
    pub fn password_check(config: &Config, user_id: &str) -> Key {
        Key {
            row: hash(&format!("password-check:{user_id}")),
            threshold: config.lockout_threshold,
            counting: Counting::Attempts,
        }
    }

    /// The client's address as the gateway saw it (`spin-client-addr`,
    /// the forwarded one behind a trusted proxy); IPv6 by its /64.
    pub fn client(config: &Config, request: &Request) -> Option<Key> {
        let address = request.header("spin-client-addr")?;
        Some(Key {
            row: hash(&format!("client:{}", network(&address))),
            threshold: config.client_lockout_threshold,
            counting: Counting::Failures,
        })
    }
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text))
}

/// `1.2.3.4:5` → `1.2.3.4`; `[2001:db8:1:2::9]:5` → `2001:db8:1:2::/64`.
fn network(address: &str) -> String {
    let host = match address.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => address.rsplit_once(':').map_or(address, |(host, _)| host),
    };
    match host.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(v4) => v4.to_string(),
        Err(_) => host.to_owned(),
    }
}

/// Before a password check: counts the attempt on each key that counts
/// attempts; `Err(429)` with `Retry-After` while a key waits out a delay,
/// or once its attempts of this round are used up.
pub fn attempt(db: &Database, config: &Config, keys: &[&Key]) -> Result<(), ApiError> {
    let now = now();
    for key in keys {
        let row = match key.counting {
            Counting::Attempts => Some(count(db, config, key)?),
            Counting::Failures => current(db, key)?,
        };
        let Some(row) = row else { continue };
        match row.locked_until {
            Some(until) if until > now => return Err(delayed(until)),
            _ if key.counting == Counting::Attempts && row.failures > key.threshold => {
                return Err(delay(db, config, key, row.locks)?);
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Row {
    failures: i64,
    locked_until: Option<i64>,
    locks: i64,
}

/// The key's row, if it has one.
fn current(db: &Database, key: &Key) -> Result<Option<Row>, ApiError> {
    Ok(db.query_one(
        "SELECT failures, locked_until, locks FROM auth_login_failures WHERE login_key = $1",
        &[key.row.as_str().into()],
    )?)
}

/// Counts one on the key (an attempt or a failure); returns its row.
fn count(db: &Database, config: &Config, key: &Key) -> Result<Row, ApiError> {
    let now = now();
    // A round that has ended starts over; a quiet `lockout_window` after
    // the last delay forgets the escalation.
    let row: Option<Row> = db.query_one(
        "INSERT INTO auth_login_failures (login_key, failures, window_ends, locked_until, locks) \
         VALUES ($1, 1, $2, NULL, 0) \
         ON CONFLICT (login_key) DO UPDATE SET \
           failures = CASE WHEN auth_login_failures.window_ends <= $3 THEN 1 \
                           ELSE auth_login_failures.failures + 1 END, \
           window_ends = CASE WHEN auth_login_failures.window_ends <= $3 THEN $2 \
                              ELSE auth_login_failures.window_ends END, \
           locks = CASE WHEN auth_login_failures.locked_until <= $4 THEN 0 \
                        ELSE auth_login_failures.locks END \
         RETURNING failures, locked_until, locks",
        &[
            key.row.as_str().into(),
            (now + config.lockout_window).into(),
            now.into(),
            (now - config.lockout_window).into(),
        ],
    )?;
    Ok(row.expect("an upsert returns its row"))
}

/// After a wrong password: counts the failure on each key that counts
/// failures, and delays each key whose round that used up (`Err(429)`).
pub fn failed(db: &Database, config: &Config, keys: &[&Key]) -> Result<(), ApiError> {
    let mut result = Ok(());
    for key in keys {
        let row = match key.counting {
            Counting::Attempts => current(db, key)?,
            Counting::Failures => Some(count(db, config, key)?),
        };
        if let Some(row) = row.filter(|r| r.failures >= key.threshold) {
            result = Err(delay(db, config, key, row.locks)?);
        }
    }
    result
}

/// After a right password: forgets the attempts on the keys a success
/// clears.
pub fn succeeded(db: &Database, keys: &[&Key]) -> Result<(), ApiError> {
    for key in keys.iter().filter(|k| k.counting == Counting::Attempts) {
        db.execute(
            "DELETE FROM auth_login_failures WHERE login_key = $1",
            &[key.row.as_str().into()],
        )?;
    }
    Ok(())
}

/// Starts the key's next delay (`lockout_delay` doubled per delay in a
/// row, at most `lockout_window`); returns the 429 to answer with.
fn delay(db: &Database, config: &Config, key: &Key, locks: i64) -> Result<ApiError, ApiError> {
    let now = now();
    let seconds = config
        .lockout_delay
        .saturating_mul(1 << locks.clamp(0, 20))
        .min(config.lockout_window);
    let until = now + seconds;
    db.execute(
        "UPDATE auth_login_failures SET locked_until = $1, failures = 0, window_ends = $1, \
         locks = $2 WHERE login_key = $3",
        &[until.into(), (locks + 1).into(), key.row.as_str().into()],
    )?;
    Ok(delayed(until))
}

/// The 429 for a key that waits until `until`.
fn delayed(until: i64) -> ApiError {
    ApiError::new(
        429,
        "too many attempts",
        "too many failed attempts; try again later",
    )
    .retry_after((until - now()).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::network;

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_64() {
        assert_eq!(network("192.0.2.7:51234"), "192.0.2.7");
        assert_eq!(network("[2001:db8:1:2:aa::9]:443"), "2001:db8:1:2::/64");
        assert_eq!(network("[2001:db8:1:2:bb::1]:80"), "2001:db8:1:2::/64");
        assert_eq!(network("[::ffff:192.0.2.7]:80"), "192.0.2.7");
    }
}
