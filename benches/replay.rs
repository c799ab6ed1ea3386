//! Loading one 10,000-event `Order` through `Repository::load`, with and without snapshots
//! (the aggregate's policy: every 100 events), on the in-memory store and on SQLite:
//!
//! - `events_only`: no snapshot store; all 10,000 events are read, decoded and applied.
//! - `snapshot`: the latest snapshot (at version 10,000) is decoded; no event follows it.
//! - `snapshot_tail_99`: a 10,099-event order, the worst case of the policy: the snapshot at
//!   10,000 plus 99 events read, decoded and applied.
//!
//! The business rules stop a paid, shipped or cancelled order from changing, so the long
//! history is an open order whose customer adds a product and removes it again, 4,999 times:
//! `OrderCreated`, then `OrderItemAdded` / `OrderItemRemoved` pairs, then one last
//! `OrderItemAdded`. It is saved 100 events per append, which is what takes a snapshot at
//! every hundredth version. Each case runs with events (and snapshots) encoded as JSON and as
//! postcard.
//!
//! Run with `cargo bench --bench replay` (about a minute and a half).

use std::time::Duration;

use criterion::{criterion_main, BenchmarkId, Criterion};
use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::{
    Aggregate, AggregateRoot, CodecId, EventStore, InMemory, Repository, SnapshotLocation,
    SnapshotStore, Version,
};
use order_example::{CustomerId, Money, Order, ProductId};
use tokio::runtime::Runtime;

/// Events in the long history.
const EVENTS: u64 = 10_000;
/// Events after the last snapshot in the worst case of a snapshot every 100 events.
const WORST_TAIL: u64 = 99;
const CODECS: [CodecId; 2] = [CodecId::Json, CodecId::Postcard];

/// Records `count` events on a new order and saves them 100 at a time.
async fn write_history<S, P>(repository: &Repository<Order, S, P>, id: &str, count: u64)
where
    S: EventStore,
    P: SnapshotLocation<S>,
{
    let mut root = AggregateRoot::<Order>::new(id);
    root.execute(|order| order.create(CustomerId::new("customer-0042")))
        .expect("a new order can be created");
    let product = ProductId::new("sku-007");
    let price = Money::from_minor_units(4_999);
    for version in 2..=count {
        if version % 2 == 0 {
            root.execute(|order| order.add_item(product.clone(), 1, price))
        } else {
            root.execute(|order| order.remove_item(product.clone()))
        }
        .expect("an open order takes items and gives them back");
        if version % 100 == 0 || version == count {
            repository.save(&mut root).await.expect("saving works");
        }
    }
    assert_eq!(root.version(), Version(count));
}

/// Writes the 10,000- and 10,099-event orders to `store` with `codec`, snapshotting, and
/// returns their ids.
async fn prepare<S>(store: &S, codec: CodecId) -> (String, String)
where
    S: EventStore + SnapshotStore + Clone,
{
    let repository = Repository::<Order, _>::new(store.clone()).with_codec(codec);
    let full = format!("replay-{codec}-{EVENTS}");
    let tail = format!("replay-{codec}-{}", EVENTS + WORST_TAIL);
    write_history(&repository, &full, EVENTS).await;
    write_history(&repository, &tail, EVENTS + WORST_TAIL).await;
    for id in [&full, &tail] {
        let snapshot = store.load_snapshot(&Order::stream_id(id)).await.unwrap();
        assert_eq!(snapshot.map(|s| s.version), Some(Version(EVENTS)));
    }
    (full, tail)
}

/// The three loads of one store, for both codecs, in the group `replay/<store_name>`.
fn bench_store<S>(c: &mut Criterion, runtime: &Runtime, store_name: &str, store: &S)
where
    S: EventStore + SnapshotStore + Clone,
{
    // No throughput: a snapshot load does not touch most events, so events per second would
    // mislead; compare the times.
    let mut group = c.benchmark_group(format!("replay/{store_name}"));
    for codec in CODECS {
        let (full, tail) = runtime.block_on(prepare(store, codec));
        let plain = Repository::<Order, _>::without_snapshots(store.clone());
        let snapshotting = Repository::<Order, _>::new(store.clone());
        for (name, repository_has_snapshots, id, version) in [
            ("events_only", false, &full, EVENTS),
            ("snapshot", true, &full, EVENTS),
            ("snapshot_tail_99", true, &tail, EVENTS + WORST_TAIL),
        ] {
            group.bench_function(BenchmarkId::new(name, codec), |b| {
                b.iter(|| {
                    let root = if repository_has_snapshots {
                        runtime.block_on(snapshotting.load(id))
                    } else {
                        runtime.block_on(plain.load(id))
                    }
                    .unwrap();
                    assert_eq!(root.version(), Version(version));
                    root
                });
            });
        }
    }
    group.finish();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime starts")
}

fn in_memory(c: &mut Criterion) {
    let runtime = runtime();
    bench_store(c, &runtime, "memory", &InMemory::new());
}

fn sqlite(c: &mut Criterion) {
    let runtime = runtime();
    let directory = tempfile::tempdir().expect("a temporary directory");
    // `NORMAL` only makes writing the histories faster; loading reads committed data either way.
    let options = SqliteOptions::new().with_synchronous(Synchronous::Normal);
    let store = runtime
        .block_on(Sqlite::open_with(
            directory.path().join("replay.db"),
            options,
        ))
        .expect("the store opens");
    bench_store(c, &runtime, "sqlite", &store);
    runtime.block_on(store.close());
}

fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

#[allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn benches`.
mod group {
    use super::{configured, in_memory, sqlite};

    criterion::criterion_group! {
        name = benches;
        config = configured();
        targets = in_memory, sqlite
    }
}

criterion_main!(group::benches);
