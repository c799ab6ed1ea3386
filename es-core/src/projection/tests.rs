//! One test per sentence of the projection contract, with a tiny handwritten event set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::clock::ManualClock;
use crate::codec::CodecId;
use crate::event::{DecodeError, EventSet, NewEvent};
use crate::snapshot::{ProjectionStore, SavedProjection};
use crate::store::{
    AppendOutcome, EventStore, ExpectedVersion, InMemory, StoreError, StreamBatch, VersionRange,
};
use crate::types::StreamId;

// --- a tiny event set, written by hand (no derive) -------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Added {
    amount: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Reset;

#[derive(Clone, Debug, PartialEq)]
enum CounterEvent {
    Added(Added),
    Reset(Reset),
}

impl EventSet for CounterEvent {
    const EVENT_TYPES: &'static [&'static str] = &["Added", "Reset"];

    fn event_type(&self) -> &'static str {
        match self {
            CounterEvent::Added(_) => "Added",
            CounterEvent::Reset(_) => "Reset",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self, codec: CodecId) -> Result<Vec<u8>, crate::CodecError> {
        match self {
            CounterEvent::Added(event) => codec.encode(event),
            CounterEvent::Reset(event) => codec.encode(event),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        let payload_error = |source| DecodeError::Payload {
            event_type: event_type.into(),
            schema_version,
            source,
        };
        match event_type {
            "Added" => codec
                .decode(payload)
                .map(CounterEvent::Added)
                .map_err(payload_error),
            "Reset" => codec
                .decode(payload)
                .map(CounterEvent::Reset)
                .map_err(payload_error),
            other => Err(DecodeError::UnknownEventType {
                event_type: other.into(),
            }),
        }
    }
}

fn added(amount: i64) -> CounterEvent {
    CounterEvent::Added(Added { amount })
}

// --- read models -------------------------------------------------------------------------------

/// The value of every counter: a read model over the `counter` aggregate only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Totals {
    values: BTreeMap<String, i64>,
}

impl Projection for Totals {
    const NAME: &'static str = "totals";
    type Error = DecodeError;

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream.aggregate_type() == "counter"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        let decoded = event.decode::<CounterEvent>()?;
        let value = self
            .values
            .entry(event.stream.aggregate_id().to_owned())
            .or_default();
        match decoded {
            CounterEvent::Added(Added { amount }) => *value += amount,
            CounterEvent::Reset(Reset) => *value = 0,
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.values.clear();
    }
}

/// Every position it was given, in order: proves each event arrives once, in global order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seen {
    positions: Vec<GlobalPosition>,
}

/// Infallible: written without an error type.
impl InfallibleProjection for Seen {
    const NAME: &'static str = "seen";

    fn apply(&mut self, event: &RecordedEvent) {
        self.positions.push(event.global_position);
    }

    fn reset(&mut self) {
        self.positions.clear();
    }
}

/// Refuses any addition of exactly `refused` (its configuration survives resets).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Picky {
    refused: i64,
    sum: i64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("additions of {0} are refused")]
struct Refused(i64);

impl Projection for Picky {
    const NAME: &'static str = "picky";
    type Error = Refused;

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.event_type == "Added"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Refused> {
        let Ok(CounterEvent::Added(Added { amount })) = event.decode::<CounterEvent>() else {
            return Ok(());
        };
        if amount == self.refused {
            return Err(Refused(amount));
        }
        self.sum += amount;
        Ok(())
    }

    fn reset(&mut self) {
        self.sum = 0;
    }
}

// --- helpers -----------------------------------------------------------------------------------

async fn append(
    store: &impl EventStore,
    kind: &str,
    id: &str,
    events: &[CounterEvent],
) -> AppendOutcome {
    let events = events
        .iter()
        .map(|event| NewEvent::encode(event, CodecId::Json).unwrap())
        .collect();
    store
        .append(&StreamId::new(kind, id), ExpectedVersion::Any, events)
        .await
        .unwrap()
}

/// Seven events over three streams, two aggregate types: positions 1..=7.
async fn seeded() -> InMemory {
    let store = InMemory::new();
    append(&store, "counter", "a", &[added(1), added(2)]).await;
    append(&store, "other", "x", &[added(100)]).await;
    append(&store, "counter", "b", &[added(10)]).await;
    append(
        &store,
        "counter",
        "a",
        &[CounterEvent::Reset(Reset), added(5)],
    )
    .await;
    append(&store, "counter", "b", &[added(20)]).await;
    store
}

fn registry() -> ProjectionRegistry {
    ProjectionRegistry::new()
        .with(Totals::default())
        .unwrap()
        .with(Seen::default())
        .unwrap()
}

fn positions(range: std::ops::RangeInclusive<u64>) -> Vec<GlobalPosition> {
    range.map(GlobalPosition).collect()
}

fn totals(pairs: &[(&str, i64)]) -> Totals {
    Totals {
        values: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    }
}

// --- catch-up ------------------------------------------------------------------------------------

#[tokio::test]
async fn catch_up_applies_every_event_once_in_global_order() {
    let store = seeded().await;
    let mut registry = registry().with_page_size(3);
    let report = registry.catch_up(&store).await.unwrap();
    assert_eq!(
        report,
        CatchUpReport {
            events: 7,
            position: GlobalPosition(7)
        }
    );
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=7));
    assert_eq!(
        registry.get::<Totals>().unwrap(),
        &totals(&[("a", 5), ("b", 30)])
    );

    // Nothing new: nothing applied, nothing applied twice.
    let again = registry.catch_up(&store).await.unwrap();
    assert_eq!(
        again,
        CatchUpReport {
            events: 0,
            position: GlobalPosition(7)
        }
    );
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=7));
}

#[tokio::test]
async fn incremental_catch_up_equals_one_pass() {
    let store = InMemory::new();
    let mut incremental = registry().with_page_size(2);
    let mut applied = 0;
    for round in 0..5 {
        append(&store, "counter", "a", &[added(round), added(1)]).await;
        append(&store, "other", "x", &[added(round)]).await;
        applied += incremental.catch_up(&store).await.unwrap().events;
    }
    let mut whole = registry();
    let report = whole.catch_up(&store).await.unwrap();
    assert_eq!(applied, 15);
    assert_eq!(report.events, 15);
    assert_eq!(incremental.get::<Totals>(), whole.get::<Totals>());
    assert_eq!(incremental.get::<Seen>(), whole.get::<Seen>());
}

#[tokio::test]
async fn events_a_read_model_does_not_handle_still_advance_its_checkpoint() {
    let store = seeded().await;
    let mut registry = ProjectionRegistry::new().with(Totals::default()).unwrap();
    registry.catch_up(&store).await.unwrap();
    assert_eq!(registry.checkpoint::<Totals>(), Some(GlobalPosition(7)));
    assert!(!registry.get::<Totals>().unwrap().values.contains_key("x"));
}

#[tokio::test]
async fn a_read_model_registered_late_replays_the_log_while_the_others_only_see_what_is_new() {
    let store = seeded().await;
    let mut registry = ProjectionRegistry::new().with(Seen::default()).unwrap();
    registry.catch_up(&store).await.unwrap();
    append(&store, "counter", "c", &[added(7)]).await;
    registry.register(Totals::default()).unwrap();
    assert_eq!(registry.position(), GlobalPosition::START);

    let report = registry.catch_up(&store).await.unwrap();
    assert_eq!(
        report.events, 8,
        "the log is read from the lowest checkpoint"
    );
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=8));
    assert_eq!(
        registry.get::<Totals>().unwrap(),
        &totals(&[("a", 5), ("b", 30), ("c", 7)])
    );
    assert_eq!(
        registry.checkpoints().collect::<Vec<_>>(),
        vec![("seen", GlobalPosition(8)), ("totals", GlobalPosition(8))]
    );
}

#[tokio::test]
async fn progress_is_reported_after_every_page_up_to_the_target() {
    let store = seeded().await;
    let mut registry = registry().with_page_size(3);
    let mut reports = Vec::new();
    registry
        .catch_up_with_progress(&store, |progress| reports.push(progress))
        .await
        .unwrap();
    let seen: Vec<_> = reports
        .iter()
        .map(|p| (p.events, p.position.get()))
        .collect();
    assert_eq!(seen, vec![(3, 3), (6, 6), (7, 7)]);
    assert!(reports.iter().all(|p| p.target == GlobalPosition(7)));
}

#[tokio::test]
async fn rebuild_resets_and_replays_to_the_same_state() {
    let store = seeded().await;
    let mut registry = registry();
    registry.catch_up(&store).await.unwrap();
    let before = registry.get::<Totals>().unwrap().clone();

    let mut pages = 0;
    let report = registry
        .rebuild_with_progress(&store, |_| pages += 1)
        .await
        .unwrap();
    assert_eq!(report.events, 7);
    assert!(pages >= 1);
    assert_eq!(registry.get::<Totals>().unwrap(), &before);
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=7));
}

#[tokio::test]
async fn reset_keeps_the_configuration() {
    let store = seeded().await;
    let mut registry = ProjectionRegistry::new()
        .with(Picky {
            refused: 999,
            sum: 0,
        })
        .unwrap();
    registry.catch_up(&store).await.unwrap();
    assert_eq!(registry.get::<Picky>().unwrap().sum, 138);
    registry.reset();
    assert_eq!(
        registry.get::<Picky>(),
        Some(&Picky {
            refused: 999,
            sum: 0
        })
    );
    assert_eq!(registry.position(), GlobalPosition::START);
}

// --- errors --------------------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_read_model_is_reported_with_its_name_and_the_position_and_never_skips_the_event()
{
    let store = seeded().await;
    let mut registry = ProjectionRegistry::new()
        .with(Seen::default())
        .unwrap()
        .with(Picky {
            refused: 10,
            sum: 0,
        })
        .unwrap()
        .with(Totals::default())
        .unwrap();

    let error = registry.catch_up(&store).await.unwrap_err();
    let ProjectionError::Apply {
        projection,
        position,
        event_type,
        source,
    } = &error
    else {
        panic!("expected an apply error, got {error:?}");
    };
    assert_eq!(*projection, "picky");
    assert_eq!(*position, GlobalPosition(4));
    assert_eq!(event_type, "Added");
    assert_eq!(source.downcast_ref::<Refused>(), Some(&Refused(10)));
    assert_eq!(error.projection(), Some("picky"));

    // The failing read model stays before the event; the others match what they applied:
    // `seen` (registered before) took event 4, `totals` (after) did not get to it.
    assert_eq!(
        registry.checkpoints().collect::<Vec<_>>(),
        vec![
            ("seen", GlobalPosition(4)),
            ("picky", GlobalPosition(3)),
            ("totals", GlobalPosition(3)),
        ]
    );
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=4));
    assert_eq!(registry.get::<Picky>().unwrap().sum, 103);
    assert_eq!(registry.get::<Totals>().unwrap(), &totals(&[("a", 3)]));

    // Tried again: the same event fails again, nothing is skipped or applied twice.
    let again = registry.catch_up(&store).await.unwrap_err();
    assert!(matches!(
        again,
        ProjectionError::Apply {
            projection: "picky",
            position: GlobalPosition(4),
            ..
        }
    ));
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=4));
    assert_eq!(registry.get::<Picky>().unwrap().sum, 103);
}

#[tokio::test]
async fn a_payload_that_does_not_decode_is_a_typed_error_at_its_position() {
    let store = InMemory::new();
    append(&store, "counter", "a", &[added(1)]).await;
    let mut corrupt = NewEvent::encode(&added(2), CodecId::Json).unwrap();
    corrupt.payload = b"{not json".to_vec();
    store
        .append(
            &StreamId::new("counter", "a"),
            ExpectedVersion::Any,
            vec![corrupt],
        )
        .await
        .unwrap();

    let mut registry = ProjectionRegistry::new().with(Totals::default()).unwrap();
    let error = registry.catch_up(&store).await.unwrap_err();
    let ProjectionError::Apply {
        projection: "totals",
        position: GlobalPosition(2),
        source,
        ..
    } = error
    else {
        panic!("expected an apply error at position 2, got {error:?}");
    };
    assert!(matches!(
        source.downcast_ref::<DecodeError>(),
        Some(DecodeError::Payload { .. })
    ));
    assert_eq!(registry.checkpoint::<Totals>(), Some(GlobalPosition(1)));
    assert_eq!(registry.get::<Totals>().unwrap(), &totals(&[("a", 1)]));
}

#[test]
fn the_same_name_cannot_be_registered_twice() {
    let error = registry().with(Totals::default()).unwrap_err();
    assert_eq!(error, DuplicateProjection { name: "totals" });
    assert_eq!(registry().len(), 2);
}

#[test]
fn read_models_are_found_by_type() {
    let registry = registry();
    assert!(registry.get::<Totals>().is_some());
    assert!(registry.get::<Picky>().is_none());
    assert_eq!(registry.checkpoint::<Picky>(), None);
    assert!(ProjectionRegistry::new().is_empty());
}

// --- temporal queries ----------------------------------------------------------------------------

#[tokio::test]
async fn read_models_as_of_a_position_see_exactly_the_events_up_to_it() {
    let store = seeded().await;
    let mut registry = registry();
    registry.catch_up(&store).await.unwrap();

    let view = registry
        .as_of(&store, AsOf::Position(GlobalPosition(4)))
        .await
        .unwrap();
    assert_eq!(view.at(), AsOf::Position(GlobalPosition(4)));
    assert_eq!(view.position(), GlobalPosition(4));
    assert_eq!(view.get::<Seen>().unwrap().positions, positions(1..=4));
    assert_eq!(
        view.get::<Totals>().unwrap(),
        &totals(&[("a", 3), ("b", 10)])
    );
    // The live read models are untouched.
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=7));

    let past_the_end = registry
        .as_of(&store, AsOf::Position(GlobalPosition(99)))
        .await
        .unwrap();
    assert_eq!(past_the_end.get::<Totals>(), registry.get::<Totals>());
}

#[tokio::test]
async fn read_models_as_of_a_time_see_the_events_recorded_at_or_before_it() {
    let clock = ManualClock::new(Timestamp::from_micros(1_000_000));
    let store = InMemory::with_clock(clock.clone());
    append(&store, "counter", "a", &[added(1)]).await; // t = 1 s
    clock.advance_secs(10);
    append(&store, "counter", "a", &[added(2)]).await; // t = 11 s
    append(&store, "counter", "b", &[added(3)]).await; // t = 11 s
    clock.advance_secs(10);
    append(&store, "counter", "a", &[added(4)]).await; // t = 21 s
    let registry = registry();

    let at = |secs: i64| AsOf::Time(Timestamp::from_micros(secs * 1_000_000));
    let before_anything = registry.as_of(&store, at(0)).await.unwrap();
    assert_eq!(before_anything.get::<Totals>().unwrap(), &Totals::default());
    let first = registry.as_of(&store, at(1)).await.unwrap();
    assert_eq!(first.get::<Totals>().unwrap(), &totals(&[("a", 1)]));
    let second = registry.as_of(&store, at(20)).await.unwrap();
    assert_eq!(
        second.get::<Totals>().unwrap(),
        &totals(&[("a", 3), ("b", 3)])
    );
    assert_eq!(second.get::<Seen>().unwrap().positions, positions(1..=3));
    let now = registry.as_of(&store, at(21)).await.unwrap();
    assert_eq!(now.get::<Totals>().unwrap(), &totals(&[("a", 7), ("b", 3)]));
}

#[tokio::test]
async fn a_time_bound_follows_recorded_at_even_when_the_clock_went_backwards() {
    let clock = ManualClock::new(Timestamp::from_micros(50));
    let store = InMemory::with_clock(clock.clone());
    append(&store, "counter", "a", &[added(1)]).await; // t = 50
    clock.set(Timestamp::from_micros(10));
    // Another stream (within a stream the store never stamps an earlier time than its last).
    append(&store, "counter", "b", &[added(2)]).await; // t = 10, later position
    let view = ProjectionRegistry::new()
        .with(Totals::default())
        .unwrap()
        .as_of(&store, AsOf::Time(Timestamp::from_micros(20)))
        .await
        .unwrap();
    assert_eq!(view.get::<Totals>().unwrap(), &totals(&[("b", 2)]));
}

// --- read-your-writes ----------------------------------------------------------------------------

#[tokio::test]
async fn catch_up_to_the_position_of_an_append_shows_that_write_and_nothing_after_it() {
    let store = seeded().await;
    let mut registry = registry();
    let mine = append(&store, "counter", "mine", &[added(42)]).await;
    append(&store, "counter", "later", &[added(1)]).await;

    let report = registry.catch_up_to(&store, mine.position).await.unwrap();
    assert_eq!(report.position, mine.position);
    assert_eq!(
        registry.get::<Totals>().unwrap().values.get("mine"),
        Some(&42)
    );
    assert!(!registry
        .get::<Totals>()
        .unwrap()
        .values
        .contains_key("later"));
}

/// A store whose newest event stays invisible for the first `hidden_reads` reads, like a
/// commit another node has not seen yet.
struct Lagging {
    inner: InMemory,
    hidden_reads: AtomicU32,
}

impl Lagging {
    fn visible_end(&self, end: GlobalPosition) -> GlobalPosition {
        let hiding = self
            .hidden_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hiding {
            GlobalPosition(end.get().saturating_sub(1))
        } else {
            end
        }
    }
}

impl EventStore for Lagging {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.append_streams(batches).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.inner.read_all(after, limit).await?;
        let end = self.inner.last_position().await?;
        if self.visible_end(end) < end {
            events.retain(|event| event.global_position < end);
        }
        Ok(events)
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        let end = self.inner.last_position().await?;
        Ok(self.visible_end(end))
    }
}

#[tokio::test]
async fn catch_up_to_waits_until_the_log_shows_the_position() {
    let store = Lagging {
        inner: seeded().await,
        hidden_reads: AtomicU32::new(0),
    };
    let mine = append(&store, "counter", "mine", &[added(42)]).await;
    store.hidden_reads.store(6, Ordering::SeqCst);

    let mut registry = registry().with_wait_timeout(Duration::from_secs(60));
    let report = registry.catch_up_to(&store, mine.position).await.unwrap();
    assert_eq!(report.position, mine.position);
    assert_eq!(report.events, 8);
    assert_eq!(
        registry.get::<Totals>().unwrap().values.get("mine"),
        Some(&42)
    );
    assert_eq!(
        store.hidden_reads.load(Ordering::SeqCst),
        0,
        "it had to poll"
    );
}

#[tokio::test]
async fn catch_up_to_a_position_that_never_shows_up_gives_up_with_a_typed_error() {
    let store = seeded().await;
    let mut registry = registry().with_wait_timeout(Duration::from_millis(20));
    let error = registry
        .catch_up_to(&store, GlobalPosition(100))
        .await
        .unwrap_err();
    let ProjectionError::PositionNotReached {
        requested, reached, ..
    } = error
    else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(
        (requested, reached),
        (GlobalPosition(100), GlobalPosition(7))
    );
    // Everything visible was applied meanwhile.
    assert_eq!(registry.get::<Seen>().unwrap().positions, positions(1..=7));
}

// --- save and restore ----------------------------------------------------------------------------

#[tokio::test]
async fn restored_then_caught_up_equals_rebuilt_in_both_codecs() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let store = seeded().await;
        let mut live = registry();
        live.catch_up(&store).await.unwrap();
        live.save_to(&store, codec).await.unwrap();

        append(&store, "counter", "a", &[added(1000)]).await;
        append(&store, "counter", "d", &[added(4)]).await;

        let mut restarted = registry();
        let report = restarted.restore_from(&store).await.unwrap();
        assert_eq!(report.restored, vec!["totals", "seen"], "{codec}");
        assert_eq!(restarted.position(), GlobalPosition(7), "{codec}");
        let caught_up = restarted.catch_up(&store).await.unwrap();
        assert_eq!(
            caught_up.events, 2,
            "{codec}: only the new events are applied"
        );

        let mut rebuilt = registry();
        rebuilt.rebuild(&store).await.unwrap();
        assert_eq!(
            restarted.get::<Totals>(),
            rebuilt.get::<Totals>(),
            "{codec}"
        );
        assert_eq!(restarted.get::<Seen>(), rebuilt.get::<Seen>(), "{codec}");
        assert_eq!(restarted.position(), rebuilt.position(), "{codec}");
    }
}

#[tokio::test]
async fn a_saved_state_that_does_not_decode_is_discarded_and_replayed() {
    let store = seeded().await;
    let mut live = registry();
    live.catch_up(&store).await.unwrap();
    live.save_to(&store, CodecId::Json).await.unwrap();
    store
        .save_projection(SavedProjection {
            name: "totals".to_owned(),
            position: GlobalPosition(7),
            codec: CodecId::Json,
            state: b"{\"something\": \"else\"}".to_vec(),
            saved_at: Timestamp::EPOCH,
        })
        .await
        .unwrap();

    let mut restarted = registry().with(Picky::default()).unwrap();
    let report = restarted.restore_from(&store).await.unwrap();
    assert_eq!(report.restored, vec!["seen"]);
    assert_eq!(report.discarded, vec!["totals"]);
    assert_eq!(report.missing, vec!["picky"]);
    assert_eq!(
        restarted.checkpoint::<Totals>(),
        Some(GlobalPosition::START)
    );

    restarted.catch_up(&store).await.unwrap();
    assert_eq!(restarted.get::<Totals>(), live.get::<Totals>());
    assert_eq!(restarted.get::<Seen>(), live.get::<Seen>());
}

#[tokio::test]
async fn a_checkpoint_past_the_end_of_the_log_is_an_error_not_a_silent_skip() {
    let old_store = seeded().await;
    let mut live = registry();
    live.catch_up(&old_store).await.unwrap();
    live.save_to(&old_store, CodecId::Json).await.unwrap();

    // The event store was recreated; the saved read models (at position 7) were kept.
    let new_store = InMemory::new();
    append(&new_store, "counter", "fresh", &[added(3)]).await;
    let mut restarted = registry();
    restarted.restore_from(&old_store).await.unwrap();
    let error = restarted.catch_up(&new_store).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProjectionError::CheckpointAhead {
                checkpoint: GlobalPosition(7),
                last_position: GlobalPosition(1),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.projection().is_some());

    // Rebuilding from the new store is the way out.
    restarted.rebuild(&new_store).await.unwrap();
    assert_eq!(restarted.get::<Totals>(), Some(&totals(&[("fresh", 3)])));
}

#[tokio::test]
async fn saved_read_models_carry_their_checkpoint_and_the_clock_time() {
    let store = seeded().await;
    let clock = ManualClock::new(Timestamp::from_micros(123));
    let mut registry = registry().with_clock(clock);
    registry
        .catch_up_to(&store, GlobalPosition(5))
        .await
        .unwrap();
    registry.save_to(&store, CodecId::Postcard).await.unwrap();
    let saved = store.load_projection("totals").await.unwrap().unwrap();
    assert_eq!(saved.position, GlobalPosition(5));
    assert_eq!(saved.codec, CodecId::Postcard);
    assert_eq!(saved.saved_at, Timestamp::from_micros(123));
    assert_eq!(
        CodecId::Postcard.decode::<Totals>(&saved.state).unwrap(),
        totals(&[("a", 0), ("b", 10)])
    );
}

/// A store that rewrites what `read_all` returns: positions with gaps, or a broken order.
struct Rewritten {
    inner: InMemory,
    page: fn(Vec<RecordedEvent>) -> Vec<RecordedEvent>,
    position: fn(GlobalPosition) -> GlobalPosition,
}

impl EventStore for Rewritten {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.append_streams(batches).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Undo the position mapping to find where to resume in the inner log.
        let mut inner_after = GlobalPosition::START;
        while (self.position)(GlobalPosition(inner_after.get() + 1)) <= after {
            inner_after = GlobalPosition(inner_after.get() + 1);
        }
        let mut events = self.inner.read_all(inner_after, limit).await?;
        for event in &mut events {
            event.global_position = (self.position)(event.global_position);
        }
        Ok((self.page)(events))
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        Ok((self.position)(self.inner.last_position().await?))
    }
}

#[tokio::test]
async fn burned_positions_are_no_obstacle_to_catching_up_to_a_position() {
    // Positions 2, 4, 6, ...: the odd ones were burned.
    let store = Rewritten {
        inner: seeded().await,
        page: |page| page,
        position: |p| GlobalPosition(p.get() * 2),
    };
    let mut registry = registry().with_page_size(2);
    let report = registry
        .catch_up_to(&store, GlobalPosition(5))
        .await
        .unwrap();
    assert_eq!(report.position, GlobalPosition(5));
    assert_eq!(
        registry.get::<Seen>().unwrap().positions,
        vec![GlobalPosition(2), GlobalPosition(4)]
    );
    let rest = registry.catch_up(&store).await.unwrap();
    assert_eq!(
        rest,
        CatchUpReport {
            events: 5,
            position: GlobalPosition(14)
        }
    );
    assert_eq!(
        registry.get::<Totals>().unwrap(),
        &totals(&[("a", 5), ("b", 30)])
    );
}

#[tokio::test]
async fn a_log_out_of_order_is_a_typed_error() {
    let store = Rewritten {
        inner: seeded().await,
        page: |mut page| {
            page.swap(0, 1);
            page
        },
        position: |p| p,
    };
    let error = registry().catch_up(&store).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProjectionError::OutOfOrder {
                previous: GlobalPosition(2),
                found: GlobalPosition(1)
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn saved_read_models_are_stamped_by_the_stores_clock_by_default() {
    let clock = ManualClock::new(Timestamp::from_micros(456));
    let store = InMemory::with_clock(clock.clone());
    append(&store, "counter", "a", &[added(1)]).await;
    let mut registry = registry();
    registry.catch_up(&store).await.unwrap();
    clock.advance(std::time::Duration::from_millis(1));
    registry.save_to(&store, CodecId::Json).await.unwrap();
    let saved = store.load_projection("totals").await.unwrap().unwrap();
    assert_eq!(
        saved.saved_at,
        Timestamp::from_micros(1_456),
        "the one clock the test set, on the store"
    );
}
