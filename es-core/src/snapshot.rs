//! Snapshots: an aggregate's encoded state at a version, so loading replays only the tail.
//!
//! A snapshot is keyed by stream (aggregate type and id) and carries the aggregate's
//! [schema fingerprint](crate::Aggregate::SCHEMA_FINGERPRINT). The repository ignores a
//! snapshot whose fingerprint differs, whose state does not decode, or whose version has no
//! event in the stream (a snapshot ahead of the log), and replays from events.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
/// # Contract
/// `save_snapshot` replaces the stream's snapshot only with one of a higher or equal version
/// (an older snapshot arriving late never overwrites a newer one). `load_snapshot` returns the
/// latest saved one, bytes unchanged.
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
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSnapshots;

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
        }
    )*};
}

forward!(&S, Arc<S>, Box<S>);
