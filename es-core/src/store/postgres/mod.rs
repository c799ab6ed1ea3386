//! The PostgreSQL store: one event store shared by many application nodes.
//!
//! ```no_run
//! use es_core::store::postgres::{Postgres, PostgresOptions};
//! use es_core::{EventStore, GlobalPosition};
//!
//! # async fn example() -> Result<(), es_core::StoreError> {
//! // The tables go in the schema `event_store`, created on first connect.
//! let store = Postgres::connect("postgres://app:secret@127.0.0.1:5432/app").await?;
//! let first_page = store.read_all(GlobalPosition::START, 100).await?;
//!
//! // Or choose the schema and the pool size.
//! let options = PostgresOptions::new("postgres://app:secret@127.0.0.1:5432/app")
//!     .with_schema("orders")
//!     .with_pool_size(8);
//! let orders = Postgres::connect_with(options).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Connecting creates (once, under an advisory lock, so many nodes may connect at once) five
//! tables in the configured schema: `events`, `snapshots`, `projections`, `leases` (see
//! [`lease`](crate::lease): expiry by the server's clock) and `meta`, which records the schema
//! version; a store written by a newer release is refused with
//! [`StoreError::NewerSchema`]. The schema name must be a plain lowercase identifier; every
//! value goes to the server as a bound parameter. Every table and column, and what other
//! tools may read, is in `docs/storage.md` in the repository.
//!
//! # How an append works
//!
//! One round trip, pipelined: `BEGIN` at `READ COMMITTED` (whatever the server's default
//! isolation level, so each statement sees the commits it waited for); take a transaction-scoped advisory lock on the stream
//! (so appends to one stream queue up and the version check sees the last commit); mark the
//! transaction *in flight* (below); turn sequential scans off for the rest of the transaction
//! (so the insert's event id check probes the index, however much the table has grown since
//! PostgreSQL cached the insert's plan); one `INSERT ... SELECT FROM unnest(...)` that checks the
//! expected version and writes the whole batch, or nothing; `COMMIT`. A version mismatch
//! inserts no row and comes back as a typed [`Conflict`](crate::Conflict) with the actual
//! version read under the same lock. A unique violation (a writer that bypassed the stream
//! lock) is also reported as a conflict, never as a raw database error. The insert runs
//! under a short session-level advisory lock of the store (taken right before it, released
//! right after it in the same pipeline), so the positions of one append are never
//! interleaved with another's: each append's events form one contiguous run of the global
//! order. Any failure closes the connection, which also frees that lock.
//!
//! A multi-stream append ([`EventStore::append_streams`]) is the same pipeline over several
//! streams: it takes the streams' locks in ascending order of their keys, in one statement
//! (two such appends with overlapping streams therefore never wait on each other in a cycle:
//! no deadlock), marks itself in flight, and runs one `INSERT` that checks every stream's
//! expected version and writes every batch, or nothing. When nothing was written, the
//! streams' versions, read under the same locks, name every stream that failed in a
//! [`Conflicts`](crate::Conflicts). One transaction: readers see all of it or none of it.
//!
//! # Why reads are gap-safe
//!
//! Positions come from a sequence, and PostgreSQL commits concurrent transactions in any
//! order: a transaction holding positions 5 and 6 can commit after another one holding 7,
//! and a reader that resumed after 7 would skip 5 and 6. So `read_all` only returns
//! positions below a *bound* that no transaction still in flight can undercut:
//!
//! - Before taking any position, an append reads the sequence's next value `n` and takes a
//!   shared, transaction-scoped advisory lock keyed by the store and `n` (its low 32 bits).
//!   Every position it then gets is at least `n`, and the lock lasts until it commits or
//!   rolls back (or its session dies).
//! - A reader reads the sequence's next value `a`, then the in-flight locks of the store
//!   from `pg_locks` (their positions rebuilt from the low 32 bits against a second read of
//!   the sequence), and takes as bound the least of `a` and those positions. Then, in a new
//!   statement (a newer snapshot), it reads the committed events below the bound.
//!
//! An append that could still commit a position below the bound would have had to be in
//! flight when the locks were read (and would have lowered the bound) or start after the
//! sequence read `a` (and get positions of at least `a`). So once `read_all` has returned
//! position `p`, nothing below `p` can appear later. Only appends in flight *in the same
//! store* hold readers back, for as long as they take to commit; nothing else in the
//! database does. `last_position` follows the same rule. The rule needs the primary's lock
//! table: point every node at the primary, not at a read replica.
//!
//! Connections are plain TCP (no TLS). A connection lost mid-append gives
//! [`StoreError::Connection`]; the transaction is rolled back by the server unless its
//! `COMMIT` had already been processed, so read the stream to learn which.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::clock::{Clock, SystemClock};
use crate::event::{NewEvent, RecordedEvent};
use crate::lease::Fence;
use crate::snapshot::{
    ProjectionStore, SavedProjection, Snapshot, SnapshotAndEvents, SnapshotStore,
};
use crate::store::{
    record_append, record_appends, record_read, AppendOutcome, EventStore, ExpectedVersion,
    StoreError, StreamBatch, VersionRange,
};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

mod append;
mod checkout;
pub(crate) mod errors;
pub(crate) mod lease;
mod rows;
mod schema;
mod subscriptions;

#[doc(hidden)]
pub use append::AppendEnding;

use checkout::Checkout;
use errors::{pool_error, query_error};
use rows::{check_text, to_bigint, to_stored_bigint};
use schema::{lock_key, SchemaName, Sql};
use subscriptions::Subscriptions;

/// How to connect to PostgreSQL: the server URL, the schema holding the tables, the pool
/// size, the time bounds and the clock that stamps events.
///
/// # Time bounds
///
/// No operation waits for the server without a bound, so a server that accepts connections
/// and never answers, or a network that freezes mid-run, gives a [`StoreError::Connection`]
/// instead of a hang:
///
/// - **connect**: opening one connection, the TCP connect *and* the startup and login
///   handshake together ([`PostgresOptions::with_connect_timeout`]; else the URL's
///   `connect_timeout`; else [`PostgresOptions::DEFAULT_CONNECT_TIMEOUT`]);
/// - **pool wait**: waiting for a pooled connection while all are busy
///   ([`PostgresOptions::with_pool_wait_timeout`]);
/// - **statement**: each round trip to the server, a statement or the pipelined statements of
///   an append, including any wait for a lock on the server
///   ([`PostgresOptions::with_statement_timeout`]).
///
/// A connection whose round trip ran past its bound is closed, never reused. An append that
/// failed this way may have been committed, or may still be committed a moment later (its
/// statements reached the server, which runs them even though the client is gone, for
/// example once a lock it waited for is free): as for any lost connection, send the same batch
/// again, which is answered with its original outcome if it was stored.
#[derive(Clone)]
pub struct PostgresOptions {
    url: String,
    schema: String,
    pool_size: usize,
    connect_timeout: Option<Duration>,
    pool_wait_timeout: Duration,
    statement_timeout: Duration,
    clock: Arc<dyn Clock>,
    subscription_poll_interval: Duration,
    access: Access,
}

/// What connecting may do to the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    CreateIfMissing,
    ExistingOnly,
    ReadOnly,
}

impl PostgresOptions {
    /// The schema the tables go in unless [`PostgresOptions::with_schema`] says otherwise.
    pub const DEFAULT_SCHEMA: &'static str = "event_store";
    /// The most connections the pool opens unless [`PostgresOptions::with_pool_size`] says
    /// otherwise.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// The largest pool size [`Postgres::connect_with`] accepts (far above what a
    /// PostgreSQL server admits; the pool reserves room for every connection up front).
    pub const MAX_POOL_SIZE: usize = 10_000;
    /// How often a subscription reads the log while it waits for a notification, unless
    /// [`PostgresOptions::with_subscription_poll_interval`] says otherwise.
    pub const DEFAULT_SUBSCRIPTION_POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// The bound on opening a connection (TCP connect and startup handshake) unless
    /// [`PostgresOptions::with_connect_timeout`] or the URL's `connect_timeout` says otherwise.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The bound on waiting for a pooled connection unless
    /// [`PostgresOptions::with_pool_wait_timeout`] says otherwise.
    pub const DEFAULT_POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
    /// The bound on each round trip to the server unless
    /// [`PostgresOptions::with_statement_timeout`] says otherwise.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Options for the server at `url`, a libpq-style URL or key/value string such as
    /// `postgres://user:password@host:5432/database` (all of tokio-postgres' parameters, for
    /// example `application_name` or `connect_timeout`, are accepted).
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: PostgresOptions::DEFAULT_SCHEMA.to_owned(),
            pool_size: PostgresOptions::DEFAULT_POOL_SIZE,
            connect_timeout: None,
            pool_wait_timeout: PostgresOptions::DEFAULT_POOL_WAIT_TIMEOUT,
            statement_timeout: PostgresOptions::DEFAULT_STATEMENT_TIMEOUT,
            clock: Arc::new(SystemClock),
            subscription_poll_interval: PostgresOptions::DEFAULT_SUBSCRIPTION_POLL_INTERVAL,
            access: Access::CreateIfMissing,
        }
    }

    /// Bounds opening one connection, the TCP connect and the startup and login handshake
    /// together, by `timeout` (more than zero). Overrides the URL's `connect_timeout`.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Bounds the wait for a pooled connection, when every one is busy, by `timeout` (more
    /// than zero).
    #[must_use]
    pub fn with_pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// Bounds each round trip to the server (a statement, or the pipelined statements of an
    /// append, with any wait for a lock on the server) by `timeout` (more than zero). Raise it
    /// for the first connect to a large store of an older schema version, whose upgrade builds
    /// an index in one round trip.
    ///
    /// The server holds the store's sessions to the same bound between the statements of a
    /// transaction (`idle_in_transaction_session_timeout`, unless the URL's `options` set it):
    /// a process paused, stopped or cut off inside a transaction has it rolled back by the
    /// server after `timeout`, so the locks it held are freed. A lease holder stopped in the
    /// middle of a fenced write thus holds off the next holder's takeover for at most this
    /// long, not until it is resumed.
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Puts the tables in `schema`: 1 to 63 characters of `a-z`, `0-9` and `_`, not starting
    /// with a digit or `pg_`. Checked by [`Postgres::connect_with`].
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Opens at most `size` connections (at least 1, at most
    /// [`PostgresOptions::MAX_POOL_SIZE`]).
    #[must_use]
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Stamps events with `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Connects to an existing store only: a schema without the store's tables is
    /// [`StoreError::NotFound`] and nothing is created (so a mistyped schema name cannot make a
    /// new, empty store).
    #[must_use]
    pub fn existing_only(mut self) -> Self {
        if self.access == Access::CreateIfMissing {
            self.access = Access::ExistingOnly;
        }
        self
    }

    /// Connects to an existing store, as [`existing_only`](Self::existing_only) does, for
    /// reading only: every write (append, snapshot, saved read model) is refused with
    /// [`StoreError::ReadOnly`] before it reaches the server. Works with a role that may only
    /// `SELECT`.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Whether stores connected with these options are read-only.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.access == Access::ReadOnly
    }

    /// Makes each [subscription](crate::Subscribe) read the log this often while it waits
    /// for a notification (at least every millisecond): the fallback that turns a lost
    /// notification, or a dropped `LISTEN` connection, into a delay instead of a stall.
    #[must_use]
    pub fn with_subscription_poll_interval(mut self, interval: Duration) -> Self {
        self.subscription_poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The schema the tables go in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The most connections the pool opens.
    #[must_use]
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The bound on opening a connection, if set here (else the URL's `connect_timeout`, else
    /// [`PostgresOptions::DEFAULT_CONNECT_TIMEOUT`], applies).
    #[must_use]
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The bound on waiting for a pooled connection.
    #[must_use]
    pub fn pool_wait_timeout(&self) -> Duration {
        self.pool_wait_timeout
    }

    /// The bound on each round trip to the server.
    #[must_use]
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("PostgresOptions")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field(
                "subscription_poll_interval",
                &self.subscription_poll_interval,
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_wait_timeout", &self.pool_wait_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

/// An event store, snapshot store and projection store in a PostgreSQL database, for many
/// application nodes sharing one store. Clones share one connection pool.
///
/// Keeps the whole [`EventStore`] contract, with a gap-safe global order across nodes; see
/// the [module docs](self) for how.
#[derive(Clone)]
pub struct Postgres {
    shared: Arc<Shared>,
}

/// What every clone of a [`Postgres`] shares.
struct Shared {
    pool: Pool,
    schema: SchemaName,
    sql: Sql,
    clock: Arc<dyn Clock>,
    /// Snapshots found unusable by any repository over this store.
    snapshot_fallbacks: AtomicU64,
    /// The bound on each round trip to the server.
    statement_timeout: Duration,
    /// The first key of the in-flight locks of this store, as `pg_advisory_xact_lock_shared`
    /// takes it.
    in_flight_tag: i32,
    subscriptions: Arc<Subscriptions>,
    /// The key of the session lock an insert holds while it takes positions.
    positions_key: i64,
    read_only: bool,
}

impl Shared {
    /// Refuses a write to a read-only store.
    fn check_writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                location: format!("PostgreSQL schema `{}`", self.schema.as_str()),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.shared.pool.status();
        f.debug_struct("Postgres")
            .field("schema", &self.shared.schema.as_str())
            .field("connections", &status.size)
            .field("idle_connections", &status.available)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects to the server at `url` with the default schema and pool size, creating the
    /// tables if they do not exist.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a URL that does not parse, [`StoreError::Connection`] when
    /// the server cannot be reached or refuses the login, and the errors of
    /// [`Postgres::connect_with`].
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Postgres::connect_with(PostgresOptions::new(url)).await
    }

    /// Connects with `options`, creating the schema and its tables if they do not exist.
    ///
    /// # Errors
    /// [`StoreError::Config`] for an invalid schema name, pool size or URL;
    /// [`StoreError::Connection`] when the server cannot be reached or refuses the login;
    /// [`StoreError::NotAStore`] when the schema holds other tables;
    /// [`StoreError::NewerSchema`] when a newer release wrote the store.
    pub async fn connect_with(options: PostgresOptions) -> Result<Self, StoreError> {
        let schema = SchemaName::parse(&options.schema)?;
        if options.pool_size == 0 || options.pool_size > PostgresOptions::MAX_POOL_SIZE {
            return Err(StoreError::Config(format!(
                "the pool size must be 1 to {}, not {}",
                PostgresOptions::MAX_POOL_SIZE,
                options.pool_size
            )));
        }
        for (name, timeout) in [
            ("connect", options.connect_timeout),
            ("pool wait", Some(options.pool_wait_timeout)),
            ("statement", Some(options.statement_timeout)),
        ] {
            if timeout == Some(Duration::ZERO) {
                return Err(StoreError::Config(format!(
                    "the {name} timeout must be more than zero"
                )));
            }
        }
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|error| StoreError::Config(format!("invalid PostgreSQL URL: {error}")))?;
        // The driver bounds only each TCP connect attempt by `connect_timeout` (and treats 0
        // as none); the pool bounds the whole connect, handshake included, by the same time.
        let connect_timeout = options
            .connect_timeout
            .or_else(|| config.get_connect_timeout().copied())
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(PostgresOptions::DEFAULT_CONNECT_TIMEOUT);
        config.connect_timeout(connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("es-core");
        }
        let session = session_options(config.get_options(), options.statement_timeout);
        config.options(&session);
        let subscriptions = Arc::new(Subscriptions::new(
            config.clone(),
            &schema,
            options.subscription_poll_interval,
        ));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .wait_timeout(Some(options.pool_wait_timeout))
            .recycle_timeout(Some(options.statement_timeout))
            .build()
            .map_err(|error| StoreError::Config(error.to_string()))?;

        let mut client = pool.get().await.map_err(pool_error)?;
        let migrated = tokio::time::timeout(
            options.statement_timeout,
            schema::migrate(
                &mut client,
                &schema,
                match options.access {
                    Access::CreateIfMissing => schema::Changes::CreateOrUpgrade,
                    Access::ExistingOnly => schema::Changes::UpgradeOnly,
                    Access::ReadOnly => schema::Changes::None,
                },
            ),
        )
        .await;
        let Ok(migrated) = migrated else {
            // The session may be inside the migration's transaction: close it.
            drop(Object::take(client));
            return Err(checkout::TimedOut {
                operation: "checking (or creating) the store's tables",
                limit: options.statement_timeout,
            }
            .into_error());
        };
        migrated?;
        drop(client);

        Ok(Postgres {
            shared: Arc::new(Shared {
                pool,
                // The low 32 bits of a key derived from the schema name: truncation intended.
                #[allow(clippy::cast_possible_truncation)]
                in_flight_tag: lock_key(&["in flight", schema.as_str()]) as i32,
                positions_key: lock_key(&["positions", schema.as_str()]),
                sql: Sql::new(&schema, &subscriptions.channel),
                snapshot_fallbacks: AtomicU64::new(0),
                schema,
                clock: options.clock,
                subscriptions,
                statement_timeout: options.statement_timeout,
                read_only: options.access == Access::ReadOnly,
            }),
        })
    }

    /// The schema holding the tables.
    #[must_use]
    pub fn schema(&self) -> &str {
        self.shared.schema.as_str()
    }

    /// Closes the pool: open connections close once returned, and every later operation
    /// fails with [`StoreError::Closed`].
    #[allow(clippy::unused_async)] // `async fn close(&self)` on every store, as on `Sqlite`
    pub async fn close(&self) {
        self.shared.subscriptions.close();
        self.shared.pool.close();
    }

    /// Whether the store was connected [read-only](PostgresOptions::read_only).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// The channel each append sends a `NOTIFY` on (inside its transaction), which the
    /// store's subscriptions `LISTEN` to: `es_events_` and 16 hex digits derived from the
    /// schema name. Other programs may listen to it too; the payload is empty.
    #[must_use]
    pub fn notification_channel(&self) -> &str {
        &self.shared.subscriptions.channel
    }

    /// Like [`EventStore::append`], ending the transaction as `ending` says. Test support
    /// (delayed and rolled-back commits); not public API.
    #[doc(hidden)]
    pub async fn append_ending(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        ending: AppendEnding,
    ) -> Result<AppendOutcome, StoreError> {
        append::append(&self.shared, stream, expected, events, ending).await
    }
}

/// Whether PostgreSQL text can hold the stream id (if not, the stream cannot exist).
fn is_storable(stream: &StreamId) -> bool {
    !stream.aggregate_type().contains('\0') && !stream.aggregate_id().contains('\0')
}

impl Shared {
    /// Runs `sql` with `params` on a pooled connection and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let checkout = Checkout::get(self).await?;
        let client = checkout.client();
        let rows = checkout
            .bounded(async {
                let statement = client.prepare_cached(sql).await?;
                client.query(&statement, params).await
            })
            .await?;
        checkout.release();
        Ok(rows)
    }

    /// The last version of `stream` (`None`: no events).
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<Version>, StoreError> {
        if !is_storable(stream) {
            return Ok(None);
        }
        let rows = self
            .query(
                &self.sql.stream_version,
                &[&stream.aggregate_type(), &stream.aggregate_id()],
            )
            .await?;
        let version: Option<i64> = rows
            .first()
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(query_error)?
            .flatten();
        Ok(version.map(|version| Version(version.max(0) as u64)))
    }

    fn events(rows: &[tokio_postgres::Row]) -> Result<Vec<RecordedEvent>, StoreError> {
        rows.iter().map(rows::recorded_event).collect()
    }

    /// The exclusive bound below which every position is final (committed or never to be):
    /// see "Why reads are gap-safe" in the module docs. One round trip.
    async fn read_bound(&self, client: &Object) -> Result<i64, tokio_postgres::Error> {
        let (next_position, in_flight) = tokio::try_join!(
            client.prepare_cached(&self.sql.next_position),
            client.prepare_cached(&self.sql.in_flight),
        )?;
        // As the `classid` column of `pg_locks` shows it: the same 32 bits, unsigned.
        let tag = i64::from(self.in_flight_tag as u32);
        let tag: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tag];
        // In this order: the sequence, the locks, the sequence again (pipelined).
        let (before, marks, after) = tokio::join!(
            client.query_one(&next_position, &[]),
            client.query(&in_flight, &tag),
            client.query_one(&next_position, &[]),
        );
        let mut bound: i64 = before?.try_get(0)?;
        let after: i64 = after?.try_get(0)?;
        for mark in marks? {
            let low_bits: i64 = mark.try_get(0)?;
            // The marked position is at most `after`, and less than 2^32 below it.
            bound = bound.min(after - (after - low_bits).rem_euclid(1 << 32));
        }
        Ok(bound)
    }
}

impl EventStore for Postgres {
    #[tracing::instrument(level = "debug", name = "append", skip_all, fields(
        store = "postgres", stream = %stream, expected = %expected, events = events.len(),
        version = tracing::field::Empty, position = tracing::field::Empty,
    ))]
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let outcome =
            append::append(&self.shared, stream, expected, events, AppendEnding::Commit).await;
        record_append(&outcome);
        outcome
    }

    #[tracing::instrument(level = "debug", name = "append_streams", skip_all, fields(
        store = "postgres", streams = batches.len(),
        events = batches.iter().map(|batch| batch.events.len()).sum::<usize>(),
        position = tracing::field::Empty,
    ))]
    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let outcomes = append::append_streams(&self.shared, batches).await;
        record_appends(&outcomes);
        outcomes
    }

    #[tracing::instrument(level = "debug", name = "read_stream", skip_all, fields(
        store = "postgres", stream = %stream, from = range.from.get(), to = range.to.get(),
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = to_bigint(range.from.get().max(1));
        let to = to_bigint(range.to.get());
        if from > to || !is_storable(stream) {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        let rows = shared
            .query(
                &shared.sql.read_stream,
                &[&stream.aggregate_type(), &stream.aggregate_id(), &from, &to],
            )
            .await?;
        let events = Shared::events(&rows);
        record_read(&events);
        events
    }

    #[tracing::instrument(level = "debug", name = "read_stream_until", skip_all, fields(
        store = "postgres", stream = %stream, until = %until,
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if !is_storable(stream) {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        let rows = shared
            .query(
                &shared.sql.read_stream_until,
                &[
                    &stream.aggregate_type(),
                    &stream.aggregate_id(),
                    &until.as_micros(),
                ],
            )
            .await?;
        let events = Shared::events(&rows);
        record_read(&events);
        events
    }

    #[tracing::instrument(level = "debug", name = "read_all", skip_all, fields(
        store = "postgres", after = after.get(), limit,
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let Ok(after) = i64::try_from(after.get()) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let shared = &self.shared;
        let checkout = Checkout::get(shared).await?;
        let client = checkout.client();
        let bound = checkout.bounded(shared.read_bound(client)).await?;
        if bound <= after.saturating_add(1) {
            checkout.release();
            return Ok(Vec::new());
        }
        let rows = checkout
            .bounded(async {
                let statement = client.prepare_cached(&shared.sql.read_all).await?;
                client.query(&statement, &[&after, &bound, &limit]).await
            })
            .await?;
        checkout.release();
        let events = Shared::events(&rows);
        record_read(&events);
        events
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        let shared = &self.shared;
        let checkout = Checkout::get(shared).await?;
        let client = checkout.client();
        let bound = checkout.bounded(shared.read_bound(client)).await?;
        let row = checkout
            .bounded(async {
                let statement = client.prepare_cached(&shared.sql.last_position).await?;
                client.query_one(&statement, &[&bound]).await
            })
            .await?;
        checkout.release();
        let position: Option<i64> = row.try_get(0).map_err(query_error)?;
        Ok(GlobalPosition(position.unwrap_or(0).max(0) as u64))
    }

    fn clock(&self) -> &dyn Clock {
        &*self.shared.clock
    }
}

impl SnapshotStore for Postgres {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.write_snapshot(&self.shared.sql.save_snapshot, snapshot)
            .await
    }

    async fn replace_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.write_snapshot(&self.shared.sql.replace_snapshot, snapshot)
            .await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        if !is_storable(stream) {
            return Ok(None);
        }
        let shared = &self.shared;
        let rows = shared
            .query(
                &shared.sql.load_snapshot,
                &[&stream.aggregate_type(), &stream.aggregate_id()],
            )
            .await?;
        rows.first()
            .map(|row| rows::snapshot(stream, row))
            .transpose()
    }

    /// One round trip: a read-only `REPEATABLE READ` transaction (so the snapshot and the
    /// events come from one state of the database) whose four statements are pipelined.
    async fn load_snapshot_and_events(
        &self,
        stream: &StreamId,
        to: Version,
    ) -> Result<SnapshotAndEvents, StoreError> {
        if !is_storable(stream) {
            return Ok(SnapshotAndEvents::new(Ok(None), Vec::new()));
        }
        let shared = &self.shared;
        let last = to_bigint(to.get());
        let (aggregate_type, aggregate_id) = (stream.aggregate_type(), stream.aggregate_id());
        let checkout = Checkout::get(shared).await?;
        let client = checkout.client();
        let (snapshot_rows, event_rows) = checkout
            .bounded(async {
                let (load_snapshot, read_events) = tokio::try_join!(
                    client.prepare_cached(&shared.sql.load_snapshot),
                    client.prepare_cached(&shared.sql.read_stream_from_snapshot),
                )?;
                let snapshot_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&aggregate_type, &aggregate_id];
                let event_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&aggregate_type, &aggregate_id, &last];
                // In this order, all sent before the first answer comes back.
                let (begin, snapshot, events, commit) = tokio::join!(
                    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
                    client.query(&load_snapshot, &snapshot_params),
                    client.query(&read_events, &event_params),
                    client.batch_execute("COMMIT"),
                );
                begin?;
                let rows = (snapshot?, events?);
                commit?;
                Ok(rows)
            })
            .await?;
        checkout.release();
        let snapshot = snapshot_rows
            .first()
            .map(|row| rows::snapshot(stream, row))
            .transpose();
        let events = Shared::events(&event_rows);
        record_read(&events);
        let events = events?;
        let from =
            SnapshotAndEvents::first_version(snapshot.as_ref().ok().and_then(Option::as_ref), to);
        if from == Version(1) && events.first().is_some_and(|event| event.version != from) {
            // The snapshot row did not decode, but the server started the events at its
            // version: read them from the first, as promised.
            let events = self.read_stream(stream, VersionRange { from, to }).await?;
            return Ok(SnapshotAndEvents::new(snapshot, events));
        }
        Ok(SnapshotAndEvents::new(snapshot, events))
    }

    fn record_snapshot_fallback(&self, _stream: &StreamId) {
        self.shared
            .snapshot_fallbacks
            .fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot_fallbacks(&self) -> u64 {
        self.shared.snapshot_fallbacks.load(Ordering::Relaxed)
    }
}

impl Postgres {
    /// Runs the upsert `sql` (conditional or not) with `snapshot`'s values.
    async fn write_snapshot(&self, sql: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.shared.check_writable()?;
        let stream = &snapshot.stream;
        check_text("aggregate type", stream.aggregate_type())?;
        check_text("aggregate id", stream.aggregate_id())?;
        let version = to_stored_bigint(snapshot.version.get(), "snapshot version")?;
        let shared = &self.shared;
        shared
            .query(
                sql,
                &[
                    &stream.aggregate_type(),
                    &stream.aggregate_id(),
                    &version,
                    // The same 64 bits in a signed column.
                    &(snapshot.fingerprint as i64),
                    &i16::from(snapshot.codec.as_u8()),
                    &snapshot.state,
                    &snapshot.taken_at.as_micros(),
                ],
            )
            .await?;
        Ok(())
    }
}

impl ProjectionStore for Postgres {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        self.shared.check_writable()?;
        check_text("projection name", &saved.name)?;
        let position = to_stored_bigint(saved.position.get(), "projection position")?;
        let shared = &self.shared;
        shared
            .query(
                &shared.sql.save_projection,
                &[
                    &saved.name,
                    &position,
                    &i16::from(saved.codec.as_u8()),
                    &saved.state,
                    &saved.saved_at.as_micros(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn save_projection_fenced(
        &self,
        saved: SavedProjection,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        self.shared.check_writable()?;
        check_text("projection name", &saved.name)?;
        check_text("lease name", &fence.lease)?;
        let position = to_stored_bigint(saved.position.get(), "projection position")?;
        self.save_projection_under(&saved, position, fence).await
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        if name.contains('\0') {
            return Ok(None);
        }
        let shared = &self.shared;
        let rows = shared.query(&shared.sql.load_projection, &[&name]).await?;
        rows.first()
            .map(|row| rows::saved_projection(name, row))
            .transpose()
    }

    fn clock(&self) -> &dyn Clock {
        &*self.shared.clock
    }
}

#[cfg(feature = "sqlite")]
impl crate::projection::table::TableStore for Postgres {
    /// The store's schema, through the store's connection pool.
    fn table_database(&self) -> crate::projection::table::TableDatabase {
        crate::projection::table::TableDatabase::postgres(
            crate::projection::table::postgres::PostgresBackend::new(
                self.shared.pool.clone(),
                self.shared.schema.as_str().to_owned(),
                self.shared.read_only,
            ),
        )
    }
}

/// The server options of the store's sessions: `existing` (the URL's `options`) and a bound on
/// how long a session may sit idle inside a transaction, `idle` (whole milliseconds, at least
/// one), unless `existing` sets that bound itself.
fn session_options(existing: Option<&str>, idle: Duration) -> String {
    let existing = existing.unwrap_or_default().trim();
    if existing.contains("idle_in_transaction_session_timeout") {
        return existing.to_owned();
    }
    let millis = idle.as_millis().clamp(1, i32::MAX as u128);
    let bound = format!("-c idle_in_transaction_session_timeout={millis}");
    if existing.is_empty() {
        bound
    } else {
        format!("{existing} {bound}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_bound_their_idle_transactions_unless_the_url_does() {
        assert_eq!(
            session_options(None, Duration::from_secs(30)),
            "-c idle_in_transaction_session_timeout=30000"
        );
        assert_eq!(
            session_options(Some(" -c search_path=x "), Duration::from_micros(10)),
            "-c search_path=x -c idle_in_transaction_session_timeout=1"
        );
        let own = "-c idle_in_transaction_session_timeout=5s";
        assert_eq!(session_options(Some(own), Duration::from_secs(30)), own);
        assert_eq!(
            session_options(None, Duration::from_secs(u64::MAX)),
            format!("-c idle_in_transaction_session_timeout={}", i32::MAX)
        );
    }
}
