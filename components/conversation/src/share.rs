//! Sharing: `POST /api/conversations/{id}/share` takes a read-only
//! snapshot of the active path, readable by anyone with its id at
//! `GET /api/shared/{shareId}` (no account; the id is 192 random bits).
//! Sharing again refreshes the snapshot under the same id; `DELETE`
//! revokes it.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, now_ms, random_bytes, timestamp};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{Ctx, DATABASE, conversations, messages};

/// Random bytes in a share id.
const ID_BYTES: u64 = 24;

#[derive(Deserialize)]
struct Share {
    id: String,
    snapshot: String,
    created_at: i64,
    updated_at: i64,
}

fn view(share: &Share) -> Json {
    json!({
        "shareId": share.id,
        "path": format!("/api/shared/{}", share.id),
        "createdAt": timestamp(share.created_at),
        "updatedAt": timestamp(share.updated_at),
    })
}

fn find(ctx: &Ctx, conversation: &str) -> Result<Option<Share>, ApiError> {
    Ok(ctx.db.query_one(
        "SELECT id, snapshot, created_at, updated_at FROM conv_shares WHERE conversation_id = $1 AND user_id = $2",
        &[conversation.into(), ctx.user().into()],
    )?)
}

/// `GET /api/conversations/{id}/share`: the conversation's share, if any
/// (of a trashed conversation too: the link is dead while it is in the
/// trash, and can be revoked for good).
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned_any(ctx, &ctx.param("id"))?;
    let share = find(ctx, &conversation.id)?
        .ok_or_else(|| ApiError::not_found("this conversation is not shared"))?;
    Ok(Reply::json(200, view(&share)))
}

/// `POST /api/conversations/{id}/share`: 201 with a new share, 200 with
/// the refreshed one.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let path = messages::active_path(&ctx.db, &conversation)?;
    let snapshot = json!({
        "title": conversation.title,
        "model": conversation.model,
        "createdAt": timestamp(conversation.created_at),
        "messages": path.iter().map(|m| json!({
            "role": m.role,
            "content": m.content,
            "model": m.model,
            "createdAt": timestamp(m.created_at),
        })).collect::<Vec<_>>(),
    });
    let at = now_ms();
    let existing = find(ctx, &conversation.id)?;
    let share = Share {
        id: existing.as_ref().map_or_else(
            || {
                random_bytes(ID_BYTES)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
            |s| s.id.clone(),
        ),
        snapshot: snapshot.to_string(),
        created_at: existing.as_ref().map_or(at, |s| s.created_at),
        updated_at: at,
    };
    ctx.db.execute(
        "INSERT INTO conv_shares (id, conversation_id, user_id, snapshot, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (conversation_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        &[
            share.id.as_str().into(),
            conversation.id.as_str().into(),
            ctx.user().into(),
            share.snapshot.as_str().into(),
            share.created_at.into(),
            share.updated_at.into(),
        ],
    )?;
    Ok(Reply::json(
        if existing.is_some() { 200 } else { 201 },
        view(&share),
    ))
}

/// `DELETE /api/conversations/{id}/share`.
pub fn revoke(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned_any(ctx, &ctx.param("id"))?;
    let removed = ctx.db.execute(
        "DELETE FROM conv_shares WHERE conversation_id = $1 AND user_id = $2",
        &[conversation.id.as_str().into(), ctx.user().into()],
    )?;
    if removed == 0 {
        return Err(ApiError::not_found("this conversation is not shared"));
    }
    Ok(Reply::no_content())
}

/// `GET /api/shared/{shareId}` (public): the snapshot, unless its
/// conversation is in the trash.
pub fn read(request: &Request, id: &str) -> Result<Reply, ApiError> {
    if request.method() != "GET" {
        return Err(ApiError::new(
            405,
            "method not allowed",
            "a shared conversation is read with GET",
        )
        .header("allow", "GET"));
    }
    let well_formed =
        id.len() == 2 * ID_BYTES as usize && id.bytes().all(|b| b.is_ascii_hexdigit());
    let not_found = || ApiError::not_found("no shared conversation with this id");
    if !well_formed {
        return Err(not_found());
    }
    let db = Database::open(DATABASE)?;
    let share: Share = db
        .query_one(
            "SELECT s.id AS id, s.snapshot AS snapshot, s.created_at AS created_at, s.updated_at AS updated_at \
             FROM conv_shares s JOIN conv_conversations c ON c.id = s.conversation_id \
             WHERE s.id = $1 AND c.deleted_at IS NULL",
            &[id.into()],
        )?
        .ok_or_else(not_found)?;
    let mut snapshot: Json = serde_json::from_str(&share.snapshot).unwrap_or_else(|_| json!({}));
    snapshot["sharedAt"] = timestamp(share.updated_at).into();
    Ok(Reply::json(200, snapshot))
}
