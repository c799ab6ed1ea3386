//! The store conformance suite against the SQLite store: each check gets a fresh store file in
//! its own temporary directory, deleted when the check ends.

use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::{
    AppendOutcome, EventStore, ExpectedVersion, GlobalPosition, ManualClock, NewEvent,
    ProjectionStore, RecordedEvent, SavedProjection, Snapshot, SnapshotStore, StoreError, StreamId,
    Timestamp, VersionRange,
};
use tempfile::TempDir;

/// A store and the temporary directory holding its file, removed after the store.
struct TemporaryStore {
    store: Sqlite,
    _directory: TempDir,
}

impl TemporaryStore {
    async fn open(options: SqliteOptions) -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = Sqlite::open_with(directory.path().join("events.db"), options)
            .await
            .expect("a new store opens");
        TemporaryStore {
            store,
            _directory: directory,
        }
    }
}

impl EventStore for TemporaryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.store.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_all(after, limit).await
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.store.last_position().await
    }
}

impl SnapshotStore for TemporaryStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.store.load_snapshot(stream).await
    }
}

impl ProjectionStore for TemporaryStore {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        self.store.save_projection(saved).await
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        self.store.load_projection(name).await
    }
}

/// The default configuration: durable commits, two read connections.
mod durable {
    use super::*;

    async fn store(clock: ManualClock) -> TemporaryStore {
        TemporaryStore::open(SqliteOptions::new().with_clock(clock)).await
    }

    es_core::conformance_tests!(store);
}

/// `synchronous = NORMAL` with a single read connection, so every read queues behind another.
mod normal_one_reader {
    use super::*;

    async fn store(clock: ManualClock) -> TemporaryStore {
        TemporaryStore::open(
            SqliteOptions::new()
                .with_clock(clock)
                .with_synchronous(Synchronous::Normal)
                .with_read_connections(1),
        )
        .await
    }

    es_core::conformance_tests!(store);
}
