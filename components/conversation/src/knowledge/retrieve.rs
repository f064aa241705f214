//! Hybrid retrieval: the question embedded and matched against the
//! caller's vectors in the host's index (cosine), the question's words
//! matched by full text (SQLite FTS5 bm25, PostgreSQL `ts_rank`: 5× cheaper
//! than `ts_rank_cd` over 100 000 matches, and proximity means little to an
//! any-of-the-words query), both
//! ranked lists fused by reciprocal rank (k = 60), the top k kept. Vector
//! or keyword matching alone are modes of `POST /api/knowledge/search`.
//! Every query names the caller as the owner and only their collections,
//! and a hit is shown only if its chunk row still exists.

use std::collections::HashMap;

use lamina_sdk::api::{ApiError, Reply, read_json};
use lamina_sdk::fulltext::words_except;
use lamina_sdk::inference;
use lamina_sdk::sql::{Dialect, Sql, Value};
use lamina_sdk::validate::Checks;
use lamina_sdk::vectors::{Hit, Index};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::documents::CHUNK_COLUMNS;
use super::{INDEX, collections, embedding_model};
use crate::Ctx;
use crate::folders::placeholders;

/// Chunks a conversation's answer gets by default.
pub const DEFAULT_TOP_K: u32 = 4;
/// Most chunks one retrieval returns.
pub const MAX_TOP_K: u32 = 20;
/// Candidates each ranking contributes to the fusion.
const CANDIDATES: u32 = 40;
/// Reciprocal rank fusion's constant (Cormack et al.).
const RRF_K: f64 = 60.0;
/// Longest query, in characters.
const MAX_QUERY: usize = 2000;
/// Most collections one retrieval searches (the vector index's limit).
pub const MAX_COLLECTIONS: usize = 32;
/// Characters of a chunk shown as a source's snippet.
const SNIPPET: usize = 300;
/// Words too common to rank by (the keyword query is any-of-the-words).
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has",
    "have", "how", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "say", "tell",
    "that", "the", "this", "to", "was", "what", "when", "where", "which", "who", "why", "with",
    "you", "your",
];

/// How chunks are matched.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Hybrid,
    Vector,
    Keyword,
}

/// One retrieved chunk, numbered as the prompt cites it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub n: usize,
    pub document_id: String,
    pub document_name: String,
    pub collection_id: String,
    pub chunk_id: String,
    pub index: i64,
    pub start: i64,
    pub end: i64,
    pub page: Option<i64>,
    pub heading: Option<String>,
    /// The fused (reciprocal rank) score.
    pub score: f64,
    /// Cosine similarity, when the vector search found it.
    pub similarity: Option<f32>,
    pub snippet: String,
    #[serde(skip)]
    pub content: String,
}

/// The `top_k` chunks of the caller's `collections` (checked as theirs
/// before) for `query`.
pub fn retrieve(
    ctx: &Ctx,
    collections: &[String],
    query: &str,
    top_k: u32,
    min_score: Option<f32>,
    mode: Mode,
) -> Result<Vec<Source>, ApiError> {
    if collections.is_empty() || query.trim().is_empty() {
        return Ok(Vec::new());
    }
    let (db, user) = (&ctx.db, ctx.user());
    let mut fused: HashMap<String, (f64, Option<f32>)> = HashMap::new();
    if mode != Mode::Keyword {
        match similar(user, collections, query, min_score) {
            Ok(hits) => {
                for (rank, hit) in hits.into_iter().enumerate() {
                    let entry = fused.entry(hit.id).or_default();
                    entry.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
                    entry.1 = Some(hit.score);
                }
            }
            // Hybrid still has the words: an answer with keyword sources
            // beats no answer while the embedding model is away.
            Err(e) if mode == Mode::Hybrid => {
                eprintln!("retrieval by keywords only: {}", e.detail);
            }
            Err(e) => return Err(e),
        }
    }
    if mode != Mode::Vector {
        for (rank, id) in keyword(db, db.dialect(), user, collections, query)?
            .into_iter()
            .enumerate()
        {
            fused.entry(id).or_default().0 += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut ranked: Vec<(String, (f64, Option<f32>))> = fused.into_iter().collect();
    ranked.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    sources(db, user, ranked, top_k as usize)
}

/// The vector index's candidates for `query`, best first.
fn similar(
    user: &str,
    collections: &[String],
    query: &str,
    min_score: Option<f32>,
) -> Result<Vec<Hit>, ApiError> {
    let model = embedding_model();
    let vector = inference::embed(&model, &[query.to_owned()])
        .map_err(|e| {
            ApiError::new(
                503,
                "embedding model unavailable",
                format!("cannot embed the query with {model}: {}", e.detail()),
            )
        })?
        .pop()
        .unwrap_or_default();
    Ok(Index::open(INDEX)?.query(user, collections, &vector, CANDIDATES, min_score)?)
}

/// Chunk ids matching any of the query's words, best first.
fn keyword(
    db: &impl Sql,
    dialect: Dialect,
    user: &str,
    collections: &[String],
    query: &str,
) -> Result<Vec<String>, ApiError> {
    let words = words_except(query, STOP_WORDS);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let mut params: Vec<Value> = vec![user.into()];
    params.extend(collections.iter().map(|c| Value::from(c.as_str())));
    let within = placeholders(1, collections.len());
    let q = params.len() + 1;
    let sql = match dialect {
        Dialect::Postgres => {
            params.push(words.join(" | ").into());
            // The query in FROM: parsed once. Inline, a generic plan (a
            // prepared statement's sixth run on) parses it once per row:
            // 100 000 matches took 760 ms instead of 160.
            format!(
                "SELECT c.id FROM conv_chunks c, to_tsquery('simple', ${q}) AS query \
                 WHERE c.user_id = $1 AND c.collection_id IN ({within}) AND c.search @@ query \
                 ORDER BY ts_rank(c.search, query) DESC, c.id LIMIT {CANDIDATES}"
            )
        }
        _ => {
            let any: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
            params.push(any.join(" OR ").into());
            format!(
                // CROSS JOIN: the full-text match drives the loop (as a
                // plain join SQLite may run the match once per chunk row).
                "SELECT c.id FROM conv_chunks_fts f CROSS JOIN conv_chunks c ON c.num = f.rowid \
                 WHERE conv_chunks_fts MATCH ${q} AND c.user_id = $1 AND c.collection_id IN ({within}) \
                 ORDER BY bm25(conv_chunks_fts), c.id LIMIT {CANDIDATES}"
            )
        }
    };
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<Id> = db.query(&sql, &params)?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The first `top_k` of the ranked ids that have a chunk row, with their
/// documents, numbered from 1. Ids without a row (vectors of a document
/// still processing, or not yet purged) are dropped before the cut, so they
/// never take a source's place.
fn sources(
    db: &impl Sql,
    user: &str,
    ranked: Vec<(String, (f64, Option<f32>))>,
    top_k: usize,
) -> Result<Vec<Source>, ApiError> {
    if ranked.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(Deserialize)]
    struct Row {
        #[serde(flatten)]
        chunk: super::documents::ChunkRow,
        name: String,
    }
    let columns = CHUNK_COLUMNS
        .split(", ")
        .map(|c| format!("c.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut params: Vec<Value> = vec![user.into()];
    params.extend(ranked.iter().map(|(id, _)| Value::from(id.as_str())));
    let rows: Vec<Row> = db.query(
        &format!(
            "SELECT {columns}, d.name FROM conv_chunks c JOIN conv_documents d ON d.id = c.document_id \
             WHERE c.user_id = $1 AND c.id IN ({})",
            placeholders(1, ranked.len())
        ),
        &params,
    )?;
    let mut rows: HashMap<String, Row> =
        rows.into_iter().map(|r| (r.chunk.id.clone(), r)).collect();
    Ok(ranked
        .into_iter()
        .filter_map(|(id, (score, similarity))| {
            let row = rows.remove(&id)?;
            Some(Source {
                n: 0,
                document_id: row.chunk.document_id,
                document_name: row.name,
                collection_id: row.chunk.collection_id,
                chunk_id: row.chunk.id,
                index: row.chunk.idx,
                start: row.chunk.start_offset,
                end: row.chunk.end_offset,
                page: row.chunk.page,
                heading: row.chunk.heading,
                score,
                similarity,
                snippet: row.chunk.content.chars().take(SNIPPET).collect(),
                content: row.chunk.content,
            })
        })
        .take(top_k)
        .enumerate()
        .map(|(i, mut source)| {
            source.n = i + 1;
            source
        })
        .collect())
}

/// Checks a top-k and a minimum score given by a client.
pub fn check_settings(checks: &mut Checks, top_k: Option<u32>, min_score: Option<f32>) {
    if let Some(k) = top_k
        && !(1..=MAX_TOP_K).contains(&k)
    {
        checks.fail("topK", format!("1 to {MAX_TOP_K}"));
    }
    if let Some(s) = min_score
        && !(-1.0..=1.0).contains(&s)
    {
        checks.fail("minScore", "-1 to 1 (cosine similarity)");
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Search {
    query: String,
    collection_ids: Vec<String>,
    top_k: Option<u32>,
    min_score: Option<f32>,
    mode: Option<Mode>,
}

/// `POST /api/knowledge/search` {query, collectionIds, topK?, minScore?,
/// mode? (hybrid, vector, keyword)} → {items: sources}.
pub fn search(ctx: &Ctx) -> Result<Reply, ApiError> {
    let body: Search = read_json(ctx.request, 64 << 10)?;
    let mut checks = Checks::default();
    if body.query.trim().is_empty() {
        checks.fail("query", "required");
    }
    checks.long_text("query", &body.query, MAX_QUERY);
    if body.collection_ids.is_empty() || body.collection_ids.len() > MAX_COLLECTIONS {
        checks.fail(
            "collectionIds",
            format!("1 to {MAX_COLLECTIONS} collection ids"),
        );
    }
    check_settings(&mut checks, body.top_k, body.min_score);
    checks.finish()?;
    for id in &body.collection_ids {
        collections::owned(ctx, id)?;
    }
    let items = retrieve(
        ctx,
        &body.collection_ids,
        &body.query,
        body.top_k.unwrap_or(DEFAULT_TOP_K),
        body.min_score,
        body.mode.unwrap_or(Mode::Hybrid),
    )?;
    Ok(Reply::json(200, json!({ "items": items })))
}

/// The text put before the question: the sources, numbered, and how to
/// cite them.
pub fn context(sources: &[Source]) -> String {
    let mut out = String::from(
        "Answer the question using the numbered sources below when they are relevant, and cite \
         each source you use by its number in brackets, like [1]. If the sources do not hold the \
         answer, say so.\n",
    );
    for s in sources {
        let page = s.page.map(|p| format!(", page {p}")).unwrap_or_default();
        out.push_str(&format!(
            "\n[{}] {}{page}:\n{}\n",
            s.n, s.document_name, s.content
        ));
    }
    out
}
