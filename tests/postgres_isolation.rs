//! The PostgreSQL store keeps its contract whatever the server's default isolation level: a
//! database or role configured with `default_transaction_isolation = 'repeatable read'` must
//! not turn a stream lock wait into a spurious conflict, nor make concurrent connects fail.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod postgres_support;

use std::time::Duration;

use es_core::store::postgres::{AppendEnding, Postgres, PostgresOptions};
use es_core::{EventStore, ExpectedVersion, Version, VersionRange};
use postgres_support::{events, idle_in_transaction, raw_client, stream, TestSchema};

/// `url` with every session defaulting to `REPEATABLE READ` transactions and named
/// `application_name`.
fn repeatable_read_url(url: &str, application_name: &str) -> String {
    let options = "options=-c%20default_transaction_isolation%3Drepeatable%5C%20read";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{options}&application_name={application_name}")
    } else {
        format!(
            "{url} options='-c default_transaction_isolation=repeatable\\\\ read' \
             application_name={application_name}"
        )
    }
}

fn repeatable_read_options(schema: &TestSchema, application_name: &str) -> PostgresOptions {
    PostgresOptions::new(repeatable_read_url(schema.url(), application_name))
        .with_schema(schema.name())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_waited_for_the_stream_lock_sees_the_commit_it_waited_for() {
    let Some(schema) = TestSchema::new("rr_waiting_append") else {
        return;
    };
    let holder_name = format!("es_rr_holder_{}", &schema.name()[schema.name().len() - 8..]);
    let holder = Postgres::connect_with(repeatable_read_options(&schema, &holder_name))
        .await
        .expect("the test server accepts a store");
    let waiter = Postgres::connect_with(repeatable_read_options(&schema, "es_rr_waiter"))
        .await
        .expect("the test server accepts a store");

    // The sessions really default to REPEATABLE READ.
    let watcher = raw_client(&repeatable_read_url(schema.url(), "es_rr_watcher")).await;
    let level: String = watcher
        .query_one("SHOW default_transaction_isolation", &[])
        .await
        .expect("SHOW runs")
        .get(0);
    assert_eq!(level, "repeatable read");

    let orders = stream("order", 1);
    // The holder appends and keeps its transaction (and the stream lock) open for a while.
    let held = {
        let holder = holder.clone();
        let orders = orders.clone();
        tokio::spawn(async move {
            holder
                .append_ending(
                    &orders,
                    ExpectedVersion::Any,
                    events(1),
                    AppendEnding::CommitAfter(Duration::from_millis(500)),
                )
                .await
        })
    };
    idle_in_transaction(&watcher, &holder_name).await;

    // This append queues behind the holder's stream lock; once it gets the lock it must see
    // the holder's event, not a snapshot from before it.
    let second = waiter
        .append(&orders, ExpectedVersion::Any, events(1))
        .await
        .expect("an append expecting any version never conflicts");
    let first = held
        .await
        .expect("the holder task finishes")
        .expect("the holder's append commits");
    assert_eq!(first.version, Version(1));
    assert_eq!(second.version, Version(2));
    assert!(second.position > first.position);

    let stored = waiter
        .read_stream(&orders, VersionRange::all())
        .await
        .expect("the stream reads");
    assert_eq!(stored.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_connecting_at_once_under_repeatable_read_all_get_the_store() {
    let Some(schema) = TestSchema::new("rr_concurrent_connect") else {
        return;
    };
    let connecting: Vec<_> = (0..8)
        .map(|node| {
            let options = repeatable_read_options(&schema, &format!("es_rr_node_{node}"));
            tokio::spawn(Postgres::connect_with(options))
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connecting {
        stores.push(
            connect
                .await
                .expect("the connect task finishes")
                .expect("every node gets the store, whoever created the tables"),
        );
    }
    let outcome = stores[0]
        .append(&stream("order", 1), ExpectedVersion::NoStream, events(2))
        .await
        .expect("the store accepts an append");
    assert_eq!(outcome.version, Version(2));
}
