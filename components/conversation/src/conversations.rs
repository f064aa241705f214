//! `/api/conversations`: create (the model must be installed), read,
//! change, trash and restore, delete for good, list with filters, tags,
//! clone from a message.
//!
//! A conversation's row is cached (`conversation:info:{id}`) for the read
//! routes; every write here reads the database and drops the cached row.

use std::collections::HashMap;

use lamina_sdk::api::{
    ApiError, FieldError, Reply, new_id, now_ms, nullable, read_json, timestamp,
};
use lamina_sdk::inference::{self, OllamaOptions};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::{Sql, Value};
use lamina_sdk::validate::Checks;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::folders::{self, placeholders};
use crate::messages::{self, Message, Usage};
use crate::{Ctx, cached};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest system prompt, in characters.
pub const MAX_SYSTEM_PROMPT: usize = 32_000;
/// Most tags on one conversation.
const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
const MAX_TAG: usize = 50;
/// Largest request body of these routes.
const BODY_LIMIT: usize = 128 << 10;
/// The title until one is set or generated.
pub const UNTITLED: &str = "New conversation";

/// A conversation's defaults: what a folder gives the conversations
/// created in it.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    /// JSON object of Ollama options, as stored.
    pub options: Option<String>,
}

impl Defaults {
    /// Checks the fields (and `options`, if given, replacing the stored
    /// ones) and returns them normalized.
    pub fn checked(mut self, checks: &mut Checks, options: Option<&Json>) -> Defaults {
        if let Some(model) = &self.model {
            checks.text("model", model, 200);
        }
        if let Some(prompt) = &self.system_prompt {
            checks.long_text("systemPrompt", prompt, MAX_SYSTEM_PROMPT);
        }
        if let Some(options) = options {
            match parse_options(options) {
                Ok(stored) => self.options = stored,
                Err(message) => checks.fail("options", message),
            }
        }
        self
    }

    /// As the API shows it.
    pub fn view(&self) -> Json {
        json!({
            "model": self.model,
            "systemPrompt": self.system_prompt,
            "options": options_json(self.options.as_deref()),
        })
    }
}

/// Ollama's options object, checked and stored as JSON (`None` if empty).
pub fn parse_options(options: &Json) -> Result<Option<String>, String> {
    if !options.is_object() {
        return Err("an object of Ollama options".into());
    }
    let parsed: OllamaOptions =
        serde_json::from_value(options.clone()).map_err(|e| format!("not valid options: {e}"))?;
    // The values as sent (an f32 round trip would turn 0.2 into
    // 0.20000000298), of the options known.
    let known = serde_json::to_value(&parsed).expect("options serialize");
    let stored: serde_json::Map<String, Json> = options
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| known.get(key.as_str()).is_some())
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok((!stored.is_empty()).then(|| Json::Object(stored).to_string()))
}

/// Stored options as JSON (an empty object when none).
pub fn options_json(stored: Option<&str>) -> Json {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({}))
}

/// 400 unless `model` is an installed model that generates text.
pub fn check_model(model: &str) -> Result<(), ApiError> {
    let fail = |message: String| {
        ApiError::invalid(vec![FieldError {
            field: "model".into(),
            message,
        }])
    };
    match inference::show_model(model) {
        Ok(info) if info.embedding => Err(fail(format!(
            "{model} is an embedding model, it cannot chat"
        ))),
        Ok(_) => Ok(()),
        Err(inference::Error::NoSuchModel(_) | inference::Error::AccessDenied(_)) => {
            Err(fail(format!("no model named {model} is installed")))
        }
        Err(e) => Err(e.into()),
    }
}

/// The model new conversations get when neither the request nor the
/// folder names one (spin.toml variable `default_model`).
fn default_model() -> String {
    lamina_sdk::variables::get("default_model").unwrap_or_else(|_| "smollm2:135m".into())
}

/// A row of `conv_conversations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub user_id: String,
    pub folder_id: String,
    pub title: String,
    pub title_by_user: bool,
    pub model: String,
    pub system_prompt: Option<String>,
    pub options: Option<String>,
    pub pinned: bool,
    pub archived: bool,
    pub current_message_id: Option<String>,
    pub message_count: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Characters of message content, all branches.
    #[serde(default)]
    pub content_size: i64,
    /// Retrieval settings (None: the defaults).
    #[serde(default)]
    pub rag_top_k: Option<i64>,
    #[serde(default)]
    pub rag_min_score: Option<f64>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of [`Conversation`].
pub const COLUMNS: &str = "id, user_id, folder_id, title, title_by_user, model, system_prompt, \
     options, pinned, archived, current_message_id, message_count, prompt_tokens, \
     completion_tokens, content_size, rag_top_k, rag_min_score, deleted_at, created_at, updated_at";

impl Conversation {
    /// As lists show it.
    pub fn summary(&self, tags: &[String]) -> Json {
        json!({
            "id": self.id,
            "title": self.title,
            "model": self.model,
            "folderId": self.folder_id,
            "pinned": self.pinned,
            "archived": self.archived,
            "tags": tags,
            "messageCount": self.message_count,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
            "deletedAt": self.deleted_at.map(timestamp),
        })
    }

    /// As `GET /api/conversations/{id}` shows it.
    pub fn view(&self, tags: &[String]) -> Json {
        let mut view = self.summary(tags);
        view["systemPrompt"] = self.system_prompt.clone().into();
        view["options"] = options_json(self.options.as_deref());
        view["currentMessageId"] = self.current_message_id.clone().into();
        view["usage"] = json!({
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
        });
        view
    }
}

/// Conversation `id` by id alone.
fn load(db: &impl Sql, id: &str) -> Result<Option<Conversation>, ApiError> {
    let select = format!("SELECT {COLUMNS} FROM conv_conversations WHERE id = $1");
    Ok(db.query_one(&select, &[id.into()])?)
}

fn mine(ctx: &Ctx, id: &str, found: Option<Conversation>) -> Result<Conversation, ApiError> {
    found
        .filter(|c| c.user_id == ctx.user())
        .ok_or_else(|| ApiError::not_found(format!("no conversation {id}")))
}

/// The caller's conversation `id`, trashed ones included; 404 otherwise.
pub fn owned_any(ctx: &Ctx, id: &str) -> Result<Conversation, ApiError> {
    mine(ctx, id, load(&ctx.db, id)?)
}

/// [`owned_any`] through the cache, for routes that only read.
pub fn cached_owned_any(ctx: &Ctx, id: &str) -> Result<Conversation, ApiError> {
    let found = cached::get_or_load(&cached::info(id), || load(&ctx.db, id))?;
    mine(ctx, id, found)
}

/// The caller's live (not trashed) conversation `id`; 404 otherwise.
pub fn owned(ctx: &Ctx, id: &str) -> Result<Conversation, ApiError> {
    owned_any(ctx, id).and_then(|c| match c.deleted_at {
        None => Ok(c),
        Some(_) => Err(ApiError::not_found(format!("no conversation {id}"))),
    })
}

/// The tags of each conversation in `ids`.
pub fn tags_of(db: &impl Sql, ids: &[&str]) -> Result<HashMap<String, Vec<String>>, ApiError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    #[derive(Deserialize)]
    struct Tag {
        conversation_id: String,
        tag: String,
    }
    let params: Vec<Value> = ids.iter().map(|id| Value::from(*id)).collect();
    let rows: Vec<Tag> = db.query(
        &format!(
            "SELECT conversation_id, tag FROM conv_tags WHERE conversation_id IN ({}) ORDER BY tag",
            placeholders(0, ids.len())
        ),
        &params,
    )?;
    let mut tags: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        tags.entry(row.conversation_id).or_default().push(row.tag);
    }
    Ok(tags)
}

/// Lower-cased, trimmed, unique tags; failures recorded on `checks`.
pub fn clean_tags(checks: &mut Checks, tags: &[String]) -> Vec<String> {
    let mut clean: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > MAX_TAG || tag.chars().any(char::is_control) {
            checks.fail("tags", format!("each tag 1 to {MAX_TAG} characters"));
            return clean;
        }
        if !clean.contains(&tag) {
            clean.push(tag);
        }
    }
    clean.sort();
    if clean.len() > MAX_TAGS {
        checks.fail("tags", format!("at most {MAX_TAGS} tags"));
    }
    clean
}

/// Replaces the conversation's tags.
fn set_tags(db: &impl Sql, id: &str, user: &str, tags: &[String]) -> Result<(), ApiError> {
    db.execute(
        "DELETE FROM conv_tags WHERE conversation_id = $1",
        &[id.into()],
    )?;
    for tag in tags {
        db.execute(
            "INSERT INTO conv_tags (conversation_id, user_id, tag) VALUES ($1, $2, $3)",
            &[id.into(), user.into(), tag.as_str().into()],
        )?;
    }
    Ok(())
}

/// Which conversations a list shows.
#[derive(Debug, Default)]
pub struct Filter {
    pub folder_id: Option<String>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    pub model: Option<String>,
    pub tag: Option<String>,
    /// The trash instead of the live ones.
    pub deleted: bool,
    /// `updated` (default), `created` or `title`.
    pub sort: String,
}

impl Filter {
    /// Everything live in one folder.
    pub fn folder(id: &str) -> Filter {
        Filter {
            folder_id: Some(id.to_owned()),
            ..Filter::default()
        }
    }

    /// From `?folderId=&archived=&pinned=&model=&tag=&deleted=&sort=`.
    pub fn from_query(ctx: &Ctx) -> Result<Filter, ApiError> {
        let mut checks = Checks::default();
        let mut flag = |name: &str| match ctx.query(name).as_deref() {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                checks.fail(name, "true or false");
                None
            }
        };
        let archived = flag("archived");
        let pinned = flag("pinned");
        let deleted = flag("deleted").unwrap_or(false);
        let sort = ctx.query("sort").unwrap_or_else(|| "updated".into());
        if !matches!(sort.as_str(), "updated" | "created" | "title") {
            checks.fail("sort", "updated, created or title");
        }
        checks.finish()?;
        Ok(Filter {
            folder_id: ctx.query("folderId").filter(|v| !v.is_empty()),
            archived,
            pinned,
            model: ctx.query("model").filter(|v| !v.is_empty()),
            tag: ctx
                .query("tag")
                .map(|t| t.trim().to_lowercase())
                .filter(|v| !v.is_empty()),
            deleted,
            sort,
        })
    }

    /// The SQL condition on `c` (conv_conversations) and its parameters,
    /// numbered after `after`.
    pub fn condition(&self, user: &str, after: usize) -> (String, Vec<Value>) {
        let mut clauses = vec![format!("c.user_id = ${}", after + 1)];
        let mut params: Vec<Value> = vec![user.into()];
        let mut add = |clause: &str, value: Value| {
            params.push(value);
            clauses.push(clause.replace('?', &format!("${}", after + params.len())));
        };
        if let Some(folder) = &self.folder_id {
            add("c.folder_id = ?", folder.as_str().into());
        }
        // Archived conversations are left out of lists unless asked for.
        add("c.archived = ?", self.archived.unwrap_or(false).into());
        if let Some(pinned) = self.pinned {
            add("c.pinned = ?", pinned.into());
        }
        if let Some(model) = &self.model {
            add("c.model = ?", model.as_str().into());
        }
        if let Some(tag) = &self.tag {
            add(
                "EXISTS (SELECT 1 FROM conv_tags t WHERE t.conversation_id = c.id AND t.tag = ?)",
                tag.as_str().into(),
            );
        }
        clauses.push(if self.deleted {
            "c.deleted_at IS NOT NULL".into()
        } else {
            "c.deleted_at IS NULL".into()
        });
        (clauses.join(" AND "), params)
    }

    fn order(&self) -> &'static str {
        match self.sort.as_str() {
            "created" => "c.created_at DESC, c.id",
            "title" => "LOWER(c.title), c.id",
            _ => "c.updated_at DESC, c.id",
        }
    }
}

/// One page of the caller's conversations matching `filter` (summaries),
/// and how many match in all.
pub fn query(
    db: &impl Sql,
    user: &str,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Json>, u64), ApiError> {
    let (condition, mut params) = filter.condition(user, 0);
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let total = db
        .query_one::<Count>(
            &format!("SELECT COUNT(*) AS n FROM conv_conversations c WHERE {condition}"),
            &params,
        )?
        .map_or(0, |c| c.n) as u64;
    if limit <= 0 {
        return Ok((Vec::new(), total));
    }
    let n = params.len();
    params.push(limit.into());
    params.push(offset.into());
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("c.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<Conversation> = db.query(
        &format!(
            "SELECT {columns} FROM conv_conversations c WHERE {condition} ORDER BY {} LIMIT ${} OFFSET ${}",
            filter.order(),
            n + 1,
            n + 2
        ),
        &params,
    )?;
    let ids: Vec<&str> = rows.iter().map(|c| c.id.as_str()).collect();
    let tags = tags_of(db, &ids)?;
    let items = rows
        .iter()
        .map(|c| c.summary(tags.get(&c.id).map(Vec::as_slice).unwrap_or_default()))
        .collect();
    Ok((items, total))
}

/// `GET /api/conversations?page=&pageSize=&sort=&folderId=&archived=&pinned=&model=&tag=&deleted=`.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    let page = PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let filter = Filter::from_query(ctx)?;
    let (items, total) = query(&ctx.db, ctx.user(), &filter, page.limit(), page.offset())?;
    Ok(Reply::json(200, Page::new(items, page, total)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Create {
    title: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    folder_id: Option<String>,
    options: Option<Json>,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /api/conversations` {title?, model?, systemPrompt?, folderId?,
/// options?, tags?}: what is left out comes from the folder's defaults,
/// then the service's default model.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let body: Create = read_json(ctx.request, BODY_LIMIT)?;
    let user = ctx.user();
    let folder = folders::owned(&ctx.db, user, body.folder_id.as_deref())?;
    let inherited = folder.defaults();
    let mut checks = Checks::default();
    if let Some(title) = &body.title {
        checks.text("title", title, MAX_TITLE);
    }
    let tags = clean_tags(&mut checks, &body.tags);
    let defaults = Defaults {
        model: body.model.or(inherited.model),
        system_prompt: body.system_prompt.or(inherited.system_prompt),
        options: inherited.options,
    }
    .checked(&mut checks, body.options.as_ref());
    checks.finish()?;
    let model = defaults.model.unwrap_or_else(default_model);
    check_model(&model)?;
    let at = now_ms();
    let conversation = Conversation {
        id: new_id(),
        user_id: user.to_owned(),
        folder_id: folder.id,
        title: body.title.as_deref().map_or(UNTITLED, str::trim).to_owned(),
        title_by_user: body.title.is_some(),
        model,
        system_prompt: defaults.system_prompt,
        options: defaults.options,
        pinned: false,
        archived: false,
        current_message_id: None,
        message_count: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        content_size: 0,
        rag_top_k: None,
        rag_min_score: None,
        deleted_at: None,
        created_at: at,
        updated_at: at,
    };
    ctx.db.transaction(|tx| {
        insert(tx, &conversation)?;
        set_tags(tx, &conversation.id, user, &tags)
    })?;
    cached::invalidate(&[cached::folders(user)]);
    Ok(Reply::json(201, conversation.view(&tags)))
}

/// Stores a new conversation row.
pub fn insert(db: &impl Sql, c: &Conversation) -> Result<(), ApiError> {
    db.execute(
        "INSERT INTO conv_conversations (id, user_id, folder_id, title, title_by_user, model, \
         system_prompt, options, pinned, archived, current_message_id, message_count, \
         prompt_tokens, completion_tokens, deleted_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &[
            c.id.as_str().into(),
            c.user_id.as_str().into(),
            c.folder_id.as_str().into(),
            c.title.as_str().into(),
            c.title_by_user.into(),
            c.model.as_str().into(),
            c.system_prompt.clone().into(),
            c.options.clone().into(),
            c.pinned.into(),
            c.archived.into(),
            c.current_message_id.clone().into(),
            c.message_count.into(),
            c.prompt_tokens.into(),
            c.completion_tokens.into(),
            c.deleted_at.into(),
            c.created_at.into(),
            c.updated_at.into(),
        ],
    )?;
    Ok(())
}

/// `GET /api/conversations/{id}` (trashed ones too: the trash lists them).
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = cached_owned_any(ctx, &ctx.param("id"))?;
    reply(ctx, &conversation)
}

/// `conversation` with its tags, as `GET` answers.
fn reply(ctx: &Ctx, conversation: &Conversation) -> Result<Reply, ApiError> {
    let tags = tags_of(&ctx.db, &[&conversation.id])?;
    let tags = tags
        .get(&conversation.id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(Reply::json(200, conversation.view(tags)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Update {
    title: Option<String>,
    model: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    options: Option<Option<Json>>,
    folder_id: Option<String>,
    pinned: Option<bool>,
    archived: Option<bool>,
    current_message_id: Option<String>,
    tags: Option<Vec<String>>,
}

/// `PATCH /api/conversations/{id}`: title, model, system prompt, options
/// (`null` clears), folder, pinned, archived, tags, and
/// `currentMessageId`, which switches branch: the active path then ends
/// at the newest leaf below that message.
pub fn update(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let c = owned(ctx, &ctx.param("id"))?;
    let body: Update = read_json(ctx.request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    if let Some(title) = &body.title {
        checks.text("title", title, MAX_TITLE);
    }
    let tags = body.tags.as_ref().map(|t| clean_tags(&mut checks, t));
    let defaults = Defaults {
        model: body.model.clone(),
        system_prompt: body.system_prompt.clone().flatten(),
        options: None,
    }
    .checked(&mut checks, body.options.as_ref().and_then(Option::as_ref));
    checks.finish()?;
    // Only the fields the body names are written, so a change made
    // meanwhile (an answer stored, a title generated) is kept.
    let mut set: Vec<(&str, Value)> = Vec::new();
    if let Some(model) = defaults.model {
        check_model(&model)?;
        set.push(("model", model.into()));
    }
    if body.system_prompt.is_some() {
        set.push(("system_prompt", defaults.system_prompt.into()));
    }
    if body.options.is_some() {
        set.push(("options", defaults.options.into()));
    }
    if let Some(folder) = &body.folder_id {
        set.push((
            "folder_id",
            folders::owned(&ctx.db, user, Some(folder))?.id.into(),
        ));
    }
    if let Some(message) = &body.current_message_id {
        let message = messages::owned(&ctx.db, &c.id, message)?;
        let leaf = messages::newest_leaf(&ctx.db, &c.id, &message.id)?;
        set.push(("current_message_id", leaf.into()));
    }
    if let Some(title) = &body.title {
        set.push(("title", title.trim().into()));
        set.push(("title_by_user", true.into()));
    }
    if let Some(pinned) = body.pinned {
        set.push(("pinned", pinned.into()));
    }
    if let Some(archived) = body.archived {
        set.push(("archived", archived.into()));
    }
    set.push(("updated_at", now_ms().into()));
    let assignments: Vec<String> = set
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{column} = ${}", i + 3))
        .collect();
    let mut params: Vec<Value> = vec![c.id.as_str().into(), user.into()];
    params.extend(set.into_iter().map(|(_, value)| value));
    ctx.db.transaction(|tx| {
        tx.execute(
            &format!(
                "UPDATE conv_conversations SET {} WHERE id = $1 AND user_id = $2",
                assignments.join(", ")
            ),
            &params,
        )?;
        if let Some(tags) = &tags {
            set_tags(tx, &c.id, user, tags)?;
        }
        Ok::<_, ApiError>(())
    })?;
    cached::conversation(&c.id);
    cached::invalidate(&[cached::folders(user)]);
    reply(ctx, &owned_any(ctx, &c.id)?)
}

/// `DELETE /api/conversations/{id}[?permanent=true]`: to the trash
/// (restorable), or gone for good with everything in it.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let c = owned_any(ctx, &ctx.param("id"))?;
    if ctx.query("permanent").as_deref() == Some("true") {
        let own = crate::knowledge::collections::own(&ctx.db, &c.id)?;
        ctx.db.execute(
            "DELETE FROM conv_conversations WHERE id = $1 AND user_id = $2",
            &[c.id.as_str().into(), user.into()],
        )?;
        if let Some(collection) = own {
            crate::knowledge::purge::collection(user, &collection);
        }
    } else if c.deleted_at.is_none() {
        ctx.db.execute(
            "UPDATE conv_conversations SET deleted_at = $1 WHERE id = $2 AND user_id = $3",
            &[now_ms().into(), c.id.as_str().into(), user.into()],
        )?;
    }
    cached::conversation(&c.id);
    cached::invalidate(&[cached::folders(user)]);
    Ok(Reply::no_content())
}

/// `POST /api/conversations/{id}/restore`: out of the trash.
pub fn restore(ctx: &Ctx) -> Result<Reply, ApiError> {
    let c = owned_any(ctx, &ctx.param("id"))?;
    ctx.db.execute(
        "UPDATE conv_conversations SET deleted_at = NULL WHERE id = $1 AND user_id = $2",
        &[c.id.as_str().into(), ctx.user().into()],
    )?;
    cached::conversation(&c.id);
    cached::invalidate(&[cached::folders(ctx.user())]);
    reply(ctx, &owned_any(ctx, &c.id)?)
}

/// `GET /api/conversations/tags`: the caller's tags with how many live
/// conversations carry each (a tag no conversation carries is gone).
pub fn tags(ctx: &Ctx) -> Result<Reply, ApiError> {
    #[derive(Serialize, Deserialize)]
    struct Tag {
        tag: String,
        count: i64,
    }
    let tags: Vec<Tag> = ctx.db.query(
        "SELECT t.tag AS tag, COUNT(*) AS count FROM conv_tags t \
         JOIN conv_conversations c ON c.id = t.conversation_id \
         WHERE t.user_id = $1 AND c.deleted_at IS NULL GROUP BY t.tag ORDER BY t.tag",
        &[ctx.user().into()],
    )?;
    Ok(Reply::json(200, json!({ "items": tags })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Clone {
    message_id: Option<String>,
    title: Option<String>,
}

/// `POST /api/conversations/{id}/clone` {messageId?, title?}: a new
/// conversation holding a copy of the path from the root to `messageId`
/// (default: the active leaf).
pub fn clone(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let source = owned(ctx, &ctx.param("id"))?;
    let body: Clone = read_json(ctx.request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    if let Some(title) = &body.title {
        checks.text("title", title, MAX_TITLE);
    }
    checks.finish()?;
    let path: Vec<Message> = match body
        .message_id
        .as_deref()
        .or(source.current_message_id.as_deref())
    {
        Some(end) => {
            let end = messages::owned(&ctx.db, &source.id, end)?;
            messages::path_to(&ctx.db, &end.id)?
        }
        None => Vec::new(),
    };
    let at = now_ms();
    let copy = Conversation {
        id: new_id(),
        title: body
            .title
            .as_deref()
            .map_or_else(|| source.title.clone(), |t| t.trim().to_owned()),
        title_by_user: body.title.is_some() || source.title_by_user,
        current_message_id: None,
        message_count: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        content_size: 0,
        rag_top_k: None,
        rag_min_score: None,
        pinned: false,
        archived: false,
        deleted_at: None,
        created_at: at,
        updated_at: at,
        ..source.clone()
    };
    let tags = tags_of(&ctx.db, &[&source.id])?
        .remove(&source.id)
        .unwrap_or_default();
    ctx.db.transaction(|tx| {
        insert(tx, &copy)?;
        let mut parent: Option<String> = None;
        for message in &path {
            let id = new_id();
            messages::insert(
                tx,
                &Message {
                    id: id.clone(),
                    conversation_id: copy.id.clone(),
                    parent_id: parent.clone(),
                    ..message.clone()
                },
                Usage::Copied,
            )?;
            parent = Some(id);
        }
        set_tags(tx, &copy.id, user, &tags)
    })?;
    cached::invalidate(&[cached::folders(user)]);
    Ok(Reply::json(
        201,
        load(&ctx.db, &copy.id)?.map(|c| c.view(&tags)),
    ))
}
