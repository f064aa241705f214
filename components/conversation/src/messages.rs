//! The messages of a conversation: a tree (each message has a parent; the
//! conversation's `current_message_id` is the active leaf), read as the
//! active path from the root, each message with its siblings' ids so a
//! client can show "2/3". Messages never change once stored.
//!
//! Paths are cached by the message they end at
//! (`conversation:path:{id}:{leaf}`): messages never change, so neither
//! does a path.

use std::collections::HashMap;

use lamina_sdk::api::{ApiError, Reply, timestamp};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::Sql;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::conversations::{self, Conversation, options_json};
use crate::folders::placeholders;
use crate::{Ctx, cached};

/// Most messages one conversation may hold.
pub const MAX_MESSAGES: i64 = 10_000;
/// Most characters of content one conversation may hold (all branches):
/// what the component may have to hold in memory for it.
pub const MAX_SIZE: i64 = 4_000_000;

/// A row of `conv_messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub parent_id: Option<String>,
    pub seq: i64,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub model: Option<String>,
    pub options: Option<String>,
    /// Tokens of `content` by the model's tokenizer (0: not counted).
    pub tokens: i64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub load_duration_ns: Option<i64>,
    pub prompt_duration_ns: Option<i64>,
    pub eval_duration_ns: Option<i64>,
    pub total_duration_ns: Option<i64>,
    pub done_reason: Option<String>,
    pub created_at: i64,
    /// The retrieved sources an answer was given, as JSON.
    #[serde(default)]
    pub sources: Option<String>,
}

/// The columns of [`Message`].
pub const COLUMNS: &str = "id, conversation_id, parent_id, seq, role, content, model, options, \
     tokens, prompt_tokens, completion_tokens, load_duration_ns, prompt_duration_ns, \
     eval_duration_ns, total_duration_ns, done_reason, created_at, sources";

impl Message {
    /// As the API shows it, with its siblings' ids (itself included, in
    /// order of creation).
    pub fn view(&self, siblings: &[String]) -> Json {
        json!({
            "id": self.id,
            "parentId": self.parent_id,
            "role": self.role,
            "content": self.content,
            "model": self.model,
            "options": options_json(self.options.as_deref()),
            "createdAt": timestamp(self.created_at),
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "durations": {
                "loadNs": self.load_duration_ns,
                "promptNs": self.prompt_duration_ns,
                "evalNs": self.eval_duration_ns,
                "totalNs": self.total_duration_ns,
            },
            "doneReason": self.done_reason,
            "siblings": siblings,
            "sources": self
                .sources
                .as_deref()
                .and_then(|s| serde_json::from_str::<Json>(s).ok()),
        })
    }
}

/// Message `id` of conversation `conversation`; 404 otherwise (the caller
/// owns the conversation: checked before).
pub fn owned(db: &impl Sql, conversation: &str, id: &str) -> Result<Message, ApiError> {
    let select =
        format!("SELECT {COLUMNS} FROM conv_messages WHERE id = $1 AND conversation_id = $2");
    db.query_one(&select, &[id.into(), conversation.into()])?
        .ok_or_else(|| ApiError::not_found(format!("no message {id}")))
}

/// The messages from the root down to `end`, root first.
pub fn path_to(db: &impl Sql, end: &str) -> Result<Vec<Message>, ApiError> {
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(db.query(
        &format!(
            "WITH RECURSIVE up (id, parent_id, depth) AS ( \
                 SELECT id, parent_id, 0 FROM conv_messages WHERE id = $1 \
                 UNION ALL SELECT m.id, m.parent_id, u.depth + 1 FROM conv_messages m JOIN up u ON m.id = u.parent_id) \
             SELECT {columns} FROM up JOIN conv_messages m ON m.id = up.id ORDER BY up.depth DESC"
        ),
        &[end.into()],
    )?)
}

/// The active path of `conversation`, through the cache.
pub fn active_path(db: &impl Sql, conversation: &Conversation) -> Result<Vec<Message>, ApiError> {
    let Some(leaf) = &conversation.current_message_id else {
        return Ok(Vec::new());
    };
    cached::get_or_load(&cached::path(&conversation.id, leaf), || path_to(db, leaf))
}

/// For each message of `path`, the ids of it and its siblings.
pub fn siblings(
    db: &impl Sql,
    conversation: &str,
    path: &[Message],
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        parent_id: Option<String>,
    }
    let parents: Vec<&str> = path.iter().filter_map(|m| m.parent_id.as_deref()).collect();
    let mut params = vec![conversation.into()];
    params.extend(parents.iter().map(|p| (*p).into()));
    let in_parents = if parents.is_empty() {
        String::new()
    } else {
        format!(" OR parent_id IN ({})", placeholders(1, parents.len()))
    };
    let rows: Vec<Row> = db.query(
        &format!(
            "SELECT id, parent_id FROM conv_messages WHERE conversation_id = $1 \
             AND (parent_id IS NULL{in_parents}) ORDER BY seq"
        ),
        &params,
    )?;
    let mut by_parent: HashMap<Option<String>, Vec<String>> = HashMap::new();
    for row in rows {
        by_parent.entry(row.parent_id).or_default().push(row.id);
    }
    Ok(path
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                by_parent.get(&m.parent_id).cloned().unwrap_or_default(),
            )
        })
        .collect())
}

/// The newest leaf at or below `from` (following the newest child at each
/// step): where the active path ends after switching to `from`'s branch.
pub fn newest_leaf(db: &impl Sql, conversation: &str, from: &str) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        parent_id: Option<String>,
    }
    let rows: Vec<Row> = db.query(
        "SELECT id, parent_id FROM conv_messages WHERE conversation_id = $1 ORDER BY seq",
        &[conversation.into()],
    )?;
    let mut newest_child: HashMap<String, String> = HashMap::new();
    for row in rows {
        if let Some(parent) = row.parent_id {
            newest_child.insert(parent, row.id);
        }
    }
    let mut leaf = from.to_owned();
    while let Some(child) = newest_child.get(&leaf) {
        leaf = child.clone();
    }
    Ok(leaf)
}

/// Whether a message's tokens count towards its conversation's usage.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Generated here (or the question of a generation).
    Charged,
    /// A copy (clone, import): its tokens were spent elsewhere.
    Copied,
}

/// Stores `message` as the newest of its conversation and makes it the
/// active leaf (counts, size and token totals follow). Its `seq` is
/// assigned here, from the conversation's count, which the first statement
/// increments: that locks the conversation's row (PostgreSQL), so two
/// messages stored at once get different numbers. 400 past
/// [`MAX_MESSAGES`] or [`MAX_SIZE`]; run it in a transaction, which then
/// rolls back.
pub fn insert(db: &impl Sql, message: &Message, usage: Usage) -> Result<(), ApiError> {
    let size = message.content.chars().count() as i64;
    let (prompt, completion) = match usage {
        Usage::Charged => (
            message.prompt_tokens.unwrap_or(0),
            message.completion_tokens.unwrap_or(0),
        ),
        Usage::Copied => (0, 0),
    };
    #[derive(Deserialize)]
    struct Counts {
        message_count: i64,
        content_size: i64,
    }
    let counts: Counts = db
        .query_one(
            "UPDATE conv_conversations SET message_count = message_count + 1, \
             content_size = content_size + $1, current_message_id = $2, \
             prompt_tokens = prompt_tokens + $3, completion_tokens = completion_tokens + $4, \
             updated_at = $5 WHERE id = $6 RETURNING message_count, content_size",
            &[
                size.into(),
                message.id.as_str().into(),
                prompt.into(),
                completion.into(),
                message.created_at.into(),
                message.conversation_id.as_str().into(),
            ],
        )?
        .ok_or_else(|| {
            ApiError::not_found(format!("no conversation {}", message.conversation_id))
        })?;
    // An answer is never refused once generated (its room was checked
    // before); a question or a copy is.
    let limited = message.role == "user" || usage == Usage::Copied;
    if limited && counts.message_count > MAX_MESSAGES {
        return Err(ApiError::new(
            400,
            "conversation full",
            format!(
                "a conversation holds at most {MAX_MESSAGES} messages; start a new one or clone a part of it"
            ),
        ));
    }
    if limited && counts.content_size > MAX_SIZE {
        return Err(ApiError::new(
            400,
            "conversation full",
            format!(
                "a conversation holds at most {MAX_SIZE} characters of messages; start a new one or clone a part of it"
            ),
        ));
    }
    db.execute(
        "INSERT INTO conv_messages (id, conversation_id, user_id, parent_id, seq, role, content, \
         model, options, tokens, prompt_tokens, completion_tokens, load_duration_ns, \
         prompt_duration_ns, eval_duration_ns, total_duration_ns, done_reason, created_at, sources) \
         SELECT $1, c.id, c.user_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 \
         FROM conv_conversations c WHERE c.id = $2",
        &[
            message.id.as_str().into(),
            message.conversation_id.as_str().into(),
            message.parent_id.clone().into(),
            counts.message_count.into(),
            message.role.as_str().into(),
            message.content.as_str().into(),
            message.model.clone().into(),
            message.options.clone().into(),
            message.tokens.into(),
            message.prompt_tokens.into(),
            message.completion_tokens.into(),
            message.load_duration_ns.into(),
            message.prompt_duration_ns.into(),
            message.eval_duration_ns.into(),
            message.total_duration_ns.into(),
            message.done_reason.clone().into(),
            message.created_at.into(),
            message.sources.clone().into(),
        ],
    )?;
    Ok(())
}

/// `GET /api/conversations/{id}/messages?page=&pageSize=`: the active path,
/// root first.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::cached_owned_any(ctx, &ctx.param("id"))?;
    let page = PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let path = active_path(&ctx.db, &conversation)?;
    let total = path.len() as u64;
    let shown: Vec<Message> = path
        .into_iter()
        .skip(page.offset() as usize)
        .take(page.page_size as usize)
        .collect();
    let siblings = siblings(&ctx.db, &conversation.id, &shown)?;
    let items: Vec<Json> = shown
        .iter()
        .map(|m| m.view(siblings.get(&m.id).map(Vec::as_slice).unwrap_or_default()))
        .collect();
    Ok(Reply::json(200, Page::new(items, page, total)))
}
