//! Many writers racing on the PostgreSQL store through a pool of several connections: one
//! winner per version, typed conflicts for the others, nothing lost and nothing duplicated.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod postgres_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use es_core::store::postgres::Postgres;
use es_core::{
    EventStore, ExpectedVersion, GlobalPosition, StoreError, StreamId, Version, VersionRange,
};
use postgres_support::{events, stream, Rng, TestSchema};
use tokio::sync::Barrier;
use uuid::Uuid;

const WRITERS: usize = 32;
const POOL_SIZE: usize = 8;

async fn racing_store(schema: &TestSchema) -> Postgres {
    Postgres::connect_with(schema.options().with_pool_size(POOL_SIZE))
        .await
        .expect("the test server accepts a store")
}

/// Checks `error` is the typed conflict of an append to `stream` expecting `expected`.
fn assert_typed_conflict(error: &StoreError, stream: &StreamId, expected: ExpectedVersion) {
    let conflict = error
        .as_conflict()
        .unwrap_or_else(|| panic!("a lost race must be a typed conflict, got {error:?}"));
    assert_eq!(&conflict.stream, stream);
    assert_eq!(conflict.expected, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_expecting_the_same_version_have_exactly_one_winner() {
    let Some(schema) = TestSchema::new("one_winner_per_version") else {
        return;
    };
    let store = racing_store(&schema).await;
    let order = stream("order", "contended");
    let rounds = 8u64;
    for round in 0..rounds {
        let expected = if round == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(Version(round * 2))
        };
        let start = Arc::new(Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, order, start) = (store.clone(), order.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.append(&order, expected, events(2)).await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(outcome) => {
                    winners += 1;
                    assert_eq!(outcome.version, Version(round * 2 + 2));
                }
                Err(error) => {
                    assert_typed_conflict(&error, &order, expected);
                    let actual = error.as_conflict().unwrap().actual;
                    // Appends to one stream queue on its lock: every loser is checked after
                    // the winner committed, so it sees the winner's last version.
                    assert!(
                        actual == Some(Version(round * 2 + 2)),
                        "round {round}: a loser reported {actual:?}"
                    );
                }
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one writer must win");
    }
    let read = store
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    let versions: Vec<u64> = read.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, (1..=rounds * 2).collect::<Vec<_>>());
    assert_eq!(
        store.read_all(GlobalPosition::START, 1_000).await.unwrap(),
        read,
        "the log holds the winners' events only"
    );
}

/// Each of the writers appends `batches` batches of 1 to 4 events to streams picked from
/// `streams`, retrying on conflict with the version the conflict reports; returns the ids each writer
/// got acknowledged, in order, and how many conflicts it met.
async fn retrying_writers(
    store: &Postgres,
    streams: &[StreamId],
    batches: usize,
) -> (Vec<(StreamId, Vec<Uuid>, GlobalPosition)>, usize) {
    let start = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, streams, start) = (store.clone(), streams.to_vec(), start.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(writer as u64 + 1);
                let mut acknowledged = Vec::new();
                let mut conflicts = 0;
                start.wait().await;
                for _ in 0..batches {
                    let target = &streams[rng.index(streams.len())];
                    let batch = events(1 + rng.index(4));
                    let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
                    // Start from the version read now; after a conflict, retry from the
                    // version it reports (so a wrong `actual` would never succeed).
                    let mut current = store
                        .read_stream(target, VersionRange::all())
                        .await
                        .unwrap()
                        .last()
                        .map_or(Version::INITIAL, |e| e.version);
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "a writer never got its batch in");
                        let expected = ExpectedVersion::Exact(current);
                        match store.append(target, expected, batch.clone()).await {
                            Ok(outcome) => {
                                acknowledged.push((target.clone(), ids, outcome.position));
                                break;
                            }
                            Err(error) => {
                                assert_typed_conflict(&error, target, expected);
                                let actual = error.as_conflict().unwrap().actual;
                                assert!(
                                    actual > Some(current),
                                    "a conflict reports a newer version"
                                );
                                current = actual.unwrap_or(Version::INITIAL);
                                conflicts += 1;
                            }
                        }
                    }
                }
                (acknowledged, conflicts)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (mine, met) = task.await.unwrap();
        acknowledged.extend(mine);
        conflicts += met;
    }
    (acknowledged, conflicts)
}

/// Checks every acknowledged batch is stored once, whole and contiguous in its stream, and
/// the log holds exactly the acknowledged events in strictly increasing position order.
async fn assert_nothing_lost_or_duplicated(
    store: &Postgres,
    streams: &[StreamId],
    acknowledged: &[(StreamId, Vec<Uuid>, GlobalPosition)],
) {
    let log = store
        .read_all(GlobalPosition::START, 100_000)
        .await
        .unwrap();
    let expected_count: usize = acknowledged.iter().map(|(_, ids, _)| ids.len()).sum();
    assert_eq!(
        log.len(),
        expected_count,
        "the log must hold every acknowledged event once"
    );
    assert!(log
        .windows(2)
        .all(|w| w[0].global_position < w[1].global_position));
    let unique: HashSet<Uuid> = log.iter().map(|e| e.event_id).collect();
    assert_eq!(unique.len(), log.len(), "no event may be stored twice");

    let by_id: BTreeMap<Uuid, &es_core::RecordedEvent> =
        log.iter().map(|e| (e.event_id, e)).collect();
    for (target, ids, position) in acknowledged {
        let stored: Vec<_> = ids.iter().map(|id| by_id[id]).collect();
        assert!(stored.iter().all(|e| &e.stream == target));
        assert!(
            stored
                .windows(2)
                .all(|w| w[1].version == w[0].version.next()),
            "a batch must occupy consecutive versions"
        );
        assert_eq!(
            stored.last().unwrap().global_position,
            *position,
            "the outcome must name the batch's last position"
        );
    }
    for target in streams {
        let read = store
            .read_stream(target, VersionRange::all())
            .await
            .unwrap();
        let versions: Vec<u64> = read.iter().map(|e| e.version.get()).collect();
        assert_eq!(
            versions,
            (1..=read.len() as u64).collect::<Vec<_>>(),
            "{target}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_retrying_on_one_stream_lose_and_duplicate_nothing() {
    let Some(schema) = TestSchema::new("retrying_one_stream") else {
        return;
    };
    let store = racing_store(&schema).await;
    let streams = [stream("order", "hot")];
    let (acknowledged, conflicts) = retrying_writers(&store, &streams, 6).await;
    assert_eq!(acknowledged.len(), WRITERS * 6);
    assert!(
        conflicts > 0,
        "32 writers on one stream must have met conflicts"
    );
    assert_nothing_lost_or_duplicated(&store, &streams, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_retrying_on_many_streams_lose_and_duplicate_nothing() {
    let Some(schema) = TestSchema::new("retrying_many_streams") else {
        return;
    };
    let store = racing_store(&schema).await;
    let streams: Vec<StreamId> = (0..8).map(|i| stream("order", i)).collect();
    let (acknowledged, _conflicts) = retrying_writers(&store, &streams, 10).await;
    assert_eq!(acknowledged.len(), WRITERS * 10);
    assert_nothing_lost_or_duplicated(&store, &streams, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_with_any_on_one_stream_all_succeed_in_contiguous_versions() {
    let Some(schema) = TestSchema::new("any_one_stream") else {
        return;
    };
    let store = racing_store(&schema).await;
    let order = stream("order", "any");
    let start = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, order, start) = (store.clone(), order.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let batch = events(3);
                let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
                let outcome = store
                    .append(&order, ExpectedVersion::Any, batch)
                    .await
                    .unwrap();
                (order, ids, outcome.position)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.push(task.await.unwrap());
    }
    assert_nothing_lost_or_duplicated(&store, &[order], &acknowledged).await;
}
