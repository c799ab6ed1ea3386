//! Damaged files and rows: typed errors, never a panic, and the undamaged streams stay
//! readable.

mod sqlite_support;

use es_core::store::sqlite::Sqlite;
use es_core::{
    Aggregate, Apply, CodecId, DecodeError, Event, EventStore, ExpectedVersion, GlobalPosition,
    RecordedEvent, StoreError, StreamId, VersionRange,
};
use serde::{Deserialize, Serialize};
use sqlite_support::{raw_connection, temporary_store_path, Rng};

#[derive(Event, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
    note: String,
}

/// Only here for its generated event set, `Ledger`: the decoder a user's program runs.
#[allow(dead_code)] // never loaded: the suite reads events, not aggregates
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "account", events(Deposited), event_enum = Ledger)]
struct Account;

impl Apply<Deposited> for Account {
    fn apply(&mut self, _event: &Deposited) {}
}

fn deposit(note: &str) -> es_core::NewEvent {
    let event = Ledger::Deposited(Deposited {
        amount: 123_456_789,
        note: note.to_owned(),
    });
    es_core::NewEvent::encode(&event, CodecId::Json).unwrap()
}

fn damaged() -> StreamId {
    Account::stream_id("damaged")
}

fn healthy() -> StreamId {
    Account::stream_id("healthy")
}

/// A closed store with two events in the damaged stream (the second marked `MARKER-2`) and
/// two in the healthy one, interleaved in the log.
async fn two_streams(path: &std::path::Path) -> Vec<RecordedEvent> {
    let store = Sqlite::open(path).await.unwrap();
    for (stream, note) in [
        (damaged(), "MARKER-1"),
        (healthy(), "healthy-1"),
        (damaged(), "MARKER-2"),
        (healthy(), "healthy-2"),
    ] {
        store
            .append(&stream, ExpectedVersion::Any, vec![deposit(note)])
            .await
            .unwrap();
    }
    let log = store.read_all(GlobalPosition::START, 100).await.unwrap();
    // Closing checkpoints the log, so every row is in the database file itself.
    store.close().await;
    log
}

async fn assert_healthy_stream_reads(store: &Sqlite, log: &[RecordedEvent]) {
    let events = store
        .read_stream(&healthy(), VersionRange::all())
        .await
        .expect("the healthy stream stays readable");
    let expected: Vec<_> = log
        .iter()
        .filter(|event| event.stream == healthy())
        .cloned()
        .collect();
    assert_eq!(events, expected);
    for event in events {
        event.decode::<Ledger>().expect("healthy events decode");
    }
}

#[tokio::test]
async fn a_flipped_payload_byte_in_the_file_is_a_decode_error_for_that_event_only() {
    let (_directory, path) = temporary_store_path();
    let log = two_streams(&path).await;

    let mut bytes = std::fs::read(&path).unwrap();
    let marker = b"MARKER-2";
    let at = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("the payload is in the file");
    assert_eq!(
        bytes[at + marker.len()..]
            .windows(marker.len())
            .position(|window| window == marker),
        None,
        "the marker is stored once"
    );
    bytes[at] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();

    let store = Sqlite::open(&path).await.expect("the store still opens");
    let events = store
        .read_stream(&damaged(), VersionRange::all())
        .await
        .expect("the row itself is intact: only its payload changed");
    assert_eq!(events.len(), 2);
    events[0]
        .decode::<Ledger>()
        .expect("the first event is undamaged");
    let error = events[1]
        .decode::<Ledger>()
        .expect_err("the flipped payload does not decode");
    assert!(
        matches!(error, DecodeError::Payload { ref event_type, .. } if event_type == "Deposited"),
        "got {error:?}"
    );
    assert_healthy_stream_reads(&store, &log).await;
}

/// Each damage, applied with a raw connection to the second event of the damaged stream.
const DAMAGES: &[(&str, &str)] = &[
    ("UPDATE events SET codec = 9", "codec"),
    ("UPDATE events SET codec = 300", "codec"),
    ("UPDATE events SET version = -1", "version"),
    ("UPDATE events SET version = 0", "version"),
    ("UPDATE events SET event_id = x'0102'", "event_id"),
    ("UPDATE events SET schema_version = -4", "schema_version"),
    ("UPDATE events SET schema_version = 'one'", "schema_version"),
    ("UPDATE events SET metadata = 'not json'", "metadata"),
    ("UPDATE events SET payload = 'text, not a blob'", "payload"),
    ("UPDATE events SET recorded_at = 1.5", "recorded_at"),
    ("UPDATE events SET event_type = x'FFFE'", "event_type"),
];

#[tokio::test]
async fn an_out_of_range_value_in_a_row_is_corrupt_and_other_streams_stay_readable() {
    for (damage, column) in DAMAGES {
        let (_directory, path) = temporary_store_path();
        let log = two_streams(&path).await;
        let damaged_position = log[2].global_position;
        raw_connection(&path)
            .execute(
                &format!("{damage} WHERE global_position = ?1"),
                [damaged_position.get() as i64],
            )
            .unwrap();

        let store = Sqlite::open(&path).await.unwrap();
        let error = store
            .read_stream(&damaged(), VersionRange::all())
            .await
            .expect_err("the damaged stream does not read");
        match &error {
            StoreError::Corrupt { location, reason } => {
                assert_eq!(
                    location,
                    &format!("event at global position {damaged_position}"),
                    "{damage}"
                );
                assert!(reason.contains(column), "{damage}: reason `{reason}`");
            }
            other => panic!("{damage}: expected Corrupt, got {other:?}"),
        }
        assert!(
            matches!(
                store.read_all(GlobalPosition::START, 100).await,
                Err(StoreError::Corrupt { .. })
            ),
            "{damage}: the log cannot be read past a damaged row"
        );
        assert_eq!(
            store.read_all(damaged_position, 100).await.unwrap(),
            log[3..].to_vec(),
            "{damage}: the log after the damaged row reads"
        );
        assert_healthy_stream_reads(&store, &log).await;
        store.close().await;
    }
}

#[tokio::test]
async fn a_version_that_became_unreadable_leaves_a_gap_that_is_corrupt() {
    let (_directory, path) = temporary_store_path();
    let log = two_streams(&path).await;
    // Text sorts after every integer in SQLite, so no version range selects this row.
    raw_connection(&path)
        .execute(
            "UPDATE events SET version = 'one' WHERE global_position = ?1",
            [log[0].global_position.get() as i64],
        )
        .unwrap();
    let store = Sqlite::open(&path).await.unwrap();
    match store.read_stream(&damaged(), VersionRange::all()).await {
        Err(StoreError::Corrupt { location, reason }) => {
            assert_eq!(location, "stream `account/damaged`");
            assert!(reason.contains("version 1 is missing"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_healthy_stream_reads(&store, &log).await;
}

#[tokio::test]
async fn a_damaged_snapshot_or_projection_row_is_corrupt() {
    use es_core::{ProjectionStore, SavedProjection, Snapshot, SnapshotStore, Timestamp, Version};
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    store
        .save_snapshot(Snapshot {
            stream: damaged(),
            version: Version(1),
            fingerprint: 1,
            codec: CodecId::Json,
            state: b"{}".to_vec(),
            taken_at: Timestamp::EPOCH,
        })
        .await
        .unwrap();
    store
        .save_projection(SavedProjection {
            name: "balances".to_owned(),
            position: GlobalPosition(1),
            codec: CodecId::Json,
            state: b"{}".to_vec(),
            saved_at: Timestamp::EPOCH,
        })
        .await
        .unwrap();
    store.close().await;
    raw_connection(&path)
        .execute_batch("UPDATE snapshots SET codec = 0; UPDATE projections SET position = -1;")
        .unwrap();
    let store = Sqlite::open(&path).await.unwrap();
    let snapshot = store.load_snapshot(&damaged()).await;
    assert!(
        matches!(snapshot, Err(StoreError::Corrupt { .. })),
        "got {snapshot:?}"
    );
    let projection = store.load_projection("balances").await;
    assert!(
        matches!(projection, Err(StoreError::Corrupt { .. })),
        "got {projection:?}"
    );
}

/// Flips single bytes all over a store file: opening and reading it gives data or a typed
/// error, never a panic.
#[tokio::test]
async fn single_byte_flips_anywhere_in_the_file_never_panic() {
    let (directory, path) = temporary_store_path();
    two_streams(&path).await;
    let pristine = std::fs::read(&path).unwrap();
    let mut rng = Rng::from_entropy("byte flips");
    for round in 0..40 {
        let copy = directory.path().join(format!("flipped-{round}.db"));
        let mut bytes = pristine.clone();
        let at = usize::try_from(rng.between(0, bytes.len() as u64 - 1)).unwrap();
        bytes[at] ^= u8::try_from(rng.between(1, 255)).unwrap();
        std::fs::write(&copy, &bytes).unwrap();

        let result = async {
            let store = Sqlite::open(&copy).await?;
            let log = store.read_all(GlobalPosition::START, 100).await?;
            for stream in [damaged(), healthy()] {
                store.read_stream(&stream, VersionRange::all()).await?;
            }
            store.close().await;
            Ok::<_, StoreError>(log)
        }
        .await;
        match result {
            Ok(log) => {
                // Whatever reads is well formed: no more events than were written. A flip
                // inside a text column can leave a valid but different stream name or event
                // type, and a payload may simply not decode: decoding answers, it never panics.
                assert!(log.len() <= 4, "flip at byte {at}: {} events", log.len());
                for event in &log {
                    let _decoded = event.decode::<Ledger>();
                }
            }
            Err(
                StoreError::Corrupt { .. } | StoreError::NotAStore { .. } | StoreError::Backend(_),
            ) => {}
            Err(other) => panic!("flip at byte {at}: unexpected error {other:?}"),
        }
    }
}
