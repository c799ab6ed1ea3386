//! Opening files: what is recognised as a store, what is refused, and that a refused file is
//! left exactly as it was.

mod sqlite_support;

use std::path::Path;

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
            assert_eq!(supported, 2);
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
