//! What a conversation answers from: `GET|PUT /api/conversations/{id}/
//! knowledge` {collectionIds, topK?, minScore?}: the caller's collections
//! it attaches (its own collection, made by uploading into the
//! conversation, always counts), how many chunks an answer gets and the
//! least similarity a vector hit needs. [`sources_for`] runs the retrieval
//! a chat turn uses.

use lamina_sdk::api::{ApiError, Reply, read_json};
use lamina_sdk::sql::Sql;
use lamina_sdk::validate::Checks;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::collections;
use super::retrieve::{self, DEFAULT_TOP_K, MAX_COLLECTIONS, Mode, Source, check_settings};
use crate::conversations::{self, Conversation};
use crate::{Ctx, cached};

/// The collections `conversation` answers from, with whether each is its
/// own; with `ready_only`, those that have a ready document.
fn collections_of(
    db: &impl Sql,
    conversation: &str,
    ready_only: bool,
) -> Result<Vec<(String, bool)>, ApiError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        own: i64,
    }
    let rows: Vec<Row> = db.query(
        &format!(
            "SELECT c.id, CASE WHEN c.conversation_id IS NULL THEN 0 ELSE 1 END AS own \
             FROM conv_collections c WHERE (c.conversation_id = $1 \
                OR c.id IN (SELECT collection_id FROM conv_conversation_collections WHERE conversation_id = $1)) {} \
             ORDER BY c.created_at, c.id",
            if ready_only {
                "AND EXISTS (SELECT 1 FROM conv_documents d WHERE d.collection_id = c.id AND d.status = 'ready')"
            } else {
                ""
            }
        ),
        &[conversation.into()],
    )?;
    Ok(rows.into_iter().map(|r| (r.id, r.own == 1)).collect())
}

fn view(ctx: &Ctx, conversation: &Conversation) -> Result<Json, ApiError> {
    let all = collections_of(&ctx.db, &conversation.id, false)?;
    let own = all.iter().find(|(_, own)| *own).map(|(id, _)| id.clone());
    let attached: Vec<String> = all
        .into_iter()
        .filter(|(_, own)| !own)
        .map(|(id, _)| id)
        .collect();
    Ok(json!({
        "collectionIds": attached,
        "ownCollectionId": own,
        "topK": conversation.rag_top_k.unwrap_or(DEFAULT_TOP_K.into()),
        "minScore": conversation.rag_min_score,
    }))
}

/// `GET /api/conversations/{id}/knowledge`.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    Ok(Reply::json(200, view(ctx, &conversation)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Put {
    collection_ids: Vec<String>,
    top_k: Option<u32>,
    min_score: Option<f32>,
}

/// `PUT /api/conversations/{id}/knowledge` {collectionIds, topK?,
/// minScore?}: replaces the attachments and settings.
pub fn put(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let body: Put = read_json(ctx.request, 64 << 10)?;
    let mut checks = Checks::default();
    if body.collection_ids.len() >= MAX_COLLECTIONS {
        checks.fail(
            "collectionIds",
            format!("at most {} collections", MAX_COLLECTIONS - 1),
        );
    }
    check_settings(&mut checks, body.top_k, body.min_score);
    checks.finish()?;
    let mut ids = body.collection_ids.clone();
    ids.sort();
    ids.dedup();
    for id in &ids {
        let collection = collections::owned(ctx, id)?;
        if collection.conversation_id.is_some() {
            return Err(ApiError::new(
                400,
                "not attachable",
                format!("collection {id} is a conversation's own"),
            ));
        }
    }
    ctx.db.transaction(|tx| {
        tx.execute(
            "DELETE FROM conv_conversation_collections WHERE conversation_id = $1",
            &[conversation.id.as_str().into()],
        )?;
        for id in &ids {
            tx.execute(
                "INSERT INTO conv_conversation_collections (conversation_id, collection_id) VALUES ($1, $2)",
                &[conversation.id.as_str().into(), id.as_str().into()],
            )?;
        }
        tx.execute(
            "UPDATE conv_conversations SET rag_top_k = $1, rag_min_score = $2 WHERE id = $3",
            &[
                body.top_k.map(i64::from).into(),
                body.min_score.map(f64::from).into(),
                conversation.id.as_str().into(),
            ],
        )?;
        Ok::<_, ApiError>(())
    })?;
    cached::conversation(&conversation.id);
    let conversation = conversations::owned(ctx, &conversation.id)?;
    Ok(Reply::json(200, view(ctx, &conversation)?))
}

/// The sources for `question` in `conversation`'s collections (none if it
/// has no ready document).
pub fn sources_for(
    ctx: &Ctx,
    conversation: &Conversation,
    question: &str,
) -> Result<Vec<Source>, ApiError> {
    let collections: Vec<String> = collections_of(&ctx.db, &conversation.id, true)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if collections.is_empty() {
        return Ok(Vec::new());
    }
    retrieve::retrieve(
        ctx,
        &collections,
        question,
        conversation.rag_top_k.map_or(DEFAULT_TOP_K, |k| {
            k.clamp(1, retrieve::MAX_TOP_K.into()) as u32
        }),
        conversation.rag_min_score.map(|s| s as f32),
        Mode::Hybrid,
    )
}
