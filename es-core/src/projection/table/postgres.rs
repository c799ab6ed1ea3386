//! The [`Sql`] executor over a PostgreSQL transaction, and the PostgreSQL table database.
//!
//! The read model's code is synchronous (it runs on a blocking thread, as the SQLite one
//! does); each statement is sent on the pooled connection's transaction and awaited with the
//! runtime's handle.

use std::error::Error;

use bytes::BytesMut;
use deadpool_postgres::Pool;
use tokio::runtime::Handle;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::database::Mode;
use super::sql::{Dialect, Row, Sql, SqlError, Value};
use crate::lease::Fence;
use crate::store::postgres::errors::{pool_error, query_error};
use crate::store::postgres::lease::check_fence_postgres;
use crate::store::StoreError;

/// The store's pool and schema: where table read models over a PostgreSQL store write.
#[derive(Clone)]
pub(crate) struct PostgresBackend {
    pool: Pool,
    /// A plain lowercase identifier (checked when the store connected).
    schema: String,
    read_only: bool,
}

impl PostgresBackend {
    pub(crate) fn new(pool: Pool, schema: String, read_only: bool) -> Self {
        PostgresBackend {
            pool,
            schema,
            read_only,
        }
    }

    pub(crate) fn location(&self) -> String {
        format!("PostgreSQL schema `{}`", self.schema)
    }

    /// Runs `work` in a transaction on a pooled connection, with the store's schema first on
    /// the search path, so the read model's unqualified table names are the schema's.
    pub(crate) fn run<T, E>(
        &self,
        handle: &Handle,
        mode: Mode,
        fence: Option<&Fence>,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        if mode == Mode::Write && self.read_only {
            return Err(StoreError::ReadOnly {
                location: self.location(),
            });
        }
        let mut client = handle.block_on(self.pool.get()).map_err(pool_error)?;
        let transaction = handle.block_on(client.transaction()).map_err(query_error)?;
        let setup = match mode {
            Mode::Read => format!(
                "SET TRANSACTION READ ONLY; SET LOCAL search_path TO {}",
                self.schema
            ),
            Mode::Write => format!("SET LOCAL search_path TO {}", self.schema),
        };
        handle
            .block_on(transaction.batch_execute(&setup))
            .map_err(query_error)?;
        if let Some(fence) = fence {
            // Locks the lease row until the commit: a takeover waits for this transaction.
            handle.block_on(check_fence_postgres(&transaction, &self.schema, fence))?;
        }
        let outcome = work(&mut PostgresSql {
            transaction: &transaction,
            handle,
        });
        match (&outcome, mode) {
            (Ok(_), Mode::Write) => handle.block_on(transaction.commit()).map_err(query_error)?,
            _ => handle
                .block_on(transaction.rollback())
                .map_err(query_error)?,
        }
        Ok(outcome)
    }
}

/// Runs portable statements in a PostgreSQL transaction.
pub(crate) struct PostgresSql<'t, 'c> {
    transaction: &'t deadpool_postgres::Transaction<'c>,
    handle: &'t Handle,
}

fn failed(statement: &str, error: tokio_postgres::Error) -> SqlError {
    SqlError::Statement {
        dialect: Dialect::Postgres,
        statement: statement.to_owned(),
        source: Box::new(error),
    }
}

impl PostgresSql<'_, '_> {
    fn prepare(&self, statement: &str) -> Result<tokio_postgres::Statement, SqlError> {
        self.handle
            .block_on(self.transaction.prepare_cached(statement))
            .map_err(|error| failed(statement, error))
    }
}

impl Sql for PostgresSql<'_, '_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<u64, SqlError> {
        let prepared = self.prepare(statement)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|value| value as _).collect();
        self.handle
            .block_on(self.transaction.execute(&prepared, &params))
            .map_err(|error| failed(statement, error))
    }

    fn query(&mut self, statement: &str, params: &[Value]) -> Result<Vec<Row>, SqlError> {
        let prepared = self.prepare(statement)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|value| value as _).collect();
        let rows = self
            .handle
            .block_on(self.transaction.query(&prepared, &params))
            .map_err(|error| failed(statement, error))?;
        rows.iter()
            .map(|row| row_values(row).map_err(|error| failed_row(statement, error)))
            .collect()
    }
}

/// A row's conversion failed: the driver's error, or an unsupported type.
enum RowError {
    Driver(tokio_postgres::Error),
    Unsupported(SqlError),
}

fn failed_row(statement: &str, error: RowError) -> SqlError {
    match error {
        RowError::Driver(error) => failed(statement, error),
        RowError::Unsupported(error) => error,
    }
}

fn row_values(row: &tokio_postgres::Row) -> Result<Row, RowError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let get = |error| RowError::Driver(error);
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index).map_err(get)?.into()
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index).map_err(get)?.into()
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)
                .map_err(get)?
                .map(i64::from)
                .into()
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)
                .map_err(get)?
                .map(i64::from)
                .into()
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(index).map_err(get)?.into()
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(index)
                .map_err(get)?
                .map(f64::from)
                .into()
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index)
                .map_err(get)?
                .into()
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            row.try_get::<_, Option<String>>(index).map_err(get)?.into()
        } else {
            return Err(RowError::Unsupported(SqlError::UnsupportedType {
                column: column.name().to_owned(),
                type_name: ty.name().to_owned(),
            }));
        };
        values.push(value);
    }
    Ok(Row::new(values))
}

/// A value that does not fit the parameter's PostgreSQL type.
#[derive(Debug, thiserror::Error)]
#[error("a {found} value does not fit PostgreSQL type `{type_name}`")]
struct Mismatch {
    found: &'static str,
    type_name: String,
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let mismatch = || -> Box<dyn Error + Sync + Send> {
            Box::new(Mismatch {
                found: self.kind(),
                type_name: ty.name().to_owned(),
            })
        };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(integer) => {
                if *ty == Type::INT8 {
                    integer.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*integer)
                        .map_err(|_| mismatch())?
                        .to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*integer)
                        .map_err(|_| mismatch())?
                        .to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*integer != 0).to_sql(ty, out)
                } else {
                    Err(mismatch())
                }
            }
            Value::Real(real) => {
                if *ty == Type::FLOAT8 {
                    real.to_sql(ty, out)
                } else {
                    Err(mismatch())
                }
            }
            Value::Text(text) => {
                if <String as ToSql>::accepts(ty) {
                    text.to_sql(ty, out)
                } else {
                    Err(mismatch())
                }
            }
            Value::Blob(bytes) => {
                if *ty == Type::BYTEA {
                    bytes.to_sql(ty, out)
                } else {
                    Err(mismatch())
                }
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Checked per value in `to_sql`, with an error naming both sides.
        true
    }

    to_sql_checked!();
}
