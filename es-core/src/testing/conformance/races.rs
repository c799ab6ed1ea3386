//! Races: concurrent writers on one stream and on many, and readers running beside them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Barrier;
use uuid::Uuid;

use super::{
    assert_conflict, assert_page, assert_positions_increase, batch, ids, join, new_ids, read_log,
    read_stream_all, stream, versions, Store,
};
use crate::clock::ManualClock;
use crate::event::RecordedEvent;
use crate::store::{AppendOutcome, EventStore, ExpectedVersion, StoreError, VersionRange};
use crate::types::{GlobalPosition, StreamId, Version};

pub(super) async fn racing_appends_with_the_same_expected_version_have_one_winner<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const TASKS: usize = 32;
    const ROUNDS: u64 = 6;
    const BATCH: usize = 2;
    let sentence = "of appends racing with the same expected version exactly one must win";
    let store = Arc::new(store);
    let stream = stream("contested");
    let mut winners: Vec<Uuid> = Vec::new();
    let mut losers: Vec<Uuid> = Vec::new();

    for round in 0..ROUNDS {
        let at = Version(round * BATCH as u64);
        let expected = ExpectedVersion::Exact(at);
        let barrier = Arc::new(Barrier::new(TASKS));
        let handles: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = Arc::clone(&store);
                let stream = stream.clone();
                let barrier = Arc::clone(&barrier);
                let events = batch(&format!("round {round} task {task}"), BATCH);
                tokio::spawn(async move {
                    let ids = new_ids(&events);
                    barrier.wait().await;
                    (ids, store.append(&stream, expected, events).await)
                })
            })
            .collect();

        let mut won: Vec<(Vec<Uuid>, AppendOutcome)> = Vec::new();
        for handle in handles {
            let (ids, result) = join(handle).await;
            match result {
                Ok(outcome) => won.push((ids, outcome)),
                Err(error) => {
                    assert_conflict(
                        Err(error),
                        &stream,
                        expected,
                        Some(Version(at.get() + BATCH as u64)),
                        &format!("{sentence}; a loser at version {at}"),
                    );
                    losers.extend(ids);
                }
            }
        }
        assert_eq!(
            won.len(),
            1,
            "{sentence}: {} of {TASKS} appends with Exact({at}) succeeded",
            won.len()
        );
        let (ids, outcome) = won.remove(0);
        assert_eq!(outcome.version, Version(at.get() + BATCH as u64));
        winners.extend(ids);
    }

    let read = read_stream_all(&*store, &stream).await;
    assert_eq!(
        versions(&read),
        (1..=ROUNDS * BATCH as u64).collect::<Vec<_>>(),
        "{sentence}: the stream must end contiguous"
    );
    assert_eq!(
        ids(&read),
        winners,
        "{sentence}: the stream must hold the winners' events, in order"
    );
    let log = read_log(&*store).await;
    assert_eq!(
        ids(&log),
        winners,
        "{sentence}: the log must hold exactly the winners' events, none lost or duplicated"
    );
    assert!(
        !log.iter().any(|e| losers.contains(&e.event_id)),
        "{sentence}: no loser's event may be stored"
    );
}

/// One acknowledged append: which stream, which events, what the store said it wrote.
struct Acknowledged {
    stream: StreamId,
    ids: Vec<Uuid>,
    outcome: AppendOutcome,
}

/// Appends `events` with `ExpectedVersion::Exact` of the last version this writer knows of,
/// refreshing it from each conflict, until the append goes through.
async fn append_with_retries<S: Store>(
    store: &S,
    stream: &StreamId,
    known: &mut HashMap<StreamId, Version>,
    events: Vec<crate::event::NewEvent>,
) -> AppendOutcome {
    const MAX_ATTEMPTS: usize = 10_000;
    for _ in 0..MAX_ATTEMPTS {
        let expected = ExpectedVersion::Exact(known.get(stream).copied().unwrap_or_default());
        match store.append(stream, expected, events.clone()).await {
            Ok(outcome) => return outcome,
            Err(StoreError::Conflict(conflict)) => {
                assert_eq!(
                    (&conflict.stream, conflict.expected),
                    (stream, expected),
                    "a conflict must name the stream and the expectation"
                );
                assert!(
                    !expected.is_satisfied_by(conflict.actual),
                    "a conflict's actual version {:?} must not satisfy the expectation {expected:?}",
                    conflict.actual
                );
                known.insert(stream.clone(), conflict.actual.unwrap_or_default());
            }
            Err(other) => panic!("an append with {expected:?} failed with {other:?}"),
        }
    }
    panic!("an append to `{stream}` conflicted {MAX_ATTEMPTS} times in a row: writers starve");
}

pub(super) async fn concurrent_writers_on_many_streams_lose_nothing<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const STREAMS: usize = 8;
    const TASKS: usize = 16;
    const APPENDS: usize = 12;
    let sentence = "concurrent writers must lose nothing";
    let store = Arc::new(store);
    let streams: Arc<Vec<StreamId>> =
        Arc::new((0..STREAMS).map(|i| stream(&format!("busy-{i}"))).collect());
    let barrier = Arc::new(Barrier::new(TASKS));

    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let streams = Arc::clone(&streams);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let mut known = HashMap::new();
                let mut acknowledged = Vec::new();
                barrier.wait().await;
                for append in 0..APPENDS {
                    let stream = &streams[(task * 3 + append) % STREAMS];
                    let events = batch(
                        &format!("task {task} append {append}"),
                        1 + (task + append) % 3,
                    );
                    let ids = new_ids(&events);
                    let outcome = if (task + append) % 2 == 0 {
                        match store.append(stream, ExpectedVersion::Any, events).await {
                            Ok(outcome) => outcome,
                            Err(error) => panic!("an append with Any must not fail: {error:?}"),
                        }
                    } else {
                        append_with_retries(&*store, stream, &mut known, events).await
                    };
                    known.insert(stream.clone(), outcome.version);
                    acknowledged.push(Acknowledged {
                        stream: stream.clone(),
                        ids,
                        outcome,
                    });
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for handle in handles {
        acknowledged.extend(join(handle).await);
    }
    assert_stored_exactly(&*store, &streams, &acknowledged, sentence).await;
}

/// Asserts that the store holds exactly the `acknowledged` events, each where its outcome
/// says, with contiguous streams and strictly increasing positions.
async fn assert_stored_exactly<S: Store>(
    store: &S,
    streams: &[StreamId],
    acknowledged: &[Acknowledged],
    sentence: &str,
) {
    let log = read_log(store).await;
    assert_positions_increase(&log, sentence);
    let by_id: HashMap<Uuid, &RecordedEvent> = log.iter().map(|e| (e.event_id, e)).collect();
    assert_eq!(
        by_id.len(),
        log.len(),
        "{sentence}: an event id appears twice in the log"
    );
    let total: usize = acknowledged.iter().map(|a| a.ids.len()).sum();
    assert_eq!(
        log.len(),
        total,
        "{sentence}: the log must hold exactly the {total} acknowledged events"
    );
    for ack in acknowledged {
        let count = ack.ids.len() as u64;
        for (offset, id) in (0_u64..).zip(&ack.ids) {
            let Some(recorded) = by_id.get(id) else {
                panic!(
                    "{sentence}: an acknowledged event of `{}` is missing",
                    ack.stream
                );
            };
            assert_eq!(
                (&recorded.stream, recorded.version),
                (
                    &ack.stream,
                    Version(ack.outcome.version.get() + 1 + offset - count)
                ),
                "{sentence}: a batch's events must sit where its AppendOutcome says, contiguous"
            );
        }
        let last = ack
            .ids
            .last()
            .and_then(|id| by_id.get(id))
            .expect("non-empty batch");
        assert_eq!(
            last.global_position, ack.outcome.position,
            "{sentence}: AppendOutcome.position must be the batch's last event's position"
        );
    }
    for stream in streams {
        let read = read_stream_all(store, stream).await;
        assert_eq!(
            versions(&read),
            (1..=read.len() as u64).collect::<Vec<_>>(),
            "{sentence}: stream `{stream}` must be contiguous"
        );
        let in_log: Vec<Uuid> = log
            .iter()
            .filter(|e| &e.stream == stream)
            .map(|e| e.event_id)
            .collect();
        assert_eq!(
            ids(&read),
            in_log,
            "{sentence}: `{stream}` in version order must be `{stream}` in log order"
        );
    }
}

pub(super) async fn catch_up_reader_sees_every_event_once_in_order<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const WRITERS: usize = 6;
    const APPENDS: usize = 30;
    const PAGE: usize = 7;
    let sentence = "a catch-up reader must see every event once, in position order";
    let store = Arc::new(store);
    let writers_done = Arc::new(AtomicBool::new(false));

    let reader = {
        let store = Arc::clone(&store);
        let writers_done = Arc::clone(&writers_done);
        tokio::spawn(async move {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut after = GlobalPosition::START;
            loop {
                // Read the flag first: an empty page read after every writer finished means
                // the reader has caught up with everything.
                let finished = writers_done.load(Ordering::SeqCst);
                let page = match store.read_all(after, PAGE).await {
                    Ok(page) => page,
                    Err(error) => panic!("read_all({after}, {PAGE}) failed: {error:?}"),
                };
                assert_page(&page, after, PAGE);
                let Some(last) = page.last() else {
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                    continue;
                };
                after = last.global_position;
                seen.extend(page);
            }
        })
    };

    let shared = stream("shared");
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            let shared = shared.clone();
            tokio::spawn(async move {
                let own = stream(&format!("writer-{writer}"));
                for append in 0..APPENDS {
                    let (target, expected) = if append % 3 == 0 {
                        (&shared, ExpectedVersion::Any)
                    } else {
                        (&own, ExpectedVersion::Any)
                    };
                    let events = batch(&format!("writer {writer} append {append}"), 1 + append % 3);
                    if let Err(error) = store.append(target, expected, events).await {
                        panic!("an append with Any must not fail: {error:?}");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        join(writer).await;
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = join(reader).await;

    let log = read_log(&*store).await;
    assert_eq!(
        log.len(),
        WRITERS * (APPENDS / 3) * 6,
        "every append is in the log"
    );
    assert_eq!(
        ids(&seen),
        ids(&log),
        "{sentence}: what the reader saw while writers appended must be the whole log"
    );
}

pub(super) async fn concurrent_readers_never_see_a_partial_batch<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const BATCH: usize = 5;
    const APPENDS: usize = 40;
    const READERS: usize = 3;
    let sentence = "a reader must see all events of a batch or none";
    let store = Arc::new(store);
    let stream = stream("batched");
    let writer_done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let store = Arc::clone(&store);
            let stream = stream.clone();
            let writer_done = Arc::clone(&writer_done);
            tokio::spawn(async move {
                while !writer_done.load(Ordering::SeqCst) {
                    let events = if reader == 0 {
                        store.read_all(GlobalPosition::START, usize::MAX).await
                    } else {
                        store.read_stream(&stream, VersionRange::all()).await
                    };
                    let events = match events {
                        Ok(events) => events,
                        Err(error) => panic!("a read during appends failed: {error:?}"),
                    };
                    assert_eq!(
                        events.len() % BATCH,
                        0,
                        "{sentence}: a read returned {} events, batches hold {BATCH}",
                        events.len()
                    );
                    assert_eq!(
                        versions(&events),
                        (1..=events.len() as u64).collect::<Vec<_>>(),
                        "{sentence}: versions seen must be contiguous from 1"
                    );
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    for append in 0..APPENDS {
        let events = batch(&format!("batch {append}"), BATCH);
        let expected = ExpectedVersion::Exact(Version((append * BATCH) as u64));
        if let Err(error) = store.append(&stream, expected, events).await {
            panic!("{sentence}: the writer's append failed: {error:?}");
        }
        tokio::task::yield_now().await;
    }
    writer_done.store(true, Ordering::SeqCst);
    for reader in readers {
        join(reader).await;
    }
    assert_eq!(
        read_stream_all(&*store, &stream).await.len(),
        BATCH * APPENDS
    );
}
