//! Read models as SQL tables in the store's own database, updated exactly once.
//!
//! A [`TableProjection`] keeps its state in tables of the store's database (the SQLite file, or
//! the PostgreSQL schema) instead of in memory. Each batch of events is applied in **one
//! database transaction that also moves the read model's checkpoint**, so the rows and the
//! checkpoint always agree: after a crash (even between the last statement and the commit)
//! the batch is either wholly there with its checkpoint, or wholly absent and applied again.
//! Every event's effects are in the tables exactly once.
//!
//! - **One implementation, both databases.** `apply` runs portable statements through
//!   [`Sql`] with PostgreSQL-style placeholders (`$1`, `$2` ...), which run unchanged on SQLite
//!   (rewritten to `?1`) and PostgreSQL. [`Sql::dialect`] tells them apart where they differ
//!   (column types in `CREATE TABLE`).
//! - **The checkpoint table.** `es_table_checkpoints (name TEXT PRIMARY KEY, position BIGINT
//!   NOT NULL, updated_at BIGINT NOT NULL)` ([`CHECKPOINT_TABLE`]), one row per read model,
//!   `updated_at` in microseconds since the Unix epoch, beside the read model's tables (on
//!   PostgreSQL in the store's schema). A batch moves the checkpoint only from the position
//!   its writer read (`UPDATE ... WHERE position = <expected>`): a second writer that applied
//!   the same events first makes the batch roll back instead of applying them twice.
//! - **Bad input.** An `apply` that fails (or panics) rolls the whole batch back; the events
//!   before the failing one are then committed on their own, so the checkpoint stops right
//!   before it. Under the [daemon](super::daemon) the failing event is retried and the read
//!   model parked like an in-memory one ([`DaemonBuilder::with_table`](super::daemon::DaemonBuilder::with_table));
//!   [`Tables::catch_up`] returns [`ProjectionError::Apply`]. Never skipped on its own.
//! - **Rebuild** ([`Tables::rebuild`]) empties the read model's tables, resets its checkpoint
//!   and replays the whole log in one transaction: readers see the old rows until the new
//!   ones commit, never a half-built table. On SQLite that transaction holds the file's write
//!   lock while it runs, so appends wait for it (up to the busy timeout): rebuild a large
//!   read model when the writers are quiet.
//! - **As of** ([`Tables::as_of`]) replays the log up to a position or an instant into a fresh
//!   private in-memory SQLite database with the read model's tables and returns it for
//!   queries; the stored tables are not touched. Queries on it must be SQLite SQL.
//! - **Queries** are plain SQL on the tables, from any process or tool (`sqlite3`, `psql`), or
//!   through [`TableDatabase::read`].
//!
//! Table names are the read model's own ([`TableProjection::TABLES`]); choose names that do
//! not collide with the store's (`events`, `snapshots`, `projections`, `meta`) or other read
//! models'.
//!
//! # Examples
//!
//! ```
//! use es_core::projection::table::{Sql, SqlError, TableDatabase, TableProjection, Tables};
//! use es_core::{EventStore, InMemory, RecordedEvent};
//!
//! /// How many events each stream type has.
//! struct EventCounts;
//!
//! impl TableProjection for EventCounts {
//!     const NAME: &'static str = "event-counts";
//!     const TABLES: &'static [&'static str] = &["event_counts"];
//!     type Error = SqlError;
//!
//!     fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
//!         sql.execute(
//!             "CREATE TABLE IF NOT EXISTS event_counts \
//!              (aggregate_type TEXT PRIMARY KEY, events BIGINT NOT NULL)",
//!             &[],
//!         )?;
//!         Ok(())
//!     }
//!
//!     fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), SqlError> {
//!         sql.execute(
//!             "INSERT INTO event_counts (aggregate_type, events) VALUES ($1, 1) \
//!              ON CONFLICT (aggregate_type) DO UPDATE SET events = event_counts.events + 1",
//!             &[event.stream.aggregate_type().into()],
//!         )?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemory::new();
//! let counts = Tables::open(EventCounts, TableDatabase::in_memory()).await?;
//! let report = counts.catch_up(&store).await?;
//! assert_eq!(report.events, 0);
//! let rows = counts
//!     .database()
//!     .read(|sql| sql.query("SELECT COUNT(*) FROM event_counts", &[]))
//!     .await?;
//! assert_eq!(rows[0].get::<i64>(0)?, 0);
//! # Ok(())
//! # }
//! ```

mod database;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod runner;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::event::RecordedEvent;
use crate::store::{EventStore, StoreError};
use crate::types::{GlobalPosition, Timestamp};

use super::{AsOf, CatchUpReport, ProjectionError};

pub use database::{TableDatabase, TableStore, CHECKPOINT_TABLE};
pub use sql::{Dialect, FromValue, Row, Sql, SqlError, Value};

pub(crate) use database::{checkpoint_table_exists, read_checkpoint};
pub(crate) use runner::{ErasedTable, TableRunner};

/// A read model kept as rows in the store's database: see the [module docs](self).
///
/// # Contract
///
/// - [`NAME`](TableProjection::NAME) is unique among the read models of a store and stable:
///   the checkpoint is stored under it.
/// - [`TABLES`](TableProjection::TABLES) lists every table the read model writes (plain
///   lowercase identifiers); a rebuild empties exactly these.
/// - [`create_tables`](TableProjection::create_tables) creates them if they are missing
///   (`CREATE TABLE IF NOT EXISTS`); it runs before the first batch of every run.
/// - [`apply`](TableProjection::apply) sees events in global-position order, each once per
///   committed batch; it writes only through `sql` (never another connection: those writes
///   would escape the batch's transaction) and does not commit or roll back. An error rolls
///   the batch back.
pub trait TableProjection: Send + Sync + 'static {
    /// The read model's unique, stable name.
    const NAME: &'static str;

    /// The tables it owns.
    const TABLES: &'static [&'static str];

    /// Why an event could not be applied: a payload that does not decode, or a statement that
    /// failed (hence `From<SqlError>`, so `?` works on both).
    type Error: std::error::Error + From<SqlError> + Send + Sync + 'static;

    /// Creates the read model's tables (and indexes) if they do not exist.
    ///
    /// # Errors
    /// A statement that fails.
    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError>;

    /// Whether this read model wants `event`. Events it does not want still advance its
    /// checkpoint. The default takes every event.
    fn handles(&self, event: &RecordedEvent) -> bool {
        let _ = event;
        true
    }

    /// Writes the effects of `event` through `sql`.
    ///
    /// # Errors
    /// Any error that makes the event impossible to apply; the batch is rolled back.
    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), Self::Error>;
}

/// One table read model in its database: catch it up, rebuild it, query it as of a point in
/// history. (Under a [daemon](super::daemon) use
/// [`DaemonBuilder::with_table`](super::daemon::DaemonBuilder::with_table) instead.)
pub struct Tables<P> {
    projection: Arc<P>,
    runner: TableRunner,
}

impl<P> std::fmt::Debug for Tables<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("name", &self.runner.name())
            .field("database", self.runner.database())
            .finish_non_exhaustive()
    }
}

impl<P: TableProjection> Tables<P> {
    /// The read model `projection` in `database`: creates its tables and its checkpoint row
    /// (at position 0) if they are missing.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the database fails, or refuses the read model's table
    /// names (they must be plain lowercase identifiers) or its `CREATE TABLE` statements.
    pub async fn open(projection: P, database: TableDatabase) -> Result<Self, ProjectionError> {
        let projection = Arc::new(projection);
        let runner = TableRunner::new(Arc::clone(&projection) as Arc<dyn ErasedTable>, database);
        runner.prepare(Timestamp::now()).await?;
        Ok(Tables { projection, runner })
    }

    /// The read model.
    #[must_use]
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The database holding its tables.
    #[must_use]
    pub fn database(&self) -> &TableDatabase {
        self.runner.database()
    }

    /// Its durable checkpoint: every event at or before it is in the tables.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the database fails.
    pub async fn checkpoint(&self) -> Result<GlobalPosition, ProjectionError> {
        Ok(self.runner.checkpoint().await?)
    }

    /// Applies every event after the checkpoint, one page of the log per transaction.
    ///
    /// # Errors
    /// [`ProjectionError::Apply`] for an event the read model cannot apply (the events before
    /// it are committed, it and those after are not), [`ProjectionError::Store`] when reading
    /// the log or writing the database fails.
    pub async fn catch_up<S: EventStore>(
        &self,
        store: &S,
    ) -> Result<CatchUpReport, ProjectionError> {
        self.runner.catch_up(store, None).await
    }

    /// Empties the tables, resets the checkpoint and replays the whole log, in one
    /// transaction: readers see the old rows until the rebuilt ones commit.
    ///
    /// # Errors
    /// As [`catch_up`](Tables::catch_up); on any error nothing changes.
    pub async fn rebuild<S>(&self, store: &S) -> Result<CatchUpReport, ProjectionError>
    where
        S: EventStore + Clone + 'static,
    {
        self.runner.rebuild(store.clone(), None, None).await
    }

    /// [`rebuild`](Tables::rebuild) under a lease: the rebuild's transaction checks `fence`
    /// and commits nothing when the lease has moved on ([`StoreError::Fenced`]).
    ///
    /// # Errors
    /// As [`rebuild`](Tables::rebuild), and [`ProjectionError::Store`] with
    /// [`StoreError::Fenced`].
    pub async fn rebuild_fenced<S>(
        &self,
        store: &S,
        fence: &crate::lease::Fence,
    ) -> Result<CatchUpReport, ProjectionError>
    where
        S: EventStore + Clone + 'static,
    {
        self.runner.rebuild(store.clone(), None, Some(fence)).await
    }

    /// The read model as it was at `at`, built in a fresh in-memory SQLite database (query it
    /// with [`TableDatabase::read`]); the stored tables are not touched.
    ///
    /// # Errors
    /// As [`catch_up`](Tables::catch_up).
    pub async fn as_of<S: EventStore>(
        &self,
        store: &S,
        at: AsOf,
    ) -> Result<TableDatabase, ProjectionError> {
        self.runner.as_of(store, at).await
    }
}

/// A table read model's transaction could not change its checkpoint: another writer moved
/// it (two runners of one read model without a lease between them). The batch was rolled
/// back.
#[derive(Debug, thiserror::Error)]
#[error("table read model `{projection}`: its checkpoint moved from {expected} to {found} under another writer; the batch was rolled back")]
pub struct CheckpointMoved {
    /// The read model's name.
    pub projection: &'static str,
    /// The checkpoint the batch started from.
    pub expected: GlobalPosition,
    /// The checkpoint found in the table.
    pub found: GlobalPosition,
}

impl From<CheckpointMoved> for StoreError {
    fn from(moved: CheckpointMoved) -> Self {
        StoreError::backend(moved)
    }
}
