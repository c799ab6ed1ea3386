//! What can go wrong while keeping read models up to date.

use std::time::Duration;

use crate::codec::CodecError;
use crate::store::StoreError;
use crate::types::GlobalPosition;

/// Updating, saving or querying read models failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// Reading the log or the saved state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read model could not apply an event. Its checkpoint stays before the event, which is
    /// tried again on the next run.
    #[error("projection `{projection}` failed on the `{event_type}` event at position {position}")]
    Apply {
        /// The read model's name.
        projection: &'static str,
        /// The global position of the event.
        position: GlobalPosition,
        /// The event's type name.
        event_type: String,
        /// The read model's own error (downcast it to the projection's `Error` type).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read model's state could not be encoded for saving.
    #[error("the state of projection `{projection}` does not encode")]
    Encode {
        /// The read model's name.
        projection: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The log did not show the position asked for within the wait timeout.
    #[error(
        "the read models did not reach position {requested} within {waited:?} (they are at {reached})"
    )]
    PositionNotReached {
        /// The position waited for.
        requested: GlobalPosition,
        /// The lowest checkpoint when the wait ended.
        reached: GlobalPosition,
        /// How long it waited.
        waited: Duration,
    },
    /// A read model's checkpoint is past the end of the store's log: its saved state belongs
    /// to another (or a recreated) store. Catching up would skip every new event at or below
    /// the checkpoint, so nothing is applied; rebuild the read models from this store.
    #[error(
        "projection `{projection}` is at position {checkpoint}, past the end of the log ({last_position}): its state belongs to another store; rebuild it"
    )]
    CheckpointAhead {
        /// The read model's name.
        projection: &'static str,
        /// Its checkpoint.
        checkpoint: GlobalPosition,
        /// The store's last position.
        last_position: GlobalPosition,
    },
    /// The store returned the global log out of order: it breaks its contract.
    #[error("the store returned position {found} after position {previous}: the global log is out of order")]
    OutOfOrder {
        /// The position read before.
        previous: GlobalPosition,
        /// The position read next, not above it.
        found: GlobalPosition,
    },
}

impl ProjectionError {
    /// The name of the read model the error is about, if it is about one.
    #[must_use]
    pub fn projection(&self) -> Option<&'static str> {
        match self {
            ProjectionError::Apply { projection, .. }
            | ProjectionError::Encode { projection, .. }
            | ProjectionError::CheckpointAhead { projection, .. } => Some(projection),
            _ => None,
        }
    }
}

/// A read model was registered twice, or two read models share a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a projection named `{name}` is already registered")]
pub struct DuplicateProjection {
    /// The name both read models use.
    pub name: &'static str,
}
