//! The conversation service: each user's folders and conversations, the
//! messages of a conversation as a tree (edits and regenerations are
//! branches, nothing is lost), streaming chat on the host's inference
//! engine, search, notes, feedback, shared snapshots, export and import.
//!
//! | routes | module |
//! | --- | --- |
//! | `/api/folders[/{id}[/contents]]` | [`folders`] |
//! | `/api/conversations[/{id}]`, `/restore`, `/clone`, `/api/conversations/tags` | [`conversations`] |
//! | `GET /api/conversations/{id}/messages` | [`messages`] |
//! | `POST /api/conversations/{id}/messages`, `/messages/{mid}/regenerate`, `/stop` | [`chat`] |
//! | `GET /api/conversations/search` | [`search`] |
//! | `/api/conversations/{id}/notes`, `/messages/{mid}/notes` | [`notes`] |
//! | `/api/conversations/{id}/messages/{mid}/feedback` | [`feedback`] |
//! | `/api/conversations/{id}/share`, `GET /api/shared/{shareId}` | [`share`] |
//! | `GET /api/conversations/export`, `POST /api/conversations/import` | [`transfer`] |
//! | `/api/knowledge/...`, `/api/conversations/{id}/documents`, `/knowledge` | [`knowledge`] |
//!
//! Queue topics it consumes ([`events`]): `user.registered` (the root
//! folder), `user.deleted` (all of the user's data goes) and its own
//! `conversation.title` ([`titles`]: a title generated after the first
//! answer), `knowledge.process` and `knowledge.purge` ([`knowledge`]).
//!
//! Every statement filters on the caller's user id: another user's folder,
//! conversation, message, note or share is "not found", never "forbidden".

mod cached;
mod chat;
mod conversations;
mod events;
mod feedback;
mod folders;
mod knowledge;
mod messages;
mod notes;
mod search;
mod share;
mod titles;
mod transfer;

use lamina_sdk::Request;
use lamina_sdk::api::finish;
use lamina_sdk::router::Router;
use lamina_sdk::service::{Handler, serve};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// The service's own database (spin.toml grants it to this component only).
pub const DATABASE: &str = "conversation";

/// What a handler gets: the request, its verified caller, the matched
/// path segments and the service's database.
pub type Ctx<'a> = lamina_sdk::service::Ctx<'a>;

/// A stream a handler starts once the request is valid.
pub type Streamer<'a> = lamina_sdk::service::Streamer<'a>;

fn router() -> Router<Handler> {
    use Handler::{Json, Stream};
    use knowledge::{attach, collections, documents, retrieve, upload};
    Router::new([
        ("GET", "/api/knowledge", Json(collections::list)),
        ("POST", "/api/knowledge", Json(collections::create)),
        ("POST", "/api/knowledge/search", Json(retrieve::search)),
        ("GET", "/api/knowledge/{id}", Json(collections::owned_view)),
        ("PATCH", "/api/knowledge/{id}", Json(collections::rename)),
        ("DELETE", "/api/knowledge/{id}", Json(collections::delete)),
        (
            "GET",
            "/api/knowledge/{id}/documents",
            Json(documents::list),
        ),
        (
            "POST",
            "/api/knowledge/{id}/documents",
            Json(upload::to_collection),
        ),
        (
            "GET",
            "/api/knowledge/{id}/documents/{docId}",
            Json(documents::get),
        ),
        (
            "DELETE",
            "/api/knowledge/{id}/documents/{docId}",
            Json(documents::delete),
        ),
        (
            "GET",
            "/api/knowledge/{id}/documents/{docId}/content",
            Json(documents::content),
        ),
        (
            "POST",
            "/api/knowledge/{id}/documents/{docId}/reprocess",
            Json(documents::reprocess),
        ),
        (
            "GET",
            "/api/knowledge/{id}/documents/{docId}/chunks",
            Json(documents::chunks),
        ),
        (
            "GET",
            "/api/knowledge/{id}/documents/{docId}/chunks/{index}",
            Json(documents::chunk),
        ),
        (
            "GET",
            "/api/conversations/{id}/documents",
            Json(upload::list_for_conversation),
        ),
        (
            "POST",
            "/api/conversations/{id}/documents",
            Json(upload::to_conversation),
        ),
        (
            "GET",
            "/api/conversations/{id}/knowledge",
            Json(attach::get),
        ),
        (
            "PUT",
            "/api/conversations/{id}/knowledge",
            Json(attach::put),
        ),
        ("GET", "/api/folders", Json(folders::tree)),
        ("POST", "/api/folders", Json(folders::create)),
        ("GET", "/api/folders/{id}", Json(folders::get)),
        ("PATCH", "/api/folders/{id}", Json(folders::update)),
        ("DELETE", "/api/folders/{id}", Json(folders::delete)),
        ("GET", "/api/folders/{id}/contents", Json(folders::contents)),
        ("GET", "/api/conversations", Json(conversations::list)),
        ("POST", "/api/conversations", Json(conversations::create)),
        ("GET", "/api/conversations/tags", Json(conversations::tags)),
        ("GET", "/api/conversations/search", Json(search::search)),
        ("GET", "/api/conversations/export", Stream(transfer::export)),
        ("POST", "/api/conversations/import", Json(transfer::import)),
        ("GET", "/api/conversations/{id}", Json(conversations::get)),
        (
            "PATCH",
            "/api/conversations/{id}",
            Json(conversations::update),
        ),
        (
            "DELETE",
            "/api/conversations/{id}",
            Json(conversations::delete),
        ),
        (
            "POST",
            "/api/conversations/{id}/restore",
            Json(conversations::restore),
        ),
        (
            "POST",
            "/api/conversations/{id}/clone",
            Json(conversations::clone),
        ),
        (
            "GET",
            "/api/conversations/{id}/messages",
            Json(messages::list),
        ),
        (
            "POST",
            "/api/conversations/{id}/messages",
            Stream(chat::send),
        ),
        (
            "POST",
            "/api/conversations/{id}/messages/{mid}/regenerate",
            Stream(chat::regenerate),
        ),
        ("POST", "/api/conversations/{id}/stop", Json(chat::stop)),
        ("GET", "/api/conversations/{id}/notes", Json(notes::list)),
        (
            "GET",
            "/api/conversations/{id}/messages/{mid}/notes",
            Json(notes::list_for_message),
        ),
        (
            "POST",
            "/api/conversations/{id}/messages/{mid}/notes",
            Json(notes::create),
        ),
        (
            "PATCH",
            "/api/conversations/{id}/notes/{nid}",
            Json(notes::update),
        ),
        (
            "DELETE",
            "/api/conversations/{id}/notes/{nid}",
            Json(notes::delete),
        ),
        (
            "GET",
            "/api/conversations/{id}/messages/{mid}/feedback",
            Json(feedback::get),
        ),
        (
            "PUT",
            "/api/conversations/{id}/messages/{mid}/feedback",
            Json(feedback::put),
        ),
        (
            "DELETE",
            "/api/conversations/{id}/messages/{mid}/feedback",
            Json(feedback::delete),
        ),
        ("GET", "/api/conversations/{id}/share", Json(share::get)),
        ("POST", "/api/conversations/{id}/share", Json(share::create)),
        (
            "DELETE",
            "/api/conversations/{id}/share",
            Json(share::revoke),
        ),
    ])
}

struct Service;

impl wasip2::exports::http::incoming_handler::Guest for Service {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let full = request.path_with_query();
        let path = full.split('?').next().unwrap_or_default();
        // The one public route: a shared snapshot needs no account.
        if let Some(id) = path.strip_prefix("/api/shared/") {
            return finish(out, share::read(&request, id));
        }
        serve(&request, out, &router(), DATABASE);
    }
}

wasip2::http::proxy::export!(Service);
use events::Events;
lamina_sdk::worker::export_queue_handler!(Events);
