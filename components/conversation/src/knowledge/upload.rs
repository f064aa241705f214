//! Uploads: `POST /api/knowledge/{id}/documents` and `POST
//! /api/conversations/{id}/documents` (into the conversation's own
//! collection), `multipart/form-data` with one file in the `file` field.
//! The file's type comes from its bytes ([`sniff`]), its name is
//! neutralised, it is stored as a blob and answered 202 with the document,
//! `pending`, while a queued job processes it.
//!
//! [`sniff`]: super::sniff

use std::convert::Infallible;

use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, read_body};
use lamina_sdk::blobs::Bucket;
use lamina_sdk::sql::Sql;
use sha2::{Digest, Sha256};

use super::documents::{self, Document};
use super::sniff::{file_name, sniff};
use super::{BUCKET, collections, max_file_size, process, purge};
use crate::{Ctx, conversations};

/// Room for the multipart framing around the file.
const FRAMING: usize = 64 << 10;
/// Most documents in one collection.
const MAX_PER_COLLECTION: i64 = 1000;

/// `POST /api/knowledge/{id}/documents`.
pub fn to_collection(ctx: &Ctx) -> Result<Reply, ApiError> {
    let collection = collections::owned(ctx, &ctx.param("id"))?;
    upload(ctx, || Ok(collection.id))
}

/// `POST /api/conversations/{id}/documents`: the conversation's own
/// collection is made once a file has passed the checks.
pub fn to_conversation(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    upload(ctx, || collections::of_conversation(ctx, &conversation))
}

/// `GET /api/conversations/{id}/documents`: its own collection's (an
/// empty page before the first upload made it).
pub fn list_for_conversation(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let collection = collections::own(&ctx.db, &conversation.id)?;
    documents::listed(ctx, collection.as_deref().unwrap_or_default())
}

/// Reads and checks the file, then stores it in the collection `collection`
/// names and queues its processing.
fn upload(
    ctx: &Ctx,
    collection: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Reply, ApiError> {
    let limit = max_file_size();
    let (name, bytes) = file_field(ctx, limit)?;
    if bytes.len() > limit {
        return Err(too_large(limit));
    }
    let format = sniff(&name, &bytes).map_err(|e| ApiError::new(400, "unsupported file", e))?;
    let name = file_name(&name);
    let collection = collection()?;
    let collection = collection.as_str();
    #[derive(serde::Deserialize)]
    struct N {
        n: i64,
    }
    let n: Option<N> = ctx.db.query_one(
        "SELECT COUNT(*) AS n FROM conv_documents WHERE collection_id = $1",
        &[collection.into()],
    )?;
    if n.map_or(0, |n| n.n) >= MAX_PER_COLLECTION {
        return Err(ApiError::new(
            400,
            "collection full",
            format!("a collection holds at most {MAX_PER_COLLECTION} documents"),
        ));
    }
    let id = new_id();
    let key = documents::blob_key(ctx.user(), collection, &id);
    Bucket::open(BUCKET)?.put(&key, &bytes)?;
    let now = now_ms();
    let inserted = ctx.db.execute(
        "INSERT INTO conv_documents (id, collection_id, user_id, name, format, content_type, \
         size, sha256, status, generation, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 1, $9, $9)",
        &[
            id.as_str().into(),
            collection.into(),
            ctx.user().into(),
            name.as_str().into(),
            format.name().into(),
            format.content_type().into(),
            (bytes.len() as i64).into(),
            hex(&Sha256::digest(&bytes)).into(),
            now.into(),
        ],
    );
    let queued = inserted
        .map_err(ApiError::from)
        .and_then(|_| process::request(&id, ctx.user(), 1));
    if let Err(e) = queued {
        let _ = ctx.db.execute(
            "DELETE FROM conv_documents WHERE id = $1",
            &[id.as_str().into()],
        );
        purge::document(ctx.user(), &key, Vec::new());
        return Err(e);
    }
    let document: Document = documents::load(&ctx.db, collection, &id)?;
    Ok(Reply::json(202, document.view()).header(
        "location",
        format!("/api/knowledge/{collection}/documents/{id}"),
    ))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "file too large",
        format!("a document is at most {limit} bytes"),
    )
}

/// The `file` part of a `multipart/form-data` body: its file name and
/// bytes. 413 past `limit` (plus framing), 400 for anything malformed.
fn file_field(ctx: &Ctx, limit: usize) -> Result<(String, Vec<u8>), ApiError> {
    let content_type = ctx.request.header("content-type").unwrap_or_default();
    let boundary = multer::parse_boundary(&content_type).map_err(|_| {
        ApiError::new(
            415,
            "multipart/form-data expected",
            "upload the file as multipart/form-data in a field named `file`",
        )
    })?;
    let body = read_body(ctx.request, limit + FRAMING).map_err(|e| match e.status {
        413 => too_large(limit),
        _ => e,
    })?;
    let stream = futures_util::stream::once(async { Ok::<_, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::new(400, "malformed multipart body", e.to_string());
    pollster::block_on(async {
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            if field.name() != Some("file") {
                continue;
            }
            let name = field.file_name().unwrap_or("document").to_owned();
            let bytes = field.bytes().await.map_err(bad)?;
            return Ok((name, bytes.to_vec()));
        }
        Err(ApiError::new(
            400,
            "no file",
            "the form has no field named `file`",
        ))
    })
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
