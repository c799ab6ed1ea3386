//! Behaviour of [`Subscription`] itself, over sources built for each case.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures_core::Stream;
use uuid::Uuid;

use super::*;
use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent};
use crate::store::{ExpectedVersion, InMemory};
use crate::types::StreamId;

fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"{}".to_vec(),
        metadata: Metadata::default(),
    }
}

async fn append(store: &InMemory, event_type: &str, count: usize) {
    let events = (0..count).map(|_| event(event_type)).collect();
    store
        .append(&StreamId::new("order", "1"), ExpectedVersion::Any, events)
        .await
        .expect("the append succeeds");
}

/// Polls `subscription` once as a stream.
fn poll_once(subscription: &mut Subscription) -> Poll<Option<Result<RecordedEvent, StoreError>>> {
    let waker = std::task::Waker::noop();
    Pin::new(subscription).poll_next(&mut std::task::Context::from_waker(waker))
}

/// The next item of `subscription` as a stream.
async fn next(subscription: &mut Subscription) -> Option<Result<RecordedEvent, StoreError>> {
    poll_fn(|cx| Pin::new(&mut *subscription).poll_next(cx)).await
}

#[test]
fn filter_accepts_any_listed_type_and_everything_when_empty() {
    let recorded = |aggregate_type: &str, event_type: &str| RecordedEvent {
        event_id: Uuid::nil(),
        stream: StreamId::new(aggregate_type, "1"),
        version: crate::Version(1),
        global_position: GlobalPosition(1),
        recorded_at: crate::Timestamp::EPOCH,
        event_type: event_type.into(),
        schema_version: 1,
        codec: CodecId::Json,
        metadata: Metadata::default().into(),
        payload: Vec::new().into(),
    };
    let all = EventFilter::all();
    assert!(all.is_all() && all.matches(&recorded("order", "Shipped")));
    let orders = EventFilter::all()
        .aggregate_type("order")
        .aggregate_type("cart");
    assert!(orders.matches(&recorded("cart", "Any")));
    assert!(!orders.matches(&recorded("payment", "Any")));
    let both = orders.clone().event_type("Shipped");
    assert!(both.matches(&recorded("order", "Shipped")));
    assert!(!both.matches(&recorded("order", "Paid")));
    assert!(!both.matches(&recorded("payment", "Shipped")));
    // Listing a type twice changes nothing.
    assert_eq!(
        EventFilter::all().event_type("A").event_type("A"),
        EventFilter::all().event_type("A")
    );
}

#[tokio::test]
async fn position_moves_past_events_the_filter_rejects_while_waiting() {
    let store = InMemory::new();
    append(&store, "Noise", 10).await;
    let mut subscription =
        store.subscribe(GlobalPosition::START, EventFilter::all().event_type("Rare"));
    assert_eq!(subscription.position(), GlobalPosition::START);
    // One poll reads the whole log, finds nothing for the filter and waits at the head.
    assert!(poll_once(&mut subscription).is_pending());
    assert_eq!(subscription.position(), GlobalPosition(10));

    append(&store, "Rare", 1).await;
    let batch = subscription.next_batch().await.expect("the read succeeds");
    assert_eq!(batch.len(), 1);
    assert_eq!(subscription.position(), GlobalPosition(11));
}

#[tokio::test]
async fn position_stays_at_the_last_event_taken_while_a_page_is_in_hand() {
    let store = InMemory::new();
    append(&store, "Tick", 5).await;
    let mut subscription = store.subscribe(GlobalPosition::START, EventFilter::all());
    let Poll::Ready(Some(Ok(first))) = poll_once(&mut subscription) else {
        panic!("the stored events are ready");
    };
    assert_eq!(first.global_position, GlobalPosition(1));
    assert_eq!(subscription.position(), GlobalPosition(1));
    assert_eq!(store.subscription_stats().buffered_events, 4);
    let rest = subscription.next_batch().await.expect("the page in hand");
    assert_eq!(rest.len(), 4);
    assert_eq!(subscription.position(), GlobalPosition(5));
    assert_eq!(store.subscription_stats().buffered_events, 0);
}

/// A source over an in-memory store that fails its first `failures` reads.
struct Flaky {
    store: InMemory,
    failures: AtomicUsize,
}

impl PageSource for Flaky {
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Box::pin(std::future::ready(Err(StoreError::Connection(
                "the connection dropped".into(),
            ))));
        }
        self.store.read_page(after, filter, limit)
    }
}

#[tokio::test]
async fn a_failed_read_is_yielded_and_the_next_poll_reads_again_from_the_same_place() {
    let store = InMemory::new();
    append(&store, "Tick", 3).await;
    let source = Flaky {
        store: store.clone(),
        failures: AtomicUsize::new(2),
    };
    let wakeups = Arc::new(Wakeups::new());
    let mut subscription = Subscription::new(
        Arc::new(source),
        wakeups,
        GlobalPosition::START,
        EventFilter::all(),
    );
    for _ in 0..2 {
        match next(&mut subscription).await {
            Some(Err(StoreError::Connection(_))) => {}
            other => panic!("expected the connection error, got {other:?}"),
        }
    }
    for position in 1..=3 {
        let event = next(&mut subscription)
            .await
            .expect("the stream goes on")
            .expect("the read succeeds");
        assert_eq!(event.global_position, GlobalPosition(position));
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_stream_ends_after_yielding_closed_once_the_store_is_closed() {
    use crate::store::sqlite::Sqlite;

    let directory = std::env::temp_dir().join(format!("es-subscription-closed-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let store = Sqlite::open(directory.join("events.db"))
        .await
        .expect("the store opens");
    let mut subscription = store.subscribe(GlobalPosition::START, EventFilter::all());
    store.close().await;
    assert!(matches!(
        next(&mut subscription).await,
        Some(Err(StoreError::Closed))
    ));
    assert!(next(&mut subscription).await.is_none(), "the stream ends");
    assert!(next(&mut subscription).await.is_none(), "and stays ended");
    drop(subscription);
    assert_eq!(store.subscription_stats(), SubscriptionStats::default());
    std::fs::remove_dir_all(&directory).expect("the directory is removed");
}
