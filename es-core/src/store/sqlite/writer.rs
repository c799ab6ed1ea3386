//! The writer thread: owns the only write connection and commits whatever is queued in one
//! transaction, each request in its own savepoint.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::lease::{self, check_fence_sqlite};
use super::preflight::{self, Owner};
use super::rows::{bits_to_sql, is_busy, store_error, stored_id_from_row, to_sql_integer};
use super::{schema, Access, SqliteOptions};
use crate::clock::Clock;
use crate::codec::CodecId;
use crate::event::NewEvent;
use crate::lease::{Fence, Lease};
use crate::shared::SharedStr;
use crate::snapshot::{SavedProjection, Snapshot};
use crate::store::{
    match_stored_batch, match_stored_batches, AppendOutcome, Conflicts, ExpectedVersion,
    StoreError, StoredId,
};
use crate::subscription::Wakeups;
use crate::types::{GlobalPosition, StreamId, Version};

/// At most this many requests share one transaction, so one commit stays bounded in size.
const MAX_GROUP: usize = 1024;

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, \
     event_type, schema_version, codec, payload, metadata, recorded_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The stream's last version and the time of its last event (one index probe; the aggregate
/// over the at most one row gives a row of NULLs for a stream with no events).
const STREAM_VERSION: &str = "SELECT MAX(version), MAX(recorded_at) FROM (SELECT version, \
     recorded_at FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
     ORDER BY version DESC LIMIT 1)";

/// Where the event with id `?1` is stored (one probe of the unique index on event ids).
const FIND_EVENT_ID: &str =
    "SELECT aggregate_type, aggregate_id, version, global_position FROM events WHERE event_id = ?1";

const UPSERT_SNAPSHOT: &str = "INSERT INTO snapshots (aggregate_type, aggregate_id, version, \
     fingerprint, codec, state, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = excluded.version, \
     fingerprint = excluded.fingerprint, codec = excluded.codec, state = excluded.state, \
     taken_at = excluded.taken_at WHERE excluded.version >= snapshots.version";

/// Replaces a stream's snapshot whatever is stored (its version may be unreadable).
const REPLACE_SNAPSHOT: &str = "INSERT INTO snapshots (aggregate_type, aggregate_id, version, \
     fingerprint, codec, state, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = excluded.version, \
     fingerprint = excluded.fingerprint, codec = excluded.codec, state = excluded.state, \
     taken_at = excluded.taken_at";

const UPSERT_PROJECTION: &str = "INSERT INTO projections (name, position, codec, state, saved_at) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
     codec = excluded.codec, state = excluded.state, saved_at = excluded.saved_at";

/// The answer to one request.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the writer is asked to do.
pub(super) enum Command {
    /// Work to run in the next transaction.
    Request(Request),
    /// Finish the queued work, close the connection and stop; answered once it is closed.
    Close(oneshot::Sender<()>),
}

/// Work for the write connection, answered after the transaction that ran it commits.
pub(super) enum Request {
    /// Append a batch to a stream.
    Append(Append),
    /// Append batches to several streams, all or none.
    AppendStreams(AppendStreams),
    /// Save a snapshot unless a newer one is stored, or whatever is stored (`replace`).
    SaveSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
        /// Whether to replace the stored one even if its version is higher.
        replace: bool,
        /// Where the outcome goes.
        reply: Reply<()>,
    },
    /// Replace a projection's saved state (if `fence` is given: only while it holds).
    SaveProjection {
        /// The state and checkpoint.
        saved: SavedProjection,
        /// The lease the write is made under, checked in the same transaction.
        fence: Option<Fence>,
        /// Where the outcome goes.
        reply: Reply<()>,
    },
    /// Grant, renew or release a lease.
    Lease {
        /// What to do.
        change: LeaseChange,
        /// The lease after the change (`None`: not granted, lost, or released).
        reply: Reply<Option<Lease>>,
    },
}

/// A change to the lease table, timed by the writer's clock inside the transaction.
pub(super) enum LeaseChange {
    /// Grant the lease `name` to `holder` for `ttl_micros`, if it is free.
    Acquire {
        name: String,
        holder: String,
        ttl_micros: i64,
    },
    /// Extend `lease` by `ttl_micros` from now, if it is still granted.
    Renew { lease: Lease, ttl_micros: i64 },
    /// Give up `lease`, if it is still granted (answered with it when it was).
    Release { lease: Lease },
}

/// One batch to append.
pub(super) struct Append {
    /// The stream appended to.
    pub(super) stream: StreamId,
    /// The version the stream must be at.
    pub(super) expected: ExpectedVersion,
    /// The events, ready to bind.
    pub(super) events: Vec<PreparedEvent>,
    /// Where the outcome goes.
    pub(super) reply: Reply<AppendOutcome>,
}

/// Batches for several streams, written in one savepoint: all or none.
pub(super) struct AppendStreams {
    /// Each stream, the version it must be at, and its events, in the caller's order.
    pub(super) batches: Vec<(StreamId, ExpectedVersion, Vec<PreparedEvent>)>,
    /// Where the outcome goes.
    pub(super) reply: Reply<Vec<AppendOutcome>>,
}

/// A [`NewEvent`] with its metadata already encoded, so the writer thread only binds values.
pub(super) struct PreparedEvent {
    event_id: Uuid,
    event_type: SharedStr,
    schema_version: u32,
    codec: CodecId,
    payload: Vec<u8>,
    metadata: String,
}

impl PreparedEvent {
    /// Encodes the metadata of `event` (on the caller's task, off the writer thread).
    pub(super) fn new(event: NewEvent) -> Result<Self, StoreError> {
        Ok(PreparedEvent {
            metadata: super::rows::metadata_to_sql(&event.metadata)?,
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            codec: event.codec,
            payload: event.payload,
        })
    }
}

/// The whole group failed: the transaction was rolled back (or its commit failed), so the
/// request that gets this error was not written, or, for a failed commit, may not be.
#[derive(Debug, thiserror::Error)]
#[error("the transaction this request was grouped into failed: {reason}")]
struct GroupFailed {
    reason: Arc<str>,
}

/// A request whose work is done, waiting for the commit before it is answered.
enum Done {
    Append(Reply<AppendOutcome>, Result<AppendOutcome, StoreError>),
    AppendStreams(
        Reply<Vec<AppendOutcome>>,
        Result<Vec<AppendOutcome>, StoreError>,
    ),
    Saved(Reply<()>, Result<(), StoreError>),
    Lease(Reply<Option<Lease>>, Result<Option<Lease>, StoreError>),
}

impl Done {
    fn succeeded(&self) -> bool {
        match self {
            Done::Append(_, result) => result.is_ok(),
            Done::AppendStreams(_, result) => result.is_ok(),
            Done::Saved(_, result) => result.is_ok(),
            Done::Lease(_, result) => result.is_ok(),
        }
    }

    /// Whether this is an append that stored its events.
    fn appended(&self) -> bool {
        matches!(self, Done::Append(_, Ok(_)) | Done::AppendStreams(_, Ok(_)))
    }

    /// Whether the outcome is a version conflict, which was checked against the group's
    /// uncommitted state.
    fn is_conflict(&self) -> bool {
        match self {
            Done::Append(_, Err(error)) | Done::AppendStreams(_, Err(error)) => error.is_conflict(),
            _ => false,
        }
    }

    /// Replaces the outcome with the group's failure.
    fn fail(self, reason: &Arc<str>) -> Done {
        let error = || {
            StoreError::backend(GroupFailed {
                reason: Arc::clone(reason),
            })
        };
        match self {
            Done::Append(reply, _) => Done::Append(reply, Err(error())),
            Done::AppendStreams(reply, _) => Done::AppendStreams(reply, Err(error())),
            Done::Saved(reply, _) => Done::Saved(reply, Err(error())),
            Done::Lease(reply, _) => Done::Lease(reply, Err(error())),
        }
    }

    fn send(self) {
        // A caller that stopped waiting no longer needs the answer.
        match self {
            Done::Append(reply, result) => drop(reply.send(result)),
            Done::AppendStreams(reply, result) => drop(reply.send(result)),
            Done::Saved(reply, result) => drop(reply.send(result)),
            Done::Lease(reply, result) => drop(reply.send(result)),
        }
    }
}

/// The writer: the write connection and the clock that stamps appends.
pub(super) struct Writer {
    connection: Connection,
    clock: Arc<dyn Clock>,
    location: Arc<str>,
    /// Woken after every commit that stored events.
    wakeups: Arc<Wakeups>,
}

impl Writer {
    /// Opens the write connection, checking (and if new, creating) the store.
    pub(super) fn open(
        path: &Path,
        options: &SqliteOptions,
        location: Arc<str>,
        wakeups: Arc<Wakeups>,
    ) -> Result<Self, StoreError> {
        let create = options.access == Access::CreateIfMissing;
        if !create {
            schema::check_exists(path, &location)?;
        }
        let owner = preflight::check_file(path, &location)?;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut connection = Connection::open_with_flags(path, flags)
            .map_err(|error| store_error(error, &location))?;
        schema::configure(&connection, options.busy_timeout, &location)?;
        // Processes opening a new file at once race to switch it to WAL mode and create the
        // schema; some of those steps report "locked" at once instead of waiting. Each step
        // is safe to repeat, so retry them for as long as the busy timeout allows.
        let deadline = std::time::Instant::now() + options.busy_timeout;
        loop {
            match schema::prepare_writer(
                &mut connection,
                options.synchronous,
                owner,
                create,
                &location,
            ) {
                Err(error) if is_busy(&error) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other.map_err(|error| damaged_if_ours(error, owner, &location))?,
            }
        }
        Ok(Writer {
            connection,
            clock: Arc::clone(&options.clock),
            location,
            wakeups,
        })
    }

    /// Serves requests until a [`Command::Close`] arrives or every sender is gone.
    pub(super) fn run(mut self, commands: &Receiver<Command>) {
        let mut closing = Vec::new();
        while closing.is_empty() {
            let Ok(first) = commands.recv() else { break };
            let queued = std::iter::from_fn(|| commands.try_recv().ok());
            let mut group = Vec::with_capacity(8);
            for command in std::iter::once(first).chain(queued.take(MAX_GROUP - 1)) {
                match command {
                    Command::Request(request) => group.push(request),
                    Command::Close(reply) => closing.push(reply),
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
        }
        // Closing the last connection checkpoints the log into the database file.
        drop(self.connection.close());
        for reply in closing {
            let _ = reply.send(());
        }
    }

    /// Runs every request of `group` in one transaction and answers each after the commit.
    fn commit(&mut self, group: Vec<Request>) {
        if let Err(error) = self.execute_cached("BEGIN IMMEDIATE") {
            let reason: Arc<str> = format!("it could not begin ({error})").into();
            for request in group {
                Self::not_run(request).fail(&reason).send();
            }
            return;
        }
        let mut done = Vec::with_capacity(group.len());
        let mut aborted: Option<Arc<str>> = None;
        for request in group {
            if let Some(reason) = &aborted {
                Self::not_run(request).fail(reason).send();
                continue;
            }
            match self.in_savepoint(request) {
                Ok(finished) => done.push(finished),
                Err((finished, reason)) => {
                    done.push(finished);
                    aborted = Some(reason);
                }
            }
        }
        if let Some(reason) = aborted {
            self.roll_back();
            for finished in done {
                // A conflict's actual version may count events of this group, now rolled
                // back: only the group's failure is true of it.
                if finished.succeeded() || finished.is_conflict() {
                    finished.fail(&reason).send();
                } else {
                    finished.send();
                }
            }
            return;
        }
        if let Err(error) = self.execute_cached("COMMIT") {
            self.roll_back();
            let reason: Arc<str> = format!(
                "the commit failed ({error}); read the stream to learn whether it was stored"
            )
            .into();
            for finished in done {
                finished.fail(&reason).send();
            }
            return;
        }
        if done.iter().any(Done::appended) {
            self.wakeups.wake();
        }
        for finished in done {
            finished.send();
        }
    }

    /// A request that will not run, as an answer to fail.
    fn not_run(request: Request) -> Done {
        match request {
            Request::Append(append) => Done::Append(append.reply, Err(StoreError::Closed)),
            Request::AppendStreams(append) => {
                Done::AppendStreams(append.reply, Err(StoreError::Closed))
            }
            Request::SaveSnapshot { reply, .. } | Request::SaveProjection { reply, .. } => {
                Done::Saved(reply, Err(StoreError::Closed))
            }
            Request::Lease { reply, .. } => Done::Lease(reply, Err(StoreError::Closed)),
        }
    }

    fn execute_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
    }

    /// Runs one request inside a savepoint; a failed request is rolled back to it, leaving
    /// the rest of the group intact. `Err` means the transaction itself is lost.
    fn in_savepoint(&mut self, request: Request) -> Result<Done, (Done, Arc<str>)> {
        if let Err(error) = self.execute_cached("SAVEPOINT request") {
            let reason = format!("a savepoint could not be set ({error})").into();
            return Err((Self::not_run(request), reason));
        }
        let finished = self.run_request(request);
        let step = if finished.succeeded() {
            self.execute_cached("RELEASE request")
        } else if self.connection.is_autocommit() {
            // The failure rolled back the whole transaction (SQLite does for some I/O errors).
            return Err((finished, "a request's failure rolled it back".into()));
        } else {
            self.execute_cached("ROLLBACK TO request")
                .and_then(|()| self.execute_cached("RELEASE request"))
        };
        match step {
            Ok(()) => Ok(finished),
            Err(error) => Err((
                finished,
                format!("a savepoint could not be released ({error})").into(),
            )),
        }
    }

    fn run_request(&self, request: Request) -> Done {
        match request {
            Request::Append(append) => {
                let result = self.append(&append);
                Done::Append(append.reply, result)
            }
            Request::AppendStreams(append) => {
                let result = self.append_streams(&append.batches);
                Done::AppendStreams(append.reply, result)
            }
            Request::SaveSnapshot {
                snapshot,
                replace,
                reply,
            } => Done::Saved(reply, self.save_snapshot(&snapshot, replace)),
            Request::SaveProjection {
                saved,
                fence,
                reply,
            } => Done::Saved(reply, self.save_projection(&saved, fence.as_ref())),
            Request::Lease { change, reply } => Done::Lease(reply, self.change_lease(change)),
        }
    }

    fn roll_back(&self) {
        if !self.connection.is_autocommit() {
            // If even the rollback fails, SQLite discards the transaction when the connection
            // next begins one; the callers have their errors already.
            drop(self.connection.execute_batch("ROLLBACK"));
        }
    }

    fn sql_error(&self, error: rusqlite::Error) -> StoreError {
        store_error(error, &self.location)
    }

    /// The last version of `stream` (`None`: no events) and the time of its last event.
    fn stream_state(&self, stream: &StreamId) -> Result<(Option<Version>, i64), StoreError> {
        let (stored, last_time): (Option<i64>, Option<i64>) = self
            .connection
            .prepare_cached(STREAM_VERSION)
            .and_then(|mut statement| {
                statement.query_row(
                    params![stream.aggregate_type(), stream.aggregate_id()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
            })
            .map_err(|error| self.sql_error(error))?;
        let actual = match stored {
            None => None,
            Some(version) if version >= 1 => Some(Version(version as u64)),
            Some(version) => {
                return Err(StoreError::Corrupt {
                    location: format!("stream `{stream}`"),
                    reason: format!("its last version is {version}"),
                })
            }
        };
        Ok((actual, last_time.unwrap_or(i64::MIN)))
    }

    /// Where each stored event among `ids` is. Sees the writes of the requests before this one
    /// in the group, so a retry grouped with the append it repeats finds it.
    fn stored_ids<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a Uuid>,
    ) -> Result<Vec<StoredId>, StoreError> {
        let mut find = self
            .connection
            .prepare_cached(FIND_EVENT_ID)
            .map_err(|error| self.sql_error(error))?;
        let mut stored = Vec::new();
        for id in ids {
            let mut rows = find
                .query([id.as_bytes().as_slice()])
                .map_err(|error| self.sql_error(error))?;
            if let Some(row) = rows.next().map_err(|error| self.sql_error(error))? {
                stored.push(stored_id_from_row(row, *id)?);
            }
        }
        Ok(stored)
    }

    fn append(&self, append: &Append) -> Result<AppendOutcome, StoreError> {
        let stream = &append.stream;
        let ids: Vec<Uuid> = append.events.iter().map(|event| event.event_id).collect();
        if let Some(outcome) = match_stored_batch(stream, &ids, &self.stored_ids(&ids)?)? {
            return Ok(outcome);
        }
        let (actual, last_time) = self.stream_state(stream)?;
        append.expected.check(stream, actual)?;
        // Never earlier than the stream's last event: a clock that stepped back must not put
        // a stream's times out of step with its versions.
        let recorded_at = self.clock.now().as_micros().max(last_time);
        self.insert(stream, actual, &append.events, recorded_at)
    }

    /// Checks every stream, then writes every batch; the caller's savepoint makes it all or
    /// none. One writer and one savepoint: the rows get one contiguous run of positions.
    fn append_streams(
        &self,
        batches: &[(StreamId, ExpectedVersion, Vec<PreparedEvent>)],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let ids: Vec<(&StreamId, Vec<Uuid>)> = batches
            .iter()
            .map(|(stream, _, events)| {
                (stream, events.iter().map(|event| event.event_id).collect())
            })
            .collect();
        let stored = self.stored_ids(ids.iter().flat_map(|(_, ids)| ids))?;
        if let Some(outcomes) = match_stored_batches(&ids, &stored)? {
            return Ok(outcomes);
        }
        let mut states = Vec::with_capacity(batches.len());
        let mut conflicts = Vec::new();
        let mut recorded_at = self.clock.now().as_micros();
        for (stream, expected, _) in batches {
            let (actual, last_time) = self.stream_state(stream)?;
            if let Err(conflict) = expected.check(stream, actual) {
                conflicts.push(conflict);
            }
            recorded_at = recorded_at.max(last_time);
            states.push(actual);
        }
        if let Some(conflicts) = Conflicts::new(conflicts) {
            return Err(conflicts.into());
        }
        batches
            .iter()
            .zip(states)
            .map(|((stream, _, events), actual)| self.insert(stream, actual, events, recorded_at))
            .collect()
    }

    /// Inserts `events` after version `actual` of `stream`, stamped `recorded_at`.
    fn insert(
        &self,
        stream: &StreamId,
        actual: Option<Version>,
        events: &[PreparedEvent],
        recorded_at: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let mut insert = self
            .connection
            .prepare_cached(INSERT_EVENT)
            .map_err(|error| self.sql_error(error))?;
        let mut version = actual.unwrap_or(Version::INITIAL);
        for event in events {
            version = version.next();
            insert
                .execute(params![
                    stream.aggregate_type(),
                    stream.aggregate_id(),
                    to_sql_integer(version.get(), "version")?,
                    event.event_id.as_bytes().as_slice(),
                    event.event_type.as_str(),
                    event.schema_version,
                    event.codec.as_u8(),
                    event.payload,
                    event.metadata,
                    recorded_at,
                ])
                .map_err(|error| self.sql_error(error))?;
        }
        Ok(AppendOutcome {
            version,
            position: GlobalPosition(self.connection.last_insert_rowid() as u64),
        })
    }

    fn save_snapshot(&self, snapshot: &Snapshot, replace: bool) -> Result<(), StoreError> {
        let version = to_sql_integer(snapshot.version.get(), "snapshot version")?;
        self.connection
            .prepare_cached(if replace {
                REPLACE_SNAPSHOT
            } else {
                UPSERT_SNAPSHOT
            })
            .and_then(|mut statement| {
                statement.execute(params![
                    snapshot.stream.aggregate_type(),
                    snapshot.stream.aggregate_id(),
                    version,
                    bits_to_sql(snapshot.fingerprint),
                    snapshot.codec.as_u8(),
                    snapshot.state,
                    snapshot.taken_at.as_micros(),
                ])
            })
            .map(drop)
            .map_err(|error| self.sql_error(error))
    }

    fn save_projection(
        &self,
        saved: &SavedProjection,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        if let Some(fence) = fence {
            check_fence_sqlite(&self.connection, fence)?;
        }
        let position = to_sql_integer(saved.position.get(), "projection position")?;
        self.connection
            .prepare_cached(UPSERT_PROJECTION)
            .and_then(|mut statement| {
                statement.execute(params![
                    saved.name,
                    position,
                    saved.codec.as_u8(),
                    saved.state,
                    saved.saved_at.as_micros(),
                ])
            })
            .map(drop)
            .map_err(|error| self.sql_error(error))
    }
}

impl Writer {
    fn change_lease(&self, change: LeaseChange) -> Result<Option<Lease>, StoreError> {
        let now = self.clock.now();
        let location = &*self.location;
        match change {
            LeaseChange::Acquire {
                name,
                holder,
                ttl_micros,
            } => lease::acquire(&self.connection, &name, &holder, now, ttl_micros, location),
            LeaseChange::Renew { lease, ttl_micros } => {
                lease::renew(&self.connection, &lease, now, ttl_micros, location)
            }
            LeaseChange::Release { lease } => {
                Ok(lease::release(&self.connection, &lease, location)?.then_some(lease))
            }
        }
    }
}

/// SQLite calling a file whose header carries our application id "not a database" means the
/// store is damaged (truncated, overwritten), not that it belongs to someone else.
fn damaged_if_ours(error: StoreError, owner: Owner, location: &str) -> StoreError {
    match error {
        StoreError::NotAStore { reason, .. } if owner == Owner::Us => StoreError::Corrupt {
            location: location.to_owned(),
            reason,
        },
        other => other,
    }
}
