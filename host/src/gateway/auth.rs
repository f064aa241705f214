//! Authentication (bearer JWTs and API keys, verified in the host) and
//! authorization (route roles), and the identity headers a component gets.
//!
//! A JWT's signature and claims are checked by [`Tokens`] and the result
//! cached until the token's `exp`, so a client's repeated requests skip the
//! signature check. The revocation list is consulted on every request, cache
//! or not, so a logout on any host takes effect at once; a revoked token's
//! cached verification is dropped when it is next presented.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use moka::sync::Cache;

use crate::capabilities::tokens::api_keys;
use crate::capabilities::tokens::{
    AuthMethod, Identity, Rejection, Tokens, Unverifiable, unix_now,
};
use crate::manifest::{AuthPolicy, Credentials};
use crate::problem::Problem;

/// Verified identity headers set for the component. Client-sent headers
/// with these prefixes are removed before routing.
pub mod identity_headers {
    use http::HeaderName;
    pub const USER_ID: HeaderName = HeaderName::from_static("x-lamina-user-id");
    pub const USERNAME: HeaderName = HeaderName::from_static("x-lamina-username");
    pub const ROLES: HeaderName = HeaderName::from_static("x-lamina-roles");
    pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-lamina-token-id");
    /// The credential's expiry, seconds since the epoch (what `tokens.revoke` wants).
    pub const TOKEN_EXPIRES: HeaderName = HeaderName::from_static("x-lamina-token-expires");
    pub const AUTH_METHOD: HeaderName = HeaderName::from_static("x-lamina-auth-method");
    /// Prefixes no client may send.
    pub const RESERVED_PREFIXES: [&str; 2] = ["x-lamina-", "x-user-"];
}

/// Most verified tokens kept.
const VERIFIED_CACHE_ENTRIES: u64 = 100_000;

/// Verifies credentials and applies route policies.
pub struct Authenticator {
    tokens: Arc<Tokens>,
    /// JWTs verified recently, each kept until its own `exp` at most.
    verified: Cache<String, Identity>,
}

/// Expires each cached verification at its token's `exp`.
struct AtTokenExpiry;

impl moka::Expiry<String, Identity> for AtTokenExpiry {
    fn expire_after_create(&self, _: &String, value: &Identity, _: Instant) -> Option<Duration> {
        let exp = value.expires_at.unwrap_or(0);
        Some(Duration::from_secs(exp.saturating_sub(unix_now())))
    }
}

/// Why a request was not let through.
enum Refusal {
    /// 401.
    Rejected(Rejection),
    /// 503: the credential could not be checked.
    Unverifiable(Unverifiable),
}

impl Authenticator {
    /// An authenticator over the host's tokens service.
    pub fn new(tokens: Arc<Tokens>) -> Authenticator {
        Authenticator {
            tokens,
            verified: Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .expire_after(AtTokenExpiry)
                .build(),
        }
    }

    /// Verifies a bearer credential (JWT or `lam_` API key), including the
    /// revocation list.
    async fn verify(&self, credential: &str) -> Result<Identity, Refusal> {
        let identity = if api_keys::is_api_key(credential) {
            self.tokens
                .verify_api_key(credential)
                .await
                .map_err(Refusal::Unverifiable)?
                .map_err(Refusal::Rejected)?
        } else {
            self.verify_jwt(credential).map_err(Refusal::Rejected)?
        };
        if self
            .tokens
            .is_revoked(&identity)
            .await
            .map_err(Refusal::Unverifiable)?
        {
            self.verified.invalidate(credential);
            return Err(Refusal::Rejected(Rejection::Revoked));
        }
        Ok(identity)
    }

    /// A JWT's signature and claims, from the cache when possible.
    fn verify_jwt(&self, token: &str) -> Result<Identity, Rejection> {
        if let Some(hit) = self.verified.get(token)
            && hit.expires_at.is_some_and(|exp| exp > unix_now())
        {
            metrics::counter!("lamina_cache_requests_total", "cache" => "tokens", "result" => "hit")
                .increment(1);
            return Ok(hit);
        }
        metrics::counter!("lamina_cache_requests_total", "cache" => "tokens", "result" => "miss")
            .increment(1);
        let identity = self.tokens.decode_jwt(token)?;
        self.verified.insert(token.to_owned(), identity.clone());
        Ok(identity)
    }

    /// Applies a route's policy to a request's headers: strips
    /// client-sent identity headers, verifies the bearer credential if the
    /// route looks at it, checks roles, and sets the verified identity
    /// headers. `Err` is the 401/403/503 to answer with.
    pub async fn authorize(
        &self,
        headers: &mut HeaderMap,
        policy: AuthPolicy,
        credentials: Credentials,
        roles: &[String],
    ) -> Result<Option<Identity>, Problem> {
        strip_identity_headers(headers);
        if policy == AuthPolicy::None {
            return Ok(None);
        }
        let credential = headers.get(header::AUTHORIZATION).map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, credential)| credential.trim())
        });
        let identity = match credential {
            None if policy == AuthPolicy::Optional => return Ok(None),
            None => return Err(unauthorized(Rejection::Missing)),
            Some(None) => return Err(unauthorized(Rejection::Malformed)),
            Some(Some(credential)) => match self.verify(credential).await {
                Ok(identity) => identity,
                Err(Refusal::Rejected(rejection)) => return Err(unauthorized(rejection)),
                Err(Refusal::Unverifiable(Unverifiable(why))) => {
                    tracing::warn!("cannot verify a credential: {why}");
                    metrics::counter!("lamina_auth_failures_total", "reason" => "unverifiable")
                        .increment(1);
                    return Err(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "credentials cannot be checked right now",
                    )
                    .with_header(header::RETRY_AFTER, "5"));
                }
            },
        };
        if credentials == Credentials::Session && identity.method == AuthMethod::ApiKey {
            metrics::counter!("lamina_auth_failures_total", "reason" => "session_required")
                .increment(1);
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "this route needs a login session: API keys are not accepted here",
            ));
        }
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
        (TOKEN_EXPIRES, identity.expires_at.map(|t| t.to_string())),
        (AUTH_METHOD, Some(identity.method.as_str().to_owned())),
    ];
    for (name, value) in values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
}
