//! PostgreSQL backend.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPoolOptions, PgQueryResult, PgRow, PgTypeInfo,
};
use sqlx::{AssertSqlSafe, Column, Postgres, Row, TypeInfo, ValueRef};

use super::Breaker;
use super::{Backend, Interrupter, Pool, PostgresConfig, Query, classify, wit};

/// How long past `statement_timeout` the host waits for the server to stop
/// a statement before it gives up on the connection itself.
const CLIENT_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(2);

impl Pool<Postgres> {
    /// Connects to `config.url`; with a `schema`, creates it if missing and
    /// makes it the `search_path` of every connection. The server stops a
    /// statement past `statement_timeout` itself (its `statement_timeout`
    /// setting on every connection); should a guest have turned that off,
    /// the host gives up at its own timer and closes the connection, which
    /// the server notices (`client_connection_check_interval`).
    pub async fn open(config: &PostgresConfig, breaker: Breaker) -> anyhow::Result<Pool<Postgres>> {
        let mut options: PgConnectOptions = config.url.parse()?;
        let server_timeout = config.statement_timeout.as_millis().max(1).to_string();
        let mut settings = vec![("statement_timeout", server_timeout)];
        let setup = sqlx::PgPool::connect_with(options.clone()).await?;
        // PostgreSQL 14+ checks, during a long statement, whether the
        // client is still there: one the host gave up on (and closed) stops.
        let (version,): (String,) = sqlx::query_as("SHOW server_version_num")
            .fetch_one(&setup)
            .await?;
        if version.parse::<u32>().is_ok_and(|v| v >= 140_000) {
            settings.push(("client_connection_check_interval", "1000".to_owned()));
        }
        if let Some(schema) = &config.schema {
            anyhow::ensure!(
                !schema.is_empty()
                    && schema
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "schema names use letters, digits and '_'"
            );
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&setup)
            .await?;
            settings.push(("search_path", schema.clone()));
        }
        setup.close().await;
        options = options.options(settings);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        let mut limits = config.limits();
        limits.statement_timeout += CLIENT_BACKSTOP;
        Ok(Pool {
            pool,
            limits,
            breaker: Some(breaker),
        })
    }
}

/// A NULL whose type the server infers from the statement (OID 0), so it
/// fits any column, where a typed NULL would have to match it.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

impl Backend for Postgres {
    const BEGIN: &'static str = "BEGIN";
    const CLOSE_AFTER_TIMEOUT: bool = true;

    /// The server stops statements itself (`statement_timeout`).
    async fn interrupter(_: &mut sqlx::PgConnection) -> Result<Interrupter, sqlx::Error> {
        Ok(Interrupter::none())
    }

    fn bind(
        mut query: Query<'_, Postgres>,
        params: Vec<wit::Value>,
    ) -> Result<Query<'_, Postgres>, wit::Error> {
        for param in params {
            query = match param {
                wit::Value::Null => query.bind(UntypedNull),
                wit::Value::Int(v) => query.bind(v),
                wit::Value::Float(v) => query.bind(v),
                wit::Value::Text(v) => query.bind(v),
                wit::Value::Blob(v) => query.bind(v),
                wit::Value::Boolean(v) => query.bind(v),
                wit::Value::Timestamp(micros) => query.bind(
                    DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| {
                        wit::Error::Invalid(format!("timestamp {micros} is out of range"))
                    })?,
                ),
            };
        }
        Ok(query)
    }

    fn decode(row: &PgRow) -> Result<wit::Row, wit::Error> {
        let mut values = Vec::with_capacity(row.len());
        for (index, column) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(index).map_err(classify)?;
            if raw.is_null() {
                values.push(wit::Value::Null);
                continue;
            }
            let bytes = || {
                raw.as_bytes()
                    .map_err(|e| wit::Error::Invalid(e.to_string()))
            };
            let value = match column.type_info().name() {
                "BOOL" => wit::Value::Boolean(row.try_get(index).map_err(classify)?),
                "INT2" => wit::Value::Int(row.try_get::<i16, _>(index).map_err(classify)?.into()),
                "INT4" => wit::Value::Int(row.try_get::<i32, _>(index).map_err(classify)?.into()),
                "INT8" => wit::Value::Int(row.try_get(index).map_err(classify)?),
                "FLOAT4" => {
                    wit::Value::Float(row.try_get::<f32, _>(index).map_err(classify)?.into())
                }
                "FLOAT8" => wit::Value::Float(row.try_get(index).map_err(classify)?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
                    wit::Value::Text(row.try_get(index).map_err(classify)?)
                }
                "BYTEA" => wit::Value::Blob(row.try_get(index).map_err(classify)?),
                "TIMESTAMPTZ" => wit::Value::Timestamp(
                    row.try_get::<DateTime<Utc>, _>(index)
                        .map_err(classify)?
                        .timestamp_micros(),
                ),
                "TIMESTAMP" => wit::Value::Timestamp(
                    row.try_get::<NaiveDateTime, _>(index)
                        .map_err(classify)?
                        .and_utc()
                        .timestamp_micros(),
                ),
                "UUID" => wit::Value::Text(
                    uuid::Uuid::from_slice(bytes()?)
                        .map_err(|e| wit::Error::Invalid(e.to_string()))?
                        .to_string(),
                ),
                // JSONB's binary form is a version byte followed by the text.
                "JSONB" => wit::Value::Text(
                    String::from_utf8_lossy(bytes()?.get(1..).unwrap_or_default()).into_owned(),
                ),
                "JSON" => wit::Value::Text(String::from_utf8_lossy(bytes()?).into_owned()),
                "VOID" => wit::Value::Null,
                other => {
                    return Err(wit::Error::Invalid(format!(
                        "column `{}` has type {other}, which has no WIT value; cast it (::text, ::float8, ::bigint)",
                        column.name()
                    )));
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
