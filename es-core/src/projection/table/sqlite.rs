//! The [`Sql`] executor over a SQLite transaction.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use super::sql::{sqlite_placeholders, Dialect, Row, Sql, SqlError, Value};

/// Runs portable statements on a SQLite connection (inside the caller's transaction).
pub(crate) struct SqliteSql<'c> {
    connection: &'c Connection,
}

impl<'c> SqliteSql<'c> {
    pub(crate) fn new(connection: &'c Connection) -> Self {
        SqliteSql { connection }
    }

    fn prepare(&self, statement: &str) -> Result<rusqlite::CachedStatement<'c>, SqlError> {
        self.connection
            .prepare_cached(&sqlite_placeholders(statement))
            .map_err(|error| failed(statement, error))
    }
}

fn failed(statement: &str, error: rusqlite::Error) -> SqlError {
    SqlError::Statement {
        dialect: Dialect::Sqlite,
        statement: statement.to_owned(),
        source: Box::new(error),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(integer) => ValueRef::Integer(*integer),
            Value::Real(real) => ValueRef::Real(*real),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl Sql for SqliteSql<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<u64, SqlError> {
        let mut prepared = self.prepare(statement)?;
        let changed = prepared
            .execute(rusqlite::params_from_iter(params))
            .map_err(|error| failed(statement, error))?;
        Ok(changed as u64)
    }

    fn query(&mut self, statement: &str, params: &[Value]) -> Result<Vec<Row>, SqlError> {
        let mut prepared = self.prepare(statement)?;
        let columns = prepared.column_count();
        let mut rows = prepared
            .query(rusqlite::params_from_iter(params))
            .map_err(|error| failed(statement, error))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|error| failed(statement, error))? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                let value = row
                    .get_ref(index)
                    .map_err(|error| failed(statement, error))?;
                values.push(match value {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(integer) => Value::Integer(integer),
                    ValueRef::Real(real) => Value::Real(real),
                    ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
                    ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
                });
            }
            out.push(Row::new(values));
        }
        Ok(out)
    }
}
