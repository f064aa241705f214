//! Password hashing: argon2id (PHC string format, so parameters can change
//! without invalidating stored hashes).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use lamina_sdk::api::{ApiError, random_bytes};

/// 12 MiB, 3 passes, 1 lane: one of OWASP's argon2id settings, chosen
/// so a login costs well under 100 ms inside the component (see
/// docs/benchmarks.md).
fn argon2() -> Argon2<'static> {
    let params = Params::new(12 * 1024, 3, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC hash of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(&random_bytes(16))
        .map_err(|e| ApiError::new(503, "hashing failed", e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::new(503, "hashing failed", e.to_string()))
}

/// Whether `password` matches `stored`. With no stored hash (unknown user)
/// it still does the work of one check, so timing tells nothing.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    match stored {
        Some(stored) => check(password, stored),
        None => {
            let _ = hash(password);
            false
        }
    }
}

fn check(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}
