//! A bucket as rows of `lamina_blobs` in the host database: on PostgreSQL
//! every host reads what any host wrote.

use crate::capabilities::bindings::lamina::platform::sql::Value;
use crate::capabilities::sql::{Database, text};

use super::{Info, Unavailable};

// Keys compare by bytes on both databases (`COLLATE "C"` on PostgreSQL),
// so listing pages along the primary key.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS lamina_blobs (
    bucket TEXT NOT NULL, key TEXT{collate} NOT NULL, data {blob} NOT NULL,
    size BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (bucket, key))";

#[derive(Clone)]
pub struct Table {
    db: Database,
    bucket: String,
}

fn unavailable(e: impl std::fmt::Debug) -> Unavailable {
    Unavailable(format!("the blob table cannot be reached: {e:?}"))
}

impl Table {
    pub async fn open(db: Database, bucket: &str) -> anyhow::Result<Table> {
        let (blob, collate) = match db.dialect_name() {
            "postgres" => ("BYTEA", " COLLATE \"C\""),
            _ => ("BLOB", ""),
        };
        let schema = SCHEMA.replace("{blob}", blob).replace("{collate}", collate);
        db.execute(&schema, vec![])
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the blob table: {e:?}"))?;
        Ok(Table {
            db,
            bucket: bucket.to_owned(),
        })
    }

    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), Unavailable> {
        let size = data.len() as i64;
        self.db
            .execute(
                "INSERT INTO lamina_blobs (bucket, key, data, size, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (bucket, key) DO UPDATE SET data = excluded.data, size = excluded.size,
                 updated_at = excluded.updated_at",
                vec![
                    text(&self.bucket),
                    text(key),
                    Value::Blob(data),
                    Value::Int(size),
                    Value::Int(chrono::Utc::now().timestamp_millis()),
                ],
            )
            .await
            .map(drop)
            .map_err(unavailable)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let rows = self
            .db
            .query(
                "SELECT data FROM lamina_blobs WHERE bucket = $1 AND key = $2",
                vec![text(&self.bucket), text(key)],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .rows
            .into_iter()
            .next()
            .and_then(|row| match row.into_iter().next() {
                Some(Value::Blob(bytes)) => Some(bytes),
                _ => None,
            }))
    }

    pub async fn delete(&self, key: &str) -> Result<bool, Unavailable> {
        self.db
            .execute(
                "DELETE FROM lamina_blobs WHERE bucket = $1 AND key = $2",
                vec![text(&self.bucket), text(key)],
            )
            .await
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, Unavailable> {
        self.db
            .execute(
                "DELETE FROM lamina_blobs WHERE bucket = $1 AND key >= $3
                 AND substr(key, 1, CAST($2 AS INTEGER)) = $3",
                vec![
                    text(&self.bucket),
                    Value::Int(prefix.chars().count() as i64),
                    text(prefix),
                ],
            )
            .await
            .map_err(unavailable)
    }

    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Info>, Unavailable> {
        // `key >= prefix` starts the scan of the primary key at the prefix.
        let rows = self
            .db
            .query(
                "SELECT key, size, updated_at FROM lamina_blobs
                 WHERE bucket = $1 AND key >= $3 AND key > $4
                 AND substr(key, 1, CAST($2 AS INTEGER)) = $3
                 ORDER BY key LIMIT $5",
                vec![
                    text(&self.bucket),
                    Value::Int(prefix.chars().count() as i64),
                    text(prefix),
                    text(after.unwrap_or("")),
                    Value::Int(limit as i64),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [Value::Text(key), Value::Int(size), Value::Int(at)] => Some(Info {
                    key: key.clone(),
                    size: *size as u64,
                    updated_at_ms: *at,
                }),
                _ => None,
            })
            .collect())
    }
}
