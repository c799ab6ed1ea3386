//! The relay to NATS JetStream against a real `nats-server`: every committed event exactly
//! once and in global-position order in the stream, through relay SIGKILLs, broker restarts
//! and a broker that is unreachable for a while; and the stream checks that stop it.
//!
//! The crash test's relay is a child process: this same test binary, started with the test's
//! name and an environment variable that switches the test into the child's role.

mod nats_support;
mod sqlite_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use es_core::store::sqlite::{Sqlite, SqliteOptions};
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata, NewEvent,
    RecordedEvent, StreamId,
};
use es_nats::envelope::Subjects;
use es_nats::relay::{Relay, RelayError, RelayLease, RelayOptions, RelayState, RelayStatus};
use nats_support::NatsServer;
use sqlite_support::Rng;
use tokio::sync::watch;
use uuid::Uuid;

/// Set in the relay child: the SQLite store to publish.
const CHILD_STORE: &str = "ES_NATS_RELAY_CHILD_STORE";
/// Set in the relay child: the broker URL.
const CHILD_URL: &str = "ES_NATS_RELAY_CHILD_URL";

/// The stream of the crash test.
const CRASH_STREAM: &str = "RELAY_CRASH";
/// Events the crash test appends.
const CRASH_EVENTS: u64 = 50_000;
/// Concurrent writers in the crash test.
const WRITERS: u64 = 4;
/// Relay SIGKILLs during the crash test.
const RELAY_KILLS: usize = 20;
/// Broker restarts during the crash test, at these kill rounds.
const BROKER_RESTARTS_AT: [usize; 3] = [4, 10, 16];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Short timeouts and backoff, so a broker restart costs the test little time.
fn quick_options(stream: &str) -> RelayOptions {
    RelayOptions::new()
        .with_stream_name(stream)
        .with_subjects(Subjects::new(format!("test.{}", stream.to_lowercase())).expect("a prefix"))
        .with_request_timeout(Duration::from_secs(1))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .with_head_refresh(Duration::from_millis(100))
}

/// Event `index` of a test log: a JSON payload naming it, metadata on every third.
// Fields are filled with `.into()` so this compiles whether the event model holds
// `String`/`Vec<u8>` or shared types.
#[allow(clippy::useless_conversion)]
fn event(index: u64) -> NewEvent {
    let mut metadata = Metadata::default();
    if index.is_multiple_of(3) {
        metadata = metadata
            .with_correlation_id(Uuid::from_u128(u128::from(index)))
            .with("index", index.to_string());
    }
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: if index.is_multiple_of(2) {
            "Even"
        } else {
            "Odd"
        }
        .into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: format!("{{\"index\":{index}}}").into_bytes().into(),
        metadata,
    }
}

/// Appends events `from..to` in batches of one to `max_batch` events over `streams` streams.
async fn append_range<S: EventStore>(
    store: &S,
    (from, to): (u64, u64),
    max_batch: u64,
    streams: u64,
    pause: Duration,
) {
    let mut next = from;
    while next < to {
        let size = (next % max_batch + 1).min(to - next);
        let stream = StreamId::new("order", (next % streams).to_string());
        let batch = (next..next + size).map(event).collect();
        store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .expect("the append commits");
        next += size;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Every event of the store's log, in position order.
async fn whole_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut log = Vec::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store.read_all(after, 1_000).await.expect("the log reads");
        let Some(last) = page.last() else {
            return log;
        };
        after = last.global_position;
        log.extend(page);
    }
}

/// Checks that the stream holds the store's log: each event once, in position order, every
/// envelope field and the payload as stored, at consecutive sequences from 1.
async fn assert_stream_is_the_log<S: EventStore>(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
    store: &S,
) -> usize {
    let mut handle = jetstream
        .get_stream(stream)
        .await
        .expect("the stream exists");
    let published = nats_support::read_stream(&mut handle).await;
    let log = whole_log(store).await;
    assert_eq!(
        published.len(),
        log.len(),
        "the stream holds {} messages for {} events",
        published.len(),
        log.len()
    );
    for (index, ((sequence, published), stored)) in published.iter().zip(&log).enumerate() {
        assert_eq!(*sequence, index as u64 + 1, "stream sequences have no gap");
        assert_eq!(
            published, stored,
            "message {sequence} is not the store's event at index {index}"
        );
    }
    log.len()
}

/// Whether the status meets `condition` within two minutes (a guard against a hang, not a
/// timing claim).
async fn reaches(
    status: &mut watch::Receiver<RelayStatus>,
    condition: impl FnMut(&RelayStatus) -> bool,
) -> bool {
    tokio::time::timeout(Duration::from_mins(2), status.wait_for(condition))
        .await
        .is_ok_and(|seen| seen.is_ok())
}

/// Waits until the relay has published `position`.
async fn published(status: &mut watch::Receiver<RelayStatus>, position: GlobalPosition) {
    let waited = reaches(status, |status| status.published >= position).await;
    let status = status.borrow().clone();
    assert!(
        waited,
        "the relay did not publish up to {position}: {status:?}"
    );
}

/// A child process killed with SIGKILL when dropped.
struct Killed(Child);

impl Killed {
    fn kill(mut self) {
        self.0.kill().expect("the relay is killed");
        let status = self.0.wait().expect("the relay is reaped");
        assert_eq!(
            status.signal(),
            Some(9),
            "the relay ran until killed ({status})"
        );
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn relay_publishes_each_event_once_in_order_through_kills_and_broker_restarts() {
    let name = "relay_publishes_each_event_once_in_order_through_kills_and_broker_restarts";
    if let (Ok(path), Ok(url)) = (std::env::var(CHILD_STORE), std::env::var(CHILD_URL)) {
        relay_child(Path::new(&path), &url);
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let Some(mut server) = NatsServer::start_in(directory.path()) else {
        return;
    };
    let path = directory.path().join("store.sqlite");
    let runtime = runtime();
    let store = runtime.block_on(async { Sqlite::open(&path).await.expect("the store opens") });
    let url = server.url();
    let spawn_relay = || {
        Killed(
            Command::new(std::env::current_exe().expect("this test binary"))
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(CHILD_STORE, &path)
                .env(CHILD_URL, &url)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the relay starts"),
        )
    };

    // Writers append all the while (several at once, so appends also commit in groups),
    // paced so that the kills and restarts land during the writing.
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let share = CRASH_EVENTS / WRITERS;
            let range = (writer * share, (writer + 1) * share);
            runtime.spawn(async move {
                append_range(&store, range, 19, 500, Duration::from_millis(5)).await;
            })
        })
        .collect();
    let mut rng = Rng::from_entropy(name);
    let started = Instant::now();
    let jetstream =
        runtime.block_on(async { nats_support::jetstream(nats_support::connect(&url).await) });
    let mut stream_grew = 0;
    let mut last_messages = 0;
    for round in 0..RELAY_KILLS {
        let relay = spawn_relay();
        std::thread::sleep(Duration::from_millis(rng.between(100, 1_200)));
        if BROKER_RESTARTS_AT.contains(&round) {
            server.restart();
            std::thread::sleep(Duration::from_millis(rng.between(50, 600)));
        }
        relay.kill();
        let messages = runtime.block_on(async {
            match jetstream.get_stream(CRASH_STREAM).await {
                Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
                Err(_) => 0,
            }
        });
        if messages > last_messages {
            stream_grew += 1;
        }
        last_messages = last_messages.max(messages);
    }
    let kills_done = started.elapsed();
    for writer in writers {
        runtime
            .block_on(writer)
            .expect("the writer appended its share");
    }
    let written = started.elapsed();

    // A last relay catches up with the whole log.
    let relay = spawn_relay();
    let head = runtime.block_on(store.last_position()).expect("the head");
    runtime.block_on(stream_reaches(&jetstream, CRASH_STREAM, head));
    relay.kill();
    let caught_up = started.elapsed();

    let events = runtime.block_on(assert_stream_is_the_log(&jetstream, CRASH_STREAM, &store));
    assert_eq!(events as u64, CRASH_EVENTS);
    assert!(
        stream_grew >= RELAY_KILLS / 2,
        "the killed relays published between kills ({stream_grew} of {RELAY_KILLS} rounds did)"
    );
    eprintln!(
        "{RELAY_KILLS} relay kills, {} broker restarts: {events} events in the stream, \
         {stream_grew} rounds published, {last_messages} before the last relay; kills done \
         after {kills_done:?}, log written after {written:?}, caught up after {caught_up:?}, \
         checked after {:?}",
        BROKER_RESTARTS_AT.len(),
        started.elapsed()
    );
}

/// Waits until the stream's last message is the event at `head` (a guard against a hang, not
/// a timing claim).
async fn stream_reaches(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    head: GlobalPosition,
) {
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let stream_end = async {
            let mut stream = jetstream.get_stream(name).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            let message = stream.get_raw_message(last).await.ok()?;
            es_nats::envelope::global_position(&message.headers).ok()
        }
        .await;
        if stream_end == Some(head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the last relay did not catch up to {head} (stream ends at {stream_end:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The relay child: publishes the store at `path` until killed.
fn relay_child(path: &Path, url: &str) -> ! {
    let runtime = runtime();
    runtime.block_on(async {
        let options = SqliteOptions::default().with_change_check_interval(Duration::from_millis(5));
        let store = Sqlite::open_with(path, options)
            .await
            .expect("the relay opens the store");
        let client = nats_support::connect(url).await;
        let relay = Relay::new(store, client, quick_options(CRASH_STREAM));
        let error = relay
            .run_until(std::future::pending())
            .await
            .expect_err("the relay runs until killed");
        panic!("the relay stopped: {error}");
    })
}

#[test]
fn relay_skips_nothing_while_the_broker_is_unreachable() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let Some(mut server) = NatsServer::start_in(directory.path()) else {
        return;
    };
    let runtime = runtime();
    let store = InMemory::new();
    let client = runtime.block_on(nats_support::connect(&server.url()));
    let _runtime = runtime.enter();
    let relay = Relay::new(store.clone(), client.clone(), quick_options("OUTAGE"));
    let mut status = relay.status();
    let running = runtime.spawn(async move { relay.run_until(std::future::pending()).await });

    runtime.block_on(async {
        append_range(&store, (0, 1_000), 7, 50, Duration::ZERO).await;
        published(&mut status, store.last_position().await.unwrap()).await;
    });

    server.stop();
    runtime.block_on(async {
        append_range(&store, (1_000, 2_000), 7, 50, Duration::ZERO).await;
        // The relay notices: its publishes time out and it backs off.
        let noticed = reaches(&mut status, |status| {
            matches!(status.state, RelayState::Retrying { .. }) && status.last_error.is_some()
        })
        .await;
        assert!(
            noticed,
            "the relay noticed the outage: {:?}",
            status.borrow()
        );
        // Unreachable for a while: several attempts fail.
        let retried = reaches(
            &mut status,
            |status| matches!(status.state, RelayState::Retrying { attempt, .. } if attempt >= 3),
        )
        .await;
        assert!(retried, "the relay kept retrying: {:?}", status.borrow());
    });
    let during_outage = status.borrow().published;
    assert!(during_outage < GlobalPosition(2_000));

    server.start();
    runtime.block_on(async {
        published(&mut status, store.last_position().await.unwrap()).await;
        let jetstream = nats_support::jetstream(client);
        let events = assert_stream_is_the_log(&jetstream, "OUTAGE", &store).await;
        assert_eq!(events, 2_000);
        let status = status.borrow().clone();
        assert_eq!(status.lag(), 0);
        assert!(status.restarts >= 1, "{status:?}");
        assert_eq!(status.state, RelayState::Publishing);
    });
    running.abort();
}

/// The stream name for a test on the CI server (unique per process, so re-runs never collide).
fn shared_stream(test: &str) -> String {
    format!("{test}_{}", std::process::id())
}

#[test]
fn relay_creates_the_documented_stream_and_resumes_after_its_last_message() {
    let Some(url) = nats_support::url() else {
        return;
    };
    let runtime = runtime();
    runtime.block_on(async {
        let name = shared_stream("RESUME");
        let client = nats_support::connect(&url).await;
        let jetstream = nats_support::jetstream(client.clone());
        let store = InMemory::new();
        append_range(&store, (0, 300), 7, 10, Duration::ZERO).await;

        // A first relay publishes everything and is stopped.
        let options = quick_options(&name).with_duplicate_window(Duration::from_secs(30));
        let relay = Relay::new(store.clone(), client.clone(), options.clone());
        let mut status = relay.status();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(async move {
            relay
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        published(&mut status, GlobalPosition(300)).await;
        stop.send(()).expect("the relay runs");
        first.await.unwrap().expect("a clean stop");
        assert_eq!(status.borrow().state, RelayState::Stopped);

        let mut stream = jetstream
            .get_stream(&name)
            .await
            .expect("the relay created it");
        let config = stream.info().await.expect("its info").config.clone();
        assert_eq!(config.subjects, vec![options.subjects().all()]);
        assert_eq!(config.storage, StorageType::File);
        assert_eq!(config.retention, RetentionPolicy::Limits);
        assert_eq!(config.duplicate_window, Duration::from_secs(30));
        assert!(config.deny_delete && config.deny_purge);

        // More events, then a second relay: it starts after what the stream holds.
        append_range(&store, (300, 500), 7, 10, Duration::ZERO).await;
        let relay = Relay::new(store.clone(), client.clone(), options);
        let mut status = relay.status();
        let second = tokio::spawn(async move { relay.run_until(std::future::pending()).await });
        published(&mut status, GlobalPosition(500)).await;
        assert_eq!(status.borrow().stream_sequence, 500);
        assert_eq!(
            assert_stream_is_the_log(&jetstream, &name, &store).await,
            500
        );
        second.abort();
        jetstream
            .delete_stream(&name)
            .await
            .expect("the stream is removed");
    });
}

#[test]
fn relay_refuses_a_stream_it_cannot_resume_from() {
    let Some(url) = nats_support::url() else {
        return;
    };
    let runtime = runtime();
    runtime.block_on(async {
        let client = nats_support::connect(&url).await;
        let jetstream = nats_support::jetstream(client.clone());

        // Work-queue retention removes what is consumed: the relay refuses the stream.
        let name = shared_stream("WORKQUEUE");
        let options = quick_options(&name);
        jetstream
            .create_stream(Config {
                retention: RetentionPolicy::WorkQueue,
                ..options.stream_config()
            })
            .await
            .expect("the stream is created");
        let relay = Relay::new(InMemory::new(), client.clone(), options);
        let error = relay.run_until(std::future::pending()).await.unwrap_err();
        assert!(
            matches!(error, RelayError::StreamConfig { .. }) && !error.is_recoverable(),
            "{error}"
        );
        assert_eq!(relay.status().borrow().state, RelayState::Failed);
        jetstream.delete_stream(&name).await.unwrap();

        // A stream filled from another store: its last event is not this store's.
        let name = shared_stream("FOREIGN");
        let options = quick_options(&name);
        let other = InMemory::new();
        append_range(&other, (0, 20), 7, 3, Duration::ZERO).await;
        let relay = Relay::new(other, client.clone(), options.clone());
        let mut status = relay.status();
        let running = tokio::spawn(async move { relay.run_until(std::future::pending()).await });
        published(&mut status, GlobalPosition(20)).await;
        running.abort();
        let store = InMemory::new();
        append_range(&store, (0, 30), 7, 3, Duration::ZERO).await;
        let relay = Relay::new(store.clone(), client.clone(), options.clone());
        let error = relay.run_until(std::future::pending()).await.unwrap_err();
        assert!(matches!(error, RelayError::ForeignStream { .. }), "{error}");

        // Something else publishes into the relay's stream: the relay stops at it rather than
        // publish after a message it cannot place.
        jetstream
            .publish(
                format!("{}.other.1", options.subjects().prefix()),
                "{}".into(),
            )
            .await
            .unwrap()
            .await
            .expect("the foreign message is stored");
        let error = relay.run_until(std::future::pending()).await.unwrap_err();
        assert!(matches!(error, RelayError::NotAnEnvelope { .. }), "{error}");
        jetstream.delete_stream(&name).await.unwrap();
    });
}

#[test]
fn one_relay_publishes_under_the_lease_and_another_takes_over() {
    let Some(url) = nats_support::url() else {
        return;
    };
    let runtime = runtime();
    runtime.block_on(async {
        let name = shared_stream("LEASED");
        let client = nats_support::connect(&url).await;
        let store = InMemory::new();
        append_range(&store, (0, 200), 7, 10, Duration::ZERO).await;
        let options = quick_options(&name);
        let ttl = Duration::from_millis(900);

        let first = Arc::new(Relay::new(store.clone(), client.clone(), options.clone()));
        let mut first_status = first.status();
        let (stop_first, first_stopped) = tokio::sync::oneshot::channel::<()>();
        let first_run = tokio::spawn({
            let first = Arc::clone(&first);
            async move {
                let lease = RelayLease::new("relay", "node-a", ttl);
                first
                    .run_with_lease(&lease, async {
                        let _ = first_stopped.await;
                    })
                    .await
            }
        });
        published(&mut first_status, GlobalPosition(200)).await;

        let second = Arc::new(Relay::new(store.clone(), client.clone(), options));
        let mut second_status = second.status();
        let second_run = tokio::spawn({
            let second = Arc::clone(&second);
            async move {
                let lease = RelayLease::new("relay", "node-b", ttl);
                second.run_with_lease(&lease, std::future::pending()).await
            }
        });
        assert!(
            reaches(&mut second_status, |status| status.state
                == RelayState::Standby)
            .await,
            "the second relay stands by: {:?}",
            second_status.borrow()
        );

        // While the first holds the lease, it publishes everything and the second nothing.
        append_range(&store, (200, 400), 7, 10, Duration::ZERO).await;
        published(&mut first_status, GlobalPosition(400)).await;
        assert_eq!(second_status.borrow().published, GlobalPosition::START);
        assert_eq!(second_status.borrow().state, RelayState::Standby);

        // The first stops (and releases the lease): the second takes over where it stopped.
        stop_first.send(()).expect("the first relay runs");
        first_run.await.unwrap().expect("a clean stop");
        append_range(&store, (400, 600), 7, 10, Duration::ZERO).await;
        published(&mut second_status, GlobalPosition(600)).await;
        assert_eq!(second_status.borrow().state, RelayState::Publishing);

        let jetstream = nats_support::jetstream(client);
        assert_eq!(
            assert_stream_is_the_log(&jetstream, &name, &store).await,
            600
        );
        second_run.abort();
        jetstream.delete_stream(&name).await.unwrap();
    });
}
