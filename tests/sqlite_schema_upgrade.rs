//! Upgrading store files written by older releases: schema version 1 (no unique event ids)
//! becomes version 2 on open, in one transaction; a file the upgrade cannot take (an event id
//! stored twice) is refused with a typed error and left exactly as it was.

mod sqlite_support;

use std::path::Path;

use es_core::store::sqlite::Sqlite;
use es_core::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamId, VersionRange};
use sqlite_support::{file_names, json_event, raw_connection, temporary_store_path};

/// Writes a store of schema version 1 at `path` holding `events` in `stream`: the layout of
/// version 1 is the current one without the unique index on event ids (version 2) and the
/// `leases` table (version 3).
async fn schema_1_store(path: &Path, stream: &StreamId, events: Vec<NewEvent>) {
    let store = Sqlite::open(path).await.unwrap();
    store
        .append(stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    store.close().await;
    let raw = raw_connection(path);
    raw.execute_batch(
        "DROP INDEX events_by_event_id;
         DROP TABLE leases;
         UPDATE meta SET value = 1 WHERE key = 'schema_version';",
    )
    .unwrap();
}

fn schema_version(path: &Path) -> i64 {
    raw_connection(path)
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn idempotent_ids_schema_1_store_is_upgraded_on_open() {
    let (_directory, path) = temporary_store_path();
    let stream = StreamId::new("account", "1");
    let events = vec![json_event("Opened", "{}"), json_event("Deposited", "{}")];
    schema_1_store(&path, &stream, events.clone()).await;
    assert_eq!(schema_version(&path), 1);

    let store = Sqlite::open(&path).await.expect("a version 1 store opens");
    let stored = store
        .read_stream(&stream, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "the events survive the upgrade");
    assert_eq!(stored[0].event_id, events[0].event_id);
    // The upgraded store keeps ids unique, and answers retries.
    let retry = store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .expect("a retry of the stored batch");
    assert_eq!(retry.version.get(), 2);
    let error = store
        .append(
            &StreamId::new("account", "2"),
            ExpectedVersion::NoStream,
            events,
        )
        .await
        .expect_err("a stored id in another stream");
    assert!(
        matches!(error, StoreError::DuplicateEventIds(_)),
        "{error:?}"
    );
    store.close().await;
    assert_eq!(schema_version(&path), 3, "upgraded to the newest version");
    // The index is in the file itself, so even a raw insert cannot repeat an id.
    let raw = raw_connection(&path);
    let copied = raw.execute(
        "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, \
         schema_version, codec, payload, metadata, recorded_at) \
         SELECT 'copy', aggregate_id, version, event_id, event_type, schema_version, codec, \
         payload, metadata, recorded_at FROM events WHERE version = 1",
        [],
    );
    assert!(copied.is_err(), "the unique index refuses a copied id");
}

#[tokio::test]
async fn idempotent_ids_upgrade_refuses_a_store_holding_an_id_twice_and_leaves_it_untouched() {
    let (directory, path) = temporary_store_path();
    let stream = StreamId::new("account", "1");
    let events = vec![json_event("Opened", "{}"), json_event("Deposited", "{}")];
    let twice = events[1].event_id;
    schema_1_store(&path, &stream, events).await;
    // What a retry of an older release could leave: the second event stored again, as the
    // stream's third.
    raw_connection(&path)
        .execute(
            "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, \
             schema_version, codec, payload, metadata, recorded_at) \
             SELECT aggregate_type, aggregate_id, 3, event_id, event_type, schema_version, \
             codec, payload, metadata, recorded_at FROM events WHERE version = 2",
            [],
        )
        .unwrap();
    let bytes_before = std::fs::read(&path).unwrap();
    let files_before = file_names(directory.path());

    let error = Sqlite::open(&path)
        .await
        .expect_err("an id stored twice blocks the upgrade");
    match &error {
        StoreError::Migration {
            from, to, reason, ..
        } => {
            assert_eq!((*from, *to), (1, 3));
            assert!(
                reason.contains(&twice.simple().to_string().to_uppercase()),
                "the reason names the id stored twice: {reason}"
            );
            assert!(reason.contains("2 copies"), "{reason}");
        }
        other => panic!("expected StoreError::Migration, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes_before,
        "the file is untouched"
    );
    assert_eq!(file_names(directory.path()), files_before);
    assert_eq!(schema_version(&path), 1, "still a version 1 store");
}
