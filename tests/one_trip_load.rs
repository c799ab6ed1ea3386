//! `SnapshotStore::load_snapshot_and_events`, the read a repository's load makes (one round
//! trip on PostgreSQL, one reader-thread hop on SQLite), on every store: what it returns for
//! each snapshot case, and that loads through it (`Repository::new`, snapshots in the event
//! store) give the state of a full replay, falling back when the snapshot cannot be used.

mod postgres_support;
mod sqlite_support;

use es_core::store::sqlite::Sqlite;
use es_core::{
    Aggregate, Apply, CodecId, Event, EventStore, InMemory, Repository, Snapshot,
    SnapshotAndEvents, SnapshotStore, StreamId, Timestamp, Version,
};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Added {
    amount: u64,
}

/// A tally that snapshots every 3 events.
#[derive(Aggregate, Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "tally", events(Added), snapshot_every = 3)]
struct Tally {
    total: u64,
    entries: Vec<u64>,
}

impl Apply<Added> for Tally {
    fn apply(&mut self, event: &Added) {
        self.total += event.amount;
        self.entries.push(event.amount);
    }
}

fn tally(amounts: &[u64]) -> Tally {
    Tally {
        total: amounts.iter().sum(),
        entries: amounts.to_vec(),
    }
}

fn snapshot(id: &str, version: u64, state: &Tally, fingerprint: u64) -> Snapshot {
    Snapshot {
        stream: Tally::stream_id(id),
        version: Version(version),
        fingerprint,
        codec: CodecId::Json,
        state: CodecId::Json.encode(state).unwrap(),
        taken_at: Timestamp::EPOCH,
    }
}

fn versions(read: &SnapshotAndEvents) -> Vec<u64> {
    read.events
        .iter()
        .map(|event| event.version.get())
        .collect()
}

async fn check<S: EventStore + SnapshotStore + Clone>(store: S) {
    let repository = Repository::<Tally, _>::new(store.clone());
    // Five saves: the policy snapshots at 3.
    for amount in [1, 2, 3, 4, 5] {
        let mut root = repository.load("t").await.unwrap();
        root.record(Added { amount });
        repository.save(&mut root).await.unwrap();
    }
    let stream: StreamId = Tally::stream_id("t");

    // The snapshot, and the events from its own version on.
    let read = store
        .load_snapshot_and_events(&stream, Version(u64::MAX))
        .await
        .unwrap();
    let found = read
        .snapshot
        .as_ref()
        .unwrap()
        .as_ref()
        .expect("a snapshot");
    assert_eq!(found.version, Version(3));
    assert_eq!(versions(&read), [3, 4, 5]);
    // A bound before the snapshot: the events from the first.
    let read = store
        .load_snapshot_and_events(&stream, Version(2))
        .await
        .unwrap();
    assert_eq!(versions(&read), [1, 2]);
    // A bound at the snapshot: its event alone.
    let read = store
        .load_snapshot_and_events(&stream, Version(3))
        .await
        .unwrap();
    assert_eq!(versions(&read), [3]);
    // No snapshot, no events.
    let read = store
        .load_snapshot_and_events(&Tally::stream_id("none"), Version(u64::MAX))
        .await
        .unwrap();
    assert!(matches!(read.snapshot, Ok(None)));
    assert!(read.events.is_empty());

    // Loads through it equal a full replay.
    let amounts = [1, 2, 3, 4, 5];
    let loaded = repository.load("t").await.unwrap();
    assert_eq!(
        (loaded.state(), loaded.version()),
        (&tally(&amounts), Version(5))
    );
    let at = repository.load_at_version("t", Version(2)).await.unwrap();
    assert_eq!(at.state(), &tally(&amounts[..2]));
    let fallbacks = repository.snapshot_fallbacks();

    // A snapshot of another schema: ignored, the stream replayed from its first event.
    store
        .replace_snapshot(snapshot("t", 4, &tally(&[9, 9, 9, 9]), 12_345))
        .await
        .unwrap();
    let loaded = repository.load("t").await.unwrap();
    assert_eq!(loaded.state(), &tally(&amounts));
    assert_eq!(repository.snapshot_fallbacks(), fallbacks + 1);

    // A snapshot ahead of the log: ignored too.
    let fingerprint = Tally::snapshot_fingerprint().unwrap();
    store
        .replace_snapshot(snapshot("t", 9, &tally(&[7; 9]), fingerprint))
        .await
        .unwrap();
    let read = store
        .load_snapshot_and_events(&stream, Version(u64::MAX))
        .await
        .unwrap();
    assert!(read.events.is_empty(), "no event at or after version 9");
    let loaded = repository.load("t").await.unwrap();
    assert_eq!(loaded.state(), &tally(&amounts));
    assert_eq!(repository.snapshot_fallbacks(), fallbacks + 2);

    // A valid snapshot is used: a state only it holds shows through.
    store
        .replace_snapshot(snapshot("t", 4, &tally(&[40, 0, 0, 0]), fingerprint))
        .await
        .unwrap();
    let loaded = repository.load("t").await.unwrap();
    assert_eq!(loaded.state(), &tally(&[40, 0, 0, 0, 5]));
    assert_eq!(repository.snapshot_fallbacks(), fallbacks + 2);
}

#[tokio::test]
async fn memory() {
    check(InMemory::new()).await;
}

#[tokio::test]
async fn sqlite() {
    let (_directory, path) = sqlite_support::temporary_store_path();
    check(Sqlite::open(&path).await.unwrap()).await;
}

#[tokio::test]
async fn postgres() {
    let Some(schema) = postgres_support::TestSchema::new("one_trip_load") else {
        return;
    };
    check(schema.store().await).await;
}
