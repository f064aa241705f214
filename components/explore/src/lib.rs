//! The explore service: the model catalogue users browse before they
//! chat, and its administration.
//!
//! The catalogue holds curation only (titles, descriptions, tags, sources,
//! licences, recommended options). Whether a model is installed or loaded,
//! its size, digest and GGUF metadata are read live from the host's model
//! store on every request ([`live`]), so models added or removed through
//! `/api/pull`, `/api/delete` or `lamina models` are never shown wrongly.
//!
//! | routes | module |
//! | --- | --- |
//! | `GET /api/explore/models[/{name}]` | [`catalog`] |
//! | `GET /api/explore/tags[/{tag}/models]`, `/api/admin/tags[/{id}]` | [`tags`] |
//! | `GET /api/explore/search` | [`search`] |
//! | `/api/admin/models[/{name}[/tags[/{tag}]]]` | [`admin`] |
//! | `/api/admin/models/{name}/install`, `/files`, `/api/admin/pulls/...` | [`installs`] |
//!
//! Public routes need no account; `/api/admin/...` needs the Admin role
//! (checked by the gateway and again here). Every change publishes
//! `catalog.changed` and an `audit` event ([`events`]) and drops the
//! cached reads ([`cached`]); `usage.recorded` counts uses (popularity).

mod admin;
mod cached;
mod catalog;
mod embeddings;
mod entry;
mod events;
mod installs;
mod live;
mod search;
mod tags;

use lamina_sdk::Request;
use lamina_sdk::api::Caller;
use lamina_sdk::router::Router;
use lamina_sdk::service::{Handler, serve};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// The service's own database (spin.toml grants it to this component only).
pub const DATABASE: &str = "explore";

/// What a handler gets: public routes have no caller.
pub type Ctx<'a> = lamina_sdk::service::Ctx<'a, Option<Caller>>;

/// A stream a handler starts once the request is valid.
pub type Streamer<'a> = lamina_sdk::service::Streamer<'a>;

/// The role every `/api/admin/...` route needs.
pub const ADMIN: &str = "Admin";

fn router() -> Router<Handler<Option<Caller>>> {
    use Handler::{Json, Stream};
    Router::new([
        ("GET", "/api/explore/models", Json(catalog::list)),
        ("GET", "/api/explore/models/{name}", Json(catalog::get)),
        ("GET", "/api/explore/tags", Json(tags::list)),
        (
            "GET",
            "/api/explore/tags/{tag}/models",
            Json(catalog::by_tag),
        ),
        ("GET", "/api/explore/search", Json(search::search)),
        ("GET", "/api/admin/models", Json(installs::installed)),
        ("POST", "/api/admin/models", Json(admin::create)),
        ("GET", "/api/admin/models/{name}", Json(admin::get)),
        ("PATCH", "/api/admin/models/{name}", Json(admin::update)),
        ("DELETE", "/api/admin/models/{name}", Json(admin::delete)),
        (
            "POST",
            "/api/admin/models/{name}/tags",
            Json(admin::add_tags),
        ),
        (
            "DELETE",
            "/api/admin/models/{name}/tags/{tag}",
            Json(admin::remove_tag),
        ),
        (
            "POST",
            "/api/admin/models/{name}/install",
            Json(installs::install),
        ),
        (
            "DELETE",
            "/api/admin/models/{name}/files",
            Json(installs::remove_files),
        ),
        ("GET", "/api/admin/pulls", Json(installs::list)),
        ("GET", "/api/admin/pulls/{id}", Json(installs::get)),
        (
            "GET",
            "/api/admin/pulls/{id}/events",
            Stream(installs::events),
        ),
        (
            "POST",
            "/api/admin/pulls/{id}/cancel",
            Json(installs::cancel),
        ),
        ("GET", "/api/admin/tags", Json(tags::list)),
        ("POST", "/api/admin/tags", Json(tags::create)),
        ("GET", "/api/admin/tags/{id}", Json(tags::get)),
        ("PATCH", "/api/admin/tags/{id}", Json(tags::rename)),
        ("DELETE", "/api/admin/tags/{id}", Json(tags::delete)),
    ])
}

struct Service;

impl wasip2::exports::http::incoming_handler::Guest for Service {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        serve(&request, out, &router(), DATABASE);
    }
}

/// The administrator calling an `/api/admin/...` route, or 401/403.
pub fn require_admin<'a>(ctx: &'a Ctx) -> Result<&'a Caller, lamina_sdk::api::ApiError> {
    ctx.require_role(ADMIN)
}

wasip2::http::proxy::export!(Service);
use events::Events;
lamina_sdk::worker::export_queue_handler!(Events);
