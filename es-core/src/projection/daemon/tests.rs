//! The daemon on the in-memory store: delivery, failure isolation (retry, park, resume, skip),
//! shutdown and restart, read-your-writes waits. The durable stores run the same scenarios in
//! the root package's `daemon` suite.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::projection::ProjectionRegistry;
use crate::repository::RetryPolicy;
use crate::store::{ExpectedVersion, InMemory};
use crate::types::StreamId;

const WAIT: Duration = Duration::from_secs(30);

/// Fault injection and counters for one test's `Flaky` read model, found by test name (the
/// read model is restored from bytes during recovery, so it cannot hold the probe itself).
#[derive(Default)]
struct Probe {
    /// The position `Flaky` fails on (0: none).
    fail_at: AtomicU64,
    /// Whether it changes its state before failing (a read model breaking the contract).
    partial: AtomicBool,
    /// Whether it panics instead of returning an error.
    panic: AtomicBool,
    /// How many times it was asked to apply the failing event.
    attempts: AtomicU32,
}

static PROBES: LazyLock<Mutex<HashMap<String, Arc<Probe>>>> = LazyLock::new(Mutex::default);

fn probe(test: &str) -> Arc<Probe> {
    Arc::clone(PROBES.lock().unwrap().entry(test.to_owned()).or_default())
}

/// Every position it has applied, in order: duplicates and gaps show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Flaky {
    test: String,
    seen: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("flaky read model refuses position {0}")]
struct Refused(u64);

impl Projection for Flaky {
    const NAME: &'static str = "flaky";
    type Error = Refused;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Refused> {
        let position = event.global_position.get();
        let probe = probe(&self.test);
        if probe.fail_at.load(Ordering::SeqCst) == position {
            probe.attempts.fetch_add(1, Ordering::SeqCst);
            if probe.partial.load(Ordering::SeqCst) {
                self.seen.push(position);
            }
            assert!(
                !probe.panic.load(Ordering::SeqCst),
                "flaky read model panics on {position}"
            );
            return Err(Refused(position));
        }
        self.seen.push(position);
        Ok(())
    }

    fn reset(&mut self) {
        self.seen.clear();
    }
}

/// Counts events per stream; never fails.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Steady {
    pub(super) seen: Vec<u64>,
}

impl Projection for Steady {
    const NAME: &'static str = "steady";
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        self.seen.push(event.global_position.get());
        Ok(())
    }

    fn reset(&mut self) {
        self.seen.clear();
    }
}

fn event(kind: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: kind.into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"null".to_vec(),
        metadata: Metadata::default(),
    }
}

/// Appends `count` single-event batches to stream `id`; the last position.
pub(super) async fn append(store: &InMemory, id: &str, count: usize) -> GlobalPosition {
    let stream = StreamId::new("thing", id);
    let mut last = GlobalPosition::START;
    for _ in 0..count {
        last = store
            .append(&stream, ExpectedVersion::Any, vec![event("Happened")])
            .await
            .unwrap()
            .position;
    }
    last
}

fn flaky(test: &str) -> Flaky {
    Flaky {
        test: test.to_owned(),
        seen: Vec::new(),
    }
}

fn builder(test: &str) -> DaemonBuilder {
    ProjectionDaemon::builder()
        .with(Steady::default())
        .unwrap()
        .with(flaky(test))
        .unwrap()
        .with_retry(
            RetryPolicy::attempts(3)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(4)),
        )
        .with_save_interval(Duration::from_millis(20))
}

pub(super) fn all(to: u64) -> Vec<u64> {
    (1..=to).collect()
}

/// Waits until `name`'s state satisfies `done` (the daemon moves on its own task).
async fn wait_state(
    daemon: &ProjectionDaemon,
    name: &str,
    done: impl Fn(&ModelState) -> bool,
) -> ReadModelStatus {
    let mut updates = daemon.client().updates();
    tokio::time::timeout(WAIT, async {
        loop {
            let status = daemon
                .status()
                .into_iter()
                .find(|status| status.name == name)
                .unwrap();
            if done(&status.state) {
                return status;
            }
            updates.changed().await.unwrap();
        }
    })
    .await
    .expect("the state was not reached")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_applies_new_events_and_wait_for_reads_your_writes() {
    let store = InMemory::new();
    append(&store, "a", 3).await;
    let daemon = builder("live").start(store.clone()).await.unwrap();
    daemon.wait_for(GlobalPosition(3), WAIT).await.unwrap();
    let written = append(&store, "b", 4).await;
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|steady: &Steady| steady.seen.clone()).unwrap(),
        all(7)
    );
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(7)
    );
    let status = daemon.status();
    assert!(status.iter().all(|status| status.checkpoint == written));
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_read_model_is_retried_then_parked_while_the_others_go_on() {
    let test = "park";
    let probe = probe(test);
    probe.fail_at.store(4, Ordering::SeqCst);
    let store = InMemory::new();
    let daemon = builder(test).start(store.clone()).await.unwrap();
    let written = append(&store, "a", 9).await;

    // The healthy read model is not held up.
    daemon
        .client()
        .wait_for_model::<Steady>(written, WAIT)
        .await
        .unwrap();
    let status = wait_state(&daemon, Flaky::NAME, ModelState::is_parked).await;
    let parked = status.state.parked().unwrap().clone();
    assert_eq!(parked.position, GlobalPosition(4));
    assert_eq!(parked.event_type, "Happened");
    assert_eq!(parked.attempts, 3);
    assert!(
        parked.error.contains("refuses position 4"),
        "{}",
        parked.error
    );
    assert_eq!(status.checkpoint, GlobalPosition(3));
    assert_eq!(
        probe.attempts.load(Ordering::SeqCst),
        3,
        "tried 3 times in all"
    );
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(3)
    );

    // Waiting for everything stops at once on the parked read model.
    let error = daemon.wait_for(written, WAIT).await.unwrap_err();
    assert!(
        matches!(
            error,
            DaemonError::Parked {
                projection: "flaky",
                position: GlobalPosition(4),
                ..
            }
        ),
        "{error:?}"
    );

    // Nothing is retried after parking.
    append(&store, "a", 1).await;
    daemon
        .client()
        .wait_for_model::<Steady>(GlobalPosition(10), WAIT)
        .await
        .unwrap();
    assert_eq!(probe.attempts.load(Ordering::SeqCst), 3);

    // Another process sees it parked in the store.
    let saved = builder(test).saved_status(&store).await.unwrap();
    let saved_flaky = saved.iter().find(|status| status.name == "flaky").unwrap();
    assert_eq!(saved_flaky.state.parked(), Some(&parked));
    assert_eq!(saved_flaky.checkpoint, GlobalPosition(3));
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_fix_applies_the_failed_event_once_even_after_a_partial_change() {
    let test = "resume";
    let probe = probe(test);
    probe.fail_at.store(5, Ordering::SeqCst);
    // The read model changes its state before failing: the daemon must undo that.
    probe.partial.store(true, Ordering::SeqCst);
    let store = InMemory::new();
    let daemon = builder(test).start(store.clone()).await.unwrap();
    append(&store, "a", 8).await;
    wait_state(&daemon, Flaky::NAME, ModelState::is_parked).await;
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(4)
    );

    // Resuming a read model that is not parked is refused.
    assert!(matches!(
        daemon.resume(Steady::NAME).await,
        Err(DaemonError::NotParked {
            projection: "steady"
        })
    ));
    assert!(matches!(
        daemon.resume("nope").await,
        Err(DaemonError::NotRegistered { .. })
    ));

    // The fix: the event no longer fails.
    probe.fail_at.store(0, Ordering::SeqCst);
    daemon.resume(Flaky::NAME).await.unwrap();
    let written = append(&store, "b", 3).await;
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(11)
    );
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_succeeds_without_parking_when_the_fault_clears() {
    let test = "transient";
    let probe = probe(test);
    probe.fail_at.store(2, Ordering::SeqCst);
    probe.partial.store(true, Ordering::SeqCst);
    let store = InMemory::new();
    let daemon = ProjectionDaemon::builder()
        .with(flaky(test))
        .unwrap()
        .with_retry(
            RetryPolicy::attempts(1_000)
                .with_backoff(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .start(store.clone())
        .await
        .unwrap();
    let written = append(&store, "a", 5).await;
    wait_state(
        &daemon,
        Flaky::NAME,
        |state| matches!(state, ModelState::Retrying { failures, .. } if *failures >= 2),
    )
    .await;
    probe.fail_at.store(0, Ordering::SeqCst);
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(5)
    );
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_passes_over_exactly_the_parked_event_and_records_it() {
    let test = "skip";
    let probe = probe(test);
    probe.fail_at.store(6, Ordering::SeqCst);
    probe.panic.store(true, Ordering::SeqCst);
    let store = InMemory::new();
    let daemon = builder(test).start(store.clone()).await.unwrap();
    let written = append(&store, "a", 9).await;
    let status = wait_state(&daemon, Flaky::NAME, ModelState::is_parked).await;
    let parked = status.state.parked().unwrap().clone();
    assert!(parked.error.contains("panics on 6"), "{}", parked.error);

    // The wrong position is refused: a stale command never skips another event.
    assert!(matches!(
        daemon.skip(Flaky::NAME, GlobalPosition(7)).await,
        Err(DaemonError::SkipMismatch {
            parked_at: GlobalPosition(6),
            ..
        })
    ));
    assert!(matches!(
        daemon.skip(Steady::NAME, GlobalPosition(6)).await,
        Err(DaemonError::NotParked { .. })
    ));
    daemon.skip(Flaky::NAME, GlobalPosition(6)).await.unwrap();
    daemon.wait_for(written, WAIT).await.unwrap();
    let mut expected = all(9);
    expected.retain(|&position| position != 6);
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        expected
    );
    assert_eq!(
        probe.attempts.load(Ordering::SeqCst),
        3,
        "the skipped event is not tried again"
    );

    let status = daemon.status();
    let skipped = &status.iter().find(|s| s.name == "flaky").unwrap().skipped;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].position, GlobalPosition(6));
    assert!(skipped[0].error.contains("panics on 6"));
    daemon.shutdown().await.unwrap();

    // Recorded durably, and the read model is no longer parked.
    let saved = builder(test).saved_status(&store).await.unwrap();
    let saved_flaky = saved.iter().find(|status| status.name == "flaky").unwrap();
    assert_eq!(saved_flaky.skipped.len(), 1);
    assert_eq!(saved_flaky.state, ModelState::Stopped);
    assert_eq!(saved_flaky.checkpoint, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_saves_checkpoints_and_a_restart_goes_on_without_duplicates_or_gaps() {
    let store = InMemory::new();
    let daemon = builder("restart").start(store.clone()).await.unwrap();
    let first = append(&store, "a", 20).await;
    daemon.wait_for(first, WAIT).await.unwrap();
    daemon.shutdown().await.unwrap();
    for status in builder("restart").saved_status(&store).await.unwrap() {
        assert_eq!(status.checkpoint, first, "{}", status.name);
        assert_eq!(status.state, ModelState::Stopped);
    }

    // Events written while no daemon runs, then a fresh process restores and goes on.
    append(&store, "b", 15).await;
    let daemon = builder("restart").start(store.clone()).await.unwrap();
    let last = append(&store, "c", 5).await;
    daemon.wait_for(last, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|steady: &Steady| steady.seen.clone()).unwrap(),
        all(40)
    );
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(40)
    );
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_at_different_checkpoints_each_see_every_event_once() {
    let store = InMemory::new();
    // Only `steady` runs first.
    let daemon = ProjectionDaemon::builder()
        .with(Steady::default())
        .unwrap()
        .start(store.clone())
        .await
        .unwrap();
    let first = append(&store, "a", 30).await;
    daemon.wait_for(first, WAIT).await.unwrap();
    daemon.shutdown().await.unwrap();

    // `flaky` joins at the start of the log, `steady` goes on from 30.
    let daemon = builder("join").start(store.clone()).await.unwrap();
    let last = append(&store, "b", 10).await;
    daemon.wait_for(last, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|steady: &Steady| steady.seen.clone()).unwrap(),
        all(40)
    );
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(40)
    );
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_read_model_stays_parked_across_a_restart_until_resumed() {
    let test = "parked-restart";
    let probe = probe(test);
    probe.fail_at.store(3, Ordering::SeqCst);
    let store = InMemory::new();
    let daemon = builder(test).start(store.clone()).await.unwrap();
    append(&store, "a", 6).await;
    wait_state(&daemon, Flaky::NAME, ModelState::is_parked).await;
    daemon.shutdown().await.unwrap();

    let daemon = builder(test).start(store.clone()).await.unwrap();
    let written = append(&store, "a", 2).await;
    daemon
        .client()
        .wait_for_model::<Steady>(written, WAIT)
        .await
        .unwrap();
    let flaky_status = daemon
        .status()
        .into_iter()
        .find(|s| s.name == "flaky")
        .unwrap();
    assert_eq!(flaky_status.checkpoint, GlobalPosition(2));
    assert_eq!(
        flaky_status.state.parked().map(|parked| parked.position),
        Some(GlobalPosition(3))
    );
    assert_eq!(
        probe.attempts.load(Ordering::SeqCst),
        3,
        "not retried on restart"
    );

    probe.fail_at.store(0, Ordering::SeqCst);
    daemon.resume(Flaky::NAME).await.unwrap();
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(8)
    );
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_wait_at_once_and_a_wait_for_a_position_never_written_times_out() {
    let store = InMemory::new();
    let daemon = builder("waiters").start(store.clone()).await.unwrap();
    let client = daemon.client();
    let waiters: Vec<_> = (1..=64u64)
        .map(|position| {
            let client = client.clone();
            tokio::spawn(async move {
                client.wait_for(GlobalPosition(position), WAIT).await?;
                // Read-your-writes: the read model holds at least that position.
                let seen = client.read(|steady: &Steady| steady.seen.len())?;
                Ok::<_, DaemonError>(seen)
            })
        })
        .collect();
    let appenders: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move { append(&store, &format!("w{writer}"), 16).await })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
    for (position, waiter) in (1..=64).zip(waiters) {
        let seen = waiter.await.unwrap().unwrap();
        assert!(seen >= position, "waited for {position}, read {seen}");
    }

    let error = client
        .wait_for(GlobalPosition(1_000), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DaemonError::Timeout {
                requested: GlobalPosition(1_000),
                reached: GlobalPosition(64),
                ..
            }
        ),
        "{error:?}"
    );
    daemon.shutdown().await.unwrap();
    // After shutdown a wait ends at once.
    assert!(matches!(
        client.wait_for(GlobalPosition(1_000), WAIT).await,
        Err(DaemonError::Stopped)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_equal_a_rebuild_after_concurrent_writers() {
    let store = InMemory::new();
    let daemon = builder("rebuild").start(store.clone()).await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move { append(&store, &format!("w{writer}"), 40).await })
        })
        .collect();
    let mut last = GlobalPosition::START;
    for writer in writers {
        last = last.max(writer.await.unwrap());
    }
    daemon.wait_for(last, WAIT).await.unwrap();
    let (steady, _) = daemon.client().snapshot::<Steady>().unwrap();
    let (flaky_model, _) = daemon.client().snapshot::<Flaky>().unwrap();
    daemon.shutdown().await.unwrap();

    let mut registry = ProjectionRegistry::new()
        .with(Steady::default())
        .unwrap()
        .with(flaky("rebuild"))
        .unwrap();
    registry.rebuild(&store).await.unwrap();
    assert_eq!(registry.get::<Steady>(), Some(&steady));
    assert_eq!(registry.get::<Flaky>(), Some(&flaky_model));
    assert_eq!(steady.seen, all(320));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_past_the_end_of_the_log_is_refused_at_start() {
    let store = InMemory::new();
    let other = InMemory::new();
    append(&other, "a", 5).await;
    let daemon = ProjectionDaemon::builder()
        .with(Steady::default())
        .unwrap()
        .start(other.clone())
        .await
        .unwrap();
    daemon.wait_for(GlobalPosition(5), WAIT).await.unwrap();
    daemon.shutdown().await.unwrap();
    let saved = other.load_projection(Steady::NAME).await.unwrap().unwrap();
    store.save_projection(saved).await.unwrap();

    let error = ProjectionDaemon::builder()
        .with(Steady::default())
        .unwrap()
        .start(store)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProjectionError::CheckpointAhead {
                projection: "steady",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_read_model_is_registered_once() {
    let error = ProjectionDaemon::builder()
        .with(Steady::default())
        .unwrap()
        .with(Steady::default())
        .unwrap_err();
    assert_eq!(error.name, "steady");
}

/// A store's log as a separate source that records every `saved` report, and checks each
/// against what the read models have durably saved at that moment.
struct Reporting {
    log: StoreLog<InMemory>,
    reports: Arc<Mutex<Vec<GlobalPosition>>>,
}

impl LogSource for Reporting {
    type Feed = crate::subscription::Subscription;

    fn feed(&self, after: GlobalPosition, page_size: usize) -> Self::Feed {
        self.log.feed(after, page_size)
    }

    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<RecordedEvent>, crate::StoreError>> + Send
    {
        self.log.read_all(after, limit)
    }

    fn last_position(
        &self,
    ) -> impl std::future::Future<Output = Result<GlobalPosition, crate::StoreError>> + Send {
        self.log.last_position()
    }

    fn saved(&self, position: GlobalPosition) {
        self.reports.lock().unwrap().push(position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_log_source_feeds_the_daemon_and_hears_only_durably_saved_positions() {
    let test = "source";
    let probe = probe(test);
    probe.fail_at.store(4, Ordering::SeqCst);
    // The log in one store, the read models in another: nothing of one leaks into the other.
    let log = InMemory::new();
    let models = InMemory::new();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let source = Reporting {
        log: StoreLog(log.clone()),
        reports: Arc::clone(&reports),
    };
    let daemon = builder(test)
        .start_from(source, models.clone())
        .await
        .unwrap();
    let written = append(&log, "a", 9).await;
    daemon
        .client()
        .wait_for_model::<Steady>(written, WAIT)
        .await
        .unwrap();
    wait_state(&daemon, Flaky::NAME, ModelState::is_parked).await;
    // Wait until a save interval has reported the healthy read model's position: the parked
    // one, which reads the log on its own once resumed, does not hold the report back.
    tokio::time::timeout(WAIT, async {
        while reports.lock().unwrap().last() != Some(&written) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the saved position was never reported");
    let saved = models.load_projection(Steady::NAME).await.unwrap().unwrap();
    assert!(saved.position >= written);
    {
        let reports = reports.lock().unwrap();
        assert!(
            reports.windows(2).all(|pair| pair[0] <= pair[1]),
            "reports never go back: {reports:?}"
        );
    }
    assert!(log.load_projection(Steady::NAME).await.unwrap().is_none());

    // Resumed, the parked read model catches up from the source, not from the model store.
    probe.fail_at.store(0, Ordering::SeqCst);
    daemon.resume(Flaky::NAME).await.unwrap();
    daemon.wait_for(written, WAIT).await.unwrap();
    assert_eq!(
        daemon.read(|flaky: &Flaky| flaky.seen.clone()).unwrap(),
        all(9)
    );
    daemon.shutdown().await.unwrap();
    assert_eq!(reports.lock().unwrap().last(), Some(&written));
}
