//! What can go wrong when talking to a running daemon.

use std::time::Duration;

use crate::projection::ProjectionError;
use crate::store::StoreError;
use crate::types::GlobalPosition;

/// A wait, query or control operation on a [`ProjectionDaemon`](super::ProjectionDaemon)
/// failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// No read model of that name or type is registered with the daemon.
    #[error("no read model named `{name}` is registered with the daemon")]
    NotRegistered {
        /// The name (or type) asked for.
        name: String,
    },
    /// The read model keeps its state in tables of the store's database, not in memory:
    /// query its tables.
    #[error("read model `{projection}` keeps its state in database tables: query them")]
    InTables {
        /// The read model's name.
        projection: &'static str,
    },
    /// A read model did not reach the position within the timeout.
    #[error(
        "read model `{projection}` did not reach position {requested} within {waited:?} (it is at {reached})"
    )]
    Timeout {
        /// The read model that was still behind.
        projection: &'static str,
        /// The position waited for.
        requested: GlobalPosition,
        /// Its checkpoint when the wait ended.
        reached: GlobalPosition,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// A read model is parked before the position waited for: it will not get there until it
    /// is resumed or the failing event is skipped.
    #[error(
        "read model `{projection}` is parked at position {position} (`{event_type}`): {error}"
    )]
    Parked {
        /// The parked read model.
        projection: &'static str,
        /// The position of the event it failed on.
        position: GlobalPosition,
        /// That event's type.
        event_type: String,
        /// The read model's error, as text.
        error: String,
    },
    /// `resume` or `skip` was asked of a read model that is not parked.
    #[error("read model `{projection}` is not parked")]
    NotParked {
        /// The read model.
        projection: &'static str,
    },
    /// `skip` named another event than the one the read model is parked on.
    #[error(
        "read model `{projection}` is parked on the event at position {parked_at}, not {requested}"
    )]
    SkipMismatch {
        /// The read model.
        projection: &'static str,
        /// The position of the event it is parked on.
        parked_at: GlobalPosition,
        /// The position `skip` was given.
        requested: GlobalPosition,
    },
    /// The daemon has stopped (shut down, or ended on an error).
    #[error("the projection daemon has stopped")]
    Stopped,
    /// The store failed while carrying out the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Saving a read model failed while carrying out the operation.
    #[error("saving the read model failed")]
    Save(#[source] Box<ProjectionError>),
}

impl From<ProjectionError> for DaemonError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Store(error) => DaemonError::Store(error),
            other => DaemonError::Save(Box::new(other)),
        }
    }
}
