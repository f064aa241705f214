//! Documents in a collection: `/api/knowledge/{id}/documents[/{docId}]`
//! (list, one, delete), `…/content` (the original file), `…/reprocess`
//! (a new processing job that replaces the chunks, never adds to them) and
//! `…/chunks[/{index}]` (what a citation opens). Uploads are [`upload`].
//!
//! [`upload`]: super::upload

use lamina_sdk::api::{ApiError, Reply, now_ms, timestamp};
use lamina_sdk::blobs::Bucket;
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::Sql;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::sniff::Format;
use super::{BUCKET, collections, process, purge};
use crate::Ctx;

/// A row of `conv_documents`.
#[derive(Debug, Deserialize)]
pub struct Document {
    pub id: String,
    pub collection_id: String,
    pub user_id: String,
    pub name: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
    pub status: String,
    pub error: Option<String>,
    pub generation: i64,
    pub pages: Option<i64>,
    pub characters: i64,
    pub chunk_count: i64,
    pub processing_ms: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of [`Document`].
pub const COLUMNS: &str = "id, collection_id, user_id, name, format, size, sha256, status, \
     error, generation, pages, characters, chunk_count, processing_ms, created_at, updated_at";

impl Document {
    pub fn view(&self) -> Json {
        json!({
            "id": self.id,
            "collectionId": self.collection_id,
            "name": self.name,
            "format": self.format,
            "contentType": Format::parse(&self.format).map(Format::content_type),
            "size": self.size,
            "sha256": self.sha256,
            "status": self.status,
            "error": self.error,
            "pages": self.pages,
            "characters": self.characters,
            "chunkCount": self.chunk_count,
            "processingMs": self.processing_ms,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        })
    }

    /// Where the original is kept: `knowledge/{user}/{collection}/{id}`.
    pub fn blob_key(&self) -> String {
        blob_key(&self.user_id, &self.collection_id, &self.id)
    }
}

/// The blob key of a document's original.
pub fn blob_key(user: &str, collection: &str, document: &str) -> String {
    format!("{}{document}", collection_prefix(user, collection))
}

/// The blob key prefix of a collection's originals.
pub fn collection_prefix(user: &str, collection: &str) -> String {
    format!("{}{collection}/", user_prefix(user))
}

/// The blob key prefix of a user's originals.
pub fn user_prefix(user: &str) -> String {
    format!("knowledge/{user}/")
}

/// Document `id` in `collection` (the caller's, checked by the caller).
pub fn load(db: &impl Sql, collection: &str, id: &str) -> Result<Document, ApiError> {
    db.query_one(
        &format!("SELECT {COLUMNS} FROM conv_documents WHERE id = $1 AND collection_id = $2"),
        &[id.into(), collection.into()],
    )?
    .ok_or_else(|| ApiError::not_found(format!("no document {id}")))
}

/// The caller's document from the path's `{id}` and `{docId}`; 404 if
/// either is not theirs.
fn owned(ctx: &Ctx) -> Result<Document, ApiError> {
    let collection = collections::owned(ctx, &ctx.param("id"))?;
    load(&ctx.db, &collection.id, &ctx.param("docId"))
}

/// `GET /api/knowledge/{id}/documents?page=&pageSize=&status=`.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    let collection = collections::owned(ctx, &ctx.param("id"))?;
    listed(ctx, &collection.id)
}

/// A page of `collection`'s documents, newest first.
pub fn listed(ctx: &Ctx, collection: &str) -> Result<Reply, ApiError> {
    let page = PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let status = ctx.query("status");
    if let Some(s) = &status
        && !["pending", "processing", "ready", "failed"].contains(&s.as_str())
    {
        return Err(ApiError::new(
            400,
            "invalid filter",
            "status: one of pending, processing, ready, failed",
        ));
    }
    let mut filter = "collection_id = $1".to_owned();
    let mut params = vec![collection.into()];
    if let Some(status) = status {
        filter.push_str(" AND status = $2");
        params.push(status.into());
    }
    let rows: Vec<Document> = ctx.db.query(
        &format!(
            "SELECT {COLUMNS} FROM conv_documents WHERE {filter} \
             ORDER BY created_at DESC, id LIMIT {} OFFSET {}",
            page.limit(),
            page.offset()
        ),
        &params,
    )?;
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let total: Option<N> = ctx.db.query_one(
        &format!("SELECT COUNT(*) AS n FROM conv_documents WHERE {filter}"),
        &params,
    )?;
    let items: Vec<Json> = rows.iter().map(Document::view).collect();
    Ok(Reply::json(
        200,
        Page::new(items, page, total.map_or(0, |n| n.n) as u64),
    ))
}

/// `GET /api/knowledge/{id}/documents/{docId}`.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, owned(ctx)?.view()))
}

/// `GET /api/knowledge/{id}/documents/{docId}/content`: the original, as
/// an attachment (an HTML upload comes back as text, never as a page).
pub fn content(ctx: &Ctx) -> Result<Reply, ApiError> {
    let document = owned(ctx)?;
    let bytes = Bucket::open(BUCKET)?
        .get(&document.blob_key())?
        .ok_or_else(|| {
            ApiError::not_found(format!("the file of document {} is gone", document.id))
        })?;
    let format = Format::parse(&document.format).unwrap_or(Format::Text);
    Ok(Reply::bytes(200, format.content_type(), bytes)
        .header("content-disposition", disposition(&document.name))
        .header("x-content-type-options", "nosniff"))
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266): an ASCII
/// fallback and the exact name percent-encoded.
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| !matches!(c, '"' | '\\'))
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `DELETE /api/knowledge/{id}/documents/{docId}` → 204: the row and its
/// chunks in one transaction, then its vectors and its file.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let document = owned(ctx)?;
    let chunk_ids = chunk_ids(&ctx.db, &document.id)?;
    ctx.db.execute(
        "DELETE FROM conv_documents WHERE id = $1 AND user_id = $2",
        &[document.id.as_str().into(), ctx.user().into()],
    )?;
    purge::document(ctx.user(), &document.blob_key(), chunk_ids);
    Ok(Reply::no_content())
}

/// The ids of a document's stored chunks (its vectors' ids).
pub fn chunk_ids(db: &impl Sql, document: &str) -> Result<Vec<String>, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<Id> = db.query(
        "SELECT id FROM conv_chunks WHERE document_id = $1",
        &[document.into()],
    )?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// `POST /api/knowledge/{id}/documents/{docId}/reprocess` → 202: back to
/// `pending` under a new generation, and a job for it (if the job cannot
/// be queued, the document is put back as it was: never `pending` with no
/// job coming).
pub fn reprocess(ctx: &Ctx) -> Result<Reply, ApiError> {
    let document = owned(ctx)?;
    let generation = document.generation + 1;
    ctx.db.execute(
        "UPDATE conv_documents SET status = 'pending', error = NULL, generation = $1, \
         updated_at = $2 WHERE id = $3",
        &[
            generation.into(),
            now_ms().into(),
            document.id.as_str().into(),
        ],
    )?;
    if let Err(e) = process::request(&document.id, ctx.user(), generation) {
        ctx.db.execute(
            "UPDATE conv_documents SET status = $1, error = $2, generation = $3 \
             WHERE id = $4 AND generation = $5",
            &[
                document.status.as_str().into(),
                document.error.as_deref().into(),
                document.generation.into(),
                document.id.as_str().into(),
                generation.into(),
            ],
        )?;
        return Err(e);
    }
    let document = load(&ctx.db, &document.collection_id, &document.id)?;
    Ok(Reply::json(202, document.view()))
}

/// A row of `conv_chunks`.
#[derive(Debug, Deserialize)]
pub struct ChunkRow {
    pub id: String,
    pub document_id: String,
    pub collection_id: String,
    pub idx: i64,
    pub content: String,
    pub start_offset: i64,
    pub end_offset: i64,
    pub page: Option<i64>,
    pub heading: Option<String>,
    pub tokens: i64,
}

/// The columns of [`ChunkRow`].
pub const CHUNK_COLUMNS: &str =
    "id, document_id, collection_id, idx, content, start_offset, end_offset, page, heading, tokens";

impl ChunkRow {
    pub fn view(&self) -> Json {
        json!({
            "id": self.id,
            "documentId": self.document_id,
            "index": self.idx,
            "content": self.content,
            "start": self.start_offset,
            "end": self.end_offset,
            "page": self.page,
            "heading": self.heading,
            "tokens": self.tokens,
        })
    }
}

/// `GET /api/knowledge/{id}/documents/{docId}/chunks?page=&pageSize=`.
pub fn chunks(ctx: &Ctx) -> Result<Reply, ApiError> {
    let document = owned(ctx)?;
    let page = PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let rows: Vec<ChunkRow> = ctx.db.query(
        &format!(
            "SELECT {CHUNK_COLUMNS} FROM conv_chunks WHERE document_id = $1 \
             ORDER BY idx LIMIT {} OFFSET {}",
            page.limit(),
            page.offset()
        ),
        &[document.id.as_str().into()],
    )?;
    let items: Vec<Json> = rows.iter().map(ChunkRow::view).collect();
    Ok(Reply::json(
        200,
        Page::new(items, page, document.chunk_count as u64),
    ))
}

/// `GET /api/knowledge/{id}/documents/{docId}/chunks/{index}`.
pub fn chunk(ctx: &Ctx) -> Result<Reply, ApiError> {
    let document = owned(ctx)?;
    let index: i64 = ctx
        .param("index")
        .parse()
        .map_err(|_| ApiError::not_found("no such chunk"))?;
    let row: Option<ChunkRow> = ctx.db.query_one(
        &format!("SELECT {CHUNK_COLUMNS} FROM conv_chunks WHERE document_id = $1 AND idx = $2"),
        &[document.id.as_str().into(), index.into()],
    )?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no chunk {index}")))?;
    Ok(Reply::json(200, row.view()))
}
