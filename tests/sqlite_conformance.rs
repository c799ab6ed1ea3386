//! The store conformance suite against the SQLite store: each check gets a fresh store file in
//! its own temporary directory, deleted when the check ends.

use es_core::store::sqlite::{Sqlite, SqliteOptions, Synchronous};
use es_core::testing::conformance::Guarded;
use es_core::ManualClock;
use tempfile::TempDir;

/// A store and the temporary directory holding its file, removed after the store closes.
type TemporaryStore = Guarded<Sqlite, TempDir>;

async fn open(options: SqliteOptions) -> TemporaryStore {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = Sqlite::open_with(directory.path().join("events.db"), options)
        .await
        .expect("a new store opens");
    Guarded::new(store, directory)
}

/// The default configuration: durable commits, two read connections.
mod durable {
    use super::*;

    async fn store(clock: ManualClock) -> TemporaryStore {
        open(SqliteOptions::new().with_clock(clock)).await
    }

    es_core::conformance_tests!(store);
}

/// `synchronous = NORMAL` with a single read connection, so every read queues behind another.
mod normal_one_reader {
    use super::*;

    async fn store(clock: ManualClock) -> TemporaryStore {
        open(
            SqliteOptions::new()
                .with_clock(clock)
                .with_synchronous(Synchronous::Normal)
                .with_read_connections(1),
        )
        .await
    }

    es_core::conformance_tests!(store);
}
