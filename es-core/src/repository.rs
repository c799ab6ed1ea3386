//! The repository: loads aggregates (snapshot + tail), saves their new events with optimistic
//! concurrency, answers temporal queries, and runs commands with retries on conflict.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::aggregate::{Aggregate, AggregateRoot};
use crate::clock::Clock;
use crate::codec::{CodecError, CodecId};
use crate::event::{DecodeError, Metadata, NewEvent, RecordedEvent};
use crate::snapshot::{
    NoSnapshots, SameStore, Snapshot, SnapshotAndEvents, SnapshotLocation, SnapshotStore,
    UnusableSnapshot,
};
use crate::store::{
    AppendOutcome, Conflict, EventStore, ExpectedVersion, StoreError, VersionRange,
};
use crate::types::{StreamId, Timestamp, Version};

mod cache;
mod command_id;
mod retry;
mod unit_of_work;

pub use cache::CacheStats;
use cache::{AggregateCache, ClockCache};
pub use retry::RetryPolicy;
pub use unit_of_work::{retry_on_conflict, UnitOfWork};

/// Loading or saving an aggregate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The store failed; a [`StoreError::Conflict`] means another writer saved first.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be decoded.
    #[error("event {version} of stream `{stream}` does not decode")]
    Decode {
        /// The stream read.
        stream: StreamId,
        /// The version of the event.
        version: Version,
        /// Why it does not decode.
        #[source]
        source: DecodeError,
    },
    /// A new event or a snapshot could not be encoded.
    #[error("could not encode for storage")]
    Encode(#[from] CodecError),
    /// The aggregate has no events.
    #[error("no aggregate at `{stream}`")]
    NotFound {
        /// The stream looked up.
        stream: StreamId,
    },
    /// A temporal query asked for a version past the stream's end.
    #[error("stream `{stream}` has {latest} events; version {requested} does not exist")]
    VersionOutOfRange {
        /// The stream read.
        stream: StreamId,
        /// The version asked for.
        requested: Version,
        /// The stream's last version.
        latest: Version,
    },
    /// The store returned events out of version order: the store is damaged.
    #[error("stream `{stream}` is not contiguous: expected version {expected}, found {found}")]
    BrokenStream {
        /// The stream read.
        stream: StreamId,
        /// The version that should have come next.
        expected: Version,
        /// The version that came.
        found: Version,
    },
}

impl RepositoryError {
    /// Whether this is a version conflict: another writer saved the aggregate first.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, RepositoryError::Store(e) if e.is_conflict())
    }
}

/// A command run through [`Repository::update`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate rejected the command (a business rule).
    #[error("command rejected")]
    Rejected(#[source] E),
    /// Loading or saving failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Every attempt lost a race with another writer.
    #[error("gave up after {attempts} attempts that all conflicted")]
    RetriesExhausted {
        /// How many times the command ran.
        attempts: u32,
        /// The last conflict.
        #[source]
        last: Conflict,
    },
}

/// Loads and saves aggregates of type `A` in the event store `S`, with snapshots kept where
/// `P` says: in `S` itself by default ([`SameStore`]), in another [`SnapshotStore`], or nowhere
/// ([`NoSnapshots`]).
///
/// [`Repository::new`] snapshots every [`A::SNAPSHOT_EVERY`](Aggregate::SNAPSHOT_EVERY) events
/// into the event store; every store of this crate can hold them. Opt out with
/// [`Repository::without_snapshots`] (also the constructor for an event store that cannot keep
/// snapshots), or keep them elsewhere with [`Repository::with_snapshots`].
///
/// # Examples
///
/// ```
/// # use es_core::{Aggregate, Apply, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// # struct Deposited { amount: u64 }
/// # #[derive(Aggregate, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "account", events(Deposited), snapshot_every = 100)]
/// # struct Account { balance: u64 }
/// # impl Apply<Deposited> for Account {
/// #     fn apply(&mut self, event: &Deposited) { self.balance += event.amount }
/// # }
/// # #[derive(Debug, thiserror::Error)]
/// # #[error("a deposit must be positive")]
/// # struct ZeroDeposit;
/// # impl Account {
/// #     fn deposit(&self, amount: u64) -> Result<Vec<AccountEvent>, ZeroDeposit> {
/// #         if amount == 0 { return Err(ZeroDeposit) }
/// #         Ok(vec![Deposited { amount }.into()])
/// #     }
/// # }
/// use es_core::{CodecId, InMemory, ManualClock, Repository, Timestamp, Version};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // One clock for everything: the store stamps events with it, and the repository stamps
/// // snapshots with the store's clock.
/// let clock = ManualClock::new("2026-01-31T09:00:00Z".parse()?);
/// let accounts = Repository::<Account, _>::new(InMemory::with_clock(clock.clone()))
///     .with_codec(CodecId::Postcard);
///
/// // Load (a stream with no events loads as a new aggregate), decide, save: the append
/// // expects the version the aggregate was loaded at.
/// let mut alice = accounts.load("alice").await?;
/// alice.execute(|account| account.deposit(100))?;
/// accounts.save(&mut alice).await?;
///
/// // Or load, decide and save in one call, reloading and retrying on a version conflict.
/// clock.advance_secs(3_600);
/// let updated = accounts.update("alice", |account| account.deposit(50)).await?;
/// assert_eq!((updated.root.state().balance, updated.root.version()), (150, Version(2)));
/// assert_eq!(updated.attempts, 1);
///
/// // Temporal queries: by version, or by the time the store recorded the events.
/// assert_eq!(accounts.load_at_version("alice", Version(1)).await?.state().balance, 100);
/// let half_past_nine: Timestamp = "2026-01-31T09:30:00Z".parse()?;
/// assert_eq!(accounts.load_as_of("alice", half_past_nine).await?.state().balance, 100);
/// # Ok(())
/// # }
/// ```
pub struct Repository<A, S, P = SameStore> {
    store: S,
    snapshots: P,
    codec: CodecId,
    /// Stamps snapshots; `None`: the event store's clock.
    clock: Option<Arc<dyn Clock>>,
    retry: RetryPolicy,
    snapshot_fallbacks: AtomicU64,
    /// Recently used aggregates; `None`: every load reads the store.
    cache: Option<Box<dyn AggregateCache<A>>>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: std::fmt::Debug, P: std::fmt::Debug> std::fmt::Debug for Repository<A, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("store", &self.store)
            .field("snapshots", &self.snapshots)
            .field("codec", &self.codec)
            .field("retry", &self.retry)
            .field("cache", &self.cache.as_ref().map(|cache| cache.stats()))
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, S: EventStore + SnapshotStore> Repository<A, S> {
    /// A repository over `store`, keeping snapshots in it (every
    /// [`A::SNAPSHOT_EVERY`](Aggregate::SNAPSHOT_EVERY) events) and encoding new events as
    /// JSON.
    ///
    /// For an event store that cannot keep snapshots, or to do without them, use
    /// [`Repository::without_snapshots`].
    pub fn new(store: S) -> Self {
        Repository::with_location(store, SameStore)
    }
}

// In an impl of the default type, like `new`, so `Repository::<Order, _>::without_snapshots`
// names it (a path's omitted type parameters take their defaults).
impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` that never takes or reads snapshots: every load replays the
    /// stream from its first event. Also the constructor for an event store that cannot keep
    /// snapshots.
    pub fn without_snapshots(store: S) -> Repository<A, S, NoSnapshots> {
        Repository::with_location(store, NoSnapshots)
    }
}

impl<A: Aggregate, S: EventStore, P> Repository<A, S, P> {
    fn with_location(store: S, snapshots: P) -> Self {
        Repository {
            store,
            snapshots,
            codec: CodecId::Json,
            clock: None,
            retry: RetryPolicy::default(),
            snapshot_fallbacks: AtomicU64::new(0),
            cache: None,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore, P: SnapshotLocation<S>> Repository<A, S, P> {
    /// This repository keeping snapshots in `snapshots` instead, every
    /// [`A::SNAPSHOT_EVERY`](Aggregate::SNAPSHOT_EVERY) events ([`NoSnapshots`]: never).
    pub fn with_snapshots<Q: SnapshotStore>(self, snapshots: Q) -> Repository<A, S, Q> {
        Repository {
            store: self.store,
            snapshots,
            codec: self.codec,
            clock: self.clock,
            retry: self.retry,
            snapshot_fallbacks: self.snapshot_fallbacks,
            cache: self.cache,
            aggregate: PhantomData,
        }
    }

    /// This repository retrying [`Repository::update`] on conflict as `policy` says (by
    /// default [`RetryPolicy::default`]: up to 10 attempts with jittered exponential backoff).
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// This repository encoding new events and snapshots with `codec`. Stored events keep the
    /// codec they were written with; reading works whatever the setting.
    #[must_use]
    pub fn with_codec(mut self, codec: CodecId) -> Self {
        self.codec = codec;
        self
    }

    /// This repository stamping snapshots with `clock` instead of the event store's
    /// [clock](EventStore::clock). Rarely needed: by default snapshots and events share the
    /// store's one clock, so a temporal test sets a clock on the store only.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// This repository keeping the latest state of up to `capacity` recently used aggregates
    /// in memory (an entry not used since the eviction hand last passed it goes first: the
    /// CLOCK approximation of least recently used; `capacity` 0 counts as 1), so that commands
    /// do not load them again.
    ///
    /// - [`update`](Repository::update) decides on the cached state without any store call
    ///   and saves expecting the cached version. The state is moved out of the cache for the
    ///   command, not copied, and its save puts the new state back (one copy per command); a
    ///   concurrent command on the same aggregate meanwhile loads it from the store. The store's version check is what makes this
    ///   safe when other writers (other repositories, other processes over the same store)
    ///   change the aggregate: a save from a state that is no longer current conflicts and
    ///   writes nothing; the entry is dropped and the command runs again on the state loaded
    ///   from the store, at once and without counting against the
    ///   [retry policy](Repository::with_retry_policy). A rejection or a decision to record
    ///   nothing made on a cached state is likewise checked against the stored state before it
    ///   is returned, so no answer rests on a state only the cache holds.
    /// - [`load`](Repository::load) is a query, and its answer is as fresh as a store read
    ///   even with many nodes: from a cached entry it reads the stream from the cached version
    ///   on (one read, no snapshot lookup), confirms that the event at that version is the one
    ///   the entry was built from, and applies the events after it. An entry the log does not
    ///   confirm is dropped and the aggregate loaded in full.
    /// - A successful save advances the entry to the saved state; a failed one drops it.
    /// - [`load_at_version`](Repository::load_at_version) and
    ///   [`load_as_of`](Repository::load_as_of) never use the cache.
    ///
    /// The cache relies on the store's contract that a stream only grows: a store restored
    /// from an older backup under a running repository needs
    /// [`clear_cache`](Repository::clear_cache).
    ///
    /// Off by default: it needs `A: Clone`, costs memory for `capacity` states, and pays off
    /// when the same aggregates take several commands while they are cached.
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(Box::new(ClockCache::<A>::new(capacity)));
        self
    }

    /// How the aggregate cache has been used, or `None` without one (see
    /// [`with_cache`](Repository::with_cache)).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|cache| cache.stats())
    }

    /// Empties the aggregate cache, if there is one.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The snapshot store: the event store itself by default.
    pub fn snapshots(&self) -> &P::Store {
        self.snapshots.resolve(&self.store)
    }

    /// The retry policy of [`Repository::update`].
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// How many snapshots this repository found unusable (see [`UnusableSnapshot`]) and
    /// replaced by a full replay since it was created. The snapshot store counts the fallbacks
    /// of every repository over it: [`SnapshotStore::snapshot_fallbacks`].
    pub fn snapshot_fallbacks(&self) -> u64 {
        self.snapshot_fallbacks.load(Ordering::Relaxed)
    }

    /// Loads the aggregate `id`: its latest usable snapshot, then the events after it. An id
    /// with no events loads as a new aggregate at [`Version::INITIAL`].
    ///
    /// With a [cache](Repository::with_cache) holding `id`, the cached state stands in for
    /// the snapshot: the stream is read from the cached version on, so the answer is as fresh
    /// as a store read even when other nodes write.
    pub async fn load(&self, id: &str) -> Result<AggregateRoot<A>, RepositoryError> {
        let Some(cache) = &self.cache else {
            return Ok(self.load_bounded(id, None).await?.0);
        };
        if let Some((cached, last_event)) = cache.get(id) {
            let stream = cached.stream_id();
            let events = self
                .read_range(&stream, cached.version(), Version(u64::MAX))
                .await?;
            match events.split_first() {
                Some((first, tail))
                    if first.version == cached.version() && first.event_id == last_event =>
                {
                    let Some(last) = tail.last() else {
                        // Current: the root shares the cached state.
                        return Ok(cached);
                    };
                    let from = cached.version();
                    let (state, version) = replay::<A>(&stream, cached.into_state(), from, tail)?;
                    let mut root = AggregateRoot::loaded(id, stream, state, version);
                    cache.put(&mut root, last.event_id);
                    return Ok(root);
                }
                _ => cache.evict_stale(id),
            }
        }
        self.load_into_cache(id).await
    }

    /// Loads `id` from the store, and caches it when it can be confirmed later.
    async fn load_into_cache(&self, id: &str) -> Result<AggregateRoot<A>, RepositoryError> {
        let (mut root, last_event) = self.load_bounded(id, None).await?;
        if let (Some(cache), Some(last_event)) = (&self.cache, last_event) {
            if !root.has_unusable_snapshot() {
                cache.put(&mut root, last_event);
            }
        }
        Ok(root)
    }

    /// The cached aggregate `id`, moved out of the cache as a root to run a command on, if the
    /// cache holds it.
    fn cached_root(&self, id: &str) -> Option<AggregateRoot<A>> {
        self.cache.as_ref()?.take(id)
    }

    /// Loads the aggregate `id`, or fails with [`RepositoryError::NotFound`] if it has no
    /// events.
    pub async fn load_existing(&self, id: &str) -> Result<AggregateRoot<A>, RepositoryError> {
        let root = self.load(id).await?;
        if root.version() == Version::INITIAL {
            return Err(RepositoryError::NotFound {
                stream: A::stream_id(id),
            });
        }
        Ok(root)
    }

    /// The aggregate `id` as it was right after its event `version` (`Version::INITIAL`: before
    /// its first event).
    ///
    /// # Errors
    /// [`RepositoryError::VersionOutOfRange`] when the stream has fewer than `version` events.
    pub async fn load_at_version(
        &self,
        id: &str,
        version: Version,
    ) -> Result<AggregateRoot<A>, RepositoryError> {
        let (root, _) = self.load_bounded(id, Some(version)).await?;
        if root.version() < version {
            return Err(RepositoryError::VersionOutOfRange {
                stream: A::stream_id(id),
                requested: version,
                latest: root.version(),
            });
        }
        Ok(root)
    }

    /// The aggregate `id` as it was at `at`: every event recorded at or before it applied.
    /// An aggregate that did not exist yet loads as a new one at [`Version::INITIAL`].
    pub async fn load_as_of(
        &self,
        id: &str,
        at: Timestamp,
    ) -> Result<AggregateRoot<A>, RepositoryError> {
        let stream = A::stream_id(id);
        let mut events = self.store.read_stream_until(&stream, at).await?;
        // If the store's clock stepped back between two appends, a later version can carry an
        // earlier time and the read has a hole. The aggregate as of `at` is then the history
        // up to the hole: a state can only be reached through every event before it.
        let contiguous = events
            .iter()
            .zip(1..)
            .take_while(|(event, expected)| event.version == Version(*expected))
            .count();
        events.truncate(contiguous);
        let (state, version) = replay::<A>(&stream, A::default(), Version::INITIAL, &events)?;
        Ok(AggregateRoot::loaded(id, stream, state, version))
    }

    /// Loads `id` up to `up_to` from the store: the root, and the id of the last event read
    /// (the event at the root's version; `None` when no event was read).
    ///
    /// The snapshot and the events after it come in one call
    /// ([`SnapshotLocation::load_snapshot_and_events`]: one round trip on PostgreSQL, one
    /// reader-thread hop on SQLite); only a snapshot that turns out unusable costs a second
    /// read, of the events before the snapshot's version (the rest are in hand).
    async fn load_bounded(
        &self,
        id: &str,
        up_to: Option<Version>,
    ) -> Result<(AggregateRoot<A>, Option<uuid::Uuid>), RepositoryError> {
        let stream = A::stream_id(id);
        let to = up_to.unwrap_or(Version(u64::MAX));
        // A state whose shape cannot be traced is never snapshotted (logged once per type).
        let Ok(fingerprint) = A::snapshot_fingerprint() else {
            let events = self.read_range(&stream, Version(1), to).await?;
            return Self::replay_all(id, stream, &events, false);
        };
        let read = self
            .snapshots
            .load_snapshot_and_events(&self.store, &stream, to)
            .await?;
        let first = SnapshotAndEvents::first_version(
            read.snapshot.as_ref().ok().and_then(Option::as_ref),
            to,
        );
        let events = read.events;
        let found = self.usable_snapshot(&stream, read.snapshot, up_to, fingerprint);
        let unusable = match found {
            Found::Usable(state, version) => {
                // The events start at the snapshot's own version: its event must exist, or
                // the snapshot is ahead of the log (a snapshot store that outlived a restored
                // or truncated event store) and would describe events that never happened.
                // A snapshot at version 0 is the state before any event: nothing to confirm.
                let tail = if version == Version::INITIAL {
                    Some(&events[..])
                } else {
                    events
                        .split_first()
                        .and_then(|(first, tail)| (first.version == version).then_some(tail))
                };
                if let Some(tail) = tail {
                    let (state, version) = replay::<A>(&stream, state, version, tail)?;
                    let last_event = events.last().map(|event| event.event_id);
                    let root = AggregateRoot::loaded(id, stream, state, version);
                    return Ok((root, last_event));
                }
                self.fall_back(&stream, &UnusableSnapshot::AheadOfLog { version });
                true
            }
            Found::Unusable => true,
            Found::None => false,
        };
        if first == Version(1) {
            return Self::replay_all(id, stream, &events, unusable);
        }
        // The events from the snapshot's version on are in hand: read only the ones before
        // it. Recorded events never change, so the two reads join into one history (a gap
        // between them would be a broken stream, and replay says so).
        let mut all = self
            .read_range(&stream, Version(1), Version(first.0 - 1))
            .await?;
        all.extend(events);
        Self::replay_all(id, stream, &all, unusable)
    }

    /// The aggregate `id`, on `stream`, from all of its `events`, from the first.
    fn replay_all(
        id: &str,
        stream: StreamId,
        events: &[RecordedEvent],
        unusable_snapshot: bool,
    ) -> Result<(AggregateRoot<A>, Option<uuid::Uuid>), RepositoryError> {
        let (state, version) = replay::<A>(&stream, A::default(), Version::INITIAL, events)?;
        let mut root = AggregateRoot::loaded(id, stream, state, version);
        if unusable_snapshot {
            root.mark_snapshot_unusable();
        }
        Ok((root, events.last().map(|event| event.event_id)))
    }

    /// Counts and logs a snapshot of `stream` that cannot be used.
    fn fall_back(&self, stream: &StreamId, reason: &UnusableSnapshot) {
        self.snapshot_fallbacks.fetch_add(1, Ordering::Relaxed);
        self.snapshots().record_snapshot_fallback(stream);
        // The reason with its sources, on one line.
        let mut text = reason.to_string();
        let mut source = std::error::Error::source(reason);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::warn!(
            %stream,
            reason = %text,
            "snapshot not used; replaying the stream from its first event (the next snapshot \
             the policy takes replaces it)"
        );
    }

    async fn read_range(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
    ) -> Result<Vec<RecordedEvent>, RepositoryError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .read_stream(stream, VersionRange { from, to })
            .await?)
    }

    /// The stream's snapshot as read, decoded, if it is one this aggregate can start from.
    ///
    /// A snapshot that cannot be used is never an error: the events are the truth and the
    /// caller replays them (a store that cannot be reached at all failed the read already).
    fn usable_snapshot(
        &self,
        stream: &StreamId,
        read: Result<Option<Snapshot>, StoreError>,
        up_to: Option<Version>,
        fingerprint: u64,
    ) -> Found<A> {
        let snapshot = match read {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Found::None,
            Err(error) => {
                self.fall_back(stream, &UnusableSnapshot::Unreadable(error));
                return Found::Unusable;
            }
        };
        if up_to.is_some_and(|bound| snapshot.version > bound) {
            return Found::None;
        }
        if snapshot.fingerprint != fingerprint {
            self.fall_back(
                stream,
                &UnusableSnapshot::OtherSchema {
                    stored: snapshot.fingerprint,
                    current: fingerprint,
                },
            );
            return Found::Unusable;
        }
        match snapshot.codec.decode::<A>(&snapshot.state) {
            Ok(state) => Found::Usable(state, snapshot.version),
            Err(error) => {
                self.fall_back(
                    stream,
                    &UnusableSnapshot::Undecodable {
                        version: snapshot.version,
                        source: error,
                    },
                );
                Found::Unusable
            }
        }
    }

    /// Appends the aggregate's pending events, expecting the stream at its loaded version.
    ///
    /// Takes a snapshot when the aggregate's policy says so. Returns what the append wrote, or
    /// `None` when there was nothing to save.
    ///
    /// # Errors
    /// [`RepositoryError::Store`] with a conflict when another writer saved first: reload and
    /// run the command again (see [`Repository::update`]). The aggregate keeps its pending
    /// events on error.
    pub async fn save(
        &self,
        root: &mut AggregateRoot<A>,
    ) -> Result<Option<AppendOutcome>, RepositoryError> {
        self.save_with_metadata(root, &Metadata::default()).await
    }

    /// Like [`Repository::save`], stamping every event with `metadata`.
    pub async fn save_with_metadata(
        &self,
        root: &mut AggregateRoot<A>,
        metadata: &Metadata,
    ) -> Result<Option<AppendOutcome>, RepositoryError> {
        self.save_encoded(root, metadata, |_| None).await
    }

    /// Saves the pending events of `root` with `metadata`, the event at index `i` with the
    /// id `event_id(i)` (a fresh UUID v7 when `None`).
    async fn save_encoded(
        &self,
        root: &mut AggregateRoot<A>,
        metadata: &Metadata,
        event_id: impl Fn(u32) -> Option<uuid::Uuid>,
    ) -> Result<Option<AppendOutcome>, RepositoryError> {
        if !root.has_pending_events() {
            return Ok(None);
        }
        let pending = root.pending_events();
        let mut events = Vec::with_capacity(pending.len());
        for (event, index) in pending.iter().zip(0..) {
            let mut new = NewEvent::encode(event, self.codec)?;
            new.metadata.clone_from(metadata);
            if let Some(id) = event_id(index) {
                new.event_id = id;
            }
            events.push(new);
        }
        // Borrowed, not copied (a copy costs two reference counts up and two down).
        let (_, stream) = root.shared_ids();
        let loaded = root.version();
        let expected = if loaded == Version::INITIAL {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(loaded)
        };
        let last_event = events.last().map(|event| event.event_id);
        let outcome = match self.store.append(stream, expected, events).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.forget_cached(root.id(), error.is_conflict());
                return Err(error.into());
            }
        };
        self.saved(root, loaded, outcome, last_event).await;
        Ok(Some(outcome))
    }

    /// Marks `root`, loaded at `loaded`, saved at `outcome`; takes a snapshot if one is due,
    /// and advances the cached entry.
    async fn saved(
        &self,
        root: &mut AggregateRoot<A>,
        loaded: Version,
        outcome: AppendOutcome,
        last_event: Option<uuid::Uuid>,
    ) {
        let pending = root.pending_events().len() as u64;
        root.mark_saved(outcome.version);
        if crosses_snapshot_boundary(A::SNAPSHOT_EVERY, loaded, outcome.version) {
            let stream = root.stream_id();
            self.take_snapshot(&stream, root).await;
        }
        let Some(cache) = &self.cache else {
            return;
        };
        // Only when the store wrote exactly this batch right after the loaded version is the
        // root's state the state at the outcome's version (an idempotent retry answers with
        // an earlier batch's outcome).
        match last_event {
            Some(last_event)
                if outcome.version.get() == loaded.get() + pending
                    && !root.has_unusable_snapshot() =>
            {
                cache.put(root, last_event);
            }
            _ => cache.evict(root.id()),
        }
    }

    /// Drops the cached entry of `id` after a failed save (`stale`: the store moved past it).
    fn forget_cached(&self, id: &str, stale: bool) {
        if let Some(cache) = &self.cache {
            if stale {
                cache.evict_stale(id);
            } else {
                cache.evict(id);
            }
        }
    }

    /// Writes a snapshot of `root` now, replacing whatever is stored if `root` was loaded past
    /// an unusable snapshot. Failure to snapshot never fails a save (the events are
    /// committed); it is logged.
    async fn take_snapshot(&self, stream: &StreamId, root: &mut AggregateRoot<A>) {
        let Ok(fingerprint) = A::snapshot_fingerprint() else {
            // Logged once per type when the fingerprint was traced.
            return;
        };
        let state = match self.codec.encode(root.state()) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%stream, error = &error as &dyn std::error::Error, "snapshot not taken: state does not encode");
                return;
            }
        };
        let snapshot = Snapshot {
            stream: stream.clone(),
            version: root.version(),
            fingerprint,
            codec: self.codec,
            state,
            taken_at: match &self.clock {
                Some(clock) => clock.now(),
                None => EventStore::clock(&self.store).now(),
            },
        };
        // An unusable snapshot's version cannot be trusted (it may be ahead of the log, or
        // unreadable), so the ordinary "newer wins" rule would keep it forever.
        let saved = if root.has_unusable_snapshot() {
            self.snapshots().replace_snapshot(snapshot).await
        } else {
            self.snapshots().save_snapshot(snapshot).await
        };
        match saved {
            Ok(()) => root.clear_unusable_snapshot(),
            Err(error) => {
                tracing::warn!(%stream, error = &error as &dyn std::error::Error, "snapshot not saved");
            }
        }
    }

    /// Loads the aggregate `id`, runs `command` on it, and saves the events it records; on a
    /// version conflict, waits a jittered, growing delay, reloads and runs it again, as the
    /// [retry policy](Repository::with_retry_policy) allows.
    ///
    /// `command` must be a pure decision on the state it is given: like
    /// [`AtomicU64::fetch_update`]'s closure, it may run more than once. It runs at least once.
    /// Returns the saved aggregate, what the append wrote (`None` if the command recorded no
    /// events) and how many attempts it took.
    ///
    /// The waits use Tokio's timer, as the stores do: call it within a Tokio runtime with the
    /// time driver enabled (`#[tokio::main]` and `#[tokio::test]` have it).
    ///
    /// # Errors
    /// [`CommandError::Rejected`] with the command's own error (nothing is saved),
    /// [`CommandError::RetriesExhausted`] with the last conflict when every attempt lost a race,
    /// and [`CommandError::Repository`] when loading or saving failed otherwise.
    pub async fn update<F, E>(&self, id: &str, command: F) -> Result<Updated<A>, CommandError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        self.update_with_metadata(id, &Metadata::default(), command)
            .await
    }

    /// Like [`Repository::update`], stamping every saved event with `metadata` (a correlation
    /// id, the user who issued the command, ...).
    pub async fn update_with_metadata<F, E>(
        &self,
        id: &str,
        metadata: &Metadata,
        mut command: F,
    ) -> Result<Updated<A>, CommandError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        let mut attempt = 0;
        // Whether the first run was on a cached state: that run does not count against the
        // retry policy, since its conflict only says the cache was behind.
        let mut ran_on_cache = false;
        loop {
            attempt += 1;
            let cached = if attempt == 1 {
                self.cached_root(id)
            } else {
                None
            };
            let on_cache = cached.is_some();
            ran_on_cache |= on_cache;
            let mut root = match cached {
                Some(root) => root,
                None => self.load_into_cache(id).await?,
            };
            let decision = root.execute(&mut command).map(<[_]>::is_empty);
            if on_cache && !matches!(decision, Ok(false)) {
                // Only a save proves a cached state current: a rejection, or nothing to
                // record, is decided again on the stored state.
                continue;
            }
            decision.map_err(CommandError::Rejected)?;
            match self.save_with_metadata(&mut root, metadata).await {
                Ok(outcome) => {
                    return Ok(Updated {
                        root,
                        outcome,
                        attempts: attempt,
                    })
                }
                Err(RepositoryError::Store(StoreError::Conflict(_))) if on_cache => {
                    tracing::debug!(%id, "cached state was behind the store; reloading");
                }
                Err(RepositoryError::Store(StoreError::Conflict(conflict))) => {
                    if attempt - u32::from(ran_on_cache) >= self.retry.max_attempts() {
                        return Err(CommandError::RetriesExhausted {
                            attempts: attempt,
                            last: conflict,
                        });
                    }
                    let delay = self.retry.delay_after(attempt);
                    tracing::debug!(
                        stream = %conflict.stream,
                        attempt,
                        delay_micros = delay.as_micros(),
                        "conflict; retrying command"
                    );
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}

/// What [`Repository::update`] saved.
#[derive(Debug)]
#[non_exhaustive]
pub struct Updated<A: Aggregate> {
    /// The aggregate after the save.
    pub root: AggregateRoot<A>,
    /// What the append wrote; `None` when the command recorded no events.
    pub outcome: Option<AppendOutcome>,
    /// How many times the command ran: 1 when the first attempt was saved.
    pub attempts: u32,
}

/// What the snapshot store holds for a stream.
enum Found<A> {
    /// A snapshot that decoded: the state and its version.
    Usable(A, Version),
    /// A snapshot that cannot be used (counted and logged already).
    Unusable,
    /// No snapshot, or none that applies.
    None,
}

/// Whether saving from `before` to `after` passed a multiple of the snapshot interval.
fn crosses_snapshot_boundary(every: Option<u64>, before: Version, after: Version) -> bool {
    match every {
        Some(every) if every > 0 => before.0 / every != after.0 / every,
        _ => false,
    }
}

/// Applies `events` to `state`, which is at `version`, checking that versions are contiguous.
///
/// # Errors
/// [`RepositoryError::Decode`] for an event that does not decode, and
/// [`RepositoryError::BrokenStream`] for a version out of sequence.
pub fn replay<A: Aggregate>(
    stream: &StreamId,
    mut state: A,
    mut version: Version,
    events: &[RecordedEvent],
) -> Result<(A, Version), RepositoryError> {
    for recorded in events {
        let expected = version.next();
        if recorded.version != expected {
            return Err(RepositoryError::BrokenStream {
                stream: stream.clone(),
                expected,
                found: recorded.version,
            });
        }
        let event = recorded
            .decode::<A::Event>()
            .map_err(|source| RepositoryError::Decode {
                stream: stream.clone(),
                version: recorded.version,
                source,
            })?;
        state.apply_event(&event);
        version = expected;
    }
    Ok((state, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_boundary() {
        assert!(!crosses_snapshot_boundary(None, Version(0), Version(500)));
        assert!(!crosses_snapshot_boundary(
            Some(100),
            Version(0),
            Version(99)
        ));
        assert!(crosses_snapshot_boundary(
            Some(100),
            Version(99),
            Version(100)
        ));
        assert!(crosses_snapshot_boundary(
            Some(100),
            Version(50),
            Version(250)
        ));
        assert!(!crosses_snapshot_boundary(
            Some(100),
            Version(100),
            Version(199)
        ));
        assert!(!crosses_snapshot_boundary(Some(0), Version(0), Version(10)));
    }
}
