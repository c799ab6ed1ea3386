//! This framework against cqrs-es on the same Order workload, with read-your-writes.
//!
//! The workload: the first orders of `order_example::load::Workload` (seed 1), every command of
//! every order (create, add and remove items, pay, ship, cancel) run as its own command: load
//! the order, decide, save; and the order-summary read model shows that save before the next
//! command of the order runs (read-your-writes). The commands of many orders interleave: each
//! lane (task) takes its orders 64 at a time and runs the first command of each, then the
//! second of each, and so on.
//!
//! Both frameworks run the order-example's own `Order` state and business rules
//! (`OrderCommand::decide`); see `cqrs_order/mod.rs` for the cqrs-es side. One checked run per
//! mode first asserts that both end with the same summary for every order, and that every wait
//! of this framework's registry read sides shows the write it waited for.
//!
//! - `cqrs-es`: `CqrsFramework` over cqrs-es's `MemStore`, with the summary as a `Query`
//!   (cqrs-es runs its queries inside `execute`, right after the commit). Note that `MemStore`
//!   prints two lines to stdout per command (`loading: ...`, `storing: ...`): run the bench with
//!   stdout sent to `/dev/null` as it is measured here, and read the figures in
//!   `target/criterion` or from stderr.
//! - `by-hand`: the workload without any framework (see `ByHand`): each order's state in a
//!   map, every event encoded into one log, the summary row folded in the same step, one lock
//!   per command. Not a competitor: the ceiling, which says how much of a command's cost is the
//!   domain's own work and how much is a framework's.
//! - `by-hand-sharded`: the same written for two cores (see `Sharded`): the orders and rows in
//!   64 maps by a hash of the id, each behind its own lock, the log behind one more, taken only
//!   to push. The ceiling with 16 tasks: how far two cores go when they share only the log.
//! - `es/registry`: `Repository::update` (postcard), then
//!   `ProjectionRegistry::catch_up_to(position)` on a registry holding `OrderSummaries`, behind
//!   one `tokio::sync::Mutex` shared by all lanes (the only way before issue 14).
//! - `es/daemon`: `Repository::update`, then `DaemonClient::wait_for(position)` on a
//!   `ProjectionDaemon` running `OrderSummaries`.
//! - `es/shared`: `Repository::update`, then `SharedRegistry::wait_for(position)`: the same
//!   registry shared without a lock per wait; one catch-up serves every waiter it passes, and a
//!   waiter already served makes no store call.
//! - `es/no-read-model`: `Repository::update` alone, with no read model and so no
//!   read-your-writes: not a way to run the workload (nothing shows the writes), but the
//!   yardstick of this framework's write path, as `by-hand` is of the whole command.
//! - `+cache`: the repository keeps up to 4,096 aggregates (`Repository::with_cache`).
//! - `+deferred`: the lane waits for a write just before the next command of the same order
//!   (the consistency token a client carries from one request to its next; all remaining ones
//!   before the lane ends) instead of right after the write. Read-your-writes as the workload
//!   defines it holds either way; deferring lets one catch-up serve many writes, and a daemon
//!   work beside the writers.
//!
//! Modes: `sequential` (one lane) and `16-tasks` (orders dealt round-robin to 16 lanes running
//! concurrently). Everything runs on one multi-threaded Tokio runtime with 2 workers (the
//! machine's cores). Each measured iteration starts from an empty store (set-up untimed) and
//! runs the whole workload; throughput is in commands.
//!
//! Stores: `memory` (both frameworks, every variant), and for this framework alone `sqlite` (a
//! fresh file, default options: WAL, synchronous FULL) and `postgres` (a fresh schema on
//! `ES_POSTGRES_URL`, skipped when it is unset), with four variants (`Variant::STORES`).
//!
//! Size, by environment variable: `VS_CQRS_ORDERS` (in memory, default 10,000 orders, 54,040
//! commands) and `VS_CQRS_STORE_ORDERS` (SQLite and PostgreSQL, default 300 orders, about
//! 1,600 commands). Select with criterion's filter, for example:
//!
//! ```text
//! VS_CQRS_ORDERS=2000 cargo bench --bench vs_cqrs -- memory > /dev/null
//! ```
//!
//! cqrs-es's own speed moves between runs, so ratios to it are quoted from within one run, over
//! several interleaved runs: `benches/rounds.py` runs compiled binaries of this bench in turn
//! and prints the medians and ranges (see BENCHMARKS.md, "Running them").

mod cqrs_order;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::mem_store::MemStore;
use cqrs_es::CqrsFramework;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::store::sqlite::Sqlite;
use es_core::{
    Aggregate, AppendOutcome, CodecId, DaemonClient, EventStore, GlobalPosition, InMemory,
    NewEvent, ProjectionDaemon, ProjectionRegistry, ProjectionStore, Repository, SharedRegistry,
    SharedStr, SnapshotStore, Subscribe, Timestamp, Version,
};
use order_example::load::Workload;
use order_example::read_models::OrderSummaries;
use order_example::{Order, OrderCommand, OrderId};
use tokio::runtime::Runtime;

use cqrs_order::{CqrsOrder, SummaryQuery};

/// Orders interleaved within one lane.
const WAVE: usize = 64;
/// Lanes of the concurrent mode.
const TASKS: usize = 16;
/// How long a read-your-writes wait may take before the run is broken.
const PATIENCE: Duration = Duration::from_mins(1);
const URL_VARIABLE: &str = "ES_POSTGRES_URL";

/// One command of one order, with the order's place among its lane's orders (where a lane
/// keeps the order's consistency token).
type Step = (Arc<str>, OrderCommand, usize);

/// The workload dealt to lanes.
struct Plan {
    lanes: Vec<Arc<Vec<Step>>>,
    commands: u64,
    orders: usize,
}

impl Plan {
    fn new(orders: usize, lanes: usize) -> Plan {
        let scripts: Vec<_> = Workload::new(1).take(orders).collect();
        let mut dealt: Vec<Vec<_>> = vec![Vec::new(); lanes];
        for (index, script) in scripts.into_iter().enumerate() {
            dealt[index % lanes].push(script);
        }
        let mut commands = 0;
        let lanes = dealt
            .into_iter()
            .map(|scripts| {
                let mut steps = Vec::new();
                for (first, wave) in (0..).step_by(WAVE).zip(scripts.chunks(WAVE)) {
                    let wave: Vec<(Arc<str>, Vec<OrderCommand>, usize)> = wave
                        .iter()
                        .zip(first..)
                        .map(|(script, slot)| {
                            let id: Arc<str> = script.order_id.as_str().into();
                            let commands = script.batches.iter().flatten().cloned().collect();
                            (id, commands, slot)
                        })
                        .collect();
                    let longest = wave.iter().map(|(_, c, _)| c.len()).max().unwrap_or(0);
                    for step in 0..longest {
                        for (id, commands, slot) in &wave {
                            if let Some(command) = commands.get(step) {
                                steps.push((id.clone(), command.clone(), *slot));
                            }
                        }
                    }
                }
                commands += steps.len() as u64;
                Arc::new(steps)
            })
            .collect();
        Plan {
            lanes,
            commands,
            orders,
        }
    }
}

impl Plan {
    /// Says on stderr what a group runs (the throughput figures are per command).
    fn announce(&self, store: &str, mode: &str) {
        eprintln!(
            "vs_cqrs/{store}/{mode}: {} orders, {} commands, {} lanes",
            self.orders,
            self.commands,
            self.lanes.len()
        );
    }
}

fn orders_from(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|&orders| orders > 0)
        .unwrap_or(default)
}

/// Runs `lane` on every lane of `plan` at once, one task each, and says how long they took
/// together.
async fn time_lanes<F, Fut>(plan: &Plan, mut lane: F) -> Duration
where
    F: FnMut(Arc<Vec<Step>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let mut lanes = tokio::task::JoinSet::new();
    for steps in &plan.lanes {
        lanes.spawn(lane(steps.clone()));
    }
    while let Some(done) = lanes.join_next().await {
        done.expect("a lane runs to the end");
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------------------------
// cqrs-es

type Cqrs = CqrsFramework<CqrsOrder, MemStore<CqrsOrder>>;

fn cqrs_framework() -> (Arc<Cqrs>, Arc<SummaryQuery>) {
    let summaries = Arc::new(SummaryQuery::default());
    let query = Box::new(SharedQuery(summaries.clone()));
    let framework = CqrsFramework::new(MemStore::default(), vec![query], ());
    (Arc::new(framework), summaries)
}

/// Lets the bench keep a handle on the query it gives the framework.
struct SharedQuery(Arc<SummaryQuery>);

#[async_trait::async_trait]
impl cqrs_es::Query<CqrsOrder> for SharedQuery {
    async fn dispatch(&self, id: &str, events: &[cqrs_es::EventEnvelope<CqrsOrder>]) {
        self.0.dispatch(id, events).await;
    }
}

async fn run_cqrs(framework: Arc<Cqrs>, plan: &Plan) -> Duration {
    time_lanes(plan, |lane| {
        let framework = framework.clone();
        async move {
            for (id, command, _) in lane.iter() {
                framework
                    .execute(id, command.clone())
                    .await
                    .expect("generated commands keep the business rules");
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// by hand

/// The workload written by hand, without a framework: what a framework's overhead is measured
/// against.
///
/// It keeps what this framework keeps of every event (encoded with postcard by the same code,
/// with its UUID v7, stream, version and time, in one log), decides on each order's state kept
/// in a map, and folds each event into the order's summary row in the same step: read-your-
/// writes with nothing to wait for. Everything sits behind one lock, taken once per command.
/// What it leaves out is what a framework is for: no version check (nothing else writes), no
/// bound on the states kept, no duplicate-id check, no reading the log back, no subscriptions,
/// no errors for bad data.
#[derive(Default)]
struct ByHand {
    orders: Orders,
    log: Vec<Logged>,
    rows: Rows,
}

/// Each order's state and version, by id.
type Orders = std::collections::HashMap<Arc<str>, (Order, u64)>;
/// Each order's summary row, by id.
type Rows = std::collections::HashMap<String, cqrs_order::SummaryRow>;

/// One event of the hand-written log.
struct Logged {
    event_id: uuid::Uuid,
    stream: Arc<str>,
    version: u64,
    recorded_at: Timestamp,
    event_type: SharedStr,
    payload: Vec<u8>,
}

impl Logged {
    fn new(stream: &Arc<str>, version: u64, recorded_at: Timestamp, event: NewEvent) -> Logged {
        Logged {
            event_id: event.event_id,
            stream: stream.clone(),
            version,
            recorded_at,
            event_type: event.event_type,
            payload: event.payload,
        }
    }
}

/// Runs `command` on order `id` by hand: decides on its state in `orders`, applies each event
/// to it, folds the event into the order's row in `rows`, and hands `keep` the event encoded,
/// with its version.
fn run_command_by_hand(
    orders: &mut Orders,
    rows: &mut Rows,
    id: &Arc<str>,
    command: &OrderCommand,
    mut keep: impl FnMut(u64, NewEvent),
) {
    let (order, version) = orders.entry(id.clone()).or_default();
    let events = command
        .decide(order)
        .expect("generated commands keep the business rules");
    for event in events {
        order.apply_event(&event);
        *version += 1;
        let encoded = NewEvent::encode(&event, CodecId::Postcard).expect("encodes");
        cqrs_order::fold(rows, id, *version, &event.into());
        keep(*version, encoded);
    }
}

async fn run_by_hand(plan: &Plan) -> (Duration, Arc<std::sync::Mutex<ByHand>>) {
    let world = Arc::new(std::sync::Mutex::new(ByHand::default()));
    let elapsed = time_lanes(plan, |lane| {
        let world = world.clone();
        async move {
            for (id, command, _) in lane.iter() {
                let mut world = world.lock().expect("no command panics");
                let ByHand { orders, log, rows } = &mut *world;
                let now = Timestamp::now();
                run_command_by_hand(orders, rows, id, command, |version, event| {
                    log.push(Logged::new(id, version, now, event));
                });
            }
        }
    })
    .await;
    (elapsed, world)
}

/// [`ByHand`] written for two cores: the orders and their rows split into [`Sharded::SHARDS`]
/// maps by a hash of the id, each behind its own lock, and the log behind one more. A command
/// decides, applies, encodes and folds under its order's shard lock, then takes the log's lock
/// only to push what it encoded. Two cores meet only on the log's lock, held for a push.
struct Sharded {
    shards: Box<[std::sync::Mutex<(Orders, Rows)>]>,
    hasher: std::hash::RandomState,
    log: std::sync::Mutex<Vec<Logged>>,
}

impl Sharded {
    const SHARDS: usize = 64;

    fn new() -> Sharded {
        Sharded {
            shards: (0..Self::SHARDS)
                .map(|_| std::sync::Mutex::default())
                .collect(),
            hasher: std::hash::RandomState::new(),
            log: std::sync::Mutex::default(),
        }
    }

    fn shard(&self, id: &str) -> &std::sync::Mutex<(Orders, Rows)> {
        use std::hash::BuildHasher;
        // The high bits: the shard's maps hash with their own seeds, so the two stay apart.
        let hash = (self.hasher.hash_one(id) >> 32) as usize;
        &self.shards[hash % Self::SHARDS]
    }

    /// Every shard's maps merged, and the log (the outcome, checked against cqrs-es's), with
    /// how many shards held orders.
    fn into_parts(self) -> (ByHand, usize) {
        let mut world = ByHand {
            log: self.log.into_inner().expect("no command panicked"),
            ..ByHand::default()
        };
        let mut used = 0;
        for shard in self.shards {
            let (orders, rows) = shard.into_inner().expect("no command panicked");
            used += usize::from(!orders.is_empty());
            world.orders.extend(orders);
            world.rows.extend(rows);
        }
        (world, used)
    }
}

async fn run_by_hand_sharded(plan: &Plan) -> (Duration, Arc<Sharded>) {
    let world = Arc::new(Sharded::new());
    let elapsed = time_lanes(plan, |lane| {
        let world = world.clone();
        async move {
            let mut encoded = Vec::new();
            for (id, command, _) in lane.iter() {
                {
                    let mut shard = world.shard(id).lock().expect("no command panics");
                    let (orders, rows) = &mut *shard;
                    run_command_by_hand(orders, rows, id, command, |version, event| {
                        encoded.push((version, event));
                    });
                }
                let now = Timestamp::now();
                let mut log = world.log.lock().expect("no command panics");
                log.extend(
                    encoded
                        .drain(..)
                        .map(|(version, event)| Logged::new(id, version, now, event)),
                );
            }
        }
    })
    .await;
    (elapsed, world)
}

// ---------------------------------------------------------------------------------------------
// this framework

/// Aggregates the cache holds in the `+cache` variants.
const CACHE: usize = 4_096;

/// One configuration of this framework: the read side, whether the repository caches, and
/// when a lane waits for its write to show.
#[derive(Clone, Copy, Debug)]
struct Variant {
    ryw: Ryw,
    cache: bool,
    /// Wait for a write to show just before the next command of the same order (the
    /// consistency token a client carries from one request to its next), not right after it.
    deferred: bool,
}

impl Variant {
    const fn new(ryw: Ryw, cache: bool, deferred: bool) -> Variant {
        Variant {
            ryw,
            cache,
            deferred,
        }
    }

    const ALL: [Variant; 9] = [
        Variant::new(Ryw::Registry, false, false),
        Variant::new(Ryw::Daemon, false, false),
        Variant::new(Ryw::Shared, false, false),
        Variant::new(Ryw::Registry, true, false),
        Variant::new(Ryw::Daemon, true, false),
        Variant::new(Ryw::Shared, true, false),
        Variant::new(Ryw::Daemon, true, true),
        Variant::new(Ryw::Shared, true, true),
        Variant::new(Ryw::Nothing, true, false),
    ];

    /// The variants run on SQLite and PostgreSQL (each command costs milliseconds there): the
    /// old way, and the three this page recommends.
    const STORES: [Variant; 4] = [
        Variant::new(Ryw::Registry, false, false),
        Variant::new(Ryw::Shared, true, false),
        Variant::new(Ryw::Shared, true, true),
        Variant::new(Ryw::Daemon, true, true),
    ];

    fn name(self) -> String {
        let cache = if self.cache { "+cache" } else { "" };
        let deferred = if self.deferred { "+deferred" } else { "" };
        format!("{}{cache}{deferred}", self.ryw.name())
    }
}

/// How a command's caller waits for the order summary to show its write.
#[derive(Clone, Copy, Debug)]
enum Ryw {
    /// `ProjectionRegistry::catch_up_to` behind one mutex.
    Registry,
    /// `DaemonClient::wait_for` on a running daemon.
    Daemon,
    /// `SharedRegistry::wait_for`.
    Shared,
    /// No read model at all, so no read-your-writes: the write path alone (a yardstick).
    Nothing,
}

impl Ryw {
    fn name(self) -> &'static str {
        match self {
            Ryw::Registry => "registry",
            Ryw::Daemon => "daemon",
            Ryw::Shared => "shared",
            Ryw::Nothing => "no-read-model",
        }
    }
}

/// The read side of one run.
enum Reader<S> {
    Registry {
        registry: tokio::sync::Mutex<ProjectionRegistry>,
        store: S,
    },
    Daemon(DaemonClient),
    Shared(SharedRegistry<S>),
    Nothing,
}

impl<S: EventStore> Reader<S> {
    async fn wait(&self, position: GlobalPosition) {
        match self {
            Reader::Registry { registry, store } => {
                registry
                    .lock()
                    .await
                    .catch_up_to(store, position)
                    .await
                    .expect("the summary catches up");
            }
            Reader::Shared(shared) => {
                shared
                    .wait_for(position)
                    .await
                    .expect("the summary catches up");
            }
            Reader::Daemon(client) => client
                .wait_for(position, PATIENCE)
                .await
                .expect("the daemon reaches the position"),
            Reader::Nothing => {}
        }
    }

    /// Asserts that the summary of `order` shows its event `version` (or a later one). The
    /// daemon's read models live in its task: checked there by the final comparison only.
    async fn assert_shows(&self, order: &str, version: Version) {
        let shown = |registry: &ProjectionRegistry| {
            registry
                .get::<OrderSummaries>()
                .and_then(|summaries| summaries.get(&OrderId::new(order)))
                .map(|summary| summary.version)
        };
        let shown = match self {
            Reader::Registry { registry, .. } => shown(&*registry.lock().await),
            Reader::Shared(shared) => shared.read(shown).await,
            Reader::Daemon(_) | Reader::Nothing => return,
        };
        assert!(
            shown >= Some(version),
            "{order}: read model at {shown:?}, its write at {version}"
        );
    }
}

/// Stores this framework runs on.
trait BenchStore: EventStore + SnapshotStore + Subscribe + ProjectionStore + Clone + 'static {}
impl<S: EventStore + SnapshotStore + Subscribe + ProjectionStore + Clone + 'static> BenchStore
    for S
{
}

/// Runs the workload on this framework. `checked`: after every wait, the lane also reads the
/// order's summary and asserts that it shows the write waited for (the run that compares the
/// frameworks' outcomes; not timed).
async fn run_es<S: BenchStore>(store: S, variant: Variant, plan: &Plan, checked: bool) -> Duration {
    let mut repository = Repository::<Order, _>::new(store.clone()).with_codec(CodecId::Postcard);
    if variant.cache {
        repository = repository.with_cache(CACHE);
    }
    let repository = Arc::new(repository);
    let mut daemon = None;
    let reader = Arc::new(match variant.ryw {
        Ryw::Registry => Reader::Registry {
            registry: tokio::sync::Mutex::new(
                ProjectionRegistry::new()
                    .with(OrderSummaries::default())
                    .unwrap()
                    .with_wait_timeout(PATIENCE),
            ),
            store: store.clone(),
        },
        Ryw::Shared => Reader::Shared(SharedRegistry::new(
            ProjectionRegistry::new()
                .with(OrderSummaries::default())
                .unwrap()
                .with_wait_timeout(PATIENCE),
            store.clone(),
        )),
        Ryw::Daemon => {
            let started = ProjectionDaemon::builder()
                .with(OrderSummaries::default())
                .unwrap()
                .start(store.clone())
                .await
                .expect("the daemon starts");
            let client = started.client();
            daemon = Some(started);
            Reader::Daemon(client)
        }
        Ryw::Nothing => Reader::Nothing,
    });
    let elapsed = time_lanes(plan, |lane| {
        let (repository, reader) = (repository.clone(), reader.clone());
        async move {
            // Deferred: the position of the lane's last write to each order, waited for before
            // the order's next command (and all of them before the lane ends).
            let orders = lane.iter().map(|&(_, _, slot)| slot + 1).max().unwrap_or(0);
            let mut written: Vec<Option<AppendOutcome>> = vec![None; orders];
            for (id, command, slot) in lane.iter() {
                if let Some(write) = written[*slot].take() {
                    reader.wait(write.position).await;
                    if checked {
                        reader.assert_shows(id, write.version).await;
                    }
                }
                let updated = repository
                    .update(id, |order| command.decide(order))
                    .await
                    .expect("generated commands keep the business rules");
                let write = updated
                    .outcome
                    .expect("every generated command records an event");
                if variant.deferred {
                    written[*slot] = Some(write);
                } else {
                    reader.wait(write.position).await;
                    if checked {
                        reader.assert_shows(id, write.version).await;
                    }
                }
            }
            if let Some(last) = written.iter().flatten().map(|write| write.position).max() {
                reader.wait(last).await;
            }
        }
    })
    .await;
    if let Some(daemon) = daemon {
        daemon.shutdown().await.expect("the daemon stops");
    }
    elapsed
}

/// Asserts that a by-hand run ends with cqrs-es's summary for every order, and that its log
/// holds every command's event, each well formed and of an order that exists.
fn check_by_hand(by_hand: &ByHand, plan: &Plan, cqrs_rows: &SummaryQuery) {
    assert_eq!(by_hand.rows.len(), plan.orders);
    assert_eq!(by_hand.log.len() as u64, plan.commands);
    for (order, row) in &by_hand.rows {
        assert_eq!(Some(row), cqrs_rows.row(order).as_ref(), "{order}");
    }
    assert!(by_hand.log.iter().all(|logged| {
        let (order, version) = &by_hand.orders[&logged.stream];
        logged.version <= *version
            && order.status() != order_example::OrderStatus::NotCreated
            && !logged.payload.is_empty()
            && !logged.event_type.is_empty()
            && logged.recorded_at > Timestamp::EPOCH
            && logged.event_id.get_version_num() == 7
    }));
}

/// Runs the workload once on both frameworks in memory and checks that they end with the same
/// order summaries.
fn check_same_outcome(runtime: &Runtime, plan: &Plan) {
    let (framework, cqrs_rows) = cqrs_framework();
    runtime.block_on(run_cqrs(framework, plan));
    let (_, by_hand) = runtime.block_on(run_by_hand(plan));
    let by_hand = Arc::into_inner(by_hand)
        .expect("every lane has ended")
        .into_inner()
        .expect("no command panicked");
    check_by_hand(&by_hand, plan, &cqrs_rows);
    let (_, sharded) = runtime.block_on(run_by_hand_sharded(plan));
    let (sharded, used) = Arc::into_inner(sharded)
        .expect("every lane has ended")
        .into_parts();
    // Thousands of orders leave no shard empty (unless the hash picks only a few shards).
    assert!(
        used == Sharded::SHARDS || plan.orders < 1_000,
        "{used} shards in use"
    );
    check_by_hand(&sharded, plan, &cqrs_rows);
    let store = InMemory::new();
    for variant in [
        Variant::new(Ryw::Shared, true, false),
        Variant::new(Ryw::Registry, false, true),
    ] {
        runtime.block_on(run_es(InMemory::new(), variant, plan, true));
    }
    runtime.block_on(run_es(
        store.clone(),
        Variant::new(Ryw::Shared, true, true),
        plan,
        true,
    ));
    let mut registry = ProjectionRegistry::new()
        .with(OrderSummaries::default())
        .unwrap();
    runtime.block_on(registry.catch_up(&store)).unwrap();
    let ours = registry.get::<OrderSummaries>().unwrap();
    assert_eq!(ours.len(), plan.orders);
    assert_eq!(cqrs_rows.len(), plan.orders);
    for summary in ours.iter() {
        let row = cqrs_rows
            .row(summary.order_id.as_str())
            .expect("cqrs-es has every order");
        assert_eq!(
            (row.status, row.total, row.paid, row.item_count, row.version),
            (
                summary.status,
                summary.total,
                summary.paid,
                summary.item_count,
                summary.version.0
            ),
            "{}",
            summary.order_id
        );
        assert_eq!(row.lines, summary.lines);
        assert_eq!(row.customer_id, summary.customer_id);
    }
}

fn group_for<'a>(
    criterion: &'a mut Criterion,
    name: &str,
    plan: &Plan,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = criterion.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(plan.commands));
    group
}

fn modes(orders: usize) -> [(&'static str, Plan); 2] {
    [
        ("sequential", Plan::new(orders, 1)),
        ("16-tasks", Plan::new(orders, TASKS)),
    ]
}

fn bench_memory(criterion: &mut Criterion, runtime: &Runtime) {
    let orders = orders_from("VS_CQRS_ORDERS", 10_000);
    for (mode, plan) in modes(orders) {
        plan.announce("memory", mode);
        check_same_outcome(runtime, &plan);
        let mut group = group_for(criterion, &format!("vs_cqrs/memory/{mode}"), &plan);
        group.bench_function("cqrs-es", |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| runtime.block_on(run_cqrs(cqrs_framework().0, &plan)))
                    .sum()
            });
        });
        group.bench_function("by-hand", |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| runtime.block_on(run_by_hand(&plan)).0)
                    .sum()
            });
        });
        group.bench_function("by-hand-sharded", |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| runtime.block_on(run_by_hand_sharded(&plan)).0)
                    .sum()
            });
        });
        for variant in Variant::ALL {
            group.bench_function(BenchmarkId::new("es", variant.name()), |b| {
                b.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| runtime.block_on(run_es(InMemory::new(), variant, &plan, false)))
                        .sum()
                });
            });
        }
        group.finish();
    }
}

fn bench_sqlite(criterion: &mut Criterion, runtime: &Runtime) {
    let orders = orders_from("VS_CQRS_STORE_ORDERS", 300);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let files = AtomicU64::new(0);
    for (mode, plan) in modes(orders) {
        plan.announce("sqlite", mode);
        let mut group = group_for(criterion, &format!("vs_cqrs/sqlite/{mode}"), &plan);
        for variant in Variant::STORES {
            group.bench_function(BenchmarkId::new("es", variant.name()), |b| {
                b.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| {
                            let path = directory
                                .path()
                                .join(format!("{}.db", files.fetch_add(1, Ordering::Relaxed)));
                            runtime.block_on(async {
                                let store = Sqlite::open(&path).await.expect("SQLite opens");
                                let elapsed = run_es(store.clone(), variant, &plan, false).await;
                                store.close().await;
                                elapsed
                            })
                        })
                        .sum()
                });
            });
        }
        group.finish();
    }
}

fn bench_postgres(criterion: &mut Criterion, runtime: &Runtime) {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        eprintln!("vs_cqrs/postgres skipped: {URL_VARIABLE} not set");
        return;
    };
    let orders = orders_from("VS_CQRS_STORE_ORDERS", 300);
    let schemas = AtomicU64::new(0);
    let prefix = format!("es_vs_cqrs_{}", std::process::id());
    for (mode, plan) in modes(orders) {
        plan.announce("postgres", mode);
        let mut group = group_for(criterion, &format!("vs_cqrs/postgres/{mode}"), &plan);
        for variant in Variant::STORES {
            group.bench_function(BenchmarkId::new("es", variant.name()), |b| {
                b.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| {
                            let schema =
                                format!("{prefix}_{}", schemas.fetch_add(1, Ordering::Relaxed));
                            runtime.block_on(async {
                                let options = PostgresOptions::new(url.clone())
                                    .with_schema(&schema)
                                    .with_pool_size(8);
                                let store =
                                    Postgres::connect_with(options).await.expect("PostgreSQL");
                                let elapsed = run_es(store.clone(), variant, &plan, false).await;
                                drop_schema(&url, &schema).await;
                                store.close().await;
                                elapsed
                            })
                        })
                        .sum()
                });
            });
        }
        group.finish();
    }
}

async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the server accepts a connection");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("the bench schema drops");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    bench_memory(&mut criterion, &runtime);
    bench_sqlite(&mut criterion, &runtime);
    bench_postgres(&mut criterion, &runtime);
    criterion.final_summary();
}
