//! What atomicity across streams costs: an order event and a product (stock) event written
//! as one two-stream append (`EventStore::append_streams`), against the same two events
//! written as two single-stream appends, one after the other (what a program without
//! multi-stream appends does, and not atomic). Each iteration writes to a fresh pair of
//! streams, so every expected version is `NoStream`.
//!
//! - `multi_stream/memory/{two_single_appends,one_two_stream_append}`
//! - `multi_stream/sqlite/...`: a file in a temporary directory, durable commits
//!   (`synchronous = FULL`): two appends are two commits, one append is one.
//! - `multi_stream/postgres/...`: only with `ES_POSTGRES_URL` set; a fresh schema, dropped at
//!   the end.
//!
//! Run with `cargo bench --bench multi_stream` (about a minute with PostgreSQL).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::store::sqlite::Sqlite;
use es_core::{CodecId, EventStore, ExpectedVersion, InMemory, NewEvent, StreamBatch, StreamId};
use order_example::{
    Money, OrderEvent, OrderId, OrderItemAdded, ProductEvent, ProductId, StockReserved,
};
use tokio::runtime::Runtime;

const URL_VARIABLE: &str = "ES_POSTGRES_URL";

/// The two events of one item added: the order's and the product's reservation.
fn events(index: u64) -> (NewEvent, NewEvent) {
    let order: OrderEvent = OrderItemAdded {
        product_id: ProductId::new("mug"),
        quantity: 2,
        unit_price: Money::from_minor_units(1_250),
    }
    .into();
    let product: ProductEvent = StockReserved {
        order_id: OrderId::new(format!("o-{index}")),
        quantity: 2,
    }
    .into();
    (
        NewEvent::encode(&order, CodecId::Postcard).expect("order events encode"),
        NewEvent::encode(&product, CodecId::Postcard).expect("product events encode"),
    )
}

/// Benches both ways of writing the pair on `store`.
fn compare<S: EventStore>(criterion: &mut Criterion, runtime: &Runtime, name: &str, store: &S) {
    let next = AtomicU64::new(0);
    let pair = || {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let streams = (
            StreamId::new("order", format!("o-{index}")),
            StreamId::new("product", format!("p-{index}")),
        );
        (streams, events(index))
    };
    let mut group = criterion.benchmark_group(format!("multi_stream/{name}"));
    group.throughput(Throughput::Elements(2));
    group.bench_function(BenchmarkId::from_parameter("two_single_appends"), |b| {
        b.iter_batched(
            pair,
            |((order, product), (first, second))| {
                runtime.block_on(async {
                    let a = store
                        .append(&order, ExpectedVersion::NoStream, vec![first])
                        .await
                        .unwrap();
                    let b = store
                        .append(&product, ExpectedVersion::NoStream, vec![second])
                        .await
                        .unwrap();
                    black_box((a, b))
                })
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function(BenchmarkId::from_parameter("one_two_stream_append"), |b| {
        b.iter_batched(
            pair,
            |((order, product), (first, second))| {
                runtime.block_on(async {
                    let outcomes = store
                        .append_streams(vec![
                            StreamBatch::new(order, ExpectedVersion::NoStream, vec![first]),
                            StreamBatch::new(product, ExpectedVersion::NoStream, vec![second]),
                        ])
                        .await
                        .unwrap();
                    black_box(outcomes)
                })
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    compare(&mut criterion, &runtime, "memory", &InMemory::new());

    let directory = tempfile::tempdir().expect("a temporary directory");
    let sqlite = runtime
        .block_on(Sqlite::open(directory.path().join("bench.db")))
        .expect("the SQLite store opens");
    compare(&mut criterion, &runtime, "sqlite", &sqlite);
    runtime.block_on(sqlite.close());

    match std::env::var(URL_VARIABLE) {
        Ok(url) => {
            let schema = format!("es_bench_multi_{}", std::process::id());
            let postgres = runtime
                .block_on(Postgres::connect_with(
                    PostgresOptions::new(url.as_str()).with_schema(schema.as_str()),
                ))
                .expect("the bench schema is created");
            compare(&mut criterion, &runtime, "postgres", &postgres);
            runtime.block_on(postgres.close());
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("the server answers");
                let driver = tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .expect("the bench schema drops");
                drop(client);
                let _ = driver.await;
            });
        }
        Err(_) => println!("PostgreSQL bench skipped: {URL_VARIABLE} not set"),
    }
    criterion.final_summary();
}
