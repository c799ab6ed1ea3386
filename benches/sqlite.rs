//! The SQLite store against handwritten baselines, measured in the same run:
//!
//! - `append_100`: 100-event batches through the store vs the same rows inserted with raw
//!   rusqlite in one transaction (same schema, same durability).
//! - `concurrent_appenders_64`: 64 single-event appends issued at once (group commit) vs the
//!   same 64 appends awaited one by one (one commit, one fsync each). Durable (`FULL`).
//! - `read`: a 100-event stream read and decoded; the whole global log scanned in pages.
//!
//! Run with `cargo bench --bench sqlite`.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use es_core::store::sqlite::Sqlite;
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, Metadata, NewEvent, StreamId,
    VersionRange,
};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

#[derive(Serialize, Deserialize)]
struct ItemAdded {
    order_id: u64,
    product: String,
    quantity: u32,
    unit_price_minor: i64,
}

fn item(index: u64) -> NewEvent {
    let payload = ItemAdded {
        order_id: index / 100,
        product: format!("product-{}", index % 37),
        quantity: u32::try_from(index % 7 + 1).unwrap(),
        unit_price_minor: 1_299,
    };
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "ItemAdded".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: serde_json::to_vec(&payload).unwrap(),
        metadata: Metadata::default().with_correlation_id(uuid::Uuid::now_v7()),
    }
}

fn batch(size: u64) -> Vec<NewEvent> {
    (0..size).map(item).collect()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

fn open(runtime: &Runtime, directory: &TempDir, name: &str) -> Sqlite {
    runtime
        .block_on(Sqlite::open(directory.path().join(name)))
        .unwrap()
}

/// A raw connection to a new file with the store's schema, configured like the store's writer.
fn raw_store(runtime: &Runtime, directory: &TempDir, name: &str) -> Connection {
    let path = directory.path().join(name);
    runtime.block_on(async {
        let store = Sqlite::open(&path).await.unwrap();
        store.close().await;
    });
    raw_connection(&path)
}

fn raw_connection(path: &Path) -> Connection {
    let connection = Connection::open(path).unwrap();
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    connection
}

/// The handwritten baseline: the rows the store writes, inserted in one transaction.
fn raw_append(
    connection: &Connection,
    stream: &StreamId,
    first_version: i64,
    events: Vec<NewEvent>,
) {
    connection.execute_batch("BEGIN IMMEDIATE").unwrap();
    {
        let mut insert = connection
            .prepare_cached(
                "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, \
                 schema_version, codec, payload, metadata, recorded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .unwrap();
        let recorded_at = es_core::Timestamp::now().as_micros();
        for (offset, event) in (0_i64..).zip(events) {
            insert
                .execute(params![
                    stream.aggregate_type(),
                    stream.aggregate_id(),
                    first_version + offset,
                    event.event_id.as_bytes().as_slice(),
                    event.event_type.as_str(),
                    event.schema_version,
                    event.codec.as_u8(),
                    event.payload,
                    serde_json::to_string(&event.metadata).unwrap(),
                    recorded_at,
                ])
                .unwrap();
        }
    }
    connection.execute_batch("COMMIT").unwrap();
}

fn append_100(c: &mut Criterion) {
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    let store = open(&runtime, &directory, "store.db");
    let raw = raw_store(&runtime, &directory, "raw.db");

    let mut group = c.benchmark_group("sqlite/append_100");
    group.throughput(Throughput::Elements(100));
    let mut round = 0_u64;
    group.bench_function("store", |b| {
        b.iter_batched(
            || batch(100),
            |events| {
                round += 1;
                let stream = StreamId::new("order", round.to_string());
                runtime
                    .block_on(store.append(&stream, ExpectedVersion::NoStream, events))
                    .unwrap();
            },
            BatchSize::SmallInput,
        );
    });
    let mut round = 0_u64;
    group.bench_function("raw_rusqlite", |b| {
        b.iter_batched(
            || batch(100),
            |events| {
                round += 1;
                let stream = StreamId::new("order", round.to_string());
                raw_append(&raw, &stream, 1, events);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    runtime.block_on(store.close());
}

fn concurrent_appenders_64(c: &mut Criterion) {
    const APPENDERS: u64 = 64;
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    let store = open(&runtime, &directory, "store.db");

    let mut group = c.benchmark_group("sqlite/concurrent_appenders_64");
    group.throughput(Throughput::Elements(APPENDERS));
    group.bench_function("group_commit", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut appenders = JoinSet::new();
                for appender in 0..APPENDERS {
                    let store = store.clone();
                    appenders.spawn(async move {
                        let stream = StreamId::new("order", appender.to_string());
                        store
                            .append(&stream, ExpectedVersion::Any, vec![item(appender)])
                            .await
                            .unwrap();
                    });
                }
                while let Some(done) = appenders.join_next().await {
                    done.unwrap();
                }
            });
        });
    });
    group.bench_function("one_by_one", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for appender in 0..APPENDERS {
                    let stream = StreamId::new("order", appender.to_string());
                    store
                        .append(&stream, ExpectedVersion::Any, vec![item(appender)])
                        .await
                        .unwrap();
                }
            });
        });
    });
    group.finish();
    runtime.block_on(store.close());
}

fn read(c: &mut Criterion) {
    const LOG: u64 = 10_000;
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    let store = open(&runtime, &directory, "store.db");
    let stream = StreamId::new("order", "read");
    runtime.block_on(async {
        store
            .append(&stream, ExpectedVersion::NoStream, batch(100))
            .await
            .unwrap();
        for round in 0..(LOG - 100) / 100 {
            let other = StreamId::new("order", round.to_string());
            store
                .append(&other, ExpectedVersion::NoStream, batch(100))
                .await
                .unwrap();
        }
    });

    let mut group = c.benchmark_group("sqlite/read");
    group.throughput(Throughput::Elements(100));
    group.bench_function("stream_100_and_decode", |b| {
        b.iter(|| {
            let events = runtime
                .block_on(store.read_stream(&stream, VersionRange::all()))
                .unwrap();
            let quantity: u32 = events
                .iter()
                .map(|event| {
                    event
                        .codec
                        .decode::<ItemAdded>(&event.payload)
                        .unwrap()
                        .quantity
                })
                .sum();
            assert!(quantity > 0);
        });
    });
    group.throughput(Throughput::Elements(LOG));
    group.bench_function("scan_log_10k_in_pages_of_1000", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut after = GlobalPosition::START;
                let mut count = 0;
                loop {
                    let page = store.read_all(after, 1_000).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.global_position;
                    count += page.len();
                }
                assert_eq!(count as u64, LOG);
            });
        });
    });
    group.finish();
    runtime.block_on(store.close());
}

fn configured() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

#[allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn benches`.
mod group {
    use super::{append_100, concurrent_appenders_64, configured, read};

    criterion::criterion_group! {
        name = benches;
        config = configured();
        targets = append_100, concurrent_appenders_64, read
    }
}

criterion_main!(group::benches);
