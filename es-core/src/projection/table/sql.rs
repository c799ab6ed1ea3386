//! The portable SQL a table read model speaks: statements with `$1`, `$2` ... placeholders,
//! values, rows, and the [`Sql`] executor both databases implement.

use std::fmt;

/// Which database a statement runs on, for the few statements that differ (column types such
/// as `BLOB` / `BYTEA` in `CREATE TABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite (the store's file, or a private in-memory database for temporal queries).
    Sqlite,
    /// PostgreSQL (the store's schema).
    Postgres,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
        })
    }
}

/// One SQL value, as a parameter or in a result row.
///
/// Integers are 64-bit: declare integer columns `BIGINT` (both databases accept it; a
/// PostgreSQL `INTEGER` or `SMALLINT` column also takes a value that fits). Text is UTF-8.
/// Floating point numbers are `DOUBLE PRECISION` on PostgreSQL; prefer integers (money in
/// minor units).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes (`BLOB` on SQLite, `BYTEA` on PostgreSQL).
    Blob(Vec<u8>),
}

impl Value {
    /// The value's kind, for error messages.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Integer(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Integer(i64::from(value))
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Integer(i64::from(value))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Value::Blob(value)
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Blob(value.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// A Rust type a result column converts to with [`Row::get`].
pub trait FromValue: Sized {
    /// Converts `value`, or names the kind expected.
    ///
    /// # Errors
    /// The name of the kind this type needs, when `value` is another kind.
    fn from_value(value: &Value) -> Result<Self, &'static str>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Integer(integer) => Ok(*integer),
            _ => Err("integer"),
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Integer(integer) => u64::try_from(*integer).map_err(|_| "non-negative integer"),
            _ => Err("non-negative integer"),
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Integer(integer) => {
                u32::try_from(*integer).map_err(|_| "32-bit unsigned integer")
            }
            _ => Err("32-bit unsigned integer"),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Real(real) => Ok(*real),
            #[allow(clippy::cast_precision_loss)] // SQLite returns whole reals as integers
            Value::Integer(integer) => Ok(*integer as f64),
            _ => Err("real"),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            _ => Err("text"),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            _ => Err("blob"),
        }
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One result row: its columns' values in `SELECT` order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// A row of these values.
    #[must_use]
    pub fn new(values: Vec<Value>) -> Self {
        Row { values }
    }

    /// Column `index` (from 0) as `T`.
    ///
    /// # Errors
    /// [`SqlError::Column`] when there is no such column or its value is another kind (a
    /// `NULL` read as anything but an `Option`).
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, SqlError> {
        let value = self.values.get(index).ok_or(SqlError::Column {
            index,
            expected: "a column",
            found: "no such column",
        })?;
        T::from_value(value).map_err(|expected| SqlError::Column {
            index,
            expected,
            found: value.kind(),
        })
    }

    /// The values, in column order.
    #[must_use]
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// How many columns the row has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no columns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A statement failed, or a result did not have the expected shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The database refused or failed the statement (syntax, constraint, type, I/O).
    #[error("{dialect} statement `{statement}` failed")]
    Statement {
        /// The database it ran on.
        dialect: Dialect,
        /// The statement as written (with `$n` placeholders).
        statement: String,
        /// The database's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A result column is missing or holds another kind of value than asked for.
    #[error("result column {index}: expected {expected}, found {found}")]
    Column {
        /// The column's index (from 0).
        index: usize,
        /// What was asked for.
        expected: &'static str,
        /// What the column holds.
        found: &'static str,
    },
    /// A result column has a PostgreSQL type with no [`Value`] (cast it, for example
    /// `SUM(x)::BIGINT`: PostgreSQL sums `BIGINT`s as `NUMERIC`).
    #[error("result column `{column}` has type `{type_name}`, which has no portable value; cast it (for example to BIGINT or TEXT)")]
    UnsupportedType {
        /// The column's name.
        column: String,
        /// Its PostgreSQL type.
        type_name: String,
    },
}

/// Runs statements inside the transaction of one batch of a table read model (or of a read).
///
/// Statements use PostgreSQL's numbered placeholders `$1`, `$2` ..., on both databases (on
/// SQLite they become `?1`, `?2` ...; a `$` inside a quoted string or identifier is left
/// alone). Write SQL both databases accept: `INSERT ... ON CONFLICT (key) DO UPDATE SET
/// column = excluded.column`, `BIGINT` and `TEXT` columns, no `RETURNING` of generated keys
/// you rely on the type of.
pub trait Sql {
    /// The database the statements run on.
    fn dialect(&self) -> Dialect;

    /// Runs `statement` with `params` and returns how many rows it changed.
    ///
    /// # Errors
    /// [`SqlError::Statement`] when the database refuses or fails it (also for a value
    /// PostgreSQL cannot bind to the column type there).
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<u64, SqlError>;

    /// Runs `statement` with `params` and returns every result row.
    ///
    /// # Errors
    /// As [`execute`](Sql::execute), and [`SqlError::UnsupportedType`] for a PostgreSQL
    /// column type with no [`Value`].
    fn query(&mut self, statement: &str, params: &[Value]) -> Result<Vec<Row>, SqlError>;

    /// The first result row, if any (see [`query`](Sql::query)).
    ///
    /// # Errors
    /// As [`query`](Sql::query).
    fn query_optional(
        &mut self,
        statement: &str,
        params: &[Value],
    ) -> Result<Option<Row>, SqlError> {
        Ok(self.query(statement, params)?.into_iter().next())
    }
}

/// `statement` with PostgreSQL placeholders (`$1`) rewritten for SQLite (`?1`). Quoted strings
/// (`'...'`), quoted identifiers (`"..."`) and comments are copied unchanged.
pub(crate) fn sqlite_placeholders(statement: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // Copy up to the closing quote; a doubled quote is an escaped one and the
                // loop simply reopens it.
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('?'),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `name` is a plain SQL identifier this crate will put into statements unquoted:
/// lowercase ASCII letters, digits and `_`, not starting with a digit, at most 63 bytes.
pub(crate) fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlite_numbered_parameters() {
        assert_eq!(
            sqlite_placeholders("UPDATE t SET a = $1 WHERE b = $12"),
            "UPDATE t SET a = ?1 WHERE b = ?12"
        );
    }

    #[test]
    fn placeholders_inside_quotes_and_comments_are_left_alone() {
        let statement = "SELECT '$1', \"col$2\", 'it''s $3' -- $4\n, $5";
        assert_eq!(
            sqlite_placeholders(statement),
            "SELECT '$1', \"col$2\", 'it''s $3' -- $4\n, ?5"
        );
        // A `$` not followed by a digit is not a placeholder.
        assert_eq!(sqlite_placeholders("SELECT $a"), "SELECT $a");
    }

    #[test]
    fn rows_convert_and_name_the_mismatch() {
        let row = Row::new(vec![
            Value::Integer(7),
            Value::Null,
            Value::Text("x".into()),
        ]);
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<Option<i64>>(1).unwrap(), None);
        assert_eq!(row.get::<String>(2).unwrap(), "x");
        let error = row.get::<i64>(2).unwrap_err();
        assert!(matches!(
            error,
            SqlError::Column {
                index: 2,
                expected: "integer",
                found: "text"
            }
        ));
        assert!(matches!(row.get::<i64>(1), Err(SqlError::Column { .. })));
        assert!(matches!(row.get::<i64>(3), Err(SqlError::Column { .. })));
        assert!(matches!(
            Row::new(vec![Value::Integer(-1)]).get::<u64>(0),
            Err(SqlError::Column { .. })
        ));
    }

    #[test]
    fn plain_identifiers() {
        assert!(is_plain_identifier("order_summaries"));
        assert!(is_plain_identifier("t2"));
        assert!(!is_plain_identifier("2t"));
        assert!(!is_plain_identifier("Orders"));
        assert!(!is_plain_identifier("a; DROP TABLE events"));
        assert!(!is_plain_identifier(""));
    }
}
