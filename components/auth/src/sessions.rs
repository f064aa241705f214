//! Sessions. A login starts a session (`auth_sessions`): an access token (a
//! JWT the host signs, `access_token_ttl`) and a refresh token (32 random
//! bytes, stored only as SHA-256, `refresh_token_ttl`). Each refresh
//! revokes the token it was given and issues a new pair in the same
//! session; presenting a rotated-out token again means it leaked, so the
//! whole session (and the access tokens issued in it) is revoked. There is
//! no grace period: two refreshes racing with one token end the session.
//!
//! A refresh runs in a transaction that first updates its session row, so
//! a revocation (logout, reuse, password reset) either happens before it
//! (the refresh fails) or waits for it and then also revokes what it
//! issued.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Caller, Reply, new_id, now, random_bytes, timestamp_secs};
use lamina_sdk::sql::{Database, Sql};
use lamina_sdk::tokens;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::users::{self, User};
use crate::{BODY_LIMIT, MOUNT, events, sweep};

/// The refresh-token cookie.
const COOKIE: &str = "lamina_refresh";

/// A new token pair.
pub struct Issued {
    access: tokens::Token,
    refresh: String,
    refresh_expires: i64,
}

/// Hex SHA-256: how refresh and reset tokens are stored.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `user` and issues its first pair.
pub fn start(db: &Database, config: &Config, user: &User) -> Result<Issued, ApiError> {
    db.transaction(|tx| {
        let session = new_id();
        let now = now();
        tx.execute(
            "INSERT INTO auth_sessions (id, user_id, created_at, last_used_at, revoked_at) \
             VALUES ($1, $2, $3, $3, NULL)",
            &[session.as_str().into(), user.id.as_str().into(), now.into()],
        )?;
        issue(tx, config, user, &session)
    })
}

/// Issues a pair for `user` in `session`.
fn issue(db: &impl Sql, config: &Config, user: &User, session: &str) -> Result<Issued, ApiError> {
    let access = tokens::sign(&users::subject(user), config.access_ttl)?;
    let refresh = hex::encode(random_bytes(32));
    let now = now();
    let refresh_expires = now + config.refresh_ttl as i64;
    db.execute(
        "INSERT INTO auth_refresh_tokens (token_hash, user_id, session_id, access_token_id, \
         access_expires_at, created_at, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        &[
            digest(&refresh).into(),
            user.id.as_str().into(),
            session.into(),
            access.id.as_str().into(),
            access.expires_at.into(),
            now.into(),
            refresh_expires.into(),
        ],
    )?;
    Ok(Issued {
        access,
        refresh,
        refresh_expires,
    })
}

/// The answer carrying a new pair: JSON plus the refresh token as an
/// HttpOnly cookie scoped to the auth service.
pub fn reply(status: u16, config: &Config, user: &User, issued: Issued) -> Reply {
    let max_age = issued.refresh_expires - now();
    let cookie = cookie(config, &issued.refresh, max_age);
    Reply::json(
        status,
        json!({
            "user": user.public(),
            "accessToken": issued.access.token,
            "tokenType": "Bearer",
            "expiresAt": timestamp_secs(issued.access.expires_at),
            "refreshToken": issued.refresh,
            "refreshExpiresAt": timestamp_secs(issued.refresh_expires),
        }),
    )
    .header("set-cookie", cookie)
    .header("cache-control", "no-store")
}

fn cookie(config: &Config, value: &str, max_age: i64) -> String {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path={MOUNT}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// `refreshToken` from the JSON body, else the cookie.
fn presented(request: &Request) -> Result<Option<String>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        refresh_token: Option<String>,
    }
    let body = lamina_sdk::api::read_body(request, BODY_LIMIT)?;
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Body>(&body)
            .map_err(ApiError::bad_body)?
            .refresh_token
    };
    let from_cookie = || {
        request.header("cookie").and_then(|cookies| {
            cookies.split(';').find_map(|c| {
                let (name, value) = c.trim().split_once('=')?;
                (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
            })
        })
    };
    Ok(from_body.or_else(from_cookie).filter(|t| t.len() <= 256))
}

#[derive(Deserialize)]
struct TokenRow {
    user_id: String,
    session_id: String,
    expires_at: i64,
    revoked_at: Option<i64>,
}

fn invalid() -> ApiError {
    ApiError::new(
        401,
        "invalid refresh token",
        "the refresh token is invalid or expired; log in again",
    )
}

/// `POST /refresh`: rotates the refresh token (no access token needed).
pub fn refresh(request: &Request) -> Result<Reply, ApiError> {
    let config = Config::load()?;
    let token = presented(request)?.ok_or_else(invalid)?;
    let db = Database::open(crate::DATABASE)?;
    let hash = digest(&token);
    let row: TokenRow = db
        .query_one(
            "SELECT user_id, session_id, expires_at, revoked_at FROM auth_refresh_tokens \
             WHERE token_hash = $1",
            &[hash.as_str().into()],
        )?
        .ok_or_else(invalid)?;
    if row.revoked_at.is_some() {
        reused(request, &db, &row)?;
        return Err(invalid());
    }
    if row.expires_at <= now() {
        return Err(invalid());
    }
    let user = users::by_id(&db, &row.user_id)?;
    let Some(user) = user.filter(|u| u.may_sign_in(now())) else {
        revoke_session(&db, &row.session_id)?;
        return Err(invalid());
    };
    // A session ends at its absolute lifetime, however often refreshed.
    #[derive(Deserialize)]
    struct Started {
        created_at: i64,
    }
    let started: Option<Started> = db.query_one(
        "SELECT created_at FROM auth_sessions WHERE id = $1",
        &[row.session_id.as_str().into()],
    )?;
    if started.is_none_or(|s| s.created_at + config.session_lifetime <= now()) {
        revoke_session(&db, &row.session_id)?;
        return Err(ApiError::new(
            401,
            "session ended",
            "the session has reached its maximum lifetime; log in again",
        ));
    }
    // A session from before `require_confirmed_email`, or from before an
    // email change, waits for the new confirmation too.
    crate::confirmations::required(&config, &user)?;
    let issued = db.transaction(|tx| {
        // Locks the session: a revocation waits for this to commit.
        let live = tx.execute(
            "UPDATE auth_sessions SET last_used_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            &[now().into(), row.session_id.as_str().into()],
        )?;
        if live == 0 {
            return Ok(None);
        }
        // Of two refreshes with one token, only the first rotates it.
        let rotated = tx.execute(
            "UPDATE auth_refresh_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            &[now().into(), hash.as_str().into()],
        )?;
        if rotated == 0 {
            return Ok(None);
        }
        issue(tx, &config, &user, &row.session_id).map(Some)
    })?;
    let Some(issued) = issued else {
        reused(request, &db, &row)?;
        return Err(invalid());
    };
    sweep::sweep(&db, &config);
    Ok(reply(200, &config, &user, issued))
}

/// A rotated-out token came back: unless its session already ended (a
/// logout), it leaked, and the session ends now.
fn reused(request: &Request, db: &Database, row: &TokenRow) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Session {
        revoked_at: Option<i64>,
    }
    let session: Option<Session> = db.query_one(
        "SELECT revoked_at FROM auth_sessions WHERE id = $1",
        &[row.session_id.as_str().into()],
    )?;
    if session.is_some_and(|s| s.revoked_at.is_none()) {
        revoke_session(db, &row.session_id)?;
        events::audit(
            request,
            "refresh.reuse",
            Some(&row.user_id),
            json!({"session": row.session_id}),
        );
    }
    Ok(())
}

/// `POST /logout`: revokes the caller's access token at once and its whole
/// session (found by the refresh token sent, else by the access token);
/// clears the cookie.
pub fn logout(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let presented = presented(request)?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    #[derive(Deserialize)]
    struct Session {
        session_id: String,
    }
    let by_refresh = match presented {
        Some(token) => db.query_one::<Session>(
            "SELECT session_id FROM auth_refresh_tokens WHERE token_hash = $1 AND user_id = $2",
            &[digest(&token).into(), caller.user_id.as_str().into()],
        )?,
        None => None,
    };
    let session = match by_refresh {
        Some(session) => Some(session),
        None => db.query_one::<Session>(
            "SELECT session_id FROM auth_refresh_tokens WHERE access_token_id = $1 AND user_id = $2",
            &[caller.token_id.as_str().into(), caller.user_id.as_str().into()],
        )?,
    };
    let until = caller
        .token_expires
        .unwrap_or_else(|| now() + config.access_ttl as i64);
    tokens::revoke(&caller.token_id, until)?;
    if let Some(session) = session {
        revoke_session(&db, &session.session_id)?;
    }
    events::audit(request, "logout", Some(&caller.user_id), json!({}));
    Ok(Reply::no_content().header("set-cookie", cookie(&config, "", 0)))
}

/// Ends `session`: its refresh tokens and the access tokens issued in it
/// that have not expired.
pub fn revoke_session(db: &Database, session: &str) -> Result<(), ApiError> {
    revoke_where(db, "id", "session_id", session)
}

/// Ends every session of `user_id`, and every access token issued to it
/// until now.
pub fn revoke_all(db: &Database, user_id: &str) -> Result<(), ApiError> {
    revoke_where(db, "user_id", "user_id", user_id)?;
    tokens::revoke_subject(user_id)?;
    Ok(())
}

/// Marks the sessions where `session_column = value` revoked first (waiting
/// for a refresh in progress), then revokes their live access tokens and
/// refresh tokens.
fn revoke_where(
    db: &Database,
    session_column: &str,
    token_column: &str,
    value: &str,
) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Live {
        access_token_id: String,
        access_expires_at: i64,
    }
    let now = now();
    db.execute(
        &format!(
            "UPDATE auth_sessions SET revoked_at = $1 WHERE {session_column} = $2 AND revoked_at IS NULL"
        ),
        &[now.into(), value.into()],
    )?;
    let live: Vec<Live> = db.query(
        &format!(
            "SELECT access_token_id, access_expires_at FROM auth_refresh_tokens \
             WHERE {token_column} = $1 AND access_expires_at > $2"
        ),
        &[value.into(), now.into()],
    )?;
    for token in live {
        tokens::revoke(&token.access_token_id, token.access_expires_at)?;
    }
    db.execute(
        &format!(
            "UPDATE auth_refresh_tokens SET revoked_at = $1 WHERE {token_column} = $2 AND revoked_at IS NULL"
        ),
        &[now.into(), value.into()],
    )?;
    Ok(())
}
