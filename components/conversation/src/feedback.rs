//! Feedback on an assistant message: a rating (`up`/`down`), an optional
//! comment and tags; one per user per message (a second replaces it).

use lamina_sdk::api::{ApiError, Reply, now_ms, read_json, timestamp};
use lamina_sdk::sql::Sql;
use lamina_sdk::validate::Checks;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::messages::{self, Message};
use crate::{Ctx, conversations};

const MAX_COMMENT: usize = 2000;
const MAX_TAGS: usize = 10;
const MAX_TAG: usize = 50;
const BODY_LIMIT: usize = 32 << 10;

/// A row of `conv_feedback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feedback {
    pub message_id: String,
    pub conversation_id: String,
    pub rating: String,
    pub comment: Option<String>,
    /// JSON array.
    pub tags: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of [`Feedback`].
pub const COLUMNS: &str =
    "message_id, conversation_id, rating, comment, tags, created_at, updated_at";

impl Feedback {
    pub fn view(&self) -> Json {
        json!({
            "messageId": self.message_id,
            "rating": self.rating,
            "comment": self.comment,
            "tags": serde_json::from_str::<Json>(&self.tags).unwrap_or_else(|_| json!([])),
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        })
    }
}

/// The caller's assistant message `mid` of conversation `id`.
fn target(ctx: &Ctx) -> Result<Message, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let message = messages::owned(&ctx.db, &conversation.id, &ctx.param("mid"))?;
    if message.role != "assistant" {
        return Err(ApiError::new(
            400,
            "not an answer",
            "feedback is given on assistant messages",
        ));
    }
    Ok(message)
}

/// The feedback of `user` on conversation `conversation`'s messages.
pub fn of(db: &impl Sql, user: &str, conversation: &str) -> Result<Vec<Feedback>, ApiError> {
    Ok(db.query(
        &format!("SELECT {COLUMNS} FROM conv_feedback WHERE conversation_id = $1 AND user_id = $2 ORDER BY created_at"),
        &[conversation.into(), user.into()],
    )?)
}

fn find(ctx: &Ctx, message: &str) -> Result<Option<Feedback>, ApiError> {
    Ok(ctx.db.query_one(
        &format!("SELECT {COLUMNS} FROM conv_feedback WHERE message_id = $1 AND user_id = $2"),
        &[message.into(), ctx.user().into()],
    )?)
}

/// `GET …/messages/{mid}/feedback`.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    let message = target(ctx)?;
    let feedback = find(ctx, &message.id)?
        .ok_or_else(|| ApiError::not_found("no feedback on this message"))?;
    Ok(Reply::json(200, feedback.view()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Put {
    rating: String,
    comment: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Checks feedback; returns the tags as stored.
pub fn checked(rating: &str, comment: Option<&str>, tags: &[String]) -> Result<String, ApiError> {
    let mut checks = Checks::default();
    if !matches!(rating, "up" | "down") {
        checks.fail("rating", "up or down");
    }
    if let Some(comment) = comment {
        checks.long_text("comment", comment, MAX_COMMENT);
    }
    if tags.len() > MAX_TAGS {
        checks.fail("tags", format!("at most {MAX_TAGS} tags"));
    }
    let tags: Vec<String> = tags.iter().map(|t| t.trim().to_lowercase()).collect();
    for tag in &tags {
        checks.text("tags", tag, MAX_TAG);
    }
    checks.finish()?;
    Ok(serde_json::to_string(&tags).expect("tags serialize"))
}

/// `PUT …/messages/{mid}/feedback` {rating, comment?, tags?}: creates
/// (201) or replaces (200) the caller's feedback on the message.
pub fn put(ctx: &Ctx) -> Result<Reply, ApiError> {
    let message = target(ctx)?;
    let body: Put = read_json(ctx.request, BODY_LIMIT)?;
    let tags = checked(&body.rating, body.comment.as_deref(), &body.tags)?;
    let existing = find(ctx, &message.id)?;
    let at = now_ms();
    let feedback = Feedback {
        message_id: message.id.clone(),
        conversation_id: message.conversation_id.clone(),
        rating: body.rating,
        comment: body.comment,
        tags,
        created_at: existing.as_ref().map_or(at, |f| f.created_at),
        updated_at: at,
    };
    store(&ctx.db, ctx.user(), &feedback)?;
    Ok(Reply::json(
        if existing.is_some() { 200 } else { 201 },
        feedback.view(),
    ))
}

/// Stores `user`'s feedback, replacing theirs on the same message.
pub fn store(db: &impl Sql, user: &str, f: &Feedback) -> Result<(), ApiError> {
    db.execute(
        "INSERT INTO conv_feedback (message_id, user_id, conversation_id, rating, comment, tags, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (message_id, user_id) DO UPDATE SET rating = excluded.rating, \
         comment = excluded.comment, tags = excluded.tags, updated_at = excluded.updated_at",
        &[
            f.message_id.as_str().into(),
            user.into(),
            f.conversation_id.as_str().into(),
            f.rating.as_str().into(),
            f.comment.clone().into(),
            f.tags.as_str().into(),
            f.created_at.into(),
            f.updated_at.into(),
        ],
    )?;
    Ok(())
}

/// `DELETE …/messages/{mid}/feedback`.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let message = target(ctx)?;
    let removed = ctx.db.execute(
        "DELETE FROM conv_feedback WHERE message_id = $1 AND user_id = $2",
        &[message.id.as_str().into(), ctx.user().into()],
    )?;
    if removed == 0 {
        return Err(ApiError::not_found("no feedback on this message"));
    }
    Ok(Reply::no_content())
}
