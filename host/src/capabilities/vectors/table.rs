//! Vectors as rows of `lamina_vectors` in the host database, searched by a
//! scan in the host: keyset pages of 1000 rows (the database's row cap
//! stays far away) per collection, each row scored as it arrives, a
//! bounded top-k kept.

use crate::capabilities::bindings::lamina::platform::sql::Value;
use crate::capabilities::sql::{Database, text};

use super::similarity::{self, TopK};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lamina_vectors (
        idx TEXT NOT NULL, owner TEXT NOT NULL, id TEXT NOT NULL, collection TEXT NOT NULL,
        data {blob} NOT NULL, metadata TEXT,
        PRIMARY KEY (idx, owner, id))",
    // The scan's order: each page is a range of this index, never a sort.
    "CREATE INDEX IF NOT EXISTS lamina_vectors_scan ON lamina_vectors (idx, owner, collection, id{collate})",
    // Each index's dimension, fixed once by the first vector stored.
    "CREATE TABLE IF NOT EXISTS lamina_vector_indexes (idx TEXT PRIMARY KEY, dim BIGINT NOT NULL)",
];

/// Rows read per page of a scan.
const PAGE: i64 = 1000;
/// Rows written per statement.
const BATCH: usize = 100;

/// What the table reports when it fails.
#[derive(Debug)]
pub enum TableError {
    Unavailable(String),
    Invalid(String),
}

fn unavailable(e: impl std::fmt::Debug) -> TableError {
    TableError::Unavailable(format!("the vector table cannot be reached: {e:?}"))
}

/// A vector to store, already normalised.
pub struct Row {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Option<String>,
}

/// A search result.
pub struct Found {
    pub id: String,
    pub collection: String,
    pub score: f32,
    pub metadata: Option<String>,
}

#[derive(Clone)]
pub struct Table {
    db: Database,
    index: String,
    /// `COLLATE "C"` on PostgreSQL, so ids page in the same order as on SQLite.
    collate: &'static str,
}

impl Table {
    pub async fn open(db: Database, index: &str) -> anyhow::Result<Table> {
        let (blob, collate) = match db.dialect_name() {
            "postgres" => ("BYTEA", " COLLATE \"C\""),
            _ => ("BLOB", ""),
        };
        for statement in SCHEMA {
            let statement = statement
                .replace("{blob}", blob)
                .replace("{collate}", collate);
            db.execute(&statement, vec![])
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the vector table: {e:?}"))?;
        }
        Ok(Table {
            db,
            index: index.to_owned(),
            collate,
        })
    }

    /// The index's dimension, if a vector was ever stored.
    pub async fn dimension(&self) -> Result<Option<usize>, TableError> {
        let rows = self
            .db
            .query(
                "SELECT dim FROM lamina_vector_indexes WHERE idx = $1",
                vec![text(&self.index)],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows.rows.first().and_then(|row| match row.first() {
            Some(Value::Int(dim)) => Some(*dim as usize),
            _ => None,
        }))
    }

    /// Fixes the index's dimension at `dim` unless it already has one
    /// (the first writer wins, whatever races it); returns the index's.
    pub async fn claim_dimension(&self, dim: usize) -> Result<usize, TableError> {
        self.db
            .execute(
                "INSERT INTO lamina_vector_indexes (idx, dim) VALUES ($1, $2) ON CONFLICT (idx) DO NOTHING",
                vec![text(&self.index), Value::Int(dim as i64)],
            )
            .await
            .map_err(unavailable)?;
        Ok(self.dimension().await?.unwrap_or(dim))
    }

    pub async fn upsert(
        &self,
        owner: &str,
        collection: &str,
        rows: Vec<Row>,
    ) -> Result<(), TableError> {
        const COLUMNS: usize = 6;
        for batch in rows.chunks(BATCH) {
            let mut values = Vec::with_capacity(batch.len() * COLUMNS);
            let mut tuples = Vec::with_capacity(batch.len());
            for (i, row) in batch.iter().enumerate() {
                let marks: Vec<String> = (1..=COLUMNS)
                    .map(|c| format!("${}", i * COLUMNS + c))
                    .collect();
                tuples.push(format!("({})", marks.join(", ")));
                values.extend([
                    text(&self.index),
                    text(&row.id),
                    text(owner),
                    text(collection),
                    Value::Blob(similarity::encode(&row.vector)),
                    row.metadata.as_deref().map_or(Value::Null, text),
                ]);
            }
            let statement = format!(
                "INSERT INTO lamina_vectors (idx, id, owner, collection, data, metadata)
                 VALUES {} ON CONFLICT (idx, owner, id) DO UPDATE SET
                 collection = excluded.collection, data = excluded.data, metadata = excluded.metadata",
                tuples.join(", ")
            );
            self.db
                .execute(&statement, values)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub async fn delete(&self, owner: &str, ids: &[String]) -> Result<u64, TableError> {
        let mut deleted = 0;
        for batch in ids.chunks(BATCH) {
            let marks: Vec<String> = (0..batch.len()).map(|i| format!("${}", i + 3)).collect();
            let mut values = vec![text(&self.index), text(owner)];
            values.extend(batch.iter().map(|id| text(id)));
            deleted += self
                .db
                .execute(
                    &format!(
                        "DELETE FROM lamina_vectors WHERE idx = $1 AND owner = $2 AND id IN ({})",
                        marks.join(", ")
                    ),
                    values,
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(deleted)
    }

    pub async fn delete_owner(
        &self,
        owner: &str,
        collection: Option<&str>,
    ) -> Result<u64, TableError> {
        let (statement, mut values) = (
            "DELETE FROM lamina_vectors WHERE idx = $1 AND owner = $2",
            vec![text(&self.index), text(owner)],
        );
        let statement = match collection {
            Some(c) => {
                values.push(text(c));
                format!("{statement} AND collection = $3")
            }
            None => statement.to_owned(),
        };
        self.db
            .execute(&statement, values)
            .await
            .map_err(unavailable)
    }

    pub async fn count(&self, owner: &str, collection: &str) -> Result<u64, TableError> {
        let rows = self
            .db
            .query(
                "SELECT count(*) FROM lamina_vectors WHERE idx = $1 AND owner = $2 AND collection = $3",
                vec![text(&self.index), text(owner), text(collection)],
            )
            .await
            .map_err(unavailable)?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        })
    }

    /// The `k` vectors of `owner` in `collections` nearest `query` (a unit
    /// vector), scanning at most `max_scan` rows: each collection in id
    /// order, a page at a time, each page a range of the scan index.
    pub async fn search(
        &self,
        owner: &str,
        collections: &[String],
        query: &[f32],
        k: usize,
        min_score: f32,
        max_scan: usize,
    ) -> Result<(Vec<Found>, usize), TableError> {
        let c = self.collate;
        let statement = format!(
            "SELECT id, data, metadata FROM lamina_vectors
             WHERE idx = $1 AND owner = $2 AND collection = $3 AND id{c} > $4
             ORDER BY id{c} LIMIT $5"
        );
        let mut top = TopK::new(k, min_score);
        let mut scanned = 0;
        let mut names: Vec<&String> = collections.iter().collect();
        names.sort();
        names.dedup();
        for collection in names {
            let mut after = String::new();
            loop {
                let values = vec![
                    text(&self.index),
                    text(owner),
                    text(collection),
                    text(&after),
                    Value::Int(PAGE),
                ];
                let page = self
                    .db
                    .query(&statement, values)
                    .await
                    .map_err(unavailable)?;
                let count = page.rows.len();
                scanned += count;
                if scanned > max_scan {
                    return Err(TableError::Invalid(format!(
                        "the search would scan more than {max_scan} vectors (the index's `max_scan`)"
                    )));
                }
                for row in page.rows {
                    let mut row = row.into_iter();
                    let (Some(Value::Text(id)), Some(Value::Blob(data)), metadata) =
                        (row.next(), row.next(), row.next())
                    else {
                        continue;
                    };
                    // A vector of another dimension (none are stored) scores nothing.
                    let score = similarity::dot_bytes(&data, query);
                    if let Some(score) = score.filter(|s| top.admits(*s)) {
                        let metadata = match metadata {
                            Some(Value::Text(m)) => Some(m),
                            _ => None,
                        };
                        let found = Found {
                            id: id.clone(),
                            collection: collection.clone(),
                            score,
                            metadata,
                        };
                        top.offer(score, found);
                    }
                    after = id;
                }
                if count < PAGE as usize {
                    break;
                }
            }
        }
        Ok((
            top.into_sorted()
                .into_iter()
                .map(|(_, found)| found)
                .collect(),
            scanned,
        ))
    }
}
