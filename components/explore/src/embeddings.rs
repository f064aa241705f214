//! The vectors semantic search compares: each entry's title and
//! description embedded by the `embedding_model` variable's model
//! (`all-minilm:l6-v2`), stored with the entry as little-endian f32s
//! together with the model's name.
//!
//! A change to the title or description clears the vector and computes it
//! again at once; one that could not be computed then (the embedder not
//! installed, say; the seed's entries too) is computed by the next
//! semantic searches, [`BATCH`] at a time, as is every vector of another
//! model after the variable changes.

use lamina_sdk::inference;
use lamina_sdk::sql::{Sql, Value};

/// Most entries one search embeds.
const BATCH: usize = 32;

/// The embedding model's name.
pub fn model() -> String {
    lamina_sdk::variables::get("embedding_model").unwrap_or_else(|_| "all-minilm:l6-v2".into())
}

/// What an entry's vector is made from.
pub fn text(title: &str, description: &str) -> String {
    format!("{title}. {description}")
}

/// One query's vector.
pub fn embed_query(query: &str) -> Result<Vec<f32>, inference::Error> {
    let mut vectors = inference::embed(&model(), &[query.to_owned()])?;
    Ok(vectors.pop().unwrap_or_default())
}

/// Computes and stores `name`'s vector now; on failure it stays cleared
/// for the next search to compute (logged).
pub fn refresh(db: &impl Sql, name: &str, title: &str, description: &str) {
    let model = model();
    let stored = inference::embed(&model, &[text(title, description)])
        .map_err(|e| e.detail().to_owned())
        .and_then(|mut v| {
            let vector = v.pop().unwrap_or_default();
            store(db, name, title, description, &vector, &model).map_err(|e| format!("{e:?}"))
        });
    if let Err(e) = stored {
        eprintln!("the description of `{name}` is not embedded yet: {e}");
    }
}

/// Stores `name`'s vector, made from `title` and `description`: only if
/// those are still the entry's (a concurrent change is not overwritten
/// by the vector of the text it replaced).
fn store(
    db: &impl Sql,
    name: &str,
    title: &str,
    description: &str,
    vector: &[f32],
    model: &str,
) -> Result<(), lamina_sdk::sql::Error> {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    db.execute(
        "UPDATE explore_models SET embedding = $1, embedding_model = $2 \
         WHERE name = $3 AND title = $4 AND description = $5",
        &[
            bytes.into(),
            model.into(),
            name.into(),
            title.into(),
            description.into(),
        ],
    )
    .map(drop)
}

/// Every entry's vector, computing (and storing) at most [`BATCH`] of
/// those missing: a search never does more than one engine call of such
/// work, and entries still without a vector are left out of its ranking
/// until a later search has computed them.
pub fn all(db: &impl Sql) -> Result<Vec<(String, Vec<f32>)>, Failure> {
    let model = model();
    let rows = db.query_rows(
        "SELECT name, title, description, embedding, embedding_model FROM explore_models",
        &[],
    )?;
    let mut vectors = Vec::with_capacity(rows.rows.len());
    let mut missing = Vec::new();
    for row in rows.rows {
        let mut row = row.into_iter();
        let (Some(Value::Text(name)), Some(Value::Text(title)), Some(Value::Text(description))) =
            (row.next(), row.next(), row.next())
        else {
            continue;
        };
        match (row.next(), row.next()) {
            (Some(Value::Blob(bytes)), Some(Value::Text(by))) if by == model => {
                vectors.push((name, floats(&bytes)));
            }
            _ => missing.push((name, title, description)),
        }
    }
    missing.truncate(BATCH);
    if !missing.is_empty() {
        let texts: Vec<String> = missing.iter().map(|(_, t, d)| text(t, d)).collect();
        let computed = inference::embed(&model, &texts)?;
        for ((name, title, description), vector) in missing.into_iter().zip(computed) {
            store(db, &name, &title, &description, &vector, &model)?;
            vectors.push((name, vector));
        }
    }
    Ok(vectors)
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Cosine similarity of two normalized vectors (their dot product).
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Why vectors could not be had.
#[derive(Debug)]
pub enum Failure {
    Engine(inference::Error),
    Sql(lamina_sdk::sql::Error),
}

impl From<inference::Error> for Failure {
    fn from(e: inference::Error) -> Self {
        Failure::Engine(e)
    }
}

impl From<lamina_sdk::sql::Error> for Failure {
    fn from(e: lamina_sdk::sql::Error) -> Self {
        Failure::Sql(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = [0.25f32, -1.5, 3.0e-7];
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(floats(&bytes), v);
        assert!((similarity(&v, &v) - 2.3125).abs() < 1e-6);
    }
}
