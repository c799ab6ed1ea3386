//! Projections: read models kept up to date from the global log.
//!
//! A read model implements [`Projection`]: it has a unique name, picks the recorded events it
//! cares about (from any aggregate type), decodes them with
//! [`RecordedEvent::decode`](crate::RecordedEvent::decode) and folds them into its own state,
//! keyed however its queries need (per product, per customer), not by aggregate.
//!
//! A [`ProjectionRegistry`] holds many read models, each with its own checkpoint (the global
//! position up to which it has seen the log):
//!
//! - [`catch_up`](ProjectionRegistry::catch_up) reads the global log in pages from the lowest
//!   checkpoint and applies every event, in global-position order, to each read model that has
//!   not seen it yet; [`rebuild`](ProjectionRegistry::rebuild) resets them all and replays
//!   from the start. Both return a [`CatchUpReport`], and have a `_with_progress` form that
//!   reports [`Progress`] after every page.
//! - A failing read model stops the run with [`ProjectionError::Apply`], naming the read model
//!   and the event's position. Its checkpoint stays before the failing event, so the event is
//!   tried again on the next run: never swallowed, never skipped.
//! - [`catch_up_to`](ProjectionRegistry::catch_up_to) waits (bounded) until every read model
//!   has seen a given position, such as the [`AppendOutcome::position`](crate::AppendOutcome)
//!   of your own write: read-your-writes. For many tasks writing at once, share the registry
//!   as a [`SharedRegistry`]: one catch-up at a time serves every waiter whose write it
//!   passes, and a waiter already served makes no store call. A running
//!   [`ProjectionDaemon`](crate::ProjectionDaemon) offers the same wait on its own checkpoints
//!   ([`DaemonClient::wait_for`](daemon::DaemonClient::wait_for)).
//! - [`as_of`](ProjectionRegistry::as_of) builds fresh copies of the read models as they were
//!   at a global position or a point in time ([`AsOf`]).
//! - [`save_to`](ProjectionRegistry::save_to) and
//!   [`restore_from`](ProjectionRegistry::restore_from) keep each read model's state and
//!   checkpoint in a [`ProjectionStore`](crate::ProjectionStore), so a restart resumes where it
//!   stopped instead of replaying the whole log.
//!
//! # Examples
//!
//! A read model whose `apply` cannot fail implements [`InfallibleProjection`] (no error type,
//! no `Ok(())`); one that can (a payload that does not decode) implements [`Projection`].
//!
//! ```
//! use es_core::projection::{InfallibleProjection, ProjectionRegistry};
//! use es_core::{EventStore, InMemory, RecordedEvent};
//! use serde::{Deserialize, Serialize};
//!
//! /// Counts the events of every stream type.
//! #[derive(Clone, Debug, Default, Serialize, Deserialize)]
//! struct EventCounts(std::collections::BTreeMap<String, u64>);
//!
//! impl InfallibleProjection for EventCounts {
//!     const NAME: &'static str = "event-counts";
//!
//!     fn apply(&mut self, event: &RecordedEvent) {
//!         *self.0.entry(event.stream.aggregate_type().to_owned()).or_default() += 1;
//!     }
//!
//!     fn reset(&mut self) {
//!         self.0.clear();
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemory::new();
//! let mut registry = ProjectionRegistry::new().with(EventCounts::default())?;
//! let report = registry.catch_up(&store).await?;
//! assert_eq!(report.events, 0);
//! assert!(registry.get::<EventCounts>().is_some_and(|counts| counts.0.is_empty()));
//! # Ok(())
//! # }
//! ```

pub mod daemon;
pub mod durable;
mod error;
mod registry;
mod shared;
#[cfg(feature = "sqlite")]
pub mod table;
#[cfg(test)]
mod tests;
pub mod worker;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::RecordedEvent;
use crate::types::{GlobalPosition, Timestamp};

pub use error::{DuplicateProjection, ProjectionError};
pub use registry::{HistoricalView, ProjectionRegistry, RestoreReport};
pub use shared::SharedRegistry;

/// A read model: state folded from the recorded events it cares about.
///
/// # Contract
///
/// - [`NAME`](Projection::NAME) is unique within a registry and stable across releases: saved
///   state is stored under it.
/// - [`apply`](Projection::apply) sees events in global-position order, each at most once
///   between two resets. It either applies the event completely or returns an error and leaves
///   the state unchanged (decode and check first, then mutate): the registry tries the same
///   event again on the next run.
/// - [`reset`](Projection::reset) returns the read model to the state it had before its first
///   event, keeping its configuration (an inventory keeps its initial stock).
/// - The state must round-trip through both codecs: no `#[serde(flatten)]`, no internally
///   tagged or untagged enums, no `skip_serializing_if`.
pub trait Projection: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The read model's unique, stable name.
    const NAME: &'static str;

    /// Why an event could not be applied (for example a payload that does not decode).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether this read model wants `event`, for example by its aggregate type or event type.
    /// Events it does not want still advance its checkpoint. The default takes every event.
    fn handles(&self, event: &RecordedEvent) -> bool {
        let _ = event;
        true
    }

    /// Folds `event` into the state.
    ///
    /// # Errors
    /// Any error that makes the event impossible to apply; the state must be left unchanged.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error>;

    /// Forgets every event applied so far, keeping the configuration.
    fn reset(&mut self);
}

/// A read model whose [`apply`](InfallibleProjection::apply) cannot fail: a [`Projection`]
/// without an error type.
///
/// Every `InfallibleProjection` is a [`Projection`] with
/// [`Error = Infallible`](std::convert::Infallible), through a blanket impl: register it, query
/// it and save it like any other. The contract is [`Projection`]'s.
///
/// (A default `type Error = Infallible` on [`Projection`] would say the same with one trait,
/// but associated type defaults are not stable Rust.)
///
/// # Examples
///
/// ```
/// use es_core::projection::{InfallibleProjection, ProjectionRegistry};
/// use es_core::RecordedEvent;
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct EventCount(u64);
///
/// impl InfallibleProjection for EventCount {
///     const NAME: &'static str = "event-count";
///     fn apply(&mut self, _event: &RecordedEvent) { self.0 += 1 }
///     fn reset(&mut self) { self.0 = 0 }
/// }
///
/// let registry = ProjectionRegistry::new().with(EventCount::default())?;
/// assert_eq!(registry.get::<EventCount>().map(|count| count.0), Some(0));
/// # Ok::<(), es_core::projection::DuplicateProjection>(())
/// ```
pub trait InfallibleProjection:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The read model's unique, stable name ([`Projection::NAME`]).
    const NAME: &'static str;

    /// Whether this read model wants `event` ([`Projection::handles`]). The default takes
    /// every event.
    fn handles(&self, event: &RecordedEvent) -> bool {
        let _ = event;
        true
    }

    /// Folds `event` into the state.
    fn apply(&mut self, event: &RecordedEvent);

    /// Forgets every event applied so far, keeping the configuration.
    fn reset(&mut self);
}

impl<T: InfallibleProjection> Projection for T {
    const NAME: &'static str = <T as InfallibleProjection>::NAME;
    type Error = std::convert::Infallible;

    fn handles(&self, event: &RecordedEvent) -> bool {
        InfallibleProjection::handles(self, event)
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        InfallibleProjection::apply(self, event);
        Ok(())
    }

    fn reset(&mut self) {
        InfallibleProjection::reset(self);
    }
}

/// The point in history a temporal query looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsOf {
    /// Every event at or before this global position.
    Position(GlobalPosition),
    /// Every event recorded at or before this instant (`recorded_at <= t`), in global order.
    Time(Timestamp),
}

impl fmt::Display for AsOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsOf::Position(position) => write!(f, "position {position}"),
            AsOf::Time(time) => write!(f, "{time}"),
        }
    }
}

/// What a catch-up, rebuild or temporal build did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// How many events of the log were read and applied to the read models that had not seen
    /// them (an event a read model does not handle counts as seen).
    pub events: u64,
    /// The lowest checkpoint of the read models afterwards: every read model has seen every
    /// event at or before it.
    pub position: GlobalPosition,
}

/// How far a catch-up or rebuild has come, reported after every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Events applied so far in this run.
    pub events: u64,
    /// The position of the last event applied.
    pub position: GlobalPosition,
    /// The position the run stops at: the end of the log when it started, or the bound asked
    /// for.
    pub target: GlobalPosition,
}
