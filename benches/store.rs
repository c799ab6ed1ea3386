//! Appends and reads on the in-memory store, the floor under every durable store: what the
//! contract itself (version checks, global positions, timestamps, copies out of the lock)
//! costs. The SQLite and PostgreSQL stores have their own benches (`benches/sqlite.rs`,
//! `benches/postgres.rs`).
//!
//! - `store/memory/append`: batches of 1, 10 and 100 `OrderItemAdded` events (postcard), each
//!   to a new stream. The store is replaced every 1,000 appends (outside the timing), so it
//!   stays below 100,000 events however long criterion runs.
//! - `store/memory/read`: in a store of 100,000 events in 1,000 streams, one 100-event stream
//!   (`read_stream`), one page of 512 events of the global log (`read_all`), and the whole log
//!   in pages of 512.
//!
//! Run with `cargo bench --bench store` (about half a minute).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata, NewEvent, StreamId,
    VersionRange,
};
use order_example::{Money, OrderEvent, OrderItemAdded, ProductId};
use tokio::runtime::Runtime;

/// Appends measured on one store before it is replaced by an empty one.
const APPENDS_PER_STORE: u64 = 1_000;
/// Streams in the store the reads use.
const READ_STREAMS: u64 = 1_000;
/// Events per stream in that store.
const READ_STREAM_LENGTH: u64 = 100;
/// The page size the projection registry uses.
const PAGE: usize = 512;

fn item_added(index: u64) -> NewEvent {
    let event = OrderEvent::from(OrderItemAdded {
        product_id: ProductId::new(format!("sku-{:03}", index % 20 + 1)),
        quantity: u32::try_from(index % 5 + 1).expect("below 6"),
        unit_price: Money::from_minor_units(4_999),
    });
    NewEvent::encode(&event, CodecId::Postcard)
        .expect("order events encode")
        .with_metadata(Metadata::default().with_correlation_id(uuid::Uuid::now_v7()))
}

fn batch(size: u64) -> Vec<NewEvent> {
    (0..size).map(item_added).collect()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime starts")
}

fn append(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("store/memory/append");
    for size in [1, 10, 100] {
        let template = batch(size);
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                let mut done = 0;
                while done < iterations {
                    let appends = (iterations - done).min(APPENDS_PER_STORE);
                    let store = InMemory::new();
                    let work: Vec<(StreamId, Vec<NewEvent>)> = (0..appends)
                        .map(|index| (StreamId::new("order", index.to_string()), template.clone()))
                        .collect();
                    let started = Instant::now();
                    runtime.block_on(async {
                        for (stream, events) in work {
                            let outcome = store
                                .append(&stream, ExpectedVersion::NoStream, events)
                                .await
                                .unwrap();
                            black_box(outcome);
                        }
                    });
                    measured += started.elapsed();
                    done += appends;
                }
                measured
            });
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let runtime = runtime();
    let store = InMemory::new();
    runtime.block_on(async {
        for stream in 0..READ_STREAMS {
            let stream = StreamId::new("order", stream.to_string());
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    batch(READ_STREAM_LENGTH),
                )
                .await
                .unwrap();
        }
    });
    let total = READ_STREAMS * READ_STREAM_LENGTH;
    let stream = StreamId::new("order", (READ_STREAMS / 2).to_string());
    let middle = GlobalPosition(total / 2);

    let mut group = c.benchmark_group("store/memory/read");
    group.throughput(Throughput::Elements(READ_STREAM_LENGTH));
    group.bench_function("read_stream_100", |b| {
        b.iter(|| {
            let events = runtime
                .block_on(store.read_stream(black_box(&stream), VersionRange::all()))
                .unwrap();
            assert_eq!(events.len() as u64, READ_STREAM_LENGTH);
            events
        });
    });
    group.throughput(Throughput::Elements(PAGE as u64));
    group.bench_function("read_all_page_512", |b| {
        b.iter(|| {
            let events = runtime
                .block_on(store.read_all(black_box(middle), PAGE))
                .unwrap();
            assert_eq!(events.len(), PAGE);
            events
        });
    });
    group.throughput(Throughput::Elements(total));
    group.bench_function("scan_log_100k_in_pages_of_512", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut after = GlobalPosition::START;
                let mut count = 0;
                loop {
                    let page = store.read_all(after, PAGE).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.global_position;
                    count += page.len() as u64;
                }
                assert_eq!(count, total);
            });
        });
    });
    group.finish();
}

fn configured() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

#[allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn benches`.
mod group {
    use super::{append, configured, read};

    criterion::criterion_group! {
        name = benches;
        config = configured();
        targets = append, read
    }
}

criterion_main!(group::benches);
