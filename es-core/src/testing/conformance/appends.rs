//! Appends: expected versions, atomic rejection, empty batches, contiguous versions.

use super::{
    append_ok, assert_conflict, batch, ids, last_position, new_ids, read_log, read_stream_all,
    stream, versions, Store,
};
use crate::clock::ManualClock;
use crate::store::{ExpectedVersion, StoreError, VersionRange};
use crate::types::{StreamId, Version};

/// Appends two events to a new stream with `expected` and checks they start it at version 1.
async fn new_stream_accepts<S: Store>(store: &S, expected: ExpectedVersion) {
    let stream = stream("new");
    let events = batch("new", 2);
    let outcome = append_ok(store, &stream, expected, events.clone()).await;
    let read = read_stream_all(store, &stream).await;
    assert_eq!(
        ids(&read),
        new_ids(&events),
        "an append with {expected:?} to a new stream must store its events"
    );
    assert_eq!(
        versions(&read),
        [1, 2],
        "a new stream's events must get versions 1, 2"
    );
    assert_eq!(
        outcome.version,
        Version(2),
        "the outcome must name the last version"
    );
}

pub(super) async fn new_stream_accepts_no_stream<S: Store>(store: S, _clock: ManualClock) {
    new_stream_accepts(&store, ExpectedVersion::NoStream).await;
}

pub(super) async fn new_stream_accepts_exact_zero<S: Store>(store: S, _clock: ManualClock) {
    new_stream_accepts(&store, ExpectedVersion::Exact(Version::INITIAL)).await;
}

pub(super) async fn new_stream_accepts_any<S: Store>(store: S, _clock: ManualClock) {
    new_stream_accepts(&store, ExpectedVersion::Any).await;
}

/// Appends to a new stream with `expected`, which must be rejected, and checks nothing was
/// written anywhere.
async fn new_stream_rejects<S: Store>(store: &S, expected: ExpectedVersion, sentence: &str) {
    // Another stream has events, so "nothing written" is checked against a non-empty log.
    let other = stream("other");
    append_ok(store, &other, ExpectedVersion::Any, batch("other", 1)).await;
    let log_before = read_log(store).await;
    let last_before = last_position(store).await;

    let stream = stream(&format!("new, appended with {expected}"));
    let result = store.append(&stream, expected, batch("rejected", 3)).await;
    assert_conflict(result, &stream, expected, None, sentence);

    assert!(
        read_stream_all(store, &stream).await.is_empty(),
        "{sentence}: the rejected batch must not create the stream"
    );
    assert_eq!(
        read_log(store).await,
        log_before,
        "{sentence}: the rejected batch must not reach the global log"
    );
    assert_eq!(
        last_position(store).await,
        last_before,
        "{sentence}: last_position moved"
    );
}

pub(super) async fn new_stream_rejects_stream_exists<S: Store>(store: S, _clock: ManualClock) {
    new_stream_rejects(
        &store,
        ExpectedVersion::StreamExists,
        "StreamExists on a stream with no events must be a conflict",
    )
    .await;
}

pub(super) async fn new_stream_rejects_exact_nonzero<S: Store>(store: S, _clock: ManualClock) {
    for version in [1, 2, 1000] {
        new_stream_rejects(
            &store,
            ExpectedVersion::Exact(Version(version)),
            &format!("Exact({version}) on a stream with no events must be a conflict"),
        )
        .await;
    }
}

/// A stream holding `count` events, returning it and its events' ids.
async fn existing_stream<S: Store>(store: &S, count: usize) -> (StreamId, Vec<uuid::Uuid>) {
    let stream = stream("existing");
    let events = batch("existing", count);
    let ids = new_ids(&events);
    append_ok(store, &stream, ExpectedVersion::NoStream, events).await;
    (stream, ids)
}

/// Appends two events to a stream of three with `expected` and checks they get versions 4, 5.
async fn existing_stream_accepts<S: Store>(store: &S, expected: ExpectedVersion) {
    let (stream, mut expected_ids) = existing_stream(store, 3).await;
    let events = batch("more", 2);
    expected_ids.extend(new_ids(&events));
    let outcome = append_ok(store, &stream, expected, events).await;
    let read = read_stream_all(store, &stream).await;
    assert_eq!(
        ids(&read),
        expected_ids,
        "an append with {expected:?} must add its events after the stream's last event"
    );
    assert_eq!(
        versions(&read),
        [1, 2, 3, 4, 5],
        "the appended events must continue the stream's versions"
    );
    assert_eq!(
        outcome.version,
        Version(5),
        "the outcome must name the last version"
    );
}

pub(super) async fn existing_stream_accepts_exact_current_version<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    existing_stream_accepts(&store, ExpectedVersion::Exact(Version(3))).await;
}

pub(super) async fn existing_stream_accepts_stream_exists<S: Store>(store: S, _clock: ManualClock) {
    existing_stream_accepts(&store, ExpectedVersion::StreamExists).await;
}

pub(super) async fn existing_stream_accepts_any<S: Store>(store: S, _clock: ManualClock) {
    existing_stream_accepts(&store, ExpectedVersion::Any).await;
}

/// Appends to a stream of three with `expected`, which must be rejected with `actual: 3`, and
/// checks nothing was written.
async fn existing_stream_rejects<S: Store>(store: &S, expected: ExpectedVersion, sentence: &str) {
    let (stream, existing_ids) = existing_stream(store, 3).await;
    let log_before = read_log(store).await;
    let result = store.append(&stream, expected, batch("rejected", 2)).await;
    assert_conflict(result, &stream, expected, Some(Version(3)), sentence);
    assert_eq!(
        ids(&read_stream_all(store, &stream).await),
        existing_ids,
        "{sentence}: the stream must be unchanged"
    );
    assert_eq!(
        read_log(store).await,
        log_before,
        "{sentence}: the global log must be unchanged"
    );
}

pub(super) async fn existing_stream_rejects_no_stream<S: Store>(store: S, _clock: ManualClock) {
    existing_stream_rejects(
        &store,
        ExpectedVersion::NoStream,
        "NoStream on a stream with events must be a conflict",
    )
    .await;
}

pub(super) async fn existing_stream_rejects_exact_zero<S: Store>(store: S, _clock: ManualClock) {
    existing_stream_rejects(
        &store,
        ExpectedVersion::Exact(Version::INITIAL),
        "Exact(0) on a stream with events must be a conflict",
    )
    .await;
}

pub(super) async fn existing_stream_rejects_exact_version_ahead<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    existing_stream_rejects(
        &store,
        ExpectedVersion::Exact(Version(4)),
        "Exact(4) on a stream at version 3 must be a conflict",
    )
    .await;
}

pub(super) async fn existing_stream_rejects_stale_exact_version<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a writer whose expected version is stale must get a conflict";
    let (stream, mut expected_ids) = existing_stream(&store, 3).await;

    // Two writers read the stream at version 3; the first one saves.
    let seen_by_both = read_stream_all(&store, &stream)
        .await
        .last()
        .map(|e| e.version)
        .expect("the stream has events");
    let first = batch("first writer", 2);
    expected_ids.extend(new_ids(&first));
    append_ok(&store, &stream, ExpectedVersion::Exact(seen_by_both), first).await;

    // The second one still expects version 3.
    let log_before = read_log(&store).await;
    let second = batch("second writer", 2);
    let second_ids = new_ids(&second);
    let expected = ExpectedVersion::Exact(seen_by_both);
    let result = store.append(&stream, expected, second).await;
    assert_conflict(result, &stream, expected, Some(Version(5)), sentence);

    assert_eq!(
        ids(&read_stream_all(&store, &stream).await),
        expected_ids,
        "{sentence}: the stream must hold the first writer's events only"
    );
    let log = read_log(&store).await;
    assert_eq!(
        log, log_before,
        "{sentence}: the global log must be unchanged"
    );
    assert!(
        !log.iter().any(|e| second_ids.contains(&e.event_id)),
        "{sentence}: no event of the rejected batch may be stored"
    );
}

pub(super) async fn rejected_batch_writes_nothing<S: Store>(store: S, _clock: ManualClock) {
    let sentence = "a rejected batch must write nothing";
    let (stream, mut expected_ids) = existing_stream(&store, 2).await;
    let other = super::stream("other");
    append_ok(&store, &other, ExpectedVersion::NoStream, batch("other", 2)).await;
    let log_before = read_log(&store).await;
    let last_before = last_position(&store).await;

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(Version(1)),
        ExpectedVersion::Exact(Version(7)),
    ] {
        let result = store.append(&stream, expected, batch("rejected", 10)).await;
        assert_conflict(result, &stream, expected, Some(Version(2)), sentence);
    }
    assert_eq!(
        ids(&read_stream_all(&store, &stream).await),
        expected_ids,
        "{sentence}: the stream must be unchanged"
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

    // The next accepted append continues after the real last version, not after the burned
    // attempts, and lands after everything already in the log.
    let next = batch("accepted", 3);
    expected_ids.extend(new_ids(&next));
    let outcome = append_ok(&store, &stream, ExpectedVersion::Exact(Version(2)), next).await;
    assert_eq!(
        outcome.version,
        Version(5),
        "{sentence}: the next append must continue at version 3"
    );
    let read = read_stream_all(&store, &stream).await;
    assert_eq!(ids(&read), expected_ids);
    assert_eq!(versions(&read), [1, 2, 3, 4, 5]);
    assert!(
        read[2].global_position > last_before,
        "{sentence}: the next append must land after the log's last event"
    );
}

pub(super) async fn empty_append_is_rejected<S: Store>(store: S, _clock: ManualClock) {
    let fresh = stream("fresh");
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        match store.append(&fresh, expected, Vec::new()).await {
            Err(StoreError::EmptyAppend) => {}
            other => panic!(
                "an empty append to a new stream with {expected:?} must be \
                 StoreError::EmptyAppend, got {other:?}"
            ),
        }
    }
    assert!(
        read_stream_all(&store, &fresh).await.is_empty(),
        "an empty append must not create the stream"
    );
    assert_eq!(
        last_position(&store).await,
        crate::types::GlobalPosition::START,
        "an empty append must not move last_position"
    );

    let (stream, existing_ids) = existing_stream(&store, 2).await;
    let log_before = read_log(&store).await;
    for expected in [
        ExpectedVersion::Exact(Version(2)),
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
    ] {
        match store.append(&stream, expected, Vec::new()).await {
            Err(StoreError::EmptyAppend) => {}
            other => panic!(
                "an empty append to an existing stream with {expected:?} must be \
                 StoreError::EmptyAppend, got {other:?}"
            ),
        }
    }
    assert_eq!(ids(&read_stream_all(&store, &stream).await), existing_ids);
    assert_eq!(
        read_log(&store).await,
        log_before,
        "an empty append must not change the log"
    );
}

pub(super) async fn versions_are_contiguous_from_one<S: Store>(store: S, _clock: ManualClock) {
    let stream = stream("contiguous");
    let other = super::stream("interleaved");
    let mut expected_ids = Vec::new();
    let mut version = Version::INITIAL;
    for (round, size) in [1_usize, 3, 2, 5, 1, 4].into_iter().enumerate() {
        let events = batch(&format!("round {round}"), size);
        expected_ids.extend(new_ids(&events));
        let expected = if round % 2 == 0 {
            ExpectedVersion::Exact(version)
        } else {
            ExpectedVersion::Any
        };
        version = append_ok(&store, &stream, expected, events).await.version;
        // Events of another stream in between must not disturb the versions.
        append_ok(&store, &other, ExpectedVersion::Any, batch("between", 1)).await;
    }
    let read = read_stream_all(&store, &stream).await;
    assert_eq!(
        versions(&read),
        (1..=16).collect::<Vec<u64>>(),
        "a stream's versions must be 1, 2, 3 ... with no gap or duplicate"
    );
    assert_eq!(
        ids(&read),
        expected_ids,
        "a stream's events must be in append order"
    );
    assert_eq!(version, Version(16));
    assert_eq!(
        versions(&read_stream_all(&store, &other).await),
        (1..=6).collect::<Vec<u64>>(),
        "each stream has its own versions"
    );
}

pub(super) async fn append_outcome_names_last_version_and_position<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let a = stream("a");
    let b = stream("b");
    for (stream, expected, size) in [
        (&a, ExpectedVersion::NoStream, 3),
        (&b, ExpectedVersion::NoStream, 1),
        (&a, ExpectedVersion::Exact(Version(3)), 2),
        (&b, ExpectedVersion::Any, 4),
        (&a, ExpectedVersion::StreamExists, 1),
    ] {
        let events = batch("outcome", size);
        let last_id = events.last().map(|e| e.event_id);
        let outcome = append_ok(&store, stream, expected, events).await;
        let read = read_stream_all(&store, stream).await;
        let last = read.last().expect("the stream has events");
        assert_eq!(
            Some(last.event_id),
            last_id,
            "the batch's last event is the stream's last"
        );
        assert_eq!(
            (outcome.version, outcome.position),
            (last.version, last.global_position),
            "AppendOutcome must name the version and global position of the batch's last event"
        );
        assert_eq!(
            last_position(&store).await,
            outcome.position,
            "after an append, last_position is the outcome's position"
        );
    }
}

pub(super) async fn large_batch_is_appended_whole<S: Store>(store: S, _clock: ManualClock) {
    const SIZE: usize = 1000;
    let stream = stream("large");
    let mut events = batch("large", SIZE);
    for (i, event) in events.iter_mut().enumerate() {
        // Payloads of different sizes, up to 2 KiB.
        event.payload = vec![u8::try_from(i % 251).unwrap_or(0); i * 2];
    }
    let expected_ids = new_ids(&events);
    let outcome = append_ok(&store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    assert_eq!(outcome.version, Version(SIZE as u64));
    let read = read_stream_all(&store, &stream).await;
    assert_eq!(
        ids(&read),
        expected_ids,
        "all events of a large batch, in order"
    );
    assert_eq!(versions(&read), (1..=SIZE as u64).collect::<Vec<_>>());
    for (recorded, appended) in read.iter().zip(&events) {
        assert_eq!(
            recorded.payload, appended.payload,
            "payload of version {}",
            recorded.version
        );
    }
    super::assert_positions_increase(&read_log(&store).await, "a large batch");
    let middle = store
        .read_stream(
            &stream,
            VersionRange {
                from: Version(400),
                to: Version(600),
            },
        )
        .await
        .expect("read_stream");
    assert_eq!(versions(&middle), (400..=600).collect::<Vec<_>>());
}
