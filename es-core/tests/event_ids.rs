//! The event ids `NewEvent::encode` gives: UUID v7, unique across threads and processes,
//! strictly increasing within a process, and stamped with the time they were made.
//!
//! The ids come from a generator seeded once per process from the operating system (not a
//! system call per id), so these tests are what says that seeding is per process and that the
//! counter keeps ids apart within one millisecond.

mod support;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{SystemTime, UNIX_EPOCH};

use es_core::{CodecId, NewEvent};
use support::deposited;
use uuid::{Uuid, Variant};

/// Threads making ids at once.
const THREADS: usize = 8;
/// Ids each thread makes.
const PER_THREAD: usize = 20_000;
/// Child processes making ids at once (with this one).
const PROCESSES: usize = 4;
/// Ids each process makes.
const PER_PROCESS: usize = 20_000;
/// Set in a child process: how many ids to print, one per line.
const CHILD_IDS: &str = "ES_EVENT_IDS_CHILD_COUNT";

fn new_id() -> Uuid {
    NewEvent::encode(&deposited(1, "r"), CodecId::Postcard)
        .expect("the event encodes")
        .event_id
}

fn now_millis() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("milliseconds fit 64 bits")
}

/// The Unix milliseconds in the first 48 bits of a UUID v7.
fn millis_of(id: Uuid) -> u64 {
    u64::try_from(id.as_u128() >> 80).expect("48 bits")
}

#[test]
fn ids_are_unique_across_threads_and_strictly_increase_within_each() {
    let start = Barrier::new(THREADS);
    let per_thread: Vec<Vec<Uuid>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    (0..PER_THREAD).map(|_| new_id()).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("the thread finishes"))
            .collect()
    });

    let mut seen = HashSet::with_capacity(THREADS * PER_THREAD);
    for (thread, ids) in per_thread.iter().enumerate() {
        assert_eq!(ids.len(), PER_THREAD);
        for pair in ids.windows(2) {
            assert!(
                pair[0] < pair[1],
                "thread {thread}: {} is not before {}",
                pair[0],
                pair[1]
            );
        }
        for &id in ids {
            assert_eq!(id.get_version_num(), 7, "{id}");
            assert_eq!(id.get_variant(), Variant::RFC4122, "{id}");
            assert!(
                seen.insert(id),
                "thread {thread} made {id} twice or another thread did"
            );
        }
    }
    assert_eq!(seen.len(), THREADS * PER_THREAD);
}

#[test]
fn ids_carry_the_time_they_were_made_and_later_ids_sort_after_earlier_ones() {
    let before = now_millis();
    let earlier: Vec<Uuid> = (0..1_000).map(|_| new_id()).collect();
    let after = now_millis();
    for &id in &earlier {
        let millis = millis_of(id);
        assert!(
            (before..=after).contains(&millis),
            "{id} is stamped {millis}, made between {before} and {after}"
        );
    }
    // Ids made on other threads after the first batch was made all sort after it.
    let latest_earlier = earlier.iter().max().copied().expect("ids were made");
    let later: Vec<Uuid> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..1_000).map(|_| new_id()).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("the thread finishes"))
            .collect()
    });
    for id in later {
        assert!(id > latest_earlier, "{id} was made after {latest_earlier}");
    }
}

#[test]
fn ids_are_unique_across_processes() {
    if let Ok(count) = std::env::var(CHILD_IDS) {
        let count: usize = count.parse().expect("a count");
        let ids: Vec<String> = (0..count).map(|_| new_id().to_string()).collect();
        println!("ids:{}", ids.join(","));
        return;
    }
    // The children run at the same time as each other and as this process's own ids.
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().expect("this test binary"))
                .args(["--exact", "ids_are_unique_across_processes", "--nocapture"])
                .env(CHILD_IDS, PER_PROCESS.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("the child starts")
        })
        .collect();
    let mut seen: HashSet<Uuid> = (0..PER_PROCESS).map(|_| new_id()).collect();
    assert_eq!(seen.len(), PER_PROCESS);
    for (child, process) in children.into_iter().enumerate() {
        let output = process.wait_with_output().expect("the child finishes");
        assert!(output.status.success(), "child {child}: {output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("ids:"))
            .unwrap_or_else(|| panic!("child {child} printed no ids: {stdout}"));
        let mut count = 0;
        for text in line.split(',') {
            let id: Uuid = text.parse().expect("a UUID");
            assert!(seen.insert(id), "{id} was made by two processes");
            count += 1;
        }
        assert_eq!(count, PER_PROCESS, "child {child}");
    }
}
