//! What each read model of a daemon is doing, and the record of it kept in the store so that
//! another process can show it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::CodecId;
use crate::snapshot::SavedProjection;
use crate::store::StoreError;
use crate::types::{GlobalPosition, Timestamp};

/// The state of one read model in a daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelState {
    /// Applying events as they are committed, together with the other live read models.
    Running,
    /// Reading the log on its own (after a start behind the head, a resume or a skip) until
    /// it reaches the head it saw when it started.
    CatchingUp,
    /// Its `apply` failed on an event; the event is tried again after a pause.
    Retrying {
        /// How many times the event has failed so far.
        failures: u32,
        /// The position of the event.
        position: GlobalPosition,
        /// The event's type.
        event_type: String,
        /// The last error, as text.
        error: String,
    },
    /// Stopped on an event it could not apply, until it is resumed or the event is skipped.
    Parked(Parked),
    /// The daemon that ran it has shut down (only seen in a status read from the store).
    Stopped,
}

impl ModelState {
    /// Whether the read model is parked.
    #[must_use]
    pub fn is_parked(&self) -> bool {
        matches!(self, ModelState::Parked(_))
    }

    /// The parked event and error, if the read model is parked.
    #[must_use]
    pub fn parked(&self) -> Option<&Parked> {
        match self {
            ModelState::Parked(parked) => Some(parked),
            _ => None,
        }
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelState::Running => f.write_str("running"),
            ModelState::CatchingUp => f.write_str("catching up"),
            ModelState::Retrying {
                failures,
                position,
                event_type,
                error,
            } => write!(
                f,
                "retrying the `{event_type}` event at position {position} after {failures} failure(s): {error}"
            ),
            ModelState::Parked(parked) => write!(f, "parked: {parked}"),
            ModelState::Stopped => f.write_str("stopped"),
        }
    }
}

/// Where and why a read model was parked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// The position of the event it could not apply.
    pub position: GlobalPosition,
    /// That event's type.
    pub event_type: String,
    /// The read model's last error, as text (with its sources).
    pub error: String,
    /// How many times the event was tried.
    pub attempts: u32,
    /// When it was parked.
    pub parked_at: Timestamp,
}

impl fmt::Display for Parked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the `{}` event at position {} failed {} time(s): {}",
            self.event_type, self.position, self.attempts, self.error
        )
    }
}

/// An event a read model was told to skip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The event's position.
    pub position: GlobalPosition,
    /// The event's type.
    pub event_type: String,
    /// The error it was parked with.
    pub error: String,
    /// When it was skipped.
    pub skipped_at: Timestamp,
}

/// One read model's progress and state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadModelStatus {
    /// The read model's name.
    pub name: String,
    /// Every event at or before this position has been applied (or skipped).
    pub checkpoint: GlobalPosition,
    /// The last position of the log the daemon knew of.
    pub head: GlobalPosition,
    /// How many positions the read model is behind the head.
    pub lag: u64,
    /// Events seen per second, over the last measuring interval.
    pub events_per_second: f64,
    /// What it is doing.
    pub state: ModelState,
    /// The events it was told to skip, oldest first (the last [`MAX_SKIPPED`] kept).
    pub skipped: Vec<Skipped>,
    /// When this was last written to the store (`None`: never; only set in a status read from
    /// the store).
    pub updated_at: Option<Timestamp>,
}

/// How many skipped events the status record of a read model remembers.
pub const MAX_SKIPPED: usize = 100;

/// The daemon's record of one read model, kept in the projection store beside its state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) state: ModelState,
    pub(super) events_per_second: f64,
    pub(super) head: GlobalPosition,
    pub(super) skipped: Vec<Skipped>,
}

/// The projection-store key of a read model's daemon record.
pub(super) fn record_key(name: &str) -> String {
    format!("{name}{RECORD_SUFFIX}")
}

/// Appended to a read model's name for the key of its daemon record: read model names must not
/// end with it.
pub const RECORD_SUFFIX: &str = "@daemon";

impl Record {
    pub(super) fn to_saved(
        &self,
        name: &str,
        checkpoint: GlobalPosition,
        now: Timestamp,
    ) -> Result<SavedProjection, StoreError> {
        let state = serde_json::to_vec(self).map_err(StoreError::backend)?;
        Ok(SavedProjection {
            name: record_key(name),
            position: checkpoint,
            codec: CodecId::Json,
            state,
            saved_at: now,
        })
    }

    /// The record in `saved`, or `None` (with a warning) if it does not decode.
    pub(super) fn from_saved(saved: &SavedProjection) -> Option<Record> {
        let decoded = match saved.codec {
            CodecId::Json => serde_json::from_slice::<Record>(&saved.state).ok(),
            _ => None,
        };
        if decoded.is_none() {
            tracing::warn!(
                key = saved.name,
                "the daemon record does not decode; it is ignored"
            );
        }
        decoded
    }
}
