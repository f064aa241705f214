//! The `sql` capability: parameterized statements and transactions on named
//! databases, SQLite (default, a WAL-mode file under the data dir) or
//! PostgreSQL, through sqlx.
//!
//! Values cross the WIT boundary typed ([`wit::Value`]); each backend module
//! binds them and decodes rows. Database errors are classified so guests can
//! answer 409 for a unique violation instead of 500.

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use serde::Deserialize;
use sqlx::{AssertSqlSafe, Column};
use wasmtime::component::Resource;

use super::CapabilityView;
use super::bindings::lamina::platform::sql as wit;
use crate::breaker::{Breaker, BreakerConfig};

/// Longest statement text a guest may send.
const MAX_STATEMENT_BYTES: usize = 64 * 1024;
/// Most parameters one statement may bind.
const MAX_PARAMS: usize = 1000;

/// `[databases.<name>]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DatabaseConfig {
    /// A SQLite file.
    Sqlite(SqliteConfig),
    /// A PostgreSQL database.
    Postgres(PostgresConfig),
}

/// `type = "sqlite"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file, relative to the data dir (default `<name>.db`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Pool size.
    #[serde(default = "default_sqlite_connections")]
    pub max_connections: u32,
    /// Longest one statement may run.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Most rows one query may return.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

impl SqliteConfig {
    fn limits(&self) -> Limits {
        Limits {
            statement_timeout: self.statement_timeout,
            max_rows: self.max_rows,
        }
    }
}

/// `type = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Schema to work in (created if missing); default: the server's `search_path`.
    #[serde(default)]
    pub schema: Option<String>,
    /// Pool size.
    #[serde(default = "default_postgres_connections")]
    pub max_connections: u32,
    /// Longest one statement may run.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Most rows one query may return.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Longest a statement waits for a pooled connection (a new one is
    /// dialled meanwhile); past it the database reports `unavailable`.
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl PostgresConfig {
    fn limits(&self) -> Limits {
        Limits {
            statement_timeout: self.statement_timeout,
            max_rows: self.max_rows,
        }
    }
}

fn default_sqlite_connections() -> u32 {
    8
}
fn default_postgres_connections() -> u32 {
    16
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_rows() -> usize {
    10_000
}
fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}

impl DatabaseConfig {
    /// The embedded default: `<data dir>/<name>.db`.
    pub fn embedded() -> Self {
        DatabaseConfig::Sqlite(SqliteConfig {
            path: None,
            max_connections: default_sqlite_connections(),
            statement_timeout: default_statement_timeout(),
            max_rows: default_max_rows(),
        })
    }
}

/// A backend's query builder.
type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// What differs between the SQL backends: how guest values bind and how rows
/// decode (`sqlite.rs`, `postgres.rs`). Running statements, limits and error
/// classification are shared ([`query`], [`execute`]).
pub trait Backend: sqlx::Database {
    /// The statement that starts a transaction.
    const BEGIN: &'static str;
    /// Whether a connection is closed, not pooled, after a timeout.
    const CLOSE_AFTER_TIMEOUT: bool;
    /// How a statement on `connection` is stopped once it overruns the
    /// statement timeout: SQLite is interrupted from here; PostgreSQL's
    /// server stops it by itself.
    fn interrupter(
        connection: &mut Self::Connection,
    ) -> impl Future<Output = Result<Interrupter, sqlx::Error>> + Send;
    /// Binds `params` to `$1`, `$2`, ... in order.
    fn bind(query: Query<'_, Self>, params: Vec<wit::Value>)
    -> Result<Query<'_, Self>, wit::Error>;
    /// One row as WIT values.
    fn decode(row: &Self::Row) -> Result<wit::Row, wit::Error>;
    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// Stops the statement running on one connection; see
/// [`Backend::interrupter`].
pub struct Interrupter(Option<Box<dyn Fn() + Send + Sync>>);

impl Interrupter {
    fn new(stop: impl Fn() + Send + Sync + 'static) -> Self {
        Interrupter(Some(Box::new(stop)))
    }

    /// Nothing to do here (the server stops the statement, or there is
    /// no statement to stop).
    fn none() -> Self {
        Interrupter(None)
    }

    fn interrupt(&self) {
        if let Some(stop) = &self.0 {
            stop();
        }
    }
}

/// A connection pool with its limits, and for a remote database its
/// circuit breaker.
pub struct Pool<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    limits: Limits,
    breaker: Option<Breaker>,
}

impl<DB: sqlx::Database> Clone for Pool<DB> {
    fn clone(&self) -> Self {
        Pool {
            pool: self.pool.clone(),
            limits: self.limits,
            breaker: self.breaker.clone(),
        }
    }
}

impl<DB: sqlx::Database> Pool<DB> {
    /// Runs `call` through the breaker: refused at once while it is open,
    /// and an `unavailable` result counts as a failure (a statement timeout
    /// does not: a slow query says nothing about the server being down).
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, wit::Error>>,
    ) -> Result<T, wit::Error> {
        let Some(breaker) = &self.breaker else {
            return call.await;
        };
        if let Err(open) = breaker.admit() {
            return Err(wit::Error::Unavailable(format!(
                "database `{}`: {open}",
                breaker.name()
            )));
        }
        let result = call.await;
        breaker.record(!matches!(result, Err(wit::Error::Unavailable(_))));
        result
    }
}

impl<DB> Pool<DB>
where
    DB: Backend,
    DB::Arguments: sqlx::IntoArguments<DB>,
    DB::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    async fn query(
        &self,
        statement: &str,
        params: Vec<wit::Value>,
    ) -> Result<wit::Rows, wit::Error> {
        self.guarded(async {
            let mut connection = self.pool.acquire().await.map_err(classify)?;
            let interrupter = DB::interrupter(&mut connection).await.map_err(classify)?;
            let result = query(
                &mut *connection,
                statement,
                params,
                self.limits,
                &interrupter,
            )
            .await;
            abandon_after_timeout(connection, &result);
            result
        })
        .await
    }

    async fn execute(&self, statement: &str, params: Vec<wit::Value>) -> Result<u64, wit::Error> {
        self.guarded(async {
            let mut connection = self.pool.acquire().await.map_err(classify)?;
            let interrupter = DB::interrupter(&mut connection).await.map_err(classify)?;
            let result = execute(
                &mut *connection,
                statement,
                params,
                self.limits,
                &interrupter,
            )
            .await;
            abandon_after_timeout(connection, &result);
            result
        })
        .await
    }

    /// Starts a transaction (through the breaker), with what stops its
    /// statements past the timeout.
    async fn begin(&self) -> Result<(sqlx::Transaction<'static, DB>, Interrupter), wit::Error> {
        self.guarded(async {
            let mut tx = with_timeout(
                self.limits.statement_timeout,
                &Interrupter::none(),
                self.pool.begin_with(DB::BEGIN),
            )
            .await?;
            let interrupter = DB::interrupter(&mut tx).await.map_err(classify)?;
            Ok((tx, interrupter))
        })
        .await
    }

    /// Runs `migrator`; returns how many migrations were new.
    async fn migrate(&self, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<usize> {
        let before = self.applied_migrations().await;
        migrator.run(&self.pool).await?;
        Ok(self.applied_migrations().await - before)
    }

    /// Migrations recorded as applied (0 before the first run).
    async fn applied_migrations(&self) -> usize {
        match self
            .query("SELECT count(*) FROM _sqlx_migrations", vec![])
            .await
        {
            Ok(rows) => match rows.rows.first().and_then(|row| row.first()) {
                Some(wit::Value::Int(n)) => *n as usize,
                _ => 0,
            },
            Err(_) => 0,
        }
    }
}

/// After a statement timeout, closes the connection instead of pooling it
/// where the backend says so (PostgreSQL: the statement may still run, if
/// a guest turned the server's timeout off; closing it makes the server
/// stop it and keeps the setting from reaching the next caller).
fn abandon_after_timeout<DB: Backend, T>(
    connection: sqlx::pool::PoolConnection<DB>,
    result: &Result<T, wit::Error>,
) {
    if DB::CLOSE_AFTER_TIMEOUT && matches!(result, Err(wit::Error::Timeout(_))) {
        drop(connection.detach());
    }
}

/// Runs a query on any executor of a backend (pool or transaction).
async fn query<'c, DB, E>(
    executor: E,
    statement: &str,
    params: Vec<wit::Value>,
    limits: Limits,
    interrupter: &Interrupter,
) -> Result<wit::Rows, wit::Error>
where
    DB: Backend,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'c, Database = DB>,
{
    let query = DB::bind(sqlx::query(AssertSqlSafe(statement.to_owned())), params)?;
    let rows = collect_rows(query.fetch(executor), limits.max_rows, DB::decode);
    with_timeout(limits.statement_timeout, interrupter, rows).await?
}

/// Runs a statement on any executor of a backend; returns the rows it changed.
async fn execute<'c, DB, E>(
    executor: E,
    statement: &str,
    params: Vec<wit::Value>,
    limits: Limits,
    interrupter: &Interrupter,
) -> Result<u64, wit::Error>
where
    DB: Backend,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'c, Database = DB>,
{
    let query = DB::bind(sqlx::query(AssertSqlSafe(statement.to_owned())), params)?;
    with_timeout(
        limits.statement_timeout,
        interrupter,
        query.execute(executor),
    )
    .await
    .map(|done| DB::rows_affected(&done))
}

/// One open database (a connection pool).
#[derive(Clone)]
pub enum Database {
    /// SQLite pool.
    Sqlite(Pool<sqlx::Sqlite>),
    /// PostgreSQL pool.
    Postgres(Pool<sqlx::Postgres>),
}

impl Database {
    /// Opens (and for SQLite creates) the database `name`.
    pub async fn open(
        name: &str,
        config: &DatabaseConfig,
        data_dir: &Path,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Self> {
        Ok(match config {
            DatabaseConfig::Sqlite(c) => {
                Database::Sqlite(Pool::<sqlx::Sqlite>::open(name, c, data_dir).await?)
            }
            DatabaseConfig::Postgres(c) => Database::Postgres(
                Pool::<sqlx::Postgres>::open(c, Breaker::new(format!("postgres:{name}"), breaker))
                    .await?,
            ),
        })
    }

    /// The circuit breaker of a remote database (none for SQLite files).
    pub fn breaker(&self) -> Option<&Breaker> {
        match self {
            Database::Sqlite(pool) => pool.breaker.as_ref(),
            Database::Postgres(pool) => pool.breaker.as_ref(),
        }
    }

    /// `sqlite` or `postgres`: the subdirectory of `migrations/` for this database.
    pub fn dialect_name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    fn dialect(&self) -> wit::Dialect {
        match self {
            Database::Sqlite(_) => wit::Dialect::Sqlite,
            Database::Postgres(_) => wit::Dialect::Postgres,
        }
    }

    /// Applies the migrations in `dir/<dialect>/` (sqlx naming:
    /// `<version>_<description>.sql`); returns how many were new.
    pub async fn migrate(&self, dir: &Path) -> anyhow::Result<usize> {
        let dir = dir.join(self.dialect_name());
        if !dir.is_dir() {
            return Ok(0);
        }
        let migrator = sqlx::migrate::Migrator::new(dir.clone())
            .await
            .with_context(|| format!("cannot read migrations in {}", dir.display()))?;
        let applied = match self {
            Database::Sqlite(pool) => pool.migrate(&migrator).await,
            Database::Postgres(pool) => pool.migrate(&migrator).await,
        }
        .with_context(|| format!("migrations in {} failed", dir.display()))?;
        Ok(applied)
    }

    /// What this database is, asked of the backend: the SQLite file's
    /// canonical path, or PostgreSQL's server, database and schema.
    async fn identity(&self) -> anyhow::Result<String> {
        let statement = match self {
            Database::Sqlite(_) => "SELECT file FROM pragma_database_list WHERE name = 'main'",
            Database::Postgres(_) => {
                "SELECT concat_ws('/', inet_server_addr()::text, inet_server_port()::text, \
                 current_database(), current_schema())"
            }
        };
        let rows = self
            .query(statement, vec![])
            .await
            .map_err(|e| anyhow::anyhow!("cannot tell which database this is: {e:?}"))?;
        let Some(wit::Value::Text(found)) = rows
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
        else {
            anyhow::bail!("cannot tell which database this is");
        };
        Ok(match self {
            Database::Sqlite(_) => format!(
                "sqlite:{}",
                std::fs::canonicalize(&found).map_or(found, |p| p.display().to_string())
            ),
            Database::Postgres(_) => format!("postgres:{found}"),
        })
    }

    /// Moves the host table `table` (keyed by `id`) from this database to
    /// `to`, then drops it here: for state that lived in `default` before
    /// the host database existed. Idempotent (rows already at `to` stay);
    /// returns the rows moved, `None` if there was no such table here.
    pub async fn move_table_to(&self, to: &Database, table: &str) -> anyhow::Result<Option<u64>> {
        const PAGE: usize = 500;
        let exists = match self {
            Database::Sqlite(_) => {
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Database::Postgres(_) => {
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let found = self
            .query(exists, vec![wit::Value::Text(table.to_owned())])
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if !matches!(found.rows.first().and_then(|r| r.first()), Some(wit::Value::Int(n)) if *n > 0)
        {
            return Ok(None);
        }
        let mut moved = 0;
        for page in 0.. {
            let rows = self
                .query(
                    &format!(
                        "SELECT * FROM {table} ORDER BY id LIMIT {PAGE} OFFSET {}",
                        page * PAGE
                    ),
                    vec![],
                )
                .await
                .map_err(|e| anyhow::anyhow!("reading {table}: {e:?}"))?;
            let placeholders: Vec<String> =
                (1..=rows.columns.len()).map(|i| format!("${i}")).collect();
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
                rows.columns.join(", "),
                placeholders.join(", ")
            );
            let count = rows.rows.len();
            for row in rows.rows {
                moved += to
                    .execute(&insert, row)
                    .await
                    .map_err(|e| anyhow::anyhow!("writing {table}: {e:?}"))?;
            }
            if count < PAGE {
                break;
            }
        }
        self.execute(&format!("DROP TABLE {table}"), vec![])
            .await
            .map_err(|e| anyhow::anyhow!("dropping the old {table}: {e:?}"))?;
        Ok(Some(moved))
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn execute(
        &self,
        statement: &str,
        params: Vec<wit::Value>,
    ) -> Result<u64, wit::Error> {
        match self {
            Database::Sqlite(pool) => pool.execute(statement, params).await,
            Database::Postgres(pool) => pool.execute(statement, params).await,
        }
    }

    /// Runs a query.
    pub async fn query(
        &self,
        statement: &str,
        params: Vec<wit::Value>,
    ) -> Result<wit::Rows, wit::Error> {
        match self {
            Database::Sqlite(pool) => pool.query(statement, params).await,
            Database::Postgres(pool) => pool.query(statement, params).await,
        }
    }
}

/// A text parameter, for the host's own statements.
pub fn text(s: &str) -> wit::Value {
    wit::Value::Text(s.to_owned())
}

/// The database holding the host's own state (API keys, the SQL queue)
/// unless runtime-config names another: no component may be granted it.
pub const HOST_DATABASE: &str = "host";

/// The open databases by name, and which of them are the host's alone.
#[derive(Clone, Default)]
pub struct Databases {
    by_name: BTreeMap<String, Database>,
    host_only: BTreeSet<String>,
}

impl Databases {
    /// Opens every configured database, plus `default` and the
    /// `host_only` ones if they are not configured, as the embedded SQLite
    /// file `<data dir>/<name>.db`. A host-only database must not be the
    /// same database as any other (asked of the databases themselves): that
    /// would hand its tables to components.
    pub async fn open(
        configs: &BTreeMap<String, DatabaseConfig>,
        host_only: &BTreeSet<String>,
        data_dir: &Path,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Self> {
        let mut all = configs.clone();
        for name in host_only.iter().chain([&"default".to_owned()]) {
            all.entry(name.clone())
                .or_insert_with(DatabaseConfig::embedded);
        }
        let mut by_name = BTreeMap::new();
        for (name, config) in &all {
            let db = Database::open(name, config, data_dir, breaker)
                .await
                .with_context(|| format!("cannot open database `{name}`"))?;
            tracing::info!(database = %name, backend = db.dialect_name(), "database ready");
            by_name.insert(name.clone(), db);
        }
        // Asked of the databases themselves, so no spelling of a path or
        // URL can make two names one database unnoticed.
        let mut identities = BTreeMap::new();
        for (name, db) in &by_name {
            identities.insert(name.as_str(), db.identity().await?);
        }
        for host in host_only {
            if let Some((other, _)) = identities
                .iter()
                .find(|(name, identity)| *name != host && **identity == identities[host.as_str()])
            {
                anyhow::bail!(
                    "databases `{host}` and `{other}` are the same database; `{host}` holds the host's own state and needs one of its own"
                );
            }
        }
        Ok(Databases {
            by_name,
            host_only: host_only.clone(),
        })
    }

    /// The database `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Database> {
        self.by_name.get(name)
    }

    /// Names of the configured databases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Whether `name` holds the host's own state (never granted).
    pub fn is_host_only(&self, name: &str) -> bool {
        self.host_only.contains(name)
    }

    /// Applies each application database's pending migrations from
    /// `dir/<database>/<dialect>/`; returns how many were applied.
    pub async fn migrate(&self, dir: &Path) -> anyhow::Result<usize> {
        let mut applied = 0;
        for (name, db) in &self.by_name {
            if self.is_host_only(name) {
                continue;
            }
            let new = db.migrate(&dir.join(name)).await?;
            if new > 0 {
                tracing::info!(database = %name, applied = new, "migrations applied");
            }
            applied += new;
        }
        Ok(applied)
    }
}

/// A guest's handle on a granted database.
pub struct Connection {
    db: Database,
}

/// A guest's open transaction; `None` once committed or rolled back.
/// Dropping an unfinished one rolls it back (sqlx does on drop).
pub struct Transaction {
    inner: Option<TransactionInner>,
    limits: Limits,
    /// Stops a statement of this transaction past the timeout.
    interrupter: Interrupter,
}

/// Per-database limits on what one statement may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest one statement may run.
    pub statement_timeout: Duration,
    /// Most rows one query may return.
    pub max_rows: usize,
}

impl Transaction {
    /// A statement past its timeout ends the transaction (rolled back): an
    /// interrupted SQLite statement has already rolled it back, and later
    /// statements must not commit one by one outside it.
    fn after<T>(&mut self, result: Result<T, wit::Error>) -> Result<T, wit::Error> {
        if matches!(result, Err(wit::Error::Timeout(_))) {
            self.inner = None;
        }
        result
    }
}

enum TransactionInner {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Rejects statements and parameter lists past the input limits.
fn check_input(statement: &str, params: &[wit::Value]) -> Result<(), wit::Error> {
    if statement.len() > MAX_STATEMENT_BYTES {
        return Err(wit::Error::Invalid(format!(
            "statement is {} bytes; the limit is {MAX_STATEMENT_BYTES}",
            statement.len()
        )));
    }
    if params.len() > MAX_PARAMS {
        return Err(wit::Error::Invalid(format!(
            "{} parameters; the limit is {MAX_PARAMS}",
            params.len()
        )));
    }
    Ok(())
}

/// PostgreSQL's `query_canceled`: what the server answers when it stops a
/// statement at its `statement_timeout`.
const PG_QUERY_CANCELED: &str = "57014";

/// Maps a sqlx error to the WIT error a guest can act on.
/// Whether `error` is SQLite's BUSY or LOCKED (any extended code).
fn sqlite_busy(error: &dyn sqlx::error::DatabaseError) -> bool {
    use sqlx::error::DatabaseError as _;
    error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<u32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

fn classify(error: sqlx::Error) -> wit::Error {
    use sqlx::error::ErrorKind;
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(PG_QUERY_CANCELED) => {
            metrics::counter!("lamina_sql_timeouts_total").increment(1);
            wit::Error::Timeout(db.message().to_string())
        }
        // SQLite's "database is locked" (BUSY or LOCKED, primary code 5 or
        // 6) once its busy timeout has passed: a writer holds the file too
        // long, which is the database being unavailable for now, not a bad
        // statement.
        sqlx::Error::Database(db) if sqlite_busy(db.as_ref()) => {
            tracing::warn!("sqlite busy: {error}");
            metrics::counter!("lamina_sql_unavailable_total").increment(1);
            wit::Error::Unavailable(db.message().to_string())
        }
        sqlx::Error::Database(db) => {
            let message = db.message().to_string();
            match db.kind() {
                ErrorKind::UniqueViolation => wit::Error::UniqueViolation(message),
                ErrorKind::ForeignKeyViolation => wit::Error::ForeignKeyViolation(message),
                ErrorKind::NotNullViolation => wit::Error::NotNullViolation(message),
                ErrorKind::CheckViolation => wit::Error::CheckViolation(message),
                _ => wit::Error::Invalid(message),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!("sql backend unavailable: {error}");
            metrics::counter!("lamina_sql_unavailable_total").increment(1);
            wit::Error::Unavailable(error.to_string())
        }
        _ => wit::Error::Invalid(error.to_string()),
    }
}

/// Runs `future` under the statement timeout; past it, the statement is
/// stopped with `interrupter`.
async fn with_timeout<T>(
    timeout: Duration,
    interrupter: &Interrupter,
    future: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, wit::Error> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(classify),
        Err(_) => {
            interrupter.interrupt();
            metrics::counter!("lamina_sql_timeouts_total").increment(1);
            Err(wit::Error::Timeout(format!(
                "the statement did not finish within {timeout:?} and was stopped"
            )))
        }
    }
}

/// Collects at most `max_rows` rows from a row stream, decoding each.
async fn collect_rows<R: sqlx::Row>(
    mut stream: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    max_rows: usize,
    decode: impl Fn(&R) -> Result<wit::Row, wit::Error>,
) -> Result<Result<wit::Rows, wit::Error>, sqlx::Error> {
    let mut rows = Vec::new();
    let mut names = Vec::new();
    while let Some(row) = stream.try_next().await? {
        if rows.len() == max_rows {
            return Ok(Err(wit::Error::Invalid(format!(
                "the query returned more than {max_rows} rows; add LIMIT/OFFSET"
            ))));
        }
        if rows.is_empty() {
            names = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        match decode(&row) {
            Ok(values) => rows.push(values),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(wit::Rows {
        columns: names,
        rows,
    }))
}

fn finished() -> wit::Error {
    wit::Error::Invalid("the transaction is already committed or rolled back".into())
}

impl wit::Host for CapabilityView<'_> {}

impl wit::HostConnection for CapabilityView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, wit::Error>> {
        if !self.ctx.grants.databases.contains(&name) {
            return Ok(Err(wit::Error::AccessDenied(super::not_granted(
                "database",
                "databases",
                &name,
            ))));
        }
        let Some(db) = self.ctx.shared.sql.get(&name) else {
            return Ok(Err(wit::Error::NoSuchDatabase(format!(
                "no database `{name}` is configured"
            ))));
        };
        Ok(Ok(self.table.push(Connection { db: db.clone() })?))
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<wit::Rows, wit::Error>> {
        let db = self.table.get(&this)?.db.clone();
        if let Err(e) = check_input(&statement, &params) {
            return Ok(Err(e));
        }
        Ok(db.query(&statement, params).await)
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let db = self.table.get(&this)?.db.clone();
        if let Err(e) = check_input(&statement, &params) {
            return Ok(Err(e));
        }
        Ok(db.execute(&statement, params).await)
    }

    async fn begin(
        &mut self,
        this: Resource<Connection>,
    ) -> wasmtime::Result<Result<Resource<Transaction>, wit::Error>> {
        let db = self.table.get(&this)?.db.clone();
        let begun = match &db {
            Database::Sqlite(pool) => pool.begin().await.map(|(tx, interrupter)| Transaction {
                inner: Some(TransactionInner::Sqlite(tx)),
                limits: pool.limits,
                interrupter,
            }),
            Database::Postgres(pool) => pool.begin().await.map(|(tx, interrupter)| Transaction {
                inner: Some(TransactionInner::Postgres(tx)),
                limits: pool.limits,
                interrupter,
            }),
        };
        Ok(match begun {
            Ok(transaction) => Ok(self.table.push(transaction)?),
            Err(e) => Err(e),
        })
    }

    async fn dialect(&mut self, this: Resource<Connection>) -> wasmtime::Result<wit::Dialect> {
        Ok(self.table.get(&this)?.db.dialect())
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wit::HostTransaction for CapabilityView<'_> {
    async fn query(
        &mut self,
        this: Resource<Transaction>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<wit::Rows, wit::Error>> {
        if let Err(e) = check_input(&statement, &params) {
            return Ok(Err(e));
        }
        let tx = self.table.get_mut(&this)?;
        let (limits, interrupter) = (tx.limits, &tx.interrupter);
        let result = match tx.inner.as_mut() {
            None => Err(finished()),
            Some(TransactionInner::Sqlite(tx)) => {
                query(&mut **tx, &statement, params, limits, interrupter).await
            }
            Some(TransactionInner::Postgres(tx)) => {
                query(&mut **tx, &statement, params, limits, interrupter).await
            }
        };
        Ok(tx.after(result))
    }

    async fn execute(
        &mut self,
        this: Resource<Transaction>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        if let Err(e) = check_input(&statement, &params) {
            return Ok(Err(e));
        }
        let tx = self.table.get_mut(&this)?;
        let (limits, interrupter) = (tx.limits, &tx.interrupter);
        let result = match tx.inner.as_mut() {
            None => Err(finished()),
            Some(TransactionInner::Sqlite(tx)) => {
                execute(&mut **tx, &statement, params, limits, interrupter).await
            }
            Some(TransactionInner::Postgres(tx)) => {
                execute(&mut **tx, &statement, params, limits, interrupter).await
            }
        };
        Ok(tx.after(result))
    }

    async fn commit(
        &mut self,
        this: Resource<Transaction>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let tx = self.table.get_mut(&this)?;
        Ok(match tx.inner.take() {
            None => Err(finished()),
            Some(TransactionInner::Sqlite(tx)) => tx.commit().await.map_err(classify),
            Some(TransactionInner::Postgres(tx)) => tx.commit().await.map_err(classify),
        })
    }

    async fn rollback(
        &mut self,
        this: Resource<Transaction>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let tx = self.table.get_mut(&this)?;
        Ok(match tx.inner.take() {
            None => Err(finished()),
            Some(TransactionInner::Sqlite(tx)) => tx.rollback().await.map_err(classify),
            Some(TransactionInner::Postgres(tx)) => tx.rollback().await.map_err(classify),
        })
    }

    async fn drop(&mut self, this: Resource<Transaction>) -> wasmtime::Result<()> {
        // Dropping an unfinished sqlx transaction queues its rollback.
        self.table.delete(this)?;
        Ok(())
    }
}
