//! Subscriptions on the PostgreSQL store beyond the conformance suite: woken by `NOTIFY`
//! alone, a `LISTEN` connection that is killed and comes back, the fallback poll finding an
//! event no notification announced, and the gap-safe bound holding a subscription back while
//! an append with a lower position is still in flight.
//!
//! Every wait for an event that is due is bounded by [`DEADLINE`], so a lost wake-up fails the
//! test instead of hanging it; nothing here measures speed.

mod postgres_support;

use std::time::Duration;

use es_core::store::postgres::{AppendEnding, Postgres, PostgresOptions};
use es_core::{
    EventFilter, EventStore, ExpectedVersion, Metadata, RecordedEvent, Subscribe, Subscription,
};
use postgres_support::{
    event, events, idle_in_transaction, stream, with_application_name, TestSchema,
};

/// The longest a test waits for something that is due.
const DEADLINE: Duration = Duration::from_secs(90);

/// A poll so slow it never fires during a test: only notifications can wake a subscription.
const NEVER: Duration = Duration::from_secs(5_000);

async fn next_batch(subscription: &mut Subscription, what: &str) -> Vec<RecordedEvent> {
    tokio::time::timeout(DEADLINE, subscription.next_batch())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing delivered within {DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("{what}: the subscription failed: {error:?}"))
}

/// The process ids of the sessions listening on `channel`.
async fn listeners(watcher: &tokio_postgres::Client, channel: &str) -> Vec<i32> {
    watcher
        .query(
            "SELECT pid FROM pg_stat_activity WHERE query = $1",
            &[&format!("LISTEN \"{channel}\"")],
        )
        .await
        .expect("pg_stat_activity reads")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits until the sessions listening on `channel` satisfy `done`, and returns them.
async fn wait_for_listeners(
    watcher: &tokio_postgres::Client,
    channel: &str,
    what: &str,
    done: impl Fn(&[i32]) -> bool,
) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = listeners(watcher, channel).await;
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the listening sessions are {found:?} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_is_woken_by_notify_and_survives_a_dropped_listener() {
    let Some(schema) = TestSchema::new("subscription_listener") else {
        return;
    };
    let store = Postgres::connect_with(schema.options().with_subscription_poll_interval(NEVER))
        .await
        .expect("the store connects");
    let watcher = schema.raw().await;
    let channel = store.notification_channel().to_owned();
    let target = stream("listened", 1);

    let mut subscription = store.subscribe(
        store.last_position().await.expect("the head reads"),
        EventFilter::all(),
    );
    // The first read starts the listener; let it read the empty log and wait at the head.
    let nothing = tokio::time::timeout(Duration::from_millis(200), subscription.next_batch());
    assert!(nothing.await.is_err(), "the new store holds no events");
    let first_listener = wait_for_listeners(&watcher, &channel, "the listener starts", |found| {
        found.len() == 1
    })
    .await[0];

    let outcome = store
        .append(&target, ExpectedVersion::NoStream, events(2))
        .await
        .expect("the append succeeds");
    let batch = next_batch(&mut subscription, "an append while listening").await;
    assert_eq!(
        batch.last().map(|e| e.global_position),
        Some(outcome.position)
    );

    // Kill the listening session: the store reconnects, and the append made meanwhile is
    // delivered (the reconnected listener wakes the subscriptions once it listens again).
    let killed: bool = watcher
        .query_one("SELECT pg_terminate_backend($1)", &[&first_listener])
        .await
        .expect("the listener is terminated")
        .get(0);
    assert!(killed, "the listening session existed");
    let outcome = store
        .append(&target, ExpectedVersion::Any, events(3))
        .await
        .expect("the append succeeds");
    let mut delivered = Vec::new();
    while delivered.last().map(|e: &RecordedEvent| e.global_position) != Some(outcome.position) {
        delivered.extend(next_batch(&mut subscription, "an append after the kill").await);
    }
    assert_eq!(delivered.len(), 3, "each event once");
    let second = wait_for_listeners(&watcher, &channel, "the listener comes back", |found| {
        found.len() == 1 && found[0] != first_listener
    })
    .await;
    assert_ne!(second[0], first_listener);

    // The listener is live again: a further append is delivered by its notification.
    let outcome = store
        .append(&target, ExpectedVersion::Any, events(1))
        .await
        .expect("the append succeeds");
    let batch = next_batch(&mut subscription, "an append after the reconnect").await;
    assert_eq!(
        batch.last().map(|e| e.global_position),
        Some(outcome.position)
    );

    // Dropping the last subscription closes the listening session.
    drop(subscription);
    assert_eq!(store.subscription_stats().subscriptions, 0);
    wait_for_listeners(&watcher, &channel, "the listener stops", <[i32]>::is_empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_poll_finds_an_event_no_notification_announced() {
    let Some(schema) = TestSchema::new("subscription_poll") else {
        return;
    };
    let store = Postgres::connect_with(
        schema
            .options()
            .with_subscription_poll_interval(Duration::from_millis(20)),
    )
    .await
    .expect("the store connects");
    let mut subscription = store.subscribe(
        store.last_position().await.expect("the head reads"),
        EventFilter::all().event_type("Raw"),
    );
    let nothing = tokio::time::timeout(Duration::from_millis(100), subscription.next_batch());
    assert!(nothing.await.is_err(), "the new store holds no events");

    // A row written behind the store's back: no NOTIFY is sent for it.
    let metadata = serde_json::to_string(&Metadata::default()).expect("metadata encodes");
    schema
        .raw()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{}\".events (aggregate_type, aggregate_id, version, event_id,
                     event_type, schema_version, codec, payload, metadata, recorded_at)
                 VALUES ('raw', '1', 1, '0190a0a0-0000-7000-8000-000000000001', 'Raw', 1, 2,
                     '\\x00', $1::text::json, 0)",
                schema.name()
            ),
            &[&metadata],
        )
        .await
        .expect("the raw insert succeeds");
    let batch = next_batch(&mut subscription, "a row that sent no notification").await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].event_type, "Raw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_never_passes_an_append_still_in_flight() {
    let Some(schema) = TestSchema::new("subscription_in_flight") else {
        return;
    };
    let store = schema.store().await;
    let holder_name = "es_subscription_in_flight_holder";
    let holder = Postgres::connect_with(
        PostgresOptions::new(with_application_name(schema.url(), holder_name))
            .with_schema(schema.name().to_owned()),
    )
    .await
    .expect("the holder's store connects");
    let watcher = schema.raw().await;
    let mut subscription = store.subscribe(
        store.last_position().await.expect("the head reads"),
        EventFilter::all(),
    );

    // An append that takes its position first and commits last.
    let held = event("Held", b"first");
    let held_id = held.event_id;
    let holding = tokio::spawn(async move {
        holder
            .append_ending(
                &stream("held", 1),
                ExpectedVersion::NoStream,
                vec![held],
                AppendEnding::CommitAfter(Duration::from_millis(500)),
            )
            .await
    });
    idle_in_transaction(&watcher, holder_name).await;
    let later = store
        .append(
            &stream("later", 1),
            ExpectedVersion::NoStream,
            vec![event("Later", b"second")],
        )
        .await
        .expect("the later append commits first");

    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        delivered.extend(next_batch(&mut subscription, "both appends").await);
    }
    let held_outcome = holding
        .await
        .expect("the holding task runs")
        .expect("the held append commits");
    assert!(held_outcome.position < later.position);
    assert_eq!(
        delivered.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![
            held_id,
            delivered
                .iter()
                .find(|e| e.global_position == later.position)
                .expect("the later event is delivered")
                .event_id
        ],
        "the event of the append still in flight comes first, though it committed last"
    );
}

#[tokio::test]
async fn subscription_channels_differ_between_schemas() {
    let Some(first) = TestSchema::new("subscription_channel_a") else {
        return;
    };
    let Some(second) = TestSchema::new("subscription_channel_b") else {
        return;
    };
    let (first, second) = (first.store().await, second.store().await);
    assert_ne!(first.notification_channel(), second.notification_channel());
    for store in [&first, &second] {
        let channel = store.notification_channel();
        assert!(channel.len() <= 63, "`{channel}` fits an identifier");
        assert!(channel.starts_with("es_events_"));
    }
}
