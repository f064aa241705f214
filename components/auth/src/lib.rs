//! The auth service, mounted at `/api/auth`: accounts, sessions (short
//! access JWTs signed by the host, rotating refresh tokens), password
//! reset through the `email.send` queue, and API keys. It never sees the
//! signing key: `lamina:platform/tokens` signs and revokes.
//!
//! Routes (spin.toml puts `/me`, `/logout` and `/api-keys` behind
//! `auth = "required"`; the rest are public):
//!
//! | route | module |
//! | --- | --- |
//! | `POST /register`, `POST /login`, `GET`/`PATCH /me`, `POST /me/password` | [`accounts`] |
//! | `POST /refresh`, `POST /logout` | [`sessions`] |
//! | `POST /password/forgot`, `POST /password/reset` | [`resets`] |
//! | `POST /email/confirm`, `POST /email/confirm/resend` | [`confirmations`] |
//! | `POST`/`GET /api-keys`, `DELETE /api-keys/{id}` | [`api_keys`] |
//!
//! Logins and refreshes also [`sweep`] away a batch of expired rows.

mod accounts;
mod api_keys;
mod config;
mod confirmations;
mod events;
mod lockout;
mod password;
mod resets;
mod sessions;
mod sweep;
mod users;
mod validate;

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, finish};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// The service's own database (spin.toml grants it to this component only).
const DATABASE: &str = "auth";

/// Where spin.toml mounts the service.
const MOUNT: &str = "/api/auth";

/// Largest request body any auth endpoint reads.
const BODY_LIMIT: usize = 16 << 10;

struct Auth;

impl wasip2::exports::http::incoming_handler::Guest for Auth {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        finish(out, route(&request));
    }
}

fn route(request: &Request) -> Result<Reply, ApiError> {
    let full = request.path_with_query();
    let path = full.split('?').next().unwrap_or_default();
    let path = path.strip_prefix(MOUNT).unwrap_or(path);
    let method = request.method();
    match (method.as_str(), path) {
        ("POST", "/register") => accounts::register(request),
        ("POST", "/login") => accounts::login(request),
        ("GET", "/me") => accounts::me(request),
        ("PATCH", "/me") => accounts::update_me(request),
        ("POST", "/me/password") => accounts::change_password(request),
        ("POST", "/refresh") => sessions::refresh(request),
        ("POST", "/logout") => sessions::logout(request),
        ("POST", "/password/forgot") => resets::forgot(request),
        ("POST", "/password/reset") => resets::reset(request),
        ("POST", "/email/confirm") => confirmations::confirm(request),
        ("POST", "/email/confirm/resend") => confirmations::resend(request),
        ("POST", "/api-keys") => api_keys::create(request),
        ("GET", "/api-keys") => api_keys::list(request),
        ("DELETE", id) if id.starts_with("/api-keys/") => {
            api_keys::revoke(request, &id["/api-keys/".len()..])
        }
        (_, known)
            if [
                "/register",
                "/login",
                "/me",
                "/me/password",
                "/refresh",
                "/logout",
                "/password/forgot",
                "/password/reset",
                "/email/confirm",
                "/email/confirm/resend",
                "/api-keys",
            ]
            .contains(&known) =>
        {
            Err(ApiError::new(
                405,
                "method not allowed",
                format!("{method} is not supported on {MOUNT}{known}"),
            ))
        }
        _ => Err(ApiError::not_found(format!("no endpoint {MOUNT}{path}"))),
    }
}

wasip2::http::proxy::export!(Auth);
