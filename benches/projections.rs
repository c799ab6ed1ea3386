//! Rebuilding the three Order read models (`OrderSummaries`, `Inventory`,
//! `CustomerHistories`) from 1,000,000 stored events, in events per second:
//! `ProjectionRegistry::rebuild` resets them and replays the whole global log in pages of 512.
//! `scan_only` reads the same log in the same pages and applies nothing: the share of the
//! store.
//!
//! The log is written once per run, outside the measured loop: the orders of
//! `order_example::load::Workload` (seed 1, about 5.5 events per order: created, items added,
//! sometimes one removed, then paid and shipped or cancelled, or left open), each event with a
//! correlation id, cut at exactly 1,000,000 events. Once the generator's stock runs out most
//! paid orders are cancelled as out of stock, as it intends. Each store holds one log per codec:
//!
//! - `projections/memory`: the in-memory store.
//! - `projections/sqlite`: a SQLite file in a temporary directory (written with
//!   `synchronous = NORMAL` and many appends in flight, so group commit packs them; reading
//!   does not depend on either).
//!
//! Before measuring, each log is rebuilt once (checked: every event applied) and the time of a
//! scan and of each read model alone is printed, to show where a rebuild's time goes.
//!
//! Run with `cargo bench --bench projections` (about four minutes: writing the four logs takes
//! about 30 s, the rest is ten rebuilds and a few scans of each).

mod order_log;

use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::{CodecId, EventStore, GlobalPosition, InMemory, Projection, ProjectionRegistry};
use order_example::load::DEFAULT_STOCK;
use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
use tokio::runtime::Runtime;

/// Events in the log.
const EVENTS: u64 = 1_000_000;
/// The page size of `read_all` (the registry's default).
const PAGE: usize = 512;
const CODECS: [CodecId; 2] = [CodecId::Json, CodecId::Postcard];

/// Reads the whole log in pages of 512 events, as a rebuild does, and applies nothing.
async fn scan<S: EventStore>(store: &S) -> u64 {
    let mut after = GlobalPosition::START;
    let mut count = 0;
    loop {
        let page = store.read_all(after, PAGE).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.global_position;
        count += page.len() as u64;
    }
    count
}

/// Times one rebuild of each read model alone and prints it: where a rebuild's time goes.
fn print_breakdown<S: EventStore>(runtime: &Runtime, store_name: &str, codec: CodecId, store: &S) {
    fn once<P: Projection, S: EventStore>(runtime: &Runtime, store: &S, model: P) -> Duration {
        let mut registry = ProjectionRegistry::new()
            .with_page_size(PAGE)
            .with(model)
            .unwrap();
        let started = Instant::now();
        runtime.block_on(registry.rebuild(store)).unwrap();
        started.elapsed()
    }
    let started = Instant::now();
    runtime.block_on(scan(store));
    let scan = started.elapsed();
    let summaries = once(runtime, store, OrderSummaries::default());
    let inventory = once(runtime, store, Inventory::new(DEFAULT_STOCK));
    let histories = once(runtime, store, CustomerHistories::default());
    println!(
        "projections/{store_name}/{codec}: one run each: scan {scan:.2?}, rebuild of \
         OrderSummaries alone {summaries:.2?}, Inventory alone {inventory:.2?}, \
         CustomerHistories alone {histories:.2?}"
    );
}

/// Measures `rebuild` of the three read models over `store` as `projections/<store_name>`,
/// after checking that one rebuild applies every event, and the bare scan of the log as the
/// baseline.
fn bench_rebuild<S: EventStore>(
    c: &mut Criterion,
    runtime: &Runtime,
    store_name: &str,
    codec: CodecId,
    store: &S,
) {
    let mut registry = read_models::registry(Inventory::new(DEFAULT_STOCK))
        .unwrap()
        .with_page_size(PAGE);
    let report = runtime.block_on(registry.rebuild(store)).unwrap();
    assert_eq!(report.events, EVENTS);
    assert_eq!(runtime.block_on(scan(store)), EVENTS);
    let orders = registry.get::<OrderSummaries>().unwrap().len();
    let customers = registry.get::<CustomerHistories>().unwrap().len();
    println!("projections/{store_name}/{codec}: {orders} orders, {customers} customers");
    print_breakdown(runtime, store_name, codec, store);

    let mut group = c.benchmark_group(format!("projections/{store_name}"));
    // Ten runs, one iteration each: criterion warns that it cannot complete 10 samples in the
    // configured time and runs them anyway, which is the least it does.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::new("rebuild", codec), |b| {
        b.iter(|| runtime.block_on(registry.rebuild(store)).unwrap());
    });
    group.bench_function(BenchmarkId::new("scan_only", codec), |b| {
        b.iter(|| runtime.block_on(scan(store)));
    });
    group.finish();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime starts")
}

fn in_memory(c: &mut Criterion) {
    let runtime = runtime();
    for codec in CODECS {
        let started = Instant::now();
        let store = InMemory::new();
        runtime.block_on(order_log::fill(&store, codec, EVENTS));
        println!(
            "projections/memory/{codec}: wrote {EVENTS} events in {:.1?}",
            started.elapsed()
        );
        bench_rebuild(c, &runtime, "memory", codec, &store);
    }
}

fn sqlite(c: &mut Criterion) {
    let runtime = runtime();
    let directory = tempfile::tempdir().expect("a temporary directory");
    for codec in CODECS {
        let started = Instant::now();
        let options = SqliteOptions::new().with_synchronous(Synchronous::Normal);
        let path = directory.path().join(format!("projections-{codec}.db"));
        let store = runtime
            .block_on(Sqlite::open_with(&path, options))
            .expect("the store opens");
        runtime.block_on(order_log::fill(&store, codec, EVENTS));
        let bytes = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
        println!(
            "projections/sqlite/{codec}: wrote {EVENTS} events ({} MB file) in {:.1?}",
            bytes / 1_000_000,
            started.elapsed()
        );
        bench_rebuild(c, &runtime, "sqlite", codec, &store);
        runtime.block_on(store.close());
    }
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
