//! Relay throughput against the raw NATS client publishing the same messages.
//!
//! - `nats_relay/relay`: an in-memory store already holding `EVENTS` events; a relay starts on
//!   an empty JetStream stream and the clock stops when it reports the last event published
//!   (acknowledged). It reads the log, builds each envelope, chains each publish to the one
//!   before (`Nats-Expected-Last-Sequence`) and checks each acknowledgement.
//! - `nats_relay/raw_async_nats`: the baseline, the same subjects, headers and payloads
//!   (envelopes built before the clock starts) published with async-nats's JetStream
//!   `send_publish`, with the same number of acknowledgements in flight (256), into an empty
//!   stream of the same configuration, until every acknowledgement is in.
//!
//! The broker: `ES_NATS_URL` when set (what `.ci/run` starts), else a `nats-server -js` this
//! bench starts in a temporary directory (the binary from `$NATS_SERVER`, the `PATH` or
//! `/usr/sbin`); without either, one line says it was skipped. Run with
//! `cargo bench --bench nats_relay`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use criterion::{Criterion, Throughput};
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata, NewEvent,
    RecordedEvent, StreamId,
};
use es_nats::envelope::{Envelope, Subjects};
use es_nats::relay::{Relay, RelayOptions};
use tokio::runtime::Runtime;

/// Events per measured run.
const EVENTS: u64 = 5_000;
/// Acknowledgements in flight, for both.
const WINDOW: usize = 256;

/// A `nats-server` this bench started, stopped (and its directory removed) when dropped.
struct Server {
    child: Child,
    _directory: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker's URL, and the server if this bench started it.
fn broker() -> Option<(String, Option<Server>)> {
    if let Ok(url) = std::env::var("ES_NATS_URL") {
        return Some((url, None));
    }
    let binary = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/nats-server", "/usr/sbin/nats-server"]
                .into_iter()
                .map(PathBuf::from)
                .find(|path| path.is_file())
        })?;
    let directory = tempfile::tempdir().ok()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .ok()?
        .port();
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(directory.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server {
        child,
        _directory: directory,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((format!("nats://127.0.0.1:{port}"), Some(server)))
}

/// An order-shaped event of a few hundred bytes with metadata, like the example's.
fn event(index: u64) -> NewEvent {
    let payload = format!(
        r#"{{"order_id":"order-{}","product_id":"sku-{}","quantity":{},"unit_price":{{"minor_units":1999,"currency":"EUR"}}}}"#,
        index / 5,
        index % 97,
        index % 9 + 1
    );
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "OrderItemAdded".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: payload.into_bytes(),
        metadata: Metadata::default()
            .with_correlation_id(uuid::Uuid::now_v7())
            .with("user", "clerk-7"),
    }
}

async fn filled_store() -> (InMemory, Vec<RecordedEvent>) {
    let store = InMemory::new();
    for index in 0..EVENTS {
        let stream = StreamId::new("order", (index / 5).to_string());
        store
            .append(&stream, ExpectedVersion::Any, vec![event(index)])
            .await
            .expect("the append commits");
    }
    let log = store
        .read_all(GlobalPosition::START, usize::try_from(EVENTS).unwrap())
        .await
        .expect("the log reads");
    (store, log)
}

/// A fresh, empty stream named `name` with the relay's configuration.
async fn fresh_stream(jetstream: &async_nats::jetstream::Context, options: &RelayOptions) {
    let _ = jetstream.delete_stream(options.stream_name()).await;
    jetstream
        .create_stream(options.stream_config())
        .await
        .expect("the stream is created");
}

fn options(name: &str) -> RelayOptions {
    RelayOptions::new()
        .with_stream_name(name)
        .with_subjects(Subjects::new(format!("bench.{}", name.to_lowercase())).unwrap())
        .with_max_in_flight(WINDOW)
}

/// Publishes `envelopes` with `WINDOW` acknowledgements in flight; returns the time taken.
async fn publish_raw(
    jetstream: &async_nats::jetstream::Context,
    envelopes: &[Envelope],
) -> Duration {
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
    for envelope in envelopes {
        if in_flight.len() == WINDOW {
            let ack: async_nats::jetstream::context::PublishAckFuture =
                in_flight.pop_front().unwrap();
            ack.await.expect("the publish is acknowledged");
        }
        let ack = jetstream
            .send_publish(
                envelope.subject.clone(),
                PublishMessage::build()
                    .payload(envelope.payload.clone())
                    .headers(envelope.headers.clone()),
            )
            .await
            .expect("the publish is sent");
        in_flight.push_back(ack);
    }
    for ack in in_flight {
        ack.await.expect("the publish is acknowledged");
    }
    started.elapsed()
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let Some((url, _server)) = broker() else {
        println!("nats_relay bench skipped: no ES_NATS_URL and no nats-server binary");
        return;
    };
    let runtime = Runtime::new().expect("a runtime");
    // The JetStream context spawns its acknowledgement task on creation.
    let _entered = runtime.enter();
    let client = runtime
        .block_on(async_nats::connect(&url))
        .expect("the broker accepts a connection");
    let jetstream = async_nats::jetstream::new(client.clone());
    let (store, log) = runtime.block_on(filled_store());

    let mut group = criterion.benchmark_group("nats_relay");
    group.throughput(Throughput::Elements(EVENTS));

    let relay_options = options("BENCH_RELAY");
    group.bench_function("relay", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                total += runtime.block_on(async {
                    fresh_stream(&jetstream, &relay_options).await;
                    let relay = Relay::new(store.clone(), client.clone(), relay_options.clone());
                    let mut status = relay.status();
                    let started = Instant::now();
                    let running =
                        tokio::spawn(async move { relay.run_until(std::future::pending()).await });
                    status
                        .wait_for(|status| status.published.get() == EVENTS)
                        .await
                        .expect("the relay runs");
                    let elapsed = started.elapsed();
                    running.abort();
                    elapsed
                });
            }
            total
        });
    });

    let raw_options = options("BENCH_RAW");
    let subjects = raw_options.subjects().clone();
    let envelopes: Vec<Envelope> = log.iter().map(|event| subjects.envelope(event)).collect();
    group.bench_function("raw_async_nats", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                total += runtime.block_on(async {
                    fresh_stream(&jetstream, &raw_options).await;
                    publish_raw(&jetstream, &envelopes).await
                });
            }
            total
        });
    });
    group.finish();

    runtime.block_on(async {
        let _ = jetstream.delete_stream(relay_options.stream_name()).await;
        let _ = jetstream.delete_stream(raw_options.stream_name()).await;
    });
    criterion.final_summary();
}
