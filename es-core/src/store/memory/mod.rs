//! The in-memory store: every guarantee of the durable stores except durability.

mod ids;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::event::{NewEvent, RecordedEvent};
use crate::lease::{check_acquire, check_token, lease_micros, Fence, Lease, LeaseRow, LeaseStore};
use crate::snapshot::{ProjectionStore, SavedProjection, Snapshot, SnapshotStore};
use crate::store::{
    check_batch_ids, check_stream_batches, match_stored_batch, match_stored_batches, record_append,
    record_appends, record_read, visit_each, AppendOutcome, Conflicts, EventStore, ExpectedVersion,
    StoreError, StoredId, StreamBatch, VersionRange,
};
use crate::subscription::{
    EventFilter, LogPage, PageFuture, PageSource, Subscribe, Subscription, SubscriptionStats,
    Wakeups, SCAN_WINDOW,
};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

/// An event store, snapshot store and projection store held in memory.
///
/// It enforces the whole [`EventStore`] contract (atomic appends, version checks, contiguous
/// versions, gap-free global order) under one lock, so tests written against it hold against
/// the durable stores. Reading the log (`read_all`, subscriptions, read models catching up)
/// takes no lock: it never waits for an append, nor an append for it. Clones share the same
/// data. Every append wakes the store's [subscriptions](Subscribe).
#[derive(Clone)]
pub struct InMemory {
    inner: Arc<Mutex<Inner>>,
    /// The global log, also held by `inner`: written under its lock, read without it.
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Wakeups>,
    /// Snapshots found unusable by any repository over this store.
    snapshot_fallbacks: Arc<AtomicU64>,
    /// Where table read models over this store write: a private in-memory SQLite database.
    #[cfg(feature = "sqlite")]
    tables: crate::projection::table::TableDatabase,
}

/// The hasher of the two maps every append and load goes through: seeded per map, much cheaper
/// than `SipHash` on short keys.
type FastHash = foldhash::fast::RandomState;

/// The global log: the event at index `i` has position `i + 1`.
///
/// Appends write it under the store's lock, one at a time; readers read it without the lock.
/// An event, once written, never moves (`boxcar` grows the log in new buckets, never by copying),
/// and `published` says how many events readers may see: it is raised after the last event of
/// an append, so a reader never sees part of one.
#[derive(Default)]
struct Log {
    events: boxcar::Vec<RecordedEvent>,
    published: AtomicUsize,
}

impl Log {
    /// The events readers may see.
    fn len(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// The event at `index`: one written already.
    fn get(&self, index: usize) -> &RecordedEvent {
        &self.events[index]
    }

    /// The published events after `after`, at most `limit` of them.
    fn page(&self, after: GlobalPosition, limit: usize) -> impl Iterator<Item = &RecordedEvent> {
        let head = self.len();
        let start = usize::try_from(after.0).unwrap_or(usize::MAX).min(head);
        (start..start.saturating_add(limit).min(head)).map(|index| self.get(index))
    }
}

#[derive(Default)]
struct Inner {
    log: Arc<Log>,
    /// The events written to `log`: `log.len()` once the append under way is published.
    written: usize,
    /// For each stream, the log indexes of its events in version order.
    streams: HashMap<StreamId, Vec<usize>, FastHash>,
    /// The log index of every event, by id: ids are unique in the store.
    ids: ids::IdIndex,
    snapshots: HashMap<StreamId, Snapshot>,
    projections: HashMap<String, SavedProjection>,
    leases: HashMap<String, LeaseRow>,
}

impl Default for InMemory {
    fn default() -> Self {
        InMemory::new()
    }
}

impl std::fmt::Debug for InMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let events = self.log.len();
        f.debug_struct("InMemory")
            .field("events", &events)
            .finish_non_exhaustive()
    }
}

impl InMemory {
    /// An empty store stamping events with the system clock.
    #[must_use]
    pub fn new() -> Self {
        InMemory::with_clock(SystemClock)
    }

    /// An empty store stamping events with `clock`.
    #[must_use]
    pub fn with_clock(clock: impl Clock) -> Self {
        let inner = Inner::default();
        InMemory {
            log: Arc::clone(&inner.log),
            inner: Arc::new(Mutex::new(inner)),
            clock: Arc::new(clock),
            wakeups: Arc::default(),
            snapshot_fallbacks: Arc::default(),
            #[cfg(feature = "sqlite")]
            tables: crate::projection::table::TableDatabase::in_memory(),
        }
    }

    /// Does nothing: there is nothing to finish or release. It exists so that code closing
    /// whichever store it was given compiles the same for every store (all `close` methods
    /// are `async fn close(&self)`); the data stays readable.
    #[allow(clippy::unused_async)]
    pub async fn close(&self) {}

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied append: appends validate
        // everything before they push, and nothing between the first push and the publication
        // can fail, so the data is consistent and the poison is cleared.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// Where each of `ids` that is stored sits.
    fn stored_ids<'a>(&self, ids: impl IntoIterator<Item = &'a Uuid>) -> Vec<StoredId> {
        ids.into_iter()
            .filter_map(|id| self.ids.get(id))
            .map(|index| {
                let event = self.log.get(index);
                StoredId {
                    event_id: event.event_id,
                    stream: event.stream.clone(),
                    version: event.version,
                    position: event.global_position,
                }
            })
            .collect()
    }

    /// The last version of `stream` and the time of its last event, in one lookup (`None` and
    /// [`Timestamp::EPOCH`]: no events).
    fn head(&self, stream: &StreamId) -> (Option<Version>, Timestamp) {
        head_of(&self.log, self.streams.get(stream))
    }

    /// Writes `events` (checked already) to `stream`, which is at `current`, stamped `now`;
    /// readers see them once the append is [published](Inner::publish).
    fn push(
        &mut self,
        stream: &StreamId,
        current: Option<Version>,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> AppendOutcome {
        let stored = self.streams.get_mut(stream);
        let mut writer = Writer {
            log: &self.log,
            written: &mut self.written,
            ids: &mut self.ids,
        };
        match stored {
            Some(stored) => writer.write(stream, stored, current, events, now),
            None => writer.write_new(&mut self.streams, stream, events, now),
        }
    }

    /// Lets readers see every event written so far.
    fn publish(&self) {
        self.log.published.store(self.written, Ordering::Release);
    }
}

/// The last version of a stream whose log indexes are `stored`, and the time of its last
/// event (`None` and [`Timestamp::EPOCH`]: no events).
fn head_of(log: &Log, stored: Option<&Vec<usize>>) -> (Option<Version>, Timestamp) {
    match stored {
        Some(indexes) => (
            Some(Version(indexes.len() as u64)),
            indexes
                .last()
                .map_or(Timestamp::EPOCH, |&i| log.get(i).recorded_at),
        ),
        None => (None, Timestamp::EPOCH),
    }
}

/// The parts of [`Inner`] that writing events changes but for the stream index, borrowed
/// apart from it so an append looks its stream up once.
struct Writer<'a> {
    log: &'a Log,
    written: &'a mut usize,
    ids: &'a mut ids::IdIndex,
}

impl Writer<'_> {
    /// Writes `events` to the end of the log as the next events of `stream`, whose log
    /// indexes are `stored` and which is at `current`, stamped `now`.
    ///
    /// Each event becomes its record right here, moved field by field into the log: an append
    /// allocates nothing for its records (the log's own storage aside).
    fn write(
        &mut self,
        stream: &StreamId,
        stored: &mut Vec<usize>,
        current: Option<Version>,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> AppendOutcome {
        let mut version = current.unwrap_or(Version::INITIAL);
        for event in events {
            version = version.next();
            let index = *self.written;
            let event_id = event.event_id;
            let written = self.log.events.push(RecordedEvent {
                event_id,
                stream: stream.clone(),
                version,
                global_position: GlobalPosition(index as u64 + 1),
                recorded_at: now,
                event_type: event.event_type,
                schema_version: event.schema_version,
                codec: event.codec,
                metadata: event.metadata.into(),
                payload: event.payload.into(),
            });
            // Only the lock's holder writes the log, so it is written densely in order.
            debug_assert_eq!(written, index);
            *self.written += 1;
            self.ids.insert(event_id, index);
            stored.push(index);
        }
        AppendOutcome {
            version,
            position: GlobalPosition(*self.written as u64),
        }
    }

    /// Writes `events` as the first events of `stream`, which `streams` does not hold yet.
    fn write_new(
        &mut self,
        streams: &mut HashMap<StreamId, Vec<usize>, FastHash>,
        stream: &StreamId,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> AppendOutcome {
        // Room for a typical aggregate's life without growing.
        let mut stored = Vec::with_capacity(events.len().max(8));
        let outcome = self.write(stream, &mut stored, None, events, now);
        streams.insert(stream.clone(), stored);
        outcome
    }
}

impl EventStore for InMemory {
    #[tracing::instrument(level = "debug", name = "append", skip_all, fields(
        store = "memory", stream = %stream, expected = %expected, events = events.len(),
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
        check_batch_ids(stream, &events)?;
        // Read before the lock, which is held for the write alone (the lock's holder is what
        // every other appender waits for).
        let clock = self.clock.now();
        let mut inner = self.lock();
        // Only a batch with a stored id (a retried append, or a clash) needs the full check.
        if events
            .iter()
            .any(|event| inner.ids.contains(&event.event_id))
        {
            let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
            if let Some(outcome) = match_stored_batch(stream, &ids, &inner.stored_ids(&ids))? {
                let outcome = Ok(outcome);
                record_append(&outcome);
                return outcome;
            }
        }
        // The stream is looked up once, for its head and for the write.
        let Inner {
            log,
            written,
            streams,
            ids,
            ..
        } = &mut *inner;
        let stored = streams.get_mut(stream);
        let (current, last_time) = head_of(log, stored.as_deref());
        expected.check(stream, current)?;
        // Never stamp an event earlier than its stream's last one (the clock may step back,
        // or another append read it later and locked first), so a stream's times run with its
        // versions and `read_stream_until` never returns a stream with a hole.
        let now = clock.max(last_time);
        let mut writer = Writer { log, written, ids };
        let outcome = match stored {
            Some(stored) => writer.write(stream, stored, current, events, now),
            None => writer.write_new(streams, stream, events, now),
        };
        inner.publish();
        drop(inner);
        self.wakeups.wake();
        let outcome = Ok(outcome);
        record_append(&outcome);
        outcome
    }

    #[tracing::instrument(level = "debug", name = "append_streams", skip_all, fields(
        store = "memory", streams = batches.len(),
        events = batches.iter().map(|batch| batch.events.len()).sum::<usize>(),
        position = tracing::field::Empty,
    ))]
    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        check_stream_batches(&batches)?;
        let clock = self.clock.now();
        let ids: Vec<(&StreamId, Vec<Uuid>)> = batches
            .iter()
            .map(|batch| {
                (
                    &batch.stream,
                    batch.events.iter().map(|event| event.event_id).collect(),
                )
            })
            .collect();
        let mut inner = self.lock();
        let stored = inner.stored_ids(ids.iter().flat_map(|(_, ids)| ids));
        if let Some(outcomes) = match_stored_batches(&ids, &stored)? {
            let outcomes = Ok(outcomes);
            record_appends(&outcomes);
            return outcomes;
        }
        drop(ids);
        // Every stream is checked before anything is pushed, under the one lock: all or none.
        let heads: Vec<(Option<Version>, Timestamp)> = batches
            .iter()
            .map(|batch| inner.head(&batch.stream))
            .collect();
        let conflicts = batches
            .iter()
            .zip(&heads)
            .filter_map(|(batch, &(current, _))| batch.expected.check(&batch.stream, current).err())
            .collect();
        if let Some(conflicts) = Conflicts::new(conflicts) {
            return Err(conflicts.into());
        }
        let now = heads
            .iter()
            .map(|&(_, last_time)| last_time)
            .fold(clock, Timestamp::max);
        let outcomes = batches
            .into_iter()
            .zip(heads)
            .map(|(batch, (current, _))| inner.push(&batch.stream, current, batch.events, now))
            .collect();
        inner.publish();
        drop(inner);
        self.wakeups.wake();
        let outcomes = Ok(outcomes);
        record_appends(&outcomes);
        outcomes
    }

    #[tracing::instrument(level = "debug", name = "read_stream", skip_all, fields(
        store = "memory", stream = %stream, from = range.from.get(), to = range.to.get(),
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.lock();
        let Some(indexes) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(range.from.0.max(1) - 1).unwrap_or(usize::MAX);
        let to = usize::try_from(range.to.0)
            .unwrap_or(usize::MAX)
            .min(indexes.len());
        let events = Ok(indexes
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|&i| inner.log.get(i).clone())
            .collect());
        record_read(&events);
        events
    }

    #[tracing::instrument(level = "debug", name = "read_stream_until", skip_all, fields(
        store = "memory", stream = %stream, until = %until,
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.lock();
        // Only the events returned are copied (a stream's times never decrease, but the
        // filter does not rely on it).
        let events = Ok(inner
            .streams
            .get(stream)
            .map(|indexes| {
                indexes
                    .iter()
                    .map(|&i| inner.log.get(i))
                    .filter(|event| event.recorded_at <= until)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default());
        record_read(&events);
        events
    }

    #[tracing::instrument(level = "debug", name = "read_all", skip_all, fields(
        store = "memory", after = after.get(), limit,
        events = tracing::field::Empty, last = tracing::field::Empty,
    ))]
    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = Ok(self.log.page(after, limit).cloned().collect());
        record_read(&events);
        events
    }

    async fn read_all_into(
        &self,
        after: GlobalPosition,
        limit: usize,
        into: &mut Vec<RecordedEvent>,
    ) -> Result<(), StoreError> {
        into.extend(self.log.page(after, limit).cloned());
        Ok(())
    }

    /// Lends the events from the log itself.
    fn lend_all<B>(
        &self,
        after: GlobalPosition,
        limit: usize,
        visit: &mut dyn FnMut(&RecordedEvent) -> ControlFlow<B>,
    ) -> Option<ControlFlow<B, usize>> {
        Some(visit_each(self.log.page(after, limit), visit))
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        Ok(GlobalPosition(self.log.len() as u64))
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

impl PageSource for InMemory {
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a> {
        let head = self.log.len();
        let start = usize::try_from(after.0).unwrap_or(usize::MAX).min(head);
        // A bounded scan, so a filter matching little returns to its caller in good time.
        let end = usize::try_from(SCAN_WINDOW)
            .map_or(head, |window| start.saturating_add(window).min(head));
        let mut events = Vec::new();
        let mut scanned = start;
        for event in (start..end).map(|index| self.log.get(index)) {
            if events.len() == limit.max(1) {
                break;
            }
            scanned += 1;
            if filter.matches(event) {
                events.push(event.clone());
            }
        }
        let page = LogPage {
            events,
            scanned_to: GlobalPosition(scanned as u64).max(after),
            at_head: scanned == head,
        };
        Box::pin(std::future::ready(Ok(page)))
    }
}

impl Subscribe for InMemory {
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        Subscription::new(
            Arc::new(self.clone()),
            Arc::clone(&self.wakeups),
            after,
            filter,
        )
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        self.wakeups.stats()
    }
}

impl SnapshotStore for InMemory {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let newer_exists = inner
            .snapshots
            .get(&snapshot.stream)
            .is_some_and(|existing| existing.version > snapshot.version);
        if !newer_exists {
            inner.snapshots.insert(snapshot.stream.clone(), snapshot);
        }
        Ok(())
    }

    async fn replace_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.lock()
            .snapshots
            .insert(snapshot.stream.clone(), snapshot);
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    fn record_snapshot_fallback(&self, _stream: &StreamId) {
        self.snapshot_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot_fallbacks(&self) -> u64 {
        self.snapshot_fallbacks.load(Ordering::Relaxed)
    }
}

impl ProjectionStore for InMemory {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        self.lock().projections.insert(saved.name.clone(), saved);
        Ok(())
    }

    async fn save_projection_fenced(
        &self,
        saved: SavedProjection,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        check_token(fence, inner.leases.get(&fence.lease).map(|row| row.token))?;
        inner.projections.insert(saved.name.clone(), saved);
        Ok(())
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        Ok(self.lock().projections.get(name).cloned())
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

#[cfg(feature = "sqlite")]
impl crate::projection::table::TableStore for InMemory {
    /// A private in-memory SQLite database, shared by the store's clones and gone with them.
    fn table_database(&self) -> crate::projection::table::TableDatabase {
        self.tables.clone()
    }
}

/// Leases in memory, timed by the store's clock: for several workers in one process.
impl LeaseStore for InMemory {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let ttl_micros = check_acquire(name, holder, ttl)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some((row, lease)) =
            LeaseRow::acquire(inner.leases.get_mut(name), name, holder, now, ttl_micros)
        else {
            return Ok(None);
        };
        inner.leases.insert(name.to_owned(), row);
        Ok(Some(lease))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let ttl_micros = lease_micros(ttl)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        match inner.leases.get_mut(&lease.name) {
            Some(row) if row.is_granted_to(lease) => {
                row.expires_at = now.saturating_add_micros(ttl_micros);
                Ok(Some(row.to_lease(&lease.name)))
            }
            _ => Ok(None),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.leases.get_mut(&lease.name) {
            Some(row) if row.is_granted_to(lease) => {
                row.holder.clear();
                row.expires_at = Timestamp::from_micros(i64::MIN);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn load_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        Ok(self
            .lock()
            .leases
            .get(name)
            .filter(|row| !row.holder.is_empty())
            .map(|row| row.to_lease(name)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::codec::CodecId;
    use crate::event::Metadata;

    const BATCH: usize = 3;
    const APPENDS: u64 = 4_000;

    /// The events of append `append`: `BATCH` of them per stream it writes, each carrying the
    /// append's number.
    fn batch(append: u64) -> Vec<NewEvent> {
        (0..BATCH)
            .map(|_| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "Appended".into(),
                schema_version: 1,
                codec: CodecId::Json,
                payload: append.to_le_bytes().to_vec(),
                metadata: Metadata::default(),
            })
            .collect()
    }

    /// How many events append `append` writes: odd ones write two streams at once.
    fn size(append: u64) -> usize {
        if append % 2 == 0 {
            BATCH
        } else {
            2 * BATCH
        }
    }

    /// Asserts that `events`, read from the start of the log, hold whole appends, in order.
    fn assert_whole_appends(events: &[RecordedEvent]) {
        let mut at = 0;
        let mut append = 0;
        while at < events.len() {
            let group = &events[at..(at + size(append)).min(events.len())];
            assert_eq!(group.len(), size(append), "append {append} is seen in part");
            for (offset, event) in group.iter().enumerate() {
                assert_eq!(event.payload[..], append.to_le_bytes(), "append {append}");
                assert_eq!(
                    event.global_position,
                    GlobalPosition((at + offset) as u64 + 1)
                );
            }
            at += group.len();
            append += 1;
        }
    }

    /// Runs `future` to its end on this thread.
    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    /// The log is read without the store's lock: readers on their own threads, beside a writer,
    /// never see part of an append (of one stream, or of several at once), nor a gap.
    #[test]
    fn readers_beside_a_writer_see_whole_appends_only() {
        let store = InMemory::new();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                run(async {
                    for append in 0..APPENDS {
                        let stream = StreamId::new("log", format!("s{}", append % 5));
                        if append % 2 == 0 {
                            store
                                .append(&stream, ExpectedVersion::Any, batch(append))
                                .await
                                .expect("an append with Any succeeds");
                        } else {
                            let other = StreamId::new("log", format!("t{}", append % 3));
                            let batches = vec![
                                StreamBatch::new(stream, ExpectedVersion::Any, batch(append)),
                                StreamBatch::new(other, ExpectedVersion::Any, batch(append)),
                            ];
                            store
                                .append_streams(batches)
                                .await
                                .expect("appends succeed");
                        }
                    }
                });
                done.store(true, Ordering::SeqCst);
            });
            let readers = [
                scope.spawn(|| {
                    run(async {
                        let mut reads = 0;
                        let mut page = Vec::new();
                        while !done.load(Ordering::SeqCst) {
                            page.clear();
                            let head = store.last_position().await.expect("in memory");
                            store
                                .read_all_into(GlobalPosition::START, usize::MAX, &mut page)
                                .await
                                .expect("in memory");
                            assert!(page.len() as u64 >= head.0, "the log went back");
                            assert_whole_appends(&page);
                            reads += 1;
                        }
                        reads
                    })
                }),
                scope.spawn(|| {
                    run(async {
                        let mut reads = 0;
                        let filter = EventFilter::all();
                        while !done.load(Ordering::SeqCst) {
                            let mut events = Vec::new();
                            let mut after = GlobalPosition::START;
                            loop {
                                let page = store
                                    .read_page(after, &filter, 64)
                                    .await
                                    .expect("in memory");
                                events.extend(page.events);
                                after = page.scanned_to;
                                if page.at_head {
                                    break;
                                }
                            }
                            assert_whole_appends(&events);
                            reads += 1;
                        }
                        reads
                    })
                }),
            ];
            for reader in readers {
                let reads = reader.join().expect("the reader passes");
                assert!(reads > 0, "the reader ran");
            }
        });
        let events = run(store.read_all(GlobalPosition::START, usize::MAX)).expect("in memory");
        let total: usize = (0..APPENDS).map(size).sum();
        assert_eq!(events.len(), total);
        assert_whole_appends(&events);
    }
}
