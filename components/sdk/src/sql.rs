//! SQL on a granted database: typed parameters in, rows out as serde
//! structs (each row becomes a JSON object keyed by column name, then
//! deserialized), transactions that roll back unless committed. Statements
//! run through the [`Sql`] trait, on a [`Database`] or a [`Transaction`].

use serde::de::DeserializeOwned;

use crate::platform::sql::{self, Connection, Rows};

pub use sql::{Dialect, Error, Value};

/// A handle on one granted database.
pub struct Database {
    connection: Connection,
}

/// An open transaction; see [`Database::transaction`].
pub struct Transaction {
    inner: sql::Transaction,
}

impl Database {
    /// Opens a database granted by the component's `databases = [...]`.
    pub fn open(name: &str) -> Result<Database, Error> {
        Ok(Database {
            connection: Connection::open(name)?,
        })
    }

    /// The backend's dialect.
    pub fn dialect(&self) -> Dialect {
        self.connection.dialect()
    }

    /// Runs `work` in a transaction: committed if it returns `Ok`, rolled
    /// back if it returns `Err` (or panics: the host rolls back a dropped
    /// transaction).
    pub fn transaction<R, E: From<Error>>(
        &self,
        work: impl FnOnce(&Transaction) -> Result<R, E>,
    ) -> Result<R, E> {
        let tx = Transaction {
            inner: self.connection.begin()?,
        };
        match work(&tx) {
            Ok(value) => {
                tx.inner.commit()?;
                Ok(value)
            }
            Err(error) => {
                let _ = tx.inner.rollback();
                Err(error)
            }
        }
    }
}

/// What runs statements: a [`Database`] or a [`Transaction`], so one
/// helper serves both.
pub trait Sql {
    /// Runs a query and returns the raw rows.
    fn query_rows(&self, statement: &str, params: &[Value]) -> Result<Rows, Error>;

    /// Runs a statement; returns the number of rows changed.
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, Error>;

    /// Runs a query; each row is deserialized into `T` by column name.
    fn query<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: &[Value],
    ) -> Result<Vec<T>, Error> {
        rows_into(self.query_rows(statement, params)?)
    }

    /// The first row of a query, if any.
    fn query_one<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: &[Value],
    ) -> Result<Option<T>, Error> {
        Ok(self.query(statement, params)?.into_iter().next())
    }
}

impl Sql for Database {
    fn query_rows(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.connection.query(statement, params)
    }

    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, Error> {
        self.connection.execute(statement, params)
    }
}

impl Sql for Transaction {
    fn query_rows(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.inner.query(statement, params)
    }

    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, Error> {
        self.inner.execute(statement, params)
    }
}

/// `text` for a `LIKE … ESCAPE '\'` pattern, its `%`, `_` and `\` taken
/// literally.
pub fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Deserializes every row into `T` (column name → field).
pub fn rows_into<T: DeserializeOwned>(rows: Rows) -> Result<Vec<T>, Error> {
    rows.rows
        .into_iter()
        .map(|row| {
            let object: serde_json::Map<String, serde_json::Value> = rows
                .columns
                .iter()
                .cloned()
                .zip(row.into_iter().map(to_json))
                .collect();
            serde_json::from_value(serde_json::Value::Object(object))
                .map_err(|e| Error::Invalid(format!("row does not match the expected shape: {e}")))
        })
        .collect()
}

fn to_json(value: Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int(v) | Value::Timestamp(v) => v.into(),
        Value::Float(v) => v.into(),
        Value::Text(v) => v.into(),
        Value::Blob(v) => v.into(),
        Value::Boolean(v) => v.into(),
    }
}

impl Error {
    /// The HTTP status a service should answer with: 409 for a unique
    /// violation, 400 for other constraint violations, 503 when the
    /// database is unreachable or a statement ran past its timeout, 500
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Error::UniqueViolation(_) => 409,
            Error::ForeignKeyViolation(_)
            | Error::NotNullViolation(_)
            | Error::CheckViolation(_) => 400,
            Error::Unavailable(_) | Error::Timeout(_) => 503,
            _ => 500,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(super::like_escape(r"50%_a\b"), r"50\%\_a\\b");
    }
}
