//! Notes on a range of a message's text: `{fromIndex, toIndex, content}`,
//! offsets in UTF-16 code units as browsers count them (`0 ≤ from < to ≤`
//! the message's length). Listed per message, or for a whole conversation
//! in one query.

use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, read_json, timestamp};
use lamina_sdk::sql::Sql;
use lamina_sdk::validate::Checks;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::messages::{self, Message};
use crate::{Ctx, conversations};

/// Longest note, in characters.
const MAX_NOTE: usize = 10_000;
/// Most notes on one message.
pub const MAX_PER_MESSAGE: i64 = 200;
const BODY_LIMIT: usize = 64 << 10;

/// A row of `conv_notes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub message_id: String,
    pub conversation_id: String,
    pub from_index: i64,
    pub to_index: i64,
    pub content: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of [`Note`].
pub const COLUMNS: &str =
    "id, message_id, conversation_id, from_index, to_index, content, created_at, updated_at";

impl Note {
    pub fn view(&self) -> Json {
        json!({
            "id": self.id,
            "messageId": self.message_id,
            "fromIndex": self.from_index,
            "toIndex": self.to_index,
            "content": self.content,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        })
    }
}

/// Checks a note on a message whose text is `text`: the range (UTF-16
/// code units) and the note's content.
pub fn check(checks: &mut Checks, text: &str, from: i64, to: i64, content: &str) {
    check_range(checks, text, from, to);
    checks.long_text("content", content, MAX_NOTE);
    if content.trim().is_empty() {
        checks.fail("content", "required");
    }
}

/// Checks a range against a message's `text` (UTF-16 code units).
fn check_range(checks: &mut Checks, text: &str, from: i64, to: i64) {
    let length = text.encode_utf16().count() as i64;
    if from < 0 || to <= from || to > length {
        checks.fail(
            "fromIndex",
            format!(
                "0 ≤ fromIndex < toIndex ≤ {length} (the message's length in UTF-16 code units)"
            ),
        );
    }
}

/// The notes of a conversation (of one message if given), in text order.
pub fn of(db: &impl Sql, conversation: &str, message: Option<&str>) -> Result<Vec<Note>, ApiError> {
    let mut sql = format!("SELECT {COLUMNS} FROM conv_notes WHERE conversation_id = $1");
    let mut params = vec![conversation.into()];
    if let Some(message) = message {
        sql.push_str(" AND message_id = $2");
        params.push(message.into());
    }
    sql.push_str(" ORDER BY message_id, from_index, created_at");
    Ok(db.query(&sql, &params)?)
}

fn listed(notes: Vec<Note>) -> Reply {
    Reply::json(
        200,
        json!({ "items": notes.iter().map(Note::view).collect::<Vec<_>>() }),
    )
}

/// `GET /api/conversations/{id}/notes`.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    Ok(listed(of(&ctx.db, &conversation.id, None)?))
}

/// `GET /api/conversations/{id}/messages/{mid}/notes`.
pub fn list_for_message(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let message = messages::owned(&ctx.db, &conversation.id, &ctx.param("mid"))?;
    Ok(listed(of(&ctx.db, &conversation.id, Some(&message.id))?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Create {
    from_index: i64,
    to_index: i64,
    content: String,
}

/// `POST /api/conversations/{id}/messages/{mid}/notes`.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let message = messages::owned(&ctx.db, &conversation.id, &ctx.param("mid"))?;
    let body: Create = read_json(ctx.request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    check(
        &mut checks,
        &message.content,
        body.from_index,
        body.to_index,
        &body.content,
    );
    checks.finish()?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let count: Option<Count> = ctx.db.query_one(
        "SELECT COUNT(*) AS n FROM conv_notes WHERE message_id = $1",
        &[message.id.as_str().into()],
    )?;
    if count.map_or(0, |c| c.n) >= MAX_PER_MESSAGE {
        return Err(ApiError::new(
            400,
            "too many notes",
            format!("at most {MAX_PER_MESSAGE} notes per message"),
        ));
    }
    let at = now_ms();
    let note = Note {
        id: new_id(),
        message_id: message.id,
        conversation_id: conversation.id,
        from_index: body.from_index,
        to_index: body.to_index,
        content: body.content,
        created_at: at,
        updated_at: at,
    };
    insert(&ctx.db, ctx.user(), &note)?;
    Ok(Reply::json(201, note.view()))
}

/// Stores a note of `user`.
pub fn insert(db: &impl Sql, user: &str, note: &Note) -> Result<(), ApiError> {
    db.execute(
        "INSERT INTO conv_notes (id, message_id, conversation_id, user_id, from_index, to_index, content, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            note.id.as_str().into(),
            note.message_id.as_str().into(),
            note.conversation_id.as_str().into(),
            user.into(),
            note.from_index.into(),
            note.to_index.into(),
            note.content.as_str().into(),
            note.created_at.into(),
            note.updated_at.into(),
        ],
    )?;
    Ok(())
}

fn owned(ctx: &Ctx) -> Result<(Note, Message), ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let id = ctx.param("nid");
    let note: Note = ctx
        .db
        .query_one(
            &format!("SELECT {COLUMNS} FROM conv_notes WHERE id = $1 AND conversation_id = $2 AND user_id = $3"),
            &[id.as_str().into(), conversation.id.as_str().into(), ctx.user().into()],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no note {id}")))?;
    let message = messages::owned(&ctx.db, &conversation.id, &note.message_id)?;
    Ok((note, message))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Update {
    from_index: Option<i64>,
    to_index: Option<i64>,
    content: Option<String>,
}

/// `PATCH /api/conversations/{id}/notes/{nid}`.
pub fn update(ctx: &Ctx) -> Result<Reply, ApiError> {
    let (mut note, message) = owned(ctx)?;
    let body: Update = read_json(ctx.request, BODY_LIMIT)?;
    note.from_index = body.from_index.unwrap_or(note.from_index);
    note.to_index = body.to_index.unwrap_or(note.to_index);
    let mut checks = Checks::default();
    check_range(
        &mut checks,
        &message.content,
        note.from_index,
        note.to_index,
    );
    if let Some(content) = body.content {
        checks.long_text("content", &content, MAX_NOTE);
        if content.trim().is_empty() {
            checks.fail("content", "required");
        }
        note.content = content;
    }
    checks.finish()?;
    note.updated_at = now_ms();
    ctx.db.execute(
        "UPDATE conv_notes SET from_index = $1, to_index = $2, content = $3, updated_at = $4 WHERE id = $5 AND user_id = $6",
        &[
            note.from_index.into(),
            note.to_index.into(),
            note.content.as_str().into(),
            note.updated_at.into(),
            note.id.as_str().into(),
            ctx.user().into(),
        ],
    )?;
    Ok(Reply::json(200, note.view()))
}

/// `DELETE /api/conversations/{id}/notes/{nid}`.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let (note, _) = owned(ctx)?;
    ctx.db.execute(
        "DELETE FROM conv_notes WHERE id = $1 AND user_id = $2",
        &[note.id.as_str().into(), ctx.user().into()],
    )?;
    Ok(Reply::no_content())
}
