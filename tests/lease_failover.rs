//! Leased workers across processes: three worker processes run one group of read models over
//! one store while writers append 50,000 events; the lease holder is killed (`SIGKILL`) ten
//! times, and a holder that is stopped (`SIGSTOP`) until its lease moved writes nothing once
//! continued (`SIGCONT`).
//!
//! The workers are this test binary, started again with the test's name and an environment
//! variable naming the store (as `sqlite_crash.rs` does). Each worker prints a line when it
//! first applies a batch under a new lease (`APPLIED <token> <µs since the epoch>`) and when a
//! holding ends (`LOST <token> <fenced-off count>`); the parent reads them to measure takeover
//! times (kill -> the new holder's first applied batch), printed, never asserted.
//!
//! Afterwards every read model (two kept in memory and saved with their checkpoint, one kept
//! as a table) equals a fresh rebuild from the log, and each event was applied exactly once:
//! `lease-applications` counts applications (a position seen twice would count as out of
//! order), and the `lease_applied` table holds one row per position with its number of
//! applications, which must be 1.
//!
//! The PostgreSQL tests need `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it they say they
//! were skipped.

mod postgres_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use es_core::lease::LeaseStore;
use es_core::projection::daemon::ProjectionDaemon;
use es_core::projection::durable::{wait_for_checkpoint, wait_for_table_checkpoint};
use es_core::projection::table::{Sql, SqlError, TableProjection, TableStore};
use es_core::projection::worker::{Worker, WorkerState};
use es_core::projection::Projection;
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, Metadata, NewEvent, ProjectionStore,
    RecordedEvent, Store, StoreOptions, StreamId,
};
use rustix::process::{kill_process, Pid, Signal};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const CHILD_URL: &str = "ES_LEASE_CHILD_URL";
const CHILD_SCHEMA: &str = "ES_LEASE_CHILD_SCHEMA";
/// The lease name of the group all workers run.
const LEASE: &str = "lease-test-models";
/// The lease time in the tests: short, so ten takeovers fit in a CI run, and long enough that
/// a worker starved of CPU on a shared 2-core machine still renews in time (with 1 s, a
/// PostgreSQL run under load saw holders lose their lease without being killed).
const LEASE_TIME: Duration = Duration::from_secs(2);

/// Counts applications: every event once, in order, means `applied` is the log's length,
/// `position_sum` the sum of its positions, and `out_of_order` zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Applications {
    applied: u64,
    last: u64,
    out_of_order: u64,
    position_sum: u64,
}

impl Projection for Applications {
    const NAME: &'static str = "lease-applications";
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        let position = event.global_position.get();
        if position <= self.last {
            self.out_of_order += 1;
        }
        self.last = self.last.max(position);
        self.applied += 1;
        self.position_sum += position;
        Ok(())
    }

    fn reset(&mut self) {
        *self = Applications::default();
    }
}

/// Per stream: how many events, and the sum of their amounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StreamTotals {
    streams: BTreeMap<String, (u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

impl Projection for StreamTotals {
    const NAME: &'static str = "lease-stream-totals";
    type Error = serde_json::Error;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        let deposited: Deposited = serde_json::from_slice(&event.payload)?;
        let entry = self
            .streams
            .entry(event.stream.aggregate_id().to_owned())
            .or_default();
        entry.0 += 1;
        entry.1 += deposited.amount;
        Ok(())
    }

    fn reset(&mut self) {
        self.streams.clear();
    }
}

/// One row per position with how many times it was applied.
struct AppliedRows;

impl TableProjection for AppliedRows {
    const NAME: &'static str = "lease-applied-rows";
    const TABLES: &'static [&'static str] = &["lease_applied"];
    type Error = SqlError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        sql.execute(
            "CREATE TABLE IF NOT EXISTS lease_applied \
             (position BIGINT PRIMARY KEY, applications BIGINT NOT NULL)",
            &[],
        )?;
        Ok(())
    }

    fn apply(&self, event: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), SqlError> {
        let position = i64::try_from(event.global_position.get()).expect("a small position");
        sql.execute(
            "INSERT INTO lease_applied (position, applications) VALUES ($1, 1) \
             ON CONFLICT (position) DO UPDATE SET applications = lease_applied.applications + 1",
            &[position.into()],
        )?;
        Ok(())
    }
}

fn now_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros(),
    )
    .expect("in range")
}

/// The holder name of the worker in process `pid`.
fn holder_of(pid: u32) -> String {
    format!("worker-{pid}")
}

async fn open_store(url: &str, schema: Option<&str>) -> Store {
    let mut options = StoreOptions::new();
    if let Some(schema) = schema {
        options = options.with_postgres_schema(schema);
    }
    Store::open_with(url, options)
        .await
        .expect("the store opens")
}

// ---- the worker process ----

/// Runs a worker until killed, printing `APPLIED` and `LOST` lines.
fn worker_process(url: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let schema = std::env::var(CHILD_SCHEMA).ok();
        let store = open_store(url, schema.as_deref()).await;
        let tables = store.table_database();
        let worker = Worker::new(LEASE, move || {
            ProjectionDaemon::builder()
                .with_codec(CodecId::Json)
                .with_save_interval(Duration::from_millis(100))
                .with(Applications::default())?
                .with(StreamTotals::default())?
                .with_table(AppliedRows, tables.clone())
        })
        .with_holder(holder_of(std::process::id()))
        .with_lease_time(LEASE_TIME)
        .start(store.clone());
        let mut states = worker.states();
        loop {
            let held = states
                .wait_for(|state| matches!(state, WorkerState::Holding { .. }))
                .await
                .map(|state| match &*state {
                    WorkerState::Holding { lease, client } => (lease.token, client.clone()),
                    _ => unreachable!("waited for a holding state"),
                });
            let Ok((token, client)) = held else { break };
            let start: Vec<_> = client.status().iter().map(|model| model.checkpoint).collect();
            let mut updates = client.updates();
            let mut announced = false;
            loop {
                if !announced {
                    let moved = client
                        .status()
                        .iter()
                        .zip(&start)
                        .any(|(model, start)| model.checkpoint > *start);
                    if moved {
                        println!("APPLIED {token} {}", now_micros());
                        announced = true;
                    }
                }
                tokio::select! {
                    changed = updates.changed() => if changed.is_err() { break },
                    changed = states.changed() => {
                        if changed.is_err() || !matches!(*states.borrow(), WorkerState::Holding { .. }) {
                            break;
                        }
                    }
                }
            }
            let _ = states.wait_for(|state| !matches!(state, WorkerState::Holding { .. })).await;
            println!("LOST {token} {}", worker.fenced_off());
        }
        std::process::exit(0)
    })
}

// ---- the parent ----

/// A worker process and the lines it printed.
struct WorkerProcess {
    child: Child,
    pid: u32,
}

/// What the workers printed: `(pid, token, micros)` of each `APPLIED`, `(pid, token, fenced)` of
/// each `LOST`.
#[derive(Default)]
struct Reports {
    applied: Vec<(u32, u64, i64)>,
    lost: Vec<(u32, u64, u64)>,
}

struct Cluster {
    test: &'static str,
    url: String,
    schema: Option<String>,
    workers: Vec<WorkerProcess>,
    reports: Arc<Mutex<Reports>>,
}

impl Cluster {
    fn new(test: &'static str, url: String, schema: Option<String>) -> Self {
        Cluster {
            test,
            url,
            schema,
            workers: Vec::new(),
            reports: Arc::default(),
        }
    }

    fn spawn(&mut self) -> u32 {
        let mut command = Command::new(std::env::current_exe().expect("this test binary"));
        command
            .args(["--exact", self.test, "--nocapture", "--test-threads=1"])
            .env(CHILD_URL, &self.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(schema) = &self.schema {
            command.env(CHILD_SCHEMA, schema);
        }
        let mut child = command.spawn().expect("a worker process starts");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped");
        let reports = Arc::clone(&self.reports);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness's `test <name> ... ` has no newline: the first report
                // follows it on the same line.
                let parts: Vec<&str> = line.split_whitespace().collect();
                let start = parts
                    .iter()
                    .position(|part| *part == "APPLIED" || *part == "LOST")
                    .unwrap_or(parts.len());
                let mut reports = reports.lock().unwrap();
                match &parts[start..] {
                    ["APPLIED", token, at] => {
                        reports
                            .applied
                            .push((pid, token.parse().unwrap(), at.parse().unwrap()));
                    }
                    ["LOST", token, fenced] => {
                        reports
                            .lost
                            .push((pid, token.parse().unwrap(), fenced.parse().unwrap()));
                    }
                    _ => {}
                }
            }
        });
        self.workers.push(WorkerProcess { child, pid });
        pid
    }

    /// Sends `signal` (`SIGSTOP`, `SIGCONT`) to the worker `pid`.
    fn signal(pid: u32, signal: Signal) {
        let raw = i32::try_from(pid).expect("a pid");
        kill_process(Pid::from_raw(raw).expect("a positive pid"), signal).expect("kill(2)");
    }

    /// SIGKILLs the worker `pid` and waits for it.
    fn kill(&mut self, pid: u32) {
        let index = self
            .workers
            .iter()
            .position(|worker| worker.pid == pid)
            .expect("a worker of this cluster");
        let mut worker = self.workers.remove(index);
        worker.child.kill().expect("SIGKILL");
        worker.child.wait().expect("reaped");
    }

    /// The first `APPLIED` report of a lease with a token above `token`, waiting up to
    /// `timeout`.
    fn applied_after(&self, token: u64, timeout: Duration) -> Option<(u32, u64, i64)> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .reports
                .lock()
                .unwrap()
                .applied
                .iter()
                .find(|(_, applied, _)| *applied > token)
                .copied();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            if let Some(pid) = i32::try_from(worker.pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::CONT);
            }
            let _ = worker.child.kill();
            let _ = worker.child.wait();
        }
    }
}

// `.into()` on the payload keeps this compiling when `NewEvent::payload` becomes a shared type.
#[allow(clippy::useless_conversion)]
/// Appends `total` events (one `Deposited` each) in batches of up to 10 to 100 streams from
/// `writers` tasks, pausing `pause` between batches; returns how many were written.
async fn write_events(store: &Store, total: u64, writers: u64, pause: Duration) -> u64 {
    let written = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let written = Arc::clone(&written);
        tasks.push(tokio::spawn(async move {
            let mut batch_number = 0_u64;
            loop {
                let claimed = written.fetch_add(10, Ordering::AcqRel);
                if claimed >= total {
                    break;
                }
                let count = (total - claimed).min(10);
                let stream =
                    StreamId::new("account", format!("{}", (writer * 31 + batch_number) % 100));
                let events = (0..count)
                    .map(|index| NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: "Deposited".into(),
                        schema_version: 1,
                        codec: CodecId::Json,
                        payload: serde_json::to_vec(&Deposited {
                            amount: claimed + index,
                        })
                        .unwrap()
                        .into(),
                        metadata: Metadata::default(),
                    })
                    .collect();
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .expect("an append");
                batch_number += 1;
                tokio::time::sleep(pause).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer");
    }
    written.load(Ordering::Acquire).min(total)
}

/// The holder of the lease now, as a worker pid, with its token.
async fn holder(store: &Store) -> Option<(u32, u64)> {
    let lease = store
        .load_lease(LEASE)
        .await
        .expect("the lease table reads")?;
    let pid = lease.holder.strip_prefix("worker-")?.parse().ok()?;
    Some((pid, lease.token))
}

/// The current lease holder (from the lease table) once it holds a token above `after` and
/// reported a batch applied under it.
async fn applying_holder(cluster: &Cluster, store: &Store, after: u64) -> (u32, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((pid, token)) = holder(store).await {
            let applied = cluster
                .reports
                .lock()
                .unwrap()
                .applied
                .iter()
                .any(|report| report.0 == pid && report.1 == token);
            if token > after && applied {
                return (pid, token);
            }
        }
        assert!(
            Instant::now() < deadline,
            "a worker takes the lease (token above {after}) and applies"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every read model durably reached the end of the log, then checks each against
/// a fresh rebuild, and that each event was applied exactly once.
async fn check_exactly_once(store: &Store) {
    let head = store.last_position().await.unwrap();
    let timeout = Duration::from_mins(1);
    wait_for_checkpoint(store, Applications::NAME, head, timeout)
        .await
        .expect("the applications read model catches up");
    wait_for_checkpoint(store, StreamTotals::NAME, head, timeout)
        .await
        .expect("the totals read model catches up");
    let tables = store.table_database();
    wait_for_table_checkpoint(&tables, AppliedRows::NAME, head, timeout)
        .await
        .expect("the table read model catches up");
}

/// Compares the durable read models with a rebuild from the log (the workers must be stopped).
async fn compare_with_rebuild(store: &Store) -> u64 {
    let mut fresh_applications = Applications::default();
    let mut fresh_totals = StreamTotals::default();
    let mut after = GlobalPosition::START;
    let mut events = 0_u64;
    loop {
        let page = store.read_all(after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.global_position;
        for event in &page {
            fresh_applications.apply(event).unwrap();
            fresh_totals.apply(event).unwrap();
            events += 1;
        }
    }
    let saved = |name: &'static str| async move {
        let saved = store.load_projection(name).await.unwrap().expect("saved");
        assert_eq!(saved.position, after, "{name} saved at the end of the log");
        saved.state
    };
    let applications: Applications =
        serde_json::from_slice(&saved(Applications::NAME).await).unwrap();
    let totals: StreamTotals = serde_json::from_slice(&saved(StreamTotals::NAME).await).unwrap();
    assert_eq!(
        applications, fresh_applications,
        "applications equal a rebuild"
    );
    assert_eq!(applications.applied, events, "each event applied once");
    assert_eq!(applications.out_of_order, 0, "no event applied twice");
    assert_eq!(totals, fresh_totals, "stream totals equal a rebuild");

    let (rows, most, total): (i64, i64, i64) = store
        .table_database()
        .read(|sql| {
            let row = &sql.query(
                "SELECT COUNT(*), COALESCE(MAX(applications), 0), CAST(COALESCE(SUM(applications), 0) AS BIGINT) \
                 FROM lease_applied",
                &[],
            )?[0];
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .await
        .unwrap();
    assert_eq!(rows as u64, events, "a table row per event");
    assert_eq!(most, 1, "no event applied twice to the table");
    assert_eq!(total as u64, events);
    events
}

/// The failover run: 3 workers, 50,000 events, 10 kills of the holder.
async fn failover(test: &'static str, url: String, schema: Option<String>) {
    const EVENTS: u64 = 50_000;
    const KILLS: usize = 10;
    let store = open_store(&url, schema.as_deref()).await;
    let mut cluster = Cluster::new(test, url, schema);
    for _ in 0..3 {
        cluster.spawn();
    }
    let writing = {
        let store = store.clone();
        tokio::spawn(
            async move { write_events(&store, EVENTS, 4, Duration::from_millis(25)).await },
        )
    };
    let mut takeovers = Vec::new();
    let mut last_killed_token = 0;
    for kill in 0..KILLS {
        // Wait for the holder (from the lease table) to have applied under its lease, then kill
        // it. Under load a holder may also lose its lease without being killed (it could not
        // renew in time): the holder is read again until it is one that applies.
        let (pid, token) = applying_holder(&cluster, &store, last_killed_token).await;
        let killed_at = now_micros();
        cluster.kill(pid);
        last_killed_token = token;
        cluster.spawn();
        if writing.is_finished() {
            // The writers are done before the kills (a slow machine): one more event, so the
            // new holder has a batch to apply.
            write_events(&store, 1, 1, Duration::ZERO).await;
        }
        let (_, new_token, applied_at) = cluster
            .applied_after(token, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("kill {kill}: another worker takes over"));
        takeovers.push((
            new_token,
            Duration::from_micros((applied_at - killed_at).max(0) as u64),
        ));
    }
    let written = writing.await.unwrap();
    assert_eq!(written, EVENTS);
    check_exactly_once(&store).await;
    // Stop every worker before comparing, so nothing moves underneath.
    let pids: Vec<u32> = cluster.workers.iter().map(|worker| worker.pid).collect();
    for pid in pids {
        cluster.kill(pid);
    }
    let events = compare_with_rebuild(&store).await;
    assert!(events >= EVENTS, "{events} events");
    println!(
        "{test}: {KILLS} takeovers after SIGKILL with a lease time of {LEASE_TIME:?} \
         (kill -> the new holder's first applied batch):"
    );
    for (token, took) in &takeovers {
        println!("  token {token}: {took:?}");
    }
    let grants = holder(&store).await.map_or(0, |(_, token)| token);
    println!("  {grants} grants of the lease in all for {KILLS} kills (the rest: holders that lost it under load)");
    let mut sorted: Vec<_> = takeovers.iter().map(|(_, took)| *took).collect();
    sorted.sort();
    println!(
        "  median {:?}, max {:?}",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    store.close().await;
}

/// The SIGSTOP run: the holder is stopped until another worker took its lease and applied
/// more events, then continued: it writes nothing (its fenced writes fail), and the durable
/// state still equals a rebuild with every event applied once.
async fn stopped_holder(test: &'static str, url: String, schema: Option<String>) {
    let store = open_store(&url, schema.as_deref()).await;
    let mut cluster = Cluster::new(test, url, schema);
    let first = cluster.spawn();
    let writing = {
        let store = store.clone();
        tokio::spawn(async move { write_events(&store, 3_000, 2, Duration::from_millis(20)).await })
    };
    let (pid, token, _) = cluster
        .applied_after(0, Duration::from_secs(30))
        .expect("the first worker takes the lease");
    assert_eq!(pid, first);
    Cluster::signal(first, Signal::STOP);
    let second = cluster.spawn();
    // Stopped inside a fenced write, the holder keeps the lease row locked until the
    // PostgreSQL server ends its idle transaction, after the store's statement bound (30 s by
    // default): the takeover may wait that long on top of the lease time.
    let (taker, new_token, _) = cluster
        .applied_after(token, Duration::from_secs(90))
        .expect("the second worker takes the stopped holder's lease");
    assert_eq!(taker, second);
    assert!(new_token > token);
    // Let the new holder save past what the stopped one had, then wake the stopped one.
    tokio::time::sleep(LEASE_TIME).await;
    Cluster::signal(first, Signal::CONT);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lost = loop {
        let lost = cluster
            .reports
            .lock()
            .unwrap()
            .lost
            .iter()
            .find(|(pid, lost_token, _)| *pid == first && *lost_token == token)
            .copied();
        if let Some(lost) = lost {
            break lost;
        }
        assert!(
            Instant::now() < deadline,
            "the continued holder notices it lost its lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        lost.2 >= 1,
        "the continued holder's writes were fenced off (it tried to save and was refused)"
    );
    assert_eq!(
        holder(&store).await.map(|(pid, _)| pid),
        Some(second),
        "the lease stays with the new holder"
    );
    writing.await.unwrap();
    check_exactly_once(&store).await;
    let pids: Vec<u32> = cluster.workers.iter().map(|worker| worker.pid).collect();
    for pid in pids {
        cluster.kill(pid);
    }
    compare_with_rebuild(&store).await;
    store.close().await;
}

/// Turns this process into a worker when it was started as one.
fn worker_if_asked() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        worker_process(&url);
    }
}

/// Runs `body` as the parent.
fn run_test(body: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

#[test]
fn sqlite_lease_failover_under_sigkill() {
    worker_if_asked();
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("events.db").display());
    run_test(failover("sqlite_lease_failover_under_sigkill", url, None));
}

#[test]
fn sqlite_fenced_sigstopped_holder_writes_nothing() {
    worker_if_asked();
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("events.db").display());
    run_test(stopped_holder(
        "sqlite_fenced_sigstopped_holder_writes_nothing",
        url,
        None,
    ));
}

#[test]
fn postgres_lease_failover_under_sigkill() {
    worker_if_asked();
    let Some(schema) = postgres_support::TestSchema::new("lease_failover") else {
        return;
    };
    let (url, name) = (schema.url().to_owned(), schema.name().to_owned());
    run_test(failover(
        "postgres_lease_failover_under_sigkill",
        url,
        Some(name),
    ));
}

#[test]
fn postgres_fenced_sigstopped_holder_writes_nothing() {
    worker_if_asked();
    let Some(schema) = postgres_support::TestSchema::new("lease_sigstop") else {
        return;
    };
    let (url, name) = (schema.url().to_owned(), schema.name().to_owned());
    run_test(stopped_holder(
        "postgres_fenced_sigstopped_holder_writes_nothing",
        url,
        Some(name),
    ));
}
