//! Multi-stream appends: all or nothing, every failed stream named, one contiguous run of the
//! global order, and no lost update when writers race over overlapping sets of streams.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Barrier;
use uuid::Uuid;

use super::{
    append_ok, assert_positions_increase, batch, ids, join, last_position, new_ids, read_log,
    read_stream_all, stream, versions, Store,
};
use crate::clock::{Clock, ManualClock};
use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::store::{AppendOutcome, Conflict, EventStore, ExpectedVersion, StoreError, StreamBatch};
use crate::types::{StreamId, Version};

/// Appends several batches and panics if the store refuses.
async fn append_streams_ok<S: EventStore + ?Sized>(
    store: &S,
    batches: Vec<StreamBatch>,
    sentence: &str,
) -> Vec<AppendOutcome> {
    let streams: Vec<String> = batches.iter().map(|b| b.stream.to_string()).collect();
    match store.append_streams(batches).await {
        Ok(outcomes) => outcomes,
        Err(error) => panic!("{sentence}: appending to {streams:?} must succeed, got {error:?}"),
    }
}

/// Asserts that `result` is `StoreError::Conflicts` naming exactly `expected`, in order.
fn assert_conflicts(
    result: Result<Vec<AppendOutcome>, StoreError>,
    expected: &[Conflict],
    sentence: &str,
) {
    match result {
        Err(StoreError::Conflicts(conflicts)) => assert_eq!(
            conflicts.as_slice(),
            expected,
            "{sentence}: the conflicts must name every stream that failed (and only those), in \
             the order given, with the expected and actual versions"
        ),
        Err(other) => panic!("{sentence}: expected StoreError::Conflicts, got {other:?}"),
        Ok(outcomes) => panic!(
            "{sentence}: expected StoreError::Conflicts, the append succeeded with {outcomes:?}"
        ),
    }
}

fn conflict(stream: &StreamId, expected: ExpectedVersion, actual: Option<Version>) -> Conflict {
    Conflict {
        stream: stream.clone(),
        expected,
        actual,
    }
}

pub(super) async fn multi_stream_append_writes_every_batch_in_one_contiguous_run<S: Store>(
    store: S,
    clock: ManualClock,
) {
    let sentence = "a multi-stream append must write every batch in one contiguous run";
    let (new, existing, any) = (stream("ms-new"), stream("ms-existing"), stream("ms-any"));
    append_ok(
        &store,
        &existing,
        ExpectedVersion::NoStream,
        batch("before", 2),
    )
    .await;
    append_ok(
        &store,
        &any,
        ExpectedVersion::NoStream,
        batch("before any", 1),
    )
    .await;
    let last_before = last_position(&store).await;
    clock.advance_secs(5);

    let parts = [
        (new.clone(), ExpectedVersion::NoStream, batch("new", 2)),
        (
            existing.clone(),
            ExpectedVersion::Exact(Version(2)),
            batch("existing", 3),
        ),
        (any.clone(), ExpectedVersion::Any, batch("any", 1)),
    ];
    let appended: Vec<Uuid> = parts.iter().flat_map(|(_, _, e)| new_ids(e)).collect();
    let batches = parts
        .iter()
        .map(|(s, expected, events)| StreamBatch::new(s.clone(), *expected, events.clone()))
        .collect();
    let outcomes = append_streams_ok(&store, batches, sentence).await;
    assert_eq!(outcomes.len(), 3, "{sentence}: one outcome per batch");
    assert_eq!(
        outcomes.iter().map(|o| o.version).collect::<Vec<_>>(),
        [Version(2), Version(5), Version(2)],
        "{sentence}: each outcome must name its stream's new last version"
    );

    let log = read_log(&store).await;
    let run: Vec<&RecordedEvent> = log
        .iter()
        .filter(|e| e.global_position > last_before)
        .collect();
    assert_eq!(
        run.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        appended,
        "{sentence}: the log after the previous last position must hold exactly the append's \
         events, batches in the order given, each batch in order"
    );
    for (outcome, (s, _, _)) in outcomes.iter().zip(&parts) {
        let last_of_stream = run
            .iter()
            .rfind(|e| &e.stream == s)
            .map(|e| e.global_position);
        assert_eq!(
            Some(outcome.position),
            last_of_stream,
            "{sentence}: the outcome of `{s}` must name the position of its last event"
        );
    }
    assert_eq!(
        outcomes.last().map(|o| o.position),
        Some(last_position(&store).await),
        "{sentence}: the last outcome's position is the append's last event"
    );
    let first_time = run[0].recorded_at;
    assert!(
        run.iter().all(|e| e.recorded_at == first_time),
        "{sentence}: every event of one multi-stream append gets the same time"
    );
    assert_eq!(
        first_time,
        clock.now(),
        "{sentence}: stamped with the store clock"
    );
    for (s, count) in [(&new, 2), (&existing, 5), (&any, 2)] {
        let read = read_stream_all(&store, s).await;
        assert_eq!(
            versions(&read),
            (1..=count).collect::<Vec<u64>>(),
            "{sentence}: `{s}` must stay contiguous"
        );
    }
}

pub(super) async fn multi_stream_conflict_on_one_stream_writes_nothing<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a multi-stream append with a failed check must write nothing";
    let streams: Vec<StreamId> = (0..4).map(|i| stream(&format!("ms-set-{i}"))).collect();
    for s in &streams[..3] {
        append_ok(
            &store,
            s,
            ExpectedVersion::NoStream,
            batch(&format!("{s}"), 2),
        )
        .await;
    }
    let log_before = read_log(&store).await;
    let last_before = last_position(&store).await;
    let attempt = |expectations: [ExpectedVersion; 4]| -> Vec<StreamBatch> {
        streams
            .iter()
            .zip(expectations)
            .map(|(s, expected)| StreamBatch::new(s.clone(), expected, batch("rejected", 3)))
            .collect()
    };
    let exact = |v| ExpectedVersion::Exact(Version(v));

    // One stale stream of four.
    let result = store
        .append_streams(attempt([
            exact(2),
            exact(1),
            exact(2),
            ExpectedVersion::NoStream,
        ]))
        .await;
    assert_conflicts(
        result,
        &[conflict(&streams[1], exact(1), Some(Version(2)))],
        &format!("{sentence} (one stale stream)"),
    );
    // The last stream: a new stream expected to exist.
    let result = store
        .append_streams(attempt([
            exact(2),
            exact(2),
            exact(2),
            ExpectedVersion::StreamExists,
        ]))
        .await;
    assert_conflicts(
        result,
        &[conflict(&streams[3], ExpectedVersion::StreamExists, None)],
        &format!("{sentence} (the last stream)"),
    );
    // Three failures at once, each named.
    let result = store
        .append_streams(attempt([
            ExpectedVersion::NoStream,
            exact(2),
            exact(9),
            exact(1),
        ]))
        .await;
    assert_conflicts(
        result,
        &[
            conflict(&streams[0], ExpectedVersion::NoStream, Some(Version(2))),
            conflict(&streams[2], exact(9), Some(Version(2))),
            conflict(&streams[3], exact(1), None),
        ],
        &format!("{sentence} (three failed streams)"),
    );
    assert!(
        StoreError::Conflicts(
            crate::store::Conflicts::new(vec![conflict(&streams[0], exact(1), None)])
                .expect("one conflict")
        )
        .is_conflict(),
        "a multi-stream conflict is a conflict"
    );
    assert_eq!(
        read_log(&store).await,
        log_before,
        "{sentence}: the global log must be unchanged"
    );
    assert_eq!(
        last_position(&store).await,
        last_before,
        "{sentence}: last_position must not move"
    );
    assert!(
        read_stream_all(&store, &streams[3]).await.is_empty(),
        "{sentence}: the new stream must still have no events"
    );

    // The same set with every expectation right goes through, right after the real versions.
    let outcomes = append_streams_ok(
        &store,
        attempt([exact(2), exact(2), exact(2), ExpectedVersion::NoStream]),
        sentence,
    )
    .await;
    assert_eq!(
        outcomes.iter().map(|o| o.version).collect::<Vec<_>>(),
        [Version(5), Version(5), Version(5), Version(3)],
        "{sentence}: the next accepted append continues after the streams' real versions"
    );
}

pub(super) async fn multi_stream_append_rejects_empty_and_duplicate_batches<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a malformed multi-stream append must be rejected and write nothing";
    let (a, b) = (stream("ms-a"), stream("ms-b"));
    append_ok(&store, &a, ExpectedVersion::NoStream, batch("a", 1)).await;
    let log_before = read_log(&store).await;

    match store.append_streams(Vec::new()).await {
        Err(StoreError::EmptyAppend) => {}
        other => panic!("{sentence}: no batches must be StoreError::EmptyAppend, got {other:?}"),
    }
    let with_empty = vec![
        StreamBatch::new(b.clone(), ExpectedVersion::NoStream, batch("b", 1)),
        StreamBatch::new(a.clone(), ExpectedVersion::Any, Vec::new()),
    ];
    match store.append_streams(with_empty).await {
        Err(StoreError::EmptyAppend) => {}
        other => panic!(
            "{sentence}: a batch of no events must be StoreError::EmptyAppend, got {other:?}"
        ),
    }
    let twice = vec![
        StreamBatch::new(
            a.clone(),
            ExpectedVersion::Exact(Version(1)),
            batch("a1", 1),
        ),
        StreamBatch::new(b.clone(), ExpectedVersion::NoStream, batch("b", 1)),
        StreamBatch::new(
            a.clone(),
            ExpectedVersion::Exact(Version(2)),
            batch("a2", 1),
        ),
    ];
    match store.append_streams(twice).await {
        Err(StoreError::DuplicateStream { stream }) => assert_eq!(
            stream, a,
            "{sentence}: DuplicateStream must name the stream given twice"
        ),
        other => panic!(
            "{sentence}: a stream given twice must be StoreError::DuplicateStream, got {other:?}"
        ),
    }
    assert_eq!(
        read_log(&store).await,
        log_before,
        "{sentence}: the global log must be unchanged"
    );
}

/// A counter event: the counter's value after it, as JSON.
fn counter_event(value: u64, label: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "CounterIncremented".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: serde_json::to_vec(&(value, label)).unwrap_or_default(),
        metadata: Metadata::default(),
    }
}

fn counter_value(event: &RecordedEvent) -> u64 {
    match serde_json::from_slice::<(u64, String)>(&event.payload) {
        Ok((value, _)) => value,
        Err(error) => panic!("a counter payload does not read back: {error}"),
    }
}

/// One acknowledged multi-stream append of the race: its streams and event ids.
struct Acknowledged {
    streams: Vec<StreamId>,
    ids: Vec<Uuid>,
}

/// Adds one to every counter of `set` in one multi-stream append, each written on the value
/// read and expecting the version read (a read-modify-write that only optimistic concurrency
/// keeps correct), retrying on conflict.
async fn increment_all<S: Store>(store: &S, set: Vec<StreamId>, label: &str) -> Acknowledged {
    const MAX_ATTEMPTS: usize = 10_000;
    let sentence = "multi-stream appends racing over overlapping streams must lose no update";
    for _ in 0..MAX_ATTEMPTS {
        let mut batches = Vec::with_capacity(set.len());
        for counter in &set {
            let events = read_stream_all(store, counter).await;
            let (version, value) = events
                .last()
                .map_or((Version::INITIAL, 0), |e| (e.version, counter_value(e)));
            batches.push(StreamBatch::new(
                counter.clone(),
                ExpectedVersion::Exact(version),
                vec![counter_event(value + 1, label)],
            ));
        }
        let ids: Vec<Uuid> = batches.iter().flat_map(|b| new_ids(&b.events)).collect();
        match store.append_streams(batches).await {
            Ok(outcomes) => {
                assert_eq!(outcomes.len(), set.len(), "{sentence}: one outcome per batch");
                return Acknowledged { streams: set, ids };
            }
            Err(StoreError::Conflicts(conflicts)) => assert!(
                conflicts
                    .as_slice()
                    .iter()
                    .all(|c| set.contains(&c.stream) && !c.expected.is_satisfied_by(c.actual)),
                "{sentence}: each conflict must name a stream of the append whose expectation                  failed: {conflicts:?}"
            ),
            Err(other) => panic!("{sentence}: the append failed with {other:?}"),
        }
    }
    panic!("{sentence}: an increment conflicted {MAX_ATTEMPTS} times in a row: writers starve");
}

pub(super) async fn multi_stream_racing_writers_lose_no_update<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const COUNTERS: usize = 5;
    const TASKS: usize = 12;
    const INCREMENTS: usize = 8;
    let sentence = "multi-stream appends racing over overlapping streams must lose no update";
    let store = Arc::new(store);
    let counters: Arc<Vec<StreamId>> = Arc::new(
        (0..COUNTERS)
            .map(|i| stream(&format!("counter-{i}")))
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(TASKS));

    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let counters = Arc::clone(&counters);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                barrier.wait().await;
                for increment in 0..INCREMENTS {
                    // Overlapping sets of one to three counters, listed in different orders
                    // (ascending for some tasks, descending for others): a store that locks
                    // in the order given would deadlock.
                    let width = 1 + (task + increment) % 3;
                    let mut set: Vec<StreamId> = (0..width)
                        .map(|k| counters[(task + increment + k * 2) % COUNTERS].clone())
                        .collect();
                    set.sort();
                    set.dedup();
                    if task % 2 == 1 {
                        set.reverse();
                    }
                    let label = format!("task {task} increment {increment}");
                    acknowledged.push(increment_all(&*store, set, &label).await);
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for handle in handles {
        acknowledged.extend(join(handle).await);
    }
    assert_eq!(acknowledged.len(), TASKS * INCREMENTS);

    let mut increments: HashMap<&StreamId, u64> = HashMap::new();
    for ack in &acknowledged {
        for s in &ack.streams {
            *increments.entry(s).or_default() += 1;
        }
    }
    let mut total = 0;
    for counter in counters.iter() {
        let events = read_stream_all(&*store, counter).await;
        let expected = increments.get(counter).copied().unwrap_or_default();
        let values: Vec<u64> = events.iter().map(counter_value).collect();
        assert_eq!(
            values,
            (1..=expected).collect::<Vec<_>>(),
            "{sentence}: counter `{counter}` must count every acknowledged increment once, \
             each written on the value before it"
        );
        total += values.last().copied().unwrap_or_default();
    }
    let acknowledged_events: usize = acknowledged.iter().map(|a| a.ids.len()).sum();
    assert_eq!(
        total, acknowledged_events as u64,
        "{sentence}: the counters' sum must equal the increments acknowledged"
    );

    // Each acknowledged append is one contiguous run of the log, and nothing else is stored.
    let log = read_log(&*store).await;
    assert_positions_increase(&log, sentence);
    assert_eq!(
        log.len(),
        acknowledged_events,
        "{sentence}: the log must hold exactly the acknowledged events"
    );
    let at: HashMap<Uuid, usize> = log
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id, i))
        .collect();
    for ack in &acknowledged {
        let places: Vec<usize> = ack
            .ids
            .iter()
            .map(|id| {
                *at.get(id)
                    .unwrap_or_else(|| panic!("{sentence}: acknowledged event {id} is missing"))
            })
            .collect();
        let first = places[0];
        assert_eq!(
            places,
            (first..first + places.len()).collect::<Vec<_>>(),
            "{sentence}: an append's events must be one contiguous run of the log, in order"
        );
    }
}

pub(super) async fn multi_stream_readers_never_see_a_partial_append<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const APPENDS: usize = 40;
    const READERS: usize = 3;
    let sentence = "readers must see a multi-stream append whole or not at all";
    let store = Arc::new(store);
    let (left, right) = (stream("ms-left"), stream("ms-right"));
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            let (left, right) = (left.clone(), right.clone());
            tokio::spawn(async move {
                let mut reads = 0_usize;
                loop {
                    // Checked before the read, so the last read happens after the writer is
                    // done and every reader reads at least once.
                    let finished = done.load(Ordering::SeqCst);
                    let log = read_log(&*store).await;
                    let mut per_append: BTreeMap<String, usize> = BTreeMap::new();
                    for event in &log {
                        let label: String = serde_json::from_slice(&event.payload)
                            .unwrap_or_else(|e| panic!("a payload does not read back: {e}"));
                        let append = label.split('#').next().unwrap_or_default().to_owned();
                        *per_append.entry(append).or_default() += 1;
                    }
                    for (append, count) in &per_append {
                        assert_eq!(
                            *count, 5,
                            "{sentence}: read_all showed {count} of the 5 events of `{append}`"
                        );
                    }
                    let (l, r) = (
                        read_stream_all(&*store, &left).await.len(),
                        read_stream_all(&*store, &right).await.len(),
                    );
                    assert_eq!(
                        (l % 2, r % 3),
                        (0, 0),
                        "{sentence}: read_stream showed part of a batch"
                    );
                    reads += 1;
                    if finished {
                        return reads;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    for i in 0..APPENDS {
        // Labels `append i#0..#4` across both streams: two events left, three right.
        let events = batch(&format!("append {i}"), 5);
        let (l, r) = events.split_at(2);
        let version = |per: u64| ExpectedVersion::Exact(Version(i as u64 * per));
        append_streams_ok(
            &*store,
            vec![
                StreamBatch::new(left.clone(), version(2), l.to_vec()),
                StreamBatch::new(right.clone(), version(3), r.to_vec()),
            ],
            sentence,
        )
        .await;
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(join(reader).await > 0);
    }
    let log = read_log(&*store).await;
    assert_eq!(
        log.len(),
        APPENDS * 5,
        "{sentence}: every append must be stored"
    );
    assert_eq!(
        ids(&read_stream_all(&*store, &left).await).len(),
        APPENDS * 2
    );
}
