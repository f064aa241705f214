//! Authentication (JWT bearer tokens, verified in the host) and
//! authorization (route roles), and the identity headers a component gets.
//!
//! Only the configured algorithm is accepted, so `alg: none` and algorithm
//! confusion (an RS256 public key used as an HS256 secret) fail. `exp` is
//! required, `nbf` checked, `iss` and `aud` must match, with a small leeway.
//! Successful verifications are cached until the token's `exp`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde::Deserialize;

use crate::manifest::AuthPolicy;
use crate::problem::Problem;

/// Environment variable holding the HS256 secret (wins over the dev secret).
pub const SECRET_ENV: &str = "LAMINA_JWT_SECRET";

/// Verified identity headers set for the component. Client-sent headers
/// with these prefixes are removed before routing.
pub mod identity_headers {
    use http::HeaderName;
    pub const USER_ID: HeaderName = HeaderName::from_static("x-lamina-user-id");
    pub const USERNAME: HeaderName = HeaderName::from_static("x-lamina-username");
    pub const ROLES: HeaderName = HeaderName::from_static("x-lamina-roles");
    pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-lamina-token-id");
    pub const AUTH_METHOD: HeaderName = HeaderName::from_static("x-lamina-auth-method");
    /// Prefixes no client may send.
    pub const RESERVED_PREFIXES: [&str; 2] = ["x-lamina-", "x-user-"];
}

/// `[auth]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `HS256` (default), `RS256` or `EdDSA`.
    pub algorithm: JwtAlgorithm,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// RS256/EdDSA: PEM public key file (relative to the runtime-config file).
    pub public_key: Option<PathBuf>,
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
        }
    }
}

/// Who made a request, as verified by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub user_id: String,
    /// `name` (or `preferred_username`), if present.
    pub username: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `jti`, if present.
    pub token_id: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    jti: Option<String>,
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
    /// Signature, algorithm or key mismatch.
    BadSignature,
    /// Wrong `iss` or `aud`.
    WrongAudience,
    /// A required claim is missing or malformed.
    BadClaims,
}

impl Rejection {
    fn detail(self) -> &'static str {
        match self {
            Rejection::Missing => "this route needs a bearer token",
            Rejection::Malformed => "the credential is not a well-formed bearer JWT",
            Rejection::Expired => "the token has expired",
            Rejection::NotYetValid => "the token is not valid yet",
            Rejection::BadSignature => "the token's signature or algorithm is not accepted",
            Rejection::WrongAudience => "the token was issued for another issuer or audience",
            Rejection::BadClaims => "the token lacks required claims",
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
        }
    }
}

/// Verifies bearer tokens against one key.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    /// Tokens verified recently, each kept until its own `exp` at most, so a
    /// client's repeated requests skip the signature check.
    verified: Cache<String, Verified>,
}

/// A cached verification.
#[derive(Clone)]
struct Verified {
    identity: Identity,
    /// `exp`, seconds since the Unix epoch.
    expires_at: u64,
}

/// Expires each cached verification at its token's `exp`.
struct AtTokenExpiry;

impl moka::Expiry<String, Verified> for AtTokenExpiry {
    fn expire_after_create(&self, _: &String, value: &Verified, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(
            value.expires_at.saturating_sub(unix_now()),
        ))
    }
}

/// Most verified tokens kept.
const VERIFIED_CACHE_ENTRIES: u64 = 100_000;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Builds the verifier from `[auth]`. HS256 takes its secret from
    /// `LAMINA_JWT_SECRET`, else from `<data dir>/auth/jwt-secret`, created
    /// with a random value (owner-only) on first start.
    pub fn new(
        config: &AuthConfig,
        data_dir: &Path,
        env_secret: Option<String>,
    ) -> anyhow::Result<Authenticator> {
        let (algorithm, key) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = match env_secret.filter(|s| !s.is_empty()) {
                    Some(secret) => secret.into_bytes(),
                    None => dev_secret(data_dir)?,
                };
                anyhow::ensure!(
                    secret.len() >= 32,
                    "{SECRET_ENV} must be at least 32 bytes for HS256"
                );
                (Algorithm::HS256, DecodingKey::from_secret(&secret))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
                let path = config.public_key.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("auth.public_key is required for {:?}", config.algorithm)
                })?;
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read auth.public_key {}", path.display()))?;
                if config.algorithm == JwtAlgorithm::RS256 {
                    (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)?)
                } else {
                    (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem)?)
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Ok(Authenticator {
            key,
            validation,
            verified: Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .expire_after(AtTokenExpiry)
                .build(),
        })
    }

    /// Verifies a compact JWT.
    pub fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        if let Some(hit) = self.verified.get(token)
            && hit.expires_at > unix_now()
        {
            return Ok(hit.identity);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => Rejection::Expired,
                ErrorKind::ImmatureSignature => Rejection::NotYetValid,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => Rejection::WrongAudience,
                ErrorKind::MissingRequiredClaim(_)
                | ErrorKind::InvalidClaimFormat(_)
                | ErrorKind::Json(_) => Rejection::BadClaims,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    Rejection::Malformed
                }
                _ => Rejection::BadSignature,
            },
        )?;
        let claims = data.claims;
        let identity = Identity {
            user_id: claims.sub,
            username: claims.name.or(claims.preferred_username),
            roles: claims.roles,
            token_id: claims.jti,
        };
        self.verified.insert(
            token.to_owned(),
            Verified {
                identity: identity.clone(),
                expires_at: claims.exp,
            },
        );
        Ok(identity)
    }

    /// Applies a route's policy to a request's headers: strips
    /// client-sent identity headers, verifies the bearer token if the route
    /// looks at it, checks roles, and sets the verified identity headers.
    /// `Err` is the 401/403 to answer with.
    pub fn authorize(
        &self,
        headers: &mut HeaderMap,
        policy: AuthPolicy,
        roles: &[String],
    ) -> Result<Option<Identity>, Problem> {
        strip_identity_headers(headers);
        if policy == AuthPolicy::None {
            return Ok(None);
        }
        let credential = headers.get(header::AUTHORIZATION).map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
        });
        let identity = match credential {
            None if policy == AuthPolicy::Optional => return Ok(None),
            None => return Err(unauthorized(Rejection::Missing)),
            Some(None) => return Err(unauthorized(Rejection::Malformed)),
            Some(Some(token)) => self.verify(token).map_err(unauthorized)?,
        };
        if !roles.is_empty() && !identity.roles.iter().any(|r| roles.contains(r)) {
            metrics::counter!("lamina_auth_failures_total", "reason" => "forbidden").increment(1);
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("this route needs one of the roles: {}", roles.join(", ")),
            ));
        }
        set_identity_headers(headers, &identity);
        Ok(Some(identity))
    }
}

fn unauthorized(rejection: Rejection) -> Problem {
    metrics::counter!("lamina_auth_failures_total", "reason" => rejection.reason()).increment(1);
    tracing::debug!(reason = rejection.reason(), "credential refused");
    let challenge = match rejection {
        Rejection::Missing => "Bearer realm=\"lamina\"".to_owned(),
        other => format!(
            "Bearer realm=\"lamina\", error=\"invalid_token\", error_description=\"{}\"",
            other.detail()
        ),
    };
    Problem::new(StatusCode::UNAUTHORIZED, rejection.detail())
        .with_header(header::WWW_AUTHENTICATE, challenge)
}

fn strip_identity_headers(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            identity_headers::RESERVED_PREFIXES
                .iter()
                .any(|prefix| name.as_str().starts_with(prefix))
        })
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

fn set_identity_headers(headers: &mut HeaderMap, identity: &Identity) {
    use identity_headers::*;
    let values = [
        (USER_ID, Some(identity.user_id.clone())),
        (USERNAME, identity.username.clone()),
        (ROLES, Some(identity.roles.join(","))),
        (TOKEN_ID, identity.token_id.clone()),
        (AUTH_METHOD, Some("jwt".to_owned())),
    ];
    for (name, value) in values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
}

/// The persisted development secret: 64 hex characters from two v4 UUIDs
/// (244 random bits), written owner-only on first use.
fn dev_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("auth").join("jwt-secret");
    match std::fs::read(&path) {
        Ok(secret) => return Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let dir = path.parent().expect("a file path has a parent");
    std::fs::create_dir_all(dir)?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a development JWT secret (set {SECRET_ENV} in production)");
    Ok(secret.into_bytes())
}
