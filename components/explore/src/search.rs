//! `GET /api/explore/search?q=&mode=text|semantic|hybrid&page=&pageSize=`.
//!
//! - `text`: full-text over name, title, description, family and tags,
//!   ranked (SQLite FTS5 bm25 / PostgreSQL `ts_rank`, the name and title
//!   weighted highest); every word must appear, the last as a prefix.
//! - `semantic`: cosine similarity of the query's embedding and each
//!   entry's ([`crate::embeddings`]), above [`MIN_SIMILARITY`].
//! - `hybrid` (the default): both, fused by reciprocal rank (`1/(60+rank)`
//!   summed), so an entry either finds ranks high and one both find
//!   higher. Without an embedding model it is `text` alone, and the
//!   answer's `modes` says so.
//!
//! The ranked names are cached per mode and query; the cards and the
//! store's live view are merged in on every request.

use std::collections::HashMap;

use lamina_sdk::api::{ApiError, Reply};
use lamina_sdk::fulltext::{fts5_query, tsquery, words};
use lamina_sdk::page::Page;
use lamina_sdk::sql::{Database, Dialect, Sql, Value};
use serde::{Deserialize, Serialize};

use crate::catalog::{cards, page_request};
use crate::entry::search_tags;
use crate::live::{Live, LiveCard};
use crate::{Ctx, cached, embeddings};

/// Longest query, in characters.
const MAX_QUERY: usize = 200;
/// Most results one mode ranks.
const MAX_HITS: usize = 100;
/// Semantic matches below this similarity are noise, not results.
pub const MIN_SIMILARITY: f32 = 0.1;
/// Reciprocal-rank fusion's constant (the usual 60).
const RRF_K: f64 = 60.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Semantic,
    Hybrid,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Text => "text",
            Mode::Semantic => "semantic",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// The ranked result of one search (what is cached).
#[derive(Debug, Serialize, Deserialize)]
struct Ranked {
    /// Names, best first, with their scores.
    hits: Vec<(String, f64)>,
    /// The modes that contributed.
    modes: Vec<String>,
}

/// A result: the card and the store's view, with its score.
#[derive(Serialize)]
struct Hit {
    #[serde(flatten)]
    item: LiveCard,
    score: f64,
}

/// Rewrites `name`'s search words after it or its tags changed: its
/// `search_tags` column (PostgreSQL's generated `tsvector` follows) and,
/// on SQLite, its FTS5 row.
pub fn reindex(tx: &impl Sql, dialect: Dialect, name: &str) -> Result<(), ApiError> {
    let tags = search_tags(tx, name)?;
    tx.execute(
        "UPDATE explore_models SET search_tags = $1 WHERE name = $2",
        &[tags.as_str().into(), name.into()],
    )?;
    if dialect == Dialect::Sqlite {
        tx.execute(
            "DELETE FROM explore_models_fts WHERE model = $1",
            &[name.into()],
        )?;
        tx.execute(
            "INSERT INTO explore_models_fts (model, name, title, description, family, tags) \
             SELECT name, replace(replace(replace(name, ':', ' '), '-', ' '), '.', ' '), \
             title, description, coalesce(family, ''), search_tags \
             FROM explore_models WHERE name = $1",
            &[name.into()],
        )?;
    }
    Ok(())
}

/// Drops `name`'s FTS5 row (SQLite; PostgreSQL's index goes with the row).
pub fn unindex(tx: &impl Sql, dialect: Dialect, name: &str) -> Result<(), ApiError> {
    if dialect == Dialect::Sqlite {
        tx.execute(
            "DELETE FROM explore_models_fts WHERE model = $1",
            &[name.into()],
        )?;
    }
    Ok(())
}

/// `GET /api/explore/search`.
pub fn search(ctx: &Ctx) -> Result<Reply, ApiError> {
    let q = ctx.query("q").unwrap_or_default();
    if q.chars().count() > MAX_QUERY {
        return Err(ApiError::new(
            400,
            "query too long",
            format!("q: at most {MAX_QUERY} characters"),
        ));
    }
    let mode = match ctx.query("mode").as_deref() {
        None | Some("hybrid") => Mode::Hybrid,
        Some("text") => Mode::Text,
        Some("semantic") => Mode::Semantic,
        Some(_) => {
            return Err(ApiError::new(
                400,
                "invalid mode",
                "mode: text, semantic or hybrid",
            ));
        }
    };
    let words = words(&q);
    if words.is_empty() {
        return Err(ApiError::new(
            400,
            "empty query",
            "q: at least one word of letters or digits",
        ));
    }
    let request = page_request(ctx)?;
    // What the ranking depends on: the words for text, the whole (case-
    // folded, spaces collapsed) text for the embedding.
    let normalized = match mode {
        Mode::Text => words.join(" "),
        _ => q
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    };
    let load = || rank(&ctx.db, mode, &words, &normalized);
    let ranked = match cached::search(mode.name(), &normalized) {
        Some(key) => cached::get_or_load(&key, load)?,
        None => load()?,
    };
    let cards: HashMap<String, _> = cards(&ctx.db)?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let live = Live::read()?;
    let mut cards = cards;
    // Entries deleted since the ranking was cached drop out.
    let hits: Vec<Hit> = ranked
        .hits
        .into_iter()
        .filter_map(|(name, score)| {
            let card = cards.remove(&name)?;
            Some(Hit {
                item: live.card(card),
                score,
            })
        })
        .collect();
    let total = hits.len() as u64;
    let items: Vec<Hit> = hits
        .into_iter()
        .skip(request.offset() as usize)
        .take(request.page_size as usize)
        .collect();
    let mut body = serde_json::to_value(Page::new(items, request, total))
        .map_err(|e| ApiError::new(500, "internal error", e.to_string()))?;
    body["mode"] = mode.name().into();
    body["modes"] = ranked.modes.into();
    Ok(Reply::json(200, body))
}

fn rank(db: &Database, mode: Mode, words: &[String], query: &str) -> Result<Ranked, ApiError> {
    match mode {
        Mode::Text => Ok(Ranked {
            hits: text(db, words)?,
            modes: vec!["text".into()],
        }),
        Mode::Semantic => Ok(Ranked {
            hits: semantic(db, query)?,
            modes: vec!["semantic".into()],
        }),
        Mode::Hybrid => {
            let text = text(db, words)?;
            match semantic(db, query) {
                Ok(semantic) => Ok(Ranked {
                    hits: fuse(&[&text, &semantic]),
                    modes: vec!["text".into(), "semantic".into()],
                }),
                // No embedder: text alone, said so.
                Err(e) if e.status == 503 => Ok(Ranked {
                    hits: text,
                    modes: vec!["text".into()],
                }),
                Err(e) => Err(e),
            }
        }
    }
}

#[derive(Deserialize)]
struct TextHit {
    name: String,
    rank: f64,
}

/// Full-text matches, best first, with higher-is-better scores.
fn text(db: &Database, words: &[String]) -> Result<Vec<(String, f64)>, ApiError> {
    let hits: Vec<TextHit> = if db.dialect() == Dialect::Sqlite {
        // bm25: lower is better; weights per column (model, name, title,
        // description, family, tags).
        db.query(
            "SELECT model AS name, -bm25(explore_models_fts, 0.0, 10.0, 8.0, 1.0, 3.0, 4.0) AS rank \
             FROM explore_models_fts WHERE explore_models_fts MATCH $1 \
             ORDER BY rank DESC, model LIMIT $2",
            &[fts5_query(words).into(), (MAX_HITS as i64).into()],
        )?
    } else {
        db.query(
            "SELECT name, ts_rank(search, query)::float8 AS rank \
             FROM explore_models, to_tsquery('simple', $1) query WHERE search @@ query \
             ORDER BY rank DESC, name LIMIT $2",
            &[Value::from(tsquery(words)), (MAX_HITS as i64).into()],
        )?
    };
    Ok(hits.into_iter().map(|h| (h.name, h.rank)).collect())
}

/// Entries by similarity to `query`, best first; 503 without the
/// embedding model.
fn semantic(db: &impl Sql, query: &str) -> Result<Vec<(String, f64)>, ApiError> {
    let engine = |e: lamina_sdk::inference::Error| {
        let status = if e.status() == 404 { 503 } else { e.status() };
        ApiError::new(
            status,
            "semantic search unavailable",
            format!(
                "the embedding model `{}`: {}",
                embeddings::model(),
                e.detail()
            ),
        )
    };
    let vectors = embeddings::all(db).map_err(|f| match f {
        embeddings::Failure::Engine(e) => engine(e),
        embeddings::Failure::Sql(e) => e.into(),
    })?;
    let target = embeddings::embed_query(query).map_err(engine)?;
    let mut scored: Vec<(String, f64)> = vectors
        .into_iter()
        .map(|(name, v)| {
            let s = embeddings::similarity(&target, &v);
            (name, f64::from(s))
        })
        .filter(|(_, s)| *s >= f64::from(MIN_SIMILARITY))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scored.truncate(MAX_HITS);
    Ok(scored)
}

/// Reciprocal-rank fusion of ranked lists, best first.
fn fuse(lists: &[&[(String, f64)]]) -> Vec<(String, f64)> {
    let mut scores: HashMap<&str, f64> = HashMap::new();
    for list in lists {
        for (rank, (name, _)) in list.iter().enumerate() {
            *scores.entry(name).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(String, f64)> = scores
        .into_iter()
        .map(|(name, score)| (name.to_owned(), score))
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    fused.truncate(MAX_HITS);
    fused
}

#[cfg(test)]
mod tests {
    use super::fuse;

    #[test]
    fn fusion_rewards_agreement() {
        let text = [("a".to_owned(), 9.0), ("b".to_owned(), 5.0)];
        let semantic = [("b".to_owned(), 0.9), ("c".to_owned(), 0.8)];
        let fused = fuse(&[&text, &semantic]);
        let names: Vec<&str> = fused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
    }
}
