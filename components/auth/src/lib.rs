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
use lamina_sdk::router::{Params, Router};
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

/// A route's handler.
type Handler = fn(&Request, &Params) -> Result<Reply, ApiError>;

fn route(request: &Request) -> Result<Reply, ApiError> {
    let router: Router<Handler> = Router::new([
        (
            "POST",
            "/register",
            (|r, _| accounts::register(r)) as Handler,
        ),
        ("POST", "/login", |r, _| accounts::login(r)),
        ("GET", "/me", |r, _| accounts::me(r)),
        ("PATCH", "/me", |r, _| accounts::update_me(r)),
        ("POST", "/me/password", |r, _| accounts::change_password(r)),
        ("POST", "/refresh", |r, _| sessions::refresh(r)),
        ("POST", "/logout", |r, _| sessions::logout(r)),
        ("POST", "/password/forgot", |r, _| resets::forgot(r)),
        ("POST", "/password/reset", |r, _| resets::reset(r)),
        ("POST", "/email/confirm", |r, _| confirmations::confirm(r)),
        ("POST", "/email/confirm/resend", |r, _| {
            confirmations::resend(r)
        }),
        ("POST", "/api-keys", |r, _| api_keys::create(r)),
        ("GET", "/api-keys", |r, _| api_keys::list(r)),
        ("DELETE", "/api-keys/{id}", |r, p| {
            api_keys::revoke(r, p.get("id").unwrap_or_default())
        }),
    ]);
    let full = request.path_with_query();
    let path = full.split('?').next().unwrap_or_default();
    let path = path.strip_prefix(MOUNT).unwrap_or(path);
    let method = request.method();
    match router.find(&method, path) {
        Ok((handler, params)) => handler(request, &params),
        Err(miss) => Err(miss.to_api_error(&method, &format!("{MOUNT}{path}"))),
    }
}

wasip2::http::proxy::export!(Auth);
