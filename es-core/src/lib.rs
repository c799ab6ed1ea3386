//! Event sourcing for Rust: typed events and aggregates from derive macros, durable versioned
//! stores with optimistic concurrency, snapshots, temporal queries and projections.
//!
//! The crate map, the set-up commands and a complete example are in the README, included
//! below so its example is compiled and run as a doctest.
#![cfg_attr(feature = "derive", doc = include_str!("../../README.md"))]

pub mod aggregate;
pub mod clock;
pub mod codec;
pub mod command;
pub mod event;
mod ids;
pub mod lease;
pub mod projection;
pub mod repository;
pub mod schema;
pub mod shared;
pub mod snapshot;
pub mod store;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use aggregate::{Aggregate, AggregateRoot, Apply};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{Codec, CodecError, CodecId, Json, Postcard, UnknownCodec, UnknownCodecName};
pub use command::CommandId;
pub use event::{DecodeError, Event, EventSet, Metadata, NewEvent, RecordedEvent, SharedMetadata};
pub use lease::{Fence, Lease, LeaseStore};
pub use projection::daemon::{DaemonClient, ProjectionDaemon};
pub use projection::{
    AsOf, CatchUpReport, DuplicateProjection, HistoricalView, InfallibleProjection, Progress,
    Projection, ProjectionError, ProjectionRegistry, RestoreReport, SharedRegistry,
};
pub use repository::{
    retry_on_conflict, CacheStats, CommandError, Repository, RepositoryError, RetryPolicy,
    UnitOfWork, Updated,
};
pub use schema::SchemaTraceError;
pub use shared::{Bytes, SharedStr};
pub use snapshot::{
    NoSnapshots, ProjectionStore, SameStore, SavedProjection, Snapshot, SnapshotAndEvents,
    SnapshotLocation, SnapshotStore, UnusableSnapshot,
};
#[cfg(feature = "postgres")]
pub use store::postgres::{Postgres, PostgresOptions};
#[cfg(feature = "sqlite")]
pub use store::sqlite::{Sqlite, SqliteOptions, Synchronous};
pub use store::{
    AppendOutcome, Conflict, Conflicts, DuplicateEventId, DuplicateEventIds, EventStore,
    ExpectedVersion, InMemory, Store, StoreError, StoreOptions, StoredId, StreamBatch,
    VersionRange,
};
pub use subscription::{EventFilter, Subscribe, Subscription, SubscriptionStats};
pub use types::{GlobalPosition, ParseTimestampError, StreamId, Timestamp, Version};

/// The derive macros, re-exported so a user crate depends on `es-core` alone.
#[cfg(feature = "derive")]
pub use es_derive::{Aggregate, Event};

/// Support for generated code. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::decode_current;
    pub use core;
    pub use serde;
    pub use std;
    pub use tokio;

    /// Compares two strings in a const context (used to check upcast chains at compile time).
    #[must_use]
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// A compile-time condition as a type, so a failed check is a trait error with a message
    /// of its own (`#[diagnostic::on_unimplemented]`) rather than a const-evaluation panic.
    pub struct Check<const HOLDS: bool>;

    /// Holds when `Previous` has the same `Event::NAME` as `Next`.
    #[diagnostic::on_unimplemented(
        message = "`#[event(upcast_from = {Previous})]`: `{Previous}` must be an earlier version of the same event, with the same `Event::NAME` as `{Next}`",
        label = "`{Previous}` has another event name than `{Next}`",
        note = "give both structs the same `#[event(name = \"...\")]`, or upcast from an earlier version of `{Next}`"
    )]
    pub trait SameEventName<Previous, Next> {}

    impl<Previous, Next> SameEventName<Previous, Next> for Check<true> {}

    /// Holds when `Previous` has a lower `Event::SCHEMA_VERSION` than `Next`.
    #[diagnostic::on_unimplemented(
        message = "`#[event(upcast_from = {Previous})]`: `{Previous}` must have a lower `Event::SCHEMA_VERSION` than `{Next}`",
        label = "`{Previous}` is not an earlier version of `{Next}`",
        note = "`upcast_from` names the previous version: give `{Previous}` a lower `#[event(version = ...)]` than `{Next}`"
    )]
    pub trait EarlierVersion<Previous, Next> {}

    impl<Previous, Next> EarlierVersion<Previous, Next> for Check<true> {}

    /// Compiles only when `C` is `Check<true>` for "`Previous` has `Next`'s event name".
    pub const fn upcast_from_has_the_same_name<Previous, Next, C: SameEventName<Previous, Next>>() {
    }

    /// Compiles only when `C` is `Check<true>` for "`Previous` has a lower version".
    pub const fn upcast_from_has_an_earlier_version<
        Previous,
        Next,
        C: EarlierVersion<Previous, Next>,
    >() {
    }

    /// FNV-1a, for schema fingerprints computed at compile time.
    #[must_use]
    pub const fn fingerprint(text: &str) -> u64 {
        fingerprint_extend(0xcbf2_9ce4_8422_2325, text.as_bytes())
    }

    /// Continues an FNV-1a `hash` over `bytes`, so a fingerprint can fold in constants (event
    /// names and versions) that the macro cannot see.
    #[must_use]
    pub const fn fingerprint_extend(mut hash: u64, bytes: &[u8]) -> u64 {
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        hash
    }

    /// The snapshot fingerprint of `A`, traced once into `cell` (a `static` of the derived
    /// impl, so each aggregate type has its own).
    ///
    /// # Errors
    /// When the state cannot be traced (logged once).
    pub fn snapshot_fingerprint<A: crate::Aggregate>(
        cell: &std::sync::OnceLock<Result<u64, crate::SchemaTraceError>>,
    ) -> Result<u64, crate::SchemaTraceError> {
        crate::schema::cached::<A>(cell)
    }

    /// The error for a stored event type name that is not in the event set.
    ///
    /// Cold and out of line, like every error constructor the generated decoders call: the
    /// decoders are inlined into their callers, which should carry only the successful path.
    #[cold]
    #[inline(never)]
    #[must_use]
    pub fn unknown_event_type(event_type: &str) -> crate::DecodeError {
        crate::DecodeError::UnknownEventType {
            event_type: event_type.into(),
        }
    }

    /// The error for a stored schema version that `E` has no decoder for.
    #[inline]
    #[must_use]
    pub fn unknown_schema_version<E: crate::Event>(schema_version: u32) -> crate::DecodeError {
        unknown_version(E::NAME, schema_version, E::SCHEMA_VERSION)
    }

    /// [`unknown_schema_version`], shared by every event type.
    #[cold]
    #[inline(never)]
    fn unknown_version(
        event_type: &'static str,
        schema_version: u32,
        current: u32,
    ) -> crate::DecodeError {
        crate::DecodeError::UnknownSchemaVersion {
            event_type: event_type.into(),
            schema_version,
            current,
        }
    }

    /// What generated code needs of one listed event type, from [`event_info`].
    pub struct EventInfo<E> {
        /// `E::NAME`.
        pub name: &'static str,
        /// `E::SCHEMA_VERSION`.
        pub version: u32,
        /// Encodes the event struct alone.
        pub encode: fn(crate::CodecId, &E) -> Result<Vec<u8>, crate::CodecError>,
        /// `E::decode_versioned`.
        pub decode: fn(u32, crate::CodecId, &[u8]) -> Result<E, crate::DecodeError>,
    }

    /// The [`EventInfo`] of `E`. Generated code reaches every listed event type through this one
    /// function, so a type that is not an `Event` gives the same error at every use, which the
    /// compiler reports once.
    #[must_use]
    pub const fn event_info<E: crate::Event>() -> EventInfo<E> {
        EventInfo {
            name: E::NAME,
            version: E::SCHEMA_VERSION,
            encode: |codec, event| codec.encode(event),
            decode: E::decode_versioned,
        }
    }

    /// Decodes `Next` from a payload stored at an older schema version: decodes it with
    /// `previous` (the version before, whose decoder recurses further back as needed) and
    /// converts it with `From`. `previous` comes from [`event_info`], so a previous type that is
    /// not an `Event` is reported there, once.
    ///
    /// A version no type of the chain knows is reported against `Next`, the newest type.
    pub fn decode_upcast<Previous, Next>(
        previous: &EventInfo<Previous>,
        schema_version: u32,
        codec: crate::CodecId,
        payload: &[u8],
    ) -> Result<Next, crate::DecodeError>
    where
        Next: crate::Event + From<Previous>,
    {
        match (previous.decode)(schema_version, codec, payload) {
            Ok(previous) => Ok(Next::from(previous)),
            Err(crate::DecodeError::UnknownSchemaVersion { .. }) => {
                Err(unknown_schema_version::<Next>(schema_version))
            }
            Err(other) => Err(other),
        }
    }
}
