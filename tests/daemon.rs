//! The projection daemon on every store, with the three Order read models: concurrent writers
//! while it runs (its read models equal a rebuild), a restart in the middle of the writes (no
//! event lost or applied twice), and a read model parked on a poisoned event, durably (another
//! handle on the store sees it, and a restart keeps it parked), while the others go on.
//!
//! PostgreSQL runs when `ES_POSTGRES_URL` is set (see `tests/postgres_support`).

mod postgres_support;
mod sqlite_support;

use std::time::Duration;

use es_core::projection::daemon::{DaemonBuilder, ModelState, ProjectionDaemon};
use es_core::store::sqlite::Sqlite;
use es_core::{
    AggregateRoot, CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata,
    NewEvent, Projection, ProjectionRegistry, ProjectionStore, RecordedEvent, Repository,
    RetryPolicy, StreamId, Subscribe, Version,
};
use order_example::load::{Workload, DEFAULT_STOCK};
use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
use order_example::Order;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(90);
/// Concurrent writers, each saving its own generated orders.
const WRITERS: u64 = 8;
const ORDERS_PER_WRITER: u64 = 15;

/// Counts the events it applies, and refuses every `Poison` event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct PoisonSensitive {
    applied: Vec<u64>,
}

#[derive(Debug)]
struct Poisoned(u64);

impl std::fmt::Display for Poisoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot digest the poison at {}", self.0)
    }
}

impl std::error::Error for Poisoned {}

impl Projection for PoisonSensitive {
    const NAME: &'static str = "poison-sensitive";
    type Error = Poisoned;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Poisoned> {
        if event.event_type == "Poison" {
            return Err(Poisoned(event.global_position.get()));
        }
        self.applied.push(event.global_position.get());
        Ok(())
    }

    fn reset(&mut self) {
        self.applied.clear();
    }
}

fn order_daemon() -> DaemonBuilder {
    ProjectionDaemon::builder()
        .with(OrderSummaries::default())
        .unwrap()
        .with(Inventory::new(DEFAULT_STOCK))
        .unwrap()
        .with(CustomerHistories::default())
        .unwrap()
        .with_save_interval(Duration::from_millis(25))
}

/// Saves `orders` generated orders from `seed` (each order's batches in turn); the last
/// position written.
async fn write_orders<S: EventStore>(store: &S, seed: u64, orders: u64) -> GlobalPosition {
    let mut last = GlobalPosition::START;
    for script in Workload::new(seed).take(usize::try_from(orders).unwrap()) {
        let mut root = AggregateRoot::<Order>::new(script.order_id.as_str());
        let mut version = Version::INITIAL;
        let mut saved = 0;
        for batch in &script.batches {
            for command in batch {
                root.execute(|order| command.decide(order))
                    .expect("generated commands keep the business rules");
            }
            let events: Vec<NewEvent> = root
                .pending_events()
                .iter()
                .skip(saved)
                .map(|event| {
                    NewEvent::encode(event, CodecId::Postcard)
                        .unwrap()
                        .with_metadata(Metadata::default())
                })
                .collect();
            let outcome = store
                .append(&root.stream_id(), ExpectedVersion::Exact(version), events)
                .await
                .expect("appending a generated order works");
            saved = root.pending_events().len();
            version = outcome.version;
            last = last.max(outcome.position);
        }
    }
    last
}

/// `WRITERS` tasks writing their orders at once; the highest position written.
async fn concurrent_writers<S: EventStore + Clone + 'static>(store: &S) -> GlobalPosition {
    let mut writers = JoinSet::new();
    for seed in 1..=WRITERS {
        let store = store.clone();
        writers.spawn(async move { write_orders(&store, seed * 1_000, ORDERS_PER_WRITER).await });
    }
    let mut last = GlobalPosition::START;
    while let Some(written) = writers.join_next().await {
        last = last.max(written.unwrap());
    }
    last
}

/// The three read models rebuilt from the whole log.
async fn rebuilt<S: EventStore>(store: &S) -> ProjectionRegistry {
    let mut registry = read_models::registry(Inventory::new(DEFAULT_STOCK)).unwrap();
    registry.rebuild(store).await.unwrap();
    registry
}

/// The daemon's read models equal a rebuild after concurrent writers, with a restart of the
/// daemon in the middle of the writes.
async fn equal_a_rebuild_after_concurrent_writers<S>(store: S)
where
    S: Subscribe + ProjectionStore + Clone + 'static,
{
    let daemon = order_daemon().start(store.clone()).await.unwrap();
    let writing = {
        let store = store.clone();
        tokio::spawn(async move { concurrent_writers(&store).await })
    };
    // A restart while the writers run: the checkpoints saved at shutdown are where the new
    // daemon goes on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    daemon.shutdown().await.unwrap();
    let daemon = order_daemon().start(store.clone()).await.unwrap();

    let last = writing.await.unwrap();
    daemon.wait_for(last, WAIT).await.unwrap();
    let client = daemon.client();
    let (summaries, _) = client.snapshot::<OrderSummaries>().unwrap();
    let (inventory, _) = client.snapshot::<Inventory>().unwrap();
    let (histories, _) = client.snapshot::<CustomerHistories>().unwrap();
    daemon.shutdown().await.unwrap();

    let expected = rebuilt(&store).await;
    assert_eq!(summaries.len() as u64, WRITERS * ORDERS_PER_WRITER);
    assert_eq!(Some(&summaries), expected.get::<OrderSummaries>());
    assert_eq!(Some(&inventory), expected.get::<Inventory>());
    assert_eq!(Some(&histories), expected.get::<CustomerHistories>());
    for status in order_daemon().saved_status(&store).await.unwrap() {
        assert_eq!(status.checkpoint, store.last_position().await.unwrap());
        assert_eq!(status.state, ModelState::Stopped, "{}", status.name);
    }
}

/// A read model that fails on a `Poison` event is parked (durably) while the others go on.
async fn a_poisoned_read_model_is_parked_while_the_others_go_on<S, F, Fut>(store: S, reopen: F)
where
    S: Subscribe + ProjectionStore + Clone + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let builder = || {
        order_daemon()
            .with(PoisonSensitive::default())
            .unwrap()
            .with_retry(
                RetryPolicy::attempts(2)
                    .with_backoff(Duration::from_millis(1), Duration::from_millis(1)),
            )
    };
    let daemon = builder().start(store.clone()).await.unwrap();
    let before = write_orders(&store, 1, 3).await;
    let poison = store
        .append(
            &StreamId::new("lab", "1"),
            ExpectedVersion::Any,
            vec![postgres_support::event("Poison", b"x")],
        )
        .await
        .unwrap()
        .position;
    let after = write_orders(&store, 2, 3).await;

    daemon
        .client()
        .wait_for_model::<OrderSummaries>(after, WAIT)
        .await
        .unwrap();
    daemon
        .client()
        .wait_for_model::<CustomerHistories>(after, WAIT)
        .await
        .unwrap();
    let error = daemon.wait_for(after, WAIT).await.unwrap_err();
    assert!(error.to_string().contains("parked"), "{error}");
    let applied = daemon
        .read(|model: &PoisonSensitive| model.applied.clone())
        .unwrap();
    assert_eq!(applied, (1..=before.get()).collect::<Vec<_>>());
    daemon.shutdown().await.unwrap();

    // Another handle on the store (another process) sees the parked state.
    let other = reopen().await;
    let statuses = builder().saved_status(&other).await.unwrap();
    let poisoned = statuses
        .iter()
        .find(|status| status.name == PoisonSensitive::NAME)
        .unwrap();
    let parked = poisoned.state.parked().expect("parked in the store");
    assert_eq!(parked.position, poison);
    assert_eq!(parked.event_type, "Poison");
    assert_eq!(parked.attempts, 2);
    assert!(
        parked.error.contains("cannot digest the poison"),
        "{}",
        parked.error
    );
    assert_eq!(poisoned.checkpoint, before);
    assert_eq!(poisoned.lag, after.get() - before.get());

    // A restart keeps it parked; skipping the poison lets it go on without it.
    let daemon = builder().start(other.clone()).await.unwrap();
    daemon.skip(PoisonSensitive::NAME, poison).await.unwrap();
    daemon.wait_for(after, WAIT).await.unwrap();
    let applied = daemon
        .read(|model: &PoisonSensitive| model.applied.clone())
        .unwrap();
    let expected: Vec<u64> = (1..=after.get()).filter(|&p| p != poison.get()).collect();
    assert_eq!(applied, expected);
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_daemon_equals_a_rebuild_after_concurrent_writers() {
    equal_a_rebuild_after_concurrent_writers(InMemory::new()).await;
}

/// Read-your-writes through the daemon: writers on two worker threads each wait for every
/// one of their saves and then read the order's summary, which shows exactly that save (no
/// wait returns on a checkpoint the read model has not applied yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_wait_returns_once_the_read_model_shows_the_write() {
    let store = InMemory::new();
    let daemon = order_daemon().start(store.clone()).await.unwrap();
    let mut writers = JoinSet::new();
    for seed in 1..=WRITERS {
        let (repository, client) = (
            Repository::<Order, _>::new(store.clone()).with_codec(CodecId::Postcard),
            daemon.client(),
        );
        writers.spawn(async move {
            let mut waits = 0;
            for script in Workload::new(seed * 7_919).take(10) {
                for command in script.batches.iter().flatten() {
                    let saved = repository
                        .update(script.order_id.as_str(), |order| command.decide(order))
                        .await
                        .expect("generated commands keep the business rules")
                        .outcome
                        .expect("every generated command records an event");
                    client.wait_for(saved.position, WAIT).await.unwrap();
                    let shown = client
                        .read::<OrderSummaries, _>(|summaries| {
                            summaries
                                .get(&script.order_id)
                                .map(|summary| summary.version)
                        })
                        .unwrap();
                    assert_eq!(shown, Some(saved.version), "{}", script.order_id);
                    waits += 1;
                }
            }
            waits
        });
    }
    let mut waits = 0;
    while let Some(writer) = writers.join_next().await {
        waits += writer.unwrap();
    }
    assert!(waits > 10 * WRITERS, "{waits} waits");
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_daemon_parks_a_poisoned_read_model() {
    let store = InMemory::new();
    let same = store.clone();
    a_poisoned_read_model_is_parked_while_the_others_go_on(store, || {
        let same = same.clone();
        async move { same }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_daemon_equals_a_rebuild_after_concurrent_writers() {
    let (_directory, path) = sqlite_support::temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    equal_a_rebuild_after_concurrent_writers(store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_daemon_parks_a_poisoned_read_model_durably() {
    let (_directory, path) = sqlite_support::temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let reopen_path = path.clone();
    a_poisoned_read_model_is_parked_while_the_others_go_on(store.clone(), || {
        let path = reopen_path.clone();
        async move { Sqlite::open(&path).await.unwrap() }
    })
    .await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_daemon_equals_a_rebuild_after_concurrent_writers() {
    let Some(schema) = postgres_support::TestSchema::new("daemon_rebuild") else {
        return;
    };
    let store = schema.store().await;
    equal_a_rebuild_after_concurrent_writers(store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_daemon_parks_a_poisoned_read_model_durably() {
    let Some(schema) = postgres_support::TestSchema::new("daemon_park") else {
        return;
    };
    let store = schema.store().await;
    let options = schema.options();
    a_poisoned_read_model_is_parked_while_the_others_go_on(store.clone(), || {
        let options = options.clone();
        async move {
            es_core::store::postgres::Postgres::connect_with(options)
                .await
                .unwrap()
        }
    })
    .await;
    store.close().await;
}
