//! Knowledge collections: `/api/knowledge[/{id}]` (list, create, rename,
//! delete) and a conversation's own collection, made on its first upload.
//! Deleting a collection deletes its documents, their chunks, vectors and
//! files.

use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, read_json, timestamp};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::Sql;
use lamina_sdk::validate::Checks;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::purge;
use crate::Ctx;
use crate::conversations::Conversation;

/// Longest collection name, in characters.
const MAX_NAME: usize = 100;
/// Most collections one user has (conversations' own included).
const MAX_PER_USER: i64 = 1000;
const BODY_LIMIT: usize = 16 << 10;

/// A row of `conv_collections` with its documents counted.
#[derive(Debug, Deserialize)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub conversation_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub documents: i64,
    #[serde(default)]
    pub ready: i64,
}

/// Selects [`Collection`]s (`c`) with their counts.
const SELECT: &str = "SELECT c.id, c.name, c.conversation_id, c.created_at, c.updated_at, \
     (SELECT COUNT(*) FROM conv_documents d WHERE d.collection_id = c.id) AS documents, \
     (SELECT COUNT(*) FROM conv_documents d WHERE d.collection_id = c.id AND d.status = 'ready') AS ready \
     FROM conv_collections c";

impl Collection {
    pub fn view(&self) -> Json {
        json!({
            "id": self.id,
            "name": self.name,
            "conversationId": self.conversation_id,
            "documentCount": self.documents,
            "readyCount": self.ready,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        })
    }
}

/// The caller's collection `id`; 404 otherwise (another user's too).
pub fn owned(ctx: &Ctx, id: &str) -> Result<Collection, ApiError> {
    ctx.db
        .query_one(
            &format!("{SELECT} WHERE c.id = $1 AND c.user_id = $2"),
            &[id.into(), ctx.user().into()],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no collection {id}")))
}

/// `GET /api/knowledge/{id}`.
pub fn owned_view(ctx: &Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, owned(ctx, &ctx.param("id"))?.view()))
}

/// The id of conversation `conversation`'s own collection, if it has one.
pub fn own(db: &impl Sql, conversation: &str) -> Result<Option<String>, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let found: Option<Id> = db.query_one(
        "SELECT id FROM conv_collections WHERE conversation_id = $1",
        &[conversation.into()],
    )?;
    Ok(found.map(|f| f.id))
}

/// `GET /api/knowledge?page=&pageSize=`: the caller's collections, newest
/// first (conversations' own ones too, marked by `conversationId`).
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    let page = PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let rows: Vec<Collection> = ctx.db.query(
        &format!(
            "{SELECT} WHERE c.user_id = $1 ORDER BY c.created_at DESC, c.id LIMIT $2 OFFSET $3"
        ),
        &[ctx.user().into(), page.limit().into(), page.offset().into()],
    )?;
    let total = count(&ctx.db, ctx.user())?;
    let items: Vec<Json> = rows.iter().map(Collection::view).collect();
    Ok(Reply::json(200, Page::new(items, page, total as u64)))
}

fn count(db: &impl Sql, user: &str) -> Result<i64, ApiError> {
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let n: Option<N> = db.query_one(
        "SELECT COUNT(*) AS n FROM conv_collections WHERE user_id = $1",
        &[user.into()],
    )?;
    Ok(n.map_or(0, |n| n.n))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

fn checked_name(body: &Named) -> Result<String, ApiError> {
    let mut checks = Checks::default();
    let name = body.name.trim();
    if name.is_empty() {
        checks.fail("name", "required");
    }
    checks.text("name", name, MAX_NAME);
    checks.finish()?;
    Ok(name.to_owned())
}

/// `POST /api/knowledge` {name} → 201 with the collection.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let body: Named = read_json(ctx.request, BODY_LIMIT)?;
    let name = checked_name(&body)?;
    let id = insert(&ctx.db, ctx.user(), &name, None)?;
    Ok(Reply::json(201, owned(ctx, &id)?.view()))
}

/// Stores a new collection; 400 past [`MAX_PER_USER`].
fn insert(
    db: &impl Sql,
    user: &str,
    name: &str,
    conversation: Option<&str>,
) -> Result<String, ApiError> {
    if count(db, user)? >= MAX_PER_USER {
        return Err(ApiError::new(
            400,
            "too many collections",
            format!("an account holds at most {MAX_PER_USER} collections; delete some first"),
        ));
    }
    let id = new_id();
    let now = now_ms();
    db.execute(
        "INSERT INTO conv_collections (id, user_id, name, conversation_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            id.as_str().into(),
            user.into(),
            name.into(),
            conversation.into(),
            now.into(),
        ],
    )?;
    Ok(id)
}

/// `PATCH /api/knowledge/{id}` {name}.
pub fn rename(ctx: &Ctx) -> Result<Reply, ApiError> {
    let collection = owned(ctx, &ctx.param("id"))?;
    let body: Named = read_json(ctx.request, BODY_LIMIT)?;
    let name = checked_name(&body)?;
    ctx.db.execute(
        "UPDATE conv_collections SET name = $1, updated_at = $2 WHERE id = $3 AND user_id = $4",
        &[
            name.as_str().into(),
            now_ms().into(),
            collection.id.as_str().into(),
            ctx.user().into(),
        ],
    )?;
    Ok(Reply::json(200, owned(ctx, &collection.id)?.view()))
}

/// `DELETE /api/knowledge/{id}` → 204: the collection, its documents and
/// chunks in one transaction, then its vectors and files.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let collection = owned(ctx, &ctx.param("id"))?;
    ctx.db.execute(
        "DELETE FROM conv_collections WHERE id = $1 AND user_id = $2",
        &[collection.id.as_str().into(), ctx.user().into()],
    )?;
    purge::collection(ctx.user(), &collection.id);
    Ok(Reply::no_content())
}

/// The id of `conversation`'s own collection, made (named after the
/// conversation) if it has none yet.
pub fn of_conversation(ctx: &Ctx, conversation: &Conversation) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let find = || -> Result<Option<Id>, ApiError> {
        Ok(ctx.db.query_one(
            "SELECT id FROM conv_collections WHERE conversation_id = $1 AND user_id = $2",
            &[conversation.id.as_str().into(), ctx.user().into()],
        )?)
    };
    if let Some(found) = find()? {
        return Ok(found.id);
    }
    let name: String = match conversation.title.trim() {
        "" => "Conversation".into(),
        title => title.chars().take(MAX_NAME).collect(),
    };
    match insert(&ctx.db, ctx.user(), &name, Some(&conversation.id)) {
        Ok(id) => Ok(id),
        // Two first uploads at once: the other one made it.
        Err(e) if e.status == 409 => find()?.map(|f| f.id).ok_or(e),
        Err(e) => Err(e),
    }
}
