//! The conformance suite is only worth running if it fails on broken stores. Each test here
//! wraps the in-memory store with one deliberate, realistic bug and checks that the suite
//! rejects it, naming the broken sentence. The wrapper without a bug passes the whole suite.

use std::any::Any;
use std::collections::HashMap;
use std::future::{ready, Future, Ready};
use std::sync::{Arc, Mutex};

use es_core::subscription::{PageFuture, PageSource, Wakeups};
use es_core::testing::conformance;
use es_core::EventFilter;
use es_core::{
    AppendOutcome, Conflicts, EventStore, ExpectedVersion, GlobalPosition, InMemory, ManualClock,
    NewEvent, ProjectionStore, RecordedEvent, SavedProjection, Snapshot, SnapshotStore, StoreError,
    StreamBatch, StreamId, Subscribe, Subscription, SubscriptionStats, Timestamp, Version,
    VersionRange,
};
use tokio::sync::Barrier;

/// The one bug a [`Broken`] store has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// No bug: the wrapper forwards everything.
    None,
    /// Appends ignore the expected version.
    IgnoresExpectedVersion,
    /// A conflict reports the stream as having no events.
    ConflictWithoutActualVersion,
    /// A rejected batch still writes its first event.
    PartialWriteOnConflict,
    /// An empty append succeeds.
    AcceptsEmptyAppend,
    /// `read_stream_until` excludes events recorded exactly at the bound.
    ExclusiveTimeBound,
    /// Timestamps are stored with millisecond precision.
    MillisecondTimestamps,
    /// `read_all(after)` includes the event at `after`.
    ReadAllIncludesAfter,
    /// `read_all` ignores its limit.
    ReadAllIgnoresLimit,
    /// Metadata key/values are dropped.
    DropsMetadataExtra,
    /// Payloads go through a UTF-8 text column.
    PayloadAsText,
    /// Streams are keyed by their `type/id` text, so `a/b` + `c` collides with `a` + `b/c`.
    StreamKeyedByText,
    /// Stream ids are compared without regard to case.
    CaseInsensitiveIds,
    /// An older snapshot replaces a newer one.
    OverwritesNewerSnapshot,
    /// A saved projection is never replaced.
    KeepsFirstProjection,
    /// The version check and the write are not one atomic step.
    CheckThenWrite,
    /// A multi-stream append writes its batches one by one: a conflict on a later stream
    /// leaves the earlier ones written.
    MultiStreamOneByOne,
    /// A multi-stream conflict names only the first stream that failed.
    MultiStreamFirstConflictOnly,
    /// Subscriptions are live only: they start at the head, whatever position they are given.
    SubscriptionLiveOnly,
    /// Each page of a subscription starts one event late, skipping the event right after the
    /// last one delivered.
    SubscriptionSkipsPageBoundary,
    /// A subscription's page read ignores its limit and takes all it can.
    SubscriptionIgnoresPageLimit,
    /// Each subscription also registers a second listener that is never removed.
    SubscriptionLeaksRegistration,
    /// A subscription applies its filter only to the events stored when it started.
    SubscriptionFiltersStoredEventsOnly,
    /// Event ids are not kept: every appended event gets a fresh one, so a retried batch is
    /// stored again (as by a store without a unique index on ids).
    RetriesStoreCopies,
}

/// The in-memory store with one [`Bug`].
struct Broken {
    inner: InMemory,
    bug: Bug,
    snapshots: Mutex<HashMap<StreamId, Snapshot>>,
    projections: Mutex<HashMap<String, SavedProjection>>,
    /// Lets two appends pass the version check together ([`Bug::CheckThenWrite`]).
    pair: Barrier,
    /// Woken after every append, for the wrapper's own subscriptions.
    wakeups: Arc<Wakeups>,
    /// Subscriptions registered and never dropped ([`Bug::SubscriptionLeaksRegistration`]).
    leaked: Mutex<Vec<Subscription>>,
}

fn factory(bug: Bug) -> impl Fn(ManualClock) -> Ready<Broken> + Copy + Send + Sync + 'static {
    move |clock| {
        ready(Broken {
            inner: InMemory::with_clock(clock),
            bug,
            snapshots: Mutex::default(),
            projections: Mutex::default(),
            pair: Barrier::new(2),
            wakeups: Arc::default(),
            leaked: Mutex::default(),
        })
    }
}

impl Broken {
    /// The stream the inner store keeps `stream` under.
    fn key(&self, stream: &StreamId) -> StreamId {
        match self.bug {
            Bug::StreamKeyedByText => StreamId::new("all", stream.to_string()),
            Bug::CaseInsensitiveIds => StreamId::new(
                stream.aggregate_type().to_lowercase(),
                stream.aggregate_id().to_lowercase(),
            ),
            _ => stream.clone(),
        }
    }

    /// An event as the broken store returns it.
    fn damage(&self, mut event: RecordedEvent) -> RecordedEvent {
        match self.bug {
            Bug::StreamKeyedByText => {
                let text = event.stream.aggregate_id().to_owned();
                let (aggregate_type, id) = text.split_once('/').unwrap_or((&text, ""));
                event.stream = StreamId::new(aggregate_type, id);
            }
            Bug::MillisecondTimestamps => {
                let micros = event.recorded_at.as_micros();
                event.recorded_at = Timestamp::from_micros(micros - micros.rem_euclid(1000));
            }
            Bug::DropsMetadataExtra => event.metadata.make_mut().extra.clear(),
            Bug::PayloadAsText => {
                event.payload = String::from_utf8_lossy(&event.payload)
                    .into_owned()
                    .into_bytes()
                    .into();
            }
            _ => {}
        }
        event
    }

    fn damage_all(&self, events: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
        events.into_iter().map(|e| self.damage(e)).collect()
    }

    async fn current_version(&self, stream: &StreamId) -> Result<Option<Version>, StoreError> {
        let events = self.inner.read_stream(stream, VersionRange::all()).await?;
        Ok(events.last().map(|e| e.version))
    }
}

impl Broken {
    async fn append_streams_with_bug(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if self.bug == Bug::MultiStreamOneByOne {
            let mut outcomes = Vec::with_capacity(batches.len());
            for batch in batches {
                match self
                    .append(&batch.stream, batch.expected, batch.events)
                    .await
                {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(StoreError::Conflict(conflict)) => {
                        return Err(Conflicts::new(vec![conflict]).unwrap().into())
                    }
                    Err(other) => return Err(other),
                }
            }
            return Ok(outcomes);
        }
        let streams: Vec<StreamId> = batches.iter().map(|b| b.stream.clone()).collect();
        let keyed = batches
            .into_iter()
            .map(|b| StreamBatch::new(self.key(&b.stream), b.expected, b.events))
            .collect();
        match self.inner.append_streams(keyed).await {
            Err(StoreError::Conflicts(conflicts)) => {
                let mut conflicts = conflicts.into_vec();
                for conflict in &mut conflicts {
                    if let Some(stream) = streams.iter().find(|s| self.key(s) == conflict.stream) {
                        conflict.stream = stream.clone();
                    }
                }
                if self.bug == Bug::MultiStreamFirstConflictOnly {
                    conflicts.truncate(1);
                }
                Err(Conflicts::new(conflicts).unwrap().into())
            }
            other => other,
        }
    }

    async fn append_with_bug(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let key = self.key(stream);
        match self.bug {
            Bug::IgnoresExpectedVersion => {
                return self.inner.append(&key, ExpectedVersion::Any, events).await
            }
            Bug::AcceptsEmptyAppend if events.is_empty() => {
                let version = self.current_version(&key).await?.unwrap_or_default();
                let position = self.inner.last_position().await?;
                return Ok(AppendOutcome { version, position });
            }
            Bug::CheckThenWrite => {
                expected.check(stream, self.current_version(&key).await?)?;
                self.pair.wait().await;
                return self.inner.append(&key, ExpectedVersion::Any, events).await;
            }
            Bug::RetriesStoreCopies => {
                let fresh = events
                    .into_iter()
                    .map(|event| NewEvent {
                        event_id: uuid::Uuid::now_v7(),
                        ..event
                    })
                    .collect();
                return self.inner.append(&key, expected, fresh).await;
            }
            _ => {}
        }
        let first = events.first().cloned();
        match self.inner.append(&key, expected, events).await {
            Err(StoreError::Conflict(mut conflict)) => {
                conflict.stream = stream.clone();
                match self.bug {
                    Bug::ConflictWithoutActualVersion => conflict.actual = None,
                    Bug::PartialWriteOnConflict => {
                        if let Some(first) = first {
                            self.inner
                                .append(&key, ExpectedVersion::Any, vec![first])
                                .await?;
                        }
                    }
                    _ => {}
                }
                Err(StoreError::Conflict(conflict))
            }
            other => other,
        }
    }
}

impl EventStore for Broken {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let result = self.append_with_bug(stream, expected, events).await;
        self.wakeups.wake();
        result
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let result = self.append_streams_with_bug(batches).await;
        self.wakeups.wake();
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(&self.key(stream), range).await?;
        Ok(self.damage_all(events))
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let until = if self.bug == Bug::ExclusiveTimeBound {
            until.saturating_add_micros(-1)
        } else {
            until
        };
        let events = self
            .inner
            .read_stream_until(&self.key(stream), until)
            .await?;
        Ok(self.damage_all(events))
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (after, limit) = match self.bug {
            Bug::ReadAllIncludesAfter => (GlobalPosition(after.get().saturating_sub(1)), limit),
            Bug::ReadAllIgnoresLimit => (after, usize::MAX),
            _ => (after, limit),
        };
        let events = self.inner.read_all(after, limit).await?;
        Ok(self.damage_all(events))
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.inner.last_position().await
    }
}

/// The page reads of a broken subscription: the inner store's, with the bug.
struct BrokenPages {
    inner: InMemory,
    bug: Bug,
    /// The head when the subscription started.
    head_at_start: GlobalPosition,
}

impl PageSource for BrokenPages {
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a> {
        Box::pin(async move {
            match self.bug {
                Bug::SubscriptionLiveOnly => {
                    self.inner
                        .read_page(after.max(self.head_at_start), filter, limit)
                        .await
                }
                Bug::SubscriptionSkipsPageBoundary if after > GlobalPosition::START => {
                    self.inner
                        .read_page(GlobalPosition(after.get() + 1), filter, limit)
                        .await
                }
                Bug::SubscriptionIgnoresPageLimit => {
                    self.inner.read_page(after, filter, usize::MAX).await
                }
                Bug::SubscriptionFiltersStoredEventsOnly if after >= self.head_at_start => {
                    self.inner
                        .read_page(after, &EventFilter::all(), limit)
                        .await
                }
                _ => self.inner.read_page(after, filter, limit).await,
            }
        })
    }
}

impl Subscribe for Broken {
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        // The in-memory store's head, read without awaiting: its log is one page read away.
        let head_at_start = {
            let inner = self.inner.clone();
            let page = std::pin::pin!(async move {
                inner
                    .read_page(GlobalPosition::START, &EventFilter::all(), usize::MAX)
                    .await
            });
            match std::task::Context::from_waker(std::task::Waker::noop()).ext_poll(page) {
                Some(Ok(page)) => page.scanned_to,
                _ => GlobalPosition::START,
            }
        };
        let source = BrokenPages {
            inner: self.inner.clone(),
            bug: self.bug,
            head_at_start,
        };
        if self.bug == Bug::SubscriptionLeaksRegistration {
            let leaked = Subscription::new(
                Arc::new(self.inner.clone()),
                Arc::clone(&self.wakeups),
                after,
                EventFilter::all(),
            );
            self.leaked.lock().unwrap().push(leaked);
        }
        Subscription::new(Arc::new(source), Arc::clone(&self.wakeups), after, filter)
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        self.wakeups.stats()
    }
}

/// Polls a future that is known to be ready at once.
trait PollOnce {
    fn ext_poll<F: Future>(&mut self, future: std::pin::Pin<&mut F>) -> Option<F::Output>;
}

impl PollOnce for std::task::Context<'_> {
    fn ext_poll<F: Future>(&mut self, future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        match future.poll(self) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}

impl SnapshotStore for Broken {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.lock().unwrap();
        let keep_stored = snapshots
            .get(&snapshot.stream)
            .is_some_and(|stored| stored.version > snapshot.version);
        if !keep_stored || self.bug == Bug::OverwritesNewerSnapshot {
            snapshots.insert(snapshot.stream.clone(), snapshot);
        }
        Ok(())
    }

    async fn replace_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.lock().unwrap();
        snapshots.insert(snapshot.stream.clone(), snapshot);
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.snapshots.lock().unwrap().get(stream).cloned())
    }

    fn record_snapshot_fallback(&self, stream: &StreamId) {
        self.inner.record_snapshot_fallback(stream);
    }

    fn snapshot_fallbacks(&self) -> u64 {
        self.inner.snapshot_fallbacks()
    }
}

impl ProjectionStore for Broken {
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        let mut projections = self.projections.lock().unwrap();
        if self.bug != Bug::KeepsFirstProjection || !projections.contains_key(&saved.name) {
            projections.insert(saved.name.clone(), saved);
        }
        Ok(())
    }

    async fn load_projection(&self, name: &str) -> Result<Option<SavedProjection>, StoreError> {
        Ok(self.projections.lock().unwrap().get(name).cloned())
    }
}

/// The wrapper itself keeps the contract: every failure below is its bug's doing.
mod without_a_bug {
    use super::{factory, Bug};

    es_core::conformance_tests!(factory(Bug::None));
}

/// Runs `check` and asserts that it fails with a message containing `sentence`.
async fn assert_caught(check: impl Future<Output = ()> + Send + 'static, sentence: &str) {
    let Err(error) = tokio::spawn(check).await else {
        panic!("the suite accepted a broken store; expected a failure saying `{sentence}`");
    };
    let payload: Box<dyn Any + Send> = error.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(
        message.contains(sentence),
        "the suite failed, but its message does not name the broken sentence `{sentence}`:\n{message}"
    );
}

macro_rules! caught {
    ($($test:ident: $bug:ident by $check:ident saying $sentence:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            assert_caught(conformance::$check(factory(Bug::$bug)), $sentence).await;
        }
    )*};
}

caught! {
    ignoring_the_expected_version: IgnoresExpectedVersion
        by new_stream_rejects_stream_exists
        saying "StreamExists on a stream with no events must be a conflict";
    accepting_a_stale_writer: IgnoresExpectedVersion
        by existing_stream_rejects_stale_exact_version
        saying "a writer whose expected version is stale must get a conflict";
    a_conflict_without_the_actual_version: ConflictWithoutActualVersion
        by existing_stream_rejects_no_stream
        saying "the conflict must carry the stream, the expected version and the stream's actual version";
    a_partial_write_on_conflict: PartialWriteOnConflict
        by rejected_batch_writes_nothing
        saying "a rejected batch must write nothing";
    accepting_an_empty_append: AcceptsEmptyAppend
        by empty_append_is_rejected
        saying "must be StoreError::EmptyAppend";
    an_exclusive_time_bound: ExclusiveTimeBound
        by read_stream_until_includes_events_at_or_before_the_bound
        saying "read_stream_until(exactly t1) must return the events recorded at or before it";
    millisecond_timestamps: MillisecondTimestamps
        by events_are_stamped_with_the_store_clock
        saying "to the microsecond";
    read_all_including_its_start: ReadAllIncludesAfter
        by read_all_pages_through_the_log
        saying "not after";
    read_all_ignoring_its_limit: ReadAllIgnoresLimit
        by read_all_pages_through_the_log
        saying "read_all(0, 1) returned";
    dropping_metadata: DropsMetadataExtra
        by stored_fields_round_trip_unchanged
        saying "stored fields must read back unchanged (metadata)";
    payloads_through_text: PayloadAsText
        by stored_fields_round_trip_unchanged
        saying "stored fields must read back unchanged (payload";
    streams_keyed_by_their_text: StreamKeyedByText
        by unusual_stream_ids_are_kept_intact_and_apart
        saying "must hold exactly its own events";
    case_insensitive_stream_ids: CaseInsensitiveIds
        by unusual_stream_ids_are_kept_intact_and_apart
        saying "must hold exactly its own events";
    overwriting_a_newer_snapshot: OverwritesNewerSnapshot
        by older_snapshot_does_not_replace_newer
        saying "must not replace it";
    never_replacing_a_projection: KeepsFirstProjection
        by projection_round_trips_and_is_replaced
        saying "saving again must replace state and position";
    checking_then_writing_in_two_steps: CheckThenWrite
        by racing_appends_with_the_same_expected_version_have_one_winner
        saying "exactly one must win";
    a_multi_stream_append_written_stream_by_stream: MultiStreamOneByOne
        by multi_stream_conflict_on_one_stream_writes_nothing
        saying "a multi-stream append with a failed check must write nothing";
    a_multi_stream_conflict_naming_one_stream: MultiStreamFirstConflictOnly
        by multi_stream_conflict_on_one_stream_writes_nothing
        saying "must name every stream that failed";
    a_subscription_that_is_live_only: SubscriptionLiveOnly
        by subscription_from_the_start_delivers_stored_then_new_events
        saying "a subscription from GlobalPosition::START must deliver the stored events";
    a_subscription_skipping_page_boundaries: SubscriptionSkipsPageBoundary
        by subscription_delivers_every_event_once_in_order_while_16_writers_append
        saying "exactly once, in order";
    a_subscription_reading_without_a_page_limit: SubscriptionIgnoresPageLimit
        by subscription_that_stalls_then_resumes_misses_nothing
        saying "may hold at most";
    a_subscription_leaking_its_registration: SubscriptionLeaksRegistration
        by subscription_dropped_at_any_point_frees_everything
        saying "a dropped subscription must free everything it held";
    a_subscription_filtering_only_stored_events: SubscriptionFiltersStoredEventsOnly
        by subscription_filtered_by_event_type_delivers_only_those
        saying "must deliver exactly the events of any of them";
    idempotent_retries_stored_again: RetriesStoreCopies
        by idempotent_retry_returns_the_original_outcome_and_stores_one_copy
        saying "re-appending a stored batch must return its original outcome and store nothing";
    idempotent_ids_reused_across_streams: RetriesStoreCopies
        by idempotent_ids_are_unique_across_streams
        saying "an event id stored in one stream must be refused in another";
}
