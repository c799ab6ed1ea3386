//! The PostgreSQL store's own behaviour, beyond the shared conformance suite: connecting and
//! migrating, configuration errors, the visibility rule that makes `read_all` gap-safe, and
//! the values PostgreSQL stores differently from Rust.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod postgres_support;

use std::time::Duration;

use es_core::store::postgres::AppendEnding;
use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::{
    Clock, CodecId, EventStore, ExpectedVersion, GlobalPosition, ManualClock, Metadata, NewEvent,
    ProjectionStore, SavedProjection, Snapshot, SnapshotStore, StoreError, Timestamp, Version,
    VersionRange,
};
use postgres_support::{
    event, events, idle_in_transaction, stream, with_application_name, TestSchema,
};
use uuid::Uuid;

/// Empty metadata as the store writes it, for rows inserted with plain SQL.
fn empty_metadata() -> String {
    serde_json::to_string(&Metadata::default()).unwrap()
}

/// A URL nothing listens on (loopback port 1), for errors that need no server.
const NOWHERE: &str = "postgres://nobody:nothing@127.0.0.1:1/none?connect_timeout=5";

#[tokio::test]
async fn invalid_schema_names_are_configuration_errors() {
    for schema in [
        "",
        "Orders",
        "es; DROP SCHEMA public",
        "x\"y",
        "pg_toast",
        "9lives",
    ] {
        let error = Postgres::connect_with(PostgresOptions::new(NOWHERE).with_schema(schema))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Config(message) if message.contains("schema name")),
            "{schema:?} must be rejected before connecting, got {error:?}"
        );
    }
}

#[tokio::test]
async fn a_zero_pool_or_a_malformed_url_is_a_configuration_error() {
    let error = Postgres::connect_with(PostgresOptions::new(NOWHERE).with_pool_size(0))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    let error = Postgres::connect("postgres://host:not-a-port/db")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let error = Postgres::connect(NOWHERE).await.unwrap_err();
    assert!(matches!(error, StoreError::Connection(_)), "{error:?}");
}

#[tokio::test]
async fn options_never_print_the_password() {
    let options = PostgresOptions::new("postgres://app:hunter2@db/app").with_schema("orders");
    let printed = format!("{options:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("orders"), "{printed}");
}

#[tokio::test]
async fn a_refused_login_is_a_connection_error() {
    let Some(schema) = TestSchema::new("refused_login") else {
        return;
    };
    let config: tokio_postgres::Config = schema.url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let url = format!(
        "host={host} port={} user={} dbname={} password=certainly-wrong",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("es"),
        config.get_dbname().unwrap_or("es_test"),
    );
    let error = Postgres::connect_with(PostgresOptions::new(url).with_schema(schema.name()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Connection(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connecting_creates_the_schema_once_even_from_many_nodes_at_once() {
    let Some(schema) = TestSchema::new("many_nodes_connect") else {
        return;
    };
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let options = schema.options().with_pool_size(2);
            tokio::spawn(Postgres::connect_with(options))
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.unwrap().expect("every node connects"));
    }
    // Every node sees the same store: an append through one reads back through all.
    let stream = stream("order", 1);
    stores[0]
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    for store in &stores {
        assert_eq!(
            store
                .read_stream(&stream, VersionRange::all())
                .await
                .unwrap()
                .len(),
            1
        );
    }
    // Connecting again changes nothing.
    let again = schema.store().await;
    assert_eq!(
        again
            .read_all(GlobalPosition::START, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let raw = schema.raw().await;
    let meta = raw
        .query(
            &format!(
                "SELECT key, value FROM \"{}\".meta ORDER BY key",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap();
    let meta: Vec<(String, String)> = meta.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        meta,
        [
            ("format".to_owned(), "es-core event store".to_owned()),
            ("schema_version".to_owned(), "3".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_store_written_by_a_newer_release_is_refused() {
    let Some(schema) = TestSchema::new("newer_schema") else {
        return;
    };
    drop(schema.store().await);
    schema
        .raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".meta SET value = '7' WHERE key = 'schema_version'",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap();
    let error = Postgres::connect_with(schema.options()).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 7,
                supported: 3
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_schema_holding_other_tables_is_not_a_store() {
    let Some(schema) = TestSchema::new("foreign_tables") else {
        return;
    };
    let raw = schema.raw().await;
    raw.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".events (id int)",
        schema.name()
    ))
    .await
    .unwrap();
    let error = Postgres::connect_with(schema.options()).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::NotAStore { reason, .. } if reason.contains("events")),
        "{error:?}"
    );

    raw.batch_execute(&format!(
        "CREATE TABLE \"{0}\".meta (key text, value text);
         INSERT INTO \"{0}\".meta VALUES ('format', 'something else')",
        schema.name()
    ))
    .await
    .unwrap();
    let error = Postgres::connect_with(schema.options()).await.unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");
}

#[tokio::test]
async fn a_schema_made_ahead_of_time_and_empty_is_used() {
    let Some(schema) = TestSchema::new("premade_schema") else {
        return;
    };
    schema
        .raw()
        .await
        .batch_execute(&format!("CREATE SCHEMA \"{}\"", schema.name()))
        .await
        .unwrap();
    let store = schema.store().await;
    assert_eq!(store.schema(), schema.name());
    assert_eq!(store.last_position().await.unwrap(), GlobalPosition::START);
}

#[tokio::test]
async fn every_field_reads_back_exactly_as_written() {
    let Some(schema) = TestSchema::new("fields_round_trip") else {
        return;
    };
    let clock = ManualClock::new(Timestamp::from_micros(1_700_000_000_123_456));
    let store = schema.store_with_clock(clock.clone()).await;
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with("user", "zoë \u{1F600}")
        .with("nul inside", "a\0b")
        .with("quote\"and\\slash", "line\nbreak");
    let written = vec![
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Everything".into(),
            schema_version: u32::MAX,
            codec: CodecId::Json,
            payload: br#"{"x":1}"#.to_vec(),
            metadata: metadata.clone(),
        },
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Binary".into(),
            schema_version: 0,
            codec: CodecId::Postcard,
            payload: vec![0, 255, 0, 1, 2],
            metadata: Metadata::default(),
        },
        event("Empty", &[]),
    ];
    let order = stream("order with spaces/and slashes", "ünïcode-1");
    store
        .append(&order, ExpectedVersion::NoStream, written.clone())
        .await
        .unwrap();
    let read = store
        .read_stream(&order, VersionRange::all())
        .await
        .unwrap();
    let logged = store.read_all(GlobalPosition::START, 10).await.unwrap();
    assert_eq!(read, logged);
    assert_eq!(read.len(), written.len());
    for (i, (recorded, new)) in read.iter().zip(&written).enumerate() {
        assert_eq!(recorded.event_id, new.event_id);
        assert_eq!(recorded.stream, order);
        assert_eq!(recorded.version, Version(i as u64 + 1));
        assert_eq!(recorded.event_type, new.event_type);
        assert_eq!(recorded.schema_version, new.schema_version);
        assert_eq!(recorded.codec, new.codec);
        assert_eq!(recorded.payload, new.payload);
        assert_eq!(recorded.metadata, new.metadata);
        assert_eq!(recorded.recorded_at, clock.now());
    }
    assert!(read
        .windows(2)
        .all(|w| w[0].global_position < w[1].global_position));
}

#[tokio::test]
async fn text_postgresql_cannot_hold_is_a_typed_error_and_writes_nothing() {
    let Some(schema) = TestSchema::new("nul_text") else {
        return;
    };
    let store = schema.store().await;
    let bad_stream = stream("order", "a\0b");
    let error = store
        .append(&bad_stream, ExpectedVersion::Any, events(1))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("event store backend failed"));
    assert!(store
        .read_stream(&bad_stream, VersionRange::all())
        .await
        .unwrap()
        .is_empty());

    let error = store
        .append(
            &stream("order", 1),
            ExpectedVersion::Any,
            vec![event("Bad\0Type", b"")],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(store
        .read_all(GlobalPosition::START, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.load_projection("a\0b").await.unwrap().is_none());
    assert!(store.load_snapshot(&bad_stream).await.unwrap().is_none());
}

#[tokio::test]
async fn an_unrelated_open_transaction_does_not_hold_back_read_all() {
    let Some(schema) = TestSchema::new("unrelated_open_transaction") else {
        return;
    };
    let store = schema.store().await;
    // Another session of the cluster keeps a transaction open that has written (so has an
    // id, and holds back the cluster's oldest running transaction).
    let other = schema.raw().await;
    other.batch_execute("BEGIN").await.unwrap();
    other
        .query_one("SELECT pg_current_xact_id()", &[])
        .await
        .unwrap();

    let outcome = store
        .append(&stream("order", 1), ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    // Only appends in flight in this store hold readers back: the reader sees its write.
    assert_eq!(
        store
            .read_all(GlobalPosition::START, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.last_position().await.unwrap(), outcome.position);
    other.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_flight_holds_back_every_later_position() {
    let Some(schema) = TestSchema::new("append_in_flight") else {
        return;
    };
    in_flight_append_holds_back_later_positions(&schema, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_bound_holds_when_positions_cross_32_bits() {
    let Some(schema) = TestSchema::new("in_flight_past_32_bits") else {
        return;
    };
    // In-flight markers carry the low 32 bits of a position: past 2^32 the reader must
    // rebuild the high bits, or it would hold back everything (or nothing).
    in_flight_append_holds_back_later_positions(&schema, Some((1 << 32) + 10)).await;
}

/// An early append commits; a slow one then stays open (after taking its positions) while a
/// fast one commits higher positions. A reader must get the early event (only in-flight
/// appends hold it back) and never the fast one without the slow ones. With `start`,
/// positions start there.
async fn in_flight_append_holds_back_later_positions(schema: &TestSchema, start: Option<i64>) {
    let store = schema.store().await;
    if let Some(start) = start {
        schema
            .raw()
            .await
            .batch_execute(&format!(
                "ALTER TABLE \"{}\".events ALTER COLUMN global_position RESTART WITH {start}",
                schema.name()
            ))
            .await
            .unwrap();
    }
    let early = store
        .append(
            &stream("order", "early"),
            ExpectedVersion::NoStream,
            events(1),
        )
        .await
        .unwrap();
    if let Some(start) = start {
        assert_eq!(early.position, GlobalPosition(start as u64));
    }
    let name = format!("slow_{}", schema.name());
    let slow_store = Postgres::connect_with(
        PostgresOptions::new(with_application_name(schema.url(), &name))
            .with_schema(schema.name())
            .with_pool_size(1),
    )
    .await
    .unwrap();
    let slow = tokio::spawn(async move {
        slow_store
            .append_ending(
                &stream("order", "slow"),
                ExpectedVersion::NoStream,
                events(3),
                AppendEnding::CommitAfter(Duration::from_secs(2)),
            )
            .await
    });
    idle_in_transaction(&schema.raw().await, &name).await;
    let fast = store
        .append(
            &stream("order", "fast"),
            ExpectedVersion::NoStream,
            events(1),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .read_stream(&stream("order", "fast"), VersionRange::all())
            .await
            .unwrap()
            .len(),
        1,
        "an append in flight does not hold back stream reads"
    );

    // While the slow append is open, a reader gets the early event only; if the slow one
    // has committed meanwhile (a very slow machine), all five.
    let seen = store.read_all(GlobalPosition::START, 100).await.unwrap();
    let last = store.last_position().await.unwrap();
    let slow = slow.await.unwrap().unwrap();
    assert!(early.position < slow.position && slow.position < fast.position);
    let positions: Vec<GlobalPosition> = seen.iter().map(|e| e.global_position).collect();
    assert!(
        positions == [early.position] || positions.len() == 5,
        "read_all returned {positions:?} while positions up to {} were in flight",
        slow.position
    );
    assert!(
        last == early.position || last == fast.position,
        "last_position {last:?} while positions up to {} were in flight",
        slow.position
    );

    // Once it commits, a reader sees all five, in order.
    let seen = store.read_all(GlobalPosition::START, 100).await.unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen
        .windows(2)
        .all(|w| w[0].global_position < w[1].global_position));
    assert_eq!(seen.last().unwrap().global_position, fast.position);
    assert_eq!(store.last_position().await.unwrap(), fast.position);
}

#[tokio::test]
async fn a_delayed_commit_is_readable_once_committed_and_a_rolled_back_one_never() {
    let Some(schema) = TestSchema::new("append_endings") else {
        return;
    };
    let store = schema.store().await;
    let committed = store
        .append_ending(
            &stream("order", 1),
            ExpectedVersion::NoStream,
            events(2),
            AppendEnding::CommitAfter(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    let rolled_back = store
        .append_ending(
            &stream("order", 2),
            ExpectedVersion::NoStream,
            events(3),
            AppendEnding::RollBackAfter(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    assert!(rolled_back.position > committed.position);
    let log = store.read_all(GlobalPosition::START, 100).await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(store
        .read_stream(&stream("order", 2), VersionRange::all())
        .await
        .unwrap()
        .is_empty());
    // A rejected append ending in a rollback still reports the conflict.
    let error = store
        .append_ending(
            &stream("order", 1),
            ExpectedVersion::NoStream,
            events(1),
            AppendEnding::RollBackAfter(Duration::ZERO),
        )
        .await
        .unwrap_err();
    let conflict = error.as_conflict().expect("a typed conflict");
    assert_eq!(conflict.actual, Some(Version(2)));
}

#[tokio::test]
async fn a_unique_violation_from_a_writer_bypassing_the_lock_is_a_conflict() {
    let Some(schema) = TestSchema::new("unique_violation") else {
        return;
    };
    let store = schema.store().await;
    let order = stream("order", 1);
    store
        .append(&order, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    // A foreign writer holds version 2 uncommitted without the store's stream lock.
    let foreign = schema.raw().await;
    foreign.batch_execute("BEGIN").await.unwrap();
    foreign
        .execute(
            &format!(
                "INSERT INTO \"{}\".events (aggregate_type, aggregate_id, version, event_id,
                     event_type, schema_version, codec, payload, metadata, recorded_at)
                 VALUES ('order', '1', 2, $1, 'Tick', 1, 2, '\\x00', $2::text::json, 0)",
                schema.name()
            ),
            &[&Uuid::now_v7(), &empty_metadata()],
        )
        .await
        .unwrap();
    // The store's append waits on the foreign row's unique key; commit it from another task.
    let appending = tokio::spawn({
        let store = store.clone();
        let order = order.clone();
        async move {
            store
                .append(&order, ExpectedVersion::Exact(Version(1)), events(1))
                .await
        }
    });
    // Commit only once the append is waiting on the row lock (seen from the server).
    let watcher = schema.raw().await;
    for attempt in 0.. {
        assert!(
            attempt < 2_000,
            "the append never waited on the foreign row"
        );
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND application_name = 'es-core'
                   AND datname = current_database() AND query LIKE '%INSERT INTO%' || $1 || '%'",
                &[&schema.name()],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    foreign.batch_execute("COMMIT").await.unwrap();
    let error = appending.await.unwrap().unwrap_err();
    let conflict = error
        .as_conflict()
        .expect("a unique violation must be a typed conflict");
    assert_eq!(conflict.expected, ExpectedVersion::Exact(Version(1)));
    assert_eq!(conflict.actual, Some(Version(2)));
    assert_eq!(
        store
            .read_stream(&order, VersionRange::all())
            .await
            .unwrap()
            .len(),
        2
    );
    // The store still works (its connection was replaced, not left mid-transaction).
    store
        .append(&order, ExpectedVersion::Exact(Version(2)), events(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn snapshots_and_projections_keep_their_contracts() {
    let Some(schema) = TestSchema::new("side_stores") else {
        return;
    };
    let store = schema.store().await;
    let order = stream("order", 1);
    let snapshot = |version: u64, state: &[u8]| Snapshot {
        stream: order.clone(),
        version: Version(version),
        fingerprint: u64::MAX - 1,
        codec: CodecId::Postcard,
        state: state.to_vec(),
        taken_at: Timestamp::from_micros(42),
    };
    store.save_snapshot(snapshot(10, b"ten")).await.unwrap();
    store
        .save_snapshot(snapshot(5, b"five, late"))
        .await
        .unwrap();
    assert_eq!(
        store.load_snapshot(&order).await.unwrap(),
        Some(snapshot(10, b"ten"))
    );
    store.save_snapshot(snapshot(12, b"twelve")).await.unwrap();
    assert_eq!(
        store.load_snapshot(&order).await.unwrap(),
        Some(snapshot(12, b"twelve"))
    );

    let saved = |position: u64, state: &[u8]| SavedProjection {
        name: "inventory".to_owned(),
        position: GlobalPosition(position),
        codec: CodecId::Json,
        state: state.to_vec(),
        saved_at: Timestamp::from_micros(7),
    };
    assert_eq!(store.load_projection("inventory").await.unwrap(), None);
    store.save_projection(saved(3, b"{}")).await.unwrap();
    store.save_projection(saved(9, b"{\"a\":1}")).await.unwrap();
    assert_eq!(
        store.load_projection("inventory").await.unwrap(),
        Some(saved(9, b"{\"a\":1}"))
    );
}

#[tokio::test]
async fn a_closed_store_says_so() {
    let Some(schema) = TestSchema::new("closed") else {
        return;
    };
    let store = schema.store().await;
    store.close().await;
    let error = store.read_all(GlobalPosition::START, 1).await.unwrap_err();
    assert!(matches!(error, StoreError::Closed), "{error:?}");
    let error = store
        .append(&stream("order", 1), ExpectedVersion::Any, events(1))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Closed), "{error:?}");
}
