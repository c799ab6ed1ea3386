//! Table read models under the daemon, beside in-memory ones, on the in-memory store's
//! private SQLite database: delivery, read-your-writes, retry and parking of a failing batch
//! (rolled back), resume, skip, restart from the durable checkpoint.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::tests::{all, append, Steady};
use super::*;
use crate::event::RecordedEvent;
use crate::projection::table::{Sql, SqlError, TableDatabase, TableProjection, TableStore, Value};
use crate::store::InMemory;

const WAIT: Duration = Duration::from_secs(30);

/// Inserts every position it applies into `seen_positions` (a primary key: a second
/// application of one event fails), and fails on `fail_at` while it is set.
struct SeenTable {
    fail_at: Arc<AtomicU64>,
    attempts: Arc<AtomicU32>,
}

#[derive(Debug, thiserror::Error)]
enum SeenError {
    #[error("seen table refuses position {0}")]
    Refused(u64),
    #[error(transparent)]
    Sql(#[from] SqlError),
}

impl TableProjection for SeenTable {
    const NAME: &'static str = "seen-table";
    const TABLES: &'static [&'static str] = &["seen_positions"];
    type Error = SeenError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "CREATE TABLE IF NOT EXISTS seen_positions (position BIGINT PRIMARY KEY)",
            &[],
        )?;
        Ok(())
    }

    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), SeenError> {
        let position = event.global_position.get();
        sql.execute(
            "INSERT INTO seen_positions (position) VALUES ($1)",
            &[Value::Integer(position as i64)],
        )?;
        if self.fail_at.load(Ordering::SeqCst) == position {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            return Err(SeenError::Refused(position));
        }
        Ok(())
    }
}

fn seen_table() -> (SeenTable, Arc<AtomicU64>, Arc<AtomicU32>) {
    let fail_at = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU32::new(0));
    let table = SeenTable {
        fail_at: Arc::clone(&fail_at),
        attempts: Arc::clone(&attempts),
    };
    (table, fail_at, attempts)
}

fn builder(table: SeenTable, database: TableDatabase) -> DaemonBuilder {
    ProjectionDaemon::builder()
        .with(Steady::default())
        .unwrap()
        .with_table(table, database)
        .unwrap()
        .with_retry(
            RetryPolicy::attempts(3)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(4)),
        )
        .with_save_interval(Duration::from_millis(20))
}

async fn positions(database: &TableDatabase) -> Vec<u64> {
    database
        .read(|sql| {
            sql.query("SELECT position FROM seen_positions ORDER BY position", &[])?
                .iter()
                .map(|row| row.get::<u64>(0))
                .collect()
        })
        .await
        .unwrap()
}

async fn durable_checkpoint(database: &TableDatabase) -> u64 {
    database
        .read(|sql| {
            sql.query(
                "SELECT position FROM es_table_checkpoints WHERE name = 'seen-table'",
                &[],
            )?[0]
                .get::<u64>(0)
        })
        .await
        .unwrap()
}

async fn wait_parked(daemon: &ProjectionDaemon) -> ReadModelStatus {
    let mut updates = daemon.client().updates();
    tokio::time::timeout(WAIT, async {
        loop {
            let status = daemon
                .status()
                .into_iter()
                .find(|status| status.name == SeenTable::NAME)
                .unwrap();
            if status.state.is_parked() {
                return status;
            }
            updates.changed().await.unwrap();
        }
    })
    .await
    .expect("the table read model was not parked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_and_memory_read_models_run_side_by_side_with_read_your_writes() {
    let store = InMemory::new();
    append(&store, "a", 3).await;
    let (table, _, _) = seen_table();
    let database = store.table_database();
    let daemon = builder(table, database.clone())
        .start(store.clone())
        .await
        .unwrap();
    let written = append(&store, "b", 4).await;
    daemon.wait_for(written, WAIT).await.unwrap();
    // Once the wait returns, the rows are committed with the checkpoint.
    assert_eq!(positions(&database).await, all(7));
    assert_eq!(durable_checkpoint(&database).await, 7);
    assert_eq!(
        daemon.read(|steady: &Steady| steady.seen.clone()).unwrap(),
        all(7)
    );
    let status = daemon.status();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|status| status.checkpoint == written));
    assert!(matches!(
        daemon.client().checkpoint(SeenTable::NAME),
        Ok(GlobalPosition(7))
    ));
    daemon.shutdown().await.unwrap();

    // A restart resumes from the durable checkpoint: nothing applied twice (the primary key
    // would park it), nothing missed.
    let (table, _, _) = seen_table();
    let daemon = builder(table, database.clone())
        .start(store.clone())
        .await
        .unwrap();
    let written = append(&store, "c", 2).await;
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(positions(&database).await, all(9));
    let saved = ProjectionDaemon::builder()
        .with_table(seen_table().0, database.clone())
        .unwrap()
        .saved_status(&store)
        .await
        .unwrap();
    assert_eq!(saved[0].checkpoint, GlobalPosition(9));
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_batch_rolls_back_is_retried_parked_and_resumed() {
    let store = InMemory::new();
    let (table, fail_at, attempts) = seen_table();
    fail_at.store(4, Ordering::SeqCst);
    let database = store.table_database();
    let daemon = builder(table, database.clone())
        .start(store.clone())
        .await
        .unwrap();
    let written = append(&store, "a", 6).await;
    let parked = wait_parked(&daemon).await;
    let ModelState::Parked(details) = &parked.state else {
        unreachable!()
    };
    assert_eq!(details.position, GlobalPosition(4));
    assert!(
        details.error.contains("refuses position 4"),
        "{}",
        details.error
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // The failed event's own row was rolled back; the events before it are committed.
    assert_eq!(parked.checkpoint, GlobalPosition(3));
    assert_eq!(positions(&database).await, all(3));
    assert_eq!(durable_checkpoint(&database).await, 3);
    // The in-memory read model went on.
    daemon
        .client()
        .wait_for_model::<Steady>(written, WAIT)
        .await
        .unwrap();
    assert!(matches!(
        daemon.wait_for(written, WAIT).await,
        Err(DaemonError::Parked {
            position: GlobalPosition(4),
            ..
        })
    ));
    // After the fix, resume applies the event once and catches up.
    fail_at.store(0, Ordering::SeqCst);
    daemon.resume(SeenTable::NAME).await.unwrap();
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(positions(&database).await, all(6));
    assert_eq!(durable_checkpoint(&database).await, 6);
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_moves_the_table_checkpoint_past_exactly_the_parked_event() {
    let store = InMemory::new();
    let (table, fail_at, _) = seen_table();
    fail_at.store(2, Ordering::SeqCst);
    let database = store.table_database();
    let daemon = builder(table, database.clone())
        .start(store.clone())
        .await
        .unwrap();
    let written = append(&store, "a", 4).await;
    wait_parked(&daemon).await;
    assert!(matches!(
        daemon.skip(SeenTable::NAME, GlobalPosition(3)).await,
        Err(DaemonError::SkipMismatch { .. })
    ));
    daemon
        .skip(SeenTable::NAME, GlobalPosition(2))
        .await
        .unwrap();
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(positions(&database).await, [1, 3, 4]);
    assert_eq!(durable_checkpoint(&database).await, 4);
    let status = daemon.status();
    let table_status = status
        .iter()
        .find(|status| status.name == SeenTable::NAME)
        .unwrap();
    assert_eq!(table_status.skipped[0].position, GlobalPosition(2));
    daemon.shutdown().await.unwrap();
}
