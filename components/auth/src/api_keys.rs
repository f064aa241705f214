//! API keys for programmatic clients (Ollama and OpenAI SDKs send them as
//! the bearer). The host stores them hashed and the gateway verifies them;
//! this service creates, lists and revokes the caller's own keys.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Caller, Reply, now, parse_timestamp, read_json, timestamp_secs};
use lamina_sdk::sql::Database;
use lamina_sdk::tokens::{self, ApiKey};
use serde::Deserialize;
use serde_json::json;

use crate::validate::Checks;
use crate::{BODY_LIMIT, events, users};

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NewKey {
    name: String,
    /// An RFC 3339 timestamp (or seconds since the epoch); none = no
    /// expiry.
    expires_at: Option<When>,
}

/// A point in time as clients send it.
#[derive(Deserialize)]
#[serde(untagged)]
enum When {
    Seconds(i64),
    Timestamp(String),
}

impl When {
    /// Seconds since the epoch, if it is a valid time.
    fn seconds(&self) -> Option<i64> {
        match self {
            When::Seconds(s) => Some(*s),
            When::Timestamp(t) => parse_timestamp(t).map(|ms| ms / 1000),
        }
    }
}

pub fn listed(key: &ApiKey) -> serde_json::Value {
    json!({
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "createdAt": timestamp_secs(key.created_at),
        "expiresAt": key.expires_at.map(timestamp_secs),
        "revokedAt": key.revoked_at.map(timestamp_secs),
        "lastUsedAt": key.last_used_at.map(timestamp_secs),
    })
}

/// `POST /api-keys` {name, expiresAt?}: the secret is in this answer only.
/// (spin.toml's `credentials = "session"` on these routes: a key can
/// neither mint keys nor see or revoke the account's others.)
pub fn create(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let body: NewKey = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.text("name", &body.name, 100);
    let ttl = match body.expires_at.as_ref().map(When::seconds) {
        Some(None) => {
            checks.fail("expiresAt", "an RFC 3339 timestamp");
            None
        }
        Some(Some(at)) if at <= now() => {
            checks.fail("expiresAt", "must be in the future");
            None
        }
        Some(Some(at)) => Some((at - now()) as u64),
        None => None,
    };
    checks.finish()?;
    // Roles and name come from the account as it is now, not from the
    // token (which may predate a demotion or a deactivation).
    let db = Database::open(crate::DATABASE)?;
    let user = users::current(&db, &caller)?;
    let (secret, key) = tokens::create_api_key(&users::subject(&user), body.name.trim(), ttl)?;
    events::audit(
        request,
        "api_key.created",
        Some(&caller.user_id),
        json!({"keyId": key.id, "target": format!("api_key:{}", key.id)}),
    );
    let mut answer = listed(&key);
    answer["key"] = secret.into();
    Ok(Reply::json(201, answer).header("cache-control", "no-store"))
}

/// `GET /api-keys`: the caller's keys, newest first, revoked ones included.
pub fn list(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let keys = tokens::list_api_keys(&caller.user_id)?;
    Ok(Reply::json(
        200,
        keys.iter().map(listed).collect::<Vec<_>>(),
    ))
}

/// `DELETE /api-keys/{id}`: 204, or 404 if the caller has no such live key.
pub fn revoke(request: &Request, id: &str) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::not_found("no such API key"));
    }
    if !tokens::revoke_api_key(&caller.user_id, id)? {
        return Err(ApiError::not_found("no such API key"));
    }
    events::audit(
        request,
        "api_key.revoked",
        Some(&caller.user_id),
        json!({"keyId": id, "target": format!("api_key:{id}")}),
    );
    Ok(Reply::no_content())
}

/// Revokes every live API key of `user_id` (account recovery).
pub fn revoke_all(user_id: &str) -> Result<(), ApiError> {
    for key in tokens::list_api_keys(user_id)? {
        if key.revoked_at.is_none() {
            tokens::revoke_api_key(user_id, &key.id)?;
        }
    }
    Ok(())
}
