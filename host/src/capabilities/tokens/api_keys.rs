//! API keys for programmatic clients: `lam_` + 64 hex characters (256
//! random bits). Only a SHA-256 digest is stored (in `lamina_api_keys` on
//! the configured database); a slow password hash is unnecessary for a
//! secret with that much entropy, and would cost every request. Lookups are
//! cached for a short time; a revocation is also put on the revocation list
//! so every host refuses the key at once, cache or not.

use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::{AuthMethod, Identity, Rejection, unix_now};
use crate::capabilities::bindings::lamina::platform::sql::{Error as SqlError, Value};
use crate::capabilities::sql::{Database, text};

/// What every API key starts with.
pub const PREFIX: &str = "lam_";
/// Characters of a key shown in listings (`lam_` and 8 hex digits).
const SHOWN: usize = PREFIX.len() + 8;
/// Longest key name.
pub const MAX_NAME_BYTES: usize = 128;
/// Most live keys one subject may hold.
pub const MAX_KEYS_PER_SUBJECT: i64 = 100;
/// Most keys one listing returns (the newest; revoked keys are kept).
const MAX_LISTED: usize = 500;

/// Host-internal schema, created at start-up (not an application migration).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lamina_api_keys (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        username TEXT,
        roles TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS lamina_api_keys_subject ON lamina_api_keys (subject)",
    // When each key was last used, apart from the keys: written often,
    // read only by listings.
    "CREATE TABLE IF NOT EXISTS lamina_api_key_use (
        id TEXT PRIMARY KEY,
        last_used_at BIGINT NOT NULL
    )",
];

/// How fresh `last_used_at` is: a host records a key's use at most once
/// per this interval.
const USE_RESOLUTION: Duration = Duration::from_secs(60);

const COLUMNS: &str = "k.id, k.prefix, k.name, k.subject, k.username, k.roles, k.created_at, \
     k.expires_at, k.revoked_at";

/// One stored key, without its secret.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub prefix: String,
    pub name: String,
    pub subject: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Last verified (to within a minute); only listings fill it in.
    pub last_used_at: Option<i64>,
}

/// The key table plus a lookup cache keyed by digest.
pub struct ApiKeys {
    db: Database,
    cache: Cache<String, Option<ApiKey>>,
    /// Keys whose use this host recorded within [`USE_RESOLUTION`].
    recorded: Cache<String, ()>,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `credential` claims to be an API key (by its prefix).
pub fn is_api_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Whether an API key is well formed: the prefix and 64 lowercase hex digits.
fn well_formed(credential: &str) -> bool {
    credential.strip_prefix(PREFIX).is_some_and(|secret| {
        secret.len() == 64
            && secret
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

impl ApiKeys {
    /// Creates the table if needed; lookups are cached for `cache_ttl`.
    pub async fn open(db: Database, cache_ttl: Duration) -> anyhow::Result<Self> {
        for statement in SCHEMA {
            db.execute(statement, vec![])
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the API key table: {e:?}"))?;
        }
        Ok(ApiKeys {
            db,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
            recorded: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(USE_RESOLUTION)
                .build(),
        })
    }

    /// Creates a key for `subject`; returns the secret (shown once) and
    /// its listing.
    pub async fn create(
        &self,
        subject: &str,
        username: Option<&str>,
        roles: &[String],
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<(String, ApiKey), SqlError> {
        let held = self
            .db
            .query(
                "SELECT count(*) FROM lamina_api_keys WHERE subject = $1 AND revoked_at IS NULL",
                vec![text(subject)],
            )
            .await?;
        if matches!(held.rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n >= MAX_KEYS_PER_SUBJECT)
        {
            return Err(SqlError::Invalid(format!(
                "a subject may hold at most {MAX_KEYS_PER_SUBJECT} live API keys"
            )));
        }
        let secret = format!(
            "{PREFIX}{}",
            super::random_hex::<32>().map_err(|e| SqlError::Unavailable(e.to_string()))?
        );
        let now = unix_now() as i64;
        let key = ApiKey {
            id: uuid::Uuid::new_v4().to_string(),
            prefix: secret[..SHOWN].to_owned(),
            name: name.to_owned(),
            subject: subject.to_owned(),
            username: username.map(str::to_owned),
            roles: roles.to_vec(),
            created_at: now,
            expires_at: ttl.map(|ttl| now + ttl.as_secs() as i64),
            revoked_at: None,
            last_used_at: None,
        };
        self.db
            .execute(
                "INSERT INTO lamina_api_keys (id, key_hash, prefix, name, subject, username, roles, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    text(&key.id),
                    Value::Text(digest(&secret)),
                    text(&key.prefix),
                    text(&key.name),
                    text(&key.subject),
                    key.username.as_deref().map_or(Value::Null, text),
                    Value::Text(key.roles.join(",")),
                    Value::Int(now),
                    key.expires_at.map_or(Value::Null, Value::Int),
                ],
            )
            .await?;
        Ok((secret, key))
    }

    /// The keys of `subject`, newest first (at most [`MAX_LISTED`]).
    pub async fn list(&self, subject: &str) -> Result<Vec<ApiKey>, SqlError> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {COLUMNS}, u.last_used_at FROM lamina_api_keys k \
                     LEFT JOIN lamina_api_key_use u ON u.id = k.id \
                     WHERE k.subject = $1 ORDER BY k.created_at DESC, k.id LIMIT {MAX_LISTED}"
                ),
                vec![text(subject)],
            )
            .await?;
        Ok(rows.rows.into_iter().filter_map(row_to_key).collect())
    }

    /// Marks the key `id` of `subject` revoked (idempotent, so a caller
    /// whose revocation-list write failed can simply retry). `None` if
    /// `subject` has no key `id`.
    pub async fn revoke(&self, subject: &str, id: &str) -> Result<Option<Revoked>, SqlError> {
        let now = unix_now() as i64;
        let rows = self
            .db
            .query(
                "UPDATE lamina_api_keys SET revoked_at = COALESCE(revoked_at, $1)
                 WHERE id = $2 AND subject = $3
                 RETURNING expires_at, revoked_at",
                vec![Value::Int(now), text(id), text(subject)],
            )
            .await?;
        self.cache.invalidate_all();
        Ok(rows.rows.into_iter().next().map(|row| Revoked {
            expires_at: match row.first() {
                Some(Value::Int(t)) => Some(*t),
                _ => None,
            },
            now: matches!(row.get(1), Some(Value::Int(t)) if *t == now),
        }))
    }

    /// Gives every key of `subject` its current username and roles; the
    /// lookups this host cached are dropped (other hosts' within
    /// `api_key_cache_ttl`).
    pub async fn update_subject(
        &self,
        subject: &str,
        username: Option<&str>,
        roles: &[String],
    ) -> Result<(), SqlError> {
        self.db
            .execute(
                "UPDATE lamina_api_keys SET username = $1, roles = $2 WHERE subject = $3",
                vec![
                    username.map_or(Value::Null, text),
                    Value::Text(roles.join(",")),
                    text(subject),
                ],
            )
            .await?;
        self.cache.invalidate_all();
        Ok(())
    }

    /// Looks up a presented key (cached). `Err` is why it is refused.
    pub async fn verify(&self, credential: &str) -> Result<Identity, ApiKeyRejection> {
        if !well_formed(credential) {
            return Err(ApiKeyRejection::Refused(Rejection::Malformed));
        }
        let hash = digest(credential);
        let key = match self.cache.get(&hash) {
            Some(cached) => {
                metrics::counter!("lamina_cache_requests_total", "cache" => "api_keys", "result" => "hit").increment(1);
                cached
            }
            None => {
                metrics::counter!("lamina_cache_requests_total", "cache" => "api_keys", "result" => "miss").increment(1);
                let rows = self
                    .db
                    .query(
                        &format!("SELECT {COLUMNS} FROM lamina_api_keys k WHERE k.key_hash = $1"),
                        vec![Value::Text(hash.clone())],
                    )
                    .await
                    .map_err(ApiKeyRejection::Unavailable)?;
                let key = rows.rows.into_iter().next().and_then(row_to_key);
                self.cache.insert(hash, key.clone());
                key
            }
        };
        let key = key.ok_or(ApiKeyRejection::Refused(Rejection::BadSignature))?;
        let now = unix_now() as i64;
        if key.revoked_at.is_some() {
            return Err(ApiKeyRejection::Refused(Rejection::Revoked));
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(ApiKeyRejection::Refused(Rejection::Expired));
        }
        self.record_use(&key.id, now);
        Ok(Identity {
            user_id: key.subject,
            username: key.username,
            roles: key.roles,
            token_id: Some(key.id),
            issued_at: Some(key.created_at as u64),
            expires_at: key.expires_at.map(|t| t as u64),
            method: AuthMethod::ApiKey,
        })
    }

    /// Notes that key `id` was used, at most once per [`USE_RESOLUTION`]
    /// per host, in the background (a request never waits for it).
    fn record_use(&self, id: &str, now: i64) {
        if self.recorded.contains_key(id) {
            return;
        }
        self.recorded.insert(id.to_owned(), ());
        let db = self.db.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let written = db
                .execute(
                    "INSERT INTO lamina_api_key_use (id, last_used_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET last_used_at = excluded.last_used_at",
                    vec![Value::Text(id), Value::Int(now)],
                )
                .await;
            if let Err(e) = written {
                tracing::warn!("cannot record an API key's use: {e:?}");
            }
        });
    }

    /// Whether the key table answers (`/ready`).
    pub async fn probe(&self) -> Result<(), String> {
        self.db
            .query("SELECT 1 FROM lamina_api_keys LIMIT 1", vec![])
            .await
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    }
}

/// The outcome of [`ApiKeys::revoke`].
pub struct Revoked {
    /// The key's expiry.
    pub expires_at: Option<i64>,
    /// Whether this call revoked it (false: it already was).
    pub now: bool,
}

/// Why a presented API key was not accepted.
#[derive(Debug)]
pub enum ApiKeyRejection {
    /// Unknown, revoked or expired.
    Refused(Rejection),
    /// The key table could not be read.
    Unavailable(SqlError),
}

fn row_to_key(row: Vec<Value>) -> Option<ApiKey> {
    let mut values = row.into_iter();
    let mut next = || values.next();
    let text = |v: Option<Value>| match v {
        Some(Value::Text(s)) => Some(s),
        _ => None,
    };
    let int = |v: Option<Value>| match v {
        Some(Value::Int(i)) => Some(i),
        _ => None,
    };
    Some(ApiKey {
        id: text(next())?,
        prefix: text(next())?,
        name: text(next())?,
        subject: text(next())?,
        username: text(next()),
        roles: text(next())?
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: int(next())?,
        expires_at: int(next()),
        revoked_at: int(next()),
        last_used_at: int(next()),
    })
}
