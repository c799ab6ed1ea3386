//! The log consumed from NATS JetStream (es-nats's `JetStreamLog` feeding the projection
//! daemon): a consumer process builds the Order read models from the broker while events are
//! published, is killed (SIGKILL) and restarted, and ends equal to an in-process rebuild from the
//! store, every event applied once; a poison message parks the feed unacknowledged until it is
//! skipped. Skips without `ES_NATS_URL` (fails under CI without it).
//!
//! The consumer is this same test binary, started with the test's name and an environment
//! variable that switches it into the consumer's role.

mod nats_consumer_support;
mod nats_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use es_core::projection::daemon::LogSource as _;
use es_core::snapshot::ProjectionStore as _;
use es_core::{
    EventStore, GlobalPosition, InMemory, Projection, ProjectionDaemon, ProjectionRegistry,
    RecordedEvent, Sqlite,
};
use es_nats::consumer::{ConsumerError, ConsumerOptions, JetStreamLog};
use es_nats::envelope::Subjects;
use es_nats::relay::{Relay, RelayOptions};
use nats_consumer_support::{append_orders, create_stream, publish_after, unique};
use order_example::load::Workload;
use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
use serde::{Deserialize, Serialize};

/// Set in the consumer process: `URL STREAM DURABLE READ_MODEL_DB STOP_FILE`.
const CONSUMER_ROLE: &str = "ES_NATS_CONSUMER_ROLE";

/// The initial stock of every product, in the consumer and the rebuild alike.
const STOCK: u64 = 1_000_000;

/// The longest a test waits for something that is due (a lost event or wake-up, never a
/// measure of speed).
const DEADLINE: Duration = Duration::from_secs(90);

/// Every position it applied, in order: a duplicate or a gap shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seen(Vec<u64>);

impl Projection for Seen {
    const NAME: &'static str = "seen";
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        self.0.push(event.global_position.get());
        Ok(())
    }

    fn reset(&mut self) {
        self.0.clear();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The consumer process: the three Order read models and `Seen`, fed from the durable
/// consumer, saved in a local SQLite file, until the stop file appears.
fn consumer(arguments: &str) {
    let parts: Vec<&str> = arguments.split(' ').collect();
    let [url, stream, durable, database, stop] = parts[..] else {
        panic!("bad consumer arguments: {arguments}");
    };
    runtime().block_on(async {
        let client = async_nats::connect(url)
            .await
            .expect("the consumer connects");
        let js = jetstream::new(client);
        let store = Sqlite::open(database)
            .await
            .expect("the read-model store opens");
        let log = JetStreamLog::open(
            &js,
            // A short ack wait: what a killed process held comes back soon, to be acknowledged.
            ConsumerOptions::new(stream, durable)
                .with_ack_wait(Duration::from_secs(2))
                .with_idle_check(Duration::from_millis(200)),
            store.clone(),
        )
        .await
        .expect("the consumer opens");
        let daemon = ProjectionDaemon::builder()
            .with(OrderSummaries::default())
            .and_then(|builder| builder.with(Inventory::new(STOCK)))
            .and_then(|builder| builder.with(CustomerHistories::default()))
            .and_then(|builder| builder.with(Seen::default()))
            .expect("distinct read models")
            .with_save_interval(Duration::from_millis(50))
            .start_from(log.clone(), store.clone())
            .await
            .expect("the daemon starts");
        while !Path::new(stop).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!daemon.is_finished(), "the daemon stopped on its own");
        }
        daemon.shutdown().await.expect("the daemon shuts down");
        log.close().await;
        store.close().await;
    });
}

struct Consumer {
    arguments: String,
    child: Option<Child>,
}

impl Consumer {
    fn start(test: &str, arguments: String) -> Consumer {
        let mut consumer = Consumer {
            arguments,
            child: None,
        };
        consumer.spawn(test);
        consumer
    }

    fn spawn(&mut self, test: &str) {
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CONSUMER_ROLE, &self.arguments)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the consumer process starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no last save, no last acknowledgement.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("the consumer is killed");
            child.wait().expect("the killed consumer is reaped");
        }
    }

    fn wait(&mut self) {
        let mut child = self.child.take().expect("a running consumer");
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("the consumer's status") {
                assert!(status.success(), "the consumer failed: {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the consumer did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The lowest checkpoint the consumer process has saved for the four read models.
async fn saved_floor(database: &Path) -> GlobalPosition {
    let store = Sqlite::open(database)
        .await
        .expect("the read-model store opens");
    let mut floor = None::<GlobalPosition>;
    for name in [
        OrderSummaries::NAME,
        Inventory::NAME,
        CustomerHistories::NAME,
        Seen::NAME,
    ] {
        let position = store
            .load_projection(name)
            .await
            .expect("the saved read model loads")
            .map_or(GlobalPosition::START, |saved| saved.position);
        floor = Some(floor.map_or(position, |floor| floor.min(position)));
    }
    store.close().await;
    floor.unwrap_or_default()
}

/// es-nats's relay on its own task, publishing a store's log.
struct RunningRelay {
    status: tokio::sync::watch::Receiver<es_nats::relay::RelayStatus>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), es_nats::relay::RelayError>>,
}

impl RunningRelay {
    /// Starts relaying `store` to stream `name` and waits until the relay has created it.
    async fn start(
        store: &Sqlite,
        client: async_nats::Client,
        name: &str,
        subjects: Subjects,
    ) -> RunningRelay {
        let js = jetstream::new(client.clone());
        let relay = Relay::new(
            store.clone(),
            client,
            RelayOptions::new()
                .with_stream_name(name)
                .with_subjects(subjects),
        );
        let status = relay.status();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while js.get_stream(name).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay did not create the stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RunningRelay { status, stop, task }
    }

    async fn wait_published(&mut self, head: GlobalPosition) {
        tokio::time::timeout(
            DEADLINE,
            self.status.wait_for(|status| status.published == head),
        )
        .await
        .expect("the relay publishes everything")
        .expect("the relay runs");
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("the relay task")
            .expect("the relay stops cleanly");
    }
}

#[test]
fn consumer_process_read_models_equal_a_rebuild_across_sigkills() {
    const TEST: &str = "consumer_process_read_models_equal_a_rebuild_across_sigkills";
    if let Ok(arguments) = std::env::var(CONSUMER_ROLE) {
        consumer(&arguments);
        return;
    }
    let Some(url) = nats_support::url() else {
        return;
    };
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database: PathBuf = directory.path().join("read-models.db");
    let stop = directory.path().join("stop");
    let name = unique("consumer_sigkill");
    let subjects = Subjects::new(format!("es.{name}")).expect("a valid prefix");
    runtime().block_on(async {
        let client = async_nats::connect(&url).await.expect("connects");
        let js = jetstream::new(client.clone());
        let store = Sqlite::open(directory.path().join("events.db"))
            .await
            .expect("the event store opens");
        // The relay publishes the log as it grows, on its own task, as in production.
        let mut relay = RunningRelay::start(&store, client, &name, subjects).await;
        let mut process = Consumer::start(
            TEST,
            format!(
                "{url} {name} readers {} {}",
                database.display(),
                stop.display()
            ),
        );

        // Orders are written in rounds while the relay publishes them; the consumer is killed
        // in some rounds, at a different moment each time, and started again.
        let mut workload = Workload::new(7);
        for round in 0..12_u64 {
            append_orders(&store, &mut workload, 40).await;
            tokio::time::sleep(Duration::from_millis(10 + 25 * (round % 5))).await;
            if round % 3 == 1 {
                process.kill();
                process.spawn(TEST);
            }
        }
        let head = store.last_position().await.expect("the head");
        relay.wait_published(head).await;

        // The consumer gets everywhere without any more help.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while saved_floor(&database).await < head {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the consumer's read models did not reach {head}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every message is acknowledged, those delivered to a killed process included (the
        // broker delivers them again after the ack wait; they are acknowledged, not applied).
        let stream = js.get_stream(&name).await.expect("the stream");
        wait_acknowledged(&stream, "readers", head.get()).await;
        std::fs::write(&stop, b"stop").expect("the stop file");
        process.wait();

        // Its read models equal a rebuild from the store, and every event was applied once.
        let models = Sqlite::open(&database).await.expect("the read-model store");
        let mut consumed = read_models::registry(Inventory::new(STOCK))
            .and_then(|registry| registry.with(Seen::default()))
            .expect("distinct read models");
        consumed.restore_from(&models).await.expect("restores");
        let mut rebuilt = read_models::registry(Inventory::new(STOCK)).expect("registry");
        rebuilt.rebuild(&store).await.expect("rebuilds");
        assert_equal_read_models(&consumed, &rebuilt);
        let seen = consumed.get::<Seen>().expect("registered");
        assert_eq!(seen.0, (1..=head.get()).collect::<Vec<_>>());

        // Nothing left unacknowledged after the shutdown.
        let info = stream
            .consumer_info("readers")
            .await
            .expect("the durable consumer");
        assert_eq!(info.num_ack_pending, 0, "{info:?}");
        assert_eq!(info.ack_floor.stream_sequence, head.get(), "{info:?}");
        relay.stop().await;
        models.close().await;
        store.close().await;
    });
}

fn assert_equal_read_models(consumed: &ProjectionRegistry, rebuilt: &ProjectionRegistry) {
    assert_eq!(
        consumed.get::<OrderSummaries>(),
        rebuilt.get::<OrderSummaries>()
    );
    assert_eq!(consumed.get::<Inventory>(), rebuilt.get::<Inventory>());
    assert_eq!(
        consumed.get::<CustomerHistories>(),
        rebuilt.get::<CustomerHistories>()
    );
    assert!(consumed
        .get::<OrderSummaries>()
        .is_some_and(|s| !s.is_empty()));
}

/// Waits until durable consumer `durable` has every message up to `sequence` acknowledged.
async fn wait_acknowledged(stream: &jetstream::stream::Stream, durable: &str, sequence: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let info = stream.consumer_info(durable).await.expect("the consumer");
        if info.ack_floor.stream_sequence == sequence && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not acknowledged: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the feed is parked; the message it is parked on.
async fn wait_parked<P: es_core::snapshot::ProjectionStore + 'static>(
    log: &JetStreamLog<P>,
) -> es_nats::consumer::PoisonMessage {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(parked) = log.status().parked {
                return parked;
            }
            log.changed().await;
        }
    })
    .await
    .expect("the feed parks")
}

/// Waits until the daemon's read models have seen `position`.
async fn wait_for_seen(daemon: &ProjectionDaemon, position: u64) {
    daemon
        .wait_for(GlobalPosition(position), DEADLINE)
        .await
        .expect("the read model reaches the position");
}

/// Publishes the events of two orders, a message that is not an envelope, then two more
/// orders: the last position before the poison message, its sequence and subject, the head.
async fn publish_with_poison(
    js: &jetstream::Context,
    name: &str,
    subjects: &Subjects,
) -> (GlobalPosition, u64, String, GlobalPosition) {
    let store = InMemory::new();
    let mut workload = Workload::new(3);
    append_orders(&store, &mut workload, 2).await;
    let before = publish_after(js, subjects, &store, GlobalPosition::START).await;
    // Not an envelope: no headers at all, on a subject the stream holds.
    let poison_subject = format!("es.{name}.order.bogus");
    js.publish(poison_subject.clone(), "not an event".into())
        .await
        .expect("accepted")
        .await
        .expect("stored");
    append_orders(&store, &mut workload, 2).await;
    let head = publish_after(js, subjects, &store, before).await;
    (before, before.get() + 1, poison_subject, head)
}

#[test]
fn a_poison_message_parks_the_feed_unacknowledged_until_skipped() {
    let Some(url) = nats_support::url() else {
        return;
    };
    let name = unique("consumer_poison");
    let subjects = Subjects::new(format!("es.{name}")).expect("a valid prefix");
    runtime().block_on(async {
        let js = jetstream::new(async_nats::connect(&url).await.expect("connects"));
        create_stream(&js, &name, &subjects).await;
        let (before, poison_sequence, poison_subject, head) =
            publish_with_poison(&js, &name, &subjects).await;
        let models = InMemory::new();
        let options = ConsumerOptions::new(name.as_str(), "poisoned")
            .with_idle_check(Duration::from_millis(100));
        let log = JetStreamLog::open(&js, options.clone(), models.clone())
            .await
            .expect("opens");
        let daemon = ProjectionDaemon::builder()
            .with(Seen::default())
            .expect("one read model")
            .with_save_interval(Duration::from_millis(20))
            .start_from(log.clone(), models.clone())
            .await
            .expect("starts");
        wait_for_seen(&daemon, before.get()).await;

        // Parked on the poison message: recorded, shown, nothing after it applied.
        let parked = wait_parked(&log).await;
        assert_eq!(parked.sequence, poison_sequence);
        assert_eq!(parked.subject, poison_subject);
        assert!(parked.error.contains("header"), "{}", parked.error);
        let saved = JetStreamLog::saved_status(&models, "poisoned")
            .await
            .expect("the record reads");
        assert_eq!(saved.parked.as_ref(), Some(&parked));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            daemon
                .read(|seen: &Seen| seen.0.clone())
                .expect("registered"),
            (1..=before.get()).collect::<Vec<_>>()
        );
        // The read model is not at fault: it is not parked, and its lag shows the wait.
        let status = &daemon.status()[0];
        assert!(!status.state.is_parked(), "{status:?}");
        assert_eq!(status.head, head, "{status:?}");
        assert_eq!(status.lag, head.get() - before.get(), "{status:?}");

        // Not acknowledged: the broker still counts it as pending (or redelivers it).
        let stream = js.get_stream(&name).await.expect("the stream");
        let info = stream
            .consumer_info("poisoned")
            .await
            .expect("the consumer");
        assert!(
            info.ack_floor.stream_sequence < poison_sequence,
            "the poison message was acknowledged: {info:?}"
        );

        // Resume reads it again: still poison, parked again. A stale skip is refused.
        log.resume().await.expect("resumes");
        let again = wait_parked(&log).await;
        assert_eq!(again.sequence, poison_sequence);
        assert!(matches!(
            log.skip(poison_sequence + 1).await,
            Err(ConsumerError::SkipMismatch { parked_at, requested })
                if parked_at == poison_sequence && requested == poison_sequence + 1
        ));

        // Skip passes over exactly that message; the events after it arrive once.
        log.skip(poison_sequence).await.expect("skips");
        wait_for_seen(&daemon, head.get()).await;
        assert_eq!(
            daemon
                .read(|seen: &Seen| seen.0.clone())
                .expect("registered"),
            (1..=head.get()).collect::<Vec<_>>()
        );
        // Everything, the skipped message included, is acknowledged while it runs.
        wait_acknowledged(&stream, "poisoned", head.get() + 1).await;
        daemon.shutdown().await.expect("shuts down");
        log.close().await;
        let status = log.status();
        assert_eq!(status.parked, None);
        assert_eq!(status.skipped.len(), 1);
        assert_eq!(status.skipped[0].sequence, poison_sequence);

        // A read model that starts from scratch reads the stream past the recorded skip.
        let reopened = JetStreamLog::open(&js, options, models.clone())
            .await
            .expect("reopens");
        assert_eq!(reopened.status().skipped, status.skipped);
        let events = reopened
            .read_all(GlobalPosition::START, 10_000)
            .await
            .expect("reads past the skipped message");
        assert_eq!(
            events
                .iter()
                .map(|event| event.global_position.get())
                .collect::<Vec<_>>(),
            (1..=head.get()).collect::<Vec<_>>()
        );
        assert_eq!(reopened.last_position().await.expect("the head"), head);
    });
}

#[test]
fn the_consumer_rides_out_broker_restarts_without_losing_or_repeating_events() {
    // Its own server, restarted by the test (the CI server is required all the same).
    if nats_support::url().is_none() {
        return;
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let Some(mut server) = nats_support::NatsServer::start_in(directory.path()) else {
        return;
    };
    let name = unique("consumer_restart");
    let subjects = Subjects::new(format!("es.{name}")).expect("a valid prefix");
    runtime().block_on(async {
        let client = nats_support::connect(&server.url()).await;
        let js = jetstream::new(client);
        create_stream(&js, &name, &subjects).await;
        let store = InMemory::new();
        let mut workload = Workload::new(11);
        let models = InMemory::new();
        let log = JetStreamLog::open(
            &js,
            ConsumerOptions::new(name.as_str(), "restarted")
                .with_ack_wait(Duration::from_secs(2))
                .with_idle_check(Duration::from_millis(100)),
            models.clone(),
        )
        .await
        .expect("opens");
        let daemon = ProjectionDaemon::builder()
            .with(Seen::default())
            .expect("one read model")
            .with_save_interval(Duration::from_millis(20))
            .start_from(log.clone(), models.clone())
            .await
            .expect("starts");
        let mut published = GlobalPosition::START;
        for _ in 0..3 {
            append_orders(&store, &mut workload, 20).await;
            published = publish_after(&js, &subjects, &store, published).await;
            // Stopped while events may be in flight to the consumer, then back.
            server.restart();
        }
        append_orders(&store, &mut workload, 20).await;
        let head = publish_after(&js, &subjects, &store, published).await;
        wait_for_seen(&daemon, head.get()).await;
        assert_eq!(
            daemon
                .read(|seen: &Seen| seen.0.clone())
                .expect("registered"),
            (1..=head.get()).collect::<Vec<_>>()
        );
        let stream = js.get_stream(&name).await.expect("the stream");
        wait_acknowledged(&stream, "restarted", head.get()).await;
        daemon.shutdown().await.expect("shuts down");
        log.close().await;
    });
}
