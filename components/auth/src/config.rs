//! The service's settings: spin.toml `[component.auth.variables]`, each
//! with a default there (override with `LAMINA_VAR_<NAME>`).

use lamina_sdk::api::ApiError;
use lamina_sdk::variables;

/// Settings read for one request.
pub struct Config {
    /// Seconds an access token lives (default 15 min).
    pub access_ttl: u64,
    /// Seconds a refresh token lives (default 14 days).
    pub refresh_ttl: u64,
    /// Failed logins of one login name per round before a delay (default 5).
    pub lockout_threshold: i64,
    /// Failed logins from one client address per round (default 50: an
    /// office behind one address shares it).
    pub client_lockout_threshold: i64,
    /// Seconds of the first delay; each next one in a row doubles (60).
    pub lockout_delay: i64,
    /// Seconds a round of failures is counted over, the longest delay, and
    /// the quiet time that forgets the escalation (15 min).
    pub lockout_window: i64,
    /// Seconds a login session lives at most, however often it is
    /// refreshed (default 30 days).
    pub session_lifetime: i64,
    /// Seconds before another reset mail goes to the same account (60).
    pub reset_interval: i64,
    /// Seconds a password-reset token is valid (default 30 min).
    pub reset_ttl: i64,
    /// The page the reset mail links to; `?token=…` is appended.
    pub reset_url: String,
    /// Seconds an email-confirmation link is valid (default 48 h).
    pub confirmation_ttl: i64,
    /// The page the confirmation mail links to; `?token=…` is appended.
    pub confirmation_url: String,
    /// Seconds before `/email/confirm/resend` sends another link (5 min).
    pub confirmation_resend_interval: i64,
    /// Whether an account must confirm its address before it logs in.
    pub require_confirmed_email: bool,
    /// Whether the refresh-token cookie is `Secure` (HTTPS only).
    pub cookie_secure: bool,
    /// The first administrator, created on first use when all three are set.
    pub admin: Option<Admin>,
}

/// `admin_username`, `admin_email`, `admin_password`.
pub struct Admin {
    pub username: String,
    pub email: String,
    pub password: String,
}

impl Config {
    /// Reads every setting; a malformed number is a 500-free 503 naming it.
    pub fn load() -> Result<Config, ApiError> {
        let admin = match (
            get("admin_username"),
            get("admin_email"),
            get("admin_password"),
        ) {
            (Ok(username), Ok(email), Ok(password))
                if !username.is_empty() && !email.is_empty() && !password.is_empty() =>
            {
                Some(Admin {
                    username,
                    email,
                    password,
                })
            }
            _ => None,
        };
        Ok(Config {
            access_ttl: number("access_token_ttl", 900)?,
            refresh_ttl: number("refresh_token_ttl", 14 * 86400)?,
            lockout_threshold: number("lockout_threshold", 5)?,
            client_lockout_threshold: number("client_lockout_threshold", 50)?,
            lockout_delay: number("lockout_delay", 60)?,
            lockout_window: number("lockout_window", 900)?,
            session_lifetime: number("session_lifetime", 30 * 86400)?,
            reset_interval: number("password_reset_interval", 60)?,
            reset_ttl: number("password_reset_ttl", 1800)?,
            reset_url: get("password_reset_url")
                .unwrap_or_else(|_| "http://127.0.0.1:3000/reset-password".to_owned()),
            confirmation_ttl: number("email_confirmation_ttl", 48 * 3600)?,
            confirmation_url: get("email_confirmation_url")
                .unwrap_or_else(|_| "http://127.0.0.1:3000/confirm-email".to_owned()),
            confirmation_resend_interval: number("email_confirmation_resend_interval", 300)?,
            require_confirmed_email: get("require_confirmed_email").is_ok_and(|v| v == "true"),
            cookie_secure: get("cookie_secure").map_or(true, |v| v != "false"),
            admin,
        })
    }
}

fn get(name: &str) -> Result<String, String> {
    variables::get(name)
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ApiError> {
    match get(name) {
        Ok(text) => text.trim().parse().map_err(|_| {
            ApiError::new(
                503,
                "misconfigured",
                format!("variable {name} must be a number"),
            )
        }),
        Err(_) => Ok(default),
    }
}
