//! The repository turns a stored snapshot it cannot continue from into a typed error or a
//! full replay, never a panic.

mod support;

use es_core::{
    Aggregate, CodecId, InMemory, Repository, Snapshot, SnapshotStore, Timestamp, Version,
};
use support::Account;

fn snapshot_at(version: Version) -> Snapshot {
    Snapshot {
        stream: Account::stream_id("a-1"),
        version,
        fingerprint: Account::SCHEMA_FINGERPRINT,
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

    let root = repository
        .load("a-1")
        .await
        .expect("no event can follow the snapshot: it loads as it is");
    assert_eq!(root.version(), Version(u64::MAX));

    let root = repository
        .load_at_version("a-1", Version(u64::MAX))
        .await
        .expect("the snapshot is at the requested version");
    assert_eq!(root.version(), Version(u64::MAX));
}
