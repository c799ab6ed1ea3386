//! A subscription in one process follows the appends of a writer in another process sharing
//! the SQLite file: nothing in the follower's process commits, so only the store's cross-process
//! change check can wake it.
//!
//! The writer is this same test binary, started with the test's name and an environment
//! variable that switches the test into the writer's role.

mod sqlite_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use es_core::store::sqlite::{Sqlite, SqliteOptions};
use es_core::{EventFilter, EventStore, ExpectedVersion, GlobalPosition, StreamId, Subscribe};
use sqlite_support::{json_event, temporary_store_path};

/// Set in the writer: the store file to append to.
const WRITER_STORE: &str = "ES_SQLITE_SUBSCRIPTION_WRITER_STORE";

/// Appends the writer makes, one event of each of two types per append.
const APPENDS: usize = 60;

/// The longest the follower waits for an event that is due before the test fails (a lost
/// wake-up, never a measure of speed).
const DEADLINE: Duration = Duration::from_secs(90);

#[test]
fn subscription_follows_a_writer_in_another_process() {
    if let Ok(path) = std::env::var(WRITER_STORE) {
        writer(Path::new(&path));
        return;
    }
    follower("subscription_follows_a_writer_in_another_process");
}

/// Appends `APPENDS` batches of an `Ordered` and a `Noise` event, numbered in the payload.
fn writer(path: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = Sqlite::open(path)
            .await
            .expect("the writer opens the store");
        let stream = StreamId::new("follow", "writer");
        for number in 0..APPENDS {
            let events = vec![
                json_event("Ordered", &format!(r#"{{"number":{number}}}"#)),
                json_event("Noise", "{}"),
            ];
            store
                .append(&stream, ExpectedVersion::Any, events)
                .await
                .expect("the writer's appends succeed");
        }
        store.close().await;
    });
}

struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn follower(name: &str) {
    let (_directory, path) = temporary_store_path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = Sqlite::open_with(
            &path,
            SqliteOptions::new().with_change_check_interval(Duration::from_millis(10)),
        )
        .await
        .expect("the follower opens (and creates) the store");
        let mut everything = store.subscribe(GlobalPosition::START, EventFilter::all());
        let mut ordered = store.subscribe(
            GlobalPosition::START,
            EventFilter::all().event_type("Ordered"),
        );
        // Let both read the empty log and wait at its head, so what follows arrives live.
        for subscription in [&mut everything, &mut ordered] {
            let nothing =
                tokio::time::timeout(Duration::from_millis(100), subscription.next_batch());
            assert!(nothing.await.is_err(), "the new store holds no events");
        }

        let mut writer = Writer(
            Command::new(std::env::current_exe().expect("this test binary"))
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(WRITER_STORE, &path)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the writer process starts"),
        );

        let mut numbers = Vec::new();
        while numbers.len() < APPENDS {
            let batch = tokio::time::timeout(DEADLINE, ordered.next_batch())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the follower got {} of {APPENDS} events of the other process within \
                         {DEADLINE:?}",
                        numbers.len()
                    )
                })
                .expect("the filtered subscription reads");
            for event in batch {
                assert_eq!(
                    event.event_type, "Ordered",
                    "only events passing the filter"
                );
                let payload: serde_json::Value =
                    serde_json::from_slice(&event.payload).expect("a JSON payload");
                numbers.push(payload["number"].as_u64().expect("a number"));
            }
        }
        assert_eq!(
            numbers,
            (0..APPENDS as u64).collect::<Vec<_>>(),
            "every event of the writer process exactly once, in order"
        );

        let mut positions = Vec::new();
        while positions.len() < 2 * APPENDS {
            let batch = tokio::time::timeout(DEADLINE, everything.next_batch())
                .await
                .unwrap_or_else(|_| panic!("the unfiltered follower stalled"))
                .expect("the subscription reads");
            positions.extend(batch.iter().map(|event| event.global_position.get()));
        }
        assert_eq!(
            positions,
            (1..=2 * APPENDS as u64).collect::<Vec<_>>(),
            "every position of the log exactly once, in order"
        );

        let status = writer.0.wait().expect("the writer process ends");
        assert!(status.success(), "the writer process succeeded ({status})");
        drop((everything, ordered));
        assert_eq!(store.subscription_stats().subscriptions, 0);
        store.close().await;
    });
}
