//! Table read models on the durable stores (SQLite file, PostgreSQL schema): exactly once
//! across a process killed in the middle of a batch, a fenced holder commits nothing, a
//! rebuild is atomic for readers on other connections, temporal queries, restarts.
//!
//! The crash tests' child is this same test binary, started with the test's name and an
//! environment variable that switches the test into the child's role. PostgreSQL tests skip
//! without `ES_POSTGRES_URL` (see `postgres_support`).

mod postgres_support;
mod sqlite_support;

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use es_core::projection::daemon::ProjectionDaemon;
use es_core::projection::table::{
    Sql, SqlError, TableDatabase, TableProjection, TableStore, Tables,
};
use es_core::{
    AsOf, EventStore, ExpectedVersion, GlobalPosition, LeaseStore, ProjectionError, RecordedEvent,
    Store, StoreError, StoreOptions, StreamId,
};
use postgres_support::TestSchema;
use sqlite_support::{json_event, temporary_store_path};

/// Set in the crash test's child: the store URL.
const CHILD_URL: &str = "ES_TABLE_CRASH_CHILD_URL";
/// Set in the child for PostgreSQL: the schema.
const CHILD_SCHEMA: &str = "ES_TABLE_CRASH_CHILD_SCHEMA";
/// Set in the child: the position at which its read model stops in the middle of the batch.
const CHILD_GATE: &str = "ES_TABLE_CRASH_CHILD_GATE";

const WAIT: Duration = Duration::from_secs(30);

/// Where a test's store is: a URL, and the PostgreSQL schema if any.
#[derive(Clone)]
struct Target {
    url: String,
    schema: Option<String>,
}

impl Target {
    /// A new handle on the store (its own connections).
    async fn open(&self) -> Store {
        let mut options = StoreOptions::new();
        if let Some(schema) = &self.schema {
            options = options.with_postgres_schema(schema.clone());
        }
        Store::open_with(&self.url, options)
            .await
            .expect("the test store opens")
    }
}

/// Runs `test` on a fresh SQLite file.
fn on_sqlite<F: std::future::Future<Output = ()>>(test: impl FnOnce(Target) -> F) {
    let (_directory, path) = temporary_store_path();
    let target = Target {
        url: format!("sqlite:{}", path.display()),
        schema: None,
    };
    runtime().block_on(test(target));
}

/// Runs `test` in a fresh PostgreSQL schema (or skips without a server).
fn on_postgres<F: std::future::Future<Output = ()>>(name: &str, test: impl FnOnce(Target) -> F) {
    let Some(schema) = TestSchema::new(name) else {
        return;
    };
    let target = Target {
        url: schema.url().to_owned(),
        schema: Some(schema.name().to_owned()),
    };
    runtime().block_on(test(target));
    drop(schema);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Records every applied event as a row (no key: a second application would show as a
/// duplicate) and counts applications per position. Optionally stops at `gate`, in the middle
/// of its batch: it tells `reached` and waits on `release` (or, in a crash child, forever).
#[derive(Default)]
struct Ledger {
    gate: Option<u64>,
    reached: Option<Mutex<mpsc::Sender<()>>>,
    release: Option<Mutex<mpsc::Receiver<()>>>,
}

impl TableProjection for Ledger {
    const NAME: &'static str = "ledger";
    const TABLES: &'static [&'static str] = &["ledger_rows", "ledger_applications"];
    type Error = SqlError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "CREATE TABLE IF NOT EXISTS ledger_rows (position BIGINT NOT NULL, \
             stream TEXT NOT NULL, event_type TEXT NOT NULL)",
            &[],
        )?;
        sql.execute(
            "CREATE TABLE IF NOT EXISTS ledger_applications (position BIGINT PRIMARY KEY, \
             applications BIGINT NOT NULL)",
            &[],
        )?;
        Ok(())
    }

    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), SqlError> {
        let position = i64::try_from(event.global_position.get()).expect("a small position");
        sql.execute(
            "INSERT INTO ledger_rows (position, stream, event_type) VALUES ($1, $2, $3)",
            &[
                position.into(),
                event.stream.aggregate_id().into(),
                (*event.event_type).into(),
            ],
        )?;
        sql.execute(
            "INSERT INTO ledger_applications (position, applications) VALUES ($1, 1) \
             ON CONFLICT (position) DO UPDATE SET \
             applications = ledger_applications.applications + 1",
            &[position.into()],
        )?;
        if self.gate == Some(event.global_position.get()) {
            if let Some(reached) = &self.reached {
                let _ = reached.lock().unwrap().send(());
            }
            if let Some(release) = &self.release {
                let _ = release.lock().unwrap().recv();
            } else {
                // The crash child: say so, with this batch's rows written but not committed,
                // straight to the process's standard output (not the test harness's capture,
                // which this blocking thread may inherit), and wait for the kill.
                let mut stdout = std::io::stdout().lock();
                let _ = stdout
                    .write_all(b"IN BATCH\n")
                    .and_then(|()| stdout.flush());
                drop(stdout);
                loop {
                    std::thread::sleep(Duration::from_mins(1));
                }
            }
        }
        Ok(())
    }
}

async fn append(store: &Store, count: usize) -> GlobalPosition {
    let mut last = GlobalPosition::START;
    for index in 0..count {
        let stream = StreamId::new("ledger", format!("s{}", index % 3));
        last = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![json_event("Noted", "{}")],
            )
            .await
            .expect("an append")
            .position;
    }
    last
}

/// Positions of the rows, in order (duplicates kept).
async fn rows(database: &TableDatabase) -> Vec<u64> {
    database
        .read(|sql| {
            sql.query("SELECT position FROM ledger_rows ORDER BY position", &[])?
                .iter()
                .map(|row| row.get::<u64>(0))
                .collect()
        })
        .await
        .expect("the rows read")
}

/// How many times each position was applied, if any more than once.
async fn applied_twice(database: &TableDatabase) -> Vec<(u64, u64)> {
    database
        .read(|sql| {
            sql.query(
                "SELECT position, applications FROM ledger_applications \
                 WHERE applications <> 1 ORDER BY position",
                &[],
            )?
            .iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
        })
        .await
        .expect("the counts read")
}

fn all(to: u64) -> Vec<u64> {
    (1..=to).collect()
}

// ---------------------------------------------------------------------------------------
// Exactly once across a process killed in the middle of a batch.

#[test]
fn a_table_batch_killed_before_its_commit_is_applied_once_on_resume_sqlite() {
    let name = "a_table_batch_killed_before_its_commit_is_applied_once_on_resume_sqlite";
    if let Ok(url) = std::env::var(CHILD_URL) {
        crash_child(url, None);
    }
    on_sqlite(|target| crash_parent(name, target));
}

#[test]
fn a_table_batch_killed_before_its_commit_is_applied_once_on_resume_postgres() {
    let name = "a_table_batch_killed_before_its_commit_is_applied_once_on_resume_postgres";
    if let Ok(url) = std::env::var(CHILD_URL) {
        crash_child(url, std::env::var(CHILD_SCHEMA).ok());
    }
    on_postgres(name, |target| crash_parent(name, target));
}

/// Catches the ledger up with a gate in the middle of the batch: it stops there forever, its
/// batch written but not committed, until the parent kills it.
fn crash_child(url: String, schema: Option<String>) -> ! {
    let gate: u64 = std::env::var(CHILD_GATE)
        .expect("the gate")
        .parse()
        .expect("a position");
    runtime().block_on(async {
        let store = Target { url, schema }.open().await;
        let ledger = Ledger {
            gate: Some(gate),
            ..Ledger::default()
        };
        let tables = Tables::open(ledger, store.table_database())
            .await
            .expect("the child opens the tables");
        tables.catch_up(&store).await.expect("the child catches up");
    });
    unreachable!("the child is killed inside its batch")
}

async fn crash_parent(name: &str, target: Target) {
    let store = target.open().await;
    let tables = Tables::open(Ledger::default(), store.table_database())
        .await
        .unwrap();
    // A first batch commits.
    append(&store, 20).await;
    tables.catch_up(&store).await.unwrap();
    assert_eq!(tables.checkpoint().await.unwrap(), GlobalPosition(20));

    // The child applies 21..=35 of the next 30 in one transaction and is killed before its
    // commit, twice (the second time on top of whatever the first left).
    let last = append(&store, 30).await;
    for round in 0..2 {
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_URL, &target.url)
            .env(CHILD_SCHEMA, target.schema.clone().unwrap_or_default())
            .env(CHILD_GATE, "35")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().expect("the child's output");
        let in_batch = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The harness's `test ... ` line has no line end yet when the child prints.
            .any(|line| line.ends_with("IN BATCH"));
        assert!(
            in_batch,
            "round {round}: the child reached the middle of its batch"
        );
        child.kill().expect("the child is killed");
        let status = child.wait().expect("the child is reaped");
        assert_eq!(status.signal(), Some(9), "round {round}: killed ({status})");

        // Nothing of the killed batch is there: rows and checkpoint as before.
        let reopened = target.open().await;
        let database = reopened.table_database();
        assert_eq!(rows(&database).await, all(20), "round {round}");
        let ledger = Tables::open(Ledger::default(), database).await.unwrap();
        assert_eq!(ledger.checkpoint().await.unwrap(), GlobalPosition(20));
        reopened.close().await;
    }

    // Resumed: every event applied exactly once, equal to a fresh replay.
    let resumed = target.open().await;
    let database = resumed.table_database();
    let ledger = Tables::open(Ledger::default(), database.clone())
        .await
        .unwrap();
    let report = ledger.catch_up(&resumed).await.unwrap();
    assert_eq!((report.events, report.position), (30, last));
    assert_eq!(rows(&database).await, all(last.get()));
    assert!(applied_twice(&database).await.is_empty());
    let replayed = ledger.as_of(&resumed, AsOf::Position(last)).await.unwrap();
    assert_eq!(rows(&replayed).await, rows(&database).await);
    resumed.close().await;
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// A holder whose lease moved on commits nothing.

#[test]
fn a_fenced_table_holder_commits_nothing_sqlite() {
    on_sqlite(fenced_holder);
}

#[test]
fn a_fenced_table_holder_commits_nothing_postgres() {
    on_postgres(
        "a_fenced_table_holder_commits_nothing_postgres",
        fenced_holder,
    );
}

async fn fenced_holder(target: Target) {
    let store = target.open().await;
    let lease_time = Duration::from_mins(1);
    let first = store
        .try_acquire("ledger-worker", "node-a", lease_time)
        .await
        .unwrap()
        .expect("node a holds the lease");
    let database = store.table_database();
    let daemon = ProjectionDaemon::builder()
        .with_table(Ledger::default(), database.clone())
        .unwrap()
        .with_fence(first.fence())
        .with_save_interval(Duration::from_millis(20))
        .start(store.clone())
        .await
        .unwrap();
    let written = append(&store, 5).await;
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(rows(&database).await, all(5));

    // Node b takes the lease over (node a's is released here; an expiry works the same).
    assert!(store.release(&first).await.unwrap());
    let second = store
        .try_acquire("ledger-worker", "node-b", lease_time)
        .await
        .unwrap()
        .expect("node b holds the lease");
    assert!(second.token > first.token);

    // Node a, still running, is refused on its next batch and stops, having written nothing.
    append(&store, 3).await;
    let stopped = tokio::time::timeout(WAIT, async {
        while !daemon.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "the fenced daemon stopped");
    let outcome = daemon.shutdown().await;
    assert!(
        matches!(&outcome, Err(ProjectionError::Store(error)) if error.is_fenced()),
        "{outcome:?}"
    );
    assert_eq!(rows(&database).await, all(5));
    let ledger = Tables::open(Ledger::default(), database.clone())
        .await
        .unwrap();
    assert_eq!(ledger.checkpoint().await.unwrap(), GlobalPosition(5));

    // A direct write under the old fence is refused too; under the new one it commits.
    let refused = database
        .write_fenced(Some(first.fence()), |sql| {
            sql.execute(
                "INSERT INTO ledger_rows (position, stream, event_type) VALUES (99, 'x', 'x')",
                &[],
            )
        })
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(rows(&database).await, all(5));

    // Node b resumes from the durable checkpoint: each event once.
    let daemon = ProjectionDaemon::builder()
        .with_table(Ledger::default(), database.clone())
        .unwrap()
        .with_fence(second.fence())
        .start(store.clone())
        .await
        .unwrap();
    daemon.wait_for(GlobalPosition(8), WAIT).await.unwrap();
    daemon.shutdown().await.unwrap();
    assert_eq!(rows(&database).await, all(8));
    assert!(applied_twice(&database).await.is_empty());
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Rebuild: readers on other connections see the old rows until the new ones commit.

#[test]
fn a_table_rebuild_is_atomic_for_readers_sqlite() {
    on_sqlite(atomic_rebuild);
}

#[test]
fn a_table_rebuild_is_atomic_for_readers_postgres() {
    on_postgres(
        "a_table_rebuild_is_atomic_for_readers_postgres",
        atomic_rebuild,
    );
}

async fn atomic_rebuild(target: Target) {
    let store = target.open().await;
    append(&store, 10).await;
    let (reached_sender, reached) = mpsc::channel();
    let (release, release_receiver) = mpsc::channel();
    let ledger = Ledger {
        gate: Some(6),
        reached: Some(Mutex::new(reached_sender)),
        release: Some(Mutex::new(release_receiver)),
    };
    let database = store.table_database();
    let tables = Arc::new(Tables::open(ledger, database).await.unwrap());
    // The first catch-up passes the gate (released ahead of time).
    release.send(()).unwrap();
    tables.catch_up(&store).await.unwrap();
    reached.recv().unwrap();
    // A row the log does not explain: the rebuild drops it.
    store
        .table_database()
        .write(|sql| {
            sql.execute(
                "INSERT INTO ledger_rows (position, stream, event_type) VALUES (0, 'ghost', 'x')",
                &[],
            )
        })
        .await
        .unwrap()
        .unwrap();
    let before: Vec<u64> = std::iter::once(0).chain(all(10)).collect();

    let rebuilding = {
        let tables = Arc::clone(&tables);
        let store = store.clone();
        tokio::spawn(async move { tables.rebuild(&store).await })
    };
    // The rebuild stops at event 6, its table emptied and half refilled, uncommitted.
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    let reader = target.open().await;
    assert_eq!(rows(&reader.table_database()).await, before);
    release.send(()).unwrap();
    let report = rebuilding.await.unwrap().unwrap();
    assert_eq!(report.position, GlobalPosition(10));
    assert_eq!(rows(&reader.table_database()).await, all(10));
    assert!(applied_twice(&reader.table_database()).await.is_empty());
    reader.close().await;
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Temporal queries and a failing batch on the durable stores.

#[test]
fn table_as_of_and_failed_batches_sqlite() {
    on_sqlite(as_of_and_failures);
}

#[test]
fn table_as_of_and_failed_batches_postgres() {
    on_postgres(
        "table_as_of_and_failed_batches_postgres",
        as_of_and_failures,
    );
}

/// Refuses events of type `Bad`, after writing a row for them.
struct Picky;

impl TableProjection for Picky {
    const NAME: &'static str = "picky";
    const TABLES: &'static [&'static str] = &["picky_rows"];
    type Error = SqlError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "CREATE TABLE IF NOT EXISTS picky_rows (position BIGINT PRIMARY KEY)",
            &[],
        )?;
        Ok(())
    }

    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "INSERT INTO picky_rows (position) VALUES ($1)",
            &[i64::try_from(event.global_position.get()).unwrap().into()],
        )?;
        if &*event.event_type == "Bad" {
            // A statement PostgreSQL refuses (and aborts the transaction on).
            sql.execute("SELECT no_such_column FROM picky_rows", &[])?;
        }
        Ok(())
    }
}

async fn as_of_and_failures(target: Target) {
    let store = target.open().await;
    let database = store.table_database();
    let ledger = Tables::open(Ledger::default(), database.clone())
        .await
        .unwrap();
    append(&store, 4).await;
    ledger.catch_up(&store).await.unwrap();
    append(&store, 3).await;
    ledger.catch_up(&store).await.unwrap();
    let at_four = ledger
        .as_of(&store, AsOf::Position(GlobalPosition(4)))
        .await
        .unwrap();
    assert_eq!(rows(&at_four).await, all(4));
    assert_eq!(rows(&database).await, all(7));

    // A failing statement rolls its batch back; the events before it stay committed.
    let picky = Tables::open(Picky, database.clone()).await.unwrap();
    store
        .append(
            &StreamId::new("ledger", "bad"),
            ExpectedVersion::Any,
            vec![json_event("Bad", "{}"), json_event("Noted", "{}")],
        )
        .await
        .unwrap();
    let error = picky.catch_up(&store).await.unwrap_err();
    assert!(
        matches!(
            &error,
            ProjectionError::Apply {
                position: GlobalPosition(8),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(picky.checkpoint().await.unwrap(), GlobalPosition(7));
    let kept: Vec<u64> = database
        .read(|sql| {
            sql.query("SELECT position FROM picky_rows ORDER BY position", &[])?
                .iter()
                .map(|row| row.get::<u64>(0))
                .collect()
        })
        .await
        .unwrap();
    assert_eq!(kept, all(7));
    store.close().await;
}
