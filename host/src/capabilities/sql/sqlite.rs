//! SQLite backend: a WAL-mode file under the data dir.
//!
//! Every connection is fenced in ([`fence`]): a component's statements can
//! reach no file but its own database. A statement past the timeout is
//! stopped inside SQLite ([`Interrupter`]), not just abandoned.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::time::Duration;

use libsqlite3_sys as ffi;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteRow, SqliteSynchronous,
};
use sqlx::{Column, Row, Sqlite, TypeInfo, ValueRef};

use super::{Backend, Interrupter, Pool, Query, SqliteConfig, classify, wit};

/// Pragmas a statement may call with an argument: schema introspection.
/// Any other pragma may be read but not set (`writable_schema`,
/// `journal_mode`, `foreign_keys`, ... are the host's to choose).
const PRAGMAS_WITH_ARGUMENTS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// The authorizer SQLite consults while preparing each statement. Refuses
/// `ATTACH`/`DETACH` (another file read, or created wherever the host may
/// write; `VACUUM` attaches its target too, so `VACUUM INTO` is refused
/// with it) and setting pragmas outside [`PRAGMAS_WITH_ARGUMENTS`].
unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    first: *const c_char,
    second: *const c_char,
    _: *const c_char,
    _: *const c_char,
) -> c_int {
    match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => ffi::SQLITE_DENY,
        ffi::SQLITE_PRAGMA if !second.is_null() => {
            // SAFETY: SQLite passes NUL-terminated strings (or null) that
            // live for the duration of the call.
            let name = (!first.is_null()).then(|| unsafe { CStr::from_ptr(first) });
            let allowed = name
                .and_then(|n| n.to_str().ok())
                .is_some_and(|n| PRAGMAS_WITH_ARGUMENTS.contains(&n.to_ascii_lowercase().as_str()));
            if allowed {
                ffi::SQLITE_OK
            } else {
                ffi::SQLITE_DENY
            }
        }
        _ => ffi::SQLITE_OK,
    }
}

/// Installs the authorizer and allows no attached databases on a new
/// connection (both, so either alone would still hold).
async fn fence(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this open connection's handle, locked for us; the
    // authorizer is a plain function with no user data.
    unsafe {
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
        ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut());
    }
    Ok(())
}

/// What stops a statement running on `connection` (`sqlite3_interrupt`,
/// which SQLite allows from any thread).
async fn interrupter(connection: &mut SqliteConnection) -> Result<Interrupter, sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    // An address, so the closure is Send; the handle outlives every use.
    let db = handle.as_raw_handle().as_ptr() as usize;
    Ok(Interrupter::new(move || {
        // SAFETY: an interrupter is only used while the connection it came
        // from is held (by the pool call or the transaction that made it).
        unsafe { ffi::sqlite3_interrupt(db as *mut ffi::sqlite3) }
    }))
}

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
            .after_connect(|connection, _| Box::pin(fence(connection)))
            .connect_with(options)
            .await?;
        Ok(Pool {
            pool,
            limits: config.limits(),
            breaker: None,
        })
    }
}

impl Backend for Sqlite {
    /// `BEGIN IMMEDIATE`: take the write lock up front, so two transactions
    /// that read then write wait for each other instead of one failing with
    /// SQLITE_BUSY at its first write.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    /// An interrupted SQLite connection is as good as new.
    const CLOSE_AFTER_TIMEOUT: bool = false;

    async fn interrupter(connection: &mut SqliteConnection) -> Result<Interrupter, sqlx::Error> {
        interrupter(connection).await
    }

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
