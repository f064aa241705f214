//! Export and import. `GET /api/conversations/export` streams every live
//! conversation of the caller as NDJSON, one conversation per line with
//! its whole message tree, tags, notes and feedback
//! (`"format": "lamina.conversation.v1"`). `POST
//! /api/conversations/import[?folderId=]` takes that (NDJSON, or a JSON
//! array of such objects) or Open WebUI's chat export (a JSON array of
//! chats with `chat.history.messages`), so people can move over. Every
//! imported row gets a new id; each conversation is stored in a
//! transaction of its own, and the answer says which were imported and
//! why any were not.

use std::collections::HashMap;

use lamina_sdk::BodyWriter;
use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, parse_timestamp, read_body, timestamp};
use lamina_sdk::sql::Sql;
use lamina_sdk::validate::Checks;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::chat::MAX_CONTENT;
use crate::conversations::{
    self, COLUMNS, Conversation, MAX_SYSTEM_PROMPT, MAX_TITLE, parse_options,
};
use crate::feedback::{self, Feedback};
use crate::messages::{self, MAX_MESSAGES, Message, Usage};
use crate::notes::{self, Note};
use crate::{Ctx, Streamer, cached, folders};

/// The export format's name.
const FORMAT: &str = "lamina.conversation.v1";
/// Largest import body (spin.toml's route allows it).
pub const IMPORT_LIMIT: usize = 16 << 20;
/// Most conversations in one import.
const MAX_CONVERSATIONS: usize = 10_000;
/// Conversations read per export query.
const EXPORT_BATCH: i64 = 50;

/// `GET /api/conversations/export`.
pub fn export<'a>(ctx: &'a Ctx<'a>) -> Result<Streamer<'a>, ApiError> {
    Ok(Box::new(move |out| {
        let mut body = BodyWriter::start(
            out,
            200,
            &[
                ("content-type", "application/x-ndjson"),
                (
                    "content-disposition",
                    "attachment; filename=\"conversations.ndjson\"",
                ),
            ],
        );
        if let Err(e) = export_into(ctx, &mut body) {
            // Headers are gone: end with a line saying why, so the file is
            // visibly incomplete.
            let line = json!({"error": {"status": e.status, "detail": e.detail}});
            let _ = body.send(format!("{line}\n").as_bytes());
        }
        body.finish();
    }))
}

fn export_into(ctx: &Ctx, body: &mut BodyWriter) -> Result<(), ApiError> {
    let user = ctx.user();
    let mut after = (i64::MIN, String::new());
    loop {
        let batch: Vec<Conversation> = ctx.db.query(
            &format!(
                "SELECT {COLUMNS} FROM conv_conversations WHERE user_id = $1 AND deleted_at IS NULL \
                 AND (created_at > $2 OR (created_at = $2 AND id > $3)) ORDER BY created_at, id LIMIT $4"
            ),
            &[user.into(), after.0.into(), after.1.as_str().into(), EXPORT_BATCH.into()],
        )?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = (last.created_at, last.id.clone());
        let ids: Vec<&str> = batch.iter().map(|c| c.id.as_str()).collect();
        let tags = conversations::tags_of(&ctx.db, &ids)?;
        for c in &batch {
            let line = exported(ctx, c, tags.get(&c.id).cloned().unwrap_or_default())?;
            if body.send(format!("{line}\n").as_bytes()).is_err() {
                return Ok(());
            }
        }
    }
}

/// One conversation as an export line.
fn exported(ctx: &Ctx, c: &Conversation, tags: Vec<String>) -> Result<Json, ApiError> {
    let all: Vec<Message> = ctx.db.query(
        &format!(
            "SELECT {} FROM conv_messages WHERE conversation_id = $1 ORDER BY seq",
            messages::COLUMNS
        ),
        &[c.id.as_str().into()],
    )?;
    let notes = notes::of(&ctx.db, &c.id, None)?;
    let feedback = feedback::of(&ctx.db, ctx.user(), &c.id)?;
    Ok(json!({
        "format": FORMAT,
        "id": c.id,
        "title": c.title,
        "titleByUser": c.title_by_user,
        "model": c.model,
        "systemPrompt": c.system_prompt,
        "options": conversations::options_json(c.options.as_deref()),
        "pinned": c.pinned,
        "archived": c.archived,
        "tags": tags,
        "currentMessageId": c.current_message_id,
        "createdAt": timestamp(c.created_at),
        "updatedAt": timestamp(c.updated_at),
        "messages": all.iter().map(|m| json!({
            "id": m.id,
            "parentId": m.parent_id,
            "role": m.role,
            "content": m.content,
            "model": m.model,
            "options": conversations::options_json(m.options.as_deref()),
            "tokens": m.tokens,
            "promptTokens": m.prompt_tokens,
            "completionTokens": m.completion_tokens,
            "doneReason": m.done_reason,
            "createdAt": timestamp(m.created_at),
        })).collect::<Vec<_>>(),
        "notes": notes.iter().map(|n| json!({
            "messageId": n.message_id,
            "fromIndex": n.from_index,
            "toIndex": n.to_index,
            "content": n.content,
            "createdAt": timestamp(n.created_at),
        })).collect::<Vec<_>>(),
        "feedback": feedback.iter().map(|f| json!({
            "messageId": f.message_id,
            "rating": f.rating,
            "comment": f.comment,
            "tags": serde_json::from_str::<Json>(&f.tags).unwrap_or_else(|_| json!([])),
            "createdAt": timestamp(f.created_at),
        })).collect::<Vec<_>>(),
    }))
}

/// A conversation read from either format, before it is stored.
#[derive(Default)]
struct Incoming {
    title: String,
    title_by_user: bool,
    model: String,
    system_prompt: Option<String>,
    options: Option<Json>,
    pinned: bool,
    archived: bool,
    tags: Vec<String>,
    created_at: i64,
    updated_at: i64,
    /// In an order where parents come before children.
    messages: Vec<IncomingMessage>,
    current: Option<String>,
    notes: Vec<LaminaNote>,
    feedback: Vec<LaminaFeedback>,
}

struct IncomingMessage {
    id: String,
    parent_id: Option<String>,
    role: String,
    content: String,
    model: Option<String>,
    options: Option<Json>,
    tokens: i64,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    done_reason: Option<String>,
    created_at: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lamina {
    title: String,
    #[serde(default)]
    title_by_user: bool,
    model: String,
    system_prompt: Option<String>,
    options: Option<Json>,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    tags: Vec<String>,
    current_message_id: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    #[serde(default)]
    messages: Vec<LaminaMessage>,
    #[serde(default)]
    notes: Vec<LaminaNote>,
    #[serde(default)]
    feedback: Vec<LaminaFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LaminaMessage {
    id: String,
    parent_id: Option<String>,
    role: String,
    content: String,
    model: Option<String>,
    options: Option<Json>,
    #[serde(default)]
    tokens: i64,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    done_reason: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LaminaNote {
    message_id: String,
    from_index: i64,
    to_index: i64,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LaminaFeedback {
    message_id: String,
    rating: String,
    comment: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

impl From<Lamina> for Incoming {
    fn from(l: Lamina) -> Incoming {
        // Left out: now; not a time: out of range, for `check` to refuse.
        let at = |t: &Option<String>| {
            t.as_deref()
                .map_or(Some(now_ms()), parse_timestamp)
                .unwrap_or(i64::MAX)
        };
        Incoming {
            title: l.title,
            title_by_user: l.title_by_user,
            model: l.model,
            system_prompt: l.system_prompt,
            options: l.options,
            pinned: l.pinned,
            archived: l.archived,
            tags: l.tags,
            created_at: at(&l.created_at),
            updated_at: at(&l.updated_at),
            messages: parents_first(
                l.messages
                    .into_iter()
                    .map(|m| IncomingMessage {
                        created_at: at(&m.created_at),
                        id: m.id,
                        parent_id: m.parent_id,
                        role: m.role,
                        content: m.content,
                        model: m.model,
                        options: m.options,
                        tokens: m.tokens,
                        prompt_tokens: m.prompt_tokens,
                        completion_tokens: m.completion_tokens,
                        done_reason: m.done_reason,
                    })
                    .collect(),
            ),
            current: l.current_message_id,
            notes: l.notes,
            feedback: l.feedback,
        }
    }
}

/// Open WebUI's chat export: `{title, chat: {models, history: {messages:
/// {id: {id, parentId, role, content, model, timestamp}}, currentId}},
/// created_at, updated_at, pinned, archived, meta: {tags}}` (times in
/// seconds).
fn from_open_webui(chat: &Json) -> Result<Incoming, String> {
    let inner = &chat["chat"];
    let history = inner["history"]["messages"]
        .as_object()
        .ok_or("chat.history.messages is missing")?;
    let seconds = |v: &Json| {
        v.as_i64()
            .map(|s| if s > 10_000_000_000 { s } else { s * 1000 })
    };
    let now = now_ms();
    let model = inner["models"][0]
        .as_str()
        .or_else(|| history.values().find_map(|m| m["model"].as_str()))
        .unwrap_or_default()
        .to_owned();
    let mut system_prompt = inner["system"].as_str().map(str::to_owned);
    let mut messages = Vec::new();
    for (key, m) in history {
        let role = m["role"].as_str().unwrap_or_default();
        let content = m["content"].as_str().unwrap_or_default().to_owned();
        if role == "system" {
            system_prompt.get_or_insert(content);
            continue;
        }
        messages.push(IncomingMessage {
            id: m["id"].as_str().unwrap_or(key).to_owned(),
            parent_id: m["parentId"].as_str().map(str::to_owned),
            role: role.to_owned(),
            content,
            model: m["model"].as_str().map(str::to_owned),
            options: None,
            tokens: 0,
            prompt_tokens: m["usage"]["prompt_eval_count"].as_i64(),
            completion_tokens: m["usage"]["eval_count"].as_i64(),
            done_reason: (role == "assistant").then(|| "stop".to_owned()),
            created_at: seconds(&m["timestamp"]).unwrap_or(now),
        });
    }
    let tags = chat["meta"]["tags"]
        .as_array()
        .or_else(|| inner["tags"].as_array())
        .map(|t| {
            t.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Incoming {
        title: chat["title"]
            .as_str()
            .or(inner["title"].as_str())
            .unwrap_or(conversations::UNTITLED)
            .to_owned(),
        title_by_user: true,
        model,
        system_prompt,
        options: None,
        pinned: chat["pinned"].as_bool().unwrap_or(false),
        archived: chat["archived"].as_bool().unwrap_or(false),
        tags,
        created_at: seconds(&chat["created_at"]).unwrap_or(now),
        updated_at: seconds(&chat["updated_at"]).unwrap_or(now),
        messages: parents_first(messages),
        current: inner["history"]["currentId"].as_str().map(str::to_owned),
        notes: Vec::new(),
        feedback: Vec::new(),
    })
}

/// Orders messages so every parent comes before its children (creation
/// time among siblings); messages whose parent is missing stay last, for
/// the checks to refuse.
fn parents_first(mut all: Vec<IncomingMessage>) -> Vec<IncomingMessage> {
    all.sort_by_key(|m| m.created_at);
    let mut children: HashMap<Option<String>, Vec<usize>> = HashMap::new();
    for (i, m) in all.iter().enumerate() {
        children.entry(m.parent_id.clone()).or_default().push(i);
    }
    let mut order = Vec::with_capacity(all.len());
    let mut stack: Vec<usize> = children.get(&None).cloned().unwrap_or_default();
    stack.reverse();
    let mut placed = vec![false; all.len()];
    while let Some(i) = stack.pop() {
        placed[i] = true;
        order.push(i);
        if let Some(kids) = children.get(&Some(all[i].id.clone())) {
            stack.extend(kids.iter().rev());
        }
    }
    order.extend((0..all.len()).filter(|i| !placed[*i]));
    let mut slots: Vec<Option<IncomingMessage>> = all.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Reads the body into conversations (each `Err` says why one is unusable).
fn parse(body: &[u8]) -> Result<Vec<Result<Incoming, String>>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_body("the body is not UTF-8"))?;
    let trimmed = text.trim_start();
    let objects: Vec<Result<Json, String>> = if trimmed.starts_with('[') {
        let array: Vec<Json> = serde_json::from_str(trimmed).map_err(ApiError::bad_body)?;
        array.into_iter().map(Ok).collect()
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {e}")))
            .collect()
    };
    if objects.len() > MAX_CONVERSATIONS {
        return Err(ApiError::new(
            413,
            "too many conversations",
            format!("at most {MAX_CONVERSATIONS} per import"),
        ));
    }
    Ok(objects
        .into_iter()
        .map(|object| {
            let object = object?;
            if object.get("chat").is_some_and(Json::is_object) {
                from_open_webui(&object)
            } else {
                serde_json::from_value::<Lamina>(object)
                    .map(Incoming::from)
                    .map_err(|e| {
                        format!("neither a Lamina export line nor an Open WebUI chat: {e}")
                    })
            }
        })
        .collect())
}

/// The limits every imported conversation must meet.
fn check(incoming: &Incoming) -> Result<(), String> {
    let mut checks = Checks::default();
    checks.text("title", &incoming.title, MAX_TITLE);
    checks.text("model", &incoming.model, 200);
    if let Some(prompt) = &incoming.system_prompt {
        checks.long_text("systemPrompt", prompt, MAX_SYSTEM_PROMPT);
    }
    if let Some(options) = &incoming.options
        && let Err(e) = parse_options(options)
    {
        checks.fail("options", e);
    }
    if incoming.messages.len() as i64 > MAX_MESSAGES {
        checks.fail("messages", format!("at most {MAX_MESSAGES}"));
    }
    conversations::clean_tags(&mut checks, &incoming.tags);
    let times = std::iter::once(incoming.created_at)
        .chain([incoming.updated_at])
        .chain(incoming.messages.iter().map(|m| m.created_at));
    if times.into_iter().any(|t| !(0..=LAST_TIME).contains(&t)) {
        checks.fail("createdAt", "a time between 1970 and 9999");
    }
    let mut known: HashMap<&str, &IncomingMessage> = HashMap::new();
    for m in &incoming.messages {
        if let Some(model) = &m.model {
            checks.text("messages.model", model, 200);
        }
        if m.done_reason
            .as_deref()
            .is_some_and(|r| !matches!(r, "stop" | "length" | "cancelled"))
        {
            checks.fail("messages.doneReason", "stop, length or cancelled");
        }
        if !matches!(m.role.as_str(), "user" | "assistant") {
            checks.fail("messages", format!("role {:?}: user or assistant", m.role));
            break;
        }
        checks.long_text("messages", &m.content, MAX_CONTENT);
        if m.parent_id
            .as_deref()
            .is_some_and(|p| !known.contains_key(p))
            || known.insert(&m.id, m).is_some()
        {
            checks.fail(
                "messages",
                format!(
                    "message {}: a parentId naming no earlier message, or a repeated id",
                    m.id
                ),
            );
            break;
        }
    }
    let mut per_message: HashMap<&str, i64> = HashMap::new();
    for n in &incoming.notes {
        let Some(m) = known.get(n.message_id.as_str()) else {
            checks.fail(
                "notes.messageId",
                format!("{}: no such message", n.message_id),
            );
            break;
        };
        notes::check(
            &mut checks,
            &m.content,
            n.from_index,
            n.to_index,
            &n.content,
        );
        *per_message.entry(&n.message_id).or_default() += 1;
    }
    if per_message.values().any(|n| *n > notes::MAX_PER_MESSAGE) {
        checks.fail(
            "notes",
            format!("at most {} notes per message", notes::MAX_PER_MESSAGE),
        );
    }
    for f in &incoming.feedback {
        if known
            .get(f.message_id.as_str())
            .is_none_or(|m| m.role != "assistant")
        {
            checks.fail(
                "feedback.messageId",
                format!("{}: no such answer", f.message_id),
            );
            break;
        }
        if let Err(e) = feedback::checked(&f.rating, f.comment.as_deref(), &f.tags) {
            checks.fail("feedback", e.detail);
        }
    }
    checks.finish().map_err(|e| e.detail)
}

/// The last millisecond humans write timestamps for (9999-12-31).
const LAST_TIME: i64 = 253_402_300_799_999;

/// `POST /api/conversations/import[?folderId=]`.
pub fn import(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let folder = folders::owned(&ctx.db, user, ctx.query("folderId").as_deref())?;
    let body = read_body(ctx.request, IMPORT_LIMIT)?;
    let mut imported = Vec::new();
    let mut failed = Vec::new();
    for (index, incoming) in parse(&body)?.into_iter().enumerate() {
        let result = incoming
            .and_then(|i| check(&i).map(|()| i))
            .and_then(|incoming| store(ctx, &folder.id, incoming).map_err(|e| e.detail));
        match result {
            Ok(id) => imported.push(id),
            Err(detail) => failed.push(json!({ "index": index, "detail": detail })),
        }
    }
    cached::invalidate(&[cached::folders(user)]);
    if imported.is_empty() && !failed.is_empty() {
        let mut error = ApiError::new(
            400,
            "nothing imported",
            "no conversation in the body could be imported",
        );
        error.errors = failed
            .iter()
            .map(|f| lamina_sdk::api::FieldError {
                field: format!("[{}]", f["index"]),
                message: f["detail"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        return Err(error);
    }
    Ok(Reply::json(
        200,
        json!({ "imported": imported, "failed": failed }),
    ))
}

/// Stores one conversation in a transaction; returns its new id.
fn store(ctx: &Ctx, folder: &str, incoming: Incoming) -> Result<String, ApiError> {
    let user = ctx.user();
    let options = match &incoming.options {
        Some(o) => parse_options(o).map_err(|e| ApiError::new(400, "invalid options", e))?,
        None => None,
    };
    let conversation = Conversation {
        id: new_id(),
        user_id: user.to_owned(),
        folder_id: folder.to_owned(),
        title: incoming.title.trim().to_owned(),
        title_by_user: incoming.title_by_user,
        model: incoming.model.clone(),
        system_prompt: incoming.system_prompt.clone(),
        options,
        pinned: incoming.pinned,
        archived: incoming.archived,
        current_message_id: None,
        message_count: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        content_size: 0,
        rag_top_k: None,
        rag_min_score: None,
        deleted_at: None,
        created_at: incoming.created_at,
        updated_at: incoming.updated_at,
    };
    let mut ids: HashMap<String, String> = HashMap::new();
    ctx.db.transaction(|tx| {
        conversations::insert(tx, &conversation)?;
        for m in &incoming.messages {
            let id = new_id();
            let stored_options = m
                .options
                .as_ref()
                .and_then(|o| parse_options(o).ok().flatten());
            messages::insert(
                tx,
                &Message {
                    id: id.clone(),
                    conversation_id: conversation.id.clone(),
                    parent_id: m.parent_id.as_ref().and_then(|p| ids.get(p).cloned()),
                    seq: 0,
                    role: m.role.clone(),
                    content: m.content.clone(),
                    model: m.model.clone(),
                    options: stored_options,
                    tokens: m.tokens.max(0),
                    prompt_tokens: m.prompt_tokens,
                    completion_tokens: m.completion_tokens,
                    load_duration_ns: None,
                    prompt_duration_ns: None,
                    eval_duration_ns: None,
                    total_duration_ns: None,
                    done_reason: m.done_reason.clone(),
                    created_at: m.created_at,
                    sources: None,
                },
                Usage::Copied,
            )?;
            ids.insert(m.id.clone(), id);
        }
        let current = incoming
            .current
            .as_ref()
            .and_then(|c| ids.get(c))
            .cloned()
            .or_else(|| {
                incoming
                    .messages
                    .last()
                    .and_then(|m| ids.get(&m.id).cloned())
            });
        // Inserting set the newest message as current and the update time
        // to its own: put back what the export says.
        tx.execute(
            "UPDATE conv_conversations SET current_message_id = $1, updated_at = $2 WHERE id = $3",
            &[
                current.into(),
                incoming.updated_at.into(),
                conversation.id.as_str().into(),
            ],
        )?;
        // Checked before: nothing fails here.
        let tags = conversations::clean_tags(&mut Checks::default(), &incoming.tags);
        for tag in &tags {
            tx.execute(
                "INSERT INTO conv_tags (conversation_id, user_id, tag) VALUES ($1, $2, $3)",
                &[
                    conversation.id.as_str().into(),
                    user.into(),
                    tag.as_str().into(),
                ],
            )?;
        }
        let at = now_ms();
        for n in &incoming.notes {
            notes::insert(
                tx,
                user,
                &Note {
                    id: new_id(),
                    message_id: ids[&n.message_id].clone(),
                    conversation_id: conversation.id.clone(),
                    from_index: n.from_index,
                    to_index: n.to_index,
                    content: n.content.clone(),
                    created_at: at,
                    updated_at: at,
                },
            )?;
        }
        for f in &incoming.feedback {
            feedback::store(
                tx,
                user,
                &Feedback {
                    message_id: ids[&f.message_id].clone(),
                    conversation_id: conversation.id.clone(),
                    rating: f.rating.clone(),
                    comment: f.comment.clone(),
                    tags: feedback::checked(&f.rating, f.comment.as_deref(), &f.tags)?,
                    created_at: at,
                    updated_at: at,
                },
            )?;
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(conversation.id)
}
