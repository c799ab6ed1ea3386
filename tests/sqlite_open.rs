//! Opening files: what is recognised as a store, what is refused, and that a refused file is
//! left exactly as it was.

mod sqlite_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, ProjectionStore, SavedProjection,
    Snapshot, SnapshotStore, StoreError, StreamId, Timestamp, Version, VersionRange,
};
use sqlite_support::{
    clock, file_names, json_event, open_with_clock, raw_connection, temporary_store_path, Rng,
};

/// Opens `path`, expecting a refusal, and checks that neither the file nor the directory
/// changed.
async fn refused(path: &Path) -> StoreError {
    let directory = path.parent().expect("a parent directory");
    let bytes_before = std::fs::read(path).expect("the file exists");
    let files_before = file_names(directory);
    let error = Sqlite::open(path).await.expect_err("the file is refused");
    assert_eq!(
        std::fs::read(path).expect("the file still exists"),
        bytes_before,
        "a refused file is left byte for byte as it was"
    );
    assert_eq!(
        file_names(directory),
        files_before,
        "no file is left behind"
    );
    error
}

fn assert_not_a_store(error: &StoreError, reason_contains: &str) {
    match error {
        StoreError::NotAStore { reason, .. } => assert!(
            reason.contains(reason_contains),
            "reason `{reason}` should mention `{reason_contains}`"
        ),
        other => panic!("expected NotAStore, got {other:?}"),
    }
}

#[tokio::test]
async fn random_bytes_are_not_a_store_and_stay_untouched() {
    let (_directory, path) = temporary_store_path();
    let mut rng = Rng::new(7);
    let bytes: Vec<u8> = (0..8192).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
    std::fs::write(&path, &bytes).unwrap();
    let error = refused(&path).await;
    assert_not_a_store(&error, "not a SQLite database");
}

#[tokio::test]
async fn a_short_text_file_is_not_a_store() {
    let (_directory, path) = temporary_store_path();
    std::fs::write(&path, b"hello").unwrap();
    assert_not_a_store(&refused(&path).await, "not a SQLite database");
}

#[tokio::test]
async fn a_damaged_file_with_the_sqlite_header_is_not_a_store() {
    let (_directory, path) = temporary_store_path();
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5, 4096));
    std::fs::write(&path, &bytes).unwrap();
    let error = refused(&path).await;
    assert!(
        matches!(error, StoreError::NotAStore { .. }),
        "expected NotAStore, got {error:?}"
    );
}

#[tokio::test]
async fn a_sqlite_database_with_other_tables_is_not_a_store() {
    let (_directory, path) = temporary_store_path();
    {
        let raw = raw_connection(&path);
        raw.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('ada');",
        )
        .unwrap();
    }
    assert_not_a_store(&refused(&path).await, "users");
}

#[tokio::test]
async fn a_sqlite_database_in_wal_mode_with_other_tables_is_not_a_store() {
    let (_directory, path) = temporary_store_path();
    {
        let raw = raw_connection(&path);
        raw.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .unwrap();
    }
    assert_not_a_store(&refused(&path).await, "events");
}

#[tokio::test]
async fn a_sqlite_database_of_another_application_is_not_a_store() {
    let (_directory, path) = temporary_store_path();
    {
        let raw = raw_connection(&path);
        raw.execute_batch("PRAGMA application_id = 42; CREATE TABLE t (x);")
            .unwrap();
    }
    assert_not_a_store(&refused(&path).await, "another application");
}

#[tokio::test]
async fn a_store_of_a_newer_schema_is_refused_and_untouched() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    store
        .append(
            &StreamId::new("account", "1"),
            ExpectedVersion::NoStream,
            vec![json_event("Opened", "{}")],
        )
        .await
        .unwrap();
    store.close().await;
    {
        let raw = raw_connection(&path);
        raw.execute("UPDATE meta SET value = 7 WHERE key = 'schema_version'", [])
            .unwrap();
    }
    match refused(&path).await {
        StoreError::NewerSchema { found, supported } => {
            assert_eq!(found, 7);
            assert_eq!(supported, 3);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn a_store_without_its_schema_version_is_corrupt() {
    let (_directory, path) = temporary_store_path();
    Sqlite::open(&path).await.unwrap().close().await;
    raw_connection(&path)
        .execute("DELETE FROM meta", [])
        .unwrap();
    let error = refused(&path).await;
    assert!(
        matches!(error, StoreError::Corrupt { .. }),
        "expected Corrupt, got {error:?}"
    );
}

#[tokio::test]
async fn an_empty_file_becomes_a_store() {
    let (_directory, path) = temporary_store_path();
    std::fs::write(&path, b"").unwrap();
    let store = Sqlite::open(&path).await.unwrap();
    let stream = StreamId::new("account", "1");
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![json_event("Opened", "{}")],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .read_stream(&stream, VersionRange::all())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_empty_sqlite_database_becomes_a_store() {
    // This is also what a process killed while creating a store leaves behind.
    let (_directory, path) = temporary_store_path();
    raw_connection(&path)
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA user_version = 0;")
        .unwrap();
    let store = Sqlite::open(&path).await.unwrap();
    assert_eq!(store.last_position().await.unwrap(), GlobalPosition::START);
}

#[tokio::test]
async fn reopening_keeps_events_snapshots_and_projections() {
    let (_directory, path) = temporary_store_path();
    let stream = StreamId::new("account", "1");
    let snapshot = Snapshot {
        stream: stream.clone(),
        version: Version(2),
        fingerprint: u64::MAX - 5,
        codec: CodecId::Postcard,
        state: vec![1, 2, 3],
        taken_at: Timestamp::from_micros(-5),
    };
    let projection = SavedProjection {
        name: "balances".to_owned(),
        position: GlobalPosition(2),
        codec: CodecId::Json,
        state: b"{}".to_vec(),
        saved_at: Timestamp::from_micros(99),
    };
    let written = {
        let store = open_with_clock(&path, clock()).await;
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![
                    json_event("Opened", "{}"),
                    json_event("Deposited", r#"{"amount":5}"#),
                ],
            )
            .await
            .unwrap();
        store.save_snapshot(snapshot.clone()).await.unwrap();
        store.save_projection(projection.clone()).await.unwrap();
        let written = store.read_all(GlobalPosition::START, 10).await.unwrap();
        store.close().await;
        written
    };
    let store = Sqlite::open(&path).await.unwrap();
    assert_eq!(
        store.read_all(GlobalPosition::START, 10).await.unwrap(),
        written
    );
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot));
    assert_eq!(
        store.load_projection("balances").await.unwrap(),
        Some(projection)
    );
    let outcome = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version(2)),
            vec![json_event("Closed", "{}")],
        )
        .await
        .unwrap();
    assert_eq!(outcome.version, Version(3));
    assert_eq!(outcome.position, GlobalPosition(3));
}

#[tokio::test]
async fn both_durability_settings_open_and_append() {
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let (_directory, path) = temporary_store_path();
        let store = Sqlite::open_with(&path, SqliteOptions::new().with_synchronous(synchronous))
            .await
            .unwrap();
        let stream = StreamId::new("account", "1");
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![json_event("Opened", "{}")],
            )
            .await
            .unwrap();
        store.close().await;
        let mode: String = raw_connection(&path)
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal", "{synchronous:?}");
    }
}

#[tokio::test]
async fn zero_read_connections_is_a_configuration_error() {
    let (_directory, path) = temporary_store_path();
    let error = Sqlite::open_with(&path, SqliteOptions::new().with_read_connections(0))
        .await
        .expect_err("zero readers are refused");
    assert!(matches!(error, StoreError::Config(_)), "got {error:?}");
    assert!(
        !path.exists(),
        "nothing is created for a refused configuration"
    );
}

#[tokio::test]
async fn a_missing_directory_is_a_backend_error() {
    let (directory, _) = temporary_store_path();
    let path = directory.path().join("missing").join("events.db");
    let error = Sqlite::open(&path)
        .await
        .expect_err("the directory does not exist");
    assert!(matches!(error, StoreError::Backend(_)), "got {error:?}");
}

#[tokio::test]
async fn a_closed_store_answers_closed() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let clone = store.clone();
    store.close().await;
    let stream = StreamId::new("account", "1");
    let append = clone
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![json_event("Opened", "{}")],
        )
        .await;
    assert!(matches!(append, Err(StoreError::Closed)), "got {append:?}");
    let read = clone.read_stream(&stream, VersionRange::all()).await;
    assert!(matches!(read, Err(StoreError::Closed)), "got {read:?}");
    clone.close().await;
    // The closed store released the file: it opens again with everything in it.
    let reopened = Sqlite::open(&path).await.unwrap();
    assert_eq!(
        reopened.last_position().await.unwrap(),
        GlobalPosition::START
    );
}

#[tokio::test]
async fn an_empty_append_is_refused() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let error = store
        .append(
            &StreamId::new("account", "1"),
            ExpectedVersion::Any,
            Vec::new(),
        )
        .await
        .expect_err("an empty batch is refused");
    assert!(matches!(error, StoreError::EmptyAppend), "got {error:?}");
}

/// Several stores (as several processes would) opening one new file at the same moment race
/// to switch it to WAL mode and create the schema: every one of them opens it, and the schema
/// is created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opening_one_new_file_at_once_all_open_it() {
    for round in 0..30 {
        let (directory, path) = temporary_store_path();
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { Sqlite::open(&path).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            let store = open
                .await
                .expect("the task runs")
                .unwrap_or_else(|error| panic!("round {round}: a concurrent open failed: {error}"));
            stores.push(store);
        }
        let stream = StreamId::new("account", "1");
        stores[0]
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![json_event("Opened", "{}")],
            )
            .await
            .unwrap();
        let read = stores[3]
            .read_stream(&stream, VersionRange::all())
            .await
            .unwrap();
        assert_eq!(read.len(), 1);
        for store in stores {
            store.close().await;
        }
        drop(directory);
    }
}

/// Every file in `directory` and its bytes.
fn files_and_bytes(directory: &Path) -> BTreeMap<String, Vec<u8>> {
    file_names(directory)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(directory.join(&name)).expect("a readable file");
            (name, bytes)
        })
        .collect()
}

/// The name and length of each file, for messages.
fn sizes(files: &BTreeMap<String, Vec<u8>>) -> Vec<(&str, usize)> {
    files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.len()))
        .collect()
}

/// Copies `from` and its `-journal` and `-wal` files (those that exist) to `to`.
fn copy_with_recovery_files(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("the database copies");
    for suffix in ["-journal", "-wal"] {
        let (mut source, mut target) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
        source.push(suffix);
        target.push(suffix);
        if Path::new(&source).exists() {
            std::fs::copy(&source, &target).expect("the recovery file copies");
        }
    }
}

/// The variables that make this test binary a process that crashes in the middle of a
/// transaction on another application's database ([`foreign_database_with_a_hot_journal`]).
const CRASHING_CHILD: &str = "ES_SQLITE_OPEN_CRASHING_CHILD";
const CRASHING_APPLICATION_ID: &str = "ES_SQLITE_OPEN_CRASHING_APPLICATION_ID";

#[test]
fn another_application_crashes_mid_transaction() {
    // Only does something as the child of `foreign_database_with_a_hot_journal`.
    let Ok(path) = std::env::var(CRASHING_CHILD) else {
        return;
    };
    let application_id: i32 = std::env::var(CRASHING_APPLICATION_ID)
        .unwrap()
        .parse()
        .unwrap();
    let raw = raw_connection(Path::new(&path));
    raw.execute_batch(&format!(
        "PRAGMA journal_mode = DELETE;
         PRAGMA application_id = {application_id};
         CREATE TABLE documents (body BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
         INSERT INTO documents SELECT zeroblob(1000) FROM n;"
    ))
    .unwrap();
    // A cache too small for the change: SQLite writes pages into the file before the commit.
    raw.execute_batch(
        "PRAGMA cache_size = 2; BEGIN; UPDATE documents SET body = randomblob(1000);",
    )
    .unwrap();
    println!("CRASHING");
    // The crash: no rollback, no close; the journal stays behind, hot.
    std::process::exit(0);
}

/// Another application's database as a crash in the middle of a transaction leaves it: the
/// file with some pages already overwritten, and the hot journal that would undo them.
fn foreign_database_with_a_hot_journal(directory: &Path, application_id: i32) -> PathBuf {
    let crashed = directory.join("events.db");
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "another_application_crashes_mid_transaction",
            "--nocapture",
        ])
        .env(CRASHING_CHILD, &crashed)
        .env(CRASHING_APPLICATION_ID, application_id.to_string())
        .output()
        .expect("the child runs");
    assert!(String::from_utf8_lossy(&output.stdout).contains("CRASHING"));
    let mut journal = crashed.as_os_str().to_owned();
    journal.push("-journal");
    assert!(
        std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0),
        "the crash left a journal"
    );
    crashed
}

/// Another application's database in WAL mode as a crash leaves it: its tables only in the
/// write-ahead log, which SQLite would checkpoint into the file and delete.
fn foreign_database_with_a_write_ahead_log(directory: &Path, application_id: i32) -> PathBuf {
    let live = directory.join("live.db");
    let raw = raw_connection(&live);
    raw.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA application_id = {application_id};
         CREATE TABLE documents (body TEXT);
         INSERT INTO documents VALUES ('kept in the log');"
    ))
    .unwrap();
    let crashed = directory.join("events.db");
    copy_with_recovery_files(&live, &crashed);
    drop(raw);
    std::fs::remove_file(&live).unwrap();
    let mut wal = crashed.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
        "the crash left a write-ahead log"
    );
    crashed
}

/// The variable that makes this test binary open the database it names with plain SQLite
/// and read its schema, in a process of its own ([`sqlite_would_recover`]).
const RECOVERING_CHILD: &str = "ES_SQLITE_OPEN_RECOVERING_CHILD";

#[test]
fn plain_sqlite_reads_a_database() {
    // Only does something as the child of `sqlite_would_recover`.
    if let Ok(path) = std::env::var(RECOVERING_CHILD) {
        let raw = raw_connection(Path::new(&path));
        let tables: i64 = raw
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .unwrap();
        drop(raw);
        println!("TABLES {tables}");
    }
}

/// Proves the damaged state is real: plain SQLite, opening a copy of it (in a process of its
/// own, so no connection of this one can share its locks), changes the files.
fn sqlite_would_recover(crashed: &Path) {
    let control_directory = tempfile::tempdir().unwrap();
    let control = control_directory.path().join("control.db");
    copy_with_recovery_files(crashed, &control);
    let before = files_and_bytes(control_directory.path());
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "plain_sqlite_reads_a_database", "--nocapture"])
        .env(RECOVERING_CHILD, &control)
        .output()
        .expect("the child runs");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("TABLES 1"),
        "plain SQLite reads the control copy"
    );
    let after = files_and_bytes(control_directory.path());
    assert!(
        after != before,
        "plain SQLite recovers (and so changes) the files: {:?} before, {:?} after",
        sizes(&before),
        sizes(&after)
    );
}

#[tokio::test]
async fn a_foreign_database_with_a_hot_journal_is_refused_without_being_rolled_back() {
    for application_id in [0, 42] {
        let directory = tempfile::tempdir().unwrap();
        let crashed = foreign_database_with_a_hot_journal(directory.path(), application_id);
        sqlite_would_recover(&crashed);
        let before = files_and_bytes(directory.path());
        let error = Sqlite::open(&crashed)
            .await
            .expect_err("another application's file");
        assert!(
            matches!(error, StoreError::NotAStore { .. }),
            "application_id {application_id}: {error:?}"
        );
        assert_eq!(
            files_and_bytes(directory.path()),
            before,
            "application_id {application_id}: the file and its journal are left byte for byte"
        );
    }
}

#[tokio::test]
async fn a_foreign_database_with_a_write_ahead_log_is_refused_without_a_checkpoint() {
    for application_id in [0, 42] {
        let directory = tempfile::tempdir().unwrap();
        let crashed = foreign_database_with_a_write_ahead_log(directory.path(), application_id);
        sqlite_would_recover(&crashed);
        let before = files_and_bytes(directory.path());
        let error = Sqlite::open(&crashed)
            .await
            .expect_err("another application's file");
        assert!(
            matches!(error, StoreError::NotAStore { .. }),
            "application_id {application_id}: {error:?}"
        );
        assert_eq!(
            files_and_bytes(directory.path()),
            before,
            "application_id {application_id}: the file and its log are left byte for byte"
        );
    }
}

#[tokio::test]
async fn a_store_that_crashed_before_its_first_checkpoint_opens_with_its_events() {
    // Its header does not carry the application id yet (that page is still in the log), so it
    // is told from a foreign file by inspecting a copy.
    let directory = tempfile::tempdir().unwrap();
    let live = directory.path().join("live.db");
    let store = Sqlite::open(&live).await.unwrap();
    let stream = StreamId::new("order", "o-1");
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![json_event("Created", "{}"), json_event("Paid", "{}")],
        )
        .await
        .unwrap();
    let crashed = directory.path().join("crashed.db");
    copy_with_recovery_files(&live, &crashed);
    store.close().await;

    let reopened = Sqlite::open(&crashed).await.expect("our own store opens");
    let events = reopened
        .read_stream(&stream, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn a_named_pipe_is_refused_without_blocking() {
    let (directory, _) = temporary_store_path();
    let fifo = directory.path().join("events.db");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // Only a guard against hanging the suite for ever: opening a FIFO for reading blocks until
    // a writer appears, and none ever will.
    let error = tokio::time::timeout(Duration::from_mins(5), Sqlite::open(&fifo))
        .await
        .expect("the open returns instead of blocking")
        .expect_err("a FIFO is not a store");
    assert_not_a_store(&error, "named pipe");
}

#[tokio::test]
async fn a_directory_is_refused_as_not_a_regular_file() {
    let (directory, _) = temporary_store_path();
    let error = Sqlite::open(directory.path())
        .await
        .expect_err("a directory is not a store");
    assert_not_a_store(&error, "a directory");
}

#[tokio::test]
async fn a_truncated_store_is_damaged_not_foreign() {
    let (directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    for order in 0..200 {
        store
            .append(
                &StreamId::new("order", format!("o-{order}")),
                ExpectedVersion::NoStream,
                vec![json_event(
                    "Created",
                    &format!(r#"{{"note":"{}"}}"#, "x".repeat(200)),
                )],
            )
            .await
            .unwrap();
    }
    store.close().await;
    let whole = std::fs::read(&path).unwrap();
    assert!(whole.len() > 16 * 4096, "a store of many pages");
    for length in [20, 99, 100, 4096, 8192, whole.len() / 2, whole.len() - 4096] {
        let cut = directory.path().join(format!("cut-{length}.db"));
        std::fs::write(&cut, &whole[..length]).unwrap();
        match Sqlite::open(&cut).await {
            Err(StoreError::Corrupt { .. }) => {}
            Err(other) => panic!("cut at {length} bytes: expected Corrupt, got {other:?}"),
            Ok(opened) => {
                // SQLite reads lazily: the damage shows where the missing pages are read.
                let error = opened
                    .read_all(GlobalPosition(0), 10_000)
                    .await
                    .expect_err(&format!("cut at {length} bytes: events are missing"));
                assert!(
                    matches!(error, StoreError::Corrupt { .. }),
                    "cut at {length} bytes: {error:?}"
                );
            }
        }
    }
}

/// The variable that makes this test binary a creating child of
/// [`four_processes_creating_one_new_file_all_open_it`].
const CREATING_CHILD: &str = "ES_SQLITE_OPEN_CREATING_CHILD";
/// The file a creating child waits for before it opens the store, so all start together.
const START_SIGNAL: &str = "ES_SQLITE_OPEN_START_SIGNAL";

#[test]
fn four_processes_creating_one_new_file_all_open_it() {
    const ROUNDS: usize = 15;
    const PROCESSES: usize = 4;
    if let Ok(path) = std::env::var(CREATING_CHILD) {
        creating_child(Path::new(&path));
    }
    let name = "four_processes_creating_one_new_file_all_open_it";
    for round in 0..ROUNDS {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("events.db");
        let start = directory.path().join("start");
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(std::env::current_exe().expect("this test binary"))
                    .args(["--exact", name, "--nocapture", "--test-threads=1"])
                    .env(CREATING_CHILD, &path)
                    .env(START_SIGNAL, &start)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("the child starts")
            })
            .collect();
        std::fs::write(&start, b"go").unwrap();
        for child in children {
            let output = child.wait_with_output().expect("the child finishes");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("OPENED"),
                "round {round}: a creating process failed ({}): {stdout} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let events = runtime.block_on(async {
            let store = Sqlite::open(&path).await.unwrap();
            store.read_all(GlobalPosition(0), 100).await.unwrap()
        });
        assert_eq!(
            events.len(),
            PROCESSES,
            "round {round}: one event per process"
        );
    }
}

/// Waits for the start signal, opens (creating) the store, appends one event, and reports.
fn creating_child(path: &Path) -> ! {
    let start = PathBuf::from(std::env::var(START_SIGNAL).expect("the start signal's path"));
    while !start.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let result = runtime.block_on(async {
        let store = Sqlite::open(path).await?;
        store
            .append(
                &StreamId::new("creator", std::process::id().to_string()),
                ExpectedVersion::NoStream,
                vec![json_event("Created", "{}")],
            )
            .await?;
        store.close().await;
        Ok::<_, StoreError>(())
    });
    match result {
        Ok(()) => {
            println!("OPENED");
            std::process::exit(0)
        }
        Err(error) => {
            println!("FAILED {error:?}");
            std::process::exit(1)
        }
    }
}
