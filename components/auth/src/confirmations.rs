//! Email confirmation: a single-use token (32 random bytes, stored as
//! SHA-256, bound to the address it was sent to) mailed through
//! `email.send` at registration and after an email change; `POST
//! /email/confirm` {token} marks the address confirmed. With
//! `require_confirmed_email` an unconfirmed account gets no session:
//! registration answers without tokens, login and refresh with 403. It
//! can still ask for a new link through `POST /email/confirm/resend`,
//! which needs its password, not a session, and sends at most one link
//! per `email_confirmation_resend_interval`.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, now, random_bytes, read_json};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::Credentials;
use crate::config::Config;
use crate::users::User;
use crate::{BODY_LIMIT, events, sessions};

/// 403 while `require_confirmed_email` is on and `user`'s address is not
/// confirmed.
pub fn required(config: &Config, user: &User) -> Result<(), ApiError> {
    if config.require_confirmed_email && user.email_confirmed_at.is_none() {
        return Err(ApiError::new(
            403,
            "email not confirmed",
            "confirm your email address first (POST /api/auth/email/confirm/resend sends a new link)",
        ));
    }
    Ok(())
}

/// Mails `user` a link confirming its current address; earlier links are
/// voided. A failure to queue the mail is logged (the link can be sent
/// again), never the caller's.
pub fn send(db: &impl Sql, config: &Config, user: &User) -> Result<(), ApiError> {
    let token = hex::encode(random_bytes(32));
    let now = now();
    db.execute(
        "UPDATE auth_email_confirmations SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        &[now.into(), user.id.as_str().into()],
    )?;
    db.execute(
        "INSERT INTO auth_email_confirmations (token_hash, user_id, email, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, NULL)",
        &[
            sessions::digest(&token).into(),
            user.id.as_str().into(),
            user.email.as_str().into(),
            (now + config.confirmation_ttl).into(),
        ],
    )?;
    let separator = if config.confirmation_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let link = format!("{}{separator}token={token}", config.confirmation_url);
    let text = format!(
        "Hello {},\n\nto confirm that {} is your address for Lamina, open\n\n{link}\n\n\
         within {} hours. If you did not sign up, ignore this mail.\n",
        user.username,
        user.email,
        config.confirmation_ttl / 3600
    );
    if let Err(e) = events::mail(&user.email, "Confirm your Lamina email address", &text) {
        eprintln!("confirmation mail not queued: {e:?}");
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Confirm {
    token: String,
}

/// `POST /email/confirm` {token}: confirms the address the token was sent
/// to, if it is still the account's; the token is used up either way.
pub fn confirm(request: &Request) -> Result<Reply, ApiError> {
    let body: Confirm = read_json(request, BODY_LIMIT)?;
    let invalid = || {
        ApiError::new(
            400,
            "invalid confirmation token",
            "the confirmation link is invalid, used or expired; ask for a new one",
        )
    };
    if body.token.len() != 64 || !body.token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let db = Database::open(crate::DATABASE)?;
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
        email: String,
    }
    let hash = sessions::digest(&body.token);
    let now = now();
    let confirmed = db.transaction(|tx| {
        let row: Option<Row> = tx.query_one(
            "SELECT user_id, email FROM auth_email_confirmations WHERE token_hash = $1",
            &[hash.as_str().into()],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        // The claim: of two confirms with one link, one uses it.
        let claimed = tx.execute(
            "UPDATE auth_email_confirmations SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
            &[now.into(), hash.as_str().into()],
        )?;
        if claimed == 0 {
            return Ok(None);
        }
        let changed = tx.execute(
            "UPDATE auth_users SET email_confirmed_at = $1, updated_at = $1 \
             WHERE id = $2 AND email = $3 AND deleted_at IS NULL",
            &[
                now.into(),
                row.user_id.as_str().into(),
                row.email.as_str().into(),
            ],
        )?;
        Ok::<_, ApiError>((changed == 1).then_some(row.user_id))
    })?;
    let user_id = confirmed.ok_or_else(invalid)?;
    events::audit(request, "email.confirmed", Some(&user_id), json!({}));
    Ok(Reply::json(200, json!({"emailConfirmed": true})))
}

/// `POST /email/confirm/resend` {login, password}: a new link, for an
/// account that may not be able to log in before it confirms, unless one
/// went out less than `email_confirmation_resend_interval` ago. The
/// credentials are checked (and counted towards the lockout) as a login's.
pub fn resend(request: &Request) -> Result<Reply, ApiError> {
    let credentials = Credentials::read(request)?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    let user = credentials.authenticate(request, &db, &config)?;
    if user.email_confirmed_at.is_some() {
        return Ok(Reply::json(200, json!({"emailConfirmed": true})));
    }
    // At most one link per interval (the answer is the same), so a
    // password cannot be used to flood the address.
    let recent: Option<serde_json::Value> = db.query_one(
        "SELECT user_id FROM auth_email_confirmations \
         WHERE user_id = $1 AND email = $2 AND used_at IS NULL AND expires_at > $3 LIMIT 1",
        &[
            user.id.as_str().into(),
            user.email.as_str().into(),
            (now() + config.confirmation_ttl - config.confirmation_resend_interval).into(),
        ],
    )?;
    if recent.is_none() {
        send(&db, &config, &user)?;
    }
    Ok(Reply::json(
        202,
        json!({"emailConfirmed": false, "message": "a confirmation link is on its way"}),
    ))
}
