//! Idempotent appends on PostgreSQL beyond the conformance suite: the same ids raced into
//! different streams (which do not share a stream lock), the upgrade of a schema-1 store, and
//! the refusal of a store holding an id twice.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod postgres_support;

use std::sync::Arc;

use es_core::store::postgres::Postgres;
use es_core::{EventStore, ExpectedVersion, GlobalPosition, StoreError, VersionRange};
use postgres_support::{events, stream, TestSchema};
use tokio::sync::Barrier;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_one_batch_raced_into_many_streams_is_stored_once() {
    const TASKS: usize = 12;
    let Some(schema) = TestSchema::new("idempotent_race") else {
        return;
    };
    let store = schema.store().await;
    for round in 0..4 {
        let batch = events(3);
        let barrier = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, batch, barrier) = (store.clone(), batch.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    let target = stream("race", format!("{round}-{task}"));
                    barrier.wait().await;
                    (
                        target.clone(),
                        store
                            .append(&target, ExpectedVersion::NoStream, batch)
                            .await,
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (target, result) = task.await.unwrap();
            match result {
                Ok(outcome) => winners.push((target, outcome)),
                Err(StoreError::DuplicateEventIds(refused)) => {
                    assert_eq!(refused.stream, target);
                    assert_eq!(refused.duplicates.len(), 3, "every id is taken");
                }
                Err(other) => panic!("expected success or DuplicateEventIds, got {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one stream gets the batch");
        let (winner, outcome) = &winners[0];
        let stored = store
            .read_stream(winner, VersionRange::all())
            .await
            .unwrap();
        assert_eq!(stored.len(), 3);
        assert_eq!(stored[2].global_position, outcome.position);
    }
    let log = store.read_all(GlobalPosition::START, 1_000).await.unwrap();
    assert_eq!(log.len(), 4 * 3, "one copy of each batch");
}

/// Turns the store in `schema` into one of schema version 1: the current one without the
/// unique constraint on event ids (version 2) and the `leases` table (version 3).
async fn make_schema_1(schema: &TestSchema) {
    schema
        .raw()
        .await
        .batch_execute(&format!(
            "ALTER TABLE \"{0}\".events DROP CONSTRAINT events_event_id_key;
             DROP TABLE \"{0}\".leases;
             UPDATE \"{0}\".meta SET value = '1' WHERE key = 'schema_version';",
            schema.name()
        ))
        .await
        .unwrap();
}

async fn schema_version(schema: &TestSchema) -> String {
    schema
        .raw()
        .await
        .query_one(
            &format!(
                "SELECT value FROM \"{}\".meta WHERE key = 'schema_version'",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn idempotent_ids_schema_1_store_is_upgraded_on_connect() {
    let Some(schema) = TestSchema::new("idempotent_upgrade") else {
        return;
    };
    let order = stream("order", 1);
    let batch = events(2);
    let store = schema.store().await;
    let original = store
        .append(&order, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    store.close().await;
    make_schema_1(&schema).await;
    assert_eq!(schema_version(&schema).await, "1");

    let store: Postgres = schema.store().await;
    assert_eq!(schema_version(&schema).await, "3");
    assert_eq!(
        store
            .append(&order, ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap(),
        original,
        "the upgraded store answers a retry"
    );
    let error = store
        .append(&stream("order", 2), ExpectedVersion::NoStream, batch)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::DuplicateEventIds(_)),
        "{error:?}"
    );
    let constraints: i64 = schema
        .raw()
        .await
        .query_one(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname = $1 AND c.conname = 'events_event_id_key'",
            &[&schema.name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(constraints, 1, "the database itself keeps ids unique");
}

#[tokio::test]
async fn idempotent_ids_upgrade_refuses_a_store_holding_an_id_twice() {
    let Some(schema) = TestSchema::new("idempotent_refused") else {
        return;
    };
    let order = stream("order", 1);
    let batch = events(2);
    let twice = batch[1].event_id;
    let store = schema.store().await;
    store
        .append(&order, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    store.close().await;
    make_schema_1(&schema).await;
    // What a retry of an older release could leave: the second event stored again.
    schema
        .raw()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{0}\".events (aggregate_type, aggregate_id, version, event_id,
                     event_type, schema_version, codec, payload, metadata, recorded_at)
                 SELECT aggregate_type, aggregate_id, 3, event_id, event_type, schema_version,
                     codec, payload, metadata, recorded_at
                 FROM \"{0}\".events WHERE version = 2",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap();

    let error = Postgres::connect_with(schema.options()).await.unwrap_err();
    match &error {
        StoreError::Migration {
            from, to, reason, ..
        } => {
            assert_eq!((*from, *to), (1, 3));
            assert!(reason.contains(&twice.to_string()), "{reason}");
            assert!(reason.contains("2 copies"), "{reason}");
        }
        other => panic!("expected StoreError::Migration, got {other:?}"),
    }
    assert_eq!(
        schema_version(&schema).await,
        "1",
        "the store is left as it was"
    );
    let rows: i64 = schema
        .raw()
        .await
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".events", schema.name()),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
}
