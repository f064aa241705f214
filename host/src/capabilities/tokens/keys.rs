//! The JWT keys: the verification key every request is checked against and,
//! when configured, the signing key behind `tokens.sign`. Only the configured
//! algorithm is accepted, so `alg: none` and algorithm confusion (an RS256
//! public key used as an HS256 secret) fail.

use std::path::Path;

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthConfig, JwtAlgorithm, Rejection};

/// Environment variable holding the HS256 secret (wins over the dev secret).
pub const SECRET_ENV: &str = "LAMINA_JWT_SECRET";

/// The claims Lamina reads from, and writes into, a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What `sign` writes: the claims plus issuer and audience, and the name
/// also as `username` for clients that look for that.
#[derive(Serialize)]
struct Signed<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(flatten)]
    claims: &'a Claims,
}

/// Verification and (optional) signing keys for one algorithm.
pub struct Keys {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    header: Header,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl Keys {
    /// Loads the keys `[auth]` names. HS256 takes its secret from
    /// `LAMINA_JWT_SECRET`, else from `<data dir>/auth/jwt-secret`, created
    /// with a random value (owner-only) on first start; RS256/EdDSA read PEM
    /// files (`public_key`, and `private_key` to sign).
    pub fn load(
        config: &AuthConfig,
        data_dir: &Path,
        env_secret: Option<String>,
    ) -> anyhow::Result<Keys> {
        let (algorithm, decoding, encoding) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = match env_secret.filter(|s| !s.is_empty()) {
                    Some(secret) => secret.into_bytes(),
                    None => dev_secret(data_dir)?,
                };
                anyhow::ensure!(
                    secret.len() >= 32,
                    "{SECRET_ENV} must be at least 32 bytes for HS256"
                );
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(&secret),
                    Some(EncodingKey::from_secret(&secret)),
                )
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
                let path = config.public_key.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("auth.public_key is required for {:?}", config.algorithm)
                })?;
                let public = read_pem("auth.public_key", path)?;
                let private = config
                    .private_key
                    .as_deref()
                    .map(|path| read_pem("auth.private_key", path))
                    .transpose()?;
                if config.algorithm == JwtAlgorithm::RS256 {
                    (
                        Algorithm::RS256,
                        DecodingKey::from_rsa_pem(&public)?,
                        private
                            .map(|pem| EncodingKey::from_rsa_pem(&pem))
                            .transpose()?,
                    )
                } else {
                    (
                        Algorithm::EdDSA,
                        DecodingKey::from_ed_pem(&public)?,
                        private
                            .map(|pem| EncodingKey::from_ed_pem(&pem))
                            .transpose()?,
                    )
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Ok(Keys {
            decoding,
            encoding,
            header: Header::new(algorithm),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Verifies a compact JWT's signature and claims.
    pub fn decode(&self, token: &str) -> Result<Claims, Rejection> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
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
            })
    }

    /// Signs `claims` with this host's issuer and audience; `None` if no
    /// signing key is configured (RS256/EdDSA without `private_key`).
    pub fn sign(&self, claims: &Claims) -> Option<anyhow::Result<String>> {
        let key = self.encoding.as_ref()?;
        let signed = Signed {
            iss: &self.issuer,
            aud: &self.audience,
            username: claims.name.as_deref(),
            claims,
        };
        Some(jsonwebtoken::encode(&self.header, &signed, key).map_err(Into::into))
    }
}

fn read_pem(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {key} {}", path.display()))
}

/// The persisted development secret: 64 hex characters (256 random bits),
/// written owner-only on first use.
fn dev_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("auth").join("jwt-secret");
    match std::fs::read(&path) {
        Ok(secret) => return Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let dir = path.parent().expect("a file path has a parent");
    std::fs::create_dir_all(dir)?;
    let secret = super::random_hex::<32>()?;
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
