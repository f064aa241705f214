//! PostgreSQL backend.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{PgArgumentBuffer, PgConnectOptions, PgPoolOptions, PgRow, PgTypeInfo};
use sqlx::{AssertSqlSafe, Column, Postgres, Row, TypeInfo, ValueRef};

use super::{Limits, PostgresConfig, classify, collect_rows, wit, with_timeout};

/// Query builder with PostgreSQL arguments.
type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A PostgreSQL connection pool with its limits.
#[derive(Clone)]
pub struct Pool {
    pool: sqlx::PgPool,
    pub(super) limits: Limits,
}

impl Pool {
    /// Connects to `config.url`; with a `schema`, creates it if missing and
    /// makes it the `search_path` of every connection.
    pub async fn open(config: &PostgresConfig) -> anyhow::Result<Pool> {
        let mut options: PgConnectOptions = config.url.parse()?;
        if let Some(schema) = &config.schema {
            anyhow::ensure!(
                !schema.is_empty()
                    && schema
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "schema names use letters, digits and '_'"
            );
            let setup = sqlx::PgPool::connect_with(options.clone()).await?;
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&setup)
            .await?;
            setup.close().await;
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Pool {
            pool,
            limits: config.limits(),
        })
    }

    pub(super) async fn query(
        &self,
        statement: &str,
        params: Vec<wit::Value>,
    ) -> Result<wit::Rows, wit::Error> {
        query(&self.pool, statement, params, self.limits).await
    }

    pub(super) async fn execute(
        &self,
        statement: &str,
        params: Vec<wit::Value>,
    ) -> Result<u64, wit::Error> {
        execute(&self.pool, statement, params, self.limits).await
    }

    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, wit::Error> {
        with_timeout(self.limits.statement_timeout, self.pool.begin()).await
    }

    pub(super) async fn migrate(
        &self,
        migrator: &sqlx::migrate::Migrator,
    ) -> anyhow::Result<usize> {
        let before = applied(&self.pool).await;
        migrator.run(&self.pool).await?;
        Ok(applied(&self.pool).await - before)
    }
}

async fn applied(pool: &sqlx::PgPool) -> usize {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .map_or(0, |n| n as usize)
}

/// Runs a query on any PostgreSQL executor (pool or transaction).
pub(super) async fn query<'c, E>(
    executor: E,
    statement: &str,
    params: Vec<wit::Value>,
    limits: Limits,
) -> Result<wit::Rows, wit::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let query = bind(sqlx::query(AssertSqlSafe(statement.to_owned())), params)?;
    let rows = collect_rows(query.fetch(executor), limits.max_rows, columns, decode);
    with_timeout(limits.statement_timeout, rows).await?
}

/// Runs a statement on any PostgreSQL executor; returns the rows it changed.
pub(super) async fn execute<'c, E>(
    executor: E,
    statement: &str,
    params: Vec<wit::Value>,
    limits: Limits,
) -> Result<u64, wit::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let query = bind(sqlx::query(AssertSqlSafe(statement.to_owned())), params)?;
    with_timeout(limits.statement_timeout, query.execute(executor))
        .await
        .map(|done| done.rows_affected())
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

fn bind(mut query: Query<'_>, params: Vec<wit::Value>) -> Result<Query<'_>, wit::Error> {
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

fn columns(row: &PgRow) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_owned()).collect()
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
            "FLOAT4" => wit::Value::Float(row.try_get::<f32, _>(index).map_err(classify)?.into()),
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
