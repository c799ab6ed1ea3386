//! Idempotent appends: unique event ids, exact retries answered with the original outcome,
//! every other reuse of an id refused.

use std::sync::Arc;

use tokio::sync::Barrier;
use uuid::Uuid;

use super::{
    append_ok, batch, event, ids, join, last_position, new_ids, read_log, read_stream_all, stream,
    Store,
};
use crate::clock::ManualClock;
use crate::event::NewEvent;
use crate::store::{
    AppendOutcome, DuplicateEventIds, EventStore, ExpectedVersion, StoreError, StreamBatch,
};
use crate::types::{StreamId, Version};

/// Appends `events` and returns the refusal, panicking unless it is
/// `StoreError::DuplicateEventIds`.
async fn refused<S: Store>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    sentence: &str,
) -> DuplicateEventIds {
    match store.append(stream, expected, events).await {
        Err(StoreError::DuplicateEventIds(refused)) => {
            assert_eq!(
                &refused.stream, stream,
                "{sentence}: the error must name the stream appended to"
            );
            refused
        }
        Err(other) => panic!("{sentence}: expected StoreError::DuplicateEventIds, got {other:?}"),
        Ok(outcome) => panic!(
            "{sentence}: expected StoreError::DuplicateEventIds, the append succeeded with \
             {outcome:?}"
        ),
    }
}

/// The `(event id, stored stream, stored version)` of each refused id.
fn refused_ids(refused: &DuplicateEventIds) -> Vec<(Uuid, Option<(StreamId, Version)>)> {
    refused
        .duplicates
        .iter()
        .map(|duplicate| {
            (
                duplicate.event_id,
                duplicate
                    .stored_at
                    .as_ref()
                    .map(|stored| (stored.stream.clone(), stored.version)),
            )
        })
        .collect()
}

pub(super) async fn idempotent_retry_returns_the_original_outcome_and_stores_one_copy<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "re-appending a stored batch must return its original outcome and store nothing";
    let order = stream("retried");
    let other = stream("beside it");
    append_ok(&store, &other, ExpectedVersion::Any, batch("other", 2)).await;
    let first = batch("first", 3);
    let original = append_ok(&store, &order, ExpectedVersion::NoStream, first.clone()).await;
    let single = batch("single", 1);
    let single_outcome = append_ok(
        &store,
        &order,
        ExpectedVersion::Exact(Version(3)),
        single.clone(),
    )
    .await;
    // The stream moves on past both batches, and the log past the stream.
    append_ok(&store, &order, ExpectedVersion::Any, batch("later", 2)).await;
    append_ok(
        &store,
        &other,
        ExpectedVersion::Any,
        batch("other later", 1),
    )
    .await;
    let log_before = read_log(&store).await;
    let last_before = last_position(&store).await;

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(Version::INITIAL),
        ExpectedVersion::Exact(Version(6)),
        ExpectedVersion::Exact(Version(42)),
        ExpectedVersion::StreamExists,
        ExpectedVersion::Any,
    ] {
        match store.append(&order, expected, first.clone()).await {
            Ok(outcome) => assert_eq!(
                outcome, original,
                "{sentence}: a retry with {expected:?} got another outcome"
            ),
            Err(error) => panic!("{sentence}: a retry with {expected:?} failed with {error:?}"),
        }
        match store.append(&order, expected, single.clone()).await {
            Ok(outcome) => assert_eq!(
                outcome, single_outcome,
                "{sentence}: a one-event retry with {expected:?} got another outcome"
            ),
            Err(error) => {
                panic!("{sentence}: a one-event retry with {expected:?} failed with {error:?}")
            }
        }
    }
    assert_eq!(
        read_log(&store).await,
        log_before,
        "{sentence}: the log changed"
    );
    assert_eq!(
        last_position(&store).await,
        last_before,
        "{sentence}: last_position moved"
    );
    let read = read_stream_all(&store, &order).await;
    assert_eq!(
        ids(&read[..3]),
        new_ids(&first),
        "{sentence}: the batch must stay where it was stored"
    );
    assert_eq!(read.len(), 6, "{sentence}: the stream grew");
    // The stream goes on from its real last version.
    let next = append_ok(
        &store,
        &order,
        ExpectedVersion::Exact(Version(6)),
        batch("next", 1),
    )
    .await;
    assert_eq!(next.version, Version(7));
}

pub(super) async fn idempotent_partial_overlap_is_refused_and_writes_nothing<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a batch reusing some stored ids must be refused, naming them";
    let order = stream("overlapped");
    let stored = batch("stored", 3);
    append_ok(&store, &order, ExpectedVersion::NoStream, stored.clone()).await;
    let log_before = read_log(&store).await;
    let last_before = last_position(&store).await;

    // One stored id among new ones.
    let fresh = batch("fresh", 2);
    let mixed = vec![fresh[0].clone(), stored[1].clone(), fresh[1].clone()];
    let refusal = refused(
        &store,
        &order,
        ExpectedVersion::Exact(Version(3)),
        mixed,
        sentence,
    )
    .await;
    assert_eq!(
        refused_ids(&refusal),
        [(stored[1].event_id, Some((order.clone(), Version(2))))],
        "{sentence}: the error must name the stored id and where it is"
    );
    assert_eq!(refusal.duplicates[0].index, 1);
    assert_eq!(refusal.batch_len, 3);
    let position = refusal.duplicates[0]
        .stored_at
        .as_ref()
        .map(|at| at.position);
    assert_eq!(position, Some(log_before[1].global_position));

    // The stored batch with one more event.
    let mut longer = stored.clone();
    longer.push(event("one more"));
    let refusal = refused(&store, &order, ExpectedVersion::Any, longer, sentence).await;
    assert_eq!(refusal.duplicates.len(), 3);

    // The stored ids in another order (they are at other versions than the batch says).
    let reordered = vec![stored[1].clone(), stored[0].clone(), stored[2].clone()];
    let refusal = refused(&store, &order, ExpectedVersion::Any, reordered, sentence).await;
    assert_eq!(refusal.duplicates.len(), 3);

    // Stored events with a gap between them.
    let gapped = vec![stored[0].clone(), stored[2].clone()];
    refused(&store, &order, ExpectedVersion::Any, gapped, sentence).await;

    // An id twice in one new batch.
    let twice = event("twice");
    let refusal = refused(
        &store,
        &stream("twice"),
        ExpectedVersion::NoStream,
        vec![twice.clone(), event("between"), twice.clone()],
        "a batch holding an id twice must be refused",
    )
    .await;
    assert_eq!(refused_ids(&refusal), [(twice.event_id, None)]);
    assert_eq!(refusal.duplicates[0].index, 2);

    assert_eq!(
        read_log(&store).await,
        log_before,
        "{sentence}: a refused batch must write nothing"
    );
    assert_eq!(
        last_position(&store).await,
        last_before,
        "{sentence}: last_position moved"
    );
    // The new ids of a refused batch are still free.
    append_ok(
        &store,
        &order,
        ExpectedVersion::Exact(Version(3)),
        fresh.clone(),
    )
    .await;
    assert_eq!(
        ids(&read_stream_all(&store, &order).await[3..]),
        new_ids(&fresh)
    );
}

pub(super) async fn idempotent_ids_are_unique_across_streams<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "an event id stored in one stream must be refused in another";
    let first = stream("first owner");
    let second = stream("second owner");
    let events = batch("owned", 2);
    append_ok(&store, &first, ExpectedVersion::NoStream, events.clone()).await;
    let log_before = read_log(&store).await;

    // The whole batch again, in another stream: refused, whatever the expectation.
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let refusal = refused(&store, &second, expected, events.clone(), sentence).await;
        assert_eq!(
            refused_ids(&refusal),
            [
                (events[0].event_id, Some((first.clone(), Version(1)))),
                (events[1].event_id, Some((first.clone(), Version(2)))),
            ],
            "{sentence}: the error must say where each id is stored"
        );
    }
    // The same aggregate id under another aggregate type is another stream too.
    let other_type = StreamId::new("another type", first.aggregate_id());
    refused(
        &store,
        &other_type,
        ExpectedVersion::NoStream,
        events.clone(),
        sentence,
    )
    .await;
    assert!(read_stream_all(&store, &second).await.is_empty());
    assert!(read_stream_all(&store, &other_type).await.is_empty());
    assert_eq!(
        read_log(&store).await,
        log_before,
        "{sentence}: the log changed"
    );
}

pub(super) async fn idempotent_concurrent_retries_store_one_copy<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const TASKS: usize = 8;
    const ROUNDS: u64 = 4;
    let sentence =
        "tasks re-appending one batch at once must store it once and all get its outcome";
    let store = Arc::new(store);
    let order = stream("retried at once");
    let mut stored = Vec::new();
    for round in 0..ROUNDS {
        // Each round: a new batch that every task sends, half of them with the expectation
        // of the first attempt and half with none.
        let events = batch(&format!("round {round}"), 3);
        let barrier = Arc::new(Barrier::new(TASKS));
        let handles: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, order, events) = (Arc::clone(&store), order.clone(), events.clone());
                let barrier = Arc::clone(&barrier);
                let expected = if task % 2 == 0 {
                    ExpectedVersion::Exact(Version(round * 3))
                } else {
                    ExpectedVersion::Any
                };
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.append(&order, expected, events).await
                })
            })
            .collect();
        let mut outcomes: Vec<AppendOutcome> = Vec::new();
        for handle in handles {
            match join(handle).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => panic!("{sentence}: an attempt failed with {error:?}"),
            }
        }
        assert!(
            outcomes.windows(2).all(|pair| pair[0] == pair[1]),
            "{sentence}: the attempts got different outcomes {outcomes:?}"
        );
        assert_eq!(outcomes[0].version, Version((round + 1) * 3));
        stored.extend(new_ids(&events));
    }
    let read = read_stream_all(&*store, &order).await;
    assert_eq!(ids(&read), stored, "{sentence}: the stream holds copies");
    assert_eq!(
        ids(&read_log(&*store).await),
        stored,
        "{sentence}: the log holds copies"
    );
}

pub(super) async fn idempotent_multi_stream_retry_returns_the_original_outcomes<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a multi-stream append sent again must return its original outcomes";
    let (order, stock) = (stream("multi order"), stream("multi stock"));
    let batches = vec![
        StreamBatch::new(order.clone(), ExpectedVersion::NoStream, batch("order", 2)),
        StreamBatch::new(stock.clone(), ExpectedVersion::NoStream, batch("stock", 1)),
    ];
    let original = match store.append_streams(batches.clone()).await {
        Ok(outcomes) => outcomes,
        Err(error) => panic!("{sentence}: the first attempt failed with {error:?}"),
    };
    append_ok(&store, &order, ExpectedVersion::Any, batch("later", 1)).await;
    let log_before = read_log(&store).await;

    match store.append_streams(batches.clone()).await {
        Ok(outcomes) => assert_eq!(outcomes, original, "{sentence}"),
        Err(error) => panic!("{sentence}: the retry failed with {error:?}"),
    }
    // One batch stored, the other new: not a retry of anything.
    let mixed = vec![
        batches[0].clone(),
        StreamBatch::new(
            stream("multi other"),
            ExpectedVersion::NoStream,
            batch("new", 1),
        ),
    ];
    match store.append_streams(mixed).await {
        Err(StoreError::DuplicateEventIds(refused)) => {
            assert_eq!(refused.stream, order);
            assert_eq!(
                refused_ids(&refused),
                [
                    (
                        batches[0].events[0].event_id,
                        Some((order.clone(), Version(1)))
                    ),
                    (
                        batches[0].events[1].event_id,
                        Some((order.clone(), Version(2)))
                    ),
                ]
            );
        }
        other => panic!(
            "a multi-stream append with one stored batch and one new one must be \
             StoreError::DuplicateEventIds, got {other:?}"
        ),
    }
    // An id repeated across the batches of one append.
    let repeated = event("in two batches");
    let twice = vec![
        StreamBatch::new(
            stream("multi a"),
            ExpectedVersion::Any,
            vec![repeated.clone()],
        ),
        StreamBatch::new(
            stream("multi b"),
            ExpectedVersion::Any,
            vec![repeated.clone()],
        ),
    ];
    match store.append_streams(twice).await {
        Err(StoreError::DuplicateEventIds(refused)) => {
            assert_eq!(refused.stream, stream("multi b"));
            assert_eq!(refused_ids(&refused), [(repeated.event_id, None)]);
        }
        other => panic!(
            "a multi-stream append holding an id in two batches must be \
             StoreError::DuplicateEventIds, got {other:?}"
        ),
    }
    assert_eq!(
        read_log(&store).await,
        log_before,
        "{sentence}: retries and refusals must write nothing"
    );
}
