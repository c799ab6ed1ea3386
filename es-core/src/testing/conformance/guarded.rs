//! A store paired with a resource that must live exactly as long as it.

use std::future::Future;

use crate::event::{NewEvent, RecordedEvent};
use crate::snapshot::{ProjectionStore, SavedProjection, Snapshot, SnapshotStore};
use crate::store::{
    AppendOutcome, EventStore, ExpectedVersion, StoreError, StreamBatch, VersionRange,
};
use crate::subscription::{EventFilter, Subscribe, Subscription, SubscriptionStats};
use crate::types::{GlobalPosition, StreamId, Timestamp};

/// A store together with a guard that is dropped right after it: the temporary directory
/// holding its file, a handle that drops a database schema, a server process.
///
/// It forwards every [`EventStore`], [`Subscribe`], [`SnapshotStore`] and [`ProjectionStore`]
/// call to the store (a subscription keeps the store, not the guard, alive: drop it before the
/// pair), so a conformance factory can return one without writing the forwarding itself:
///
/// ```
/// use es_core::testing::conformance::Guarded;
/// use es_core::{InMemory, ManualClock};
///
/// /// Removed when the check ends (after the store is closed).
/// struct TemporaryDirectory;
///
/// async fn store(clock: ManualClock) -> Guarded<InMemory, TemporaryDirectory> {
///     Guarded::new(InMemory::with_clock(clock), TemporaryDirectory)
/// }
///
/// es_core::conformance_tests!(store);
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct Guarded<S, G> {
    // Declaration order is drop order: the store closes before the guard releases.
    store: S,
    guard: G,
}

impl<S, G> Guarded<S, G> {
    /// `store`, keeping `guard` alive until after the store is dropped.
    pub fn new(store: S, guard: G) -> Self {
        Guarded { store, guard }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The guard.
    pub fn guard(&self) -> &G {
        &self.guard
    }
}

impl<S: EventStore, G: Send + Sync> EventStore for Guarded<S, G> {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        self.store.append(stream, expected, events)
    }

    fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, StoreError>> + Send {
        self.store.append_streams(batches)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.store.read_stream(stream, range)
    }

    fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.store.read_stream_until(stream, until)
    }

    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.store.read_all(after, limit)
    }

    fn last_position(&self) -> impl Future<Output = Result<GlobalPosition, StoreError>> + Send {
        self.store.last_position()
    }
}

impl<S: Subscribe, G: Send + Sync> Subscribe for Guarded<S, G> {
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        self.store.subscribe(after, filter)
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        self.store.subscription_stats()
    }
}

impl<S: SnapshotStore, G: Send + Sync> SnapshotStore for Guarded<S, G> {
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.save_snapshot(snapshot)
    }

    fn replace_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.replace_snapshot(snapshot)
    }

    fn record_snapshot_fallback(&self, stream: &StreamId) {
        self.store.record_snapshot_fallback(stream);
    }

    fn snapshot_fallbacks(&self) -> u64 {
        self.store.snapshot_fallbacks()
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        self.store.load_snapshot(stream)
    }
}

impl<S: ProjectionStore, G: Send + Sync> ProjectionStore for Guarded<S, G> {
    fn save_projection(
        &self,
        saved: SavedProjection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.save_projection(saved)
    }

    fn save_projection_fenced(
        &self,
        saved: SavedProjection,
        fence: &crate::lease::Fence,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.save_projection_fenced(saved, fence)
    }

    fn load_projection(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<SavedProjection>, StoreError>> + Send {
        self.store.load_projection(name)
    }
}
