//! Where table read models keep their rows: the store's SQLite file, the store's PostgreSQL
//! schema, or a private in-memory SQLite database; and the transactions that write them.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::sql::{Dialect, Sql, SqlError, Value};
use super::sqlite::SqliteSql;
use crate::lease::Fence;
use crate::store::StoreError;

/// Where table read models keep their rows and checkpoints, and how their transactions run.
///
/// Get one from the store with [`TableStore::table_database`]: the store's own SQLite file
/// (a connection of its own, beside the store's writer, waiting for the file's write lock
/// as long as the store's busy timeout allows), the store's PostgreSQL schema (a pooled
/// connection of the store per transaction), or, for the in-memory store, a private in-memory
/// SQLite database. [`TableDatabase::in_memory`] makes a fresh private one (temporal queries
/// replay into one).
///
/// Every transaction runs on a blocking thread (`spawn_blocking`), never on an executor
/// thread. Clones share the connection.
#[derive(Clone)]
pub struct TableDatabase {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<SqliteBackend>),
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PostgresBackend),
}

/// How a SQLite table database is opened.
enum SqliteTarget {
    /// The store's file.
    File {
        path: PathBuf,
        busy_timeout: Duration,
        read_only: bool,
    },
    /// A private in-memory database.
    Memory,
}

struct SqliteBackend {
    target: SqliteTarget,
    location: String,
    /// Opened on first use (on a blocking thread).
    connection: Mutex<Option<Connection>>,
}

impl fmt::Debug for TableDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableDatabase")
            .field("dialect", &self.dialect())
            .field("location", &self.location())
            .finish()
    }
}

/// A store whose database can hold table read models.
pub trait TableStore {
    /// The database table read models over this store write to.
    fn table_database(&self) -> TableDatabase;
}

impl<S: TableStore + ?Sized> TableStore for &S {
    fn table_database(&self) -> TableDatabase {
        (**self).table_database()
    }
}

impl<S: TableStore + ?Sized> TableStore for Arc<S> {
    fn table_database(&self) -> TableDatabase {
        (**self).table_database()
    }
}

impl<S: TableStore + ?Sized> TableStore for Box<S> {
    fn table_database(&self) -> TableDatabase {
        (**self).table_database()
    }
}

impl TableDatabase {
    /// A fresh, private in-memory SQLite database (gone when the last clone is dropped).
    #[must_use]
    pub fn in_memory() -> Self {
        TableDatabase::sqlite(SqliteTarget::Memory, "in-memory table database".to_owned())
    }

    /// The tables of the SQLite store file at `path`.
    pub(crate) fn sqlite_file(path: PathBuf, busy_timeout: Duration, read_only: bool) -> Self {
        let location = path.display().to_string();
        TableDatabase::sqlite(
            SqliteTarget::File {
                path,
                busy_timeout,
                read_only,
            },
            location,
        )
    }

    fn sqlite(target: SqliteTarget, location: String) -> Self {
        TableDatabase {
            backend: Backend::Sqlite(Arc::new(SqliteBackend {
                target,
                location,
                connection: Mutex::new(None),
            })),
        }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(backend: super::postgres::PostgresBackend) -> Self {
        TableDatabase {
            backend: Backend::Postgres(backend),
        }
    }

    /// The database's SQL dialect.
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        match &self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Where the tables are, as text (a path, or a PostgreSQL schema).
    #[must_use]
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(sqlite) => sqlite.location.clone(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(postgres) => postgres.location(),
        }
    }

    /// Runs `query` in a read-only transaction and returns its result: every statement sees
    /// the same committed state (rows and checkpoints of one moment).
    ///
    /// # Errors
    /// [`StoreError::Backend`] wrapping the [`SqlError`] of a failed statement, and the
    /// store's errors when the database cannot be reached.
    pub async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T, SqlError> + Send + 'static,
    {
        match self.run(Mode::Read, None, query).await? {
            Ok(value) => Ok(value),
            Err(error) => Err(StoreError::backend(error)),
        }
    }

    /// Runs `work` in a write transaction and commits it when `work` returns `Ok`, rolls it
    /// back when `work` returns `Err` (or panics: the panic becomes
    /// [`StoreError::Backend`] after the rollback).
    ///
    /// The outer `Result` is the database's (could not begin, commit, or reach it), the inner
    /// one `work`'s.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] for a store opened read-only, and the database's failures.
    pub async fn write<T, E, F>(&self, work: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Write, None, work).await
    }

    /// As [`write`](TableDatabase::write), and first checks `fence` in the same transaction:
    /// when the lease has moved on (its token is no longer `fence.token`), nothing is written
    /// and the answer is [`StoreError::Fenced`]. On PostgreSQL the check locks the lease row
    /// until the commit (`FOR SHARE`), so a takeover waits for this transaction and the next
    /// holder sees its effects; on SQLite the transaction holds the file's write lock, which a
    /// takeover needs too. A private in-memory database belongs to one process and has no
    /// lease table: the fence is not checked there.
    ///
    /// # Errors
    /// As [`write`](TableDatabase::write), and [`StoreError::Fenced`].
    pub async fn write_fenced<T, E, F>(
        &self,
        fence: Option<Fence>,
        work: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Write, fence, work).await
    }

    async fn run<T, E, F>(
        &self,
        mode: Mode,
        fence: Option<Fence>,
        work: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T, E> + Send + 'static,
    {
        let backend = self.backend.clone();
        #[cfg(feature = "postgres")]
        let handle = tokio::runtime::Handle::current();
        let joined = tokio::task::spawn_blocking(move || {
            // A panic in `work` unwinds through the transaction, which rolls back on drop.
            catch_unwind(AssertUnwindSafe(|| match &backend {
                Backend::Sqlite(sqlite) => sqlite.run(mode, fence.as_ref(), work),
                #[cfg(feature = "postgres")]
                Backend::Postgres(postgres) => postgres.run(&handle, mode, fence.as_ref(), work),
            }))
        })
        .await;
        match joined {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => Err(StoreError::backend(Panicked(panic_text(&*panic)))),
            Err(error) => Err(StoreError::backend(error)),
        }
    }
}

/// A transaction's work panicked; it was rolled back.
#[derive(Debug, thiserror::Error)]
#[error("the transaction's work panicked (it was rolled back): {0}")]
struct Panicked(String);

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Whether a transaction reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
}

impl SqliteBackend {
    fn run<T, E>(
        &self,
        mode: Mode,
        fence: Option<&Fence>,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        let mut guard = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let Some(connection) = guard.as_mut() else {
            unreachable!("opened above");
        };
        if mode == Mode::Write && self.is_read_only() {
            return Err(StoreError::ReadOnly {
                location: self.location.clone(),
            });
        }
        let behavior = match mode {
            Mode::Read => TransactionBehavior::Deferred,
            Mode::Write => TransactionBehavior::Immediate,
        };
        let transaction = connection
            .transaction_with_behavior(behavior)
            .map_err(|error| self.error(error))?;
        if let (Some(fence), SqliteTarget::File { .. }) = (fence, &self.target) {
            // Under the write lock: the token cannot change before the commit.
            crate::store::sqlite::lease::check_fence_sqlite(&transaction, fence)?;
        }
        let outcome = work(&mut SqliteSql::new(&transaction));
        match (&outcome, mode) {
            (Ok(_), Mode::Write) => transaction.commit().map_err(|error| self.error(error))?,
            // Reads and failed work leave nothing behind.
            _ => transaction.rollback().map_err(|error| self.error(error))?,
        }
        Ok(outcome)
    }

    fn is_read_only(&self) -> bool {
        matches!(
            self.target,
            SqliteTarget::File {
                read_only: true,
                ..
            }
        )
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let connection = match &self.target {
            SqliteTarget::Memory => Connection::open_in_memory(),
            SqliteTarget::File {
                path,
                busy_timeout,
                read_only,
            } => {
                let flags = if *read_only {
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
                } else {
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
                };
                Connection::open_with_flags(path, flags).and_then(|connection| {
                    connection.busy_timeout(*busy_timeout)?;
                    if !*read_only {
                        // Durable commits, as the store's own writer makes them.
                        connection.pragma_update(None, "synchronous", "FULL")?;
                    }
                    Ok(connection)
                })
            }
        };
        connection.map_err(|error| self.error(error))
    }

    fn error(&self, error: rusqlite::Error) -> StoreError {
        StoreError::backend(SqlError::Statement {
            dialect: Dialect::Sqlite,
            statement: format!("(transaction on `{}`)", self.location),
            source: Box::new(error),
        })
    }
}

/// The table holding each table read model's checkpoint, in the same database (and, on
/// PostgreSQL, the same schema) as its rows.
pub const CHECKPOINT_TABLE: &str = "es_table_checkpoints";

const CREATE_CHECKPOINTS: &str = "CREATE TABLE IF NOT EXISTS es_table_checkpoints (\
     name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at BIGINT NOT NULL)";

const INSERT_CHECKPOINT: &str = "INSERT INTO es_table_checkpoints (name, position, updated_at) \
     VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING";

const READ_CHECKPOINT: &str = "SELECT position FROM es_table_checkpoints WHERE name = $1";

/// Moves a checkpoint only from the position the writer read: a second writer that moved it
/// in between makes this change no row, and the batch is rolled back.
const ADVANCE_CHECKPOINT: &str = "UPDATE es_table_checkpoints SET position = $2, updated_at = $4 \
     WHERE name = $1 AND position = $3";

const SET_CHECKPOINT: &str =
    "UPDATE es_table_checkpoints SET position = $2, updated_at = $3 WHERE name = $1";

/// Creates the checkpoint table if it is missing and the read model's row at position 0 if
/// it has none.
pub(crate) fn create_checkpoint(sql: &mut dyn Sql, name: &str, now: i64) -> Result<(), SqlError> {
    sql.execute(CREATE_CHECKPOINTS, &[])?;
    sql.execute(INSERT_CHECKPOINT, &[name.into(), now.into()])?;
    Ok(())
}

/// Whether the checkpoint table exists (in the store's schema, on PostgreSQL).
pub(crate) fn checkpoint_table_exists(sql: &mut dyn Sql) -> Result<bool, SqlError> {
    let statement = match sql.dialect() {
        Dialect::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1",
        Dialect::Postgres => {
            "SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    Ok(sql
        .query_optional(statement, &[CHECKPOINT_TABLE.into()])?
        .is_some())
}

/// The read model's checkpoint (`None`: it has no row).
pub(crate) fn read_checkpoint(sql: &mut dyn Sql, name: &str) -> Result<Option<u64>, SqlError> {
    match sql.query_optional(READ_CHECKPOINT, &[name.into()])? {
        Some(row) => row.get::<u64>(0).map(Some),
        None => Ok(None),
    }
}

/// Moves the checkpoint from `from` to `to`; `false` when it was not at `from`.
pub(crate) fn advance_checkpoint(
    sql: &mut dyn Sql,
    name: &str,
    from: u64,
    to: u64,
    now: i64,
) -> Result<bool, SqlError> {
    let changed = sql.execute(
        ADVANCE_CHECKPOINT,
        &[
            name.into(),
            position_value(to),
            position_value(from),
            now.into(),
        ],
    )?;
    Ok(changed == 1)
}

/// Sets the checkpoint to `to` whatever it was (a rebuild).
pub(crate) fn set_checkpoint(
    sql: &mut dyn Sql,
    name: &str,
    to: u64,
    now: i64,
) -> Result<(), SqlError> {
    sql.execute(
        SET_CHECKPOINT,
        &[name.into(), position_value(to), now.into()],
    )?;
    Ok(())
}

/// A position as a SQL integer (positions stay far below `i64::MAX`; saturates if not).
pub(crate) fn position_value(position: u64) -> Value {
    Value::Integer(i64::try_from(position).unwrap_or(i64::MAX))
}
