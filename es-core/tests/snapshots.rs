//! Snapshots through the repository: when they are taken, that loading uses them (snapshot +
//! tail), and that unusable ones are ignored, counted, and replaced by a full replay.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use es_core::{
    Aggregate, AppendOutcome, Clock, CodecId, EventStore, ExpectedVersion, GlobalPosition,
    InMemory, ManualClock, NewEvent, RecordedEvent, Repository, Snapshot, SnapshotStore,
    StoreError, StreamBatch, StreamId, Timestamp, Version, VersionRange,
};
use support::{Account, SNAPSHOT_EVERY};

const T0: Timestamp = Timestamp::from_micros(1_700_000_000_000_000);

/// An in-memory event store that counts the events its stream reads return, so a test can
/// tell a snapshot + tail load from a full replay.
#[derive(Clone)]
struct Counting {
    inner: InMemory,
    events_read: std::sync::Arc<AtomicUsize>,
}

impl Counting {
    fn new() -> Self {
        Counting {
            inner: InMemory::with_clock(ManualClock::new(T0)),
            events_read: std::sync::Arc::default(),
        }
    }

    /// The number of events read since the last call.
    fn take_events_read(&self) -> usize {
        self.events_read.swap(0, Ordering::SeqCst)
    }
}

impl EventStore for Counting {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
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
        let events = self.inner.read_stream(stream, range).await?;
        self.events_read.fetch_add(events.len(), Ordering::SeqCst);
        Ok(events)
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream_until(stream, until).await?;
        self.events_read.fetch_add(events.len(), Ordering::SeqCst);
        Ok(events)
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

type Snapshotting = Repository<Account, Counting, InMemory>;

fn repository(codec: CodecId) -> Snapshotting {
    Repository::without_snapshots(Counting::new())
        .with_snapshots(InMemory::with_clock(ManualClock::new(T0)))
        .with_codec(codec)
}

fn stream(id: &str) -> StreamId {
    StreamId::new("account", id)
}

/// Opens the account and makes `deposits` deposits of 1, 2, 3 ..., each saved on its own.
async fn account_with_deposits(repository: &Snapshotting, id: &str, deposits: u64) {
    repository.update(id, |a| a.open("ada")).await.unwrap();
    for amount in 1..=deposits {
        repository
            .update(id, |a| a.deposit(amount, &format!("d{amount}")))
            .await
            .unwrap();
    }
}

/// The state after replaying every event of `id`, without snapshots.
async fn replayed(repository: &Snapshotting, id: &str) -> Account {
    Repository::<Account, _>::without_snapshots(repository.store().clone())
        .load(id)
        .await
        .unwrap()
        .into_state()
}

async fn stored_snapshot(repository: &Snapshotting, id: &str) -> Option<Snapshot> {
    repository
        .snapshots()
        .load_snapshot(&stream(id))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_snapshot_is_taken_each_time_a_save_crosses_a_multiple_of_the_interval() {
    assert_eq!(SNAPSHOT_EVERY, 5);
    let repository = repository(CodecId::Postcard);
    repository.update("s", |a| a.open("ada")).await.unwrap();
    let mut taken = Vec::new();
    for amount in 1..=11 {
        repository
            .update("s", |a| a.deposit(amount, ""))
            .await
            .unwrap();
        if let Some(snapshot) = stored_snapshot(&repository, "s").await {
            taken.push((amount + 1, snapshot.version.get()));
        }
    }
    // Versions 1-4 no snapshot; 5-9 the one at 5; 10-12 the one at 10.
    let expected: Vec<(u64, u64)> = (5..=12).map(|v| (v, if v < 10 { 5 } else { 10 })).collect();
    assert_eq!(taken, expected);

    let snapshot = stored_snapshot(&repository, "s").await.unwrap();
    assert_eq!(
        snapshot.fingerprint,
        Account::snapshot_fingerprint().unwrap()
    );
    assert_eq!(snapshot.codec, CodecId::Postcard);
    let state: Account = CodecId::Postcard.decode(&snapshot.state).unwrap();
    let at_ten = repository.load_at_version("s", Version(10)).await.unwrap();
    assert_eq!(
        &state,
        at_ten.state(),
        "the snapshot holds the state at its version"
    );
}

#[tokio::test]
async fn one_save_jumping_over_a_boundary_snapshots_at_its_last_version() {
    let repository = repository(CodecId::Json);
    let mut root = repository.load("jump").await.unwrap();
    root.execute(|a| a.open("ada")).unwrap();
    for amount in 1..=6 {
        root.execute(|a| a.deposit(amount, "")).unwrap();
    }
    repository.save(&mut root).await.unwrap(); // versions 1-7 at once
    let snapshot = stored_snapshot(&repository, "jump").await.unwrap();
    assert_eq!(snapshot.version, Version(7));
    assert_eq!(
        CodecId::Json.decode::<Account>(&snapshot.state).unwrap(),
        *root.state()
    );
}

#[tokio::test]
async fn loading_uses_the_snapshot_and_reads_only_the_tail() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let repository = repository(codec);
        account_with_deposits(&repository, "tail", 11).await; // 12 events, snapshot at 10
        repository.store().take_events_read();

        let loaded = repository.load("tail").await.unwrap();
        assert_eq!(loaded.version(), Version(12));
        assert_eq!(
            repository.store().take_events_read(),
            3,
            "{codec}: only the snapshot's own event (which confirms it) and the tail are read"
        );
        assert_eq!(loaded.state(), &replayed(&repository, "tail").await);
        assert_eq!(repository.snapshot_fallbacks(), 0);
    }
}

#[tokio::test]
async fn the_loaded_state_comes_from_the_snapshot() {
    // A snapshot whose state differs from what the events say proves the events before it are
    // not replayed.
    let repository = repository(CodecId::Json);
    account_with_deposits(&repository, "proof", 11).await;
    let mut marked = replayed(&repository, "proof").await;
    marked.owner = Some("from the snapshot".to_owned());
    marked.balance = 1_000_000;
    repository
        .snapshots()
        .save_snapshot(Snapshot {
            stream: stream("proof"),
            version: Version(11),
            fingerprint: Account::snapshot_fingerprint().unwrap(),
            codec: CodecId::Json,
            state: CodecId::Json.encode(&marked).unwrap(),
            taken_at: T0,
        })
        .await
        .unwrap();
    let loaded = repository.load("proof").await.unwrap();
    assert_eq!(loaded.state().owner.as_deref(), Some("from the snapshot"));
    assert_eq!(
        loaded.state().balance,
        1_000_000 + 11,
        "the tail (deposit 11 at version 12) applies on top of the snapshot"
    );
}

async fn replace_snapshot(repository: &Snapshotting, id: &str, fingerprint: u64, state: Vec<u8>) {
    let current = stored_snapshot(repository, id).await.unwrap();
    repository
        .snapshots()
        .save_snapshot(Snapshot {
            fingerprint,
            state,
            ..current
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unusable_snapshot_is_ignored_counted_and_replaced_by_a_full_replay() {
    let garbage: Vec<u8> = (0..64_u8).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
    let valid_json_wrong_shape = br#"{"owner":7}"#.to_vec();
    for (label, codec) in [("json", CodecId::Json), ("postcard", CodecId::Postcard)] {
        let repository = repository(codec);
        account_with_deposits(&repository, "broken", 11).await;
        let expected = replayed(&repository, "broken").await;
        let valid_state = codec.encode(&expected).unwrap();

        let cases: [(&str, u64, Vec<u8>); 4] = [
            (
                "garbage bytes",
                Account::snapshot_fingerprint().unwrap(),
                garbage.clone(),
            ),
            (
                "no bytes",
                Account::snapshot_fingerprint().unwrap(),
                Vec::new(),
            ),
            (
                "a value of another shape",
                Account::snapshot_fingerprint().unwrap(),
                valid_json_wrong_shape.clone(),
            ),
            (
                "another schema fingerprint",
                Account::snapshot_fingerprint().unwrap() ^ 1,
                valid_state,
            ),
        ];
        for (fallbacks, (case, fingerprint, state)) in (1_u64..).zip(cases) {
            replace_snapshot(&repository, "broken", fingerprint, state).await;
            repository.store().take_events_read();
            let loaded = repository.load("broken").await.unwrap();
            assert_eq!(
                loaded.state(),
                &expected,
                "{label}, {case}: replayed from events"
            );
            assert_eq!(loaded.version(), Version(12));
            assert_eq!(
                repository.store().take_events_read(),
                12,
                "{label}, {case}: every event is read"
            );
            assert_eq!(
                repository.snapshot_fallbacks(),
                fallbacks,
                "{label}, {case}: the fallback is counted"
            );
        }
    }
}

#[tokio::test]
async fn load_at_version_ignores_a_snapshot_newer_than_the_version_asked() {
    let repository = repository(CodecId::Postcard);
    account_with_deposits(&repository, "past", 11).await; // snapshots at 5 and 10
    assert_eq!(
        stored_snapshot(&repository, "past").await.unwrap().version,
        Version(10)
    );
    let plain = Repository::<Account, _>::without_snapshots(repository.store().clone());
    for version in [1, 7, 9] {
        repository.store().take_events_read();
        let past = repository
            .load_at_version("past", Version(version))
            .await
            .unwrap();
        assert_eq!(
            repository.store().take_events_read(),
            usize::try_from(version).unwrap(),
            "a snapshot at 10 cannot serve version {version}: events 1..={version} are read"
        );
        let expected = plain
            .load_at_version("past", Version(version))
            .await
            .unwrap();
        assert_eq!(past.state(), expected.state(), "state at version {version}");
    }
    // At or after the snapshot, it is used: its own event (which confirms it) and the tail.
    for (version, read) in [(10, 1), (11, 2)] {
        repository.store().take_events_read();
        let past = repository
            .load_at_version("past", Version(version))
            .await
            .unwrap();
        assert_eq!(past.version(), Version(version));
        assert_eq!(repository.store().take_events_read(), read);
    }
    assert_eq!(
        repository.snapshot_fallbacks(),
        0,
        "a snapshot out of range is not a fallback"
    );
}

#[tokio::test]
async fn a_snapshot_of_another_stream_is_never_used() {
    let repository = repository(CodecId::Json);
    account_with_deposits(&repository, "one", 4).await; // snapshot at 5
    account_with_deposits(&repository, "two", 2).await; // none
    assert!(stored_snapshot(&repository, "two").await.is_none());
    let two = repository.load("two").await.unwrap();
    assert_eq!(two.state(), &replayed(&repository, "two").await);
    assert_eq!(two.state().balance, 3);
}

#[tokio::test]
async fn snapshots_are_stamped_by_the_repository_clock() {
    let clock = ManualClock::new(T0.saturating_add_micros(42));
    let repository = Repository::<Account, _>::new(InMemory::with_clock(ManualClock::new(T0)))
        .with_snapshots(InMemory::new())
        .with_clock(clock.clone());
    repository.update("c", |a| a.open("ada")).await.unwrap();
    for amount in 1..SNAPSHOT_EVERY {
        clock.advance_secs(1);
        repository
            .update("c", |a| a.deposit(amount, ""))
            .await
            .unwrap();
    }
    let snapshot = repository
        .snapshots()
        .load_snapshot(&stream("c"))
        .await
        .unwrap()
        .expect("a snapshot at the interval");
    assert_eq!(snapshot.version, Version(SNAPSHOT_EVERY));
    assert_eq!(snapshot.taken_at, clock.now());
}

#[tokio::test]
async fn repository_new_snapshots_by_default_into_its_own_event_store() {
    let store = InMemory::with_clock(ManualClock::new(T0));
    let repository = Repository::<Account, _>::new(store.clone());
    repository.update("d", |a| a.open("ada")).await.unwrap();
    for amount in 1..SNAPSHOT_EVERY {
        repository
            .update("d", |a| a.deposit(amount, ""))
            .await
            .unwrap();
    }
    // Version SNAPSHOT_EVERY was just saved: the policy took a snapshot, into the event store.
    let snapshot = store
        .load_snapshot(&stream("d"))
        .await
        .unwrap()
        .expect("a snapshot without any `with_snapshots`");
    assert_eq!(snapshot.version, Version(SNAPSHOT_EVERY));
    assert_eq!(
        snapshot.fingerprint,
        Account::snapshot_fingerprint().unwrap()
    );
    assert_eq!(
        repository
            .snapshots()
            .load_snapshot(&stream("d"))
            .await
            .unwrap(),
        Some(snapshot.clone()),
        "the repository's snapshot store is the event store"
    );
    assert_eq!(
        snapshot.taken_at, T0,
        "stamped by the store's clock, the only clock the test set"
    );
    let loaded = repository.load("d").await.unwrap();
    assert_eq!(loaded.version(), Version(SNAPSHOT_EVERY));
    assert_eq!(repository.snapshot_fallbacks(), 0);
}

#[tokio::test]
async fn without_snapshots_opts_out_of_snapshots_by_default() {
    let store = InMemory::with_clock(ManualClock::new(T0));
    let repository = Repository::<Account, _>::without_snapshots(store.clone());
    repository.update("n", |a| a.open("ada")).await.unwrap();
    for amount in 1..=2 * SNAPSHOT_EVERY {
        repository
            .update("n", |a| a.deposit(amount, ""))
            .await
            .unwrap();
    }
    assert_eq!(store.load_snapshot(&stream("n")).await.unwrap(), None);
    // A snapshot another repository left is not read either.
    let mut planted = Repository::<Account, _>::new(store.clone())
        .load("n")
        .await
        .unwrap();
    planted.record(support::deposited(1_000, "planted"));
    let snapshot = Snapshot {
        stream: stream("n"),
        version: planted.current_version(),
        fingerprint: Account::snapshot_fingerprint().unwrap(),
        codec: CodecId::Json,
        state: CodecId::Json.encode(planted.state()).unwrap(),
        taken_at: T0,
    };
    store.save_snapshot(snapshot).await.unwrap();
    let loaded = repository.load("n").await.unwrap();
    assert_eq!(loaded.version(), Version(2 * SNAPSHOT_EVERY + 1));
    assert_eq!(repository.snapshot_fallbacks(), 0);
}

/// One logged event's fields: name and value.
type Logged = Vec<(String, String)>;

/// The fields of every warning logged while it is the thread's subscriber.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<Logged>>>);

impl Warnings {
    fn taken(&self) -> Vec<Logged> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_fallback_warning_says_why_the_snapshot_was_not_used() {
    let warnings = Warnings::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(warnings.clone(), || {
        runtime.block_on(async {
            let repository = repository(CodecId::Json);
            account_with_deposits(&repository, "why", 6).await;
            let reason = |warnings: &Warnings| {
                let taken = warnings.taken();
                assert_eq!(taken.len(), 1, "one warning per fallback: {taken:?}");
                taken[0]
                    .iter()
                    .find(|(name, _)| name == "reason")
                    .map(|(_, value)| value.clone())
                    .expect("a `reason` field")
            };
            warnings.taken();

            replace_snapshot(
                &repository,
                "why",
                Account::snapshot_fingerprint().unwrap(),
                b"{}".to_vec(),
            )
            .await;
            repository.load("why").await.unwrap();
            assert_eq!(
                reason(&warnings),
                "its state does not decode: json codec failed: missing field `balance` at line 1 \
                 column 2",
                "serde's message, not only \"json codec failed\""
            );

            let state = CodecId::Json
                .encode(&replayed(&repository, "why").await)
                .unwrap();
            replace_snapshot(&repository, "why", 7, state).await;
            repository.load("why").await.unwrap();
            assert!(
                reason(&warnings).starts_with("it was taken under another schema"),
                "the fingerprint mismatch is named"
            );
        });
    });
}
