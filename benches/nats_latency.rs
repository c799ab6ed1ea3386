//! End-to-end latency through NATS JetStream: from an append's commit in the store to the
//! moment a read model fed by the broker has applied it (es-nats's relay publishing the
//! SQLite store's log, a projection daemon reading it through a durable JetStream consumer),
//! against the same daemon fed by the store's own subscription, in the same run.
//!
//! One append at a time (nothing queued behind it), so each figure is the latency of one
//! event, not throughput. Prints p50, p90, p99 and the worst, and the ratios. Needs a
//! `nats-server -js` at `ES_NATS_URL`; without it the bench says so and does nothing.
//!
//! `cargo bench --bench nats_latency` (`-- --events N` for another sample size).

use std::time::{Duration, Instant};

use es_core::projection::daemon::DaemonBuilder;
use es_core::{
    CodecId, EventStore, ExpectedVersion, Metadata, NewEvent, Projection, ProjectionDaemon,
    RecordedEvent, Sqlite, StreamId,
};
use es_nats::consumer::{ConsumerOptions, JetStreamLog};
use es_nats::envelope::Subjects;
use es_nats::relay::{Relay, RelayOptions};
use serde::{Deserialize, Serialize};

/// Appends measured per path unless `--events` says otherwise.
const DEFAULT_EVENTS: usize = 2_000;
/// Appends before measuring, so connections, caches and consumers are warm.
const WARM_UP: usize = 200;
const WAIT: Duration = Duration::from_secs(30);

/// Counts the events it applied.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Count(u64);

impl Projection for Count {
    const NAME: &'static str = "count";
    type Error = std::convert::Infallible;

    fn apply(&mut self, _event: &RecordedEvent) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn builder() -> DaemonBuilder {
    ProjectionDaemon::builder()
        .with(Count::default())
        .expect("one read model")
}

// `.into()`: the field types become shared buffers with the O(1)-clone events of issue 14.
#[allow(clippy::useless_conversion)]
fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "Ticked".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"{}".to_vec().into(),
        metadata: Metadata::default(),
    }
}

/// Appends one event at a time and waits until `daemon` has applied it; each latency.
async fn measure(store: &Sqlite, daemon: &ProjectionDaemon, count: usize) -> Vec<Duration> {
    let stream = StreamId::new("tick", "bench");
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let written = store
            .append(&stream, ExpectedVersion::Any, vec![event()])
            .await
            .expect("the append commits");
        daemon
            .wait_for(written.position, WAIT)
            .await
            .expect("the read model applies the event");
        latencies.push(started.elapsed());
    }
    latencies
}

/// The `q`-quantile of sorted `latencies` (nearest rank).
fn quantile(latencies: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )] // a rank within the sample
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1]
}

fn report(name: &str, mut latencies: Vec<Duration>) -> [Duration; 4] {
    latencies.sort();
    let figures = [
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.90),
        quantile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    ];
    println!(
        "{name:<44} p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}  ({} events)",
        figures[0],
        figures[1],
        figures[2],
        figures[3],
        latencies.len()
    );
    figures
}

fn main() {
    let events = std::env::args()
        .skip_while(|argument| argument != "--events")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let Some(url) = std::env::var("ES_NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        println!("nats_latency: ES_NATS_URL is not set (a `nats-server -js`); nothing measured");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(&url, events));
}

async fn run(url: &str, events: usize) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = Sqlite::open(directory.path().join("events.db"))
        .await
        .expect("the store opens");

    // Baseline: the daemon on the store's own subscription.
    let local = builder()
        .start(store.clone())
        .await
        .expect("the local daemon starts");
    measure(&store, &local, WARM_UP).await;
    let local_figures = report(
        "commit -> applied, store subscription",
        measure(&store, &local, events).await,
    );
    local.shutdown().await.expect("shuts down");

    // Through the broker: relay -> JetStream -> durable consumer -> daemon.
    let name = format!("BENCH_LATENCY_{}", std::process::id());
    let subjects = Subjects::new(format!("bench.{}", std::process::id())).expect("a prefix");
    let client = async_nats::connect(url).await.expect("connects to NATS");
    let relay = Relay::new(
        store.clone(),
        client.clone(),
        RelayOptions::new()
            .with_stream_name(name.as_str())
            .with_subjects(subjects),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relaying = tokio::spawn(async move {
        relay
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    let jetstream = async_nats::jetstream::new(client);
    // The relay creates the stream; wait for it.
    let started = Instant::now();
    while jetstream.get_stream(&name).await.is_err() {
        assert!(
            started.elapsed() < WAIT,
            "the relay did not create the stream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let models = Sqlite::open(directory.path().join("read-models.db"))
        .await
        .expect("the read-model store opens");
    let log = JetStreamLog::open(
        &jetstream,
        ConsumerOptions::new(name.as_str(), "bench"),
        models.clone(),
    )
    .await
    .expect("the consumer opens");
    let remote = builder()
        .start_from(log.clone(), models.clone())
        .await
        .expect("the consumer's daemon starts");
    measure(&store, &remote, WARM_UP).await;
    let remote_figures = report(
        "commit -> applied, relay + JetStream consumer",
        measure(&store, &remote, events).await,
    );
    remote.shutdown().await.expect("shuts down");
    log.close().await;
    let _ = stop.send(());
    relaying
        .await
        .expect("the relay task")
        .expect("the relay stops cleanly");
    jetstream.delete_stream(&name).await.expect("cleans up");

    let labels = ["p50", "p90", "p99", "max"];
    let ratios: Vec<String> = labels
        .iter()
        .zip(remote_figures.iter().zip(local_figures.iter()))
        .map(|(label, (remote, local))| {
            format!("{label} {:.1}x", remote.as_secs_f64() / local.as_secs_f64())
        })
        .collect();
    println!(
        "through the broker / local subscription: {}",
        ratios.join(", ")
    );
    models.close().await;
    store.close().await;
}
