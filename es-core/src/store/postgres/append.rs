//! The append transaction: one network round trip that locks the stream, checks the expected
//! version, inserts the whole batch and commits.

use std::time::Duration;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::errors::{is_write_conflict, pool_error, query_error};
use super::rows::{check_text, to_bigint, Batch};
use super::schema::lock_key;
use super::Shared;
use crate::event::NewEvent;
use crate::store::{AppendOutcome, Conflict, ExpectedVersion, StoreError};
use crate::types::{GlobalPosition, StreamId, Version};

/// How an append's transaction ends. Test support for the gap-safety and connection-loss
/// tests; not public API, and it may change in any release.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendEnding {
    /// Commit in the same round trip as the insert: what [`EventStore::append`] does.
    ///
    /// [`EventStore::append`]: crate::store::EventStore::append
    Commit,
    /// Keep the transaction open this long after the insert, then commit.
    CommitAfter(Duration),
    /// Keep the transaction open this long after the insert, then roll it back. Returns the
    /// outcome the batch would have had; none of it is stored.
    RollBackAfter(Duration),
}

/// A pooled connection that goes back to the pool only when [`Checkout::release`] says the
/// session is clean (outside any transaction). Dropped any other way (an error, or the
/// append's future dropped by its caller mid-transaction), the connection is closed instead,
/// so the server rolls the open transaction back and frees its locks; no later user of the
/// pool inherits either.
struct Checkout {
    client: Option<Object>,
}

impl Checkout {
    fn client(&self) -> &Object {
        self.client
            .as_ref()
            .expect("a checkout holds its client until it is released or dropped")
    }

    /// Returns the connection to the pool.
    fn release(mut self) {
        drop(self.client.take());
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Detached from the pool, the wrapper aborts its connection task when dropped,
            // which closes the socket.
            drop(Object::take(client));
        }
    }
}

/// The expectation as the insert statement's `$3` (kind) and `$4` (exact version).
fn expectation(expected: ExpectedVersion) -> (i16, i64) {
    match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(version) => (3, to_bigint(version.get())),
    }
}

/// One append's values, bound to the statements of the pipeline.
struct Request<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    /// The expectation kind (`$3` of the insert).
    kind: i16,
    /// The exact expected version (`$4` of the insert).
    exact: i64,
    recorded_at: i64,
    stream_key: i64,
    batch: Batch,
}

/// What the pipeline answered.
struct Replies {
    /// `global_position, version` of each inserted row; none on a version mismatch.
    rows: Vec<Row>,
    /// The stream's last version after the insert (before it, when nothing was inserted).
    current: Option<Version>,
}

impl Request<'_> {
    /// Sends the whole transaction up to (and, if `commit_now`, including) `COMMIT` as one
    /// pipeline: every request goes out before any reply is awaited (tokio-postgres sends a
    /// request when its future is first polled, and `join!` first polls in order), and the
    /// server runs them one after the other.
    async fn run(
        &self,
        client: &Object,
        store: &Shared,
        commit_now: bool,
    ) -> Result<Replies, tokio_postgres::Error> {
        let sql = &store.sql;
        let (lock_stream, mark_in_flight, insert, stream_version) = tokio::try_join!(
            client.prepare_cached(&sql.lock_stream),
            client.prepare_cached(&sql.mark_in_flight),
            client.prepare_cached(&sql.append),
            client.prepare_cached(&sql.stream_version),
        )?;
        let batch = &self.batch;
        let insert_params: [&(dyn ToSql + Sync); 11] = [
            &self.aggregate_type,
            &self.aggregate_id,
            &self.kind,
            &self.exact,
            &self.recorded_at,
            &batch.event_ids,
            &batch.event_types,
            &batch.schema_versions,
            &batch.codecs,
            &batch.payloads,
            &batch.metadata,
        ];
        let stream_params: [&(dyn ToSql + Sync); 2] = [&self.aggregate_type, &self.aggregate_id];
        let stream_key: [&(dyn ToSql + Sync); 1] = [&self.stream_key];
        let in_flight_tag: [&(dyn ToSql + Sync); 1] = [&store.in_flight_tag];
        let (begun, stream_locked, marked, inserted, current, notified, committed) = tokio::join!(
            // READ COMMITTED whatever the server's default, so the insert (a statement
            // started after the stream lock is held) sees the commit it waited for.
            client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
            client.execute(&lock_stream, &stream_key),
            client.execute(&mark_in_flight, &in_flight_tag),
            client.query(&insert, &insert_params),
            client.query_one(&stream_version, &stream_params),
            // Wakes the subscriptions when (and only if) the transaction commits.
            client.batch_execute(&sql.notify),
            async {
                if commit_now {
                    client.batch_execute("COMMIT").await
                } else {
                    Ok(())
                }
            },
        );
        // The first failure in pipeline order is the cause; later ones only report the
        // aborted transaction.
        begun?;
        stream_locked?;
        marked?;
        let rows = inserted?;
        let current: Option<i64> = current?.try_get(0)?;
        notified?;
        committed?;
        Ok(Replies {
            rows,
            current: current.map(|version| Version(version.max(0) as u64)),
        })
    }
}

/// The outcome of a batch of `count` events from the rows the insert returned.
fn outcome(rows: &[Row], count: usize) -> Result<AppendOutcome, StoreError> {
    if rows.len() != count {
        return Err(StoreError::backend(InsertCount {
            expected: count,
            inserted: rows.len(),
        }));
    }
    let mut last = (Version::INITIAL, GlobalPosition::START);
    for row in rows {
        let position: i64 = row.try_get(0).map_err(query_error)?;
        let version: i64 = row.try_get(1).map_err(query_error)?;
        last = last.max((Version(version as u64), GlobalPosition(position as u64)));
    }
    Ok(AppendOutcome {
        version: last.0,
        position: last.1,
    })
}

/// Appends `events` to `stream`; see the module docs of `postgres` for the protocol.
pub(super) async fn append(
    store: &Shared,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    ending: AppendEnding,
) -> Result<AppendOutcome, StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    check_text("aggregate type", stream.aggregate_type())?;
    check_text("aggregate id", stream.aggregate_id())?;
    let count = events.len();
    let (kind, exact) = expectation(expected);
    let request = Request {
        aggregate_type: stream.aggregate_type(),
        aggregate_id: stream.aggregate_id(),
        kind,
        exact,
        recorded_at: store.clock.now().as_micros(),
        stream_key: lock_key(&[
            "stream",
            store.schema.as_str(),
            stream.aggregate_type(),
            stream.aggregate_id(),
        ]),
        batch: Batch::new(events)?,
    };

    let checkout = Checkout {
        client: Some(store.pool.get().await.map_err(pool_error)?),
    };
    let client = checkout.client();
    let commit_now = ending == AppendEnding::Commit;
    let replies = match request.run(client, store, commit_now).await {
        Ok(replies) => replies,
        Err(error) if is_write_conflict(&error) => {
            drop(checkout);
            let actual = store.stream_version(stream).await?;
            return Err(conflict(stream, expected, actual));
        }
        Err(error) => return Err(query_error(error)),
    };

    if replies.rows.is_empty() {
        // The version check failed: nothing was inserted.
        if !commit_now {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(query_error)?;
        }
        checkout.release();
        return Err(conflict(stream, expected, replies.current));
    }
    let outcome = outcome(&replies.rows, count)?;

    let finish = match ending {
        AppendEnding::Commit => None,
        AppendEnding::CommitAfter(delay) => Some((delay, "COMMIT")),
        AppendEnding::RollBackAfter(delay) => Some((delay, "ROLLBACK")),
    };
    if let Some((delay, command)) = finish {
        tokio::time::sleep(delay).await;
        match client.batch_execute(command).await {
            Ok(()) => {}
            Err(error) if is_write_conflict(&error) => {
                drop(checkout);
                let actual = store.stream_version(stream).await?;
                return Err(conflict(stream, expected, actual));
            }
            Err(error) => return Err(query_error(error)),
        }
    }
    checkout.release();
    Ok(outcome)
}

fn conflict(stream: &StreamId, expected: ExpectedVersion, actual: Option<Version>) -> StoreError {
    StoreError::Conflict(Conflict {
        stream: stream.clone(),
        expected,
        actual,
    })
}

/// The insert wrote a different number of rows than the batch holds (never expected: the
/// statement inserts all rows or, on a version mismatch, none).
#[derive(Debug, thiserror::Error)]
#[error("the insert of a {expected}-event batch wrote {inserted} rows")]
struct InsertCount {
    expected: usize,
    inserted: usize,
}
