//! Subscriptions: catch-up then live, exactly once and in order, from any start, filtered,
//! with a stalled subscriber and with subscriptions dropped at any point.
//!
//! A subscription that should deliver and does not would make a check wait forever, so every
//! wait for an event due is bounded by [`DEADLINE`], far beyond any delay a store may take
//! (PostgreSQL's fallback poll included): it turns a lost event into a failure naming it,
//! never measures speed.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use uuid::Uuid;

use super::{append_ok, batch, event, ids, join, last_position, read_log, stream, Store};
use crate::clock::ManualClock;
use crate::event::{NewEvent, RecordedEvent};
use crate::store::ExpectedVersion;
use crate::subscription::{EventFilter, Subscription, SubscriptionStats};
use crate::types::{GlobalPosition, StreamId};

/// The longest a check waits for an event that is due before it fails.
const DEADLINE: Duration = Duration::from_secs(90);

/// A second aggregate type, for the filter checks.
const OTHER_AGGREGATE_TYPE: &str = "conformance-other";

/// A second event type, for the filter checks.
const OTHER_EVENT_TYPE: &str = "ConformanceOther";

/// An event of type `event_type` labelled `label`.
fn typed_event(label: &str, event_type: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        ..event(label)
    }
}

/// The next batch of `subscription`, failing the check on an error or when nothing comes
/// within [`DEADLINE`].
async fn next_batch(subscription: &mut Subscription, context: &str) -> Vec<RecordedEvent> {
    match tokio::time::timeout(DEADLINE, subscription.next_batch()).await {
        Ok(Ok(batch)) => {
            assert!(
                !batch.is_empty(),
                "{context}: next_batch must return at least one event"
            );
            batch
        }
        Ok(Err(error)) => panic!("{context}: the subscription failed: {error:?}"),
        Err(tokio::time::error::Elapsed { .. }) => panic!(
            "{context}: the subscription delivered nothing within {DEADLINE:?} although events \
             were due (a lost wake-up or a lost event)"
        ),
    }
}

/// The next event of `subscription` as a [`Stream`], failing the check as [`next_batch`] does.
async fn next_event(subscription: &mut Subscription, context: &str) -> RecordedEvent {
    let next = poll_fn(|cx| Pin::new(&mut *subscription).poll_next(cx));
    match tokio::time::timeout(DEADLINE, next).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("{context}: the subscription failed: {error:?}"),
        Ok(None) => panic!("{context}: the subscription ended while the store is open"),
        Err(tokio::time::error::Elapsed { .. }) => panic!(
            "{context}: the subscription delivered nothing within {DEADLINE:?} although events \
             were due (a lost wake-up or a lost event)"
        ),
    }
}

/// Appends `batch` to `received`, asserting that positions keep strictly increasing across
/// every delivery (a duplicate or a step back fails at once, naming both positions).
fn take(received: &mut Vec<RecordedEvent>, batch: Vec<RecordedEvent>, sentence: &str) {
    for event in batch {
        if let Some(last) = received.last() {
            assert!(
                event.global_position > last.global_position,
                "{sentence}: the subscription delivered position {} after position {}; events \
                 must come exactly once, in order",
                event.global_position,
                last.global_position
            );
        }
        received.push(event);
    }
}

/// Batches of `subscription` until it delivered the last of `due` (or something past it), so
/// a missing event shows as soon as a later one arrives.
async fn receive_through(
    subscription: &mut Subscription,
    due: &[RecordedEvent],
    sentence: &str,
) -> Vec<RecordedEvent> {
    let mut received = Vec::with_capacity(due.len());
    let Some(last_due) = due.last().map(|e| e.global_position) else {
        return received;
    };
    while received
        .last()
        .is_none_or(|last: &RecordedEvent| last.global_position < last_due)
    {
        let context = format!(
            "{sentence} (after {} of {} events)",
            received.len(),
            due.len()
        );
        let batch = next_batch(subscription, &context).await;
        take(&mut received, batch, sentence);
    }
    received
}

/// Asserts that `received` are exactly `expected` (by event id, in order), naming the first
/// difference.
fn assert_same_events(received: &[RecordedEvent], expected: &[RecordedEvent], sentence: &str) {
    let (got, want) = (ids(received), ids(expected));
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(&want)
        .position(|(got, want)| got != want)
        .unwrap_or(got.len().min(want.len()));
    let describe = |events: &[RecordedEvent]| {
        events.get(at).map_or("nothing".to_owned(), |e| {
            format!("position {}", e.global_position)
        })
    };
    panic!(
        "{sentence}: the subscription delivered {} events where {} were due; the first \
         difference is event #{at}: delivered {}, due {}",
        received.len(),
        expected.len(),
        describe(received),
        describe(expected),
    );
}

/// Appends one event to `stream` that `subscription` must deliver next and alone: proves no
/// other event (a duplicate, one past the filter, one before the start) was pending.
async fn assert_nothing_else_pending<S: Store>(
    store: &S,
    subscription: &mut Subscription,
    stream: &StreamId,
    event_type: &str,
    sentence: &str,
) {
    let sentinel = typed_event("sentinel", event_type);
    let sentinel_id = sentinel.event_id;
    let outcome = append_ok(store, stream, ExpectedVersion::Any, vec![sentinel]).await;
    let batch = next_batch(subscription, &format!("{sentence} (the sentinel)")).await;
    let delivered: Vec<Uuid> = ids(&batch);
    assert_eq!(
        delivered,
        vec![sentinel_id],
        "{sentence}: after the events due, the next append's event must be delivered next and \
         alone, got {} event(s) at positions {:?}",
        batch.len(),
        batch
            .iter()
            .map(|e| e.global_position.get())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        subscription.position(),
        outcome.position,
        "{sentence}: position() must be that of the last event delivered"
    );
}

fn assert_stats(stats: SubscriptionStats, subscriptions: usize, context: &str) {
    assert_eq!(
        stats.subscriptions, subscriptions,
        "{context}: subscription_stats() must count {subscriptions} live subscription(s), got \
         {stats:?}"
    );
}

pub(super) async fn subscription_delivers_every_event_once_in_order_while_16_writers_append<
    S: Store,
>(
    store: S,
    _clock: ManualClock,
) {
    const WRITERS: usize = 16;
    const APPENDS: usize = 12;
    let sentence = "a subscription must deliver every event after its start exactly once, in \
                    order, while writers append";
    let store = Arc::new(store);
    append_ok(
        &*store,
        &stream("before"),
        ExpectedVersion::NoStream,
        batch("before", 5),
    )
    .await;
    let mut subscription = store.subscribe(GlobalPosition::START, EventFilter::all());

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut appended = 0;
                for round in 0..APPENDS {
                    let target = if round % 3 == 0 {
                        stream("shared")
                    } else {
                        stream(&format!("writer {writer}"))
                    };
                    let count = 1 + (writer + round) % 3;
                    let label = format!("writer {writer} round {round}");
                    append_ok(&*store, &target, ExpectedVersion::Any, batch(&label, count)).await;
                    appended += count;
                }
                appended
            })
        })
        .collect();
    let mut writers = std::pin::pin!(async move {
        let mut total = 0;
        for writer in writers {
            total += join(writer).await;
        }
        total
    });

    // Receive while the writers run, until they are done and the log's last event came.
    let mut received = Vec::new();
    let mut appended = None;
    while appended.is_none() {
        tokio::select! {
            batch = next_batch(&mut subscription, sentence) => {
                take(&mut received, batch, sentence);
            }
            total = &mut writers => appended = Some(total),
        }
    }
    let log = read_log(&*store).await;
    assert_eq!(
        appended.map(|total: usize| total + 5),
        Some(log.len()),
        "{sentence}: the log must hold every acknowledged event"
    );
    let last = received.last().map(|e| e.global_position);
    let rest: Vec<RecordedEvent> = log
        .iter()
        .filter(|e| last.is_none_or(|last| e.global_position > last))
        .cloned()
        .collect();
    let more = receive_through(&mut subscription, &rest, sentence).await;
    take(&mut received, more, sentence);
    assert_same_events(&received, &log, sentence);
    assert_nothing_else_pending(
        &*store,
        &mut subscription,
        &stream("after"),
        "ConformanceChecked",
        sentence,
    )
    .await;
}

pub(super) async fn subscription_from_the_start_delivers_stored_then_new_events<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a subscription from GlobalPosition::START must deliver the stored events, \
                    then each new one";
    let (one, two) = (stream("one"), stream("two"));
    append_ok(&store, &one, ExpectedVersion::NoStream, batch("one", 3)).await;
    append_ok(&store, &two, ExpectedVersion::NoStream, batch("two", 2)).await;
    append_ok(&store, &one, ExpectedVersion::Any, batch("one more", 2)).await;
    // Small pages, so the stored events take several reads; events appended before the
    // first read and after the last one.
    let mut subscription = store
        .subscribe(GlobalPosition::START, EventFilter::all())
        .with_page_size(3);
    append_ok(&store, &two, ExpectedVersion::Any, batch("early", 2)).await;
    let log = read_log(&store).await;
    let received = receive_through(&mut subscription, &log, sentence).await;
    assert_same_events(&received, &log, sentence);

    // Now waiting at the head: each append is delivered as it comes.
    for round in 0..3 {
        let label = format!("live {round}");
        append_ok(&store, &one, ExpectedVersion::Any, batch(&label, 2)).await;
        let log = read_log(&store).await;
        let due = &log[log.len() - 2..];
        let live = receive_through(&mut subscription, due, sentence).await;
        assert_same_events(&live, due, sentence);
    }
    assert_nothing_else_pending(
        &store,
        &mut subscription,
        &one,
        "ConformanceChecked",
        sentence,
    )
    .await;
}

pub(super) async fn subscription_from_the_head_delivers_only_new_events<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a subscription from the head of the log must deliver only the events \
                    appended after it";
    let existing = stream("existing");
    append_ok(
        &store,
        &existing,
        ExpectedVersion::NoStream,
        batch("old", 5),
    )
    .await;
    let head = last_position(&store).await;
    let mut subscription = store.subscribe(head, EventFilter::all());
    assert_eq!(
        subscription.position(),
        head,
        "{sentence}: a new subscription's position() must be its start"
    );
    append_ok(&store, &existing, ExpectedVersion::Any, batch("new", 3)).await;
    let log = read_log(&store).await;
    let due: Vec<RecordedEvent> = log
        .into_iter()
        .filter(|e| e.global_position > head)
        .collect();
    let received = receive_through(&mut subscription, &due, sentence).await;
    assert_same_events(&received, &due, sentence);
    assert_nothing_else_pending(
        &store,
        &mut subscription,
        &existing,
        "ConformanceChecked",
        sentence,
    )
    .await;
}

pub(super) async fn subscription_past_the_head_delivers_only_events_after_its_start<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a subscription from a position past the head must deliver only the events \
                    after that position, once they exist";
    let target = stream("past");
    append_ok(&store, &target, ExpectedVersion::NoStream, batch("old", 3)).await;
    let start = GlobalPosition(last_position(&store).await.get() + 4);
    let mut subscription = store.subscribe(start, EventFilter::all());
    // Single-event appends until the log passes the start (a store may burn positions, so
    // how many that takes is not known in advance), then two more.
    let mut beyond = 0;
    let mut appended = 0;
    while beyond < 3 {
        let outcome = append_ok(
            &store,
            &target,
            ExpectedVersion::Any,
            vec![event(&format!("new {appended}"))],
        )
        .await;
        appended += 1;
        if outcome.position > start {
            beyond += 1;
        }
        assert!(appended < 1000, "{sentence}: the log never passed {start}");
    }
    let due: Vec<RecordedEvent> = read_log(&store)
        .await
        .into_iter()
        .filter(|e| e.global_position > start)
        .collect();
    let received = receive_through(&mut subscription, &due, sentence).await;
    assert_same_events(&received, &due, sentence);
    assert_nothing_else_pending(
        &store,
        &mut subscription,
        &target,
        "ConformanceChecked",
        sentence,
    )
    .await;
}

/// Appends a mix of both aggregate types and both event types, and returns the log.
async fn append_mixed<S: Store>(store: &S, label: &str) -> Vec<RecordedEvent> {
    let ours = stream(&format!("{label} ours"));
    let other = StreamId::new(OTHER_AGGREGATE_TYPE, format!("{label} other"));
    for round in 0..4 {
        let events = vec![
            typed_event(&format!("{label} {round} a"), "ConformanceChecked"),
            typed_event(&format!("{label} {round} b"), OTHER_EVENT_TYPE),
        ];
        append_ok(store, &ours, ExpectedVersion::Any, events).await;
        let events = vec![
            typed_event(&format!("{label} {round} c"), OTHER_EVENT_TYPE),
            typed_event(&format!("{label} {round} d"), "ConformanceChecked"),
            typed_event(&format!("{label} {round} e"), "ConformanceThird"),
        ];
        append_ok(store, &other, ExpectedVersion::Any, events).await;
    }
    read_log(store).await
}

/// Subscribes with `filter` before and during a mix of appends, and checks that exactly the
/// matching events come, in order; `sentinel` is a stream and event type the filter passes.
async fn check_filter<S: Store>(
    store: S,
    filter: EventFilter,
    sentinel: (StreamId, &str),
    sentence: &str,
) {
    let stored = append_mixed(&store, "stored").await;
    let mut subscription = store.subscribe(GlobalPosition::START, filter.clone());
    let due: Vec<RecordedEvent> = stored.into_iter().filter(|e| filter.matches(e)).collect();
    assert!(
        !due.is_empty(),
        "{sentence}: the check's own events must match"
    );
    let received = receive_through(&mut subscription, &due, sentence).await;
    assert_same_events(&received, &due, sentence);

    let before_live = subscription.position();
    let log = append_mixed(&store, "live").await;
    let due: Vec<RecordedEvent> = log
        .into_iter()
        .filter(|e| e.global_position > before_live && filter.matches(e))
        .collect();
    let received = receive_through(&mut subscription, &due, sentence).await;
    assert_same_events(&received, &due, sentence);
    assert_nothing_else_pending(&store, &mut subscription, &sentinel.0, sentinel.1, sentence).await;
}

pub(super) async fn subscription_filtered_by_aggregate_type_delivers_only_those<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    check_filter(
        store,
        EventFilter::all().aggregate_type(OTHER_AGGREGATE_TYPE),
        (
            StreamId::new(OTHER_AGGREGATE_TYPE, "sentinel"),
            "ConformanceChecked",
        ),
        "a subscription filtered by aggregate type must deliver exactly the events of streams \
         of that type",
    )
    .await;
}

pub(super) async fn subscription_filtered_by_event_type_delivers_only_those<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    check_filter(
        store,
        EventFilter::all()
            .event_type(OTHER_EVENT_TYPE)
            .event_type("ConformanceThird"),
        (stream("sentinel"), "ConformanceThird"),
        "a subscription filtered by event types must deliver exactly the events of any of them",
    )
    .await;
}

pub(super) async fn subscription_filtered_by_aggregate_and_event_type_delivers_only_both<
    S: Store,
>(
    store: S,
    _clock: ManualClock,
) {
    check_filter(
        store,
        EventFilter::all()
            .aggregate_type(OTHER_AGGREGATE_TYPE)
            .event_type("ConformanceChecked"),
        (
            StreamId::new(OTHER_AGGREGATE_TYPE, "sentinel"),
            "ConformanceChecked",
        ),
        "a subscription filtered by aggregate type and event type must deliver exactly the \
         events matching both",
    )
    .await;
}

pub(super) async fn subscription_filter_matching_nothing_reads_past_every_event<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    // More non-matching events than a store would sensibly scan in one read, so the check
    // covers a filtered read that stops short of the head and goes on from where it stopped.
    const NON_MATCHING: usize = 9_000;
    let sentence = "a subscription whose filter matches no stored event must deliver none of \
                    them, then the first matching one";
    let target = stream("noise");
    for chunk in 0..NON_MATCHING / 1_000 {
        let label = format!("noise {chunk}");
        append_ok(&store, &target, ExpectedVersion::Any, batch(&label, 1_000)).await;
    }
    let filter = EventFilter::all().event_type("ConformanceRare");
    let mut subscription = store.subscribe(GlobalPosition::START, filter);
    append_ok(
        &store,
        &target,
        ExpectedVersion::Any,
        batch("more noise", 10),
    )
    .await;
    assert_nothing_else_pending(
        &store,
        &mut subscription,
        &target,
        "ConformanceRare",
        sentence,
    )
    .await;
}

pub(super) async fn subscription_that_stalls_then_resumes_misses_nothing<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const PAGE: usize = 16;
    const STALLED_BATCHES: usize = 40;
    const BATCH: usize = 50;
    let sentence = "a subscriber that stalls while events are appended must cost the store no \
                    buffered events, then get every event it missed";
    let target = stream("stall");
    append_ok(
        &store,
        &target,
        ExpectedVersion::NoStream,
        batch("before", 50),
    )
    .await;
    let mut subscription = store
        .subscribe(GlobalPosition::START, EventFilter::all())
        .with_page_size(PAGE);
    let first = next_event(&mut subscription, sentence).await;
    let held = store.subscription_stats();
    assert_stats(held, 1, sentence);
    assert!(
        held.buffered_events < PAGE,
        "{sentence}: with one event of a {PAGE}-event page taken, the subscription may hold at \
         most {} events, holds {}",
        PAGE - 1,
        held.buffered_events
    );

    // The subscriber stalls: nobody polls it while the writer appends.
    for round in 0..STALLED_BATCHES {
        let label = format!("stalled {round}");
        append_ok(&store, &target, ExpectedVersion::Any, batch(&label, BATCH)).await;
    }
    let stalled = store.subscription_stats();
    assert_stats(stalled, 1, sentence);
    assert_eq!(
        stalled.buffered_events,
        held.buffered_events,
        "{sentence}: {} events appended while the subscriber stalled must not be buffered for \
         it (the store must read them from the log when it resumes)",
        STALLED_BATCHES * BATCH
    );

    let mut received = vec![first];
    let log = read_log(&store).await;
    while received.len() < log.len() {
        let event = next_event(&mut subscription, sentence).await;
        take(&mut received, vec![event], sentence);
        assert!(
            store.subscription_stats().buffered_events < PAGE,
            "{sentence}: a subscription must hold at most one page"
        );
    }
    assert_same_events(&received, &log, sentence);
    assert_nothing_else_pending(
        &store,
        &mut subscription,
        &target,
        "ConformanceChecked",
        sentence,
    )
    .await;
}

pub(super) async fn subscription_next_batch_cancelled_mid_read_loses_nothing<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    const APPENDS: usize = 30;
    let sentence = "a next_batch dropped before it completes must lose and repeat nothing";
    let target = stream("cancelled");
    let mut subscription = store.subscribe(GlobalPosition::START, EventFilter::all());
    let mut received = Vec::new();
    for round in 0..APPENDS {
        append_ok(
            &store,
            &target,
            ExpectedVersion::Any,
            batch(&format!("{round}"), 2),
        )
        .await;
        // One poll of a next_batch, then the future is dropped, wherever its read stands.
        poll_fn(|cx| {
            let next = std::pin::pin!(subscription.next_batch());
            if let Poll::Ready(result) = next.poll(cx) {
                match result {
                    Ok(batch) => take(&mut received, batch, sentence),
                    Err(error) => panic!("{sentence}: the subscription failed: {error:?}"),
                }
            }
            Poll::Ready(())
        })
        .await;
        tokio::task::yield_now().await;
    }
    let log = read_log(&store).await;
    let last = received.last().map(|e| e.global_position);
    let rest: Vec<RecordedEvent> = log
        .iter()
        .filter(|e| last.is_none_or(|last| e.global_position > last))
        .cloned()
        .collect();
    let more = receive_through(&mut subscription, &rest, sentence).await;
    take(&mut received, more, sentence);
    assert_same_events(&received, &log, sentence);
    assert_nothing_else_pending(
        &store,
        &mut subscription,
        &target,
        "ConformanceChecked",
        sentence,
    )
    .await;
}

pub(super) async fn subscription_dropped_at_any_point_frees_everything<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let sentence = "a dropped subscription must free everything it held";
    let target = stream("dropped");
    assert_stats(store.subscription_stats(), 0, "a new store");
    append_ok(
        &store,
        &target,
        ExpectedVersion::NoStream,
        batch("stored", 20),
    )
    .await;

    let never_polled = store.subscribe(GlobalPosition::START, EventFilter::all());
    let mut page_in_hand = store
        .subscribe(GlobalPosition::START, EventFilter::all())
        .with_page_size(8);
    next_event(&mut page_in_hand, sentence).await;
    let head = last_position(&store).await;
    let mut waiting = store.subscribe(head, EventFilter::all());
    let mut reading = store.subscribe(GlobalPosition::START, EventFilter::all());
    for subscription in [&mut waiting, &mut reading] {
        // One poll: the read starts (or, at the head, the wait), and stays in flight.
        poll_fn(|cx| {
            let _ = Pin::new(&mut *subscription).poll_next(cx);
            Poll::Ready(())
        })
        .await;
    }
    assert_stats(store.subscription_stats(), 4, sentence);
    assert!(
        store.subscription_stats().buffered_events > 0,
        "{sentence}: a subscription with a page in hand must count its events as buffered"
    );

    drop(never_polled);
    drop(page_in_hand);
    drop(waiting);
    drop(reading);
    let stats = store.subscription_stats();
    assert_eq!(
        stats,
        SubscriptionStats::default(),
        "{sentence}: once every subscription is dropped (unpolled, with a page in hand, \
         waiting at the head, mid-read) the store must count none and hold no events"
    );

    // The store is unharmed: appends go on and a new subscription gets the whole log.
    append_ok(&store, &target, ExpectedVersion::Any, batch("after", 3)).await;
    let mut fresh = store.subscribe(GlobalPosition::START, EventFilter::all());
    let log = read_log(&store).await;
    let received = receive_through(&mut fresh, &log, sentence).await;
    assert_same_events(&received, &log, sentence);
    drop(fresh);
    assert_stats(store.subscription_stats(), 0, sentence);
}
