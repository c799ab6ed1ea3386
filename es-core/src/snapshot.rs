//! Snapshots: an aggregate's encoded state at a version, so loading replays only the tail.
//!
//! A snapshot is keyed by stream (aggregate type and id) and carries the aggregate's
//! [snapshot fingerprint](crate::Aggregate::snapshot_fingerprint), which covers the serialized
//! shape of the whole state. The repository ignores a snapshot it cannot use (a row that
//! cannot be read, an unknown codec, another fingerprint, a state that does not decode, a
//! version with no event in the stream) and replays from events: each such fallback is
//! logged with its reason and counted, per repository and per snapshot store, and the next
//! snapshot the policy takes replaces the unusable one.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::codec::{CodecError, CodecId};
use crate::event::RecordedEvent;
use crate::lease::Fence;
use crate::store::{EventStore, StoreError, VersionRange};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

/// An aggregate's encoded state after the event at `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The version of the last event the state includes.
    pub version: Version,
    /// The aggregate's schema fingerprint when the snapshot was taken.
    pub fingerprint: u64,
    /// The codec of `state`.
    pub codec: CodecId,
    /// The encoded state.
    pub state: Vec<u8>,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}

/// Why the repository did not use a stored snapshot. Each is logged (at `warn`, with this as
/// the reason) and counted, the aggregate is replayed from its events, and the next snapshot
/// the policy takes replaces the unusable one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnusableSnapshot {
    /// The stored row cannot be read (a damaged column, an unknown codec id).
    #[error("its row cannot be read")]
    Unreadable(#[source] StoreError),
    /// It was taken under another schema fingerprint: the state's shape or the manual
    /// `snapshot_version` changed since.
    #[error(
        "it was taken under another schema of the aggregate (fingerprint {stored:#018x}; now \
         {current:#018x})"
    )]
    OtherSchema {
        /// The fingerprint stored with the snapshot.
        stored: u64,
        /// The aggregate's fingerprint now.
        current: u64,
    },
    /// The state does not decode into the aggregate.
    #[error("its state does not decode")]
    Undecodable {
        /// The snapshot's version.
        version: Version,
        /// Why it does not decode.
        #[source]
        source: CodecError,
    },
    /// It claims a version the stream has no event for: the snapshot store outlived a
    /// restored or truncated event store.
    #[error(
        "the stream has no event at the snapshot's version {version} (the snapshot is ahead of \
         the event log)"
    )]
    AheadOfLog {
        /// The snapshot's version.
        version: Version,
    },
}

/// Keeps the latest snapshot of each stream, and counts the snapshots its users found
/// unusable.
///
/// Every store of this crate implements it, so [`Repository::new`](crate::Repository::new)
/// keeps snapshots in the event store itself.
///
/// # Contract
/// `save_snapshot` replaces the stream's snapshot only with one of a higher or equal version
/// (an older snapshot arriving late never overwrites a newer one); `replace_snapshot` replaces
/// it whatever is stored, even a row that cannot be read. `load_snapshot` returns the latest
/// saved one, bytes unchanged, or [`StoreError::Corrupt`] for a row that cannot be read.
/// `snapshot_fallbacks` is the number of `record_snapshot_fallback` calls on this store and
/// its clones since it was opened.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot keep snapshots",
    label = "not a `SnapshotStore`",
    note = "`Repository::new(store)` keeps snapshots in the event store; for a store that cannot, use `Repository::without_snapshots(store)` or `.with_snapshots(other_store)`"
)]
pub trait SnapshotStore: Send + Sync {
    /// Saves `snapshot` as the stream's latest, unless a newer one is already stored.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Saves `snapshot` as the stream's latest whatever is stored: the repository replaces a
    /// snapshot it found unusable this way (damaged, ahead of the log, of another schema),
    /// since a stored version that cannot be trusted must not block the replacement.
    fn replace_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// What a load of `stream` up to version `to` reads, in one call: the latest snapshot and
    /// the stream's events from [`SnapshotAndEvents::first_version`] to `to`, both as of one
    /// moment (a snapshot saved in between never pairs with events read before it).
    ///
    /// The default makes the two calls ([`load_snapshot`](SnapshotStore::load_snapshot), then
    /// [`read_stream`](EventStore::read_stream)). The SQLite store answers on one reader-thread
    /// hop in one read transaction, the PostgreSQL store in one round trip. (Through a
    /// reference, `Arc` or `Box`, the default runs.)
    ///
    /// # Errors
    /// A store that cannot be reached ([`StoreError::Connection`], [`StoreError::Closed`]) and
    /// a failure to read the events. A snapshot row that cannot be read is no error of the
    /// call: it is returned in [`SnapshotAndEvents::snapshot`], with the events from version 1.
    fn load_snapshot_and_events(
        &self,
        stream: &StreamId,
        to: Version,
    ) -> impl Future<Output = Result<SnapshotAndEvents, StoreError>> + Send
    where
        Self: EventStore + Sized,
    {
        load_in_two_calls(self, self, stream, to)
    }

    /// Counts one snapshot of `stream` that a repository found unusable and replaced by a
    /// replay from events.
    fn record_snapshot_fallback(&self, stream: &StreamId);

    /// How many snapshot fallbacks were recorded on this store (all repositories, all clones)
    /// since it was opened.
    fn snapshot_fallbacks(&self) -> u64;
}

/// A stream's latest snapshot and the events a load replays with it, from
/// [`SnapshotStore::load_snapshot_and_events`].
#[derive(Debug)]
#[non_exhaustive]
pub struct SnapshotAndEvents {
    /// The stored snapshot: `Ok(None)` when there is none, `Err` when its row cannot be read.
    pub snapshot: Result<Option<Snapshot>, StoreError>,
    /// The stream's events from [`first_version`](SnapshotAndEvents::first_version) up to the
    /// version asked for, in version order.
    pub events: Vec<RecordedEvent>,
}

impl SnapshotAndEvents {
    /// The snapshot and events read for a load.
    #[must_use]
    pub fn new(snapshot: Result<Option<Snapshot>, StoreError>, events: Vec<RecordedEvent>) -> Self {
        SnapshotAndEvents { snapshot, events }
    }

    /// The version the events of a load up to `to` start at, given the snapshot read: the
    /// snapshot's own version when it lies between 1 and `to` (its event confirms that the
    /// snapshot describes the log, and the events after it are the tail to replay), else 1.
    #[must_use]
    pub fn first_version(snapshot: Option<&Snapshot>, to: Version) -> Version {
        match snapshot {
            Some(snapshot) if snapshot.version >= Version(1) && snapshot.version <= to => {
                snapshot.version
            }
            _ => Version(1),
        }
    }
}

/// [`SnapshotStore::load_snapshot_and_events`] as two calls: the snapshot from `snapshots`,
/// then the events from `events`.
async fn load_in_two_calls<P, S>(
    snapshots: &P,
    events: &S,
    stream: &StreamId,
    to: Version,
) -> Result<SnapshotAndEvents, StoreError>
where
    P: SnapshotStore + ?Sized,
    S: EventStore + ?Sized,
{
    let snapshot = match snapshots.load_snapshot(stream).await {
        Err(error @ (StoreError::Connection(_) | StoreError::Closed)) => return Err(error),
        other => other,
    };
    let from =
        SnapshotAndEvents::first_version(snapshot.as_ref().ok().and_then(Option::as_ref), to);
    let events = if from > to {
        Vec::new()
    } else {
        events
            .read_stream(stream, VersionRange { from, to })
            .await?
    };
    Ok(SnapshotAndEvents { snapshot, events })
}

/// A repository without snapshots: saves nothing, finds nothing.
///
/// See [`Repository::without_snapshots`](crate::Repository::without_snapshots).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSnapshots;

/// A repository keeping snapshots in its event store, the default of
/// [`Repository::new`](crate::Repository::new).
#[derive(Clone, Copy, Debug, Default)]
pub struct SameStore;

/// Where a repository over the event store `S` keeps snapshots: in `S` itself ([`SameStore`]),
/// or in any [`SnapshotStore`] of its own (including [`NoSnapshots`]: nowhere).
///
/// Implemented for [`SameStore`] when `S` is a [`SnapshotStore`], and for every
/// [`SnapshotStore`]; there is nothing to implement by hand.
pub trait SnapshotLocation<S>: Send + Sync {
    /// The store the snapshots go to.
    type Store: SnapshotStore + ?Sized;

    /// The snapshot store, given the repository's event store.
    fn resolve<'a>(&'a self, store: &'a S) -> &'a Self::Store;

    /// What a load of `stream` up to `to` reads: the snapshot from this location, the events
    /// from `store` (see [`SnapshotStore::load_snapshot_and_events`]). In the event store
    /// itself ([`SameStore`]) that is one call to the store; elsewhere, two calls.
    ///
    /// # Errors
    /// As for [`SnapshotStore::load_snapshot_and_events`].
    fn load_snapshot_and_events<'a>(
        &'a self,
        store: &'a S,
        stream: &'a StreamId,
        to: Version,
    ) -> impl Future<Output = Result<SnapshotAndEvents, StoreError>> + Send + 'a
    where
        S: EventStore,
    {
        load_in_two_calls(self.resolve(store), store, stream, to)
    }
}

impl<S: SnapshotStore> SnapshotLocation<S> for SameStore {
    type Store = S;

    fn resolve<'a>(&'a self, store: &'a S) -> &'a S {
        store
    }

    fn load_snapshot_and_events<'a>(
        &'a self,
        store: &'a S,
        stream: &'a StreamId,
        to: Version,
    ) -> impl Future<Output = Result<SnapshotAndEvents, StoreError>> + Send + 'a
    where
        S: EventStore,
    {
        store.load_snapshot_and_events(stream, to)
    }
}

impl<S, P: SnapshotStore> SnapshotLocation<S> for P {
    type Store = P;

    fn resolve<'a>(&'a self, _store: &'a S) -> &'a P {
        self
    }
}

impl SnapshotStore for NoSnapshots {
    async fn save_snapshot(&self, _snapshot: Snapshot) -> Result<(), StoreError> {
        Ok(())
    }

    async fn replace_snapshot(&self, _snapshot: Snapshot) -> Result<(), StoreError> {
        Ok(())
    }

    async fn load_snapshot(&self, _stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
    }

    /// Nothing is ever loaded, so nothing falls back.
    fn record_snapshot_fallback(&self, _stream: &StreamId) {}

    fn snapshot_fallbacks(&self) -> u64 {
        0
    }
}

/// A read model's encoded state and the global position it has applied events up to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedProjection {
    /// The projection's unique name.
    pub name: String,
    /// The position of the last event applied to `state`.
    pub position: GlobalPosition,
    /// The codec of `state`.
    pub codec: CodecId,
    /// The encoded read model.
    pub state: Vec<u8>,
    /// When it was saved.
    pub saved_at: Timestamp,
}

/// Keeps the saved state and checkpoint of each read model, so a restart does not replay the
/// whole log.
///
/// # Contract
/// `save_projection` atomically replaces the named projection's state and position;
/// `load_projection` returns the last saved one, bytes unchanged. `save_projection_fenced`
/// does the same only while `fence` matches its lease's current token, checked in the same
/// transaction as the write; otherwise it writes nothing and fails with
/// [`StoreError::Fenced`].
pub trait ProjectionStore: Send + Sync {
    /// Saves (replaces) a projection's state and checkpoint.
    fn save_projection(
        &self,
        saved: SavedProjection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Saves (replaces) a projection's state and checkpoint if the writer still holds the lease
    /// of `fence` with its token, checked in the same transaction as the write (see
    /// [`lease`](crate::lease)).
    ///
    /// Every store of this crate implements it; a projection store without leases keeps this
    /// default, which refuses with [`StoreError::Config`] and writes nothing (a fenced write
    /// is never made without its check).
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when the lease moved on (nothing is written), and the errors of
    /// [`save_projection`](ProjectionStore::save_projection).
    fn save_projection_fenced(
        &self,
        saved: SavedProjection,
        fence: &Fence,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (saved, fence);
        std::future::ready(Err(StoreError::Config(
            "this projection store keeps no leases, so it cannot make fenced writes".to_owned(),
        )))
    }

    /// The last saved state of the projection called `name`, if any.
    fn load_projection(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<SavedProjection>, StoreError>> + Send;

    /// The clock that stamps saved read models (their
    /// [`saved_at`](SavedProjection::saved_at)) unless the registry has a clock of its own: the
    /// system clock by default. A store that is an event store too returns the clock that
    /// stamps its events, so one clock serves both.
    fn clock(&self) -> &dyn Clock {
        &SystemClock
    }
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        impl<S: SnapshotStore + ?Sized> SnapshotStore for $ty {
            fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).save_snapshot(snapshot)
            }

            fn replace_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).replace_snapshot(snapshot)
            }

            fn load_snapshot(
                &self,
                stream: &StreamId,
            ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
                (**self).load_snapshot(stream)
            }

            fn record_snapshot_fallback(&self, stream: &StreamId) {
                (**self).record_snapshot_fallback(stream);
            }

            fn snapshot_fallbacks(&self) -> u64 {
                (**self).snapshot_fallbacks()
            }
        }

        impl<S: ProjectionStore + ?Sized> ProjectionStore for $ty {
            fn save_projection(
                &self,
                saved: SavedProjection,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).save_projection(saved)
            }

            fn save_projection_fenced(
                &self,
                saved: SavedProjection,
                fence: &Fence,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).save_projection_fenced(saved, fence)
            }

            fn load_projection(
                &self,
                name: &str,
            ) -> impl Future<Output = Result<Option<SavedProjection>, StoreError>> + Send {
                (**self).load_projection(name)
            }

            fn clock(&self) -> &dyn Clock {
                (**self).clock()
            }
        }
    )*};
}

forward!(&S, Arc<S>, Box<S>);
