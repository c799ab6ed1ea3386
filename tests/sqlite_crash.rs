//! Crash safety: a child process appends batches and reports each acknowledged one on its
//! standard output; the parent kills it with SIGKILL at random moments, reopens the store and
//! checks that every acknowledged batch is there and that no batch is partly stored.
//!
//! The child is this same test binary, started with the test's name and an environment
//! variable that switches the test into the child's role.

mod sqlite_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::{EventStore, ExpectedVersion, GlobalPosition, StreamId, Version, VersionRange};
use sqlite_support::{json_event, temporary_store_path, Rng};

/// Set in the child: the store file to append to.
const CHILD_STORE: &str = "ES_SQLITE_CRASH_CHILD_STORE";
/// Set in the child: the first batch id it uses (ids never repeat across children).
const CHILD_FIRST_BATCH: &str = "ES_SQLITE_CRASH_CHILD_FIRST_BATCH";
/// Set in the child: `full` or `normal`.
const CHILD_SYNCHRONOUS: &str = "ES_SQLITE_CRASH_CHILD_SYNCHRONOUS";

/// Streams the child spreads its batches over.
const STREAMS: u64 = 5;
/// Concurrent appenders in the child, so kills also land in the middle of group commits.
const APPENDERS: usize = 4;

#[test]
fn acknowledged_batches_survive_sigkill_with_full_sync() {
    crash_test(
        "acknowledged_batches_survive_sigkill_with_full_sync",
        Synchronous::Full,
        35,
    );
}

#[test]
fn acknowledged_batches_survive_sigkill_with_normal_sync() {
    // NORMAL gives up durability against power loss, not against a crash of the process.
    crash_test(
        "acknowledged_batches_survive_sigkill_with_normal_sync",
        Synchronous::Normal,
        20,
    );
}

/// Runs the parent's side, or, in the child started by it, the child's.
fn crash_test(name: &str, synchronous: Synchronous, kills: usize) {
    if let Ok(path) = std::env::var(CHILD_STORE) {
        child(Path::new(&path));
    }
    parent(name, synchronous, kills);
}

fn synchronous_name(synchronous: Synchronous) -> &'static str {
    match synchronous {
        Synchronous::Full => "full",
        _ => "normal",
    }
}

/// The batch, index and size recorded in each event's payload.
fn payload(batch: u64, index: u64, size: u64) -> String {
    format!(r#"{{"batch":{batch},"index":{index},"size":{size}}}"#)
}

fn parse_payload(bytes: &[u8]) -> (u64, u64, u64) {
    let value: serde_json::Value = serde_json::from_slice(bytes).expect("a batch payload");
    let field = |name: &str| value[name].as_u64().expect("a batch field");
    (field("batch"), field("index"), field("size"))
}

/// Appends random batches forever, printing `ACK <batch> <size>` once each is acknowledged.
fn child(path: &Path) -> ! {
    let first_batch: u64 = std::env::var(CHILD_FIRST_BATCH)
        .expect("the first batch id")
        .parse()
        .expect("a number");
    let synchronous = match std::env::var(CHILD_SYNCHRONOUS).as_deref() {
        Ok("full") => Synchronous::Full,
        _ => Synchronous::Normal,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = Sqlite::open_with(path, SqliteOptions::new().with_synchronous(synchronous))
            .await
            .expect("the child opens the store");
        let next_batch = Arc::new(AtomicU64::new(first_batch));
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|appender| {
                let store = store.clone();
                let next_batch = Arc::clone(&next_batch);
                tokio::spawn(async move {
                    let mut rng =
                        Rng::new(first_batch ^ (appender as u64 + 1).wrapping_mul(0x9E37));
                    loop {
                        let batch = next_batch.fetch_add(1, Ordering::SeqCst);
                        let size = rng.between(1, 20);
                        let stream =
                            StreamId::new("crash", rng.between(0, STREAMS - 1).to_string());
                        let events = (0..size)
                            .map(|index| json_event("Appended", &payload(batch, index, size)))
                            .collect();
                        store
                            .append(&stream, ExpectedVersion::Any, events)
                            .await
                            .expect("the child's appends succeed");
                        let line = format!("ACK {batch} {size}\n");
                        let mut stdout = std::io::stdout().lock();
                        if stdout
                            .write_all(line.as_bytes())
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            // The parent is gone.
                            std::process::exit(0);
                        }
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.await.expect("an appender runs until killed");
        }
    });
    unreachable!("the appenders run until the process is killed")
}

/// Kills the child when dropped, so a failing parent leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent(name: &str, synchronous: Synchronous, kills: usize) {
    let (_directory, path) = temporary_store_path();
    let mut rng = Rng::from_entropy(name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut acknowledged = BTreeMap::new();
    let mut stored_events = 0;
    for round in 0..kills {
        let mut child = Killed(
            Command::new(std::env::current_exe().expect("this test binary"))
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(CHILD_STORE, &path)
                .env(CHILD_FIRST_BATCH, (round as u64 * 1_000_000).to_string())
                .env(CHILD_SYNCHRONOUS, synchronous_name(synchronous))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the child starts"),
        );
        let stdout = child.0.stdout.take().expect("the child's output");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    let mut fields = line.strip_prefix("ACK ")?.split(' ');
                    let batch = fields.next()?.parse::<u64>().ok()?;
                    let size = fields.next()?.parse::<u64>().ok()?;
                    Some((batch, size))
                })
                .collect::<Vec<_>>()
        });

        // Early kills land while the child starts, opens or creates the store.
        std::thread::sleep(Duration::from_millis(rng.between(1, 60)));
        child.0.kill().expect("the child is killed");
        let status = child.0.wait().expect("the child is reaped");
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the child ran until killed ({status})"
        );
        acknowledged.extend(reader.join().expect("the reader thread"));

        stored_events = runtime.block_on(check(&path, &acknowledged, round));
    }
    eprintln!(
        "{name}: {kills} kills, {} batches acknowledged, {stored_events} events stored",
        acknowledged.len()
    );
    assert!(
        !acknowledged.is_empty(),
        "the children acknowledged batches before they were killed"
    );
}

/// Reopens the store and checks it against everything acknowledged so far; returns the
/// number of events stored.
async fn check(path: &Path, acknowledged: &BTreeMap<u64, u64>, round: usize) -> usize {
    let store = Sqlite::open(path)
        .await
        .unwrap_or_else(|error| panic!("round {round}: the store reopens after a kill: {error}"));
    let log = store
        .read_all(GlobalPosition::START, usize::MAX)
        .await
        .expect("the log reads");

    // Every stored batch is whole: its events sit at consecutive positions, indexes 0..size.
    let mut stored: BTreeMap<u64, u64> = BTreeMap::new();
    let mut index_in_log = 0;
    while index_in_log < log.len() {
        let (batch, _, size) = parse_payload(&log[index_in_log].payload);
        let count = usize::try_from(size).unwrap();
        assert!(
            index_in_log + count <= log.len(),
            "round {round}: batch {batch} is cut short at the end of the log"
        );
        for (offset, event) in log[index_in_log..index_in_log + count].iter().enumerate() {
            assert_eq!(
                parse_payload(&event.payload),
                (batch, offset as u64, size),
                "round {round}: batch {batch} is stored whole and in order"
            );
            assert_eq!(event.stream, log[index_in_log].stream);
        }
        assert!(
            stored.insert(batch, size).is_none(),
            "round {round}: batch {batch} is stored twice"
        );
        index_in_log += count;
    }
    for (batch, size) in acknowledged {
        assert_eq!(
            stored.get(batch),
            Some(size),
            "round {round}: acknowledged batch {batch} survived the kill"
        );
    }
    for (index, event) in log.iter().enumerate() {
        assert_eq!(
            event.global_position,
            GlobalPosition(index as u64 + 1),
            "round {round}: positions have no gap"
        );
    }
    for stream in 0..STREAMS {
        let stream = StreamId::new("crash", stream.to_string());
        let events = store
            .read_stream(&stream, VersionRange::all())
            .await
            .expect("each stream reads");
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event.version, Version(index as u64 + 1));
        }
    }
    store.close().await;
    log.len()
}
