//! Sessions. A login starts a *family*: an access token (a JWT the host
//! signs, `access_token_ttl`) and a refresh token (32 random bytes, stored
//! only as SHA-256, `refresh_token_ttl`). Each refresh revokes the token it
//! was given and issues a new pair in the same family; presenting a revoked
//! refresh token again means it leaked, so the whole family (and the access
//! tokens issued with it) is revoked. Logout revokes the caller's family.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, AuthMethod, Caller, Reply, new_id, now, random_bytes};
use lamina_sdk::sql::Database;
use lamina_sdk::tokens::{self, Subject};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::users::{self, User};
use crate::{BODY_LIMIT, MOUNT, events};

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

/// Issues a pair for `user` in `family` (a new family if none).
pub fn issue(
    db: &Database,
    config: &Config,
    user: &User,
    family: Option<&str>,
) -> Result<Issued, ApiError> {
    let subject = Subject {
        id: user.id.clone(),
        username: Some(user.username.clone()),
        roles: user.roles(),
    };
    let access = tokens::sign(&subject, config.access_ttl)?;
    let refresh = hex::encode(random_bytes(32));
    let now = now();
    let refresh_expires = now + config.refresh_ttl as i64;
    db.execute(
        "INSERT INTO auth_refresh_tokens (token_hash, user_id, family_id, access_token_id, \
         access_expires_at, created_at, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        &[
            digest(&refresh).into(),
            user.id.as_str().into(),
            family.map_or_else(new_id, str::to_owned).into(),
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
pub fn reply(
    status: u16,
    config: &Config,
    user: &User,
    issued: Issued,
    root_folder: Option<String>,
) -> Reply {
    let max_age = issued.refresh_expires - now();
    let cookie = cookie(config, &issued.refresh, max_age);
    Reply::json(
        status,
        json!({
            "user": user.public(),
            "accessToken": issued.access.token,
            "tokenType": "Bearer",
            "expiresAt": issued.access.expires_at,
            "refreshToken": issued.refresh,
            "refreshExpiresAt": issued.refresh_expires,
            "rootFolderId": root_folder,
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
    let body = request.read_body(BODY_LIMIT).map_err(ApiError::bad_body)?;
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
struct Row {
    user_id: String,
    family_id: String,
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
    let db = Database::open("default")?;
    let hash = digest(&token);
    let row: Row = db
        .query_one(
            "SELECT user_id, family_id, expires_at, revoked_at FROM auth_refresh_tokens \
             WHERE token_hash = $1",
            &[hash.as_str().into()],
        )?
        .ok_or_else(invalid)?;
    if row.revoked_at.is_some() {
        revoke_family(&db, &row.family_id)?;
        events::audit(
            request,
            "refresh.reuse",
            Some(&row.user_id),
            json!({"family": row.family_id}),
        );
        return Err(invalid());
    }
    if row.expires_at <= now() {
        return Err(invalid());
    }
    let user = users::by_id(&db, &row.user_id)?;
    let Some(user) = user.filter(|u| u.may_sign_in(now())) else {
        revoke_family(&db, &row.family_id)?;
        return Err(invalid());
    };
    // Only one of two concurrent refreshes with the same token wins; the
    // other is a reuse.
    let rotated = db.execute(
        "UPDATE auth_refresh_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        &[now().into(), hash.as_str().into()],
    )?;
    if rotated == 0 {
        revoke_family(&db, &row.family_id)?;
        events::audit(
            request,
            "refresh.reuse",
            Some(&user.id),
            json!({"family": row.family_id}),
        );
        return Err(invalid());
    }
    let issued = issue(&db, &config, &user, Some(&row.family_id))?;
    let root = users::root_folder(&db, &user.id)?;
    Ok(reply(200, &config, &user, issued, root))
}

/// `POST /logout`: revokes the caller's access token at once and its whole
/// session (found by the refresh token sent, else by the access token);
/// clears the cookie.
pub fn logout(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    if caller.method == AuthMethod::ApiKey {
        return Err(ApiError::new(
            400,
            "not a session",
            "API keys are not sessions: revoke one with DELETE /api/auth/api-keys/{id}",
        ));
    }
    let config = Config::load()?;
    let until = caller
        .token_expires
        .unwrap_or_else(|| now() + config.access_ttl as i64);
    tokens::revoke(&caller.token_id, until)?;
    let db = Database::open("default")?;
    #[derive(Deserialize)]
    struct Family {
        family_id: String,
    }
    let by_refresh = match presented(request)? {
        Some(token) => db.query_one::<Family>(
            "SELECT family_id FROM auth_refresh_tokens WHERE token_hash = $1 AND user_id = $2",
            &[digest(&token).into(), caller.user_id.as_str().into()],
        )?,
        None => None,
    };
    let family = match by_refresh {
        Some(family) => Some(family),
        None => db.query_one::<Family>(
            "SELECT family_id FROM auth_refresh_tokens WHERE access_token_id = $1 AND user_id = $2",
            &[
                caller.token_id.as_str().into(),
                caller.user_id.as_str().into(),
            ],
        )?,
    };
    if let Some(family) = family {
        revoke_family(&db, &family.family_id)?;
    }
    events::audit(request, "logout", Some(&caller.user_id), json!({}));
    Ok(Reply::no_content().header("set-cookie", cookie(&config, "", 0)))
}

/// Revokes every refresh token of `family` and the access tokens issued
/// with them that have not expired.
pub fn revoke_family(db: &Database, family: &str) -> Result<(), ApiError> {
    revoke_where(db, "family_id", family)
}

/// Ends every session of `user_id`: its refresh tokens, and every access
/// token issued to it until now.
pub fn revoke_all(db: &Database, user_id: &str) -> Result<(), ApiError> {
    revoke_where(db, "user_id", user_id)?;
    tokens::revoke_subject(user_id)?;
    Ok(())
}

fn revoke_where(db: &Database, column: &str, value: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Live {
        access_token_id: String,
        access_expires_at: i64,
    }
    let now = now();
    let live: Vec<Live> = db.query(
        &format!(
            "SELECT access_token_id, access_expires_at FROM auth_refresh_tokens \
             WHERE {column} = $1 AND access_expires_at > $2"
        ),
        &[value.into(), now.into()],
    )?;
    for token in live {
        tokens::revoke(&token.access_token_id, token.access_expires_at)?;
    }
    db.execute(
        &format!(
            "UPDATE auth_refresh_tokens SET revoked_at = $1 WHERE {column} = $2 AND revoked_at IS NULL"
        ),
        &[now.into(), value.into()],
    )?;
    Ok(())
}
