//! Gap-safety of the PostgreSQL store's global order under real concurrency: many writers
//! commit transactions of random size and duration (some held open before committing, some
//! rolled back) while a catch-up reader polls `read_all` from its checkpoint. The reader
//! must see every committed event exactly once, in strictly increasing position order, and
//! never an event of a rolled-back transaction.
//!
//! A reader that trusted `WHERE position > checkpoint` alone would skip the events of every
//! transaction that committed after a later one; the delayed commits make that happen many
//! times per run.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it the test says it was skipped.

mod postgres_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use es_core::store::postgres::{AppendEnding, Postgres};
use es_core::{EventStore, ExpectedVersion, GlobalPosition};
use postgres_support::{events, stream, Rng, TestSchema};
use uuid::Uuid;

const WRITERS: usize = 16;
/// Events each writer offers (committed or rolled back); 16 × 6,250 = 100,000.
const EVENTS_PER_WRITER: usize = 6_250;
const MAX_BATCH: usize = 64;
const PAGE: usize = 2_000;

/// What one writer did.
#[derive(Default)]
struct Written {
    committed: Vec<Uuid>,
    rolled_back: Vec<Uuid>,
    delayed_commits: usize,
}

async fn writer(store: Postgres, writer: usize) -> Written {
    let mut rng = Rng::new(writer as u64 + 100);
    let mut written = Written::default();
    let mut offered = 0;
    while offered < EVENTS_PER_WRITER {
        let size = (1 + rng.index(MAX_BATCH)).min(EVENTS_PER_WRITER - offered);
        offered += size;
        let batch = events(size);
        let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
        let roll = rng.below(100);
        let ending = if roll < 4 {
            AppendEnding::RollBackAfter(Duration::from_millis(rng.below(10)))
        } else if roll < 12 {
            AppendEnding::CommitAfter(Duration::from_millis(1 + rng.below(25)))
        } else {
            AppendEnding::Commit
        };
        let target = stream("account", format!("{writer}-{}", rng.below(4)));
        store
            .append_ending(&target, ExpectedVersion::Any, batch, ending)
            .await
            .expect("an append with ExpectedVersion::Any succeeds");
        match ending {
            AppendEnding::RollBackAfter(_) => written.rolled_back.extend(ids),
            AppendEnding::CommitAfter(_) => {
                written.delayed_commits += 1;
                written.committed.extend(ids);
            }
            AppendEnding::Commit => written.committed.extend(ids),
        }
    }
    written
}

/// What the catch-up reader saw.
struct Seen {
    ids: Vec<Uuid>,
    /// Non-empty pages read while writers were still running.
    pages_during_writes: usize,
}

async fn catch_up_reader(store: Postgres, writers_done: Arc<AtomicBool>) -> Seen {
    let mut checkpoint = GlobalPosition::START;
    let mut seen = Seen {
        ids: Vec::new(),
        pages_during_writes: 0,
    };
    loop {
        // Read the flag first: if every writer had finished before this read, the read
        // below must find everything that is left.
        let finished = writers_done.load(Ordering::SeqCst);
        let page = store
            .read_all(checkpoint, PAGE)
            .await
            .expect("read_all succeeds");
        if page.is_empty() {
            if finished {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        if !finished {
            seen.pages_during_writes += 1;
        }
        for event in page {
            assert!(
                event.global_position > checkpoint,
                "read_all went back from position {checkpoint} to {}",
                event.global_position
            );
            checkpoint = event.global_position;
            seen.ids.push(event.event_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catch_up_reader_sees_every_committed_event_once_in_order() {
    let Some(schema) = TestSchema::new("gap_safety") else {
        return;
    };
    let store = Postgres::connect_with(schema.options().with_pool_size(WRITERS + 4))
        .await
        .expect("the test server accepts a store");
    let writers_done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(catch_up_reader(store.clone(), writers_done.clone()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(store.clone(), w)))
        .collect();
    let mut committed = HashSet::new();
    let mut rolled_back = HashSet::new();
    let mut delayed_commits = 0;
    for task in writers {
        let written = task.await.expect("a writer finishes");
        committed.extend(written.committed);
        rolled_back.extend(written.rolled_back);
        delayed_commits += written.delayed_commits;
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("the reader finishes");

    let seen_set: HashSet<Uuid> = seen.ids.iter().copied().collect();
    assert_eq!(
        seen_set.len(),
        seen.ids.len(),
        "the reader saw an event twice"
    );
    let rolled_back_seen = seen_set.intersection(&rolled_back).count();
    assert_eq!(
        rolled_back_seen, 0,
        "the reader saw events of rolled-back transactions"
    );
    let missed = committed.difference(&seen_set).count();
    assert_eq!(missed, 0, "the reader skipped {missed} committed events");
    assert_eq!(seen_set, committed);

    // The run exercised what it claims to: concurrent reading, delayed commits, rollbacks.
    assert!(
        seen.pages_during_writes > 0,
        "the reader never overlapped the writers"
    );
    assert!(delayed_commits > 0 && !rolled_back.is_empty());
    println!(
        "gap safety: {} events committed, {} rolled back, {delayed_commits} delayed commits, \
         {} pages read while writing",
        committed.len(),
        rolled_back.len(),
        seen.pages_during_writes
    );
}
