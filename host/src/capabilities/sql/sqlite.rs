//! SQLite backend: a WAL-mode file under the data dir.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Column, Row, Sqlite, TypeInfo, ValueRef};

use super::{Backend, Pool, Query, SqliteConfig, classify, wit, with_timeout};

impl Pool<Sqlite> {
    /// Opens `<data dir>/<path or name.db>`, creating it, in WAL mode with
    /// foreign keys enforced.
    pub async fn open(
        name: &str,
        config: &SqliteConfig,
        data_dir: &Path,
    ) -> anyhow::Result<Pool<Sqlite>> {
        let file = data_dir.join(
            config
                .path
                .clone()
                .unwrap_or_else(|| format!("{name}.db").into()),
        );
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Pool {
            pool,
            limits: config.limits(),
            breaker: None,
        })
    }

    /// `BEGIN IMMEDIATE`: take the write lock up front, so two transactions
    /// that read then write wait for each other instead of one failing with
    /// SQLITE_BUSY at its first write.
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>, wit::Error> {
        with_timeout(
            self.limits.statement_timeout,
            self.pool.begin_with("BEGIN IMMEDIATE"),
        )
        .await
    }
}

impl Backend for Sqlite {
    fn bind(
        mut query: Query<'_, Sqlite>,
        params: Vec<wit::Value>,
    ) -> Result<Query<'_, Sqlite>, wit::Error> {
        for param in params {
            query = match param {
                wit::Value::Null => query.bind(None::<i64>),
                wit::Value::Int(v) | wit::Value::Timestamp(v) => query.bind(v),
                wit::Value::Float(v) => query.bind(v),
                wit::Value::Text(v) => query.bind(v),
                wit::Value::Blob(v) => query.bind(v),
                wit::Value::Boolean(v) => query.bind(v),
            };
        }
        Ok(query)
    }

    /// SQLite types values, not columns; the declared column type tells a
    /// boolean or timestamp apart from a plain integer.
    fn decode(row: &SqliteRow) -> Result<wit::Row, wit::Error> {
        let mut values = Vec::with_capacity(row.len());
        for (index, column) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(index).map_err(classify)?;
            if raw.is_null() {
                values.push(wit::Value::Null);
                continue;
            }
            let declared = column.type_info().name().to_ascii_uppercase();
            let storage = raw.type_info().name().to_ascii_uppercase();
            let get_err = |e: sqlx::Error| classify(e);
            let value = match storage.as_str() {
                "INTEGER" => {
                    let v: i64 = row.try_get_unchecked(index).map_err(get_err)?;
                    if declared.starts_with("BOOL") {
                        wit::Value::Boolean(v != 0)
                    } else if declared.starts_with("TIMESTAMP") || declared == "DATETIME" {
                        wit::Value::Timestamp(v)
                    } else {
                        wit::Value::Int(v)
                    }
                }
                "REAL" => wit::Value::Float(row.try_get_unchecked(index).map_err(get_err)?),
                "BLOB" => wit::Value::Blob(row.try_get_unchecked(index).map_err(get_err)?),
                _ => wit::Value::Text(row.try_get_unchecked(index).map_err(get_err)?),
            };
            values.push(value);
        }
        Ok(values)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}
