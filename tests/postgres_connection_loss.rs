//! Losing the connection in the middle of an append: the server ends the session
//! (`pg_terminate_backend`) while the append's transaction is open. The append must fail
//! with a typed connection error, store nothing of its batch, and the store must go on
//! working with fresh connections. And losing it after the commit, before the reply: a retry
//! of the same batch stores nothing new.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod postgres_support;

use std::time::Duration;

use es_core::store::postgres::{AppendEnding, Postgres, PostgresOptions};
use es_core::{
    AppendOutcome, EventStore, ExpectedVersion, GlobalPosition, StoreError, Version, VersionRange,
};
use postgres_support::proxy::{Mode, Proxy};
use postgres_support::{events, idle_in_transaction, stream, with_application_name, TestSchema};

/// A store in `schema` whose sessions are named `name` in `pg_stat_activity`.
async fn named_store(schema: &TestSchema, name: &str, pool_size: usize) -> Postgres {
    Postgres::connect_with(
        PostgresOptions::new(with_application_name(schema.url(), name))
            .with_schema(schema.name())
            .with_pool_size(pool_size),
    )
    .await
    .expect("the test server accepts a store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_mid_append_fails_typed_and_stores_nothing() {
    let Some(schema) = TestSchema::new("killed_mid_append") else {
        return;
    };
    let name = format!("doomed_{}", schema.name());
    let store = named_store(&schema, &name, 2).await;
    let order = stream("order", 1);
    store
        .append(&order, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let before = store.last_position().await.unwrap();

    // The append inserts its batch, then waits before committing.
    let doomed = tokio::spawn({
        let (store, order) = (store.clone(), order.clone());
        async move {
            store
                .append_ending(
                    &order,
                    ExpectedVersion::Exact(Version(2)),
                    events(50),
                    AppendEnding::CommitAfter(Duration::from_secs(2)),
                )
                .await
        }
    });
    let admin = schema.raw().await;
    let pid = idle_in_transaction(&admin, &name).await;
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    let error = doomed.await.unwrap().unwrap_err();
    assert!(
        matches!(error, StoreError::Connection(_)),
        "a lost connection must be StoreError::Connection, got {error:?}"
    );
    assert!(!error.is_conflict());

    // Nothing of the batch is stored, and readers are not held back by it.
    let read = store
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(
        read.len(),
        2,
        "the killed append must leave no event behind"
    );
    assert_eq!(store.last_position().await.unwrap(), before);
    assert_eq!(
        store
            .read_all(GlobalPosition::START, 100)
            .await
            .unwrap()
            .len(),
        2
    );

    // The store goes on: the same version is still free.
    let outcome = store
        .append(&order, ExpectedVersion::Exact(Version(2)), events(1))
        .await
        .unwrap();
    assert_eq!(outcome.version, Version(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_sessions_were_killed_recovers_without_partial_writes() {
    let Some(schema) = TestSchema::new("killed_idle_sessions") else {
        return;
    };
    let name = format!("pool_{}", schema.name());
    let store = named_store(&schema, &name, 4).await;
    let order = stream("order", 1);
    // Open every pooled connection, then have the server end all of them.
    let warm: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(&stream("warm", i), ExpectedVersion::Any, events(1))
                    .await
            })
        })
        .collect();
    for task in warm {
        task.await.unwrap().unwrap();
    }
    let admin = schema.raw().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1) AS killed",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed > 0);

    // Each append either works or fails as a connection error (a pooled connection may not
    // know yet that it is dead); none writes part of its batch.
    let mut acknowledged = 0;
    let mut connection_errors = 0;
    for _ in 0..8 {
        match store.append(&order, ExpectedVersion::Any, events(5)).await {
            Ok(_) => acknowledged += 1,
            Err(StoreError::Connection(_)) => connection_errors += 1,
            Err(error) => panic!("expected success or a connection error, got {error:?}"),
        }
    }
    assert!(
        connection_errors <= 4,
        "only the killed connections may fail"
    );
    assert!(acknowledged >= 4);
    let read = store
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(
        read.len(),
        acknowledged * 5,
        "every batch is whole or absent"
    );
}

/// The reply to a committed append is lost: the proxy forwards the append (BEGIN ... COMMIT)
/// to the server and swallows every answer, the server commits, then the connection is cut.
/// The append fails with a connection error (its outcome unknown to the caller); sending the
/// same batch again returns the original outcome, and the store holds one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retry_after_a_reply_lost_past_the_commit_stores_one_copy() {
    let Some(schema) = TestSchema::new("reply_lost") else {
        return;
    };
    let proxy = Proxy::start(schema.url()).await;
    let store = Postgres::connect_with(
        PostgresOptions::new(proxy.url(schema.url()))
            .with_schema(schema.name())
            .with_pool_size(1),
    )
    .await
    .expect("the store connects through the proxy");
    let direct = schema.store().await;
    // Warm the only connection: its statements are prepared, so the append below is one
    // pipeline the proxy forwards whole.
    store
        .append(&stream("warm", 1), ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();

    let order = stream("order", 1);
    let batch = events(3);
    proxy.set_mode(Mode::SwallowReplies);
    let lost = tokio::spawn({
        let (store, order, batch) = (store.clone(), order.clone(), batch.clone());
        async move { store.append(&order, ExpectedVersion::NoStream, batch).await }
    });
    // Wait (on another connection) until the server has committed the batch.
    let mut committed = Vec::new();
    for _ in 0..4_000 {
        committed = direct
            .read_stream(&order, VersionRange::all())
            .await
            .unwrap();
        if !committed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(committed.len(), 3, "the server committed the batch");
    proxy.cut_connections();
    proxy.set_mode(Mode::Forward);
    let error = lost.await.unwrap().unwrap_err();
    assert!(
        error.is_connection(),
        "a reply lost with its connection is StoreError::Connection, got {error:?}"
    );

    // The caller cannot know the batch was stored: it sends it again.
    let retried = store
        .append(&order, ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("the retry is answered with the stored batch's outcome");
    assert_eq!(
        retried,
        AppendOutcome {
            version: Version(3),
            position: committed[2].global_position,
        }
    );
    let stored = direct
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(stored, committed, "one copy, unchanged");
    assert_eq!(
        direct
            .read_all(GlobalPosition::START, 100)
            .await
            .unwrap()
            .len(),
        4,
        "the warm-up event and one copy of the batch"
    );
}
