//! JSON against postcard on every Order event and on a whole recorded envelope, and the
//! framework's codec path against a raw serde call on the same struct, measured in the same
//! group:
//!
//! - `payload/<EventType>`: for each of the six Order events and each codec,
//!   - `encode/<codec>`: [`EventSet::encode`] on the generated `OrderEvent` (what
//!     `Repository::save` calls), against `encode_raw_serde/<codec>`: `serde_json::to_vec` or
//!     `postcard::to_stdvec` on the event struct itself;
//!   - `decode/<codec>`: [`RecordedEvent::decode`] into `OrderEvent` (what replay and every
//!     read model call), against `decode_raw_serde/<codec>`: `serde_json::from_slice` or
//!     `postcard::from_bytes` into the struct.
//! - `envelope/OrderItemAdded`: a whole [`RecordedEvent`] (ids, stream, version, position,
//!   timestamp, metadata with correlation and causation ids and a key/value, payload) encoded
//!   with one codec (its payload with the same), and decoded back down to the `OrderEvent`.
//!
//! Every benchmark's throughput is the size in bytes of what it encodes or decodes, so the
//! criterion output holds both the time and the size: `benches/chart.py` draws the chart of
//! `BENCHMARKS.md` from it. The exact size table comes from `tests/encoded_sizes.rs`.
//!
//! Run with `cargo bench --bench codecs` (about three minutes).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use es_core::{CodecId, Event, EventSet, RecordedEvent};
use order_example::OrderEvent;

#[path = "samples/mod.rs"]
mod samples;

const CODECS: [CodecId; 2] = [CodecId::Json, CodecId::Postcard];

/// The raw serde baseline: the codec's own function on the struct, no framework in between.
fn raw_encode<E: Event>(event: &E, codec: CodecId) -> Vec<u8> {
    match codec {
        CodecId::Json => serde_json::to_vec(event).expect("the sample encodes as JSON"),
        _ => postcard::to_stdvec(event).expect("the sample encodes as postcard"),
    }
}

/// The raw serde baseline for decoding.
fn raw_decode<E: Event>(bytes: &[u8], codec: CodecId) -> E {
    match codec {
        CodecId::Json => serde_json::from_slice(bytes).expect("the sample decodes as JSON"),
        _ => postcard::from_bytes(bytes).expect("the sample decodes as postcard"),
    }
}

/// The four benchmarks of one event type, for both codecs. `E` is the event struct, so the
/// raw baselines are monomorphic calls on it, as a user writing serde by hand would make.
fn payload_group<E: Event>(c: &mut Criterion, event: &E, sample: &OrderEvent) {
    let mut group = c.benchmark_group(format!("payload/{}", E::NAME));
    for codec in CODECS {
        let recorded = samples::envelope(sample, codec);
        let size = recorded.payload.len() as u64;
        assert_eq!(raw_encode(event, codec), recorded.payload, "{codec}");
        group.throughput(Throughput::Bytes(size));

        group.bench_function(BenchmarkId::new("encode", codec), |b| {
            b.iter(|| black_box(sample).encode(black_box(codec)).unwrap());
        });
        group.bench_function(BenchmarkId::new("encode_raw_serde", codec), |b| {
            b.iter(|| raw_encode(black_box(event), black_box(codec)));
        });
        group.bench_function(BenchmarkId::new("decode", codec), |b| {
            b.iter(|| black_box(&recorded).decode::<OrderEvent>().unwrap());
        });
        group.bench_function(BenchmarkId::new("decode_raw_serde", codec), |b| {
            b.iter(|| raw_decode::<E>(black_box(&recorded.payload), black_box(codec)));
        });
    }
    group.finish();
}

fn payloads(c: &mut Criterion) {
    let events = samples::order_events();
    assert_eq!(events.len(), OrderEvent::EVENT_TYPES.len());
    for sample in &events {
        // Exhaustive: a new event type fails to compile here until it is benchmarked.
        match sample {
            OrderEvent::OrderCreated(event) => payload_group(c, event, sample),
            OrderEvent::OrderItemAdded(event) => payload_group(c, event, sample),
            OrderEvent::OrderItemRemoved(event) => payload_group(c, event, sample),
            OrderEvent::PaymentProcessed(event) => payload_group(c, event, sample),
            OrderEvent::OrderShipped(event) => payload_group(c, event, sample),
            OrderEvent::OrderCancelled(event) => payload_group(c, event, sample),
        }
    }
}

fn envelopes(c: &mut Criterion) {
    let sample = &samples::order_events()[1];
    let mut group = c.benchmark_group(format!("envelope/{}", sample.event_type()));
    for codec in CODECS {
        let recorded = samples::envelope(sample, codec);
        let bytes = codec.encode(&recorded).unwrap();
        let decoded: RecordedEvent = codec.decode(&bytes).unwrap();
        assert_eq!(decoded, recorded, "{codec}");
        group.throughput(Throughput::Bytes(bytes.len() as u64));

        group.bench_function(BenchmarkId::new("encode", codec), |b| {
            b.iter(|| black_box(codec).encode(black_box(&recorded)).unwrap());
        });
        group.bench_function(BenchmarkId::new("decode", codec), |b| {
            b.iter(|| {
                let envelope: RecordedEvent = black_box(codec).decode(black_box(&bytes)).unwrap();
                let event = envelope.decode::<OrderEvent>().unwrap();
                (envelope, event)
            });
        });
    }
    group.finish();
}

fn configured() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

#[allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn benches`.
mod group {
    use super::{configured, envelopes, payloads};

    criterion::criterion_group! {
        name = benches;
        config = configured();
        targets = payloads, envelopes
    }
}

criterion_main!(group::benches);
