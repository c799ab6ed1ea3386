//! Workers in one process: a standby takes over when the holder stops, and read-your-writes
//! through the durable checkpoint from another store handle (another node).

mod sqlite_support;

use std::time::Duration;

use es_core::projection::daemon::ProjectionDaemon;
use es_core::projection::durable::{
    wait_for_checkpoint, wait_for_table_checkpoint, CheckpointWaitError,
};
use es_core::projection::table::{Sql, SqlError, TableProjection, TableStore};
use es_core::projection::worker::{Worker, WorkerState};
use es_core::projection::Projection;
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, LeaseStore, Metadata, NewEvent,
    RecordedEvent, StreamId,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Count(u64);

impl Projection for Count {
    const NAME: &'static str = "lease-count";
    type Error = std::convert::Infallible;
    fn apply(&mut self, _event: &RecordedEvent) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// One row per event.
struct Rows;

impl TableProjection for Rows {
    const NAME: &'static str = "lease-rows";
    const TABLES: &'static [&'static str] = &["lease_rows"];
    type Error = SqlError;
    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "CREATE TABLE IF NOT EXISTS lease_rows (position BIGINT PRIMARY KEY)",
            &[],
        )?;
        Ok(())
    }
    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), SqlError> {
        let position = i64::try_from(event.global_position.get()).unwrap();
        sql.execute(
            "INSERT INTO lease_rows (position) VALUES ($1)",
            &[position.into()],
        )?;
        Ok(())
    }
}

// `.into()` keeps this compiling when `NewEvent`'s fields become shared types.
#[allow(clippy::useless_conversion)]
fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|_| NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "Ticked".into(),
            schema_version: 1,
            codec: CodecId::Json,
            payload: b"null".to_vec().into(),
            metadata: Metadata::default(),
        })
        .collect()
}

fn counting_worker(holder: &str) -> Worker {
    Worker::new("lease-counters", || {
        ProjectionDaemon::builder()
            .with_save_interval(Duration::from_millis(20))
            .with(Count::default())
    })
    .with_holder(holder)
    .with_lease_time(Duration::from_millis(300))
}

/// The holder runs the read models; a second worker stands by; when the holder shuts down
/// (releasing its lease), the standby takes over with a higher token and goes on from the
/// saved checkpoint: the count is never applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_worker_failover_to_a_standby() {
    let store = InMemory::new();
    let first = counting_worker("node-a").start(store.clone());
    let held = first
        .wait_until_holding(Duration::from_secs(10))
        .await
        .unwrap();
    let second = counting_worker("node-b").start(store.clone());
    let stream = StreamId::new("clock", "1");
    let written = store
        .append(&stream, ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    wait_for_checkpoint(
        &store,
        Count::NAME,
        written.position,
        Duration::from_secs(10),
    )
    .await
    .expect("the holder saves its checkpoint");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        matches!(second.state(), WorkerState::Standby),
        "the second worker stands by while the first holds the lease"
    );

    first.shutdown().await;
    let taken = second
        .wait_until_holding(Duration::from_secs(10))
        .await
        .expect("the standby takes over");
    assert!(taken.token > held.token);
    assert_eq!(
        store
            .load_lease("lease-counters")
            .await
            .unwrap()
            .map(|lease| lease.holder),
        Some("node-b".to_owned())
    );
    let written = store
        .append(&stream, ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    let WorkerState::Holding { client, .. } = second.state() else {
        panic!("the second worker holds the lease");
    };
    client
        .wait_for(written.position, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        client.read(|count: &Count| count.0).unwrap(),
        8,
        "each event once"
    );
    assert_eq!(second.fenced_off(), 0);
    second.shutdown().await;
    assert_eq!(
        store.load_lease("lease-counters").await.unwrap(),
        None,
        "released"
    );
}

/// A writer on another store handle (another process, another node) reads its own write: it
/// waits on the durable checkpoints of an in-memory and a table read model run by a worker
/// elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lease_worker_read_your_writes_from_another_handle() {
    let (_directory, path) = sqlite_support::temporary_store_path();
    let node = es_core::Sqlite::open(&path).await.unwrap();
    let tables = node.table_database();
    let worker = Worker::new("lease-readers", move || {
        ProjectionDaemon::builder()
            .with_save_interval(Duration::from_millis(20))
            .with(Count::default())?
            .with_table(Rows, tables.clone())
    })
    .with_lease_time(Duration::from_secs(2))
    .start(node.clone());
    worker
        .wait_until_holding(Duration::from_secs(10))
        .await
        .unwrap();

    let writer = es_core::Sqlite::open(&path).await.unwrap();
    let written = writer
        .append(
            &StreamId::new("clock", "1"),
            ExpectedVersion::Any,
            events(7),
        )
        .await
        .unwrap();
    let reached = wait_for_checkpoint(
        &writer,
        Count::NAME,
        written.position,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(reached >= written.position);
    let writer_tables = writer.table_database();
    wait_for_table_checkpoint(
        &writer_tables,
        Rows::NAME,
        written.position,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let rows: i64 = writer_tables
        .read(|sql| sql.query("SELECT COUNT(*) FROM lease_rows", &[])?[0].get(0))
        .await
        .unwrap();
    assert_eq!(rows, 7, "the rows commit with the checkpoint the wait saw");
    worker.shutdown().await;
}

/// A wait that cannot be met ends at its timeout with a typed error naming the read model, the
/// position asked for and the one reached.
#[tokio::test]
async fn lease_durable_wait_times_out_with_a_typed_error() {
    let store = InMemory::new();
    let error = wait_for_checkpoint(
        &store,
        "nobody",
        GlobalPosition(5),
        Duration::from_millis(30),
    )
    .await
    .unwrap_err();
    match error {
        CheckpointWaitError::Timeout {
            projection,
            requested,
            reached,
            ..
        } => {
            assert_eq!(projection, "nobody");
            assert_eq!(requested, GlobalPosition(5));
            assert_eq!(reached, GlobalPosition::START);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}
