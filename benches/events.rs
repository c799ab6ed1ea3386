//! What one recorded event costs to copy, to read back from memory, and to create:
//!
//! - `events/clone`: one [`RecordedEvent`] as a store returns it (stream, event type, metadata
//!   with correlation and causation ids and a key/value, a postcard `OrderItemAdded` payload),
//!   cloned. Every read of the in-memory store and every subscription page hands out clones.
//! - `events/read_all_memory/<n>`: `read_all` of `n` events (1, 16 and 512) from the middle of
//!   an in-memory store of 100,000 events, so the cost of a read is shown against what it
//!   returns.
//! - `events/new_event`: [`NewEvent::encode`] of one `OrderItemAdded` in postcard: the event id
//!   (a UUID v7), the type name and the payload, what every recorded event of a command costs
//!   before the store sees it.
//! - `events/event_id`: the event id alone, as [`NewEvent::encode`] makes it
//!   (`es_core::event::new_event_id`); `events/event_id_uuid_now_v7`: uuid's own `now_v7`, which
//!   it used before.
//!
//! Run with `cargo bench --bench events` (about twenty seconds).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use es_core::{CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, NewEvent, StreamId};
use order_example::{Money, OrderEvent, OrderItemAdded, ProductId};

#[path = "samples/mod.rs"]
#[allow(dead_code)] // Only the envelope is used here.
mod samples;

/// Streams in the store `read_all` reads.
const STREAMS: u64 = 1_000;
/// Events per stream in that store.
const STREAM_LENGTH: u64 = 100;

fn item_added() -> OrderEvent {
    OrderItemAdded {
        product_id: ProductId::new("sku-007"),
        quantity: 3,
        unit_price: Money::from_minor_units(4_999),
    }
    .into()
}

fn clone(c: &mut Criterion) {
    let recorded = samples::envelope(&item_added(), CodecId::Postcard);
    c.bench_function("events/clone", |b| b.iter(|| black_box(&recorded).clone()));
}

fn read_all(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime starts");
    let store = InMemory::new();
    runtime.block_on(async {
        for stream in 0..STREAMS {
            let events = (0..STREAM_LENGTH)
                .map(|_| NewEvent::encode(&item_added(), CodecId::Postcard).unwrap())
                .collect();
            store
                .append(
                    &StreamId::new("order", stream.to_string()),
                    ExpectedVersion::NoStream,
                    events,
                )
                .await
                .unwrap();
        }
    });
    let middle = GlobalPosition(STREAMS * STREAM_LENGTH / 2);
    let mut group = c.benchmark_group("events/read_all_memory");
    for limit in [1_usize, 16, 512] {
        group.throughput(Throughput::Elements(limit as u64));
        group.bench_function(BenchmarkId::from_parameter(limit), |b| {
            b.iter(|| {
                let page = runtime
                    .block_on(store.read_all(black_box(middle), black_box(limit)))
                    .unwrap();
                assert_eq!(page.len(), limit);
                page
            });
        });
    }
    group.finish();
}

fn create(c: &mut Criterion) {
    let event = item_added();
    c.bench_function("events/new_event", |b| {
        b.iter(|| NewEvent::encode(black_box(&event), CodecId::Postcard).unwrap());
    });
    c.bench_function("events/event_id", |b| {
        b.iter(es_core::event::new_event_id);
    });
    // What `NewEvent::encode` used before `new_event_id` (uuid's shared v7 context).
    c.bench_function("events/event_id_uuid_now_v7", |b| {
        b.iter(uuid::Uuid::now_v7);
    });
}

fn configured() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

#[allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn benches`.
mod group {
    use super::{clone, configured, create, read_all};

    criterion::criterion_group! {
        name = benches;
        config = configured();
        targets = clone, read_all, create
    }
}

criterion_main!(group::benches);
