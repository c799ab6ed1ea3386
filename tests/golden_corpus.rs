//! The golden corpus: data written by past releases, which every later release must still
//! read. Each folder of `tests/golden/` is one corpus (see `tests/golden/README.md`): every
//! Order event at every schema version in JSON and postcard, a small SQLite store, a
//! PostgreSQL dump, and the aggregate states and read models they hold. These tests decode
//! and open every corpus with the current code; a corpus is never edited or removed.
//!
//! A new corpus is written by `cargo test --test golden_corpus -- --ignored` (it needs
//! `ES_POSTGRES_URL` and `pg_dump`); it refuses to overwrite a folder that exists.

mod postgres_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use es_core::store::postgres::Postgres;
use es_core::store::sqlite::{Sqlite, SqliteOptions};
use es_core::{
    CodecId, Event, EventSet, EventStore, ManualClock, ProjectionRegistry, ProjectionStore,
    Repository, SnapshotStore, Timestamp,
};
use order_example::domain::{
    OrderCancelled, OrderCreated, OrderItemAdded, OrderItemRemoved, OrderShipped, PaymentProcessed,
};
use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
use order_example::{CustomerId, Money, Order, OrderEvent, ProductId};
use postgres_support::TestSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The folder holding one folder per corpus.
fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every corpus folder, oldest name first.
fn corpora() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(corpus_root())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.is_dir())
        .collect();
    found.sort();
    assert!(!found.is_empty(), "tests/golden holds at least one corpus");
    found
}

/// `corpus.json`: what a corpus is and where its parts are.
#[derive(Serialize, Deserialize)]
struct Manifest {
    /// The release that wrote it.
    release: String,
    /// The PostgreSQL schema name the dump was taken from (replaced when restoring).
    postgres_schema: String,
    /// The default stock the inventory read model was built with.
    inventory_default_stock: u64,
}

/// One entry of `events.json`: an event payload in both codecs and its decoded value.
#[derive(Serialize, Deserialize)]
struct EventSample {
    event_type: String,
    schema_version: u32,
    /// The file holding the JSON payload, relative to the corpus.
    json: String,
    /// The file holding the postcard payload, relative to the corpus.
    postcard: String,
    /// The event struct as JSON, as the release that wrote the corpus decoded it.
    value: Value,
}

/// `aggregates.json`: each order's version and state.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct AggregateState {
    version: u64,
    state: Value,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) {
    let mut text = serde_json::to_string_pretty(value).unwrap();
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The event struct inside `event`, as JSON.
fn event_value(event: &OrderEvent) -> Value {
    let payload = event.encode(CodecId::Json).expect("an event encodes");
    serde_json::from_slice(&payload).expect("JSON payloads are JSON")
}

#[test]
fn every_event_of_every_corpus_decodes_to_its_recorded_value() {
    for corpus in corpora() {
        let samples: Vec<EventSample> = read_json(&corpus.join("events.json"));
        assert!(!samples.is_empty(), "{}: no events", corpus.display());
        for sample in samples {
            for (codec, file) in [
                (CodecId::Json, &sample.json),
                (CodecId::Postcard, &sample.postcard),
            ] {
                let bytes = std::fs::read(corpus.join(file)).unwrap();
                let event =
                    OrderEvent::decode(&sample.event_type, sample.schema_version, codec, &bytes)
                        .unwrap_or_else(|error| {
                            panic!("{}: {file} does not decode: {error}", corpus.display())
                        });
                assert_eq!(
                    event.event_type(),
                    sample.event_type,
                    "{}: {file}",
                    corpus.display()
                );
                // An event type that gained a schema version since decodes through its upcast
                // chain: compare with what the upcast makes of the recorded value here.
                assert_eq!(
                    event_value(&event),
                    sample.value,
                    "{}: {file} decodes to another value",
                    corpus.display()
                );
            }
        }
    }
}

/// Every event type of the order and its current schema version. Adding an event type fails
/// the length check below until it is listed here.
fn current_event_versions() -> Vec<(&'static str, u32)> {
    let versions = vec![
        (OrderCreated::NAME, OrderCreated::SCHEMA_VERSION),
        (OrderItemAdded::NAME, OrderItemAdded::SCHEMA_VERSION),
        (OrderItemRemoved::NAME, OrderItemRemoved::SCHEMA_VERSION),
        (PaymentProcessed::NAME, PaymentProcessed::SCHEMA_VERSION),
        (OrderShipped::NAME, OrderShipped::SCHEMA_VERSION),
        (OrderCancelled::NAME, OrderCancelled::SCHEMA_VERSION),
    ];
    assert_eq!(versions.len(), OrderEvent::EVENT_TYPES.len());
    versions
}

#[test]
fn every_event_type_and_version_this_release_writes_is_in_a_corpus() {
    let mut covered = std::collections::BTreeSet::new();
    for corpus in corpora() {
        let samples: Vec<EventSample> = read_json(&corpus.join("events.json"));
        covered.extend(
            samples
                .into_iter()
                .map(|sample| (sample.event_type, sample.schema_version)),
        );
    }
    for (name, version) in current_event_versions() {
        assert!(
            covered.contains(&(name.to_owned(), version)),
            "`{name}` version {version} is in no corpus: a release that changes a format adds \
             a corpus (see tests/golden/README.md)"
        );
    }
}

/// Checks that `store` holds the corpus's orders and read models: each aggregate loads at its
/// recorded version and state, the read models rebuilt from the log and the saved ones
/// restored from the store equal the recorded ones.
async fn holds_the_corpus<S>(store: &S, corpus: &Path, manifest: &Manifest, label: &str)
where
    S: EventStore + SnapshotStore + ProjectionStore + Clone,
{
    let expected: BTreeMap<String, AggregateState> = read_json(&corpus.join("aggregates.json"));
    let orders = Repository::<Order, _>::new(store.clone()).with_snapshots(store.clone());
    for (id, recorded) in &expected {
        let loaded = orders
            .load(id)
            .await
            .unwrap_or_else(|error| panic!("{label}: order {id} does not load: {error}"));
        let state = AggregateState {
            version: loaded.version().get(),
            state: serde_json::to_value(loaded.state()).unwrap(),
        };
        assert_eq!(&state, recorded, "{label}: order {id}");
    }

    let recorded: BTreeMap<String, Value> = read_json(&corpus.join("read_models.json"));
    let mut rebuilt = registry(manifest);
    rebuilt
        .catch_up(store)
        .await
        .unwrap_or_else(|error| panic!("{label}: the read models do not rebuild: {error}"));
    assert_eq!(read_model_values(&rebuilt), recorded, "{label}: rebuilt");

    let mut restored = registry(manifest);
    restored
        .restore_from(store)
        .await
        .unwrap_or_else(|error| panic!("{label}: saved read models do not restore: {error}"));
    assert_eq!(
        read_model_values(&restored),
        recorded,
        "{label}: restored from the saved read models"
    );
}

fn registry(manifest: &Manifest) -> ProjectionRegistry {
    read_models::registry(Inventory::new(manifest.inventory_default_stock))
        .expect("three distinct read models")
}

fn read_model_values(registry: &ProjectionRegistry) -> BTreeMap<String, Value> {
    BTreeMap::from([
        (
            "order_summaries".to_owned(),
            serde_json::to_value(registry.get::<OrderSummaries>().unwrap()).unwrap(),
        ),
        (
            "inventory".to_owned(),
            serde_json::to_value(registry.get::<Inventory>().unwrap()).unwrap(),
        ),
        (
            "customer_histories".to_owned(),
            serde_json::to_value(registry.get::<CustomerHistories>().unwrap()).unwrap(),
        ),
    ])
}

#[tokio::test]
async fn the_sqlite_store_of_every_corpus_opens_with_its_orders_and_read_models() {
    for corpus in corpora() {
        let manifest: Manifest = read_json(&corpus.join("corpus.json"));
        // Opening may upgrade the file: work on a copy, the corpus is never changed.
        let directory = tempfile::tempdir().unwrap();
        let copy = directory.path().join("store.sqlite");
        std::fs::copy(corpus.join("store.sqlite"), &copy).unwrap();
        let store = Sqlite::open(&copy)
            .await
            .unwrap_or_else(|error| panic!("{}: does not open: {error}", corpus.display()));
        holds_the_corpus(
            &store,
            &corpus,
            &manifest,
            &format!("{} (SQLite)", corpus.display()),
        )
        .await;
        store.close().await;
    }
}

#[tokio::test]
async fn the_postgres_dump_of_every_corpus_restores_with_its_orders_and_read_models() {
    for corpus in corpora() {
        let Some(schema) = TestSchema::new("golden corpus") else {
            return;
        };
        let manifest: Manifest = read_json(&corpus.join("corpus.json"));
        let dump = std::fs::read_to_string(corpus.join("store.postgres.sql")).unwrap();
        // The dump names its schema everywhere (tables, sequence, functions): restore it under
        // this test's own schema instead. Lines starting with a backslash are commands to psql
        // itself (`\restrict`), not SQL.
        let dump: String = dump
            .replace(&manifest.postgres_schema, schema.name())
            .lines()
            .filter(|line| !line.starts_with('\\'))
            .flat_map(|line| [line, "\n"])
            .collect();
        schema
            .raw()
            .await
            .batch_execute(&dump)
            .await
            .unwrap_or_else(|error| {
                panic!("{}: the dump does not restore: {error:?}", corpus.display())
            });
        let store = Postgres::connect_with(schema.options())
            .await
            .unwrap_or_else(|error| panic!("{}: does not open: {error}", corpus.display()));
        holds_the_corpus(
            &store,
            &corpus,
            &manifest,
            &format!("{} (PostgreSQL)", corpus.display()),
        )
        .await;
    }
}

/// One sample of every order event type, at its current version.
fn sample_events() -> Vec<OrderEvent> {
    let events: Vec<OrderEvent> = vec![
        OrderCreated {
            customer_id: CustomerId::new("customer-ünïcode-1"),
        }
        .into(),
        OrderItemAdded {
            product_id: ProductId::new("mug"),
            quantity: 3,
            unit_price: Money::from_minor_units(1_250),
        }
        .into(),
        OrderItemRemoved {
            product_id: ProductId::new("mug"),
            quantity: 3,
        }
        .into(),
        PaymentProcessed {
            amount: Money::from_minor_units(u64::MAX / 3),
        }
        .into(),
        OrderShipped {
            tracking_number: "1Z999AA10123456784".to_owned(),
        }
        .into(),
        OrderCancelled {
            reason: "changed mind; \"quotes\" and a newline\nstay".to_owned(),
        }
        .into(),
    ];
    let names: Vec<&str> = events.iter().map(EventSet::event_type).collect();
    assert_eq!(names, OrderEvent::EVENT_TYPES, "one sample per event type");
    events
}

/// The order histories every corpus's stores hold: every event type, open, paid, shipped and
/// cancelled orders, and both codecs.
async fn write_orders<S>(store: &S, clock: &ManualClock)
where
    S: EventStore + SnapshotStore + ProjectionStore + Clone,
{
    let mug = || ProductId::new("mug");
    let tea = || ProductId::new("tea");
    let pot = || ProductId::new("pot");
    for (id, codec) in [
        ("o-1", CodecId::Json),
        ("o-2", CodecId::Postcard),
        ("o-3", CodecId::Json),
        ("o-4", CodecId::Postcard),
    ] {
        let orders = Repository::<Order, _>::new(store.clone())
            .with_snapshots(store.clone())
            .with_codec(codec);
        clock.advance_secs(60);
        let mut order = orders.load(id).await.unwrap();
        let customer = match id {
            "o-1" | "o-3" => "alice",
            "o-2" => "bob",
            _ => "carol",
        };
        order
            .execute(|o| o.create(CustomerId::new(customer)))
            .unwrap();
        match id {
            "o-1" => {
                order
                    .execute(|o| o.add_item(mug(), 2, Money::from_minor_units(1_250)))
                    .unwrap();
                order
                    .execute(|o| o.add_item(tea(), 1, Money::from_minor_units(499)))
                    .unwrap();
                order
                    .execute(|o| o.pay(Money::from_minor_units(2_999)))
                    .unwrap();
                order.execute(|o| o.ship("TRACK-1")).unwrap();
            }
            "o-2" => {
                order
                    .execute(|o| o.add_item(mug(), 1, Money::from_minor_units(1_250)))
                    .unwrap();
                order.execute(|o| o.remove_item(mug())).unwrap();
                order
                    .execute(|o| o.add_item(pot(), 1, Money::from_minor_units(3_000)))
                    .unwrap();
                order.execute(|o| o.cancel("changed mind")).unwrap();
            }
            "o-3" => {
                order
                    .execute(|o| o.add_item(tea(), 3, Money::from_minor_units(499)))
                    .unwrap();
            }
            _ => {
                order
                    .execute(|o| o.add_item(pot(), 1, Money::from_minor_units(3_000)))
                    .unwrap();
                order
                    .execute(|o| o.pay(Money::from_minor_units(3_000)))
                    .unwrap();
            }
        }
        orders.save(&mut order).await.unwrap();
    }
}

/// The clock every corpus store is written with, so both stores hold the same times.
fn corpus_clock() -> ManualClock {
    ManualClock::new(Timestamp::from_micros(1_764_590_400_000_000)) // 2025-12-01T12:00:00Z
}

const INVENTORY_DEFAULT_STOCK: u64 = 100;

#[tokio::test]
#[ignore = "writes a new corpus folder: run by hand when a release changes a format"]
async fn write_a_new_golden_corpus() {
    let Some(schema) = TestSchema::new("golden corpus writer") else {
        panic!("a corpus needs its PostgreSQL dump: set ES_POSTGRES_URL");
    };
    let release = env!("CARGO_PKG_VERSION");
    let name = std::env::var("ES_GOLDEN_CORPUS").unwrap_or_else(|_| {
        format!(
            "{release}-{}",
            chrono_free_date(std::time::SystemTime::now())
        )
    });
    let corpus = corpus_root().join(&name);
    // Never overwrite: a corpus, once written, is never edited.
    std::fs::create_dir(&corpus).unwrap_or_else(|error| {
        panic!(
            "{} cannot be created ({error}); corpora are never overwritten: choose another \
             name with ES_GOLDEN_CORPUS",
            corpus.display()
        )
    });
    write_event_samples(&corpus);

    // The SQLite store: written, read models saved into it, closed (so the file alone holds
    // everything, no write-ahead log beside it).
    let clock = corpus_clock();
    let sqlite = Sqlite::open_with(
        corpus.join("store.sqlite"),
        SqliteOptions::new().with_clock(clock.clone()),
    )
    .await
    .unwrap();
    write_orders(&sqlite, &clock).await;
    let manifest = Manifest {
        release: release.to_owned(),
        postgres_schema: schema.name().to_owned(),
        inventory_default_stock: INVENTORY_DEFAULT_STOCK,
    };
    let mut read_models = registry(&manifest);
    read_models.catch_up(&sqlite).await.unwrap();
    read_models.save_to(&sqlite, CodecId::Json).await.unwrap();
    let orders = Repository::<Order, _>::new(sqlite.clone());
    let mut aggregates = BTreeMap::new();
    for id in ["o-1", "o-2", "o-3", "o-4"] {
        let loaded = orders.load(id).await.unwrap();
        aggregates.insert(
            id.to_owned(),
            AggregateState {
                version: loaded.version().get(),
                state: serde_json::to_value(loaded.state()).unwrap(),
            },
        );
    }
    sqlite.close().await;
    write_json(&corpus.join("aggregates.json"), &aggregates);
    write_json(
        &corpus.join("read_models.json"),
        &read_model_values(&read_models),
    );

    // The PostgreSQL store: the same histories at the same times, then dumped as plain SQL
    // with INSERT statements (restorable by psql or by one batch of statements).
    let clock = corpus_clock();
    let postgres = schema.store_with_clock(clock.clone()).await;
    write_orders(&postgres, &clock).await;
    let mut postgres_models = registry(&manifest);
    postgres_models.catch_up(&postgres).await.unwrap();
    assert_eq!(
        read_model_values(&postgres_models),
        read_model_values(&read_models),
        "both stores hold the same history"
    );
    postgres_models
        .save_to(&postgres, CodecId::Postcard)
        .await
        .unwrap();
    let dumped = std::process::Command::new("pg_dump")
        .arg(format!("--dbname={}", schema.url()))
        .arg(format!("--schema={}", schema.name()))
        .args([
            "--inserts",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
        ])
        .arg(format!(
            "--file={}",
            corpus.join("store.postgres.sql").display()
        ))
        .status()
        .expect("pg_dump runs");
    assert!(dumped.success(), "pg_dump failed");
    write_json(&corpus.join("corpus.json"), &manifest);
    println!("wrote {}", corpus.display());
}

/// Writes every sample event in both codecs under `events/`, and `events.json`.
fn write_event_samples(corpus: &Path) {
    std::fs::create_dir(corpus.join("events")).unwrap();
    let mut samples = Vec::new();
    for event in sample_events() {
        let (event_type, version) = (event.event_type(), event.schema_version());
        let json = format!("events/{event_type}.v{version}.json");
        let postcard = format!("events/{event_type}.v{version}.postcard");
        std::fs::write(corpus.join(&json), event.encode(CodecId::Json).unwrap()).unwrap();
        std::fs::write(
            corpus.join(&postcard),
            event.encode(CodecId::Postcard).unwrap(),
        )
        .unwrap();
        samples.push(EventSample {
            event_type: event_type.into(),
            schema_version: version,
            json,
            postcard,
            value: event_value(&event),
        });
    }
    write_json(&corpus.join("events.json"), &samples);
}

/// `YYYY-MM-DD` of `time` in UTC.
fn chrono_free_date(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    Timestamp::from_micros(i64::try_from(seconds).unwrap() * 1_000_000).to_string()[..10].to_owned()
}
