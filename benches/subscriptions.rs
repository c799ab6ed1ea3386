//! Commit-to-handler latency of subscriptions, per store: how long after an append starts
//! does a subscriber's handler, running in another task, hold the event.
//!
//! For each store, one subscriber task waits at the head of the log with
//! [`Subscription::next_batch`](es_core::Subscription::next_batch) and timestamps each event it
//! receives (the "handler"); the measuring task appends one event at a time and waits for that
//! timestamp.
//!
//! - `subscriptions/<store>/append-to-handler`: from calling `append` to the handler holding
//!   the event: the commit (with its fsync on the durable stores) plus the delivery.
//! - `subscriptions/<store>/append`: the baseline in the same loop, from calling `append` to
//!   its acknowledgement. The difference is what delivery adds.
//!
//! Before criterion's runs, a fixed number of appends is timed one by one and the p50 and p99
//! are printed, of append-to-handler and of acknowledgement-to-handler (the handler often holds
//! the event before `append` returns: the store wakes subscribers at commit, before it answers
//! the appender, and those count as zero).
//!
//! Stores: in-memory, SQLite (a temporary file, durable `synchronous = FULL` commits), and
//! PostgreSQL when `ES_POSTGRES_URL` is set (a fresh schema, dropped at the end; otherwise one
//! line says it was skipped). Run with `cargo bench --bench subscriptions`.

use std::time::{Duration, Instant};

use criterion::Criterion;
use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::store::sqlite::Sqlite;
use es_core::{
    CodecId, EventFilter, ExpectedVersion, InMemory, Metadata, NewEvent, StreamId, Subscribe,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// The variable holding the PostgreSQL server URL.
const URL_VARIABLE: &str = "ES_POSTGRES_URL";

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "LatencyMeasured".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: br#"{"probe":true}"#.to_vec(),
        metadata: Metadata::default(),
    }
}

/// A store with a subscriber task that sends the instant it receives each event.
struct Probe<S> {
    store: S,
    stream: StreamId,
    received: mpsc::UnboundedReceiver<Instant>,
}

/// The times of one append: acknowledged, and held by the handler.
struct Timing {
    acknowledged: Duration,
    handled: Duration,
    acknowledgement_to_handler: Duration,
}

impl<S: Subscribe + Clone + 'static> Probe<S> {
    fn start(runtime: &Runtime, store: S) -> Self {
        let (sender, received) = mpsc::unbounded_channel();
        let subscriber = store.clone();
        runtime.block_on(async {
            let head = subscriber.last_position().await.expect("the head reads");
            let mut subscription = subscriber.subscribe(head, EventFilter::all());
            tokio::spawn(async move {
                while let Ok(batch) = subscription.next_batch().await {
                    let now = Instant::now();
                    for _ in batch {
                        if sender.send(now).is_err() {
                            return;
                        }
                    }
                }
            });
        });
        Probe {
            store,
            stream: StreamId::new("latency", "probe"),
            received,
        }
    }

    async fn once(&mut self) -> Timing {
        let start = Instant::now();
        self.store
            .append(&self.stream, ExpectedVersion::Any, vec![event()])
            .await
            .expect("the append succeeds");
        let acknowledged = Instant::now();
        let handled = self.received.recv().await.expect("the subscriber runs");
        Timing {
            acknowledged: acknowledged - start,
            handled: handled.saturating_duration_since(start),
            acknowledgement_to_handler: handled.saturating_duration_since(acknowledged),
        }
    }
}

/// The `percent`-th percentile of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() - 1) * percent / 100]
}

fn print_percentiles<S: Subscribe + Clone + 'static>(
    runtime: &Runtime,
    probe: &mut Probe<S>,
    name: &str,
    samples: usize,
) {
    let mut handled = Vec::with_capacity(samples);
    let mut after_ack = Vec::with_capacity(samples);
    let mut acknowledged = Vec::with_capacity(samples);
    runtime.block_on(async {
        for _ in 0..samples {
            let timing = probe.once().await;
            handled.push(timing.handled);
            after_ack.push(timing.acknowledgement_to_handler);
            acknowledged.push(timing.acknowledged);
        }
    });
    for times in [&mut handled, &mut after_ack, &mut acknowledged] {
        times.sort_unstable();
    }
    println!(
        "subscriptions/{name}: {samples} single-event appends: append-to-handler p50 {:.1?} \
         p99 {:.1?}; acknowledgement-to-handler p50 {:.1?} p99 {:.1?}; append alone p50 {:.1?} \
         p99 {:.1?}",
        percentile(&handled, 50),
        percentile(&handled, 99),
        percentile(&after_ack, 50),
        percentile(&after_ack, 99),
        percentile(&acknowledged, 50),
        percentile(&acknowledged, 99),
    );
}

fn latency<S: Subscribe + Clone + 'static>(
    criterion: &mut Criterion,
    runtime: &Runtime,
    name: &str,
    store: S,
    samples: usize,
) {
    let mut probe = Probe::start(runtime, store);
    print_percentiles(runtime, &mut probe, name, samples);
    let mut group = criterion.benchmark_group(format!("subscriptions/{name}"));
    group.bench_function("append-to-handler", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += probe.once().await.handled;
                }
                total
            })
        });
    });
    group.bench_function("append", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += probe.once().await.acknowledged;
                }
                total
            })
        });
    });
    group.finish();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    latency(&mut criterion, &runtime, "memory", InMemory::new(), 5_000);

    let directory = tempfile::tempdir().expect("a temporary directory");
    let sqlite = runtime
        .block_on(Sqlite::open(directory.path().join("events.db")))
        .expect("the SQLite store opens");
    latency(&mut criterion, &runtime, "sqlite", sqlite.clone(), 1_000);
    runtime.block_on(sqlite.close());

    match std::env::var(URL_VARIABLE) {
        Ok(url) => {
            let schema = format!("es_bench_subscriptions_{}", std::process::id());
            let postgres = runtime
                .block_on(Postgres::connect_with(
                    PostgresOptions::new(url.clone()).with_schema(schema.clone()),
                ))
                .expect("the bench schema is created");
            latency(
                &mut criterion,
                &runtime,
                "postgres",
                postgres.clone(),
                1_000,
            );
            runtime.block_on(postgres.close());
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("the server accepts a connection");
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .expect("the bench schema drops");
            });
        }
        Err(_) => println!("subscriptions/postgres skipped: {URL_VARIABLE} not set"),
    }
    criterion.final_summary();
}
