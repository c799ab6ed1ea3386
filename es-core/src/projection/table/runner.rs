//! Applying batches of events to a table read model, each batch in one transaction with its
//! checkpoint; catch-up, rebuild and temporal builds on top.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::database::{
    advance_checkpoint, checkpoint_table_exists, create_checkpoint, panic_text, read_checkpoint,
    set_checkpoint, TableDatabase,
};
use super::sql::{is_plain_identifier, Sql, SqlError};
use super::{CheckpointMoved, TableProjection};
use crate::event::RecordedEvent;
use crate::lease::Fence;
use crate::projection::{AsOf, CatchUpReport, ProjectionError};
use crate::store::{EventStore, StoreError};
use crate::types::{GlobalPosition, Timestamp};

/// How many events one transaction of a catch-up, rebuild or temporal build reads at a time.
const PAGE_SIZE: usize = 512;

/// A table read model with its type erased, so a daemon holds many.
pub(crate) trait ErasedTable: Send + Sync {
    fn name(&self) -> &'static str;
    fn tables(&self) -> &'static [&'static str];
    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError>;
    fn handles(&self, event: &RecordedEvent) -> bool;
    fn apply(
        &self,
        event: &RecordedEvent,
        sql: &mut dyn Sql,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl<P: TableProjection> ErasedTable for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        P::TABLES
    }

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        TableProjection::create_tables(self, sql)
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        TableProjection::handles(self, event)
    }

    fn apply(
        &self,
        event: &RecordedEvent,
        sql: &mut dyn Sql,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        TableProjection::apply(self, event, sql).map_err(|error| Box::new(error) as _)
    }
}

/// What applying a batch did.
#[derive(Debug)]
pub(crate) struct BatchOutcome {
    /// The durable checkpoint afterwards.
    pub(crate) checkpoint: GlobalPosition,
    /// Events committed (after the old checkpoint).
    pub(crate) seen: u64,
    /// Of those, the ones the read model handled.
    pub(crate) handled: u64,
    /// The index (in the batch) of the event that failed, and why; the checkpoint is right
    /// before it.
    pub(crate) failure: Option<(usize, String)>,
}

/// Why a batch's transaction was rolled back.
enum Rollback {
    /// The event at this index failed.
    Apply(usize, String),
    /// A statement of the runner's own failed.
    Sql(SqlError),
    /// Another writer moved the checkpoint.
    Moved(GlobalPosition),
}

impl From<SqlError> for Rollback {
    fn from(error: SqlError) -> Self {
        Rollback::Sql(error)
    }
}

/// One table read model in its database.
#[derive(Clone)]
pub(crate) struct TableRunner {
    model: Arc<dyn ErasedTable>,
    database: TableDatabase,
}

impl TableRunner {
    pub(crate) fn new(model: Arc<dyn ErasedTable>, database: TableDatabase) -> Self {
        TableRunner { model, database }
    }

    /// Refuses table names that are not plain identifiers (they go into statements).
    fn check_names(&self) -> Result<(), StoreError> {
        match self
            .model
            .tables()
            .iter()
            .find(|table| !is_plain_identifier(table))
        {
            Some(bad) => Err(StoreError::Config(format!(
                "table read model `{}`: `{}` is not a plain table name (lowercase letters, \
                 digits and `_`, not starting with a digit)",
                self.model.name(),
                bad.escape_debug()
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.model.name()
    }

    pub(crate) fn database(&self) -> &TableDatabase {
        &self.database
    }

    /// Creates the tables and the checkpoint row if missing; returns the checkpoint.
    pub(crate) async fn prepare(&self, now: Timestamp) -> Result<GlobalPosition, StoreError> {
        self.check_names()?;
        let model = Arc::clone(&self.model);
        let created = self
            .database
            .write(move |sql| {
                model.create_tables(sql)?;
                create_checkpoint(sql, model.name(), now.as_micros())?;
                read_checkpoint(sql, model.name())
            })
            .await?;
        let checkpoint = created.map_err(StoreError::backend)?;
        Ok(GlobalPosition(checkpoint.unwrap_or(0)))
    }

    /// The durable checkpoint (0 when the read model has no row yet).
    pub(crate) async fn checkpoint(&self) -> Result<GlobalPosition, StoreError> {
        let name = self.model.name();
        let checkpoint = self
            .database
            .read(move |sql| {
                // A read model that never ran (and a store that never had one) has no table.
                if checkpoint_table_exists(sql)? {
                    read_checkpoint(sql, name)
                } else {
                    Ok(None)
                }
            })
            .await?;
        Ok(GlobalPosition(checkpoint.unwrap_or(0)))
    }

    /// Applies the events of `events` after `checkpoint` in one transaction, moving the
    /// checkpoint from `checkpoint` to the last of them. When one fails, the transaction is
    /// rolled back and the events before it are committed in a second one.
    ///
    /// `Err` only when the database failed (nothing of the batch is committed then).
    pub(crate) async fn apply_batch(
        &self,
        checkpoint: GlobalPosition,
        events: Arc<[RecordedEvent]>,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> Result<BatchOutcome, StoreError> {
        let end = events.len();
        match self
            .transact(checkpoint, Arc::clone(&events), end, now, fence)
            .await?
        {
            Ok(outcome) => Ok(outcome),
            Err((at, error)) => {
                let mut outcome = match self.transact(checkpoint, events, at, now, fence).await? {
                    Ok(outcome) => outcome,
                    // An event before it failed this time: report that one.
                    Err((earlier, error)) => BatchOutcome {
                        checkpoint,
                        seen: 0,
                        handled: 0,
                        failure: Some((earlier, error)),
                    },
                };
                if outcome.failure.is_none() {
                    outcome.failure = Some((at, error));
                }
                Ok(outcome)
            }
        }
    }

    /// One transaction over `events[..end]`; `Ok(Err((index, error)))` when an event failed
    /// (rolled back).
    async fn transact(
        &self,
        checkpoint: GlobalPosition,
        events: Arc<[RecordedEvent]>,
        end: usize,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> Result<Result<BatchOutcome, (usize, String)>, StoreError> {
        let model = Arc::clone(&self.model);
        let written = self
            .database
            .write_fenced(fence.cloned(), move |sql| {
                apply_in_transaction(&*model, sql, checkpoint, &events[..end], now)
            })
            .await?;
        match written {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(Rollback::Apply(index, error)) => Ok(Err((index, error))),
            Err(Rollback::Sql(error)) => Err(StoreError::backend(error)),
            Err(Rollback::Moved(found)) => Err(CheckpointMoved {
                projection: self.model.name(),
                expected: checkpoint,
                found,
            }
            .into()),
        }
    }

    /// Moves the checkpoint from `from` to `to` without applying anything (a skipped event).
    pub(crate) async fn skip_to(
        &self,
        from: GlobalPosition,
        to: GlobalPosition,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let name = self.model.name();
        let moved = self
            .database
            .write_fenced(fence.cloned(), move |sql| {
                if advance_checkpoint(sql, name, from.get(), to.get(), now.as_micros())? {
                    Ok(())
                } else {
                    let found = read_checkpoint(sql, name)?.unwrap_or(0);
                    Err(Rollback::Moved(GlobalPosition(found)))
                }
            })
            .await?;
        match moved {
            Ok(()) => Ok(()),
            Err(Rollback::Moved(found)) => Err(CheckpointMoved {
                projection: name,
                expected: from,
                found,
            }
            .into()),
            Err(Rollback::Sql(error)) => Err(StoreError::backend(error)),
            Err(Rollback::Apply(..)) => unreachable!("nothing is applied"),
        }
    }

    /// Applies every event after the durable checkpoint (up to `up_to`), a page per
    /// transaction.
    pub(crate) async fn catch_up<S: EventStore>(
        &self,
        store: &S,
        up_to: Option<GlobalPosition>,
    ) -> Result<CatchUpReport, ProjectionError> {
        let mut checkpoint = self.checkpoint().await?;
        let mut events = 0;
        loop {
            let mut page = store.read_all(checkpoint, PAGE_SIZE).await?;
            if let Some(bound) = up_to {
                page.retain(|event| event.global_position <= bound);
            }
            let Some(first) = page.first() else { break };
            if first.global_position <= checkpoint {
                return Err(ProjectionError::OutOfOrder {
                    previous: checkpoint,
                    found: first.global_position,
                });
            }
            let page: Arc<[RecordedEvent]> = page.into();
            let outcome = self
                .apply_batch(checkpoint, Arc::clone(&page), store.clock().now(), None)
                .await?;
            tracing::debug!(
                projection = self.model.name(),
                events = outcome.seen,
                handled = outcome.handled,
                checkpoint = outcome.checkpoint.get(),
                "table batch committed"
            );
            events += outcome.seen;
            checkpoint = outcome.checkpoint;
            if let Some((index, error)) = outcome.failure {
                return Err(self.apply_error(&page[index], error));
            }
        }
        Ok(CatchUpReport {
            events,
            position: checkpoint,
        })
    }

    fn apply_error(&self, event: &RecordedEvent, error: String) -> ProjectionError {
        ProjectionError::Apply {
            projection: self.model.name(),
            position: event.global_position,
            event_type: (*event.event_type).to_owned(),
            source: error.into(),
        }
    }

    /// Empties the tables, resets the checkpoint and replays the log, in one transaction.
    pub(crate) async fn rebuild<S>(
        &self,
        store: S,
        up_to: Option<GlobalPosition>,
        fence: Option<&Fence>,
    ) -> Result<CatchUpReport, ProjectionError>
    where
        S: EventStore + Clone + 'static,
    {
        self.check_names()?;
        let model = Arc::clone(&self.model);
        let handle = tokio::runtime::Handle::current();
        let rebuilt = self
            .database
            .write_fenced(fence.cloned(), move |sql| {
                replay(&*model, sql, &store, &handle, up_to)
            })
            .await?;
        match rebuilt {
            Ok(report) => Ok(report),
            Err(Replay::Apply(event, error)) => Err(self.apply_error(&event, error)),
            Err(Replay::Sql(error)) => Err(StoreError::backend(error).into()),
            Err(Replay::Projection(error)) => Err(error),
        }
    }

    /// The read model at `at`, replayed into a fresh in-memory SQLite database.
    pub(crate) async fn as_of<S: EventStore>(
        &self,
        store: &S,
        at: AsOf,
    ) -> Result<TableDatabase, ProjectionError> {
        let database = TableDatabase::in_memory();
        let historical = TableRunner {
            model: Arc::clone(&self.model),
            database: database.clone(),
        };
        historical.prepare(store.clock().now()).await?;
        match at {
            AsOf::Position(position) => {
                historical.catch_up(store, Some(position)).await?;
            }
            AsOf::Time(until) => {
                // Every event recorded at or before `until`, in global order, whatever its
                // position: the whole log is read, the later events pass unapplied.
                let mut checkpoint = GlobalPosition::START;
                loop {
                    let page = store.read_all(checkpoint, PAGE_SIZE).await?;
                    let Some(last) = page.last() else { break };
                    let last = last.global_position;
                    let visible: Arc<[RecordedEvent]> = page
                        .into_iter()
                        .filter(|event| event.recorded_at <= until)
                        .collect();
                    let outcome = historical
                        .apply_batch(checkpoint, Arc::clone(&visible), store.clock().now(), None)
                        .await?;
                    if let Some((index, error)) = outcome.failure {
                        return Err(self.apply_error(&visible[index], error));
                    }
                    if outcome.checkpoint < last {
                        historical
                            .skip_to(outcome.checkpoint, last, store.clock().now(), None)
                            .await?;
                    }
                    checkpoint = last;
                }
            }
        }
        Ok(database)
    }
}

/// The body of one batch's transaction.
fn apply_in_transaction(
    model: &dyn ErasedTable,
    sql: &mut dyn Sql,
    checkpoint: GlobalPosition,
    events: &[RecordedEvent],
    now: Timestamp,
) -> Result<BatchOutcome, Rollback> {
    let mut last = checkpoint;
    let mut seen = 0;
    let mut handled = 0;
    for (index, event) in events.iter().enumerate() {
        if event.global_position <= last {
            continue;
        }
        if model.handles(event) {
            apply_caught(model, event, sql).map_err(|error| Rollback::Apply(index, error))?;
            handled += 1;
        }
        last = event.global_position;
        seen += 1;
    }
    if last > checkpoint
        && !advance_checkpoint(
            sql,
            model.name(),
            checkpoint.get(),
            last.get(),
            now.as_micros(),
        )?
    {
        let found = read_checkpoint(sql, model.name())?.unwrap_or(0);
        return Err(Rollback::Moved(GlobalPosition(found)));
    }
    Ok(BatchOutcome {
        checkpoint: last,
        seen,
        handled,
        failure: None,
    })
}

/// `apply`, with a panic turned into an error.
fn apply_caught(
    model: &dyn ErasedTable,
    event: &RecordedEvent,
    sql: &mut dyn Sql,
) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| model.apply(event, sql))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error_text(&*error)),
        Err(panic) => Err(format!("panicked: {}", panic_text(&*panic))),
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a rebuild's transaction was rolled back.
enum Replay {
    Apply(Box<RecordedEvent>, String),
    Sql(SqlError),
    Projection(ProjectionError),
}

impl From<SqlError> for Replay {
    fn from(error: SqlError) -> Self {
        Replay::Sql(error)
    }
}

/// The body of a rebuild's transaction: empty, reset, replay (reading the log through the
/// runtime's handle, on the transaction's blocking thread).
fn replay<S: EventStore>(
    model: &dyn ErasedTable,
    sql: &mut dyn Sql,
    store: &S,
    handle: &tokio::runtime::Handle,
    up_to: Option<GlobalPosition>,
) -> Result<CatchUpReport, Replay> {
    let now = store.clock().now().as_micros();
    model.create_tables(sql)?;
    create_checkpoint(sql, model.name(), now)?;
    for table in model.tables() {
        // Checked as plain identifiers when the runner was made.
        sql.execute(&format!("DELETE FROM {table}"), &[])?;
    }
    let mut after = GlobalPosition::START;
    let mut events = 0;
    'pages: loop {
        let page = handle
            .block_on(store.read_all(after, PAGE_SIZE))
            .map_err(|error| Replay::Projection(error.into()))?;
        if page.is_empty() {
            break;
        }
        for event in page {
            if event.global_position <= after {
                return Err(Replay::Projection(ProjectionError::OutOfOrder {
                    previous: after,
                    found: event.global_position,
                }));
            }
            if up_to.is_some_and(|bound| event.global_position > bound) {
                break 'pages;
            }
            if model.handles(&event) {
                if let Err(error) = apply_caught(model, &event, sql) {
                    return Err(Replay::Apply(Box::new(event), error));
                }
            }
            after = event.global_position;
            events += 1;
        }
    }
    set_checkpoint(sql, model.name(), after.get(), now)?;
    Ok(CatchUpReport {
        events,
        position: after,
    })
}
