//! Appends on the PostgreSQL store against a real server (`ES_POSTGRES_URL`, see
//! `.ci/pg-setup`; without it the bench prints one line and does nothing).
//!
//! - `store/postgres/append/1` and `.../100`: [`EventStore::append`] of 1 and 100
//!   `OrderItemAdded` events (postcard) to a new stream: one round trip, the batch bound as
//!   column arrays and inserted by one `INSERT ... SELECT FROM unnest(...)`.
//! - `store/postgres/append/100-statements`: the baseline, the same 100 rows inserted by one
//!   prepared `INSERT` per event (each awaited, as a loop of single inserts is usually
//!   written), in one transaction, so both pay for one commit.
//!
//! Each measurement writes to a fresh schema, dropped at the end. Run with
//! `eval "$(.ci/pg-setup)" && cargo bench --bench postgres` (about half a minute after the
//! build).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::{CodecId, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use order_example::{Money, OrderEvent, OrderItemAdded, ProductId};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

/// The variable holding the server URL.
const URL_VARIABLE: &str = "ES_POSTGRES_URL";

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

/// `size` events with fresh ids.
fn batch(size: u64) -> Vec<NewEvent> {
    (0..size).map(item_added).collect()
}

/// A stream no other iteration has used.
fn next_stream() -> StreamId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    StreamId::new("order", NEXT.fetch_add(1, Ordering::Relaxed).to_string())
}

async fn raw_client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("the server accepts a connection");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The baseline: the rows `EventStore::append` would write, one `INSERT` per event, in one
/// transaction.
async fn insert_one_statement_per_event(
    client: &Client,
    insert: &tokio_postgres::Statement,
    stream: &StreamId,
    events: Vec<NewEvent>,
    recorded_at: i64,
) {
    client.batch_execute("BEGIN").await.expect("BEGIN");
    for (index, event) in events.into_iter().enumerate() {
        let version = i64::try_from(index).expect("small") + 1;
        let metadata = serde_json::to_string(&event.metadata).expect("metadata encodes");
        client
            .execute(
                insert,
                &[
                    &stream.aggregate_type(),
                    &stream.aggregate_id(),
                    &version,
                    &event.event_id,
                    &event.event_type.as_str(),
                    &i64::from(event.schema_version),
                    &i16::from(event.codec.as_u8()),
                    &event.payload,
                    &metadata,
                    &recorded_at,
                ],
            )
            .await
            .expect("the row inserts");
    }
    client.batch_execute("COMMIT").await.expect("COMMIT");
}

fn appends(criterion: &mut Criterion, runtime: &Runtime, url: &str, schema: &str) {
    let store = runtime
        .block_on(Postgres::connect_with(
            PostgresOptions::new(url)
                .with_schema(schema)
                .with_pool_size(2),
        ))
        .expect("the bench schema is created");
    let client = runtime.block_on(raw_client(url));
    let insert = runtime
        .block_on(client.prepare(&format!(
            "INSERT INTO \"{schema}\".events (aggregate_type, aggregate_id, version, event_id,
                 event_type, schema_version, codec, payload, metadata, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::json, $10)"
        )))
        .expect("the baseline insert prepares");

    let mut group = criterion.benchmark_group("store/postgres/append");
    for size in [1, 100] {
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_batched(
                || (next_stream(), batch(size)),
                |(stream, events)| {
                    let outcome = runtime
                        .block_on(store.append(&stream, ExpectedVersion::NoStream, events))
                        .expect("the append succeeds");
                    black_box(outcome);
                },
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.throughput(Throughput::Elements(100));
    group.bench_function(BenchmarkId::from_parameter("100-statements"), |b| {
        b.iter_batched(
            || (next_stream(), batch(100)),
            |(stream, events)| {
                runtime.block_on(insert_one_statement_per_event(
                    &client,
                    &insert,
                    &stream,
                    events,
                    es_core::Timestamp::now().as_micros(),
                ));
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn main() {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        println!("PostgreSQL benches skipped: {URL_VARIABLE} not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    let schema = format!("es_bench_{}", std::process::id());
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    appends(&mut criterion, &runtime, &url, &schema);
    runtime.block_on(async {
        raw_client(&url)
            .await
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .expect("the bench schema drops");
    });
    criterion.final_summary();
}
