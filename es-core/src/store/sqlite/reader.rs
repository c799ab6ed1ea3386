//! The reader threads: a few read connections serving queries from one shared queue. In WAL
//! mode they read the last committed state while the writer commits the next one.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::oneshot;

use super::rows::{
    event_from_row, projection_from_row, snapshot_from_row, store_error, to_sql_bound,
    EVENT_COLUMNS, PROJECTION_COLUMNS, SNAPSHOT_COLUMNS,
};
use super::{schema, SqliteOptions};
use crate::event::RecordedEvent;
use crate::snapshot::{SavedProjection, Snapshot, SnapshotAndEvents};
use crate::store::{StoreError, VersionRange};
use crate::subscription::{EventFilter, LogPage, SCAN_WINDOW};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

/// A query to run on a read connection; it answers its caller itself.
pub(super) type Query = Box<dyn FnOnce(&Connection) + Send>;

/// What a reader thread is asked to do.
pub(super) enum Job {
    /// Run a query.
    Query(Query),
    /// Close the connection and stop; answered once it is closed.
    Close(oneshot::Sender<()>),
}

/// Starts one reader thread with its own connection; answers `ready` once the connection is
/// open (or failed to open).
pub(super) fn spawn(
    index: usize,
    path: &Path,
    options: &SqliteOptions,
    location: Arc<str>,
    jobs: Arc<Mutex<Receiver<Job>>>,
    ready: oneshot::Sender<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    let path = path.to_path_buf();
    let busy_timeout = options.busy_timeout;
    let read_only = options.is_read_only();
    std::thread::Builder::new()
        .name(format!("es-sqlite-reader-{index}"))
        .spawn(move || {
            if read_only {
                let connection = schema::open_read_only(&path, busy_timeout, &location);
                return match connection {
                    Ok(connection) => {
                        if ready.send(Ok(())).is_ok() {
                            serve(connection, &jobs);
                        }
                    }
                    Err(error) => drop(ready.send(Err(error))),
                };
            }
            let connection = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|error| store_error(error, &location))
            .and_then(|connection| {
                schema::configure(&connection, busy_timeout, &location)?;
                // Reads only: a bug that tried to write here would fail instead of racing
                // the writer.
                connection
                    .pragma_update(None, "query_only", true)
                    .map_err(|error| store_error(error, &location))?;
                Ok(connection)
            });
            match connection {
                Ok(connection) => {
                    if ready.send(Ok(())).is_ok() {
                        serve(connection, &jobs);
                    }
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            }
        })
        .map(drop)
        .map_err(StoreError::backend)
}

fn serve(connection: Connection, jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(Job::Query(query)) => query(&connection),
            Ok(Job::Close(reply)) => {
                drop(connection);
                let _ = reply.send(());
                return;
            }
            Err(_) => return,
        }
    }
}

fn collect<T>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    location: &str,
) -> Result<Vec<T>, StoreError> {
    let sql_error = |error| store_error(error, location);
    let mut statement = connection.prepare_cached(sql).map_err(sql_error)?;
    let mut rows = statement.query(params).map_err(sql_error)?;
    let mut values = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error)? {
        values.push(decode(row)?);
    }
    Ok(values)
}

/// The events of `stream` in `range`, in version order.
///
/// A read from the first version has no lower bound in SQL, so a row whose version was damaged
/// below 1 is read (and reported as corrupt) rather than skipped; the versions read must then
/// run on without a gap, which catches a row whose version became unreadable.
pub(super) fn read_stream(
    connection: &Connection,
    stream: &StreamId,
    range: VersionRange,
    location: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
         AND version >= ?3 AND version <= ?4 ORDER BY version"
    );
    let first = range.from.max(Version(1));
    let lowest = if first == Version(1) {
        i64::MIN
    } else {
        to_sql_bound(first.get())
    };
    let events = collect(
        connection,
        &sql,
        params![
            stream.aggregate_type(),
            stream.aggregate_id(),
            lowest,
            to_sql_bound(range.to.get()),
        ],
        event_from_row,
        location,
    )?;
    let mut expected = first;
    for event in &events {
        if event.version != expected {
            return Err(StoreError::Corrupt {
                location: format!("stream `{stream}`"),
                reason: format!(
                    "version {expected} is missing (the next event read has version {})",
                    event.version
                ),
            });
        }
        expected = expected.next();
    }
    Ok(events)
}

/// The events of `stream` recorded at or before `until`, in version order.
pub(super) fn read_stream_until(
    connection: &Connection,
    stream: &StreamId,
    until: Timestamp,
    location: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
         AND recorded_at <= ?3 ORDER BY version"
    );
    collect(
        connection,
        &sql,
        params![
            stream.aggregate_type(),
            stream.aggregate_id(),
            until.as_micros()
        ],
        event_from_row,
        location,
    )
}

/// At most `limit` events after `after`, in position order.
pub(super) fn read_all(
    connection: &Connection,
    after: GlobalPosition,
    limit: usize,
    location: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > ?1 \
         ORDER BY global_position LIMIT ?2"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    collect(
        connection,
        &sql,
        params![to_sql_bound(after.get()), limit],
        event_from_row,
        location,
    )
}

/// The position of the last committed event.
pub(super) fn last_position(
    connection: &Connection,
    location: &str,
) -> Result<GlobalPosition, StoreError> {
    let last: Option<i64> = connection
        .prepare_cached("SELECT MAX(global_position) FROM events")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(|error| store_error(error, location))?;
    match last {
        None => Ok(GlobalPosition::START),
        Some(position) if position >= 1 => Ok(GlobalPosition(position as u64)),
        Some(position) => Err(StoreError::Corrupt {
            location: location.to_owned(),
            reason: format!("the last global position is {position}"),
        }),
    }
}

/// The stored snapshot of `stream`, if any.
pub(super) fn load_snapshot(
    connection: &Connection,
    stream: &StreamId,
    location: &str,
) -> Result<Option<Snapshot>, StoreError> {
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE aggregate_type = ?1 AND aggregate_id = ?2"
    );
    collect(
        connection,
        &sql,
        params![stream.aggregate_type(), stream.aggregate_id()],
        snapshot_from_row,
        location,
    )
    .map(|found| found.into_iter().next())
}

/// The snapshot of `stream` and its events from [`SnapshotAndEvents::first_version`] to `to`,
/// in one read transaction, so both come from one state of the file.
pub(super) fn load_snapshot_and_events(
    connection: &Connection,
    stream: &StreamId,
    to: Version,
    location: &str,
) -> Result<SnapshotAndEvents, StoreError> {
    // Dropped (rolled back: it only read) when this returns.
    let read = connection
        .unchecked_transaction()
        .map_err(|error| store_error(error, location))?;
    let snapshot = load_snapshot(&read, stream, location);
    let from =
        SnapshotAndEvents::first_version(snapshot.as_ref().ok().and_then(Option::as_ref), to);
    let events = if from > to {
        Vec::new()
    } else {
        read_stream(&read, stream, VersionRange { from, to }, location)?
    };
    Ok(SnapshotAndEvents::new(snapshot, events))
}

/// The saved state of the projection `name`, if any.
pub(super) fn load_projection(
    connection: &Connection,
    name: &str,
    location: &str,
) -> Result<Option<SavedProjection>, StoreError> {
    let sql = format!("SELECT {PROJECTION_COLUMNS} FROM projections WHERE name = ?1");
    collect(
        connection,
        &sql,
        params![name],
        projection_from_row,
        location,
    )
    .map(|found| found.into_iter().next())
}

/// One page of a filtered read of the log: at most `limit` events after `after` passing
/// `filter`, scanning at most [`SCAN_WINDOW`] positions, and how far it scanned.
///
/// The head is read first; the events are then read up to it. Every position up to the head
/// was committed when it was read (the single writer commits positions in order), so a later
/// statement sees all of them, and `scanned_to` never passes an event still to come.
pub(super) fn read_page(
    connection: &Connection,
    after: GlobalPosition,
    filter: &EventFilter,
    limit: usize,
    location: &str,
) -> Result<LogPage, StoreError> {
    let head = last_position(connection, location)?;
    let upper = if filter.is_all() {
        head
    } else {
        head.min(GlobalPosition(after.get().saturating_add(SCAN_WINDOW)))
    };
    if upper <= after {
        return Ok(LogPage {
            events: Vec::new(),
            scanned_to: after,
            at_head: true,
        });
    }
    let limit = limit.max(1);
    let mut sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > ?1 AND global_position <= ?2"
    );
    let mut values: Vec<Value> = vec![
        Value::Integer(to_sql_bound(after.get())),
        Value::Integer(to_sql_bound(upper.get())),
        Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
    ];
    for (column, listed) in [
        ("aggregate_type", filter.aggregate_types()),
        ("event_type", filter.event_types()),
    ] {
        if listed.is_empty() {
            continue;
        }
        let first = values.len() + 1;
        let placeholders: Vec<String> = (first..first + listed.len())
            .map(|index| format!("?{index}"))
            .collect();
        let _ = write!(sql, " AND {column} IN ({})", placeholders.join(", "));
        values.extend(listed.iter().map(|value| Value::Text(value.clone())));
    }
    sql.push_str(" ORDER BY global_position LIMIT ?3");
    let events = collect(
        connection,
        &sql,
        rusqlite::params_from_iter(values),
        event_from_row,
        location,
    )?;
    let scanned_to = if events.len() == limit {
        events.last().map_or(upper, |event| event.global_position)
    } else {
        upper
    };
    Ok(LogPage {
        events,
        scanned_to,
        at_head: scanned_to >= head,
    })
}
