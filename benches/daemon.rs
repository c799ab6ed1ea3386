//! The projection daemon's throughput against `ProjectionRegistry::rebuild` over the same
//! events: the three Order read models (`OrderSummaries`, `Inventory`, `CustomerHistories`)
//! brought from position 0 to the end of a log of 200,000 events, in events per second.
//!
//! - `rebuild`: `ProjectionRegistry::rebuild`, pages of 512, on the calling task.
//! - `daemon`: a `ProjectionDaemon` started with the three read models saved at position 0,
//!   timed from `start` until `wait_for(end of the log)` returns (its subscription reads pages of
//!   512 on one task while another applies them; checkpoints are saved every second, as by
//!   default). Its shutdown (the final save) is outside the timing.
//!
//! Both run on the same Tokio runtime (multi-threaded, 2 workers: the machine's cores). The log
//! is written once per store, outside the measured loop: the orders of
//! `order_example::load::Workload` (seed 1), postcard-encoded, each event with a correlation
//! id, cut at exactly 200,000 events. Before measuring, one daemon run is checked against a
//! rebuild (equal read models).
//!
//! - `daemon/memory`: the in-memory store.
//! - `daemon/sqlite`: a SQLite file in a temporary directory.
//!
//! Run with `cargo bench --bench daemon` (about a minute and a half).

mod order_log;

use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::{
    CodecId, GlobalPosition, InMemory, Projection, ProjectionDaemon, ProjectionStore,
    SavedProjection, Subscribe, Timestamp,
};
use order_example::load::DEFAULT_STOCK;
use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
use tokio::runtime::Runtime;

/// Events in the log.
const EVENTS: u64 = 200_000;
/// The page size of both (the registry's and the subscription's default).
const PAGE: usize = 512;
const CODEC: CodecId = CodecId::Postcard;
/// How long the daemon may take to reach the end of the log before the run is broken.
const PATIENCE: Duration = Duration::from_secs(290);

/// Saves `model` as it is, at position 0, so the next daemon starts it from the beginning.
async fn save_fresh<P: Projection, S: ProjectionStore>(store: &S, model: &P) {
    store
        .save_projection(SavedProjection {
            name: P::NAME.to_owned(),
            position: GlobalPosition::START,
            codec: CODEC,
            state: CODEC.encode(model).unwrap(),
            saved_at: Timestamp::now(),
        })
        .await
        .unwrap();
}

/// One daemon run from position 0 to the end of the log: the time it took, and the read
/// models it built.
async fn daemon_run<S: Subscribe + ProjectionStore + Clone + 'static>(
    store: &S,
) -> (Duration, OrderSummaries, Inventory, CustomerHistories) {
    save_fresh(store, &OrderSummaries::default()).await;
    save_fresh(store, &Inventory::new(DEFAULT_STOCK)).await;
    save_fresh(store, &CustomerHistories::default()).await;
    let end = store.last_position().await.unwrap();
    let started = Instant::now();
    let daemon = ProjectionDaemon::builder()
        .with(OrderSummaries::default())
        .unwrap()
        .with(Inventory::new(DEFAULT_STOCK))
        .unwrap()
        .with(CustomerHistories::default())
        .unwrap()
        .with_page_size(PAGE)
        .start(store.clone())
        .await
        .unwrap();
    daemon.wait_for(end, PATIENCE).await.unwrap();
    let elapsed = started.elapsed();
    let client = daemon.client();
    let summaries = client.snapshot::<OrderSummaries>().unwrap().0;
    let inventory = client.snapshot::<Inventory>().unwrap().0;
    let histories = client.snapshot::<CustomerHistories>().unwrap().0;
    daemon.shutdown().await.unwrap();
    (elapsed, summaries, inventory, histories)
}

fn bench_store<S: Subscribe + ProjectionStore + Clone + 'static>(
    c: &mut Criterion,
    runtime: &Runtime,
    store_name: &str,
    store: &S,
) {
    let mut registry = read_models::registry(Inventory::new(DEFAULT_STOCK))
        .unwrap()
        .with_page_size(PAGE);
    let report = runtime.block_on(registry.rebuild(store)).unwrap();
    assert_eq!(report.events, EVENTS);
    let (once, summaries, inventory, histories) = runtime.block_on(daemon_run(store));
    assert_eq!(registry.get::<OrderSummaries>(), Some(&summaries));
    assert_eq!(registry.get::<Inventory>(), Some(&inventory));
    assert_eq!(registry.get::<CustomerHistories>(), Some(&histories));
    println!(
        "daemon/{store_name}: one checked daemon run in {once:.2?} ({} orders)",
        summaries.len()
    );

    let mut group = c.benchmark_group(format!("daemon/{store_name}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::new("rebuild", CODEC), |b| {
        b.iter(|| runtime.block_on(registry.rebuild(store)).unwrap());
    });
    group.bench_function(BenchmarkId::new("daemon", CODEC), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                total += runtime.block_on(daemon_run(store)).0;
            }
            total
        });
    });
    group.finish();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime starts")
}

fn in_memory(c: &mut Criterion) {
    let runtime = runtime();
    let store = InMemory::new();
    runtime.block_on(order_log::fill(&store, CODEC, EVENTS));
    bench_store(c, &runtime, "memory", &store);
}

fn sqlite(c: &mut Criterion) {
    let runtime = runtime();
    let directory = tempfile::tempdir().expect("a temporary directory");
    let options = SqliteOptions::new().with_synchronous(Synchronous::Normal);
    let path = directory.path().join("daemon.db");
    let store = runtime
        .block_on(Sqlite::open_with(&path, options))
        .expect("the store opens");
    runtime.block_on(order_log::fill(&store, CODEC, EVENTS));
    bench_store(c, &runtime, "sqlite", &store);
    runtime.block_on(store.close());
}

fn configured() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
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
