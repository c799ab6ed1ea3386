//! A PostgreSQL store never hangs: a server that accepts TCP and never answers, and a network
//! that freezes mid-run, give a typed `StoreError::Connection` within the configured bounds
//! (here 1 s), checked only against a generous outer bound, never timed.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`) for the proxy tests; without it they say
//! they were skipped. The black-hole tests need no server.

mod postgres_support;

use std::future::Future;
use std::time::Duration;

use es_core::store::postgres::{AppendEnding, Postgres, PostgresOptions};
use es_core::{EventStore, ExpectedVersion, GlobalPosition, StoreError, VersionRange};
use postgres_support::proxy::{BlackHole, Mode, Proxy};
use postgres_support::{events, idle_in_transaction, stream, with_application_name, TestSchema};

/// The configured bound of every test.
const BOUND: Duration = Duration::from_secs(1);
/// How long a test waits before calling the store hung.
const OUTER: Duration = Duration::from_secs(30);
/// A URL whose credentials and database are never checked (the black hole never asks).
const SOMEWHERE: &str = "postgres://nobody:nothing@127.0.0.1:5432/none";

/// Awaits `operation`, which must fail with `StoreError::Connection` before [`OUTER`]; the
/// error's description.
async fn connection_error<T: std::fmt::Debug>(
    what: &str,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> String {
    let Ok(result) = tokio::time::timeout(OUTER, Box::pin(operation)).await else {
        panic!("{what} hung for {OUTER:?} with a bound of {BOUND:?}");
    };
    match result {
        Ok(value) => panic!("{what} succeeded ({value:?}) where it should fail"),
        Err(error @ StoreError::Connection(_)) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
        Err(other) => panic!("{what} must be StoreError::Connection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_is_a_connection_error() {
    let hole = BlackHole::start().await;
    let options = PostgresOptions::new(hole.url(SOMEWHERE)).with_connect_timeout(BOUND);
    let error = connection_error(
        "connecting to a black hole",
        Postgres::connect_with(options),
    )
    .await;
    assert!(error.contains("opening a connection"), "{error}");
}

#[tokio::test]
async fn the_urls_connect_timeout_bounds_the_handshake_too() {
    let hole = BlackHole::start().await;
    // `connect_timeout` in the URL, in seconds, as libpq reads it: no option set in code.
    let url = format!("{}?connect_timeout=1", hole.url(SOMEWHERE));
    connection_error("connecting to a black hole", Postgres::connect(url)).await;
}

#[tokio::test]
async fn zero_time_bounds_are_configuration_errors() {
    for options in [
        PostgresOptions::new(SOMEWHERE).with_connect_timeout(Duration::ZERO),
        PostgresOptions::new(SOMEWHERE).with_pool_wait_timeout(Duration::ZERO),
        PostgresOptions::new(SOMEWHERE).with_statement_timeout(Duration::ZERO),
    ] {
        let error = Postgres::connect_with(options).await.unwrap_err();
        assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    }
}

/// A store in `schema` reached through `proxy`, every bound at [`BOUND`].
async fn store_through(proxy: &Proxy, schema: &TestSchema, pool_size: usize) -> Postgres {
    Postgres::connect_with(
        PostgresOptions::new(proxy.url(schema.url()))
            .with_schema(schema.name())
            .with_pool_size(pool_size)
            .with_connect_timeout(BOUND)
            .with_pool_wait_timeout(BOUND)
            .with_statement_timeout(BOUND),
    )
    .await
    .expect("the store connects through the proxy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_frozen_mid_run_fails_every_operation_and_the_store_recovers() {
    let Some(schema) = TestSchema::new("frozen_network") else {
        return;
    };
    let proxy = Proxy::start(schema.url()).await;
    let store = store_through(&proxy, &schema, 2).await;
    let order = stream("order", 1);
    store
        .append(&order, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();

    proxy.set_mode(Mode::Frozen);
    let batch = events(2);
    connection_error(
        "an append on a frozen network",
        store.append(&order, ExpectedVersion::Any, batch.clone()),
    )
    .await;
    connection_error(
        "read_stream on a frozen network",
        store.read_stream(&order, VersionRange::all()),
    )
    .await;
    connection_error(
        "read_all on a frozen network",
        store.read_all(GlobalPosition::START, 10),
    )
    .await;
    connection_error("last_position on a frozen network", store.last_position()).await;
    connection_error(
        "connecting on a frozen network",
        Postgres::connect_with(
            PostgresOptions::new(proxy.url(schema.url()))
                .with_schema(schema.name())
                .with_connect_timeout(BOUND),
        ),
    )
    .await;

    // The network comes back. The frozen append's bytes may still reach the server (as on a
    // real network), so its outcome is unknown: sending the same batch again is safe.
    proxy.set_mode(Mode::Forward);
    let retried = tokio::time::timeout(
        OUTER,
        store.append(
            &order,
            ExpectedVersion::Exact(es_core::Version(1)),
            batch.clone(),
        ),
    )
    .await
    .expect("the store answers once the network is back")
    .expect("the batch is stored, once");
    assert_eq!(retried.version, es_core::Version(3));
    let direct = schema.store().await;
    let stored = direct
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "one copy of the frozen batch");
    assert_eq!(stored[1].event_id, batch[0].event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_pooled_connection_is_bounded() {
    let Some(schema) = TestSchema::new("pool_wait") else {
        return;
    };
    let name = format!("held_{}", schema.name());
    let store = Postgres::connect_with(
        PostgresOptions::new(with_application_name(schema.url(), &name))
            .with_schema(schema.name())
            .with_pool_size(1)
            .with_pool_wait_timeout(BOUND),
    )
    .await
    .unwrap();
    // The only connection is held by an append that keeps its transaction open.
    let holder = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append_ending(
                    &stream("order", 1),
                    ExpectedVersion::NoStream,
                    events(1),
                    AppendEnding::RollBackAfter(Duration::from_mins(10)),
                )
                .await
        }
    });
    idle_in_transaction(&schema.raw().await, &name).await;
    let error = connection_error(
        "a wait for the only pooled connection",
        store.last_position(),
    )
    .await;
    assert!(
        error.contains("waiting for a free pooled connection"),
        "the pool-wait bound ended the wait: {error}"
    );
    // Dropping the holder's future closes its connection, which rolls its transaction back.
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waiting_on_a_lock_held_elsewhere_is_bounded() {
    let Some(schema) = TestSchema::new("lock_wait") else {
        return;
    };
    let name = format!("holder_{}", schema.name());
    // Another node's append holds the stream's lock in an open transaction.
    let holder_store = Postgres::connect_with(
        PostgresOptions::new(with_application_name(schema.url(), &name))
            .with_schema(schema.name())
            .with_pool_size(1),
    )
    .await
    .unwrap();
    let order = stream("order", 1);
    let holder = tokio::spawn({
        let order = order.clone();
        async move {
            holder_store
                .append_ending(
                    &order,
                    ExpectedVersion::NoStream,
                    events(1),
                    AppendEnding::RollBackAfter(Duration::from_mins(10)),
                )
                .await
        }
    });
    idle_in_transaction(&schema.raw().await, &name).await;

    let store = Postgres::connect_with(schema.options().with_statement_timeout(BOUND))
        .await
        .unwrap();
    let batch = events(2);
    let error = connection_error(
        "an append queued behind a held stream lock",
        store.append(&order, ExpectedVersion::NoStream, batch.clone()),
    )
    .await;
    assert!(error.contains("round trip"), "{error}");
    // The store goes on with fresh connections: other streams are not held up, and once the
    // holder is gone the same batch goes through (stored once).
    store
        .append(&stream("order", 2), ExpectedVersion::NoStream, events(1))
        .await
        .expect("another stream is free");
    holder.abort();
    let _ = holder.await;
    let outcome = tokio::time::timeout(
        OUTER,
        store.append(&order, ExpectedVersion::NoStream, batch),
    )
    .await
    .expect("the lock is released once the holder's connection closes")
    .expect("the batch is stored");
    assert_eq!(outcome.version, es_core::Version(2));
}

/// A session stalled inside a transaction (its process paused, stopped or cut off: emulated by
/// an append held open by its test hook) is ended by the server once it has sat idle for the
/// statement bound, which rolls the transaction back and frees its locks: a writer queued
/// behind it goes through, where before it waited until the stalled process resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_idle_past_the_bound_is_rolled_back_by_the_server() {
    let Some(schema) = TestSchema::new("idle_held") else {
        return;
    };
    let name = format!("stalled_{}", schema.name());
    let stalled_store = Postgres::connect_with(
        PostgresOptions::new(with_application_name(schema.url(), &name))
            .with_schema(schema.name())
            .with_pool_size(1)
            .with_statement_timeout(BOUND),
    )
    .await
    .unwrap();
    let order = stream("order", 1);
    let stalled = tokio::spawn({
        let order = order.clone();
        async move {
            stalled_store
                .append_ending(
                    &order,
                    ExpectedVersion::NoStream,
                    events(1),
                    AppendEnding::CommitAfter(Duration::from_mins(10)),
                )
                .await
        }
    });
    idle_in_transaction(&schema.raw().await, &name).await;

    // Queued behind the stalled transaction's stream lock, with the default (30 s) bound.
    let store = schema.store().await;
    let outcome = tokio::time::timeout(
        OUTER,
        store.append(&order, ExpectedVersion::NoStream, events(2)),
    )
    .await
    .expect("the server ends the stalled transaction within its bound")
    .expect("the queued append is stored");
    assert_eq!(outcome.version, es_core::Version(2));
    // The stalled append was rolled back, not committed: the stream holds the queued batch.
    let stored = store
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    stalled.abort();
}
