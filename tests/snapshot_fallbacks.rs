//! An unusable snapshot (a row that cannot be read, an unknown codec id, a state that does not
//! decode, another fingerprint, a version ahead of the log) never fails a load or a save on
//! any store: it is a counted, logged fallback to replay (counted by the repository and by the
//! snapshot store), and the next snapshot the policy takes replaces it.
//!
//! The PostgreSQL cases need `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it they say they
//! were skipped.

mod postgres_support;
mod sqlite_support;

use es_core::store::sqlite::Sqlite;
use es_core::{
    Aggregate, Apply, CodecId, Event, EventStore, InMemory, Repository, Snapshot, SnapshotStore,
    StreamId, Timestamp, Version,
};
use postgres_support::TestSchema;
use serde::{Deserialize, Serialize};
use sqlite_support::{raw_connection, temporary_store_path};

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

fn stream(id: &str) -> StreamId {
    Tally::stream_id(id)
}

/// Saves `amounts` as events of `id`, one save each (so the policy snapshots at 3, 6, ...).
async fn add<S: EventStore, P: SnapshotStore>(
    repository: &Repository<Tally, S, P>,
    id: &str,
    amounts: impl IntoIterator<Item = u64>,
) {
    for amount in amounts {
        let mut root = repository.load(id).await.expect("loading never fails here");
        root.record(Added { amount });
        repository
            .save(&mut root)
            .await
            .expect("saving never fails here");
    }
}

fn tally(amounts: &[u64]) -> Tally {
    Tally {
        total: amounts.iter().sum(),
        entries: amounts.to_vec(),
    }
}

/// With a damaged snapshot of `id` (4 events, damaged after the snapshot at 3): loading falls
/// back (counted once more by the repository and by the store), saving works, and the next
/// snapshot the policy takes (at 6) replaces the damaged one, after which loads use it.
async fn falls_back_then_replaced<S: EventStore, P: SnapshotStore>(
    repository: &Repository<Tally, S, P>,
    id: &str,
    case: &str,
) {
    let (before, store_before) = (
        repository.snapshot_fallbacks(),
        repository.snapshots().snapshot_fallbacks(),
    );
    let loaded = repository
        .load(id)
        .await
        .unwrap_or_else(|error| panic!("{case}: load failed: {error}"));
    assert_eq!(loaded.state(), &tally(&[1, 2, 3, 4]), "{case}: replayed");
    assert_eq!(loaded.version(), Version(4), "{case}");
    assert_eq!(repository.snapshot_fallbacks(), before + 1, "{case}");
    assert_eq!(
        repository.snapshots().snapshot_fallbacks(),
        store_before + 1,
        "{case}: the store counts it too"
    );

    // Saving over a damaged snapshot works; version 5 takes no snapshot.
    add(repository, id, [5]).await;
    assert_eq!(repository.snapshot_fallbacks(), before + 2, "{case}");
    // Version 6: the policy's snapshot replaces the damaged one, whatever its version says.
    add(repository, id, [6]).await;
    let replaced = repository
        .snapshots()
        .load_snapshot(&stream(id))
        .await
        .unwrap_or_else(|error| panic!("{case}: the replaced row reads: {error}"))
        .expect("a snapshot");
    assert_eq!(replaced.version, Version(6), "{case}");
    assert_eq!(
        replaced.fingerprint,
        Tally::snapshot_fingerprint().unwrap(),
        "{case}"
    );
    let counted = repository.snapshot_fallbacks();
    let loaded = repository.load(id).await.unwrap();
    assert_eq!(loaded.state(), &tally(&[1, 2, 3, 4, 5, 6]), "{case}");
    assert_eq!(
        repository.snapshot_fallbacks(),
        counted,
        "{case}: the replacement is used, no more fallbacks"
    );
}

/// A valid snapshot of a tally at `version`, as the repository writes it.
fn snapshot(id: &str, version: u64, state: &Tally, codec: CodecId) -> Snapshot {
    Snapshot {
        stream: stream(id),
        version: Version(version),
        fingerprint: Tally::snapshot_fingerprint().unwrap(),
        codec,
        state: codec.encode(state).unwrap(),
        taken_at: Timestamp::EPOCH,
    }
}

#[tokio::test]
async fn in_memory_unusable_snapshots_fall_back_and_are_replaced() {
    let store = InMemory::new();
    let repository = Repository::<Tally, _>::new(store.clone())
        .with_snapshots(store.clone())
        .with_codec(CodecId::Postcard);
    let cases: Vec<(&str, Snapshot)> = vec![
        (
            "ahead of the log",
            snapshot("ahead", 1000, &tally(&[9; 3]), CodecId::Postcard),
        ),
        ("undecodable state", {
            let mut damaged = snapshot("garbage", 3, &tally(&[1, 2, 3]), CodecId::Postcard);
            damaged.state = vec![0xff; 3];
            damaged
        }),
        ("another fingerprint", {
            let mut other = snapshot("other", 3, &tally(&[7, 7, 7]), CodecId::Postcard);
            other.fingerprint ^= 1;
            other
        }),
    ];
    for (case, damaged) in cases {
        let id = damaged.stream.aggregate_id().to_owned();
        add(&repository, &id, [1, 2, 3, 4]).await;
        // `replace_snapshot`: a damaged row may claim any version.
        store.replace_snapshot(damaged).await.unwrap();
        falls_back_then_replaced(&repository, &id, case).await;
    }
}

#[tokio::test]
async fn the_store_counts_the_fallbacks_of_every_repository_over_it() {
    let store = InMemory::new();
    let first = Repository::<Tally, _>::new(store.clone()).with_snapshots(store.clone());
    let second = Repository::<Tally, _>::new(store.clone()).with_snapshots(store.clone());
    add(&first, "shared", [1, 2, 3]).await;
    store
        .replace_snapshot(snapshot("shared", 50, &Tally::default(), CodecId::Json))
        .await
        .unwrap();
    first.load("shared").await.unwrap();
    second.load("shared").await.unwrap();
    second.load("shared").await.unwrap();
    assert_eq!(
        (first.snapshot_fallbacks(), second.snapshot_fallbacks()),
        (1, 2)
    );
    assert_eq!(store.snapshot_fallbacks(), 3);
    assert_eq!(
        store.clone().snapshot_fallbacks(),
        3,
        "clones share the count"
    );
}

/// Each way a SQLite snapshot row can be damaged, as SQL run on the row.
const SQLITE_DAMAGE: [(&str, &str); 7] = [
    ("unknown codec id", "UPDATE snapshots SET codec = 99"),
    (
        "codec id as text",
        "UPDATE snapshots SET codec = 'postcard'",
    ),
    ("version as text", "UPDATE snapshots SET version = 'three'"),
    ("negative version", "UPDATE snapshots SET version = -3"),
    (
        "fingerprint as a blob",
        "UPDATE snapshots SET fingerprint = x'00ff'",
    ),
    ("state as text", "UPDATE snapshots SET state = 'bytes'"),
    ("ahead of the log", "UPDATE snapshots SET version = 1000"),
];

#[tokio::test]
async fn sqlite_damaged_snapshot_rows_fall_back_and_are_replaced() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    for codec in [CodecId::Json, CodecId::Postcard] {
        let repository = Repository::<Tally, _>::new(store.clone())
            .with_snapshots(store.clone())
            .with_codec(codec);
        for (case, damage) in SQLITE_DAMAGE {
            let id = format!("{codec}-{case}");
            add(&repository, &id, [1, 2, 3, 4]).await;
            let changed = raw_connection(&path)
                .execute(
                    &format!("{damage} WHERE aggregate_type = 'tally' AND aggregate_id = ?1"),
                    [&id],
                )
                .unwrap();
            assert_eq!(changed, 1, "{case}: one row damaged");
            falls_back_then_replaced(&repository, &id, &format!("{codec}, {case}")).await;
        }
    }
}

#[tokio::test]
async fn postgres_damaged_snapshot_rows_fall_back_and_are_replaced() {
    let Some(schema) = TestSchema::new("snapshot fallbacks") else {
        return;
    };
    let store = schema.store().await;
    let raw = schema.raw().await;
    let damages = [
        ("unknown codec id", "codec = 99"),
        ("negative codec id", "codec = -1"),
        ("negative version", "version = -3"),
        ("state missing", "state = NULL"),
        ("taken_at missing", "taken_at = NULL"),
        ("ahead of the log", "version = 1000"),
    ];
    // Let the damage in: the columns may refuse NULL.
    for column in ["state", "taken_at"] {
        raw.batch_execute(&format!(
            "ALTER TABLE \"{}\".snapshots ALTER COLUMN {column} DROP NOT NULL",
            schema.name()
        ))
        .await
        .unwrap();
    }
    for codec in [CodecId::Json, CodecId::Postcard] {
        let repository = Repository::<Tally, _>::new(store.clone())
            .with_snapshots(store.clone())
            .with_codec(codec);
        for (case, damage) in damages {
            let id = format!("{codec}-{case}");
            add(&repository, &id, [1, 2, 3, 4]).await;
            let changed = raw
                .execute(
                    &format!(
                        "UPDATE \"{}\".snapshots SET {damage} \
                         WHERE aggregate_type = 'tally' AND aggregate_id = $1",
                        schema.name()
                    ),
                    &[&id],
                )
                .await
                .unwrap();
            assert_eq!(changed, 1, "{case}: one row damaged");
            falls_back_then_replaced(&repository, &id, &format!("{codec}, {case}")).await;
        }
    }
}
