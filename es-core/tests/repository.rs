//! The repository: load, save, optimistic concurrency, command retries, temporal loads and
//! metadata, against the in-memory store with a hand-written account aggregate.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use es_core::{
    AggregateRoot, AppendOutcome, CodecId, CommandError, EventStore, ExpectedVersion,
    GlobalPosition, InMemory, ManualClock, Metadata, NewEvent, RecordedEvent, Repository,
    RepositoryError, RetryPolicy, SnapshotLocation, StoreError, StreamBatch, StreamId, Timestamp,
    Version, VersionRange,
};
use support::{deposited, opened, withdrawn, Account, AccountError, DepositedV1};
use uuid::Uuid;

const T0: Timestamp = Timestamp::from_micros(1_700_000_000_000_000);

fn repository() -> Repository<Account, InMemory> {
    Repository::new(InMemory::with_clock(ManualClock::new(T0)))
}

async fn open_account<S: EventStore, P: SnapshotLocation<S>>(
    repository: &Repository<Account, S, P>,
    id: &str,
) {
    let mut root = repository.load(id).await.unwrap();
    root.execute(|account| account.open("ada")).unwrap();
    repository.save(&mut root).await.unwrap();
}

/// An event as another writer stored it (an older release, a damaged one), bypassing the
/// event set: any type name, schema version and payload bytes.
fn foreign_event(
    event_type: &str,
    schema_version: u32,
    codec: CodecId,
    payload: Vec<u8>,
) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version,
        codec,
        payload,
        metadata: Metadata::default(),
    }
}

async fn stored_events(store: &impl EventStore, id: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(&StreamId::new("account", id), VersionRange::all())
        .await
        .unwrap()
}

#[tokio::test]
async fn loading_an_unknown_id_gives_a_new_aggregate_at_version_zero() {
    let repository = repository();
    let root = repository.load("nobody").await.unwrap();
    assert_eq!(root.id(), "nobody");
    assert_eq!(root.version(), Version::INITIAL);
    assert_eq!(root.state(), &Account::default());
    assert!(!root.has_pending_events());
    assert!(matches!(
        repository.load_existing("nobody").await,
        Err(RepositoryError::NotFound { stream }) if stream == StreamId::new("account", "nobody")
    ));
}

#[tokio::test]
async fn saved_events_load_back_as_the_same_state_and_version() {
    let repository = repository();
    let mut root = repository.load("a-1").await.unwrap();
    root.execute(|account| account.open("ada")).unwrap();
    root.execute(|account| account.deposit(70, "salary"))
        .unwrap();
    root.execute(|account| account.withdraw(20)).unwrap();
    assert_eq!(root.current_version(), Version(3));
    let outcome = repository.save(&mut root).await.unwrap().unwrap();
    assert_eq!(outcome.version, Version(3));
    assert_eq!(root.version(), Version(3));
    assert!(
        !root.has_pending_events(),
        "saving clears the pending events"
    );

    let loaded = repository.load_existing("a-1").await.unwrap();
    assert_eq!(loaded.version(), Version(3));
    assert_eq!(loaded.state(), root.state());
    assert_eq!(loaded.state().balance, 50);

    let stored = stored_events(repository.store(), "a-1").await;
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]);
    assert_eq!(
        stored.iter().map(|e| e.schema_version).collect::<Vec<_>>(),
        [1, 2, 1]
    );
    assert!(stored.iter().all(|e| e.codec == CodecId::Json));
}

#[tokio::test]
async fn saving_without_pending_events_writes_nothing() {
    let repository = repository();
    let mut root = repository.load("idle").await.unwrap();
    assert_eq!(repository.save(&mut root).await.unwrap(), None);
    open_account(&repository, "idle").await;
    let mut loaded = repository.load("idle").await.unwrap();
    assert_eq!(repository.save(&mut loaded).await.unwrap(), None);
    assert_eq!(
        repository.store().last_position().await.unwrap(),
        GlobalPosition(1)
    );
}

#[tokio::test]
async fn the_second_of_two_concurrent_saves_gets_a_conflict() {
    let repository = repository();
    open_account(&repository, "shared").await;
    let mut first = repository.load("shared").await.unwrap();
    let mut second = repository.load("shared").await.unwrap();
    first.execute(|a| a.deposit(10, "first")).unwrap();
    second.execute(|a| a.deposit(99, "second")).unwrap();

    repository.save(&mut first).await.unwrap();
    let error = repository.save(&mut second).await.unwrap_err();
    assert!(error.is_conflict(), "expected a conflict, got {error:?}");
    let RepositoryError::Store(StoreError::Conflict(conflict)) = &error else {
        unreachable!("is_conflict() held");
    };
    assert_eq!(conflict.expected, ExpectedVersion::Exact(Version(1)));
    assert_eq!(conflict.actual, Some(Version(2)));
    assert!(
        second.has_pending_events(),
        "a failed save keeps the pending events"
    );
    assert_eq!(second.version(), Version(1));

    let loaded = repository.load("shared").await.unwrap();
    assert_eq!(loaded.state().references, ["first"]);
}

#[tokio::test]
async fn two_new_aggregates_with_one_id_conflict_on_save() {
    let repository = repository();
    let mut first = AggregateRoot::<Account>::new("twin");
    let mut second = AggregateRoot::<Account>::new("twin");
    first.execute(|a| a.open("first")).unwrap();
    second.execute(|a| a.open("second")).unwrap();
    repository.save(&mut first).await.unwrap();
    let error = repository.save(&mut second).await.unwrap_err();
    assert!(error.is_conflict());
    assert_eq!(
        error.to_string(),
        "version conflict on stream `account/twin`: expected no stream, found version 1"
    );
}

/// An event store that lets a competing writer deposit into the stream right before each of
/// the first `interference` appends, as if another node had saved first.
struct Interfering {
    inner: InMemory,
    interference: u32,
    appends: AtomicU32,
}

impl Interfering {
    fn new(inner: InMemory, interference: u32) -> Self {
        Interfering {
            inner,
            interference,
            appends: AtomicU32::new(0),
        }
    }
}

impl EventStore for Interfering {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if self.appends.fetch_add(1, Ordering::SeqCst) < self.interference {
            let competing = NewEvent::encode(&deposited(1, "competitor"), CodecId::Json).unwrap();
            self.inner
                .append(stream, ExpectedVersion::Any, vec![competing])
                .await?;
        }
        self.inner.append(stream, expected, events).await
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.append_streams(batches).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.inner.last_position().await
    }
}

#[tokio::test]
async fn update_reloads_and_reruns_the_command_after_a_conflict_and_counts_the_attempts() {
    let memory = InMemory::with_clock(ManualClock::new(T0));
    open_account(&Repository::new(memory.clone()), "busy").await;
    let repository = Repository::<Account, _>::without_snapshots(Interfering::new(memory, 1));

    let mut runs = Vec::new();
    let updated = repository
        .update("busy", |account| {
            runs.push(account.balance);
            account.deposit(50, "mine")
        })
        .await
        .unwrap();
    assert_eq!(
        runs,
        [0, 1],
        "the command reran on the reloaded state, which includes the competitor's deposit"
    );
    assert_eq!(updated.attempts, 2);
    assert_eq!(updated.outcome.map(|o| o.version), Some(Version(3)));
    assert_eq!(updated.root.version(), Version(3));
    assert_eq!(updated.root.state().balance, 51);
    assert_eq!(
        repository.load("busy").await.unwrap().state().references,
        ["competitor", "mine"]
    );
}

#[tokio::test]
async fn update_gives_up_after_the_policys_attempts_that_all_conflict() {
    let memory = InMemory::with_clock(ManualClock::new(T0));
    open_account(&Repository::new(memory.clone()), "contested").await;
    let repository =
        Repository::<Account, _>::without_snapshots(Interfering::new(memory.clone(), u32::MAX))
            .with_retry_policy(
                RetryPolicy::attempts(4).with_backoff(Duration::ZERO, Duration::ZERO),
            );

    let mut runs = 0;
    let error = repository
        .update("contested", |account| {
            runs += 1;
            account.deposit(5, "never saved")
        })
        .await
        .unwrap_err();
    let CommandError::RetriesExhausted { attempts, last } = error else {
        panic!("expected RetriesExhausted, got {error:?}");
    };
    assert_eq!((attempts, runs), (4, 4));
    assert_eq!(last.stream, StreamId::new("account", "contested"));
    assert_eq!(last.expected, ExpectedVersion::Exact(Version(4)));
    assert_eq!(last.actual, Some(Version(5)));
    let state = Repository::<Account, _>::new(memory)
        .load("contested")
        .await
        .unwrap();
    assert!(
        !state.state().references.iter().any(|r| r == "never saved"),
        "no attempt was saved"
    );
}

#[tokio::test]
async fn update_without_retry_reports_the_first_conflict() {
    let memory = InMemory::with_clock(ManualClock::new(T0));
    open_account(&Repository::new(memory.clone()), "once").await;
    let repository = Repository::<Account, _>::without_snapshots(Interfering::new(memory, 1))
        .with_retry_policy(RetryPolicy::no_retry());
    let error = repository
        .update("once", |account| account.deposit(5, "lost"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::RetriesExhausted { attempts: 1, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn racing_updates_all_succeed_through_jittered_retries() {
    let memory = InMemory::with_clock(ManualClock::new(T0));
    let repository = Arc::new(
        Repository::<Account, _>::new(memory).with_retry_policy(RetryPolicy::attempts(1_000)),
    );
    open_account(&repository, "raced").await;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let repository = Arc::clone(&repository);
            tokio::spawn(async move {
                let mut attempts = 0;
                for round in 0..10 {
                    let updated = repository
                        .update("raced", |a| a.deposit(1, &format!("{task}-{round}")))
                        .await
                        .unwrap();
                    assert!(updated.attempts >= 1);
                    attempts += updated.attempts;
                }
                attempts
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    let loaded = repository.load("raced").await.unwrap();
    assert_eq!(loaded.state().balance, 80, "every deposit was saved once");
    assert_eq!(loaded.version(), Version(81));
    assert!(attempts >= 80, "each of the 80 deposits ran at least once");
}

#[tokio::test]
async fn update_with_metadata_stamps_every_event_it_saves_even_after_a_retry() {
    let memory = InMemory::with_clock(ManualClock::new(T0));
    open_account(&Repository::new(memory.clone()), "stamped").await;
    let repository =
        Repository::<Account, _>::without_snapshots(Interfering::new(memory.clone(), 1));
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with("user", "ada");
    let updated = repository
        .update_with_metadata("stamped", &metadata, |account| {
            account.deposit(3, "stamped")
        })
        .await
        .unwrap();
    assert_eq!(updated.attempts, 2);
    let stored = stored_events(&memory, "stamped").await;
    let mine: Vec<_> = stored
        .iter()
        .filter(|event| event.version > Version(2))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].metadata, metadata);
    assert_eq!(
        stored[1].metadata,
        Metadata::default(),
        "the competitor's event is not stamped"
    );
}

#[tokio::test]
async fn a_rejected_command_passes_through_and_writes_nothing() {
    let repository = repository();
    open_account(&repository, "poor").await;
    let error = repository
        .update("poor", |account| account.withdraw(10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::Rejected(AccountError::InsufficientFunds {
                balance: 0,
                requested: 10
            })
        ),
        "got {error:?}"
    );
    assert_eq!(
        repository.store().last_position().await.unwrap(),
        GlobalPosition(1)
    );

    let updated = repository
        .update("poor", |_| Ok::<_, AccountError>(Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        updated.outcome, None,
        "a command recording nothing saves nothing"
    );
    assert_eq!(updated.root.version(), Version(1));
    assert_eq!(updated.attempts, 1);
}

#[tokio::test]
async fn load_at_version_rebuilds_each_past_version() {
    let repository = repository();
    let mut root = repository.load("history").await.unwrap();
    let events = [
        opened("ada"),
        deposited(10, "a"),
        deposited(20, "b"),
        withdrawn(5),
    ];
    for event in events.clone() {
        root.record(event);
    }
    repository.save(&mut root).await.unwrap();

    let mut expected = Account::default();
    let at_zero = repository
        .load_at_version("history", Version(0))
        .await
        .unwrap();
    assert_eq!(
        (at_zero.version(), at_zero.state()),
        (Version(0), &expected)
    );
    for (version, event) in (1_u64..).zip(&events) {
        es_core::Aggregate::apply_event(&mut expected, event);
        let past = repository
            .load_at_version("history", Version(version))
            .await
            .unwrap();
        assert_eq!(past.version(), Version(version));
        assert_eq!(past.state(), &expected, "state at version {version}");
    }

    let error = repository
        .load_at_version("history", Version(5))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RepositoryError::VersionOutOfRange { requested, latest, .. }
                if *requested == Version(5) && *latest == Version(4)
        ),
        "got {error:?}"
    );
    assert!(matches!(
        repository.load_at_version("nobody", Version(1)).await,
        Err(RepositoryError::VersionOutOfRange {
            latest: Version(0),
            ..
        })
    ));
}

#[tokio::test]
async fn load_as_of_applies_the_events_recorded_at_or_before_the_instant() {
    let clock = ManualClock::new(T0);
    let repository = Repository::<Account, _>::new(InMemory::with_clock(clock.clone()));
    open_account(&repository, "timed").await; // at T0
    clock.advance_secs(60);
    repository
        .update("timed", |a| a.deposit(100, "t1"))
        .await
        .unwrap(); // at T0 + 60 s
    clock.advance_secs(60);
    repository
        .update("timed", |a| a.withdraw(30))
        .await
        .unwrap(); // at T0 + 120 s

    let at = |seconds: i64| T0.saturating_add_micros(seconds * 1_000_000);
    let before = repository
        .load_as_of("timed", at(0).saturating_add_micros(-1))
        .await
        .unwrap();
    assert_eq!(before.version(), Version::INITIAL);
    assert_eq!(before.state(), &Account::default());

    for (seconds, version, balance) in [
        (0, 1, 0),
        (59, 1, 0),
        (60, 2, 100),
        (119, 2, 100),
        (120, 3, 70),
        (10_000, 3, 70),
    ] {
        let past = repository.load_as_of("timed", at(seconds)).await.unwrap();
        assert_eq!(
            (past.version(), past.state().balance),
            (Version(version), balance),
            "as of T0 + {seconds} s"
        );
    }
}

#[tokio::test]
async fn load_as_of_stops_at_a_hole_left_by_a_clock_that_stepped_back() {
    let clock = ManualClock::new(T0);
    let repository = Repository::<Account, _>::new(InMemory::with_clock(clock.clone()));
    open_account(&repository, "stepped").await; // v1 at T0
    clock.advance_secs(60);
    repository
        .update("stepped", |a| a.deposit(100, "t1"))
        .await
        .unwrap(); // v2 at T0 + 60 s
    clock.advance_secs(-90);
    repository
        .update("stepped", |a| a.withdraw(30))
        .await
        .unwrap(); // v3 at T0 - 30 s: the clock went back

    // At T0 + 10 s the store holds v1 and v3 but not v2: the history stops at the hole.
    let past = repository
        .load_as_of("stepped", T0.saturating_add_micros(10_000_000))
        .await
        .unwrap();
    assert_eq!((past.version(), past.state().balance), (Version(1), 0));
    let now = repository
        .load_as_of("stepped", T0.saturating_add_micros(60_000_000))
        .await
        .unwrap();
    assert_eq!((now.version(), now.state().balance), (Version(3), 70));
}

#[tokio::test]
async fn metadata_is_stored_with_every_event_of_a_save() {
    let repository = repository();
    let mut root = repository.load("traced").await.unwrap();
    root.execute(|a| a.open("ada")).unwrap();
    root.execute(|a| a.deposit(1, "x")).unwrap();
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with("user", "ada")
        .with("request", "r-17");
    repository
        .save_with_metadata(&mut root, &metadata)
        .await
        .unwrap();
    let stored = stored_events(repository.store(), "traced").await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|e| e.metadata == metadata));
    let ids: std::collections::HashSet<Uuid> = stored.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 2, "every event gets its own id");
}

#[tokio::test]
async fn events_of_both_codecs_and_older_schema_versions_load_together() {
    let memory = InMemory::with_clock(ManualClock::new(T0));
    let json = Repository::<Account, _>::new(memory.clone());
    let postcard = Repository::<Account, _>::new(memory.clone()).with_codec(CodecId::Postcard);
    open_account(&json, "mixed").await;
    postcard
        .update("mixed", |a| a.deposit(7, "binary"))
        .await
        .unwrap();
    // An event written by an older release: MoneyDeposited at schema version 1.
    for codec in [CodecId::Json, CodecId::Postcard] {
        let payload = codec.encode(&DepositedV1 { amount: 5 }).unwrap();
        let old = foreign_event("MoneyDeposited", 1, codec, payload);
        memory
            .append(
                &StreamId::new("account", "mixed"),
                ExpectedVersion::Any,
                vec![old],
            )
            .await
            .unwrap();
    }
    let stored = stored_events(&memory, "mixed").await;
    assert_eq!(
        stored.iter().map(|e| e.codec).collect::<Vec<_>>(),
        [
            CodecId::Json,
            CodecId::Postcard,
            CodecId::Json,
            CodecId::Postcard
        ]
    );
    for repository in [
        &json,
        &Repository::new(memory.clone()).with_codec(CodecId::Postcard),
    ] {
        let root = repository.load("mixed").await.unwrap();
        assert_eq!(root.version(), Version(4));
        assert_eq!(root.state().balance, 17);
        assert_eq!(root.state().deposits, 3);
        assert_eq!(
            root.state().references,
            ["binary"],
            "upcast deposits get an empty reference"
        );
    }
}

#[tokio::test]
async fn an_undecodable_event_is_a_typed_error_naming_its_version() {
    let stream = StreamId::new("account", "damaged");
    let cases = [
        ("MoneyDeposited", 2, b"{\"amount\":".to_vec(), "payload"),
        ("MoneyDeposited", 3, b"{}".to_vec(), "schema version"),
        ("AccountClosed", 1, b"{}".to_vec(), "event type"),
    ];
    for (event_type, schema_version, payload, what) in cases {
        let damaged = InMemory::with_clock(ManualClock::new(T0));
        let repository = Repository::<Account, _>::new(damaged.clone());
        open_account(&repository, "damaged").await;
        let bad = foreign_event(event_type, schema_version, CodecId::Json, payload);
        damaged
            .append(&stream, ExpectedVersion::Exact(Version(1)), vec![bad])
            .await
            .unwrap();
        let error = repository.load("damaged").await.unwrap_err();
        let RepositoryError::Decode {
            version, source, ..
        } = &error
        else {
            panic!("an unknown {what} must be RepositoryError::Decode, got {error:?}");
        };
        assert_eq!(*version, Version(2));
        let matches_kind = match what {
            "payload" => matches!(source, es_core::DecodeError::Payload { .. }),
            "schema version" => matches!(
                source,
                es_core::DecodeError::UnknownSchemaVersion {
                    schema_version: 3,
                    current: 2,
                    ..
                }
            ),
            _ => matches!(source, es_core::DecodeError::UnknownEventType { .. }),
        };
        assert!(matches_kind, "an unknown {what} gives {source:?}");
    }
}

/// An account kept on a stream of its own naming (a tenant's prefix): its stream is not
/// `account/<id>`, so no load may take the stream's text for the aggregate id.
#[derive(Default, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
struct TenantAccount(Account);

impl es_core::Aggregate for TenantAccount {
    type Event = support::AccountEvent;
    const TYPE: &'static str = "tenant-account";
    const SNAPSHOT_EVERY: Option<u64> = Some(support::SNAPSHOT_EVERY);
    const SCHEMA_FINGERPRINT: u64 = 0x5eed_0000_acc0_0002;

    fn apply_event(&mut self, event: &support::AccountEvent) {
        self.0.apply_event(event);
    }

    fn stream_id(id: &str) -> StreamId {
        StreamId::new("tenant-7", format!("account:{id}"))
    }
}

#[tokio::test]
async fn every_load_names_the_aggregate_by_its_id_and_its_stream_as_the_aggregate_says() {
    use es_core::Aggregate;

    let stream = StreamId::new("tenant-7", "account:a");
    let named = |root: &AggregateRoot<TenantAccount>| (root.id().to_owned(), root.stream_id());
    let expected = ("a".to_owned(), stream.clone());
    let store = InMemory::with_clock(ManualClock::new(T0));
    let repository = Repository::<TenantAccount, _>::new(store.clone());
    let cached = Repository::<TenantAccount, _>::new(store.clone()).with_cache(8);

    let mut root = repository.load("a").await.unwrap();
    assert_eq!(named(&root), expected, "a new aggregate");
    root.execute(|account| account.0.open("ada")).unwrap();
    repository.save(&mut root).await.unwrap();
    // The caching repository loads it from its events and keeps it; after more saves by the
    // other repository, its cached state is confirmed against the log and the new events are
    // applied to it (below).
    assert_eq!(named(&cached.load("a").await.unwrap()), expected, "cached");
    for amount in 1..=support::SNAPSHOT_EVERY + 1 {
        let mut root = repository.load("a").await.unwrap();
        assert_eq!(named(&root), expected, "replayed");
        root.execute(|account| account.0.deposit(amount, ""))
            .unwrap();
        repository.save(&mut root).await.unwrap();
    }
    let reloaded = cached.load("a").await.unwrap();
    assert_eq!(
        named(&reloaded),
        expected,
        "cached, then brought up to date"
    );
    assert_eq!(reloaded.version(), Version(support::SNAPSHOT_EVERY + 2));
    // From a snapshot (one was taken at SNAPSHOT_EVERY), at a version, and as of a time.
    let snapshot = es_core::SnapshotStore::load_snapshot(&store, &stream)
        .await
        .unwrap()
        .expect("a snapshot of the tenant's stream");
    assert_eq!(snapshot.version, Version(support::SNAPSHOT_EVERY));
    let snapshotted = repository.load("a").await.unwrap();
    assert_eq!(named(&snapshotted), expected, "from a snapshot");
    assert_eq!(snapshotted.state(), reloaded.state());
    let at = repository.load_at_version("a", Version(1)).await.unwrap();
    assert_eq!(named(&at), expected, "at a version");
    let as_of = repository.load_as_of("a", T0).await.unwrap();
    assert_eq!(named(&as_of), expected, "as of a time");
    assert_eq!(as_of.version(), reloaded.version(), "every event is at T0");
    assert_eq!(TenantAccount::stream_id("a"), stream);
    // Nothing was written under the default stream name.
    assert!(stored_events(&store, "a").await.is_empty());
}
