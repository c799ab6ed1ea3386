//! A multi-stream append wakes subscriptions like a single-stream one, on every store: the
//! in-memory store after the append, SQLite after the writer's COMMIT, PostgreSQL by the
//! `NOTIFY` sent inside the append's transaction. The subscriptions here never poll, so only a
//! wake-up can deliver the events.
//!
//! Every wait for events that are due is bounded by [`DEADLINE`], so a lost wake-up fails the
//! test instead of hanging it; nothing here measures speed.

mod postgres_support;
mod sqlite_support;

use std::time::Duration;

use es_core::store::postgres::Postgres;
use es_core::store::sqlite::{Sqlite, SqliteOptions};
use es_core::{
    EventFilter, EventStore, ExpectedVersion, InMemory, StreamBatch, StreamId, Subscribe,
    Subscription,
};
use postgres_support::{events, TestSchema};

/// The longest a test waits for something that is due.
const DEADLINE: Duration = Duration::from_secs(90);

/// A poll so slow it never fires during a test.
const NEVER: Duration = Duration::from_secs(5_000);

/// Subscribes at the head of `store` with polling off, parks the subscription at the head,
/// appends to two streams at once, and checks that all of it is delivered, in order.
async fn multi_stream_append_is_delivered<S: EventStore + Subscribe>(store: &S) {
    let head = store.last_position().await.expect("the head reads");
    let mut subscription: Subscription = store
        .subscribe(head, EventFilter::all())
        .with_poll_interval(None);
    // The first read finds nothing and leaves the subscription waiting for a wake-up.
    let nothing = tokio::time::timeout(Duration::from_millis(200), subscription.next_batch());
    assert!(nothing.await.is_err(), "nothing was appended yet");

    let (order, product) = (
        StreamId::new("order", "o-1"),
        StreamId::new("product", "mug"),
    );
    let outcomes = store
        .append_streams(vec![
            StreamBatch::new(order, ExpectedVersion::NoStream, events(2)),
            StreamBatch::new(product, ExpectedVersion::NoStream, events(1)),
        ])
        .await
        .expect("the multi-stream append succeeds");
    let last = outcomes.last().expect("one outcome per stream").position;

    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        let batch = tokio::time::timeout(DEADLINE, subscription.next_batch())
            .await
            .unwrap_or_else(|_| panic!("the multi-stream append woke no subscription"))
            .expect("the subscription reads");
        delivered.extend(batch);
    }
    let streams: Vec<&str> = delivered
        .iter()
        .map(|event| event.stream.aggregate_type())
        .collect();
    assert_eq!(streams, ["order", "order", "product"]);
    assert_eq!(delivered[2].global_position, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_stream_append_wakes_in_memory_subscriptions() {
    multi_stream_append_is_delivered(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_stream_append_wakes_sqlite_subscriptions_after_its_commit() {
    let (_directory, path) = sqlite_support::temporary_store_path();
    // No check for other processes' commits either: only the writer's own wake-up counts.
    let options = SqliteOptions::new().with_change_check_interval(NEVER);
    let store = Sqlite::open_with(&path, options)
        .await
        .expect("the store opens");
    multi_stream_append_is_delivered(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_stream_append_notifies_postgresql_subscriptions() {
    let Some(schema) = TestSchema::new("multi_stream_notify") else {
        return;
    };
    let store = Postgres::connect_with(schema.options().with_subscription_poll_interval(NEVER))
        .await
        .expect("the store connects");
    multi_stream_append_is_delivered(&store).await;
}
