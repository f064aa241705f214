//! The `tokens` capability and the credentials the gateway checks: JWT
//! access tokens (signed and verified with the keys `[auth]` configures),
//! API keys (stored hashed in SQL), and the revocation list both share.
//!
//! A component granted `tokens = true` (the auth service) issues and revokes
//! credentials through WIT without ever seeing the signing key; the gateway
//! ([`crate::gateway::auth`]) verifies them on every request.

pub mod api_keys;
pub mod keys;
pub mod revocations;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::CapabilityView;
use super::bindings::lamina::platform::tokens as wit;
use crate::breaker::BreakerConfig;
use crate::capabilities::kv::StoreConfig;
use crate::capabilities::sql::Databases;
use api_keys::{ApiKeyRejection, ApiKeys};
use keys::{Claims, Keys};
use revocations::{MAX_ID_BYTES, Revocations};

/// `[auth]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `HS256` (default), `RS256` or `EdDSA`.
    pub algorithm: JwtAlgorithm,
    /// Expected (and issued) `iss`.
    pub issuer: String,
    /// Expected (and issued) `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// RS256/EdDSA: PEM public key file (relative to the runtime-config file).
    pub public_key: Option<PathBuf>,
    /// RS256/EdDSA: PEM private key file, needed only to sign tokens.
    pub private_key: Option<PathBuf>,
    /// Longest lifetime `tokens.sign` and `create-api-key` grant.
    #[serde(with = "humantime_serde")]
    pub max_token_ttl: Duration,
    /// Longest lifetime of an API key (keys may also be created without expiry).
    #[serde(with = "humantime_serde")]
    pub max_api_key_ttl: Duration,
    /// `[auth.revocations]`: where the revocation list lives (in-process by
    /// default; Redis so every host shares it).
    pub revocations: StoreConfig,
    /// The database holding API keys (`lamina_api_keys`): host-only, never
    /// granted to a component.
    pub api_key_database: String,
    /// How long an API key lookup is cached.
    #[serde(with = "humantime_serde")]
    pub api_key_cache_ttl: Duration,
}

/// The accepted signing algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256.
    RS256,
    /// Ed25519.
    EdDSA,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            issuer: "lamina".into(),
            audience: "lamina".into(),
            leeway: Duration::from_secs(30),
            public_key: None,
            private_key: None,
            max_token_ttl: Duration::from_secs(7 * 24 * 3600),
            max_api_key_ttl: Duration::from_secs(366 * 24 * 3600),
            revocations: StoreConfig::embedded(),
            api_key_database: crate::capabilities::sql::HOST_DATABASE.into(),
            api_key_cache_ttl: Duration::from_secs(30),
        }
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT access token.
    Jwt,
    /// An API key.
    ApiKey,
}

impl AuthMethod {
    /// The `x-lamina-auth-method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api-key",
        }
    }
}

/// Who made a request, as verified by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub` (or the API key's owner).
    pub user_id: String,
    /// `name` (or `preferred_username`), if present.
    pub username: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `jti`, or the API key's id.
    pub token_id: Option<String>,
    /// `iat` (or the key's creation), seconds since the epoch.
    pub issued_at: Option<u64>,
    /// `exp` (or the key's expiry), seconds since the epoch.
    pub expires_at: Option<u64>,
    /// JWT or API key.
    pub method: AuthMethod,
}

/// Why a credential was refused (also the `reason` logged and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No credential on a route that needs one.
    Missing,
    /// Not a bearer credential, or not a JWT.
    Malformed,
    /// Expired (past `exp` + leeway).
    Expired,
    /// Not valid yet (`nbf`).
    NotYetValid,
    /// Signature, algorithm or key mismatch; an unknown API key.
    BadSignature,
    /// Wrong `iss` or `aud`.
    WrongAudience,
    /// A required claim is missing or malformed.
    BadClaims,
    /// Revoked (logout, a revoked API key, "log out everywhere").
    Revoked,
}

impl Rejection {
    /// What the 401 says.
    pub fn detail(self) -> &'static str {
        match self {
            Rejection::Missing => "this route needs a bearer token",
            Rejection::Malformed => "the credential is not a well-formed bearer JWT or API key",
            Rejection::Expired => "the credential has expired",
            Rejection::NotYetValid => "the token is not valid yet",
            Rejection::BadSignature => {
                "the credential's signature, algorithm or key is not accepted"
            }
            Rejection::WrongAudience => "the token was issued for another issuer or audience",
            Rejection::BadClaims => "the token lacks required claims",
            Rejection::Revoked => "the credential has been revoked",
        }
    }

    /// Short machine-readable reason, for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed => "malformed",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::BadClaims => "bad_claims",
            Rejection::Revoked => "revoked",
        }
    }
}

/// A credential check that could not be completed: the revocation list or
/// the key table did not answer. The gateway answers 503, never "allowed".
#[derive(Debug)]
pub struct Unverifiable(pub String);

/// Keys, revocation list and API keys: built once at start-up.
pub struct Tokens {
    keys: Keys,
    leeway: Duration,
    revocations: Revocations,
    api_keys: ApiKeys,
    max_token_ttl: Duration,
    max_api_key_ttl: Duration,
    api_key_cache_ttl: Duration,
}

impl Tokens {
    /// Loads the keys and opens the revocation list and the API key table.
    pub async fn open(
        config: &AuthConfig,
        data_dir: &std::path::Path,
        env_secret: Option<String>,
        databases: &Databases,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Tokens> {
        let db = databases.get(&config.api_key_database).ok_or_else(|| {
            anyhow::anyhow!(
                "auth.api_key_database: no database `{}` is configured",
                config.api_key_database
            )
        })?;
        Ok(Tokens {
            keys: Keys::load(config, data_dir, env_secret)?,
            revocations: Revocations::open(
                &config.revocations,
                config.max_token_ttl,
                config.leeway,
                breaker,
            )?,
            leeway: config.leeway,
            api_keys: ApiKeys::open(db.clone(), config.api_key_cache_ttl).await?,
            max_token_ttl: config.max_token_ttl,
            max_api_key_ttl: config.max_api_key_ttl,
            api_key_cache_ttl: config.api_key_cache_ttl,
        })
    }

    /// Verifies a JWT's signature and claims (not the revocation list).
    pub fn decode_jwt(&self, token: &str) -> Result<Identity, Rejection> {
        let claims = self.keys.decode(token)?;
        // Revocations are kept for `max_token_ttl`: a token living longer
        // could outlive its revocation, so it is not accepted at all. Ids
        // must fit in an identity header.
        let latest_exp = unix_now() + (self.max_token_ttl + self.leeway).as_secs();
        if claims.exp > latest_exp
            || !is_header_safe_id(&claims.sub)
            || claims
                .jti
                .as_deref()
                .is_some_and(|id| !is_header_safe_id(id))
        {
            return Err(Rejection::BadClaims);
        }
        Ok(Identity {
            user_id: claims.sub,
            username: claims.name.or(claims.preferred_username),
            roles: claims.roles,
            token_id: claims.jti,
            issued_at: claims.iat,
            expires_at: Some(claims.exp),
            method: AuthMethod::Jwt,
        })
    }

    /// Looks up an API key (`lam_…`).
    pub async fn verify_api_key(
        &self,
        key: &str,
    ) -> Result<Result<Identity, Rejection>, Unverifiable> {
        match self.api_keys.verify(key).await {
            Ok(identity) => Ok(Ok(identity)),
            Err(ApiKeyRejection::Refused(rejection)) => Ok(Err(rejection)),
            Err(ApiKeyRejection::Unavailable(e)) => Err(Unverifiable(format!(
                "the API key table is unavailable: {e:?}"
            ))),
        }
    }

    /// Whether the credential behind `identity` has been revoked.
    pub async fn is_revoked(&self, identity: &Identity) -> Result<bool, Unverifiable> {
        self.revocations
            .is_revoked(identity)
            .await
            .map_err(|e| Unverifiable(format!("the revocation list is unavailable: {e:?}")))
    }

    /// Probes the revocation list and the API key table (`/ready`).
    pub async fn readiness(&self) -> Vec<(String, Result<(), String>)> {
        vec![
            (
                "auth:revocations".to_owned(),
                self.revocations.probe().await,
            ),
            ("auth:api_keys".to_owned(), self.api_keys.probe().await),
        ]
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `N` bytes from the OS random source, hex-encoded.
pub fn random_hex<const N: usize>() -> anyhow::Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Whether `id` can be a subject or token id: 1 to [`MAX_ID_BYTES`]
/// visible ASCII characters, so it always reaches the component as an
/// identity header.
fn is_header_safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks a subject from a guest: a header-safe id, and role names without
/// the `,` that joins them in the identity header.
fn check_subject(subject: &wit::Subject) -> Result<(), wit::Error> {
    let invalid = |why: String| Err(wit::Error::Invalid(why));
    if !is_header_safe_id(&subject.id) {
        return invalid(format!(
            "subject ids are 1 to {MAX_ID_BYTES} visible ASCII characters"
        ));
    }
    if subject
        .username
        .as_ref()
        .is_some_and(|n| n.len() > MAX_ID_BYTES)
    {
        return invalid(format!("usernames are at most {MAX_ID_BYTES} bytes"));
    }
    if subject.roles.len() > 32 {
        return invalid("at most 32 roles".into());
    }
    for role in &subject.roles {
        if role.is_empty()
            || role.len() > 64
            || !role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        {
            return invalid(format!(
                "role `{role}`: 1 to 64 letters, digits, `_`, `-`, `.` or `:`"
            ));
        }
    }
    Ok(())
}

fn check_subject_id(id: &str) -> Result<(), wit::Error> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(wit::Error::Invalid(format!(
            "subject ids are 1 to {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_ttl(ttl_seconds: u64, max: Duration) -> Result<Duration, wit::Error> {
    if ttl_seconds == 0 || ttl_seconds > max.as_secs() {
        return Err(wit::Error::Invalid(format!(
            "ttl must be 1 to {} seconds",
            max.as_secs()
        )));
    }
    Ok(Duration::from_secs(ttl_seconds))
}

fn kv_unavailable(error: impl std::fmt::Debug) -> wit::Error {
    wit::Error::Unavailable(format!("the revocation list is unavailable: {error:?}"))
}

fn sql_error(error: super::bindings::lamina::platform::sql::Error) -> wit::Error {
    use super::bindings::lamina::platform::sql::Error as E;
    match error {
        E::Invalid(why) => wit::Error::Invalid(why),
        other => wit::Error::Unavailable(format!("the API key table is unavailable: {other:?}")),
    }
}

fn to_wit(key: api_keys::ApiKey) -> wit::ApiKey {
    wit::ApiKey {
        id: key.id,
        prefix: key.prefix,
        name: key.name,
        owner: wit::Subject {
            id: key.subject,
            username: key.username,
            roles: key.roles,
        },
        created_at: key.created_at,
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        last_used_at: key.last_used_at,
    }
}

impl CapabilityView<'_> {
    /// The tokens service and a checked subject id, for the calls that act
    /// on every credential of a subject.
    fn tokens_for_subject(&self, subject_id: &str) -> Result<&Tokens, wit::Error> {
        let tokens = self.tokens()?;
        check_subject_id(subject_id)?;
        Ok(tokens)
    }

    /// The tokens service, if this component is granted it.
    fn tokens(&self) -> Result<&Tokens, wit::Error> {
        if !self.ctx.grants.tokens {
            return Err(wit::Error::AccessDenied(
                "the tokens capability is not granted to this component (add `tokens = true` to it in spin.toml)".into(),
            ));
        }
        Ok(&self.ctx.shared.tokens)
    }
}

impl wit::Host for CapabilityView<'_> {
    async fn sign(
        &mut self,
        subject: wit::Subject,
        ttl_seconds: u64,
    ) -> wasmtime::Result<Result<wit::Token, wit::Error>> {
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_subject(&subject) {
            return Ok(Err(e));
        }
        let ttl = match check_ttl(ttl_seconds, tokens.max_token_ttl) {
            Ok(ttl) => ttl,
            Err(e) => return Ok(Err(e)),
        };
        // After a revoke-subject in this same second, `iat` is the next
        // second so the new token is not caught by it.
        let now = unix_now();
        let not_before = match tokens.revocations.not_before(&subject.id).await {
            Ok(not_before) => not_before.unwrap_or(0),
            Err(e) => return Ok(Err(kv_unavailable(e))),
        };
        let claims = Claims {
            sub: subject.id,
            exp: now + ttl.as_secs(),
            iat: Some(now.max(not_before)),
            name: subject.username,
            preferred_username: None,
            roles: subject.roles,
            jti: Some(uuid::Uuid::new_v4().to_string()),
        };
        Ok(match tokens.keys.sign(&claims) {
            None => Err(wit::Error::Unavailable(
                "no signing key is configured (auth.private_key)".into(),
            )),
            Some(Err(e)) => Err(wit::Error::Unavailable(format!("cannot sign: {e}"))),
            Some(Ok(token)) => Ok(wit::Token {
                token,
                id: claims.jti.unwrap_or_default(),
                expires_at: claims.exp as i64,
            }),
        })
    }

    async fn revoke(&mut self, id: String, until: i64) -> wasmtime::Result<Result<(), wit::Error>> {
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return Ok(Err(e)),
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Ok(Err(wit::Error::Invalid(format!(
                "token ids are 1 to {MAX_ID_BYTES} bytes"
            ))));
        }
        // Never longer than a token may live: nothing needs it past that.
        let until = (until.max(0) as u64).min(unix_now() + tokens.max_token_ttl.as_secs());
        Ok(tokens
            .revocations
            .revoke(&id, until)
            .await
            .map_err(kv_unavailable))
    }

    async fn revoke_subject(
        &mut self,
        subject_id: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(match self.tokens_for_subject(&subject_id) {
            Ok(tokens) => tokens
                .revocations
                .revoke_subject(&subject_id)
                .await
                .map_err(kv_unavailable),
            Err(e) => Err(e),
        })
    }

    async fn disable_subject(
        &mut self,
        subject_id: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(match self.tokens_for_subject(&subject_id) {
            Ok(tokens) => tokens
                .revocations
                .disable_subject(&subject_id)
                .await
                .map_err(kv_unavailable),
            Err(e) => Err(e),
        })
    }

    async fn enable_subject(
        &mut self,
        subject_id: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(match self.tokens_for_subject(&subject_id) {
            Ok(tokens) => tokens
                .revocations
                .enable_subject(&subject_id)
                .await
                .map_err(kv_unavailable),
            Err(e) => Err(e),
        })
    }

    async fn update_subject(
        &mut self,
        subject: wit::Subject,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_subject(&subject) {
            return Ok(Err(e));
        }
        Ok(tokens
            .api_keys
            .update_subject(&subject.id, subject.username.as_deref(), &subject.roles)
            .await
            .map_err(sql_error))
    }

    async fn create_api_key(
        &mut self,
        subject: wit::Subject,
        name: String,
        ttl_seconds: Option<u64>,
    ) -> wasmtime::Result<Result<(String, wit::ApiKey), wit::Error>> {
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_subject(&subject) {
            return Ok(Err(e));
        }
        if name.trim().is_empty() || name.len() > api_keys::MAX_NAME_BYTES {
            return Ok(Err(wit::Error::Invalid(format!(
                "key names are 1 to {} bytes",
                api_keys::MAX_NAME_BYTES
            ))));
        }
        let ttl = match ttl_seconds.map(|t| check_ttl(t, tokens.max_api_key_ttl)) {
            Some(Err(e)) => return Ok(Err(e)),
            Some(Ok(ttl)) => Some(ttl),
            None => None,
        };
        Ok(tokens
            .api_keys
            .create(
                &subject.id,
                subject.username.as_deref(),
                &subject.roles,
                name.trim(),
                ttl,
            )
            .await
            .map(|(secret, key)| (secret, to_wit(key)))
            .map_err(sql_error))
    }

    async fn list_api_keys(
        &mut self,
        subject_id: String,
    ) -> wasmtime::Result<Result<Vec<wit::ApiKey>, wit::Error>> {
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return Ok(Err(e)),
        };
        Ok(tokens
            .api_keys
            .list(&subject_id)
            .await
            .map(|keys| keys.into_iter().map(to_wit).collect())
            .map_err(sql_error))
    }

    async fn revoke_api_key(
        &mut self,
        subject_id: String,
        id: String,
    ) -> wasmtime::Result<Result<bool, wit::Error>> {
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return Ok(Err(e)),
        };
        if id.len() > MAX_ID_BYTES || subject_id.len() > MAX_ID_BYTES {
            return Ok(Err(wit::Error::Invalid(format!(
                "ids are at most {MAX_ID_BYTES} bytes"
            ))));
        }
        let revoked = match tokens.api_keys.revoke(&subject_id, &id).await {
            Ok(Some(revoked)) => revoked,
            Ok(None) => return Ok(Ok(false)),
            Err(e) => return Ok(Err(sql_error(e))),
        };
        // Other hosts may hold the key in their lookup cache for up to its
        // lifetime: list it until then (again on a retry, in case the first
        // call's write failed).
        let cached_until = unix_now() + tokens.api_key_cache_ttl.as_secs() + 1;
        let until = revoked
            .expires_at
            .map_or(cached_until, |t| (t.max(0) as u64).min(cached_until));
        Ok(tokens
            .revocations
            .revoke(&id, until)
            .await
            .map(|()| revoked.now)
            .map_err(kv_unavailable))
    }
}
