//! Issuing and revoking credentials, for a component granted `tokens = true`
//! (the auth service). The host holds the signing key; these calls only ask
//! it to sign, revoke or manage API keys.

use crate::platform::tokens;

pub use tokens::{
    ApiKey, Error, Subject, Token, create_api_key, disable_subject, enable_subject, list_api_keys,
    revoke, revoke_api_key, revoke_subject, sign, update_subject,
};

impl Error {
    /// The HTTP status a service should answer with: 403 when the
    /// capability is not granted, 400 for invalid input, 503 when the host
    /// cannot sign or reach its stores.
    pub fn status(&self) -> u16 {
        match self {
            Error::AccessDenied(_) => 403,
            Error::Invalid(_) => 400,
            Error::Unavailable(_) => 503,
        }
    }

    /// The host's explanation.
    pub fn detail(&self) -> &str {
        match self {
            Error::AccessDenied(d) | Error::Invalid(d) | Error::Unavailable(d) => d,
        }
    }
}
