//! The repository's aggregate cache (`Repository::with_cache`), on memory, SQLite and
//! PostgreSQL (`ES_POSTGRES_URL`; skipped without it).
//!
//! The races follow the store conformance races: two repositories ("nodes"), each with its own
//! cache and its own connection to one store, run commands on the same few aggregates at once.
//! Every event records the count its command saw; the stream must hold one event per
//! successful command (nothing lost) and each event must have seen exactly the state at the
//! version it was appended after (no decision on a stale state was saved).

mod postgres_support;
mod sqlite_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use es_core::{
    Aggregate, AppendOutcome, Apply, CommandError, Event, EventStore, ExpectedVersion,
    GlobalPosition, InMemory, NewEvent, RecordedEvent, Repository, RepositoryError, RetryPolicy,
    StoreError, StreamId, Timestamp, VersionRange,
};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Bumped", version = 1)]
struct Bumped {
    /// The count the command saw when it decided.
    seen: u64,
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "counter", events(Bumped))]
struct Counter {
    count: u64,
}

impl Apply<Bumped> for Counter {
    fn apply(&mut self, _event: &Bumped) {
        self.count += 1;
    }
}

#[derive(Debug, PartialEq)]
struct TooLow {
    count: u64,
    at_least: u64,
}

impl std::fmt::Display for TooLow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the count is {}, below {}", self.count, self.at_least)
    }
}

impl std::error::Error for TooLow {}

impl Counter {
    #[allow(clippy::unnecessary_wraps)] // the shape every command has
    fn bump(&self) -> Result<Vec<CounterEvent>, TooLow> {
        Ok(vec![Bumped { seen: self.count }.into()])
    }

    /// Bumps only a counter that is at `at_least` or more.
    fn bump_from(&self, at_least: u64) -> Result<Vec<CounterEvent>, TooLow> {
        if self.count < at_least {
            return Err(TooLow {
                count: self.count,
                at_least,
            });
        }
        self.bump()
    }

    /// Bumps only a counter below `below`; records nothing otherwise.
    fn bump_below(&self, below: u64) -> Result<Vec<CounterEvent>, TooLow> {
        if self.count >= below {
            return Ok(Vec::new());
        }
        self.bump()
    }
}

fn node<S: EventStore + es_core::SnapshotStore>(store: S) -> Repository<Counter, S> {
    Repository::new(store).with_cache(64).with_retry_policy(
        RetryPolicy::attempts(1_000)
            .with_backoff(Duration::from_micros(50), Duration::from_millis(5)),
    )
}

/// Two nodes, `TASKS` tasks each, `COMMANDS` commands per task spread over `STREAMS` counters.
async fn two_nodes_race<S>(node_a: S, node_b: S)
where
    S: EventStore + es_core::SnapshotStore + 'static,
{
    const TASKS: usize = 4;
    const COMMANDS: usize = 25;
    const STREAMS: usize = 3;
    let nodes = [Arc::new(node(node_a)), Arc::new(node(node_b))];
    let saved: Arc<[AtomicU64; STREAMS]> = Arc::new(Default::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (index, repository) in nodes.iter().enumerate() {
        for task in 0..TASKS {
            let (repository, saved) = (repository.clone(), saved.clone());
            tasks.spawn(async move {
                for command in 0..COMMANDS {
                    // Each task walks the counters in its own order.
                    let counter = (command + task + index) % STREAMS;
                    let updated = repository
                        .update(&format!("c{counter}"), Counter::bump)
                        .await
                        .unwrap_or_else(|error| panic!("a bump is saved in the end: {error:?}"));
                    assert_eq!(
                        updated.root.state().count,
                        updated.root.version().get(),
                        "the saved state is the state at its version"
                    );
                    saved[counter].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    while let Some(task) = tasks.join_next().await {
        task.expect("a racing task ends without panicking");
    }
    let reader = &nodes[0];
    let mut total = 0;
    for counter in 0..STREAMS {
        let stream = StreamId::new("counter", format!("c{counter}"));
        let events = reader
            .store()
            .read_stream(&stream, VersionRange::all())
            .await
            .expect("the stream reads");
        let successes = saved[counter].load(Ordering::Relaxed);
        assert_eq!(
            events.len() as u64,
            successes,
            "one event per successful command on {stream}: none lost, none extra"
        );
        for event in &events {
            let CounterEvent::Bumped(bumped) = event.decode::<CounterEvent>().expect("decodes");
            assert_eq!(
                bumped.seen + 1,
                event.version.get(),
                "event {} of {stream} was decided on a state other than the one before it",
                event.version
            );
        }
        // Both nodes answer `load` with the stored state, whatever their caches held.
        for repository in &nodes {
            let loaded = repository.load(&format!("c{counter}")).await.unwrap();
            assert_eq!(loaded.state().count, successes);
            assert_eq!(loaded.version().get(), successes);
        }
        total += successes;
    }
    assert_eq!(total, (2 * TASKS * COMMANDS) as u64);
    let stats: Vec<_> = nodes
        .iter()
        .map(|repository| repository.cache_stats().expect("a cache"))
        .collect();
    assert!(
        stats.iter().any(|stats| stats.hits > 0),
        "the race ran through the cache: {stats:?}"
    );
}

/// The single-node behaviours, on any store: `a` and `b` are two handles on one store.
async fn behaviours<S>(a: S, b: S)
where
    S: EventStore + es_core::SnapshotStore + 'static,
{
    let (node_a, node_b) = (node(a), node(b));

    // A save advances the cached entry: the next command hits.
    node_a.update("x", Counter::bump).await.unwrap();
    node_a.update("x", Counter::bump).await.unwrap();
    let stats = node_a.cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.len), (1, 1, 1));

    // Another node writes behind A's back: A's cached state is stale. Its next command
    // decides on the cache, conflicts, drops the entry and runs again on the stored state.
    node_b.update("x", Counter::bump).await.unwrap();
    let updated = node_a.update("x", Counter::bump).await.unwrap();
    assert_eq!(
        updated.attempts, 2,
        "one run on the stale cache, one on the store"
    );
    assert_eq!(
        (updated.root.state().count, updated.root.version().get()),
        (4, 4)
    );
    assert_eq!(node_a.cache_stats().unwrap().stale, 1);

    // `load` is as fresh as the store even when the cache is behind.
    node_b.update("x", Counter::bump).await.unwrap();
    let hits = node_a.cache_stats().unwrap().hits;
    let loaded = node_a.load("x").await.unwrap();
    assert_eq!((loaded.state().count, loaded.version().get()), (5, 5));
    assert_eq!(
        node_a.cache_stats().unwrap().hits,
        hits + 1,
        "served from the cache"
    );

    // A rejection decided on a stale cached state is checked against the stored state.
    node_a.update("y", Counter::bump).await.unwrap(); // A caches y at 1
    node_b.update("y", Counter::bump).await.unwrap(); // the store has y at 2
    let updated = node_a
        .update("y", |counter| counter.bump_from(2))
        .await
        .expect("the store's state allows the command");
    assert_eq!(updated.root.version().get(), 3);
    // ... and a rejection on a current state is returned.
    let refused = node_a.update("y", |counter| counter.bump_from(10)).await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(TooLow {
            count: 3,
            at_least: 10
        }))
    ));

    // Likewise "nothing to record": decided on the stale cache, then on the store.
    node_a.update("z", Counter::bump).await.unwrap(); // A caches z at 1
    node_b.update("z", Counter::bump).await.unwrap(); // the store has z at 2
    let updated = node_a
        .update("z", |counter| counter.bump_below(2))
        .await
        .unwrap();
    assert!(updated.outcome.is_none(), "nothing recorded");
    assert_eq!(
        updated.root.version().get(),
        2,
        "the answer comes from the store"
    );

    // A node with a limit of one attempt still succeeds past a stale cache entry: the run on
    // the cache does not count against the policy.
    let strict = Repository::<Counter, _>::new(node_a.store())
        .with_cache(4)
        .with_retry_policy(RetryPolicy::no_retry());
    strict.update("w", Counter::bump).await.unwrap();
    node_b.update("w", Counter::bump).await.unwrap();
    let updated = strict.update("w", Counter::bump).await.unwrap();
    assert_eq!((updated.attempts, updated.root.version().get()), (2, 3));
}

// ---------------------------------------------------------------------------------------------
// memory

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_two_nodes_never_lose_an_update_or_save_a_stale_decision() {
    let store = InMemory::new();
    two_nodes_race(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_hits_conflicts_and_loads() {
    let store = InMemory::new();
    behaviours(store.clone(), store).await;
}

/// An in-memory store that counts reads and can fail appends, to see what the cache saves and
/// what a failed save does.
#[derive(Clone, Default)]
struct Probe {
    inner: InMemory,
    reads: Arc<AtomicU64>,
    fail_appends: Arc<AtomicBool>,
}

impl EventStore for Probe {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if self.fail_appends.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        self.inner.append(stream, expected, events).await
    }

    async fn append_streams(
        &self,
        batches: Vec<es_core::StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.append_streams(batches).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.inner.last_position().await
    }
}

#[tokio::test]
async fn a_cache_hit_makes_no_read_and_a_failed_save_evicts() {
    let probe = Probe::default();
    let repository = Repository::<Counter, _>::without_snapshots(probe.clone()).with_cache(8);
    repository.update("p", Counter::bump).await.unwrap();
    assert_eq!(
        probe.reads.load(Ordering::Relaxed),
        1,
        "the first command loads"
    );
    for _ in 0..5 {
        repository.update("p", Counter::bump).await.unwrap();
    }
    assert_eq!(
        probe.reads.load(Ordering::Relaxed),
        1,
        "commands on a cached aggregate read nothing"
    );

    probe.fail_appends.store(true, Ordering::Relaxed);
    let failed = repository.update("p", Counter::bump).await;
    assert!(matches!(
        failed,
        Err(CommandError::Repository(RepositoryError::Store(
            StoreError::Closed
        )))
    ));
    assert_eq!(
        repository.cache_stats().unwrap().len,
        0,
        "a failed save evicts"
    );
    probe.fail_appends.store(false, Ordering::Relaxed);
    let updated = repository.update("p", Counter::bump).await.unwrap();
    assert_eq!(updated.root.version().get(), 7);
    assert_eq!(
        probe.reads.load(Ordering::Relaxed),
        2,
        "reloaded after the failure"
    );

    // Without a cache every command loads.
    let plain = Repository::<Counter, _>::without_snapshots(probe.clone());
    plain.update("p", Counter::bump).await.unwrap();
    plain.update("p", Counter::bump).await.unwrap();
    assert_eq!(probe.reads.load(Ordering::Relaxed), 4);
    assert!(plain.cache_stats().is_none());
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let repository = Repository::<Counter, _>::new(InMemory::new()).with_cache(3);
    for id in 0..10 {
        repository
            .update(&format!("b{id}"), Counter::bump)
            .await
            .unwrap();
    }
    let stats = repository.cache_stats().unwrap();
    assert_eq!((stats.len, stats.capacity), (3, 3));
    // The most recent ones are cached, the oldest are not.
    let hits = stats.hits;
    repository.update("b9", Counter::bump).await.unwrap();
    assert_eq!(repository.cache_stats().unwrap().hits, hits + 1);
    repository.update("b0", Counter::bump).await.unwrap();
    assert_eq!(repository.cache_stats().unwrap().hits, hits + 1);
    repository.clear_cache();
    assert_eq!(repository.cache_stats().unwrap().len, 0);
}

// ---------------------------------------------------------------------------------------------
// SQLite: two stores opened on one file, as two processes would.

async fn sqlite_pair() -> (
    tempfile::TempDir,
    es_core::store::sqlite::Sqlite,
    es_core::store::sqlite::Sqlite,
) {
    let (directory, path) = sqlite_support::temporary_store_path();
    let a = es_core::store::sqlite::Sqlite::open(&path)
        .await
        .expect("opens");
    let b = es_core::store::sqlite::Sqlite::open(&path)
        .await
        .expect("opens twice");
    (directory, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_nodes_never_lose_an_update_or_save_a_stale_decision() {
    let (_directory, a, b) = sqlite_pair().await;
    two_nodes_race(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cache_hits_conflicts_and_loads() {
    let (_directory, a, b) = sqlite_pair().await;
    behaviours(a, b).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: two connections pools on one schema.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_nodes_never_lose_an_update_or_save_a_stale_decision() {
    let Some(schema) = postgres_support::TestSchema::new("cache_two_nodes") else {
        return;
    };
    two_nodes_race(schema.store().await, schema.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cache_hits_conflicts_and_loads() {
    let Some(schema) = postgres_support::TestSchema::new("cache_behaviours") else {
        return;
    };
    behaviours(schema.store().await, schema.store().await).await;
}
