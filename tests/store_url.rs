//! `Store`: one type for every store, opened from a URL; the same code runs on memory, SQLite
//! and PostgreSQL, snapshots by default, subscribes, and opens read-only or existing-only
//! stores without ever creating or writing one.

mod postgres_support;
mod sqlite_support;

use es_core::{
    Aggregate, Apply, CodecId, EventFilter, EventStore, ExpectedVersion, GlobalPosition, InMemory,
    Metadata, NewEvent, ProjectionStore, Repository, SavedProjection, Snapshot, SnapshotStore,
    Store, StoreError, StoreOptions, StreamId, Subscribe, Timestamp, Version, VersionRange,
};
use postgres_support::TestSchema;
use serde::{Deserialize, Serialize};
use sqlite_support::temporary_store_path;
use uuid::Uuid;

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Deposited".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: br#"{"amount":1}"#.to_vec(),
        metadata: Metadata::default(),
    }
}

fn snapshot(stream: &StreamId) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version: Version(1),
        fingerprint: 7,
        codec: CodecId::Json,
        state: b"{}".to_vec(),
        taken_at: Timestamp::EPOCH,
    }
}

fn saved_projection() -> SavedProjection {
    SavedProjection {
        name: "totals".to_owned(),
        position: GlobalPosition(1),
        codec: CodecId::Json,
        state: b"{}".to_vec(),
        saved_at: Timestamp::EPOCH,
    }
}

/// The same code for every store: events, snapshots, saved read models, a subscription.
async fn exercise(store: &Store) {
    let stream = StreamId::new("account", "a-1");
    let outcome = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(), event()])
        .await
        .unwrap();
    assert_eq!(outcome.version, Version(2));
    let read = store
        .read_stream(&stream, VersionRange::all())
        .await
        .unwrap();
    assert_eq!(read.len(), 2);

    store.save_snapshot(snapshot(&stream)).await.unwrap();
    assert_eq!(
        store.load_snapshot(&stream).await.unwrap(),
        Some(snapshot(&stream))
    );
    store.save_projection(saved_projection()).await.unwrap();
    assert_eq!(
        store.load_projection("totals").await.unwrap(),
        Some(saved_projection())
    );

    let mut subscription = store.subscribe(GlobalPosition::START, EventFilter::all());
    let batch = subscription.next_batch().await.unwrap();
    assert_eq!(batch.len(), 2, "the subscription delivers the log");
}

#[tokio::test]
async fn memory_and_sqlite_urls_open_stores_that_do_everything() {
    let memory = Store::open("memory").await.unwrap();
    assert!(memory.as_memory().is_some());
    assert_eq!(memory.to_string(), "in memory");
    exercise(&memory).await;
    memory.close().await;

    let (_directory, path) = temporary_store_path();
    let url = format!("sqlite:{}", path.display());
    let sqlite = Store::open(&url).await.unwrap();
    assert!(sqlite.as_sqlite().is_some());
    exercise(&sqlite).await;
    sqlite.close().await;
    assert!(matches!(
        sqlite.last_position().await,
        Err(StoreError::Closed)
    ));
    // `sqlite://PATH` names the same file.
    let again = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(again.last_position().await.unwrap(), GlobalPosition(2));
    again.close().await;
}

#[tokio::test]
async fn a_postgres_url_opens_a_store_that_does_everything() {
    let Some(schema) = TestSchema::new("store_url") else {
        return;
    };
    let store = Store::open_with(
        schema.url(),
        StoreOptions::new().with_postgres_schema(schema.name()),
    )
    .await
    .unwrap();
    assert!(store.as_postgres().is_some());
    assert_eq!(
        store.to_string(),
        format!("PostgreSQL schema `{}`", schema.name())
    );
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
async fn urls_of_no_known_store_are_configuration_errors_that_never_echo_a_password() {
    for url in ["mysql://localhost/x", "", "Memory", "sqlite", "file:x.db"] {
        let error = Store::open(url).await.expect_err(url);
        assert!(matches!(error, StoreError::Config(_)), "{url}: {error:?}");
    }
    let error = Store::open("postgress://me:hunter2@host/db")
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
    let error = Store::open("sqlite:").await.unwrap_err();
    assert!(error.to_string().contains("needs a file path"), "{error}");
    let error = Store::open_with("memory", StoreOptions::new().with_postgres_schema("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    let error = Store::open_with("memory", StoreOptions::new().existing_only())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn existing_only_and_read_only_never_create_a_sqlite_file() {
    let (directory, path) = temporary_store_path();
    let url = format!("sqlite:{}", path.display());
    for options in [
        StoreOptions::new().existing_only(),
        StoreOptions::new().read_only(),
    ] {
        let error = Store::open_with(&url, options).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::NotFound { reason, .. } if reason == "the file does not exist"),
            "{error:?}"
        );
        assert_eq!(
            std::fs::read_dir(directory.path()).unwrap().count(),
            0,
            "nothing created"
        );
    }
    // An empty file, or an empty SQLite database, is not yet a store: neither becomes one.
    std::fs::write(&path, b"").unwrap();
    for options in [
        StoreOptions::new().existing_only(),
        StoreOptions::new().read_only(),
    ] {
        let error = Store::open_with(&url, options).await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
    // A directory is not a store file.
    let error = Store::open_with(
        &format!("sqlite:{}", directory.path().display()),
        StoreOptions::new().existing_only(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");
}

#[tokio::test]
async fn a_read_only_sqlite_store_reads_everything_and_writes_nothing() {
    let (_directory, path) = temporary_store_path();
    let url = format!("sqlite:{}", path.display());
    let writer = Store::open(&url).await.unwrap();
    exercise(&writer).await;
    writer.close().await;
    let bytes = std::fs::read(&path).unwrap();

    let reader = Store::open_with(&url, StoreOptions::new().read_only())
        .await
        .unwrap();
    assert!(reader.is_read_only());
    let stream = StreamId::new("account", "a-1");
    assert_eq!(
        reader
            .read_stream(&stream, VersionRange::all())
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(reader.load_snapshot(&stream).await.unwrap().is_some());
    assert!(reader.load_projection("totals").await.unwrap().is_some());
    let mut subscription = reader.subscribe(GlobalPosition::START, EventFilter::all());
    assert_eq!(subscription.next_batch().await.unwrap().len(), 2);

    let refused = [
        reader
            .append(&stream, ExpectedVersion::Any, vec![event()])
            .await
            .map(drop),
        reader.save_snapshot(snapshot(&stream)).await,
        reader.save_projection(saved_projection()).await,
    ];
    for result in refused {
        assert!(
            matches!(result, Err(StoreError::ReadOnly { .. })),
            "{result:?}"
        );
    }
    reader.close().await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is unchanged"
    );
}

#[derive(es_core::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Deposited {
    amount: u64,
}

#[derive(es_core::Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "savings", events(Deposited), snapshot_every = 3)]
struct Savings {
    balance: u64,
}

impl Apply<Deposited> for Savings {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

/// Three deposits through `Repository::new(store)`: the third crosses `snapshot_every`.
async fn snapshots_by_default(store: Store) {
    let savings = Repository::<Savings, _>::new(store.clone());
    for amount in 1..=3 {
        savings
            .update("s-1", |_| {
                Ok::<_, std::convert::Infallible>(vec![Deposited { amount }.into()])
            })
            .await
            .unwrap();
    }
    let snapshot = store
        .load_snapshot(&Savings::stream_id("s-1"))
        .await
        .unwrap()
        .expect("a snapshot, with no snapshot store configured");
    assert_eq!(snapshot.version, Version(3));
    assert_eq!(savings.load("s-1").await.unwrap().state().balance, 6);
    store.close().await;
}

#[tokio::test]
async fn every_store_snapshots_by_default() {
    snapshots_by_default(Store::from(InMemory::new())).await;
    let (_directory, path) = temporary_store_path();
    snapshots_by_default(
        Store::open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap(),
    )
    .await;
    if let Some(schema) = TestSchema::new("store_url_snapshots") {
        let store = Store::open_with(
            schema.url(),
            StoreOptions::new().with_postgres_schema(schema.name()),
        )
        .await
        .unwrap();
        snapshots_by_default(store).await;
    }
}

#[tokio::test]
async fn postgres_existing_only_and_read_only_create_nothing_and_refuse_writes() {
    let Some(schema) = TestSchema::new("store_url_ro") else {
        return;
    };
    let options = || StoreOptions::new().with_postgres_schema(schema.name());
    for access in [options().existing_only(), options().read_only()] {
        let error = Store::open_with(schema.url(), access).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::NotFound { reason, .. } if reason == "the schema does not exist"),
            "{error:?}"
        );
    }
    let raw = schema.raw().await;
    let exists = raw
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&schema.name()],
        )
        .await
        .unwrap();
    assert!(exists.is_none(), "no schema was created");

    let writer = Store::open_with(schema.url(), options()).await.unwrap();
    exercise(&writer).await;
    writer.close().await;
    let reader = Store::open_with(schema.url(), options().read_only())
        .await
        .unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.last_position().await.unwrap(), GlobalPosition(2));
    let stream = StreamId::new("account", "a-1");
    let refused = [
        reader
            .append(&stream, ExpectedVersion::Any, vec![event()])
            .await
            .map(drop),
        reader.save_snapshot(snapshot(&stream)).await,
        reader.save_projection(saved_projection()).await,
    ];
    for result in refused {
        assert!(
            matches!(result, Err(StoreError::ReadOnly { .. })),
            "{result:?}"
        );
    }
    reader.close().await;
}
