//! Aggregates: state rebuilt from events, and the root that tracks what is not yet saved.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::EventSet;
use crate::schema::SchemaTraceError;
use crate::shared::SharedStr;
use crate::types::{StreamId, Version};

/// Applies one event type to an aggregate's state. Implement it once per event the aggregate
/// lists; `#[derive(Aggregate)]` dispatches to these impls.
///
/// Applying must not fail: the event already happened. Checks belong in commands.
pub trait Apply<E> {
    /// Changes the state to reflect `event`.
    fn apply(&mut self, event: &E);
}

/// The state of one consistency boundary, rebuilt by applying its events in order.
///
/// Derive it with `#[derive(Aggregate)]` and
/// `#[aggregate(name = "order", events(A, B, ...), snapshot_every = 100)]`. The state must be
/// serializable so it can be snapshotted.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The events of this aggregate: the enum the derive generates.
    type Event: EventSet;

    /// The aggregate type, the first half of every stream id of this aggregate.
    const TYPE: &'static str;

    /// Take a snapshot every this many events, or never (`None`).
    const SNAPSHOT_EVERY: Option<u64>;

    /// The compile-time part of the snapshot fingerprint. The derive hashes the struct
    /// definition, the event list and the `snapshot_version` key (bump it when apply logic
    /// changes what a state means). Snapshots are checked against
    /// [`Aggregate::snapshot_fingerprint`], which adds the traced shape of nested types.
    const SCHEMA_FINGERPRINT: u64;

    /// The fingerprint snapshots of this aggregate are stored and checked under:
    /// [`Aggregate::SCHEMA_FINGERPRINT`] combined with the serde format of the state, nested
    /// types included, traced once per type at run time (see [`crate::schema`]).
    ///
    /// # Errors
    /// [`SchemaTraceError`] when the state's `Deserialize` cannot be traced: the repository
    /// then takes and uses no snapshots of this type (logged once, at `warn`). Assert
    /// `snapshot_fingerprint().is_ok()` in a test of your aggregate to catch this at build time.
    fn snapshot_fingerprint() -> Result<u64, SchemaTraceError> {
        crate::schema::cached_by_type::<Self>()
    }

    /// Applies one event of the set, dispatching to the matching [`Apply`] impl.
    fn apply_event(&mut self, event: &Self::Event);

    /// The stream that holds the events of the aggregate with this id.
    #[must_use]
    fn stream_id(id: &str) -> StreamId {
        // The type name is `'static`: shared, never copied.
        StreamId::new(crate::SharedStr::from_static(Self::TYPE), id)
    }
}

/// One aggregate instance: its id, its state, the version it was loaded at, and the events
/// recorded since, which [`Repository::save`](crate::Repository::save) appends.
#[derive(Debug)]
pub struct AggregateRoot<A: Aggregate> {
    id: SharedStr,
    /// `A::stream_id(id)`, worked out once: every save names the stream.
    stream: StreamId,
    /// Shared with the repository's [cache](crate::Repository::with_cache) after a save, so
    /// neither a save nor the next command copies it; copied (with `unshare`) only when a
    /// root changes a state something else still holds.
    state: Arc<A>,
    /// How to copy a shared state before changing it: set wherever a state is shared (only
    /// with `A: Clone`); `None` means this root's state is never shared.
    unshare: Option<fn(&A) -> A>,
    version: Version,
    pending: Vec<A::Event>,
    /// Loaded past a snapshot that could not be used: the next snapshot replaces it.
    unusable_snapshot: bool,
}

impl<A: Aggregate + Clone> Clone for AggregateRoot<A> {
    fn clone(&self) -> Self {
        AggregateRoot {
            id: self.id.clone(),
            stream: self.stream.clone(),
            // The copy shares the state until either side changes it.
            state: Arc::clone(&self.state),
            unshare: Some(A::clone),
            version: self.version,
            pending: self.pending.clone(),
            unusable_snapshot: self.unusable_snapshot,
        }
    }
}

impl<A: Aggregate> AggregateRoot<A> {
    /// A new aggregate with no history.
    pub fn new(id: impl Into<SharedStr>) -> Self {
        let id = id.into();
        let stream = A::stream_id(&id);
        Self::assemble(id, stream, Arc::default(), Version::INITIAL, None)
    }

    /// An aggregate rebuilt elsewhere (from a snapshot and events) at `version`.
    pub fn from_parts(id: impl Into<SharedStr>, state: A, version: Version) -> Self {
        let id = id.into();
        let stream = A::stream_id(&id);
        Self::assemble(id, stream, Arc::new(state), version, None)
    }

    /// A root the repository loaded from `stream`, which is `A::stream_id(id)`, at `version`.
    ///
    /// The root's id shares the stream's copy of the text when the stream names the aggregate
    /// by its id (as the default [`Aggregate::stream_id`] does): a load then copies the id once,
    /// not three times.
    pub(crate) fn loaded(id: &str, stream: StreamId, state: A, version: Version) -> Self {
        let id = if stream.aggregate_id() == id {
            stream.shared_aggregate_id().clone()
        } else {
            SharedStr::from(id)
        };
        Self::assemble(id, stream, Arc::new(state), version, None)
    }

    /// A root on a state that others may hold too (the repository's cache): the first change
    /// copies it, unless this root is the only holder by then.
    pub(crate) fn from_shared(
        id: SharedStr,
        stream: StreamId,
        state: Arc<A>,
        version: Version,
        unshare: fn(&A) -> A,
    ) -> Self {
        Self::assemble(id, stream, state, version, Some(unshare))
    }

    /// A root with nothing pending, from its parts; `stream` is `A::stream_id(&id)`.
    fn assemble(
        id: SharedStr,
        stream: StreamId,
        state: Arc<A>,
        version: Version,
        unshare: Option<fn(&A) -> A>,
    ) -> Self {
        AggregateRoot {
            id,
            stream,
            state,
            unshare,
            version,
            pending: Vec::new(),
            unusable_snapshot: false,
        }
    }

    /// The state, to be shared (with the repository's cache) without copying it; `unshare`
    /// (the state's `Clone`) is how this root copies it back before its next change.
    pub(crate) fn share_state(&mut self, unshare: fn(&A) -> A) -> Arc<A> {
        self.unshare = Some(unshare);
        Arc::clone(&self.state)
    }

    /// The state, to change: copied first if something else holds it too.
    fn state_mut(&mut self) -> &mut A {
        if Arc::get_mut(&mut self.state).is_none() {
            self.state = Arc::new(copy_shared(self.unshare, &self.state));
        }
        Arc::get_mut(&mut self.state).expect("the state was just made this root's own")
    }

    /// Runs a command and records the events it decides on.
    ///
    /// `decide` checks the business rules against the current state and returns the events
    /// that record the decision, or an error. The events are applied at once and kept until
    /// the next save; on error nothing changes. Returns the events just recorded.
    ///
    /// # Errors
    /// Whatever `decide` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use es_core::{Aggregate, AggregateRoot, Apply, Event, Version};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    /// struct Deposited { amount: u64 }
    ///
    /// #[derive(Aggregate, Default, Serialize, Deserialize)]
    /// #[aggregate(name = "account", events(Deposited))]
    /// struct Account { balance: u64 }
    ///
    /// impl Apply<Deposited> for Account {
    ///     fn apply(&mut self, event: &Deposited) { self.balance += event.amount }
    /// }
    ///
    /// impl Account { // a command: checks the rules, returns the events that record it
    ///     fn deposit(&self, amount: u64) -> Result<Vec<AccountEvent>, String> {
    ///         if amount == 0 { return Err("a deposit must be positive".to_owned()) }
    ///         Ok(vec![Deposited { amount }.into()])
    ///     }
    /// }
    ///
    /// let mut alice = AggregateRoot::<Account>::new("alice");
    /// let recorded = alice.execute(|account| account.deposit(100))?;
    /// assert_eq!(recorded, [AccountEvent::from(Deposited { amount: 100 })]);
    ///
    /// assert!(alice.execute(|account| account.deposit(0)).is_err()); // records nothing
    /// assert_eq!(alice.state().balance, 100);
    /// assert_eq!(alice.pending_events().len(), 1);
    /// assert_eq!((alice.version(), alice.current_version()), (Version(0), Version(1)));
    /// # Ok::<(), String>(())
    /// ```
    pub fn execute<F, E>(&mut self, decide: F) -> Result<&[A::Event], E>
    where
        F: FnOnce(&A) -> Result<Vec<A::Event>, E>,
    {
        let events = decide(&self.state)?;
        let first_new = self.pending.len();
        if first_new == 0 {
            // The usual case: the decision's own vector becomes the pending list.
            if !events.is_empty() {
                let state = self.state_mut();
                for event in &events {
                    state.apply_event(event);
                }
            }
            self.pending = events;
        } else {
            for event in events {
                self.record(event);
            }
        }
        Ok(&self.pending[first_new..])
    }

    /// Applies `event` to the state and keeps it for the next save.
    pub fn record(&mut self, event: impl Into<A::Event>) {
        let event = event.into();
        self.state_mut().apply_event(&event);
        self.pending.push(event);
    }

    /// The aggregate id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream of this aggregate.
    #[must_use]
    pub fn stream_id(&self) -> StreamId {
        self.stream.clone()
    }

    /// The aggregate id and the stream, shared (no text copied).
    pub(crate) fn shared_ids(&self) -> (&SharedStr, &StreamId) {
        (&self.id, &self.stream)
    }

    /// The current state, including events not yet saved.
    #[must_use]
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The version of the last saved (or loaded) event: the expected version of the next save.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The version the aggregate will have once its pending events are saved.
    #[must_use]
    pub fn current_version(&self) -> Version {
        Version(self.version.0 + self.pending.len() as u64)
    }

    /// The events recorded since the last save.
    #[must_use]
    pub fn pending_events(&self) -> &[A::Event] {
        &self.pending
    }

    /// Whether there are events waiting to be saved.
    #[must_use]
    pub fn has_pending_events(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Marks the pending events as saved, the stream now at `version`.
    pub(crate) fn mark_saved(&mut self, version: Version) {
        self.pending.clear();
        self.version = version;
    }

    /// Records that the stream's stored snapshot could not be used.
    pub(crate) fn mark_snapshot_unusable(&mut self) {
        self.unusable_snapshot = true;
    }

    /// Whether the stream's stored snapshot could not be used when this root was loaded, and
    /// has not been replaced since.
    pub(crate) fn has_unusable_snapshot(&self) -> bool {
        self.unusable_snapshot
    }

    /// Records that the unusable snapshot was replaced.
    pub(crate) fn clear_unusable_snapshot(&mut self) {
        self.unusable_snapshot = false;
    }

    /// The state, leaving the root.
    #[must_use]
    pub fn into_state(self) -> A {
        let unshare = self.unshare;
        Arc::try_unwrap(self.state).unwrap_or_else(|shared| copy_shared(unshare, &shared))
    }
}

/// A copy of a state something else holds too, made with the `Clone` of whoever shared it.
fn copy_shared<A>(unshare: Option<fn(&A) -> A>, state: &A) -> A {
    let unshare = unshare.expect("a state is only shared where `A: Clone` set how to copy it");
    unshare(state)
}
