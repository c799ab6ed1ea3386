//! The repository turns a stored snapshot it cannot continue from into a typed error or a
//! full replay, never a panic.

mod support;

use es_core::{
    Aggregate, CodecId, InMemory, Repository, RepositoryError, Snapshot, SnapshotStore, Timestamp,
    Version,
};
use support::Account;

fn snapshot_at(version: Version) -> Snapshot {
    Snapshot {
        stream: Account::stream_id("a-1"),
        version,
        fingerprint: Account::snapshot_fingerprint().unwrap(),
        codec: CodecId::Json,
        state: CodecId::Json
            .encode(&Account::default())
            .expect("the state encodes"),
        taken_at: Timestamp::EPOCH,
    }
}

#[tokio::test]
async fn a_snapshot_at_the_last_representable_version_loads_without_overflow() {
    let store = InMemory::new();
    store
        .save_snapshot(snapshot_at(Version(u64::MAX)))
        .await
        .expect("the in-memory store keeps any snapshot");
    let repository = Repository::<Account, _>::new(store.clone()).with_snapshots(store);

    // The stream has no event at that version: the snapshot is ahead of the log, ignored and
    // counted, and the aggregate replays from its (no) events.
    let root = repository
        .load("a-1")
        .await
        .expect("loads without overflow");
    assert_eq!(root.version(), Version::INITIAL);
    assert_eq!(repository.snapshot_fallbacks(), 1);

    let error = repository
        .load_at_version("a-1", Version(u64::MAX))
        .await
        .expect_err("the stream has no such version");
    assert!(
        matches!(error, RepositoryError::VersionOutOfRange { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_snapshot_ahead_of_the_event_log_is_ignored_and_the_events_replayed() {
    let store = InMemory::new();
    let repository = Repository::<Account, _>::new(store.clone()).with_snapshots(store.clone());
    repository.update("a-1", |a| a.open("ada")).await.unwrap();
    repository
        .update("a-1", |a| a.deposit(7, ""))
        .await
        .unwrap();
    // A snapshot store that outlived its event store: it claims five events, the log has two.
    let mut ahead = snapshot_at(Version(5));
    ahead.state = CodecId::Json
        .encode(&repository.load("a-1").await.unwrap().state())
        .unwrap();
    store.save_snapshot(ahead).await.unwrap();

    let root = repository.load("a-1").await.unwrap();
    assert_eq!(root.version(), Version(2));
    assert_eq!(root.state().balance, 7);
    assert_eq!(repository.snapshot_fallbacks(), 1);
}
