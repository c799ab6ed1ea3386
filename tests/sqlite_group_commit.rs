//! Group commit: requests queued together run in one transaction, each in its own savepoint,
//! so a conflicting batch is rolled back alone and the others are kept; a group whose
//! transaction is lost reports every request in it as failed.

mod sqlite_support;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use es_core::store::sqlite::Sqlite;
use es_core::{
    AppendOutcome, CodecId, EventStore, ExpectedVersion, GlobalPosition, Snapshot, SnapshotStore,
    StoreError, StreamId, Timestamp, Version, VersionRange,
};
use sqlite_support::{json_event, raw_connection, temporary_store_path};

type Pending<'a> = Pin<Box<dyn Future<Output = Result<AppendOutcome, StoreError>> + Send + 'a>>;

/// Polls `future` once, which queues its request with the writer.
async fn queue<F: Future + Unpin>(future: &mut F) {
    std::future::poll_fn(|context| {
        assert!(
            Pin::new(&mut *future).poll(context).is_pending(),
            "the request waits for the writer, held up by the outside lock"
        );
        Poll::Ready(())
    })
    .await;
}

fn events(count: usize) -> Vec<es_core::NewEvent> {
    (0..count)
        .map(|index| json_event("Happened", &format!(r#"{{"index":{index}}}"#)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_batch_in_a_group_is_rolled_back_alone() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|id| StreamId::new("group", id));
    store
        .append(&b, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();

    // Another connection holds the write lock, so every request below queues up behind it
    // and the writer commits them together once the lock is released.
    let blocker = raw_connection(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut pending: Vec<Pending<'_>> = vec![
        Box::pin(store.append(&a, ExpectedVersion::NoStream, events(3))),
        Box::pin(store.append(&b, ExpectedVersion::Exact(Version(5)), events(2))),
        Box::pin(store.append(&c, ExpectedVersion::Any, events(1))),
        Box::pin(store.append(&d, ExpectedVersion::NoStream, events(2))),
        Box::pin(store.append(&d, ExpectedVersion::NoStream, events(4))),
        Box::pin(store.append(&b, ExpectedVersion::Exact(Version(1)), events(1))),
    ];
    let snapshot = Snapshot {
        stream: a.clone(),
        version: Version(3),
        fingerprint: 7,
        codec: CodecId::Json,
        state: b"{}".to_vec(),
        taken_at: Timestamp::EPOCH,
    };
    let mut saving = Box::pin(store.save_snapshot(snapshot.clone()));
    for request in &mut pending {
        queue(request).await;
    }
    queue(&mut saving).await;
    blocker.execute_batch("COMMIT").unwrap();

    let mut results = Vec::new();
    for request in pending {
        results.push(request.await);
    }
    saving.await.expect("the snapshot is saved");

    assert_eq!(results[0].as_ref().unwrap().version, Version(3));
    let conflict = results[1]
        .as_ref()
        .unwrap_err()
        .as_conflict()
        .expect("a conflict");
    assert_eq!(conflict.expected, ExpectedVersion::Exact(Version(5)));
    assert_eq!(conflict.actual, Some(Version(1)));
    assert_eq!(results[2].as_ref().unwrap().version, Version(1));
    let (won, lost) = match (&results[3], &results[4]) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won.version, lost),
        other => panic!("exactly one NoStream append to `d` wins: {other:?}"),
    };
    assert!(won == Version(2) || won == Version(4));
    assert_eq!(lost.as_conflict().unwrap().actual, Some(won));
    assert_eq!(results[5].as_ref().unwrap().version, Version(2));

    // The rolled-back batch left no trace: the log is gap-free and holds exactly the winners.
    let log = store.read_all(GlobalPosition::START, 100).await.unwrap();
    assert_eq!(log.len() as u64, 1 + 3 + 1 + won.get() + 1);
    for (index, event) in log.iter().enumerate() {
        assert_eq!(event.global_position, GlobalPosition(index as u64 + 1));
    }
    for (stream, length) in [(&a, 3), (&b, 2), (&c, 1), (&d, won.get())] {
        let events = store
            .read_stream(stream, VersionRange::all())
            .await
            .unwrap();
        assert_eq!(events.len() as u64, length, "{stream}");
    }
    assert_eq!(store.load_snapshot(&a).await.unwrap(), Some(snapshot));
}

#[tokio::test]
async fn a_large_batch_is_one_atomic_append() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let stream = StreamId::new("bulk", "1");
    let outcome = store
        .append(&stream, ExpectedVersion::NoStream, events(5_000))
        .await
        .unwrap();
    assert_eq!(outcome.version, Version(5_000));
    assert_eq!(outcome.position, GlobalPosition(5_000));
    let middle = store
        .read_stream(
            &stream,
            VersionRange {
                from: Version(2_000),
                to: Version(2_010),
            },
        )
        .await
        .unwrap();
    let versions: Vec<u64> = middle.iter().map(|event| event.version.get()).collect();
    assert_eq!(versions, (2_000..=2_010).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_group_that_cannot_begin_fails_whole_and_the_writer_recovers() {
    let (_directory, path) = temporary_store_path();
    let store = es_core::store::sqlite::Sqlite::open_with(
        &path,
        es_core::store::sqlite::SqliteOptions::new()
            .with_busy_timeout(std::time::Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let stream = StreamId::new("locked", "1");

    // Another process holds the write lock for longer than the store waits.
    let blocker = raw_connection(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let error = store
        .append(&stream, ExpectedVersion::NoStream, events(2))
        .await
        .expect_err("the write lock is not available");
    assert!(matches!(error, StoreError::Backend(_)), "got {error:?}");
    assert!(
        format!("{:?}", std::error::Error::source(&error)).contains("could not begin"),
        "the cause names the failed transaction: {error:?}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();

    // Nothing of the failed append was written, and the writer serves the next group.
    let outcome = store
        .append(&stream, ExpectedVersion::NoStream, events(2))
        .await
        .expect("the lock is free again");
    assert_eq!(outcome.version, Version(2));
    assert_eq!(outcome.position, GlobalPosition(2));
}

/// A group whose transaction is lost (here: a trigger that rolls back the whole transaction)
/// answers no request with an outcome computed inside it: the appends that went through and
/// the conflicts checked against their uncommitted events are both reported as failed, and
/// the writer serves the next group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_group_reports_no_conflict_against_its_own_rolled_back_events() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let first = StreamId::new("group", "first");
    let shared = StreamId::new("group", "shared");
    let boom = StreamId::new("boom", "1");

    // Any insert into a `boom` stream rolls back the whole transaction it runs in.
    let outside = raw_connection(&path);
    outside
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.aggregate_type = 'boom' \
             BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;",
        )
        .unwrap();
    // Hold the write lock: the writer takes the first request and waits for the lock; the
    // three after it queue up and run together in the next group.
    outside.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut waiting: Pending<'_> = Box::pin(store.append(&first, ExpectedVersion::Any, events(1)));
    queue(&mut waiting).await;
    // Give the writer time to take that request alone (if it does not, the requests below
    // split differently and the assertions still hold; only the case under test is lost).
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut group: Vec<Pending<'_>> = vec![
        Box::pin(store.append(&shared, ExpectedVersion::NoStream, events(1))),
        Box::pin(store.append(&shared, ExpectedVersion::NoStream, events(2))),
        Box::pin(store.append(&boom, ExpectedVersion::Any, events(1))),
    ];
    for request in &mut group {
        queue(request).await;
    }
    outside.execute_batch("COMMIT").unwrap();

    waiting.await.expect("the first group commits");
    let mut results = Vec::new();
    for request in group {
        results.push(request.await);
    }
    assert!(results[2].is_err(), "the rolled-back insert fails");

    let stored = store
        .read_stream(&shared, VersionRange::all())
        .await
        .unwrap();
    let committed = stored.last().map(|event| event.version);
    for result in &results[..2] {
        match result {
            Ok(outcome) => assert_eq!(Some(outcome.version), committed),
            Err(StoreError::Conflict(conflict)) => assert_eq!(
                conflict.actual, committed,
                "a conflict names a version the stream had, not one rolled back with its group"
            ),
            Err(_) => {}
        }
    }

    // The writer recovered: the next append goes through, after the committed events.
    let next = store
        .append(&shared, ExpectedVersion::Any, events(1))
        .await
        .expect("the writer serves the next group");
    assert_eq!(next.version, Version(committed.map_or(0, Version::get) + 1));
    assert!(next.position > GlobalPosition(1));
}

/// A retry grouped into the same transaction as the append it repeats (a caller that gave up
/// waiting and sent the batch again) finds the batch written by its savepoint's neighbour:
/// it gets the same outcome, and the batch is stored once. A partial overlap in the same
/// group is refused alone; the rest of the group commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_grouped_with_the_append_it_repeats_stores_one_copy() {
    let (_directory, path) = temporary_store_path();
    let store = Sqlite::open(&path).await.unwrap();
    let stream = StreamId::new("group", "retried");
    let other = StreamId::new("group", "other");
    let batch = events(3);
    let mut overlapping = events(1);
    overlapping.push(batch[1].clone());

    let blocker = raw_connection(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut group: Vec<Pending<'_>> = vec![
        Box::pin(store.append(&stream, ExpectedVersion::NoStream, batch.clone())),
        Box::pin(store.append(&stream, ExpectedVersion::NoStream, batch.clone())),
        Box::pin(store.append(&other, ExpectedVersion::NoStream, overlapping)),
        Box::pin(store.append(&stream, ExpectedVersion::Any, batch.clone())),
        Box::pin(store.append(&other, ExpectedVersion::NoStream, events(2))),
    ];
    for request in &mut group {
        queue(request).await;
    }
    blocker.execute_batch("COMMIT").unwrap();
    let mut results = Vec::new();
    for request in group {
        results.push(request.await);
    }

    let original = *results[0]
        .as_ref()
        .expect("the first append stores the batch");
    assert_eq!(original.version, Version(3));
    assert_eq!(results[1].as_ref().ok(), Some(&original), "the retry");
    assert_eq!(
        results[3].as_ref().ok(),
        Some(&original),
        "the retry with Any"
    );
    let refused = results[2]
        .as_ref()
        .unwrap_err()
        .as_duplicate_event_ids()
        .expect("the overlapping batch is refused");
    assert_eq!(refused.duplicates.len(), 1);
    assert_eq!(refused.duplicates[0].event_id, batch[1].event_id);
    assert_eq!(results[4].as_ref().unwrap().version, Version(2));

    let stored = store
        .read_stream(&stream, VersionRange::all())
        .await
        .unwrap();
    let ids: Vec<_> = stored.iter().map(|event| event.event_id).collect();
    let sent: Vec<_> = batch.iter().map(|event| event.event_id).collect();
    assert_eq!(ids, sent, "one copy of the batch");
    let log = store.read_all(GlobalPosition::START, 100).await.unwrap();
    assert_eq!(log.len(), 5, "the batch and the other stream's two events");
    assert_eq!(log[2].global_position, original.position);
}
