//! The shared catch-up: many waiters, each sees its own write; a satisfied waiter makes no
//! store call; one catch-up serves every waiter it passes; no waiter hangs past its timeout;
//! failures reach the waiters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::*;
use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::projection::registry::PROGRESS_EVERY;
use crate::projection::{InfallibleProjection, Projection};
use crate::store::{
    AppendOutcome, ExpectedVersion, InMemory, StoreError, StreamBatch, VersionRange,
};
use crate::types::{StreamId, Timestamp};

/// Every position applied, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Seen(Vec<u64>);

impl InfallibleProjection for Seen {
    const NAME: &'static str = "seen";

    fn apply(&mut self, event: &RecordedEvent) {
        self.0.push(event.global_position.get());
    }

    fn reset(&mut self) {
        self.0.clear();
    }
}

/// Fails on every event of type `Poison`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Picky;

#[derive(Debug, thiserror::Error)]
#[error("poisoned")]
struct Poisoned;

impl Projection for Picky {
    const NAME: &'static str = "picky";
    type Error = Poisoned;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Poisoned> {
        if event.event_type == "Poison" {
            return Err(Poisoned);
        }
        Ok(())
    }

    fn reset(&mut self) {}
}

// `.into()` on the payload keeps this compiling when the field becomes a shared buffer.
#[allow(clippy::useless_conversion)]
fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"{}".to_vec().into(),
        metadata: Metadata::default(),
    }
}

/// An in-memory store that counts the calls catch-ups make and can hold `read_all` until
/// released.
#[derive(Clone, Default)]
struct Probe {
    inner: InMemory,
    read_all: Arc<AtomicU64>,
    last_position: Arc<AtomicU64>,
    stall: Arc<AtomicBool>,
    /// The one `read_all` call (counting from 1) that stalls until released; 0: none.
    stall_at: Arc<AtomicU64>,
    released: Arc<Notify>,
}

impl Probe {
    fn store_calls(&self) -> u64 {
        self.read_all.load(Ordering::SeqCst) + self.last_position.load(Ordering::SeqCst)
    }

    async fn write(&self, stream: &str, event_type: &str) -> AppendOutcome {
        self.inner
            .append(
                &StreamId::new("test", stream),
                ExpectedVersion::Any,
                vec![event(event_type)],
            )
            .await
            .unwrap()
    }
}

impl EventStore for Probe {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.append_streams(batches).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let call = self.read_all.fetch_add(1, Ordering::SeqCst) + 1;
        if self.stall.load(Ordering::SeqCst) || call == self.stall_at.load(Ordering::SeqCst) {
            self.released.notified().await;
        }
        self.inner.read_all(after, limit).await
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.last_position.fetch_add(1, Ordering::SeqCst);
        self.inner.last_position().await
    }
}

fn share(store: &Probe, timeout: Duration) -> SharedRegistry<Probe> {
    let registry = ProjectionRegistry::new()
        .with(Seen::default())
        .unwrap()
        .with_page_size(4)
        .with_wait_timeout(timeout);
    SharedRegistry::new(registry, store.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_waiters_each_see_their_own_write() {
    const WRITERS: u64 = 48;
    let store = Probe::default();
    let shared = share(&store, Duration::from_secs(30));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, shared) = (store.clone(), shared.clone());
        writers.spawn(async move {
            let mut positions = Vec::new();
            for _ in 0..5 {
                let written = store.write(&writer.to_string(), "Counted").await;
                let reached = shared.wait_for(written.position).await.unwrap();
                assert!(reached >= written.position);
                let seen = shared
                    .read(|registry| registry.get::<Seen>().unwrap().0.clone())
                    .await;
                assert!(
                    seen.contains(&written.position.get()),
                    "writer {writer} does not see its own write at {}",
                    written.position
                );
                positions.push(written.position.get());
            }
            positions
        });
    }
    let mut written = Vec::new();
    while let Some(positions) = writers.join_next().await {
        written.extend(positions.unwrap());
    }
    written.sort_unstable();
    let seen = shared
        .read(|registry| registry.get::<Seen>().unwrap().0.clone())
        .await;
    assert_eq!(seen, written, "every event applied once, in order");
}

#[tokio::test]
async fn a_waiter_already_served_makes_no_store_call() {
    let store = Probe::default();
    let shared = share(&store, Duration::from_secs(5));
    let first = store.write("a", "Counted").await;
    let last = (0..9)
        .map(|_| store.write("b", "Counted"))
        .collect::<Vec<_>>();
    let mut outcomes = Vec::new();
    for write in last {
        outcomes.push(write.await);
    }
    // One catch-up for the last write passes every earlier one.
    let newest = outcomes.last().unwrap().position;
    shared.wait_for(newest).await.unwrap();
    let calls = store.store_calls();
    assert!(calls > 0);
    shared.wait_for(first.position).await.unwrap();
    for outcome in &outcomes {
        assert!(shared.wait_for(outcome.position).await.unwrap() >= outcome.position);
    }
    assert_eq!(store.store_calls(), calls, "served waiters read nothing");
    assert_eq!(shared.position(), newest);
}

#[tokio::test]
async fn later_catch_ups_read_pages_only() {
    let store = Probe::default();
    let shared = share(&store, Duration::from_secs(5));
    let first = store.write("a", "Counted").await;
    shared.wait_for(first.position).await.unwrap();
    // The first catch-up checks the checkpoints against the end of the log ...
    assert_eq!(store.last_position.load(Ordering::SeqCst), 1);
    let second = store.write("a", "Counted").await;
    let reads = store.read_all.load(Ordering::SeqCst);
    shared.wait_for(second.position).await.unwrap();
    // ... the next ones read one short page and nothing else.
    assert_eq!(store.last_position.load(Ordering::SeqCst), 1);
    assert_eq!(store.read_all.load(Ordering::SeqCst), reads + 1);
    // More events than a page: pages until a short one.
    let mut last = second;
    for _ in 0..9 {
        last = store.write("a", "Counted").await;
    }
    let reads = store.read_all.load(Ordering::SeqCst);
    shared.wait_for(last.position).await.unwrap();
    assert_eq!(
        store.read_all.load(Ordering::SeqCst),
        reads + 3,
        "pages of 4, 4, 1"
    );
    let seen = shared
        .read(|registry| registry.get::<Seen>().unwrap().0.clone())
        .await;
    assert_eq!(seen, (1..=11).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_waiter_hangs_past_its_timeout() {
    // A position the log never shows.
    let store = Probe::default();
    let shared = share(&store, Duration::from_millis(100));
    store.write("a", "Counted").await;
    let error = shared.wait_for(GlobalPosition(1_000)).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProjectionError::PositionNotReached { requested, reached, .. }
                if requested == GlobalPosition(1_000) && reached == GlobalPosition(1)
        ),
        "{error:?}"
    );

    // A catch-up stuck in the store: the waiter running it and those queued behind it all
    // give up at their timeout.
    let store = Probe::default();
    let shared = share(&store, Duration::from_millis(200));
    let written = store.write("a", "Counted").await;
    store.stall.store(true, Ordering::SeqCst);
    let waiters: Vec<_> = (0..6)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.wait_for(written.position).await })
        })
        .collect();
    for waiter in waiters {
        let outcome = waiter.await.unwrap();
        assert!(
            matches!(outcome, Err(ProjectionError::PositionNotReached { .. })),
            "{outcome:?}"
        );
    }
    // Released, the registry serves the next wait.
    store.stall.store(false, Ordering::SeqCst);
    store.released.notify_waiters();
    assert_eq!(
        shared.wait_for(written.position).await.unwrap(),
        written.position
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_catch_up_reaches_every_waiter_behind_it() {
    let store = Probe::default();
    let registry = ProjectionRegistry::new()
        .with(Seen::default())
        .unwrap()
        .with(Picky)
        .unwrap()
        .with_wait_timeout(Duration::from_secs(5));
    let shared = SharedRegistry::new(registry, store.clone());
    let fine = store.write("a", "Counted").await;
    shared.wait_for(fine.position).await.unwrap();
    let poison = store.write("a", "Poison").await;
    let after = store.write("b", "Counted").await;
    let waiters: Vec<_> = [poison.position, after.position, after.position]
        .into_iter()
        .map(|position| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.wait_for(position).await })
        })
        .collect();
    for waiter in waiters {
        let outcome = waiter.await.unwrap();
        assert!(
            matches!(
                &outcome,
                Err(ProjectionError::Apply { projection: "picky", position, .. })
                    if *position == poison.position
            ),
            "{outcome:?}"
        );
    }
    // Nothing moved past the failing event; a waiter for an earlier position is served.
    assert_eq!(shared.position(), fine.position);
    assert_eq!(shared.wait_for(fine.position).await.unwrap(), fine.position);
}

#[tokio::test]
async fn an_empty_registry_never_waits() {
    let store = Probe::default();
    let shared = SharedRegistry::new(ProjectionRegistry::new(), store.clone());
    assert_eq!(
        shared.wait_for(GlobalPosition(10)).await.unwrap(),
        GlobalPosition::START
    );
    assert_eq!(store.store_calls(), 0);
}

/// Waiters that find the registry held by a reader sleep, and the reader's release wakes them:
/// none of them runs into its (long) timeout, and each catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_sleeping_behind_a_reader_wake_when_it_lets_go() {
    const WAITERS: u64 = 8;
    let store = Probe::default();
    let shared = share(&store, Duration::from_secs(60));
    let (held, release) = (Arc::new(Notify::new()), Arc::new(AtomicBool::new(false)));
    let reader = {
        let (shared, held, release) = (shared.clone(), held.clone(), release.clone());
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(shared.read(|_| {
                held.notify_one();
                while !release.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        })
    };
    held.notified().await;
    let mut waiters = tokio::task::JoinSet::new();
    for waiter in 0..WAITERS {
        let (store, shared) = (store.clone(), shared.clone());
        waiters.spawn(async move {
            let written = store.write(&waiter.to_string(), "Counted").await;
            shared.wait_for(written.position).await
        });
    }
    // Every waiter is asleep behind the reader (or not started yet): none can be served.
    while shared.inner.sleepers.load(Ordering::Acquire) < 1 {
        tokio::task::yield_now().await;
    }
    assert_eq!(shared.position(), GlobalPosition::START);
    release.store(true, Ordering::Release);
    reader.await.unwrap();
    while let Some(waited) = waiters.join_next().await {
        let reached = waited
            .unwrap()
            .expect("woken by the release, not timed out");
        assert!(reached.get() >= 1);
    }
    assert_eq!(shared.inner.sleepers.load(Ordering::Acquire), 0);
    let seen = shared
        .read(|registry| registry.get::<Seen>().unwrap().0.len() as u64)
        .await;
    assert_eq!(seen, WAITERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_catch_up_serves_waiters_it_has_passed_before_it_ends() {
    let store = Probe::default();
    let shared = share(&store, Duration::from_secs(30));
    let first = store.write("a", "Counted").await;
    shared.wait_for(first.position).await.unwrap();
    let mut last = first;
    for _ in 0..8 {
        last = store.write("a", "Counted").await;
    }
    // Positions 2 to 9: pages of 4. The run's second page read stalls, after the first page
    // (2 to 5) is applied.
    let reads = store.read_all.load(Ordering::SeqCst);
    store.stall_at.store(reads + 2, Ordering::SeqCst);
    let long = tokio::spawn({
        let shared = shared.clone();
        async move { shared.wait_for(last.position).await }
    });
    while store.read_all.load(Ordering::SeqCst) < reads + 2 {
        tokio::task::yield_now().await;
    }
    let served = tokio::time::timeout(Duration::from_secs(10), shared.wait_for(GlobalPosition(5)))
        .await
        .expect("served by the run that passed it, while that run is still going")
        .unwrap();
    assert_eq!(served, GlobalPosition(5));
    assert!(!long.is_finished(), "the long run is still stalled");
    // A permit: the stalled read may or may not be waiting yet.
    store.released.notify_one();
    assert_eq!(long.await.unwrap().unwrap(), last.position);
}

/// Closed: applying the event at position [`GATE_AT`] blocks its thread until opened.
static GATE_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set once the gate holds a catch-up.
static GATE_HOLDING: AtomicBool = AtomicBool::new(false);
const GATE_AT: u64 = 70;

/// Opens the gate when dropped.
struct OpenGate;

impl Drop for OpenGate {
    fn drop(&mut self) {
        GATE_CLOSED.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Gated;

impl InfallibleProjection for Gated {
    const NAME: &'static str = "gated";

    fn apply(&mut self, event: &RecordedEvent) {
        if event.global_position.get() == GATE_AT {
            GATE_HOLDING.store(true, Ordering::SeqCst);
            while GATE_CLOSED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn reset(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_within_a_page_serves_waiters_every_few_dozen_events() {
    let store = Probe::default();
    let registry = ProjectionRegistry::new()
        .with(Gated)
        .unwrap()
        .with_wait_timeout(Duration::from_secs(30));
    let shared = SharedRegistry::new(registry, store.clone());
    let first = store.write("a", "Counted").await;
    shared.wait_for(first.position).await.unwrap();
    let mut last = first;
    for _ in 1..100 {
        last = store.write("a", "Counted").await;
    }
    // One page holds all 99 new events; the run stops inside it, at position 70.
    GATE_CLOSED.store(true, Ordering::SeqCst);
    // Opened again however the test ends, so a failure does not hold a worker forever.
    let open = OpenGate;
    let long = tokio::spawn({
        let shared = shared.clone();
        async move { shared.wait_for(last.position).await }
    });
    while !GATE_HOLDING.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    // 64 events of the run (positions 2 to 65) are applied and reported.
    let served = tokio::time::timeout(Duration::from_secs(10), shared.wait_for(GlobalPosition(60)))
        .await
        .expect("served within the page, while the run is held");
    assert_eq!(served.unwrap(), GlobalPosition(1 + PROGRESS_EVERY));
    assert!(!long.is_finished());
    drop(open);
    assert_eq!(long.await.unwrap().unwrap(), last.position);
}
