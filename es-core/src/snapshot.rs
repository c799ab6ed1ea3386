//! Snapshots: an aggregate's encoded state at a version, so loading replays only the tail.
//!
//! A snapshot is keyed by stream (aggregate type and id) and carries the aggregate's
//! [schema fingerprint](crate::Aggregate::SCHEMA_FINGERPRINT). The repository ignores a
//! snapshot whose fingerprint differs, whose state does not decode, or whose version has no
//! event in the stream (a snapshot ahead of the log), and replays from events.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::codec::CodecId;
use crate::store::StoreError;
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

/// Keeps the latest snapshot of each stream.
///
/// Every store of this crate implements it, so [`Repository::new`](crate::Repository::new)
/// keeps snapshots in the event store itself.
///
/// # Contract
/// `save_snapshot` replaces the stream's snapshot only with one of a higher or equal version
/// (an older snapshot arriving late never overwrites a newer one). `load_snapshot` returns the
/// latest saved one, bytes unchanged.
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

    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
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
}

impl<S: SnapshotStore> SnapshotLocation<S> for SameStore {
    type Store = S;

    fn resolve<'a>(&'a self, store: &'a S) -> &'a S {
        store
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

    async fn load_snapshot(&self, _stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
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
/// `load_projection` returns the last saved one, bytes unchanged.
pub trait ProjectionStore: Send + Sync {
    /// Saves (replaces) a projection's state and checkpoint.
    fn save_projection(
        &self,
        saved: SavedProjection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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

            fn load_snapshot(
                &self,
                stream: &StreamId,
            ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
                (**self).load_snapshot(stream)
            }
        }

        impl<S: ProjectionStore + ?Sized> ProjectionStore for $ty {
            fn save_projection(
                &self,
                saved: SavedProjection,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).save_projection(saved)
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
