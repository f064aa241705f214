//! The auth service, at `/api/auth` and `/api/admin/users|roles`:
//! accounts and their administration, sessions (short
//! access JWTs signed by the host, rotating refresh tokens), password
//! reset through the `email.send` queue, and API keys. It never sees the
//! signing key: `lamina:platform/tokens` signs and revokes.
//!
//! Routes (spin.toml puts `/me`, `/logout` and `/api-keys` behind
//! `auth = "required"` and the admin routes behind `roles = ["Admin"]`;
//! the rest are public), the paths below `/api/auth`:
//!
//! | route | module |
//! | --- | --- |
//! | `POST /register`, `POST /login`, `GET`/`PATCH`/`DELETE /me`, `POST /me/password` | [`accounts`] |
//! | `POST /refresh`, `POST /logout` | [`sessions`] |
//! | `POST /password/forgot`, `POST /password/reset` | [`resets`] |
//! | `POST /email/confirm`, `POST /email/confirm/resend` | [`confirmations`] |
//! | `POST`/`GET /api-keys`, `DELETE /api-keys/{id}` | [`api_keys`] |
//! | `/api/admin/users[/{id}[/...]]` | [`admin`] |
//! | `/api/admin/roles[/{name}]` | [`roles`] |
//! | `…/users/{id}[/api-keys/{key}]/budget`, `…/models`, `/api/admin/roles/{name}/models`, `…/users/{id}/api-keys` | [`limits`] |
//!
//! Logins and refreshes also [`sweep`] away a batch of expired rows.

mod accounts;
mod admin;
mod api_keys;
mod config;
mod confirmations;
mod events;
mod limits;
mod lockout;
mod password;
mod resets;
mod roles;
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

/// Where the account routes are (the refresh cookie's path).
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

/// The path segment `name`.
fn seg<'a>(params: &'a Params, name: &str) -> &'a str {
    params.get(name).unwrap_or_default()
}

fn route(request: &Request) -> Result<Reply, ApiError> {
    let router: Router<Handler> = Router::new([
        (
            "POST",
            "/api/auth/register",
            (|r, _| accounts::register(r)) as Handler,
        ),
        ("POST", "/api/auth/login", |r, _| accounts::login(r)),
        ("GET", "/api/auth/me", |r, _| accounts::me(r)),
        ("PATCH", "/api/auth/me", |r, _| accounts::update_me(r)),
        ("DELETE", "/api/auth/me", |r, _| accounts::delete_me(r)),
        ("POST", "/api/auth/me/password", |r, _| {
            accounts::change_password(r)
        }),
        ("POST", "/api/auth/refresh", |r, _| sessions::refresh(r)),
        ("POST", "/api/auth/logout", |r, _| sessions::logout(r)),
        ("POST", "/api/auth/password/forgot", |r, _| {
            resets::forgot(r)
        }),
        ("POST", "/api/auth/password/reset", |r, _| resets::reset(r)),
        ("POST", "/api/auth/email/confirm", |r, _| {
            confirmations::confirm(r)
        }),
        ("POST", "/api/auth/email/confirm/resend", |r, _| {
            confirmations::resend(r)
        }),
        ("POST", "/api/auth/api-keys", |r, _| api_keys::create(r)),
        ("GET", "/api/auth/api-keys", |r, _| api_keys::list(r)),
        ("DELETE", "/api/auth/api-keys/{id}", |r, p| {
            api_keys::revoke(r, seg(p, "id"))
        }),
        ("GET", "/api/admin/users", |r, _| admin::list(r)),
        ("GET", "/api/admin/users/{id}", |r, p| {
            admin::get(r, seg(p, "id"))
        }),
        ("DELETE", "/api/admin/users/{id}", |r, p| {
            admin::delete(r, seg(p, "id"))
        }),
        ("POST", "/api/admin/users/{id}/roles/{role}", |r, p| {
            admin::add_role(r, seg(p, "id"), seg(p, "role"))
        }),
        ("DELETE", "/api/admin/users/{id}/roles/{role}", |r, p| {
            admin::remove_role(r, seg(p, "id"), seg(p, "role"))
        }),
        ("POST", "/api/admin/users/{id}/lock", |r, p| {
            admin::lock(r, seg(p, "id"))
        }),
        ("POST", "/api/admin/users/{id}/unlock", |r, p| {
            admin::unlock(r, seg(p, "id"))
        }),
        ("POST", "/api/admin/users/{id}/deactivate", |r, p| {
            admin::deactivate(r, seg(p, "id"))
        }),
        ("POST", "/api/admin/users/{id}/activate", |r, p| {
            admin::activate(r, seg(p, "id"))
        }),
        ("POST", "/api/admin/users/{id}/restore", |r, p| {
            admin::restore(r, seg(p, "id"))
        }),
        ("POST", "/api/admin/users/{id}/sessions/revoke", |r, p| {
            admin::revoke_sessions(r, seg(p, "id"))
        }),
        ("GET", "/api/admin/users/{id}/api-keys", |r, p| {
            limits::api_keys(r, seg(p, "id"))
        }),
        ("GET", "/api/admin/users/{id}/budget", |r, p| {
            limits::get_budget(r, || limits::user_scope(seg(p, "id")))
        }),
        ("PUT", "/api/admin/users/{id}/budget", |r, p| {
            limits::put_budget(r, || limits::user_scope(seg(p, "id")))
        }),
        ("DELETE", "/api/admin/users/{id}/budget", |r, p| {
            limits::delete_budget(r, || limits::user_scope(seg(p, "id")))
        }),
        (
            "GET",
            "/api/admin/users/{id}/api-keys/{key}/budget",
            |r, p| limits::get_budget(r, || limits::key_scope(seg(p, "id"), seg(p, "key"))),
        ),
        (
            "PUT",
            "/api/admin/users/{id}/api-keys/{key}/budget",
            |r, p| limits::put_budget(r, || limits::key_scope(seg(p, "id"), seg(p, "key"))),
        ),
        (
            "DELETE",
            "/api/admin/users/{id}/api-keys/{key}/budget",
            |r, p| limits::delete_budget(r, || limits::key_scope(seg(p, "id"), seg(p, "key"))),
        ),
        ("GET", "/api/admin/users/{id}/models", |r, p| {
            limits::get_models(r, || limits::user_scope(seg(p, "id")))
        }),
        ("PUT", "/api/admin/users/{id}/models", |r, p| {
            limits::put_models(r, || limits::user_scope(seg(p, "id")))
        }),
        ("DELETE", "/api/admin/users/{id}/models", |r, p| {
            limits::delete_models(r, || limits::user_scope(seg(p, "id")))
        }),
        (
            "GET",
            "/api/admin/users/{id}/api-keys/{key}/models",
            |r, p| limits::get_models(r, || limits::key_scope(seg(p, "id"), seg(p, "key"))),
        ),
        (
            "PUT",
            "/api/admin/users/{id}/api-keys/{key}/models",
            |r, p| limits::put_models(r, || limits::key_scope(seg(p, "id"), seg(p, "key"))),
        ),
        (
            "DELETE",
            "/api/admin/users/{id}/api-keys/{key}/models",
            |r, p| limits::delete_models(r, || limits::key_scope(seg(p, "id"), seg(p, "key"))),
        ),
        ("GET", "/api/admin/roles/{name}/models", |r, p| {
            limits::get_models(r, || limits::role_scope(seg(p, "name")))
        }),
        ("PUT", "/api/admin/roles/{name}/models", |r, p| {
            limits::put_models(r, || limits::role_scope(seg(p, "name")))
        }),
        ("DELETE", "/api/admin/roles/{name}/models", |r, p| {
            limits::delete_models(r, || limits::role_scope(seg(p, "name")))
        }),
        ("GET", "/api/admin/roles", |r, _| roles::list(r)),
        ("POST", "/api/admin/roles", |r, _| roles::create(r)),
        ("DELETE", "/api/admin/roles/{name}", |r, p| {
            roles::delete(r, seg(p, "name"))
        }),
    ]);
    let full = request.path_with_query();
    let path = full.split('?').next().unwrap_or_default();
    let method = request.method();
    match router.find(&method, path) {
        Ok((handler, params)) => handler(request, &params),
        Err(miss) => Err(miss.to_api_error(&method, path)),
    }
}

/// The queue handler: a lock's end (`auth.lock-ended`).
struct LockEvents;

impl lamina_sdk::worker::Guest for LockEvents {
    fn handle(message: lamina_sdk::worker::Message) -> Result<(), String> {
        match message.topic.as_str() {
            "auth.lock-ended" => admin::lock_ended(&message.payload),
            other => Err(format!("unexpected topic {other}")),
        }
    }
}

lamina_sdk::worker::export_queue_handler!(LockEvents);

wasip2::http::proxy::export!(Auth);
