//! The embedded, durable store: one SQLite file in WAL mode.
//!
//! [`Sqlite`] keeps the whole [`EventStore`] contract and also stores snapshots
//! ([`SnapshotStore`]) and read-model states ([`ProjectionStore`]) in the same file.
//!
//! # How it works
//!
//! - **One writer thread** owns the only write connection. `append` sends its batch over a
//!   channel and awaits the answer; the writer takes everything queued, runs it in one
//!   transaction with each batch in its own savepoint (a batch whose expected version does not
//!   hold is rolled back to its savepoint and answered with a [`Conflict`](crate::Conflict);
//!   the others are kept), commits once, which is one fsync, then answers every caller. Many
//!   concurrent appenders therefore share each fsync (group commit).
//! - A **multi-stream append** ([`EventStore::append_streams`]) is one request of that group:
//!   one savepoint checks every stream, then inserts every batch, so it is rolled back whole
//!   (answered with [`StoreError::Conflicts`] naming every failed stream) or committed whole,
//!   and its rows get one contiguous run of row ids.
//! - **Reader threads**, each with its own connection, serve reads from a shared queue. In
//!   WAL mode a reader sees the last committed state and never blocks the writer.
//! - No SQLite call runs on the caller's (async executor's) thread: the futures only pass
//!   messages, so the store works under any executor.
//! - Global positions are SQLite row ids assigned by the single writer in commit order, so
//!   they are gap-free and [`EventStore::read_all`] is gap-safe.
//! - Durability: `synchronous = FULL` by default, so an acknowledged append survives a power
//!   loss; [`Synchronous::Normal`] survives a crash of the process but may lose the last
//!   commits on a power loss, for faster commits.
//!
//! # The file
//!
//! Tables `events`, `snapshots`, `projections`, `leases` and `meta` (which records the schema
//! version);
//! the database header carries the application id `0x45765374` (`EvSt`). Metadata is stored as
//! JSON text, so it can be read, and queried with SQLite's JSON functions, without this crate.
//! Timestamps are integer microseconds since the Unix epoch. Every table and column, and what
//! other tools may read, is in `docs/storage.md` in the repository.
//!
//! Opening a file that is not a store ([`StoreError::NotAStore`]) or a store written by a newer
//! release ([`StoreError::NewerSchema`]) fails without writing to the file. A new file, or an
//! empty SQLite database, becomes a store. The file is judged from its bytes before SQLite
//! opens it, so another application's database with a hot journal or write-ahead log is
//! refused without SQLite recovering it, a path that is not a regular file (a named pipe) is
//! refused without blocking, and a store whose file is truncated or damaged is
//! [`StoreError::Corrupt`]. Several processes may create one new store at once.
//!
//! Event ids are unique in the file (a unique index, schema version 2); leases live in the
//! `leases` table (schema version 3, see [`lease`](crate::lease)). An older store is upgraded
//! when it is opened, in one transaction: the index is built, the table created and the
//! version bumped. If the file already holds an event id twice (a retry of an earlier release
//! stored a batch twice), the upgrade is refused with [`StoreError::Migration`] naming the
//! ids, and the file is left exactly as it was, still usable by the release that wrote it.
//!
//! # Example
//!
//! ```
//! use es_core::store::sqlite::Sqlite;
//! use es_core::{CodecId, EventStore, ExpectedVersion, NewEvent, StreamId, VersionRange};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let directory = std::env::temp_dir().join(format!("es-sqlite-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&directory)?;
//! # let path = directory.join("events.db");
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     let store = Sqlite::open(&path).await?;
//!     let stream = StreamId::new("account", "42");
//!     let deposited = NewEvent {
//!         event_id: uuid::Uuid::now_v7(),
//!         event_type: "Deposited".into(),
//!         schema_version: 1,
//!         codec: CodecId::Json,
//!         payload: br#"{"amount":100}"#.to_vec(),
//!         metadata: Default::default(),
//!     };
//!     let outcome = store
//!         .append(&stream, ExpectedVersion::NoStream, vec![deposited])
//!         .await?;
//!     assert_eq!(outcome.version.get(), 1);
//!
//!     let events = store.read_stream(&stream, VersionRange::all()).await?;
//!     assert_eq!(events[0].event_type, "Deposited");
//!     store.close().await;
//!     Ok::<_, es_core::StoreError>(())
//! })?;
//! # std::fs::remove_dir_all(&directory)?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};
use crate::event::{NewEvent, RecordedEvent};
use crate::lease::{check_acquire, lease_micros, Fence, Lease, LeaseStore};
use crate::projection::table::{TableDatabase, TableStore};
use crate::snapshot::{
    ProjectionStore, SavedProjection, Snapshot, SnapshotAndEvents, SnapshotStore,
};
use crate::store::{
    check_stream_batches, record_append, record_appends, record_read, AppendOutcome, EventStore,
    ExpectedVersion, StoreError, StreamBatch, VersionRange,
};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

pub(crate) mod lease;
mod preflight;
mod reader;
mod rows;
mod schema;
mod subscriptions;
mod writer;

use reader::Job;
use subscriptions::Subscriptions;
use writer::{Append, AppendStreams, Command, LeaseChange, PreparedEvent, Request};

/// The most read connections (and reader threads) a store opens.
const MAX_READ_CONNECTIONS: usize = 1024;

/// How hard SQLite works to make a commit durable before `append` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is flushed to disk (`PRAGMA synchronous = FULL`): an acknowledged append
    /// survives a crash of the process and a loss of power. The default.
    #[default]
    Full,
    /// Commits reach the operating system but are flushed only at checkpoints
    /// (`PRAGMA synchronous = NORMAL`): an acknowledged append survives a crash of the
    /// process; a loss of power may lose the last commits (never corrupts the file).
    Normal,
}

impl Synchronous {
    const fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How to open a [`Sqlite`] store.
///
/// ```
/// use std::time::Duration;
/// use es_core::store::sqlite::{SqliteOptions, Synchronous};
/// use es_core::{ManualClock, Timestamp};
///
/// let options = SqliteOptions::new()
///     .with_synchronous(Synchronous::Normal)
///     .with_clock(ManualClock::new(Timestamp::EPOCH))
///     .with_read_connections(4)
///     .with_busy_timeout(Duration::from_secs(1));
/// ```
#[derive(Clone)]
pub struct SqliteOptions {
    synchronous: Synchronous,
    clock: Arc<dyn Clock>,
    read_connections: usize,
    busy_timeout: Duration,
    change_check_interval: Duration,
    access: Access,
}

/// What opening may do to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Create the store if the file does not exist (or is an empty database).
    CreateIfMissing,
    /// Open an existing store, for reading and writing.
    ExistingOnly,
    /// Open an existing store for reading; never write to the file.
    ReadOnly,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions::new()
    }
}

impl fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteOptions")
            .field("synchronous", &self.synchronous)
            .field("read_connections", &self.read_connections)
            .field("busy_timeout", &self.busy_timeout)
            .field("change_check_interval", &self.change_check_interval)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl SqliteOptions {
    /// How often subscriptions look for commits of other processes unless
    /// [`SqliteOptions::with_change_check_interval`] says otherwise.
    pub const DEFAULT_CHANGE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

    /// Durable commits ([`Synchronous::Full`]), the system clock, two read connections, a
    /// five-second wait for locks held by other processes, and a check for other processes'
    /// commits every 50 ms while a subscription is alive.
    #[must_use]
    pub fn new() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            clock: Arc::new(SystemClock),
            read_connections: 2,
            busy_timeout: Duration::from_secs(5),
            change_check_interval: SqliteOptions::DEFAULT_CHANGE_CHECK_INTERVAL,
            access: Access::CreateIfMissing,
        }
    }

    /// Opens an existing store only: a missing file, or a database that is not yet a store,
    /// is [`StoreError::NotFound`] and nothing is created (so a mistyped path cannot make a new,
    /// empty store).
    #[must_use]
    pub fn existing_only(mut self) -> Self {
        if self.access == Access::CreateIfMissing {
            self.access = Access::ExistingOnly;
        }
        self
    }

    /// Opens an existing store for reading only, as [`existing_only`](Self::existing_only)
    /// does, and never writes to the file: no writer connection, read connections opened
    /// read-only (SQLite's `SQLITE_OPEN_READONLY`), every write
    /// (append, snapshot, saved read model) refused with [`StoreError::ReadOnly`]. Works on
    /// read-only media and with files the process may not write.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Whether stores opened with these options are read-only.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.access == Access::ReadOnly
    }

    /// Commits with this durability.
    #[must_use]
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Stamps appended events with `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Serves reads with this many connections, each on its own thread (at least 1, at most
    /// 1024).
    #[must_use]
    pub fn with_read_connections(mut self, count: usize) -> Self {
        self.read_connections = count;
        self
    }

    /// Waits this long for a lock held by another process using the same file.
    #[must_use]
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// While a [subscription](crate::Subscribe) is alive, checks this often whether another
    /// process committed to the file (`PRAGMA data_version` on a dedicated connection, a few
    /// microseconds); commits of this process wake subscriptions at once regardless. At least
    /// one millisecond.
    #[must_use]
    pub fn with_change_check_interval(mut self, interval: Duration) -> Self {
        self.change_check_interval = interval.max(Duration::from_millis(1));
        self
    }
}

/// The embedded, durable event store, snapshot store and projection store: one SQLite file.
///
/// Clones share the same connections. The threads stop when the last clone is dropped, or at
/// once with [`Sqlite::close`]. Dropping an `append` future after it started does not withdraw
/// the batch: it may still be committed.
///
/// See the [module documentation](self) for how it works and an example.
#[derive(Clone)]
pub struct Sqlite {
    location: Arc<str>,
    /// `None` when the store is read-only.
    commands: Option<Sender<Command>>,
    jobs: Sender<Job>,
    read_connections: usize,
    clock: Arc<dyn Clock>,
    subscriptions: Arc<Subscriptions>,
    /// Snapshots found unusable by any repository over this store.
    snapshot_fallbacks: Arc<AtomicU64>,
    /// Where table read models over this store write (a connection of its own, opened on
    /// first use).
    tables: TableDatabase,
}

impl fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqlite")
            .field("location", &self.location)
            .field("read_connections", &self.read_connections)
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens the store at `path`, creating it if the file does not exist, with the default
    /// [`SqliteOptions`].
    ///
    /// # Errors
    /// [`StoreError::NotAStore`] for a file that is not a store, [`StoreError::NewerSchema`]
    /// for a store written by a newer release (neither file is changed), and
    /// [`StoreError::Backend`] when SQLite cannot open the file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Sqlite::open_with(path, SqliteOptions::new()).await
    }

    /// Opens the store at `path` with `options`, creating it if the file does not exist unless
    /// the options say [`existing_only`](SqliteOptions::existing_only) or
    /// [`read_only`](SqliteOptions::read_only).
    ///
    /// # Errors
    /// As [`Sqlite::open`], [`StoreError::NotFound`] for a missing file (or a database that is
    /// not yet a store) when only an existing store may be opened, and [`StoreError::Config`]
    /// for zero read connections or more than 1024.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        if options.read_connections == 0 {
            return Err(StoreError::Config(
                "a SQLite store needs at least one read connection".to_owned(),
            ));
        }
        if options.read_connections > MAX_READ_CONNECTIONS {
            return Err(StoreError::Config(format!(
                "{} read connections is more than the {MAX_READ_CONNECTIONS} a SQLite store \
                 opens (each is a thread)",
                options.read_connections
            )));
        }
        let path = path.as_ref().to_path_buf();
        let location: Arc<str> = path.display().to_string().into();

        let subscriptions = Arc::new(Subscriptions::new(
            path.clone(),
            Arc::clone(&location),
            options.busy_timeout,
            options.change_check_interval,
            options.access == Access::ReadOnly,
        ));

        let commands = if options.access == Access::ReadOnly {
            // No writer: check the file is a store from a read-only connection instead, on a
            // thread of its own like every SQLite call.
            let (checked, check) = oneshot::channel();
            {
                let path = path.clone();
                let location = Arc::clone(&location);
                let busy_timeout = options.busy_timeout;
                std::thread::Builder::new()
                    .name("es-sqlite-open".to_owned())
                    .spawn(move || {
                        drop(checked.send(schema::check_read_only(&path, busy_timeout, &location)));
                    })
                    .map_err(StoreError::backend)?;
            }
            check.await.map_err(|_| StoreError::Closed)??;
            None
        } else {
            Some(Self::start_writer(&path, &options, &location, &subscriptions).await?)
        };

        let (jobs, job_queue) = mpsc::channel();
        let job_queue = Arc::new(Mutex::new(job_queue));
        let mut readers_opened = Vec::with_capacity(options.read_connections);
        for index in 0..options.read_connections {
            let (ready, opened) = oneshot::channel();
            reader::spawn(
                index,
                &path,
                &options,
                Arc::clone(&location),
                Arc::clone(&job_queue),
                ready,
            )?;
            readers_opened.push(opened);
        }
        // On an error the handles below are dropped, which stops every thread started.
        let store = Sqlite {
            location,
            commands,
            jobs,
            read_connections: options.read_connections,
            clock: Arc::clone(&options.clock),
            subscriptions,
            snapshot_fallbacks: Arc::default(),
            tables: TableDatabase::sqlite_file(
                path.clone(),
                options.busy_timeout,
                options.access == Access::ReadOnly,
            ),
        };
        for opened in readers_opened {
            opened.await.map_err(|_| StoreError::Closed)??;
        }
        Ok(store)
    }

    /// Starts the writer thread, which checks and, if new, creates the store before any
    /// reader connects.
    async fn start_writer(
        path: &Path,
        options: &SqliteOptions,
        location: &Arc<str>,
        subscriptions: &Subscriptions,
    ) -> Result<Sender<Command>, StoreError> {
        let (commands, command_queue) = mpsc::channel();
        let (writer_ready, writer_opened) = oneshot::channel();
        {
            let path = path.to_path_buf();
            let options = options.clone();
            let location = Arc::clone(location);
            let wakeups = Arc::clone(&subscriptions.wakeups);
            std::thread::Builder::new()
                .name("es-sqlite-writer".to_owned())
                .spawn(
                    move || match writer::Writer::open(&path, &options, location, wakeups) {
                        Ok(writer) => {
                            if writer_ready.send(Ok(())).is_ok() {
                                writer.run(&command_queue);
                            }
                        }
                        Err(error) => drop(writer_ready.send(Err(error))),
                    },
                )
                .map_err(StoreError::backend)?;
        }
        writer_opened.await.map_err(|_| StoreError::Closed)??;
        Ok(commands)
    }

    /// The path the store was opened at, as text.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the store was opened [read-only](SqliteOptions::read_only).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.commands.is_none()
    }

    /// Finishes the queued work and closes every connection, so the file is complete and
    /// another process (or a new [`Sqlite::open`]) can take it over. Every call after this,
    /// on any clone, fails with [`StoreError::Closed`]. Closing twice is harmless.
    pub async fn close(&self) {
        self.subscriptions.close().await;
        let mut closed = Vec::with_capacity(self.read_connections);
        for _ in 0..self.read_connections {
            let (reply, done) = oneshot::channel();
            if self.jobs.send(Job::Close(reply)).is_ok() {
                closed.push(done);
            }
        }
        for done in closed {
            // An error means the reader already stopped: closed either way.
            drop(done.await);
        }
        // The writer closes last: closing the last connection checkpoints the log.
        let (reply, done) = oneshot::channel();
        if let Some(commands) = &self.commands {
            if commands.send(Command::Close(reply)).is_ok() {
                drop(done.await);
            }
        }
    }

    async fn request<T>(
        &self,
        request: impl FnOnce(writer::Reply<T>) -> Request,
    ) -> Result<T, StoreError> {
        let Some(commands) = &self.commands else {
            return Err(StoreError::ReadOnly {
                location: self.location.to_string(),
            });
        };
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Request(request(reply)))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&rusqlite::Connection, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let location = Arc::clone(&self.location);
        self.jobs
            .send(Job::Query(Box::new(move |connection| {
                drop(reply.send(query(connection, &location)));
            })))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl EventStore for Sqlite {
    #[tracing::instrument(level = "debug", name = "append", skip_all, fields(
        store = "sqlite", stream = %stream, expected = %expected, events = events.len(),
        version = tracing::field::Empty, position = tracing::field::Empty,
    ))]
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        crate::store::check_batch_ids(stream, &events)?;
        let events = events
            .into_iter()
            .map(PreparedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        let stream = stream.clone();
        let outcome = self
            .request(move |reply| {
                Request::Append(Append {
                    stream,
                    expected,
                    events,
                    reply,
                })
            })
            .await;
        record_append(&outcome);
        outcome
    }

    #[tracing::instrument(level = "debug", name = "append_streams", skip_all, fields(
        store = "sqlite", streams = batches.len(),
        events = batches.iter().map(|batch| batch.events.len()).sum::<usize>(),
        position = tracing::field::Empty,
    ))]
    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        check_stream_batches(&batches)?;
        let batches = batches
            .into_iter()
            .map(|batch| {
                let events = batch
                    .events
                    .into_iter()
                    .map(PreparedEvent::new)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((batch.stream, batch.expected, events))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let outcomes = self
            .request(move |reply| Request::AppendStreams(AppendStreams { batches, reply }))
            .await;
        record_appends(&outcomes);
        outcomes
    }

    #[tracing::instrument(level = "debug", name = "read_stream", skip_all, fields(
        store = "sqlite", stream = %stream, from = range.from.get(), to = range.to.get(),
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if range.from > range.to {
            return Ok(Vec::new());
        }
        let stream = stream.clone();
        let events = self
            .query(move |connection, location| {
                reader::read_stream(connection, &stream, range, location)
            })
            .await;
        record_read(&events);
        events
    }

    #[tracing::instrument(level = "debug", name = "read_stream_until", skip_all, fields(
        store = "sqlite", stream = %stream, until = %until,
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        let events = self
            .query(move |connection, location| {
                reader::read_stream_until(connection, &stream, until, location)
            })
            .await;
        record_read(&events);
        events
    }

    #[tracing::instrument(level = "debug", name = "read_all", skip_all, fields(
        store = "sqlite", after = after.get(), limit,
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let events = self
            .query(move |connection, location| reader::read_all(connection, after, limit, location))
            .await;
        record_read(&events);
        events
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.query(reader::last_position).await
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

impl SnapshotStore for Sqlite {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.request(move |reply| Request::SaveSnapshot {
            snapshot,
            replace: false,
            reply,
        })
        .await
    }

    async fn replace_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.request(move |reply| Request::SaveSnapshot {
            snapshot,
            replace: true,
            reply,
        })
        .await
    }

    fn record_snapshot_fallback(&self, _stream: &StreamId) {
        self.snapshot_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot_fallbacks(&self) -> u64 {
        self.snapshot_fallbacks.load(Ordering::Relaxed)
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let stream = stream.clone();
        self.query(move |connection, location| reader::load_snapshot(connection, &stream, location))
            .await
    }

    /// One hop to a reader thread, one read transaction.
    async fn load_snapshot_and_events(
        &self,
        stream: &StreamId,
        to: Version,
    ) -> Result<SnapshotAndEvents, StoreError> {
        let stream = stream.clone();
        self.query(move |connection, location| {
            reader::load_snapshot_and_events(connection, &stream, to, location)
        })
        .await
    }
}

impl ProjectionStore for Sqlite {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        self.request(move |reply| Request::SaveProjection {
            saved,
            fence: None,
            reply,
        })
        .await
    }

    async fn save_projection_fenced(
        &self,
        saved: SavedProjection,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let fence = Some(fence.clone());
        self.request(move |reply| Request::SaveProjection {
            saved,
            fence,
            reply,
        })
        .await
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        let name = name.to_owned();
        self.query(move |connection, location| reader::load_projection(connection, &name, location))
            .await
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

impl TableStore for Sqlite {
    /// The store's own file, through a connection of its own (read-only if the store is).
    fn table_database(&self) -> TableDatabase {
        self.tables.clone()
    }
}

impl LeaseStore for Sqlite {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let ttl_micros = check_acquire(name, holder, ttl)?;
        let change = LeaseChange::Acquire {
            name: name.to_owned(),
            holder: holder.to_owned(),
            ttl_micros,
        };
        self.request(move |reply| Request::Lease { change, reply })
            .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let change = LeaseChange::Renew {
            lease: lease.clone(),
            ttl_micros: lease_micros(ttl)?,
        };
        self.request(move |reply| Request::Lease { change, reply })
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        let change = LeaseChange::Release {
            lease: lease.clone(),
        };
        let released = self
            .request(move |reply| Request::Lease { change, reply })
            .await?;
        Ok(released.is_some())
    }

    async fn load_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let name = name.to_owned();
        self.query(move |connection, location| lease::load(connection, &name, location))
            .await
    }
}
