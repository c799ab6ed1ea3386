//! [`Store`]: one type for every store of this crate, chosen at run time from a URL.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::event::{NewEvent, RecordedEvent};
use crate::lease::{Fence, Lease, LeaseStore};
use crate::snapshot::{ProjectionStore, SavedProjection, Snapshot, SnapshotStore};
use crate::store::{
    AppendOutcome, EventStore, ExpectedVersion, InMemory, StoreError, StreamBatch, VersionRange,
};
use crate::subscription::{EventFilter, Subscribe, Subscription, SubscriptionStats};
use crate::types::{GlobalPosition, StreamId, Timestamp};

#[cfg(feature = "postgres")]
use crate::store::postgres::{Postgres, PostgresOptions};
#[cfg(feature = "sqlite")]
use crate::store::sqlite::{Sqlite, SqliteOptions};

/// Any store of this crate, opened from a URL: `memory`, `sqlite:PATH` or `postgres://...`.
///
/// It is an [`EventStore`], a [`SnapshotStore`], a [`ProjectionStore`], a [`LeaseStore`] and
/// [`Subscribe`]s, like
/// each store it wraps, so one build of an application runs on any of them, chosen by
/// configuration (the stores' traits have `async fn`s, so `dyn EventStore` is not an option).
/// A store configured in code converts with `From` (`Store::from(sqlite)`).
///
/// | URL | store |
/// |---|---|
/// | `memory` | a new, empty [`InMemory`] store |
/// | `sqlite:PATH` (or `sqlite://PATH`) | the [`Sqlite`](crate::Sqlite) file at `PATH` (feature `sqlite`, on by default) |
/// | `postgres://...` or `postgresql://...` | [`Postgres`](crate::store::postgres::Postgres) at that server (feature `postgres`) |
///
/// # Examples
///
/// ```
/// use es_core::{EventStore, GlobalPosition, Store, StoreOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), es_core::StoreError> {
/// # let directory = std::env::temp_dir().join(format!("es-store-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&directory).unwrap();
/// # let url = format!("sqlite:{}", directory.join("bank.db").display());
/// let store = Store::open("memory").await?;
/// assert_eq!(store.last_position().await?, GlobalPosition::START);
///
/// let bank = Store::open(&url).await?; // creates the file if need be
/// bank.close().await;
///
/// // Reading an existing store, never writing (a query tool, a read-only disk):
/// let reader = Store::open_with(&url, StoreOptions::new().read_only()).await?;
/// assert!(reader.is_read_only());
/// reader.close().await;
///
/// // A mistyped path is an error, never a new, empty store.
/// let missing = Store::open_with("sqlite:no-such.db", StoreOptions::new().existing_only()).await;
/// assert!(matches!(missing, Err(es_core::StoreError::NotFound { .. })));
/// # std::fs::remove_dir_all(&directory).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Memory(InMemory),
    #[cfg(feature = "sqlite")]
    Sqlite(Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(Postgres),
}

/// What opening a [`Store`] may do, and the settings every backend shares.
#[derive(Clone, Default)]
pub struct StoreOptions {
    clock: Option<Arc<dyn Clock>>,
    access: Access,
    postgres_schema: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Access {
    #[default]
    CreateIfMissing,
    ExistingOnly,
    ReadOnly,
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("access", &self.access)
            .field("postgres_schema", &self.postgres_schema)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    /// Creates the store if it does not exist; the system clock; PostgreSQL's default schema.
    #[must_use]
    pub fn new() -> Self {
        StoreOptions::default()
    }

    /// Stamps events with `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Opens an existing store only: a missing file or schema is [`StoreError::NotFound`] and
    /// nothing is created. `memory` is then refused too: a new in-memory store is empty.
    #[must_use]
    pub fn existing_only(mut self) -> Self {
        if self.access == Access::CreateIfMissing {
            self.access = Access::ExistingOnly;
        }
        self
    }

    /// Opens an existing store for reading only, as [`existing_only`](Self::existing_only)
    /// does; every write is refused with [`StoreError::ReadOnly`] and a SQLite file is never
    /// written (see [`SqliteOptions::read_only`]).
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Puts a PostgreSQL store's tables in `schema` (see
    /// [`PostgresOptions::with_schema`](crate::store::postgres::PostgresOptions::with_schema));
    /// [`Store::open_with`] refuses it for the other stores.
    #[must_use]
    pub fn with_postgres_schema(mut self, schema: impl Into<String>) -> Self {
        self.postgres_schema = Some(schema.into());
        self
    }
}

impl Store {
    /// Opens the store `url` names (see the [type docs](Store)), creating it if it does not
    /// exist.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a URL of no known store (or of a store this build leaves
    /// out), and the errors of the store's own open or connect.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, StoreOptions::new()).await
    }

    /// Opens the store `url` names with `options`.
    ///
    /// # Errors
    /// As [`Store::open`], and [`StoreError::NotFound`] when only an existing store may be
    /// opened and there is none.
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if options.postgres_schema.is_some() && !postgres {
            return Err(StoreError::Config(
                "a PostgreSQL schema was given for a store that is not `postgres://...`".to_owned(),
            ));
        }
        if postgres {
            return open_postgres(url, options).await;
        }
        if url == "memory" {
            if options.access != Access::CreateIfMissing {
                return Err(StoreError::NotFound {
                    location: "memory".to_owned(),
                    reason: "an in-memory store starts empty: there is no existing one to open"
                        .to_owned(),
                });
            }
            let store = match options.clock {
                Some(clock) => InMemory::with_clock(clock),
                None => InMemory::new(),
            };
            return Ok(Store::from(store));
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::Config(
                    "`sqlite:` needs a file path, like `sqlite:orders.db`".to_owned(),
                ));
            }
            return open_sqlite(path, options).await;
        }
        // The text may be a mistyped URL with a password in it: never repeat it whole.
        let shown = if url.contains('@') {
            "the URL given"
        } else {
            url
        };
        Err(StoreError::Config(format!(
            "unknown store `{shown}`: expected `memory`, `sqlite:PATH` or `postgres://...`"
        )))
    }

    /// Finishes pending work and closes the store: a SQLite file is checkpointed, a
    /// PostgreSQL pool closed, an in-memory store left as it is. Operations after it fail with
    /// [`StoreError::Closed`] (except on an in-memory store). Closing twice is harmless.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Memory(store) => store.close().await,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(store) => store.close().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(store) => store.close().await,
        }
    }

    /// Whether the store was opened [read-only](StoreOptions::read_only).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        match &self.backend {
            Backend::Memory(_) => false,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(store) => store.is_read_only(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(store) => store.is_read_only(),
        }
    }

    /// The in-memory store, if this is one.
    #[must_use]
    pub fn as_memory(&self) -> Option<&InMemory> {
        match &self.backend {
            Backend::Memory(store) => Some(store),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The SQLite store, if this is one.
    #[cfg(feature = "sqlite")]
    #[must_use]
    pub fn as_sqlite(&self) -> Option<&Sqlite> {
        match &self.backend {
            Backend::Sqlite(store) => Some(store),
            _ => None,
        }
    }

    /// The PostgreSQL store, if this is one.
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn as_postgres(&self) -> Option<&Postgres> {
        match &self.backend {
            Backend::Postgres(store) => Some(store),
            _ => None,
        }
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &str, options: StoreOptions) -> Result<Store, StoreError> {
    let mut sqlite = SqliteOptions::new();
    if let Some(clock) = options.clock {
        sqlite = sqlite.with_clock(clock);
    }
    sqlite = match options.access {
        Access::CreateIfMissing => sqlite,
        Access::ExistingOnly => sqlite.existing_only(),
        Access::ReadOnly => sqlite.read_only(),
    };
    Ok(Store::from(Sqlite::open_with(path, sqlite).await?))
}

#[cfg(not(feature = "sqlite"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn open_sqlite(_path: &str, _options: StoreOptions) -> Result<Store, StoreError> {
    Err(StoreError::Config(
        "this build of es-core has no SQLite store: enable its `sqlite` feature".to_owned(),
    ))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
    let mut postgres = PostgresOptions::new(url);
    if let Some(clock) = options.clock {
        postgres = postgres.with_clock(clock);
    }
    if let Some(schema) = options.postgres_schema {
        postgres = postgres.with_schema(schema);
    }
    postgres = match options.access {
        Access::CreateIfMissing => postgres,
        Access::ExistingOnly => postgres.existing_only(),
        Access::ReadOnly => postgres.read_only(),
    };
    Ok(Store::from(Postgres::connect_with(postgres).await?))
}

#[cfg(not(feature = "postgres"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn open_postgres(_url: &str, _options: StoreOptions) -> Result<Store, StoreError> {
    Err(StoreError::Config(
        "this build of es-core has no PostgreSQL store: enable its `postgres` feature".to_owned(),
    ))
}

impl From<InMemory> for Store {
    fn from(store: InMemory) -> Self {
        Store {
            backend: Backend::Memory(store),
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<Sqlite> for Store {
    fn from(store: Sqlite) -> Self {
        Store {
            backend: Backend::Sqlite(store),
        }
    }
}

#[cfg(feature = "postgres")]
impl From<Postgres> for Store {
    fn from(store: Postgres) -> Self {
        Store {
            backend: Backend::Postgres(store),
        }
    }
}

impl fmt::Display for Store {
    /// What the store is, for people: never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Memory(_) => f.write_str("in memory"),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(store) => write!(f, "SQLite file `{}`", store.location()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(store) => write!(f, "PostgreSQL schema `{}`", store.schema()),
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Memory(store) => f.debug_tuple("Store").field(store).finish(),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(store) => f.debug_tuple("Store").field(store).finish(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(store) => f.debug_tuple("Store").field(store).finish(),
        }
    }
}

/// Calls the same method on whichever store this is.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match &$self.backend {
            Backend::Memory($store) => $call,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($store) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($store) => $call,
        }
    };
}

impl EventStore for Store {
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

    async fn read_all_into(
        &self,
        after: GlobalPosition,
        limit: usize,
        into: &mut Vec<RecordedEvent>,
    ) -> Result<(), StoreError> {
        delegate!(self, store => store.read_all_into(after, limit, into).await)
    }

    fn lend_all<B>(
        &self,
        after: GlobalPosition,
        limit: usize,
        visit: &mut dyn FnMut(&RecordedEvent) -> ControlFlow<B>,
    ) -> Option<ControlFlow<B, usize>> {
        delegate!(self, store => store.lend_all(after, limit, visit))
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        delegate!(self, store => store.last_position().await)
    }

    fn clock(&self) -> &dyn Clock {
        delegate!(self, store => EventStore::clock(store))
    }
}

impl SnapshotStore for Store {
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

impl ProjectionStore for Store {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        delegate!(self, store => store.save_projection(saved).await)
    }

    async fn save_projection_fenced(
        &self,
        saved: SavedProjection,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        delegate!(self, store => store.save_projection_fenced(saved, fence).await)
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        delegate!(self, store => store.load_projection(name).await)
    }

    fn clock(&self) -> &dyn Clock {
        delegate!(self, store => ProjectionStore::clock(store))
    }
}

#[cfg(feature = "sqlite")]
impl crate::projection::table::TableStore for Store {
    fn table_database(&self) -> crate::projection::table::TableDatabase {
        delegate!(self, store => store.table_database())
    }
}

impl LeaseStore for Store {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        delegate!(self, store => store.try_acquire(name, holder, ttl).await)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        delegate!(self, store => store.renew(lease, ttl).await)
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        delegate!(self, store => store.release(lease).await)
    }

    async fn load_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        delegate!(self, store => store.load_lease(name).await)
    }
}

impl Subscribe for Store {
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        delegate!(self, store => store.subscribe(after, filter))
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        delegate!(self, store => store.subscription_stats())
    }
}
