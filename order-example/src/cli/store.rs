//! The store the program runs on, chosen at run time: `EventStore` has async methods, so it is
//! not object safe; an enum of the three stores implements the traits by delegation instead.

use std::fmt;

use anyhow::{bail, Context as _};
use es_core::store::sqlite::Sqlite;
use es_core::{
    AppendOutcome, EventFilter, EventStore, ExpectedVersion, GlobalPosition, InMemory, NewEvent,
    ProjectionStore, RecordedEvent, SavedProjection, Snapshot, SnapshotStore, StoreError,
    StreamBatch, StreamId, Subscribe, Subscription, SubscriptionStats, Timestamp, VersionRange,
};

#[cfg(feature = "postgres")]
use es_core::store::postgres::{Postgres, PostgresOptions};

/// One of the stores, with its snapshots and saved read models in the same place.
#[derive(Clone)]
pub enum AnyStore {
    /// Nothing survives the process.
    Memory(InMemory),
    /// A SQLite file.
    Sqlite(Sqlite),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(Postgres),
}

impl AnyStore {
    /// Opens the store `spec` names: `memory`, `sqlite:PATH` or `postgres://...`, the last
    /// with its tables in `postgres_schema` (or the default schema).
    pub async fn open(spec: &str, postgres_schema: Option<&str>) -> anyhow::Result<AnyStore> {
        let is_postgres = spec.starts_with("postgres://") || spec.starts_with("postgresql://");
        if is_postgres {
            return open_postgres(spec, postgres_schema).await;
        }
        if postgres_schema.is_some() {
            bail!("--postgres-schema needs a `postgres://...` store");
        }
        if spec == "memory" {
            return Ok(AnyStore::Memory(InMemory::new()));
        }
        if let Some(path) = spec.strip_prefix("sqlite:") {
            if path.is_empty() {
                bail!("`sqlite:` needs a file path, for example `sqlite:orders.db`");
            }
            let store = Sqlite::open(path)
                .await
                .with_context(|| format!("cannot open the SQLite store `{path}`"))?;
            return Ok(AnyStore::Sqlite(store));
        }
        bail!("unknown store `{spec}`: expected `memory`, `sqlite:PATH` or `postgres://...`")
    }

    /// Finishes pending work and closes connections (a SQLite file is checkpointed).
    pub async fn close(&self) {
        match self {
            AnyStore::Memory(_) => {}
            AnyStore::Sqlite(store) => store.close().await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.close(),
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, schema: Option<&str>) -> anyhow::Result<AnyStore> {
    let mut options = PostgresOptions::new(url);
    if let Some(schema) = schema {
        options = options.with_schema(schema);
    }
    let store = Postgres::connect_with(options)
        .await
        .context("cannot connect to the PostgreSQL store")?;
    Ok(AnyStore::Postgres(store))
}

#[cfg(not(feature = "postgres"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn open_postgres(_url: &str, _schema: Option<&str>) -> anyhow::Result<AnyStore> {
    bail!("this build has no PostgreSQL support: build with the `postgres` feature")
}

impl fmt::Display for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyStore::Memory(_) => {
                f.write_str("in memory (nothing is kept after the program ends)")
            }
            AnyStore::Sqlite(store) => write!(f, "SQLite file `{}`", store.location()),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => write!(f, "PostgreSQL, schema `{}`", store.schema()),
        }
    }
}

/// Calls the same method on whichever store this is.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call,
            AnyStore::Sqlite($store) => $call,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => $call,
        }
    };
}

impl EventStore for AnyStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        delegate!(self, store => store.append(stream, expected, events).await)
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        delegate!(self, store => store.append_streams(batches).await)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        delegate!(self, store => store.read_stream(stream, range).await)
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        delegate!(self, store => store.read_stream_until(stream, until).await)
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        delegate!(self, store => store.read_all(after, limit).await)
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        delegate!(self, store => store.last_position().await)
    }
}

impl SnapshotStore for AnyStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        delegate!(self, store => store.save_snapshot(snapshot).await)
    }

    async fn replace_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        delegate!(self, store => store.replace_snapshot(snapshot).await)
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        delegate!(self, store => store.load_snapshot(stream).await)
    }

    fn record_snapshot_fallback(&self, stream: &StreamId) {
        delegate!(self, store => store.record_snapshot_fallback(stream));
    }

    fn snapshot_fallbacks(&self) -> u64 {
        delegate!(self, store => store.snapshot_fallbacks())
    }
}

impl ProjectionStore for AnyStore {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        delegate!(self, store => store.save_projection(saved).await)
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        delegate!(self, store => store.load_projection(name).await)
    }
}

impl Subscribe for AnyStore {
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        delegate!(self, store => store.subscribe(after, filter))
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        delegate!(self, store => store.subscription_stats())
    }
}
