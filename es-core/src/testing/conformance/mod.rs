//! The store conformance suite: one check per sentence of the [`EventStore`],
//! [`SnapshotStore`] and [`ProjectionStore`] contracts, runnable against any implementation.
//!
//! # Running it against a store
//!
//! Write an async factory that builds a fresh, empty store stamping events with the
//! [`ManualClock`] it is given, then let [`conformance_tests!`](crate::conformance_tests)
//! generate one test per check:
//!
//! ```
//! // tests/conformance_memory.rs
//! use es_core::{InMemory, ManualClock};
//!
//! async fn store(clock: ManualClock) -> InMemory {
//!     InMemory::with_clock(clock)
//! }
//!
//! es_core::conformance_tests!(store);
//! # fn main() {}
//! ```
//!
//! That expands to a module `conformance` holding one
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per check, named after the
//! check, so a failure names the broken sentence:
//! `conformance::existing_stream_rejects_stale_exact_version ... FAILED`. The generated code
//! reaches tokio through `es_core::__private::tokio`, so the store's crate needs no tokio
//! dev-dependency of its own for it, only `es-core` with the `testing` feature.
//!
//! A store that needs a resource to live exactly as long as it (the temporary directory of its
//! file, a schema to drop) can return [`Guarded::new(store, guard)`](Guarded): the guard is
//! dropped right after the store, and the pair forwards every call, so no forwarding impl is
//! needed in the test file.
//!
//! A store that needs an external server can skip when none is configured: make the factory
//! return `Option<MyStore>` (`None` when, for example, no server URL is set) and write
//! `es_core::conformance_tests!(optional: store);`. Each check then prints one line saying it
//! was skipped and passes. To run the suite twice in one file (two configurations of a store),
//! put each invocation in its own module.
//!
//! Every check calls the factory exactly once, so the store it checks is fresh and empty; the
//! clock starts at [`START`]. The checks are also public async functions
//! (`es_core::testing::conformance::read_all_pages_through_the_log(store).await`), with the
//! `Option` variants in [`optional`], for a harness that prefers to call them directly; they
//! need a multi-threaded tokio runtime, because the race checks spawn tasks. [`CHECKS`] lists
//! every check by name.
//!
//! # What the checks assume
//!
//! Only the contracts: the checks write their own events (opaque payloads with recognisable
//! ids), never depend on positions being contiguous (a store may burn positions), and never
//! measure time. A failing check panics with a message saying which sentence of the contract
//! did not hold and what was seen instead.

use std::future::Future;

use tokio::task::JoinHandle;

use uuid::Uuid;

use crate::clock::ManualClock;
use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::snapshot::{ProjectionStore, SnapshotStore};
use crate::store::{AppendOutcome, EventStore, ExpectedVersion, StoreError, VersionRange};
use crate::subscription::Subscribe;
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

mod appends;
mod fields;
mod guarded;
mod idempotency;
mod multi_stream;
mod races;
mod reads;
mod side_stores;
mod subscriptions;

pub use guarded::Guarded;

/// The instant every check's clock starts at: 2023-11-14T22:13:20Z.
pub const START: Timestamp = Timestamp::from_micros(1_700_000_000_000_000);

/// Everything a store under test must be: an event store with subscriptions, snapshot store
/// and projection store.
trait Store: EventStore + Subscribe + SnapshotStore + ProjectionStore + 'static {}

impl<S: EventStore + Subscribe + SnapshotStore + ProjectionStore + 'static> Store for S {}

/// Declares the checks: the public entry point of each (plain and `Option` factory), the
/// [`CHECKS`] list, and a compile-time link to the body in its submodule.
macro_rules! checks {
    ($($(#[doc = $doc:literal])* $module:ident::$name:ident;)*) => {
        /// The name of every check, in the order the suite declares them (and
        /// [`conformance_tests!`](crate::conformance_tests) runs them).
        pub const CHECKS: &[&str] = &[$(stringify!($name)),*];

        $(
            $(#[doc = $doc])*
            ///
            /// Builds one store with `factory`, handing it a [`ManualClock`] standing at
            /// [`START`], and panics with the broken sentence if the store does not keep it.
            pub async fn $name<F, Fut, S>(factory: F)
            where
                F: Fn(ManualClock) -> Fut,
                Fut: Future<Output = S>,
                S: EventStore + Subscribe + SnapshotStore + ProjectionStore + 'static,
            {
                let clock = ManualClock::new(START);
                let store = factory(clock.clone()).await;
                $module::$name(store, clock).await;
            }
        )*

        /// The checks for a factory that may have no store to give (`None`: for example no
        /// server configured); each prints one line and returns when it gets `None`.
        pub mod optional {
            use super::*;

            $(
                $(#[doc = $doc])*
                ///
                /// Skips, printing one line, when `factory` returns `None`.
                pub async fn $name<F, Fut, S>(factory: F)
                where
                    F: Fn(ManualClock) -> Fut,
                    Fut: Future<Output = Option<S>>,
                    S: EventStore + Subscribe + SnapshotStore + ProjectionStore + 'static,
                {
                    let clock = ManualClock::new(START);
                    match factory(clock.clone()).await {
                        Some(store) => $module::$name(store, clock).await,
                        None => println!(
                            "conformance check `{}` skipped: the store factory returned no store",
                            stringify!($name)
                        ),
                    }
                }
            )*
        }
    };
}

checks! {
    /// Appending with `ExpectedVersion::NoStream` to a stream with no events succeeds and
    /// starts it at version 1.
    appends::new_stream_accepts_no_stream;
    /// Appending with `ExpectedVersion::Exact(Version::INITIAL)` to a stream with no events
    /// succeeds: it means the same as `NoStream`.
    appends::new_stream_accepts_exact_zero;
    /// Appending with `ExpectedVersion::Any` to a stream with no events succeeds.
    appends::new_stream_accepts_any;
    /// Appending with `ExpectedVersion::StreamExists` to a stream with no events is a
    /// `Conflict` with `actual: None`, and writes nothing.
    appends::new_stream_rejects_stream_exists;
    /// Appending with `ExpectedVersion::Exact(v)`, `v > 0`, to a stream with no events is a
    /// `Conflict` with `actual: None`, and writes nothing.
    appends::new_stream_rejects_exact_nonzero;
    /// Appending with `ExpectedVersion::Exact` of the stream's last version succeeds and
    /// continues the stream.
    appends::existing_stream_accepts_exact_current_version;
    /// Appending with `ExpectedVersion::StreamExists` to a stream with events succeeds.
    appends::existing_stream_accepts_stream_exists;
    /// Appending with `ExpectedVersion::Any` to a stream with events appends after its last
    /// event.
    appends::existing_stream_accepts_any;
    /// Appending with `ExpectedVersion::NoStream` to a stream with events is a `Conflict`
    /// carrying the stream's last version, and writes nothing.
    appends::existing_stream_rejects_no_stream;
    /// Appending with `ExpectedVersion::Exact(Version::INITIAL)` to a stream with events is a
    /// `Conflict`, and writes nothing.
    appends::existing_stream_rejects_exact_zero;
    /// A writer that read the stream before another writer appended (a stale
    /// `ExpectedVersion::Exact`) gets a `Conflict` naming the stream, its expectation and the
    /// stream's new version; nothing of its batch is written.
    appends::existing_stream_rejects_stale_exact_version;
    /// Appending with `ExpectedVersion::Exact` of a version the stream has not reached is a
    /// `Conflict`, and writes nothing.
    appends::existing_stream_rejects_exact_version_ahead;
    /// A rejected batch of many events writes none of them: the stream, the global log and
    /// `last_position` are unchanged, and the next accepted append continues right after the
    /// stream's real last version.
    appends::rejected_batch_writes_nothing;
    /// An append of no events is `StoreError::EmptyAppend`, on a new and on an existing
    /// stream, and writes nothing.
    appends::empty_append_is_rejected;
    /// A stream's events get versions 1, 2, 3 ... with no gap and no duplicate, in append
    /// order, across appends of different batch sizes.
    appends::versions_are_contiguous_from_one;
    /// `AppendOutcome` names the version and the global position of the batch's last event.
    appends::append_outcome_names_last_version_and_position;
    /// A batch of a thousand events is appended whole, in order, with contiguous versions.
    appends::large_batch_is_appended_whole;
    /// `read_stream` returns exactly the events whose versions lie in the inclusive range, in
    /// version order: all, from, up to, a middle slice, one event, past the end, and an
    /// inverted range.
    reads::read_stream_returns_the_requested_range;
    /// `read_stream` of a stream with no events returns no events, and so do its time-bounded
    /// read and a read of a stream whose id is a prefix of an existing one.
    reads::read_stream_of_an_unknown_stream_is_empty;
    /// Every event's `recorded_at` is the store clock's time at the append.
    reads::events_are_stamped_with_the_store_clock;
    /// A stream's `recorded_at` never decreases with its versions: when the clock steps back,
    /// the stream's next event gets the stream's last time, while a new stream gets the
    /// clock's time; `read_stream_until` then returns a prefix of the stream.
    reads::stream_times_never_run_backwards;
    /// `read_stream_until` returns the stream's events recorded at or before the bound (equality
    /// included, to the microsecond), in version order.
    reads::read_stream_until_includes_events_at_or_before_the_bound;
    /// `read_all` pages through the log: every page size gives the same events in the same
    /// order, a limit larger than the log returns all of it, and reading after the end, or with
    /// a limit of zero, returns nothing.
    reads::read_all_pages_through_the_log;
    /// A store that lends its events (`lend_all`, the in-memory store) lends what `read_all`
    /// reads, page by page, and stops at the event its visitor breaks on.
    reads::lend_all_lends_what_read_all_reads;
    /// `read_all` returns the events of interleaved appends to several streams in commit order,
    /// with strictly increasing positions.
    reads::read_all_returns_interleaved_streams_in_commit_order;
    /// `last_position` is `GlobalPosition::START` for an empty store, then the position of the
    /// last event `read_all` returns; a rejected append does not move it.
    reads::last_position_tracks_the_log;
    /// Every stored field reads back exactly as appended, through `read_stream`,
    /// `read_stream_until` and `read_all`: event id, event type, schema version, both codecs,
    /// empty and binary payloads holding every byte value, and metadata with correlation id,
    /// causation id and free key/values.
    fields::stored_fields_round_trip_unchanged;
    /// Two streams with the same aggregate id and different aggregate types are different
    /// streams, with their own versions and expectations.
    fields::same_id_with_different_aggregate_types_are_different_streams;
    /// Stream ids with unicode, quotes, slashes, backslashes, SQL wildcards, whitespace and
    /// different letter case are stored intact and kept apart (`a/b` + `c` is not `a` + `b/c`).
    fields::unusual_stream_ids_are_kept_intact_and_apart;
    /// Of 32 tasks racing to append to one stream with the same `ExpectedVersion::Exact`,
    /// exactly one wins each version and the others get a `Conflict` carrying the winner's
    /// version; the stream ends contiguous and the log holds exactly the winners' events.
    races::racing_appends_with_the_same_expected_version_have_one_winner;
    /// Many tasks appending to many streams, with `ExpectedVersion::Any` and with `Exact` plus
    /// retries on conflict: every acknowledged event is stored exactly once, where its
    /// `AppendOutcome` says, no unacknowledged event is stored, streams stay contiguous and
    /// positions strictly increase.
    races::concurrent_writers_on_many_streams_lose_nothing;
    /// A catch-up reader paging through `read_all` while writers append sees every event
    /// exactly once, in position order: no event becomes visible behind its back.
    races::catch_up_reader_sees_every_event_once_in_order;
    /// Readers running while a writer appends batches see each batch whole or not at all, in
    /// `read_stream` and in `read_all`.
    races::concurrent_readers_never_see_a_partial_batch;
    /// `append_streams` writes every batch (new stream, exact version, `Any`) with one outcome
    /// per batch naming its stream's version and last position; the events form one
    /// contiguous run of the log (batches in order), share one time from the store clock,
    /// and each stream stays contiguous.
    multi_stream::multi_stream_append_writes_every_batch_in_one_contiguous_run;
    /// A multi-stream append where one, the last, or three of four streams fail their check
    /// is `StoreError::Conflicts` naming exactly those streams in order with expected and
    /// actual versions, and writes nothing; with every expectation right it then goes through.
    multi_stream::multi_stream_conflict_on_one_stream_writes_nothing;
    /// A multi-stream append of no batches or with an empty batch is `EmptyAppend`; one naming
    /// a stream twice is `DuplicateStream`; neither writes anything.
    multi_stream::multi_stream_append_rejects_empty_and_duplicate_batches;
    /// Tasks racing read-modify-write increments over overlapping sets of counter streams
    /// (listed in different orders) lose no update: each counter counts every acknowledged
    /// increment once, their sum is the increments acknowledged, nothing deadlocks, and each
    /// append is one contiguous run of the log.
    multi_stream::multi_stream_racing_writers_lose_no_update;
    /// Readers running while a writer makes multi-stream appends see each whole or not at
    /// all, through `read_all` and `read_stream`.
    multi_stream::multi_stream_readers_never_see_a_partial_append;
    /// Re-appending a stored batch (same ids, after the stream moved on) returns its original
    /// `AppendOutcome` whatever the expected version, and stores nothing: the stream, the log
    /// and `last_position` are unchanged.
    idempotency::idempotent_retry_returns_the_original_outcome_and_stores_one_copy;
    /// A batch that reuses some stored ids (mixed with new ones, with one more event, in
    /// another order, with a gap), or holds an id twice, is `StoreError::DuplicateEventIds`
    /// naming each taken id, its index in the batch and where it is stored; nothing is written.
    idempotency::idempotent_partial_overlap_is_refused_and_writes_nothing;
    /// An event id stored in one stream is refused in any other stream (also one that differs
    /// only in aggregate type).
    idempotency::idempotent_ids_are_unique_across_streams;
    /// Eight tasks re-appending one batch at once (with and without an expected version) all
    /// get the same outcome, and the batch is stored once.
    idempotency::idempotent_concurrent_retries_store_one_copy;
    /// A multi-stream append sent again returns its original outcomes and writes nothing; one
    /// whose batches are partly stored, or that holds an id in two batches, is
    /// `StoreError::DuplicateEventIds` and writes nothing.
    idempotency::idempotent_multi_stream_retry_returns_the_original_outcomes;
    /// A saved snapshot loads back unchanged; a stream without one loads `None`.
    side_stores::snapshot_round_trips_unchanged;
    /// A snapshot of a lower version never replaces a stored one of a higher version; one of
    /// an equal or higher version does.
    side_stores::older_snapshot_does_not_replace_newer;
    /// Each stream keeps its own snapshot, including streams that differ only in aggregate
    /// type.
    side_stores::snapshots_are_kept_per_stream;
    /// Of many snapshots of one stream saved concurrently, in any order, the one of the highest
    /// version is the one kept.
    side_stores::concurrent_snapshot_saves_keep_the_highest_version;
    /// `replace_snapshot` replaces the stored snapshot whatever its version (a snapshot found
    /// unusable, for example ahead of the log), and only that stream's.
    side_stores::replace_snapshot_replaces_whatever_is_stored;
    /// `snapshot_fallbacks` counts every `record_snapshot_fallback` call.
    side_stores::snapshot_fallbacks_are_counted_per_store;
    /// A saved projection loads back unchanged, and saving again replaces it, even with a lower
    /// position (a rebuild); an unknown name loads `None`.
    side_stores::projection_round_trips_and_is_replaced;
    /// Each projection name keeps its own state and checkpoint (names are case-sensitive).
    side_stores::projections_are_kept_per_name;
    /// A subscription from the start, running while 16 writers append to their own and to a
    /// shared stream, delivers every event exactly once, in log order, and nothing more.
    subscriptions::subscription_delivers_every_event_once_in_order_while_16_writers_append;
    /// A subscription from `GlobalPosition::START` delivers the stored events, then each new
    /// one as it is appended.
    subscriptions::subscription_from_the_start_delivers_stored_then_new_events;
    /// A subscription from the head of the log delivers only the events appended after it,
    /// and starts with `position()` at the head.
    subscriptions::subscription_from_the_head_delivers_only_new_events;
    /// A subscription from a position the log has not reached delivers only the events after
    /// that position, once they exist.
    subscriptions::subscription_past_the_head_delivers_only_events_after_its_start;
    /// A subscription filtered by aggregate type delivers exactly the events of streams of
    /// that type, stored and new, in order.
    subscriptions::subscription_filtered_by_aggregate_type_delivers_only_those;
    /// A subscription filtered by two event types delivers exactly the events of either type.
    subscriptions::subscription_filtered_by_event_type_delivers_only_those;
    /// A subscription filtered by aggregate type and event type delivers exactly the events
    /// matching both.
    subscriptions::subscription_filtered_by_aggregate_and_event_type_delivers_only_both;
    /// A subscription whose filter matches none of 9,010 events delivers none of them, then
    /// the first matching event appended, alone.
    subscriptions::subscription_filter_matching_nothing_reads_past_every_event;
    /// A subscriber that stalls (stops polling) while 2,000 events are appended costs the
    /// store no buffered events (`subscription_stats`), holds at most one page, and on
    /// resuming gets every event it missed, in order.
    subscriptions::subscription_that_stalls_then_resumes_misses_nothing;
    /// `next_batch` futures dropped after one poll, wherever their read stands, lose and
    /// repeat nothing.
    subscriptions::subscription_next_batch_cancelled_mid_read_loses_nothing;
    /// Subscriptions dropped unpolled, with a page in hand, waiting at the head and mid-read
    /// leave `subscription_stats` at zero; the store goes on working and a new subscription
    /// gets the whole log.
    subscriptions::subscription_dropped_at_any_point_frees_everything;
}

/// Runs every check as its own `#[tokio::test]`, against stores built by a factory.
///
/// `conformance_tests!(factory)` takes an async function (or closure) `Fn(ManualClock) ->
/// impl Future<Output = S>` whose store stamps events with the clock it is given.
/// `conformance_tests!(optional: factory)` takes one returning `Option<S>`; each test prints
/// one line and passes when it gets `None`. The expansion is a module `conformance` with one
/// test per check of [`testing::conformance`](crate::testing::conformance), named after it.
/// The generated tests reach tokio as `::es_core::__private::tokio`, so the dependency must be
/// named `es_core` (not renamed) in the crate that invokes the macro.
///
/// ```
/// use es_core::{InMemory, ManualClock};
///
/// // A store that needs a server: `None` when it is not configured.
/// async fn store(clock: ManualClock) -> Option<InMemory> {
///     std::env::var_os("HOME").map(|_| InMemory::with_clock(clock))
/// }
///
/// es_core::conformance_tests!(optional: store);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (optional: $factory:expr $(,)?) => {
        $crate::__conformance_tests!(optional, $factory);
    };
    ($factory:expr $(,)?) => {
        $crate::__conformance_tests!(required, $factory);
    };
}

/// The expansion of [`conformance_tests!`]; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (@call optional $name:ident $factory:expr) => {
        $crate::testing::conformance::optional::$name($factory).await
    };
    (@call required $name:ident $factory:expr) => {
        $crate::testing::conformance::$name($factory).await
    };
    ($variant:ident, $factory:expr) => {
        $crate::__conformance_tests!(@tests $variant $factory;
            new_stream_accepts_no_stream
            new_stream_accepts_exact_zero
            new_stream_accepts_any
            new_stream_rejects_stream_exists
            new_stream_rejects_exact_nonzero
            existing_stream_accepts_exact_current_version
            existing_stream_accepts_stream_exists
            existing_stream_accepts_any
            existing_stream_rejects_no_stream
            existing_stream_rejects_exact_zero
            existing_stream_rejects_stale_exact_version
            existing_stream_rejects_exact_version_ahead
            rejected_batch_writes_nothing
            empty_append_is_rejected
            versions_are_contiguous_from_one
            append_outcome_names_last_version_and_position
            large_batch_is_appended_whole
            read_stream_returns_the_requested_range
            read_stream_of_an_unknown_stream_is_empty
            events_are_stamped_with_the_store_clock
            stream_times_never_run_backwards
            read_stream_until_includes_events_at_or_before_the_bound
            read_all_pages_through_the_log
            lend_all_lends_what_read_all_reads
            read_all_returns_interleaved_streams_in_commit_order
            last_position_tracks_the_log
            stored_fields_round_trip_unchanged
            same_id_with_different_aggregate_types_are_different_streams
            unusual_stream_ids_are_kept_intact_and_apart
            racing_appends_with_the_same_expected_version_have_one_winner
            concurrent_writers_on_many_streams_lose_nothing
            catch_up_reader_sees_every_event_once_in_order
            concurrent_readers_never_see_a_partial_batch
            multi_stream_append_writes_every_batch_in_one_contiguous_run
            multi_stream_conflict_on_one_stream_writes_nothing
            multi_stream_append_rejects_empty_and_duplicate_batches
            multi_stream_racing_writers_lose_no_update
            multi_stream_readers_never_see_a_partial_append
            idempotent_retry_returns_the_original_outcome_and_stores_one_copy
            idempotent_partial_overlap_is_refused_and_writes_nothing
            idempotent_ids_are_unique_across_streams
            idempotent_concurrent_retries_store_one_copy
            idempotent_multi_stream_retry_returns_the_original_outcomes
            snapshot_round_trips_unchanged
            older_snapshot_does_not_replace_newer
            snapshots_are_kept_per_stream
            concurrent_snapshot_saves_keep_the_highest_version
            replace_snapshot_replaces_whatever_is_stored
            snapshot_fallbacks_are_counted_per_store
            projection_round_trips_and_is_replaced
            projections_are_kept_per_name
            subscription_delivers_every_event_once_in_order_while_16_writers_append
            subscription_from_the_start_delivers_stored_then_new_events
            subscription_from_the_head_delivers_only_new_events
            subscription_past_the_head_delivers_only_events_after_its_start
            subscription_filtered_by_aggregate_type_delivers_only_those
            subscription_filtered_by_event_type_delivers_only_those
            subscription_filtered_by_aggregate_and_event_type_delivers_only_both
            subscription_filter_matching_nothing_reads_past_every_event
            subscription_that_stalls_then_resumes_misses_nothing
            subscription_next_batch_cancelled_mid_read_loses_nothing
            subscription_dropped_at_any_point_frees_everything
        );
    };
    (@tests $variant:ident $factory:expr; $($name:ident)*) => {
        /// The store conformance suite, one test per check.
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[$crate::__private::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "::es_core::__private::tokio"
                )]
                async fn $name() {
                    $crate::__conformance_tests!(@call $variant $name $factory);
                }
            )*

            #[test]
            fn every_check_of_the_suite_is_run() {
                assert_eq!(
                    &[$(stringify!($name)),*][..],
                    $crate::testing::conformance::CHECKS,
                    "this release of `conformance_tests!` does not run every check"
                );
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the checks.

/// The aggregate type of the streams the checks write.
const AGGREGATE_TYPE: &str = "conformance";

/// The stream `id` of the checks' aggregate type.
fn stream(id: &str) -> StreamId {
    StreamId::new(AGGREGATE_TYPE, id)
}

/// An event whose JSON payload names it, so a failure message shows which event is where.
fn event(label: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ConformanceChecked".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: serde_json::to_vec(label).unwrap_or_default(),
        metadata: Metadata::default(),
    }
}

/// `count` events labelled `label#0`, `label#1`, ...
fn batch(label: &str, count: usize) -> Vec<NewEvent> {
    (0..count).map(|i| event(&format!("{label}#{i}"))).collect()
}

/// The event ids of new events.
fn new_ids(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// The event ids of recorded events.
fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// The versions of recorded events, as numbers.
fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

/// Appends and panics if the store refuses.
async fn append_ok<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendOutcome {
    let count = events.len();
    match store.append(stream, expected, events).await {
        Ok(outcome) => outcome,
        Err(error) => panic!(
            "appending {count} event(s) to `{stream}` with expected {expected:?} must succeed, \
             got {error:?}"
        ),
    }
}

/// Every event of `stream`, panicking on a store error.
async fn read_stream_all<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, VersionRange::all())
        .await
        .unwrap_or_else(|error| panic!("read_stream(`{stream}`, all) failed: {error:?}"))
}

/// The whole global log, read in pages of 100.
async fn read_log<S: EventStore + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    let mut log = Vec::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store
            .read_all(after, 100)
            .await
            .unwrap_or_else(|error| panic!("read_all({after}, 100) failed: {error:?}"));
        let Some(last) = page.last() else {
            return log;
        };
        assert_page(&page, after, 100);
        after = last.global_position;
        log.extend(page);
    }
}

/// Asserts that a page `read_all(after, limit)` returned holds at most `limit` events, all
/// after `after`, in strictly increasing position order; so a paging loop always advances.
fn assert_page(page: &[RecordedEvent], after: GlobalPosition, limit: usize) {
    assert!(
        page.len() <= limit,
        "read_all({after}, {limit}) returned {} events, more than the limit",
        page.len()
    );
    if let Some(first) = page.first() {
        assert!(
            first.global_position > after,
            "read_all({after}, {limit}) returned an event at position {}, not after {after}",
            first.global_position
        );
    }
    assert_positions_increase(page, &format!("read_all({after}, {limit})"));
}

/// The store's `last_position`, panicking on a store error.
async fn last_position<S: EventStore + ?Sized>(store: &S) -> GlobalPosition {
    store
        .last_position()
        .await
        .unwrap_or_else(|error| panic!("last_position() failed: {error:?}"))
}

/// Waits for a spawned task, re-raising its panic (with its message) in the check.
async fn join<T>(handle: JoinHandle<T>) -> T {
    match handle.await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("a task of the check was cancelled: {error}"),
    }
}

/// Asserts that `result` is a `Conflict` on `stream` carrying `expected` and `actual`.
fn assert_conflict(
    result: Result<AppendOutcome, StoreError>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: Option<Version>,
    sentence: &str,
) {
    match result {
        Err(StoreError::Conflict(conflict)) => {
            assert_eq!(
                (&conflict.stream, conflict.expected, conflict.actual),
                (stream, expected, actual),
                "{sentence}: the conflict must carry the stream, the expected version and the \
                 stream's actual version"
            );
        }
        Err(other) => panic!("{sentence}: expected StoreError::Conflict, got {other:?}"),
        Ok(outcome) => panic!(
            "{sentence}: expected StoreError::Conflict, the append succeeded with {outcome:?}"
        ),
    }
}

/// Asserts that positions strictly increase along `events`.
fn assert_positions_increase(events: &[RecordedEvent], context: &str) {
    for pair in events.windows(2) {
        assert!(
            pair[0].global_position < pair[1].global_position,
            "{context}: global positions must strictly increase, found {} then {}",
            pair[0].global_position,
            pair[1].global_position
        );
    }
}
