//! The append transaction: one network round trip that locks the stream, checks the expected
//! version, inserts the whole batch and commits.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Object;

use super::checkout::Checkout;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::errors::{is_event_id_taken, is_write_conflict, query_error};
use super::rows::{check_text, to_bigint, Batch};
use super::schema::{lock_key, INDEX_SCANS_ONLY};
use super::Shared;
use crate::event::NewEvent;
use crate::store::{
    check_batch_ids, check_stream_batches, match_stored_batch, match_stored_batches, AppendOutcome,
    Conflict, Conflicts, ExpectedVersion, StoreError, StreamBatch,
};
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
        let (lock_stream, mark_in_flight, lock_positions, insert, unlock_positions, stream_version) =
            tokio::try_join!(
                client.prepare_cached(&sql.lock_stream),
                client.prepare_cached(&sql.mark_in_flight),
                client.prepare_cached(&sql.lock_positions),
                client.prepare_cached(&sql.append),
                client.prepare_cached(&sql.unlock_positions),
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
        let positions_key: [&(dyn ToSql + Sync); 1] = [&store.positions_key];
        let (
            begun,
            stream_locked,
            marked,
            indexed,
            positions_locked,
            inserted,
            positions_unlocked,
            current,
            notified,
            committed,
        ) = tokio::join!(
            // READ COMMITTED whatever the server's default, so the insert (a statement
            // started after the stream lock is held) sees the commit it waited for.
            client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
            client.execute(&lock_stream, &stream_key),
            client.execute(&mark_in_flight, &in_flight_tag),
            // The insert's event id check on the index, however the table has grown.
            client.batch_execute(INDEX_SCANS_ONLY),
            client.execute(&lock_positions, &positions_key),
            client.query(&insert, &insert_params),
            client.execute(&unlock_positions, &positions_key),
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
        indexed?;
        positions_locked?;
        let rows = inserted?;
        positions_unlocked?;
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
    store.check_writable()?;
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    check_batch_ids(stream, &events)?;
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

    let checkout = Checkout::get(store).await?;
    let client = checkout.client();
    let commit_now = ending == AppendEnding::Commit;
    // Past the bound, the checkout is dropped, which closes the connection: whether the
    // commit happened is unknown, as for any lost connection.
    let replies = match checkout
        .bounded_raw(Box::pin(request.run(client, store, commit_now)))
        .await?
    {
        Ok(replies) => replies,
        Err(error) if is_event_id_taken(&error) => {
            // A concurrent append to another stream stored one of the ids first (appends to
            // one stream queue on its lock, and see each other's ids before inserting).
            drop(checkout);
            return stored_batch(store, stream, &request.batch)
                .await?
                .ok_or_else(|| query_error(error));
        }
        Err(error) if is_write_conflict(&error) => {
            drop(checkout);
            let actual = store.stream_version(stream).await?;
            return Err(conflict(stream, expected, actual));
        }
        Err(error) => return Err(query_error(error)),
    };

    if replies.rows.is_empty() {
        // Some ids are stored, or the version check failed: nothing was inserted.
        if !commit_now {
            checkout.bounded(client.batch_execute("ROLLBACK")).await?;
        }
        checkout.release();
        // Stored ids never go away, so looking them up after the transaction still answers
        // what the insert saw (or, if the same batch committed since, its outcome).
        return match stored_batch(store, stream, &request.batch).await? {
            Some(outcome) => Ok(outcome),
            None => Err(conflict(stream, expected, replies.current)),
        };
    }
    let outcome = outcome(&replies.rows, count)?;

    let finish = match ending {
        AppendEnding::Commit => None,
        AppendEnding::CommitAfter(delay) => Some((delay, "COMMIT")),
        AppendEnding::RollBackAfter(delay) => Some((delay, "ROLLBACK")),
    };
    if let Some((delay, command)) = finish {
        tokio::time::sleep(delay).await;
        match checkout.bounded_raw(client.batch_execute(command)).await? {
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

/// The outcome of `batch` if it is stored exactly in `stream`, `None` if none of its ids is
/// stored.
///
/// # Errors
/// [`StoreError::DuplicateEventIds`] if only some of them are, or elsewhere.
async fn stored_batch(
    store: &Shared,
    stream: &StreamId,
    batch: &Batch,
) -> Result<Option<AppendOutcome>, StoreError> {
    let rows = store
        .query(&store.sql.find_event_ids, &[&batch.event_ids])
        .await?;
    let stored = rows
        .iter()
        .map(super::rows::stored_id)
        .collect::<Result<Vec<_>, _>>()?;
    match_stored_batch(stream, &batch.event_ids, &stored)
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

/// A multi-stream append's values: one array per column, bound to the pipeline's statements.
struct StreamsRequest {
    /// The stream lock keys, ascending, without repeats: the locking order.
    lock_keys: Vec<i64>,
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    kinds: Vec<i16>,
    exacts: Vec<i64>,
    recorded_at: i64,
    /// Each event's stream, as a 1-based index into the stream arrays.
    event_streams: Vec<i64>,
    /// Each event's place in its stream's batch, from 1.
    places: Vec<i64>,
    batch: Batch,
}

/// What the multi-stream pipeline answered.
struct StreamsReplies {
    /// `global_position, aggregate_type, aggregate_id, version` of each inserted row; none
    /// when a check failed.
    rows: Vec<Row>,
    /// Each stream's last version after the insert (before it, when nothing was inserted).
    currents: Vec<Option<Version>>,
}

impl StreamsRequest {
    fn new(store: &Shared, batches: Vec<StreamBatch>) -> Result<Self, StoreError> {
        let streams = batches.len();
        let events: usize = batches.iter().map(|batch| batch.events.len()).sum();
        let mut request = StreamsRequest {
            lock_keys: Vec::with_capacity(streams),
            aggregate_types: Vec::with_capacity(streams),
            aggregate_ids: Vec::with_capacity(streams),
            kinds: Vec::with_capacity(streams),
            exacts: Vec::with_capacity(streams),
            recorded_at: store.clock.now().as_micros(),
            event_streams: Vec::with_capacity(events),
            places: Vec::with_capacity(events),
            batch: Batch::new(Vec::new())?,
        };
        let mut all_events = Vec::with_capacity(events);
        for (number, batch) in (1_i64..).zip(batches) {
            let stream = &batch.stream;
            check_text("aggregate type", stream.aggregate_type())?;
            check_text("aggregate id", stream.aggregate_id())?;
            request.lock_keys.push(lock_key(&[
                "stream",
                store.schema.as_str(),
                stream.aggregate_type(),
                stream.aggregate_id(),
            ]));
            let (kind, exact) = expectation(batch.expected);
            request.kinds.push(kind);
            request.exacts.push(exact);
            request
                .aggregate_types
                .push(stream.aggregate_type().to_owned());
            request.aggregate_ids.push(stream.aggregate_id().to_owned());
            for place in (1_i64..).take(batch.events.len()) {
                request.event_streams.push(number);
                request.places.push(place);
            }
            all_events.extend(batch.events);
        }
        // One global order for every appender: no two of them hold a key each while waiting
        // for the other's. (Two streams may share a key; locking it once is enough.)
        request.lock_keys.sort_unstable();
        request.lock_keys.dedup();
        request.batch = Batch::new(all_events)?;
        Ok(request)
    }

    /// Sends the whole transaction, `COMMIT` included, as one pipeline (see
    /// [`Request::run`]).
    async fn run(
        &self,
        client: &Object,
        store: &Shared,
    ) -> Result<StreamsReplies, tokio_postgres::Error> {
        let sql = &store.sql;
        let (lock_streams, mark_in_flight, lock_positions, insert, unlock_positions, versions) = tokio::try_join!(
            client.prepare_cached(&sql.lock_streams),
            client.prepare_cached(&sql.mark_in_flight),
            client.prepare_cached(&sql.lock_positions),
            client.prepare_cached(&sql.append_streams),
            client.prepare_cached(&sql.unlock_positions),
            client.prepare_cached(&sql.stream_versions),
        )?;
        let batch = &self.batch;
        let insert_params: [&(dyn ToSql + Sync); 13] = [
            &self.aggregate_types,
            &self.aggregate_ids,
            &self.kinds,
            &self.exacts,
            &self.recorded_at,
            &self.event_streams,
            &self.places,
            &batch.event_ids,
            &batch.event_types,
            &batch.schema_versions,
            &batch.codecs,
            &batch.payloads,
            &batch.metadata,
        ];
        let lock_keys: [&(dyn ToSql + Sync); 1] = [&self.lock_keys];
        let streams: [&(dyn ToSql + Sync); 2] = [&self.aggregate_types, &self.aggregate_ids];
        let in_flight_tag: [&(dyn ToSql + Sync); 1] = [&store.in_flight_tag];
        let positions_key: [&(dyn ToSql + Sync); 1] = [&store.positions_key];
        let (
            begun,
            streams_locked,
            marked,
            indexed,
            positions_locked,
            inserted,
            positions_unlocked,
            currents,
            notified,
            committed,
        ) = tokio::join!(
            client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
            client.execute(&lock_streams, &lock_keys),
            client.execute(&mark_in_flight, &in_flight_tag),
            client.batch_execute(INDEX_SCANS_ONLY),
            client.execute(&lock_positions, &positions_key),
            client.query(&insert, &insert_params),
            client.execute(&unlock_positions, &positions_key),
            client.query(&versions, &streams),
            // Wakes the subscriptions when (and only if) the transaction commits.
            client.batch_execute(&sql.notify),
            client.batch_execute("COMMIT"),
        );
        begun?;
        streams_locked?;
        marked?;
        indexed?;
        positions_locked?;
        let rows = inserted?;
        positions_unlocked?;
        let currents = currents?
            .iter()
            .map(|row| {
                let version: Option<i64> = row.try_get(0)?;
                Ok(version.map(|version| Version(version.max(0) as u64)))
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        notified?;
        committed?;
        Ok(StreamsReplies { rows, currents })
    }
}

/// Appends every batch to its stream, all or none; see the module docs of `postgres`.
pub(super) async fn append_streams(
    store: &Shared,
    batches: Vec<StreamBatch>,
) -> Result<Vec<AppendOutcome>, StoreError> {
    store.check_writable()?;
    check_stream_batches(&batches)?;
    let targets: Vec<(StreamId, ExpectedVersion, usize)> = batches
        .iter()
        .map(|batch| (batch.stream.clone(), batch.expected, batch.events.len()))
        .collect();
    let request = StreamsRequest::new(store, batches)?;

    let checkout = Checkout::get(store).await?;
    let replies = match checkout
        .bounded_raw(Box::pin(request.run(checkout.client(), store)))
        .await?
    {
        Ok(replies) => replies,
        Err(error) if is_event_id_taken(&error) => {
            // A concurrent append stored one of the ids first (see `append`).
            drop(checkout);
            return stored_batches(store, &targets, &request.batch)
                .await?
                .ok_or_else(|| query_error(error));
        }
        Err(error) if is_write_conflict(&error) => {
            // Another writer bypassed the stream locks: report the streams' versions now.
            drop(checkout);
            let mut currents = Vec::with_capacity(targets.len());
            for (stream, _, _) in &targets {
                currents.push(store.stream_version(stream).await?);
            }
            return Err(streams_conflict(&targets, &currents));
        }
        Err(error) => return Err(query_error(error)),
    };
    checkout.release();

    if replies.rows.is_empty() {
        // Some ids are stored, or a version check failed: nothing was inserted.
        if let Some(outcomes) = stored_batches(store, &targets, &request.batch).await? {
            return Ok(outcomes);
        }
        return Err(streams_conflict(&targets, &replies.currents));
    }
    streams_outcomes(&targets, &replies.rows)
}

/// The outcomes of the batches if every one is stored exactly, `None` if none of their ids
/// is stored; `batch` holds the events of every target, in order.
///
/// # Errors
/// [`StoreError::DuplicateEventIds`] for any other overlap.
async fn stored_batches(
    store: &Shared,
    targets: &[(StreamId, ExpectedVersion, usize)],
    batch: &Batch,
) -> Result<Option<Vec<AppendOutcome>>, StoreError> {
    let rows = store
        .query(&store.sql.find_event_ids, &[&batch.event_ids])
        .await?;
    let stored = rows
        .iter()
        .map(super::rows::stored_id)
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids = batch.event_ids.iter().copied();
    let batches: Vec<(&StreamId, Vec<uuid::Uuid>)> = targets
        .iter()
        .map(|(stream, _, count)| (stream, ids.by_ref().take(*count).collect()))
        .collect();
    match_stored_batches(&batches, &stored)
}

/// The conflicts of the streams whose expectations `currents` does not satisfy. If every
/// stream satisfies it by now (a writer that bypassed the stream locks made the insert fail
/// with a unique violation, then its own transaction settled), which stream was written
/// behind the locks is unknown, so every stream is named.
fn streams_conflict(
    targets: &[(StreamId, ExpectedVersion, usize)],
    currents: &[Option<Version>],
) -> StoreError {
    let all: Vec<Conflict> = targets
        .iter()
        .zip(currents.iter().copied().chain(std::iter::repeat(None)))
        .map(|((stream, expected, _), actual)| Conflict {
            stream: stream.clone(),
            expected: *expected,
            actual,
        })
        .collect();
    let failed: Vec<Conflict> = all
        .iter()
        .filter(|conflict| !conflict.expected.is_satisfied_by(conflict.actual))
        .cloned()
        .collect();
    let conflicts = if failed.is_empty() { all } else { failed };
    match Conflicts::new(conflicts) {
        Some(conflicts) => StoreError::Conflicts(conflicts),
        None => StoreError::EmptyAppend,
    }
}

/// Each batch's outcome, in the caller's order, from the rows the insert returned.
fn streams_outcomes(
    targets: &[(StreamId, ExpectedVersion, usize)],
    rows: &[Row],
) -> Result<Vec<AppendOutcome>, StoreError> {
    let expected_rows: usize = targets.iter().map(|(_, _, count)| count).sum();
    if rows.len() != expected_rows {
        return Err(StoreError::backend(InsertCount {
            expected: expected_rows,
            inserted: rows.len(),
        }));
    }
    let index: HashMap<(&str, &str), usize> = targets
        .iter()
        .enumerate()
        .map(|(i, (stream, _, _))| ((stream.aggregate_type(), stream.aggregate_id()), i))
        .collect();
    let mut outcomes = vec![
        AppendOutcome {
            version: Version::INITIAL,
            position: GlobalPosition::START,
        };
        targets.len()
    ];
    for row in rows {
        let position: i64 = row.try_get(0).map_err(query_error)?;
        let aggregate_type: &str = row.try_get(1).map_err(query_error)?;
        let aggregate_id: &str = row.try_get(2).map_err(query_error)?;
        let version: i64 = row.try_get(3).map_err(query_error)?;
        let Some(&i) = index.get(&(aggregate_type, aggregate_id)) else {
            return Err(StoreError::backend(InsertCount {
                expected: expected_rows,
                inserted: rows.len(),
            }));
        };
        let outcome = &mut outcomes[i];
        outcome.version = outcome.version.max(Version(version as u64));
        outcome.position = outcome.position.max(GlobalPosition(position as u64));
    }
    Ok(outcomes)
}
