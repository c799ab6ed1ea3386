//! Concurrency: many writers racing on one stream and on many streams, with a catch-up reader
//! running alongside. Exactly one winner per version, every loser a typed conflict, nothing
//! lost or duplicated, global positions strictly increasing without gaps.

mod sqlite_support;

use std::collections::{BTreeMap, BTreeSet};

use es_core::store::sqlite::Sqlite;
use es_core::{
    EventStore, ExpectedVersion, GlobalPosition, RecordedEvent, StoreError, StreamId, Version,
    VersionRange,
};
use sqlite_support::{tag_of, tagged_event, temporary_store_path, Rng};

/// Versions the single-stream races run up to.
const TARGET: u64 = 150;

/// What one racing writer saw.
#[derive(Default)]
struct Tally {
    /// Versions this writer won.
    won: Vec<Version>,
    /// Conflicts it was answered with.
    conflicts: usize,
}

/// Appends one event at a time with `Exact` versions until the stream reaches [`TARGET`],
/// learning the current version from each conflict.
async fn race(store: Sqlite, stream: StreamId, writer: u64) -> Tally {
    let mut tally = Tally::default();
    let mut known = Version::INITIAL;
    while known.get() < TARGET {
        let expected = ExpectedVersion::Exact(known);
        match store
            .append(
                &stream,
                expected,
                vec![tagged_event(writer, known.next().get())],
            )
            .await
        {
            Ok(outcome) => {
                assert_eq!(
                    outcome.version,
                    known.next(),
                    "the winner gets the next version"
                );
                tally.won.push(outcome.version);
                known = outcome.version;
            }
            Err(StoreError::Conflict(conflict)) => {
                assert_eq!(conflict.stream, stream);
                assert_eq!(conflict.expected, expected);
                let actual = conflict.actual.expect("the stream exists once anyone won");
                assert!(
                    actual > known,
                    "a conflict reports a newer version ({actual} after {known})"
                );
                tally.conflicts += 1;
                known = actual;
            }
            Err(other) => panic!("writer {writer}: unexpected error {other:?}"),
        }
    }
    tally
}

/// Checks the single-stream race: one stored event per version, written by the writer that
/// was told it won, and a gap-free log.
async fn check_race(store: &Sqlite, stream: &StreamId, tallies: &[Tally]) {
    let mut winners = BTreeMap::new();
    for (writer, tally) in tallies.iter().enumerate() {
        for version in &tally.won {
            assert!(
                winners.insert(*version, writer as u64).is_none(),
                "version {version} was won twice"
            );
        }
    }
    let conflicts: usize = tallies.iter().map(|tally| tally.conflicts).sum();
    assert!(
        conflicts >= tallies.len() - 1,
        "every writer but one loses the first version: {conflicts} conflicts"
    );

    let events = store
        .read_stream(stream, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(events.len() as u64, TARGET);
    assert_eq!(
        winners.len() as u64,
        TARGET,
        "every stored version has one winner"
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.version, Version(index as u64 + 1));
        let (writer, sequence) = tag_of(&event.payload);
        assert_eq!(sequence, event.version.get());
        assert_eq!(
            winners[&event.version], writer,
            "version {} is the winner's",
            event.version
        );
    }
    assert_gap_free(
        &store
            .read_all(GlobalPosition::START, usize::MAX)
            .await
            .unwrap(),
    );
}

fn assert_gap_free(log: &[RecordedEvent]) {
    for (index, event) in log.iter().enumerate() {
        assert_eq!(
            event.global_position,
            GlobalPosition(index as u64 + 1),
            "positions run 1, 2, 3 ... without a gap"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_on_one_stream_get_one_winner_per_version() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let stream = StreamId::new("counter", "contended");
    let writers: Vec<_> = (0..32)
        .map(|writer| tokio::spawn(race(store.clone(), stream.clone(), writer)))
        .collect();
    let mut tallies = Vec::new();
    for writer in writers {
        tallies.push(writer.await.unwrap());
    }
    check_race(&store, &stream, &tallies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_get_one_winner_per_version() {
    // Two stores on one file behave like two processes: each has its own writer thread, and
    // the version check runs inside each write transaction.
    let (_directory, path) = temporary_store_path();
    let first = Sqlite::open(&path).await.unwrap();
    let second = Sqlite::open(&path).await.unwrap();
    let stream = StreamId::new("counter", "shared-file");
    let writers: Vec<_> = (0..32)
        .map(|writer| {
            let store = if writer % 2 == 0 { &first } else { &second };
            tokio::spawn(race(store.clone(), stream.clone(), writer))
        })
        .collect();
    let mut tallies = Vec::new();
    for writer in writers {
        tallies.push(writer.await.unwrap());
    }
    check_race(&first, &stream, &tallies).await;
}

/// One acknowledged batch of the many-streams race.
struct Acknowledged {
    stream: StreamId,
    writer: u64,
    batch: u64,
    size: u64,
    version: Version,
    position: GlobalPosition,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_on_many_streams_lose_and_duplicate_nothing() {
    const WRITERS: u64 = 32;
    const BATCHES: u64 = 25;
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let seed = Rng::from_entropy("many streams").next_u64();

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(seed ^ (writer + 1));
                let mut acknowledged = Vec::new();
                for batch in 0..BATCHES {
                    let stream = StreamId::new("bucket", rng.between(0, 7).to_string());
                    let size = rng.between(1, 5);
                    let events = (0..size)
                        .map(|index| tagged_event(writer, batch * 100 + index))
                        .collect();
                    let outcome = store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .expect("appends without a version check succeed");
                    acknowledged.push(Acknowledged {
                        stream,
                        writer,
                        batch,
                        size,
                        version: outcome.version,
                        position: outcome.position,
                    });
                }
                acknowledged
            })
        })
        .collect();

    // A catch-up reader follows the log while the writers run.
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut followed: Vec<RecordedEvent> = Vec::new();
            loop {
                let writers_done = *finished.borrow_and_update();
                let after = followed
                    .last()
                    .map_or(GlobalPosition::START, |e| e.global_position);
                let page = store.read_all(after, 64).await.unwrap();
                if page.is_empty() && writers_done {
                    return followed;
                }
                if page.is_empty() {
                    tokio::task::yield_now().await;
                }
                followed.extend(page);
            }
        })
    };

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    done.send(true).unwrap();
    let followed = reader.await.unwrap();

    check_many_streams(&store, &followed, &acknowledged).await;
}

/// Checks the many-streams race: the catch-up reader saw the whole log, every acknowledged
/// batch is stored once and whole, positions and versions run on without gaps.
async fn check_many_streams(
    store: &Sqlite,
    followed: &[RecordedEvent],
    acknowledged: &[Acknowledged],
) {
    let log = store
        .read_all(GlobalPosition::START, usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        followed,
        log.as_slice(),
        "the catch-up reader saw every event once, in order"
    );
    assert_gap_free(&log);
    let total: u64 = acknowledged.iter().map(|batch| batch.size).sum();
    assert_eq!(log.len() as u64, total, "nothing lost, nothing duplicated");

    let mut tags = BTreeSet::new();
    for event in &log {
        assert!(
            tags.insert(tag_of(&event.payload)),
            "an event is stored twice"
        );
    }
    for batch in acknowledged {
        // This store writes a batch's events at consecutive positions.
        let last = usize::try_from(batch.position.get()).unwrap();
        let size = usize::try_from(batch.size).unwrap();
        let stored = &log[last - size..last];
        for (index, event) in stored.iter().enumerate() {
            assert_eq!(event.stream, batch.stream);
            assert_eq!(
                tag_of(&event.payload),
                (batch.writer, batch.batch * 100 + index as u64)
            );
            assert_eq!(
                event.version,
                Version(batch.version.get() - batch.size + 1 + index as u64)
            );
        }
    }
    for bucket in 0..8 {
        let stream = StreamId::new("bucket", bucket.to_string());
        let events = store
            .read_stream(&stream, VersionRange::all())
            .await
            .unwrap();
        for (index, event) in events.iter().enumerate() {
            assert_eq!(
                event.version,
                Version(index as u64 + 1),
                "versions run on in {stream}"
            );
        }
    }
}
