//! The event store contract and its implementations.
//!
//! [`EventStore`] is the whole contract every store keeps; `es_core::testing::conformance`
//! checks each sentence of it against any implementation.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::event::{NewEvent, RecordedEvent};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

mod any;
mod idempotency;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use any::{Store, StoreOptions};
pub(crate) use idempotency::{
    check_batch_ids, check_ids_across_batches, match_stored_batch, match_stored_batches,
};
pub use idempotency::{DuplicateEventId, DuplicateEventIds, StoredId};
pub use memory::InMemory;

/// The version a stream must be at for an append to go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append after whatever the stream holds.
    Any,
    /// The stream must not exist yet (have no events).
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version.
    /// `Exact(Version::INITIAL)` means the same as [`ExpectedVersion::NoStream`].
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (`None`: no events) satisfies this
    /// expectation.
    #[must_use]
    pub fn is_satisfied_by(self, actual: Option<Version>) -> bool {
        match (self, actual) {
            (ExpectedVersion::Any, _)
            | (ExpectedVersion::NoStream | ExpectedVersion::Exact(Version::INITIAL), None)
            | (ExpectedVersion::StreamExists, Some(_)) => true,
            (ExpectedVersion::Exact(expected), Some(actual)) => expected == actual,
            _ => false,
        }
    }

    /// Checks the expectation against the stream's last version.
    ///
    /// # Errors
    /// A [`Conflict`] naming `stream` when the expectation does not hold.
    pub fn check(self, stream: &StreamId, actual: Option<Version>) -> Result<(), Conflict> {
        if self.is_satisfied_by(actual) {
            Ok(())
        } else {
            Err(Conflict {
                stream: stream.clone(),
                expected: self,
                actual,
            })
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// An append was rejected because the stream was not at the expected version. Nothing of the
/// batch was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version conflict on stream `{stream}`: expected {expected}, found {}", match .actual { Some(v) => format!("version {v}"), None => "no stream".to_owned() })]
pub struct Conflict {
    /// The stream appended to.
    pub stream: StreamId,
    /// What the caller expected.
    pub expected: ExpectedVersion,
    /// The stream's last version when the append was checked (`None`: no events).
    pub actual: Option<Version>,
}

/// A multi-stream append was rejected because one or more of its streams was not at the
/// expected version. Nothing of any stream was written.
///
/// Every stream whose expectation failed is named, in the order the append listed them, so a
/// caller can reload exactly those aggregates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version conflict on {} of the streams appended to together: {}", .0.len(), ConflictList(.0))]
pub struct Conflicts(Vec<Conflict>);

impl Conflicts {
    /// The conflicts, at least one, in the order the append listed their streams.
    #[must_use]
    pub fn new(conflicts: Vec<Conflict>) -> Option<Self> {
        (!conflicts.is_empty()).then_some(Conflicts(conflicts))
    }

    /// Every conflict, in the order the append listed their streams.
    #[must_use]
    pub fn as_slice(&self) -> &[Conflict] {
        &self.0
    }

    /// The conflicts as a vector.
    #[must_use]
    pub fn into_vec(self) -> Vec<Conflict> {
        self.0
    }

    /// The conflict on `stream`, if that stream failed its check.
    #[must_use]
    pub fn on(&self, stream: &StreamId) -> Option<&Conflict> {
        self.0.iter().find(|conflict| &conflict.stream == stream)
    }
}

/// Displays conflicts separated by `; `.
struct ConflictList<'a>(&'a [Conflict]);

impl fmt::Display for ConflictList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, conflict) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let actual = match conflict.actual {
                Some(version) => format!("version {version}"),
                None => "no stream".to_owned(),
            };
            write!(
                f,
                "`{}` expected {}, found {actual}",
                conflict.stream, conflict.expected
            )?;
        }
        Ok(())
    }
}

/// One stream's part of a multi-stream append ([`EventStore::append_streams`]): the stream,
/// the version it must be at, and the events to add to it.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamBatch {
    /// The stream appended to.
    pub stream: StreamId,
    /// The version the stream must be at.
    pub expected: ExpectedVersion,
    /// The events, in order (at least one).
    pub events: Vec<NewEvent>,
}

impl StreamBatch {
    /// The batch `events` for `stream`, which must be at `expected`.
    #[must_use]
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        StreamBatch {
            stream,
            expected,
            events,
        }
    }
}

/// Checks the shape of a multi-stream append before a store looks at its data: at least one
/// batch, no empty batch, no stream twice, no event id twice.
///
/// # Errors
/// [`StoreError::EmptyAppend`], [`StoreError::DuplicateStream`] and
/// [`StoreError::DuplicateEventIds`].
pub fn check_stream_batches(batches: &[StreamBatch]) -> Result<(), StoreError> {
    if batches.is_empty() || batches.iter().any(|batch| batch.events.is_empty()) {
        return Err(StoreError::EmptyAppend);
    }
    let mut seen = std::collections::HashSet::with_capacity(batches.len());
    for batch in batches {
        if !seen.insert(&batch.stream) {
            return Err(StoreError::DuplicateStream {
                stream: batch.stream.clone(),
            });
        }
    }
    check_ids_across_batches(batches)
}

/// What an append wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// The stream's version after the append: the version of its last event.
    pub version: Version,
    /// The global position of the batch's last event. Wait for read models to reach it to
    /// read your own writes.
    pub position: GlobalPosition,
}

/// An inclusive range of stream versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// The first version read (at least 1).
    pub from: Version,
    /// The last version read.
    pub to: Version,
}

impl VersionRange {
    /// Every event of the stream.
    #[must_use]
    pub const fn all() -> Self {
        VersionRange {
            from: Version(1),
            to: Version(u64::MAX),
        }
    }

    /// The events from `from` on.
    #[must_use]
    pub const fn starting_at(from: Version) -> Self {
        VersionRange {
            from,
            to: Version(u64::MAX),
        }
    }

    /// The events up to and including `to`.
    #[must_use]
    pub const fn up_to(to: Version) -> Self {
        VersionRange {
            from: Version(1),
            to,
        }
    }

    /// Whether `version` lies in the range.
    #[must_use]
    pub fn contains(&self, version: Version) -> bool {
        self.from <= version && version <= self.to
    }
}

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// Streams of a multi-stream append were not at their expected versions; nothing of any
    /// stream was written.
    #[error(transparent)]
    Conflicts(#[from] Conflicts),
    /// An append was given no events (or a multi-stream append no streams, or a stream with
    /// no events).
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// A multi-stream append named the same stream twice.
    #[error("stream `{stream}` appears twice in one multi-stream append; give it one batch")]
    DuplicateStream {
        /// The stream named twice.
        stream: StreamId,
    },
    /// Some event ids of the batch are already stored (or repeated in it), and the batch is
    /// not an exact retry of a stored one; nothing was written. Retrying will not help.
    #[error(transparent)]
    DuplicateEventIds(#[from] DuplicateEventIds),
    /// The file or database is not an event store of this framework.
    #[error("`{location}` is not an event store: {reason}")]
    NotAStore {
        /// The path or name that was opened.
        location: String,
        /// What was found instead.
        reason: String,
    },
    /// The store was written by a newer release with a schema this one does not know.
    #[error(
        "store schema version {found} is newer than the newest this release knows ({supported})"
    )]
    NewerSchema {
        /// The schema version found in the store.
        found: u32,
        /// The newest schema version this release can use.
        supported: u32,
    },
    /// A stored row is damaged: a field is out of range or a value cannot be read.
    #[error("corrupt data at {location}: {reason}")]
    Corrupt {
        /// Where (for example a global position).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// An existing store of an older schema could not be upgraded to this release's schema;
    /// nothing was changed, so the release that wrote it can still open it.
    #[error("`{location}` cannot be upgraded from schema version {from} to {to}: {reason}")]
    Migration {
        /// The path or name that was opened.
        location: String,
        /// The schema version found.
        from: u32,
        /// The schema version this release needs.
        to: u32,
        /// What stands in the way, and what to do about it.
        reason: String,
    },
    /// The configuration is invalid (a bad schema name, a bad option).
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The connection to the database was lost or could not be made. Whether an append that
    /// failed this way was committed is unknown: read the stream to find out.
    #[error("connection to the event store failed")]
    Connection(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store was closed, or its writer stopped.
    #[error("the event store is closed")]
    Closed,
    /// There is no store at the location, and it was opened to use an existing store only
    /// (read-only, or `existing_only`): nothing was created.
    #[error("no event store at `{location}`: {reason}")]
    NotFound {
        /// The path, URL or name that was opened.
        location: String,
        /// What was found instead.
        reason: String,
    },
    /// A write to a store opened read-only; nothing was written.
    #[error("the event store `{location}` is open read-only: nothing can be written")]
    ReadOnly {
        /// The path, URL or name of the store.
        location: String,
    },
    /// A write carried the [`Fence`](crate::lease::Fence) of a lease that has moved on (taken
    /// by another holder, or released): the writer no longer holds it, and nothing was
    /// written. The writer must stop working under that lease.
    #[error(
        "write fenced off: lease `{lease}` is no longer held with token {token} (its token is now {})",
        match .current { Some(token) => token.to_string(), None => "none: never granted".to_owned() }
    )]
    Fenced {
        /// The lease the write was made under.
        lease: String,
        /// The token the write carried.
        token: u64,
        /// The lease's token now (`None`: the lease was never granted).
        current: Option<u64>,
    },
    /// Any other failure of the storage backend.
    #[error("event store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether this is a version conflict, of a single-stream or a multi-stream append
    /// (retrying with reloaded aggregates may succeed).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Conflicts(_))
    }

    /// Every stream conflict this error carries: one for [`StoreError::Conflict`], each
    /// failed stream for [`StoreError::Conflicts`], none otherwise.
    #[must_use]
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            StoreError::Conflict(conflict) => std::slice::from_ref(conflict),
            StoreError::Conflicts(conflicts) => conflicts.as_slice(),
            _ => &[],
        }
    }

    /// Whether a write was refused because its writer's lease moved on
    /// ([`StoreError::Fenced`]).
    #[must_use]
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }

    /// The conflict, if this is one.
    #[must_use]
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            StoreError::Conflict(conflict) => Some(conflict),
            _ => None,
        }
    }

    /// The refused ids, if this is [`StoreError::DuplicateEventIds`].
    #[must_use]
    pub fn as_duplicate_event_ids(&self) -> Option<&DuplicateEventIds> {
        match self {
            StoreError::DuplicateEventIds(duplicates) => Some(duplicates),
            _ => None,
        }
    }

    /// Whether the outcome of the operation is unknown: the connection failed, so an append
    /// may or may not have been committed. Re-appending the same batch (same event ids) is
    /// safe: a committed batch answers its original outcome and is not stored twice.
    #[must_use]
    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Connection(_))
    }

    /// A backend error wrapping `source`.
    pub fn backend(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(source))
    }
}

/// An append-only, versioned log of events, grouped in streams, with one global order.
///
/// # Contract
///
/// Every implementation guarantees, and the conformance suite checks:
///
/// 1. **Atomic appends.** `append` writes all events of the batch or none, also across a crash.
///    An empty batch is rejected with [`StoreError::EmptyAppend`].
/// 2. **Optimistic concurrency.** `append` first checks `expected` against the stream's last
///    version; on mismatch it returns [`StoreError::Conflict`] with the expected and actual
///    versions and writes nothing. Of many concurrent appends with the same expected version,
///    exactly one succeeds.
/// 3. **Versions.** The events of a stream get versions 1, 2, 3 ... with no gap and no
///    duplicate, in append order.
/// 4. **Global order.** Every event gets a global position, strictly increasing across the
///    store (gaps are allowed: a store may burn positions). `read_all` returns events in
///    position order and is *gap-safe*: once it has returned an event at position `p`, no
///    event with a position below `p` becomes visible later. A catch-up reader that resumes
///    after the last position it saw therefore never misses an event.
/// 5. **Timestamps.** Every event gets `recorded_at` from the store's clock at append, but
///    never earlier than the last event of its stream: if the clock stepped back (or another
///    node's clock is behind), the event gets the stream's last time. A stream's times
///    therefore never decrease with its versions, and `read_stream_until` returns a prefix of
///    the stream.
/// 6. **Durability.** Once `append` returns `Ok`, the events survive a crash of the process
///    (for durable stores).
/// 7. **Stored bytes are returned unchanged**: event id, type, schema version, codec, payload
///    and metadata read back exactly as appended.
/// 8. **Multi-stream appends.** `append_streams` appends to several streams in one atomic
///    step, each stream checked against its own expected version: either every batch is
///    written or none is, also across a crash. When any check fails it returns
///    [`StoreError::Conflicts`] naming *every* stream that failed, with its expected and actual
///    versions, and writes nothing. Its events take one contiguous run of the global order:
///    the batches in the order given, each batch's events in order, and no event of any other
///    append between its first and its last event. All of them get the same `recorded_at`
///    (the clock's time, raised to the latest last time of the streams). Readers
///    (`read_stream`, `read_all`, and everything built on them) see all of it or none of it.
///    Of concurrent multi-stream appends whose stream sets overlap, at most one succeeds per
///    version of a shared stream, and they never deadlock. No batches, a batch of no events
///    ([`StoreError::EmptyAppend`]) and a stream named twice ([`StoreError::DuplicateStream`])
///    are rejected before anything is checked.
/// 9. **Idempotent appends.** Event ids are unique in the store. An append whose events are
///    exactly a stored batch (the same ids, in the same stream, at consecutive versions in
///    batch order) stores nothing and returns that batch's original [`AppendOutcome`],
///    whatever `expected` says: so a batch whose append failed with an unknown outcome
///    ([`StoreError::Connection`]) can be sent again safely, also by many tasks at once. Any
///    other batch holding a stored id (some ids stored, or the same ids in another stream or at
///    other versions), or an id twice, is [`StoreError::DuplicateEventIds`] naming the ids,
///    and writes nothing. A multi-stream append is a retry when every one of its batches is
///    (it returns their original outcomes); when only some are, or any batch overlaps stored
///    ids otherwise, it is [`StoreError::DuplicateEventIds`] and writes nothing.
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if the stream is at `expected`.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// Appends each batch to its stream if every stream is at its expected version, all in one
    /// atomic step (contract sentence 8). Returns one [`AppendOutcome`] per batch, in the
    /// order given; the last one's position is that of the append's last event.
    ///
    /// # Errors
    /// [`StoreError::Conflicts`] naming every stream not at its expected version (nothing is
    /// written), [`StoreError::EmptyAppend`], [`StoreError::DuplicateStream`], and the
    /// store's own failures as for [`EventStore::append`].
    fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, StoreError>> + Send;

    /// The events of `stream` whose versions lie in `range`, in version order. A stream with no
    /// events reads as empty.
    fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The events of `stream` recorded at or before `until`, in version order.
    fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// At most `limit` events of the global log with positions after `after`, in position
    /// order. Pass [`GlobalPosition::START`] to read from the beginning, then the position of
    /// the last event returned to read the next page.
    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// [`read_all`](EventStore::read_all), appending the events to `into` instead of returning
    /// a new vector: a reader going page after page through one buffer (cleared between
    /// pages) allocates nothing per page on a store that overrides it (the in-memory store
    /// does). The provided implementation calls `read_all`. On error `into` is unchanged.
    fn read_all_into<'a>(
        &'a self,
        after: GlobalPosition,
        limit: usize,
        into: &'a mut Vec<RecordedEvent>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        async move {
            into.extend(self.read_all(after, limit).await?);
            Ok(())
        }
    }

    /// Lends `visit` each event [`read_all`](EventStore::read_all) would return, in order,
    /// until `visit` breaks, if this store holds its log in memory: `Some(Continue)` with how
    /// many events it lent, `Some(Break)` with what `visit` broke with (no event after that one
    /// is lent), or `None` (the provided implementation) when events must be read instead. A
    /// lent event is not copied: no allocation, no reference count touched. Readers that can
    /// work on borrowed events (read models catching up) try this before reading a page.
    fn lend_all<B>(
        &self,
        after: GlobalPosition,
        limit: usize,
        visit: &mut dyn FnMut(&RecordedEvent) -> ControlFlow<B>,
    ) -> Option<ControlFlow<B, usize>> {
        let _ = (after, limit, visit);
        None
    }

    /// The position of the last event `read_all` can return now ([`GlobalPosition::START`]
    /// for an empty store).
    fn last_position(&self) -> impl Future<Output = Result<GlobalPosition, StoreError>> + Send;

    /// The clock that stamps appended events (their
    /// [`recorded_at`](RecordedEvent::recorded_at)): the system clock unless the store was
    /// given another.
    ///
    /// This is the one clock of a repository and a projection registry over this store: they
    /// stamp snapshots and saved read models with it too, unless given a clock of their own. A
    /// temporal test sets a [`ManualClock`](crate::ManualClock) on the store and nowhere else.
    fn clock(&self) -> &dyn Clock {
        &SystemClock
    }
}

macro_rules! forward_event_store {
    ($($ty:ty),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $ty {
            fn append(
                &self,
                stream: &StreamId,
                expected: ExpectedVersion,
                events: Vec<NewEvent>,
            ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
                (**self).append(stream, expected, events)
            }

            fn append_streams(
                &self,
                batches: Vec<StreamBatch>,
            ) -> impl Future<Output = Result<Vec<AppendOutcome>, StoreError>> + Send {
                (**self).append_streams(batches)
            }

            fn read_stream(
                &self,
                stream: &StreamId,
                range: VersionRange,
            ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
                (**self).read_stream(stream, range)
            }

            fn read_stream_until(
                &self,
                stream: &StreamId,
                until: Timestamp,
            ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
                (**self).read_stream_until(stream, until)
            }

            fn read_all(
                &self,
                after: GlobalPosition,
                limit: usize,
            ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
                (**self).read_all(after, limit)
            }

            fn read_all_into<'a>(
                &'a self,
                after: GlobalPosition,
                limit: usize,
                into: &'a mut Vec<RecordedEvent>,
            ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
                (**self).read_all_into(after, limit, into)
            }

            fn lend_all<B>(
                &self,
                after: GlobalPosition,
                limit: usize,
                visit: &mut dyn FnMut(&RecordedEvent) -> ControlFlow<B>,
            ) -> Option<ControlFlow<B, usize>> {
                (**self).lend_all(after, limit, visit)
            }

            fn last_position(&self) -> impl Future<Output = Result<GlobalPosition, StoreError>> + Send {
                (**self).last_position()
            }

            fn clock(&self) -> &dyn Clock {
                (**self).clock()
            }
        }
    )*};
}

forward_event_store!(&S, Arc<S>, Box<S>);

/// Hands `visit` each of `events` until it breaks: how many it was handed, or what it broke
/// with (as [`EventStore::lend_all`] does).
pub(crate) fn visit_each<'e, B>(
    events: impl IntoIterator<Item = &'e RecordedEvent>,
    visit: &mut dyn FnMut(&RecordedEvent) -> ControlFlow<B>,
) -> ControlFlow<B, usize> {
    let mut visited = 0;
    for event in events {
        visit(event)?;
        visited += 1;
    }
    ControlFlow::Continue(visited)
}

/// Records an append's outcome on the current span (the store's `append` span declares the
/// `version` and `position` fields).
///
/// The store spans are `debug` spans: when no subscriber takes `debug`, there is no span to
/// record on, and looking up the current one (a thread-local and a dispatcher call on every
/// append and read) is skipped. The same holds for [`record_appends`] and [`record_read`].
pub(crate) fn record_append(result: &Result<AppendOutcome, StoreError>) {
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return;
    }
    if let Ok(outcome) = result {
        let span = tracing::Span::current();
        span.record("version", outcome.version.get());
        span.record("position", outcome.position.get());
    }
}

/// Records the position of a multi-stream append's last event on the current span (the
/// store's `append_streams` span declares the `position` field).
pub(crate) fn record_appends(result: &Result<Vec<AppendOutcome>, StoreError>) {
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return;
    }
    if let Some(position) = result
        .as_ref()
        .ok()
        .and_then(|outcomes| outcomes.iter().map(|outcome| outcome.position).max())
    {
        tracing::Span::current().record("position", position.get());
    }
}

/// Records how many events a read returned, and the position of the last, on the current span
/// (the store's read spans declare the `events` and `last` fields).
pub(crate) fn record_read(result: &Result<Vec<RecordedEvent>, StoreError>) {
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return;
    }
    if let Ok(events) = result {
        let span = tracing::Span::current();
        span.record("events", events.len());
        if let Some(last) = events.last() {
            span.record("last", last.global_position.get());
        }
    }
}
