//! Table read models on the in-memory store's private SQLite database: batches commit with
//! their checkpoint, a failing event rolls its batch back, rebuild and as-of. The durable
//! stores (and crashes) are covered by the root package's `table_projections` suite.

use std::sync::Arc;

use super::*;
use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent};
use crate::store::{ExpectedVersion, InMemory};
use crate::types::StreamId;

/// Records every position it applies (a primary key: applying one twice fails the batch) and
/// counts events per stream; refuses events of type `Poison`.
struct Ledger;

#[derive(Debug, thiserror::Error)]
enum LedgerError {
    #[error("poisoned event")]
    Poison,
    #[error(transparent)]
    Sql(#[from] SqlError),
}

impl TableProjection for Ledger {
    const NAME: &'static str = "ledger";
    const TABLES: &'static [&'static str] = &["ledger_seen", "ledger_totals"];
    type Error = LedgerError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "CREATE TABLE IF NOT EXISTS ledger_seen (position BIGINT PRIMARY KEY, stream TEXT NOT NULL)",
            &[],
        )?;
        sql.execute(
            "CREATE TABLE IF NOT EXISTS ledger_totals (stream TEXT PRIMARY KEY, events BIGINT NOT NULL)",
            &[],
        )?;
        Ok(())
    }

    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), LedgerError> {
        let stream = event.stream.aggregate_id().to_owned();
        // Written before the check, so a refused event leaves a row the rollback must undo.
        sql.execute(
            "INSERT INTO ledger_seen (position, stream) VALUES ($1, $2)",
            &[
                Value::Integer(event.global_position.get() as i64),
                stream.clone().into(),
            ],
        )?;
        if &*event.event_type == "Poison" {
            return Err(LedgerError::Poison);
        }
        assert!(&*event.event_type != "Panic", "ledger panics on purpose");
        sql.execute(
            "INSERT INTO ledger_totals (stream, events) VALUES ($1, 1) \
             ON CONFLICT (stream) DO UPDATE SET events = ledger_totals.events + 1",
            &[stream.into()],
        )?;
        Ok(())
    }
}

// `.into()` on the payload keeps this compiling when the field's type changes.
#[allow(clippy::useless_conversion)]
fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"null".to_vec().into(),
        metadata: Metadata::default(),
    }
}

async fn append(store: &InMemory, stream: &str, types: &[&str]) -> GlobalPosition {
    let events = types.iter().map(|event_type| event(event_type)).collect();
    store
        .append(
            &StreamId::new("ledger", stream),
            ExpectedVersion::Any,
            events,
        )
        .await
        .unwrap()
        .position
}

async fn seen(database: &TableDatabase) -> Vec<i64> {
    database
        .read(|sql| {
            sql.query("SELECT position FROM ledger_seen ORDER BY position", &[])?
                .iter()
                .map(|row| row.get::<i64>(0))
                .collect()
        })
        .await
        .unwrap()
}

async fn totals(database: &TableDatabase) -> Vec<(String, i64)> {
    database
        .read(|sql| {
            sql.query(
                "SELECT stream, events FROM ledger_totals ORDER BY stream",
                &[],
            )?
            .iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn catch_up_applies_each_event_once_and_moves_the_checkpoint_with_the_rows() {
    let store = InMemory::new();
    append(&store, "a", &["X", "X"]).await;
    append(&store, "b", &["X"]).await;
    let tables = Tables::open(Ledger, store.table_database()).await.unwrap();
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition::START);

    let report = tables.catch_up(&store).await.unwrap();
    assert_eq!(report.events, 3);
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition(3));
    // Again: nothing new, nothing applied twice (the primary key would refuse it).
    assert_eq!(tables.catch_up(&store).await.unwrap().events, 0);
    append(&store, "a", &["X"]).await;
    assert_eq!(tables.catch_up(&store).await.unwrap().events, 1);
    assert_eq!(seen(tables.database()).await, [1, 2, 3, 4]);
    assert_eq!(
        totals(tables.database()).await,
        [("a".to_owned(), 3), ("b".to_owned(), 1)]
    );
    // A second handle on the same database resumes from the durable checkpoint.
    let again = Tables::open(Ledger, store.table_database()).await.unwrap();
    assert_eq!(again.checkpoint().await.unwrap(), GlobalPosition(4));
}

#[tokio::test]
async fn a_failing_event_rolls_its_batch_back_and_keeps_the_events_before_it() {
    let store = InMemory::new();
    append(&store, "a", &["X", "X", "Poison", "X"]).await;
    let tables = Tables::open(Ledger, store.table_database()).await.unwrap();

    let error = tables.catch_up(&store).await.unwrap_err();
    let ProjectionError::Apply {
        projection,
        position,
        event_type,
        source,
    } = error
    else {
        panic!("expected an apply error, got {error:?}");
    };
    assert_eq!(
        (projection, position, event_type.as_str()),
        ("ledger", GlobalPosition(3), "Poison")
    );
    assert!(source.to_string().contains("poisoned event"), "{source}");
    // The poisoned event's own row and the event after it are rolled back; the two before it
    // are committed with the checkpoint right before it.
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition(2));
    assert_eq!(seen(tables.database()).await, [1, 2]);
    assert_eq!(totals(tables.database()).await, [("a".to_owned(), 2)]);
    // Never skipped: the next run stops at the same event.
    assert!(matches!(
        tables.catch_up(&store).await,
        Err(ProjectionError::Apply {
            position: GlobalPosition(3),
            ..
        })
    ));
    assert_eq!(seen(tables.database()).await, [1, 2]);
}

#[tokio::test]
async fn a_panicking_apply_is_a_failure_that_rolls_back() {
    let store = InMemory::new();
    append(&store, "a", &["X", "Panic"]).await;
    let tables = Tables::open(Ledger, store.table_database()).await.unwrap();
    let error = tables.catch_up(&store).await.unwrap_err();
    assert!(
        matches!(&error, ProjectionError::Apply { position: GlobalPosition(2), source, .. } if source.to_string().contains("panics on purpose")),
        "{error:?}"
    );
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition(1));
    assert_eq!(seen(tables.database()).await, [1]);
}

#[tokio::test]
async fn two_writers_of_one_read_model_never_apply_a_batch_twice() {
    let store = InMemory::new();
    append(&store, "a", &["X", "X"]).await;
    let runner = TableRunner::new(Arc::new(Ledger), store.table_database());
    runner.prepare(Timestamp::now()).await.unwrap();
    let batch: Arc<[RecordedEvent]> = store
        .read_all(GlobalPosition::START, 10)
        .await
        .unwrap()
        .into();
    let first = runner
        .apply_batch(
            GlobalPosition::START,
            Arc::clone(&batch),
            Timestamp::now(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (first.checkpoint, first.seen, first.handled),
        (GlobalPosition(2), 2, 2)
    );
    // A second writer that read the checkpoint before the first committed (so it thinks
    // event 3 follows position 0) is refused, and what it wrote is rolled back.
    append(&store, "a", &["X"]).await;
    let next: Arc<[RecordedEvent]> = store.read_all(GlobalPosition(2), 10).await.unwrap().into();
    let error = runner
        .apply_batch(GlobalPosition::START, next, Timestamp::now(), None)
        .await
        .unwrap_err();
    let StoreError::Backend(source) = error else {
        panic!("expected a backend error, got {error:?}")
    };
    let moved = source
        .downcast_ref::<CheckpointMoved>()
        .expect("a moved checkpoint");
    assert_eq!(
        (moved.expected, moved.found),
        (GlobalPosition::START, GlobalPosition(2))
    );
    assert_eq!(seen(runner.database()).await, [1, 2]);
    assert_eq!(runner.checkpoint().await.unwrap(), GlobalPosition(2));
}

#[tokio::test]
async fn rebuild_replaces_the_rows_in_one_transaction() {
    let store = InMemory::new();
    append(&store, "a", &["X", "X"]).await;
    let tables = Tables::open(Ledger, store.table_database()).await.unwrap();
    tables.catch_up(&store).await.unwrap();
    // Rows the log does not explain (damage, or a changed read model) are gone after.
    tables
        .database()
        .write(|sql| {
            sql.execute(
                "INSERT INTO ledger_totals (stream, events) VALUES ('ghost', 9)",
                &[],
            )
        })
        .await
        .unwrap()
        .unwrap();
    append(&store, "b", &["X"]).await;
    let report = tables.rebuild(&store).await.unwrap();
    assert_eq!((report.events, report.position), (3, GlobalPosition(3)));
    assert_eq!(seen(tables.database()).await, [1, 2, 3]);
    assert_eq!(
        totals(tables.database()).await,
        [("a".to_owned(), 2), ("b".to_owned(), 1)]
    );
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition(3));

    // A rebuild that fails changes nothing: the old rows and checkpoint stay.
    append(&store, "c", &["Poison"]).await;
    assert!(matches!(
        tables.rebuild(&store).await,
        Err(ProjectionError::Apply {
            position: GlobalPosition(4),
            ..
        })
    ));
    assert_eq!(seen(tables.database()).await, [1, 2, 3]);
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition(3));
}

#[tokio::test]
async fn as_of_builds_the_tables_of_a_past_position_or_instant_aside() {
    let clock = crate::clock::ManualClock::new(Timestamp::from_micros(1_000));
    let store = InMemory::with_clock(clock.clone());
    append(&store, "a", &["X"]).await;
    clock.advance(std::time::Duration::from_secs(1));
    append(&store, "b", &["X", "X"]).await;
    let tables = Tables::open(Ledger, store.table_database()).await.unwrap();
    tables.catch_up(&store).await.unwrap();

    let at_one = tables
        .as_of(&store, AsOf::Position(GlobalPosition(1)))
        .await
        .unwrap();
    assert_eq!(seen(&at_one).await, [1]);
    let at_start = tables
        .as_of(&store, AsOf::Time(Timestamp::from_micros(1_000)))
        .await
        .unwrap();
    assert_eq!(totals(&at_start).await, [("a".to_owned(), 1)]);
    // The stored tables are untouched.
    assert_eq!(seen(tables.database()).await, [1, 2, 3]);
}

#[tokio::test]
async fn table_names_must_be_plain_identifiers() {
    struct Bad;
    impl TableProjection for Bad {
        const NAME: &'static str = "bad";
        const TABLES: &'static [&'static str] = &["events; DROP TABLE events"];
        type Error = SqlError;
        fn create_tables(&self, _sql: &mut dyn Sql) -> Result<(), SqlError> {
            Ok(())
        }
        fn apply(&self, _event: &RecordedEvent, _sql: &mut dyn Sql) -> Result<(), SqlError> {
            Ok(())
        }
    }
    let error = Tables::open(Bad, TableDatabase::in_memory())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProjectionError::Store(StoreError::Config(message)) if message.contains("not a plain table name")),
        "{error:?}"
    );
}
