//! Password reset: a single-use token (32 random bytes, stored as SHA-256)
//! mailed through `email.send`, never returned in a response; the answer
//! to `forgot` is the same whether or not the address has an account.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, now, random_bytes, read_json};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::validate::{AccountRules, Checks};
use crate::{BODY_LIMIT, accounts, api_keys, events, lockout, sessions, users};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Forgot {
    email: String,
}

/// `POST /password/forgot` {email}: always 202.
pub fn forgot(request: &Request) -> Result<Reply, ApiError> {
    let body: Forgot = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    let email = checks.email("email", &body.email);
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    let user = users::by_login(&db, &email)?.filter(|u| u.email == email && u.may_sign_in(now()));
    // At most one mail per `password_reset_interval` to an address (a
    // link younger than that is still pending): the answer is the same.
    let user = match user {
        Some(user) if recently_sent(&db, &config, &user.id)? => None,
        user => user,
    };
    if let Some(user) = user {
        let token = hex::encode(random_bytes(32));
        db.execute(
            "INSERT INTO auth_password_resets (token_hash, user_id, expires_at, used_at) VALUES ($1, $2, $3, NULL)",
            &[
                sessions::digest(&token).into(),
                user.id.as_str().into(),
                (now() + config.reset_ttl).into(),
            ],
        )?;
        let separator = if config.reset_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let link = format!("{}{separator}token={token}", config.reset_url);
        let text = format!(
            "Hello {},\n\nsomeone asked to reset the password of your Lamina account. \
             To choose a new one, open\n\n{link}\n\nwithin {} minutes. If it was not you, \
             ignore this mail: your password stays as it is.\n",
            user.username,
            config.reset_ttl / 60
        );
        if let Err(e) = events::mail(&user.email, "Reset your Lamina password", &text) {
            // The answer must not differ, so the failure is only logged.
            eprintln!("reset mail not queued: {e:?}");
        }
        events::audit(
            request,
            "password.reset_requested",
            Some(&user.id),
            json!({}),
        );
    }
    Ok(Reply::json(
        202,
        json!({"message": "if the address belongs to an account, a reset link is on its way"}),
    ))
}

/// Whether a reset link went to `user_id` within `password_reset_interval`.
fn recently_sent(db: &Database, config: &Config, user_id: &str) -> Result<bool, ApiError> {
    // A link's expiry is its creation plus `password_reset_ttl`.
    let since = now() - config.reset_interval + config.reset_ttl;
    let row: Option<serde_json::Value> = db.query_one(
        "SELECT token_hash FROM auth_password_resets WHERE user_id = $1 AND expires_at > $2 LIMIT 1",
        &[user_id.into(), since.into()],
    )?;
    Ok(row.is_some())
}

/// Voids the pending reset links of `user_id` (its password or email
/// changed).
pub fn cancel(db: &impl Sql, user_id: &str) -> Result<(), ApiError> {
    db.execute(
        "UPDATE auth_password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        &[now().into(), user_id.into()],
    )?;
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Reset {
    token: String,
    new_password: String,
}

/// `POST /password/reset` {token, newPassword}: sets the password, uses up
/// the token (and any other of the account's), ends every session and
/// revokes every API key.
pub fn reset(request: &Request) -> Result<Reply, ApiError> {
    let body: Reset = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.text("token", &body.token, 128);
    checks.password("newPassword", &body.new_password);
    checks.finish()?;
    let invalid = || {
        ApiError::new(
            400,
            "invalid reset token",
            "the reset token is invalid, used or expired; ask for a new one",
        )
    };
    let db = Database::open(crate::DATABASE)?;
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let hash = sessions::digest(&body.token);
    let now = now();
    let row: Row = db
        .query_one(
            "SELECT user_id FROM auth_password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            &[hash.as_str().into(), now.into()],
        )?
        .ok_or_else(invalid)?;
    let user = users::by_id(&db, &row.user_id)?
        .filter(|u| u.may_sign_in(now))
        .ok_or_else(invalid)?;
    // Account recovery: whoever had the account loses every session and
    // API key first (revocation is idempotent, so a failure here changes
    // nothing and the link still works).
    sessions::revoke_all(&db, &user.id)?;
    api_keys::revoke_all(&user.id)?;
    db.transaction(|tx| {
        // Claiming the token is one conditional UPDATE, so it is used at
        // most once even when two resets race.
        let claimed = tx.execute(
            "UPDATE auth_password_resets SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
            &[now.into(), hash.as_str().into()],
        )?;
        if claimed == 0 {
            return Err(invalid());
        }
        accounts::set_password(tx, &user.id, &body.new_password)?;
        cancel(tx, &user.id)
    })?;
    let config = Config::load()?;
    let names = [
        lockout::Key::login(&config, &user.email),
        lockout::Key::login(&config, &user.username),
    ];
    lockout::succeeded(&db, &names.iter().collect::<Vec<_>>())?;
    events::audit(request, "password.reset", Some(&user.id), json!({}));
    Ok(Reply::json(
        200,
        json!({"message": "the password is changed; log in with it"}),
    ))
}
