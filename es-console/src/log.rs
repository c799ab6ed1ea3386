//! The global log, newest first: a page of events read backwards from a position, bounded work
//! however large the store is.

use es_core::{EventFilter, EventStore, GlobalPosition, RecordedEvent, StoreError};

/// How many positions one read of a filtered page looks at.
const FILTERED_WINDOW: u64 = 2_048;

/// The most positions one filtered page looks at before it stops and offers to go on: a
/// filter that matches nothing costs a bounded read, not a scan of the store.
pub(crate) const SCAN_BUDGET: u64 = 100_000;

/// One page of the log, newest first.
#[derive(Debug, Default)]
pub(crate) struct LogSlice {
    /// The events, newest first.
    pub(crate) events: Vec<RecordedEvent>,
    /// The head of the log when the page was read.
    pub(crate) head: GlobalPosition,
    /// Positions below this one are not looked at yet: the `before` of the next (older) page,
    /// `None` when the page reached the start of the log.
    pub(crate) older: Option<GlobalPosition>,
}

/// At most `limit` events passing `filter`, newest first, with positions below `before` (or
/// from the head of the log).
///
/// Reads go backwards in windows with `read_all(from, n)`, which every store serves from its
/// position index: the cost depends on the page, never on the size of the store. Nothing
/// counts the log; the head comes from `last_position`.
pub(crate) async fn newest_first<S: EventStore>(
    store: &S,
    before: Option<GlobalPosition>,
    filter: &EventFilter,
    limit: usize,
) -> Result<LogSlice, StoreError> {
    let head = store.last_position().await?;
    // `high` is the highest position not looked at yet (inclusive); 0 is the start.
    let mut high = match before {
        Some(before) => before.get().saturating_sub(1).min(head.get()),
        None => head.get(),
    };
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(limit);
    let mut scanned = 0_u64;
    while high > 0 && events.len() < limit && scanned < SCAN_BUDGET {
        let room = limit - events.len();
        let window = if filter.is_all() {
            room as u64
        } else {
            FILTERED_WINDOW
        };
        let low = high.saturating_sub(window);
        // Gaps in the positions (a store may burn some) let the read run past `high`.
        let read = store
            .read_all(GlobalPosition(low), to_usize(high - low))
            .await?;
        let mut matching: Vec<RecordedEvent> = read
            .into_iter()
            .take_while(|event| event.global_position.get() <= high)
            .filter(|event| filter.matches(event))
            .collect();
        matching.reverse();
        if matching.len() > room {
            matching.truncate(room);
            events.extend(matching);
            // The page ends inside this window: the next page starts below its last event.
            high = events
                .last()
                .map_or(low, |event| event.global_position.get() - 1);
            break;
        }
        events.extend(matching);
        scanned += high - low;
        high = low;
    }
    Ok(LogSlice {
        events,
        head,
        older: (high > 0).then_some(GlobalPosition(high + 1)),
    })
}

/// The last `count` positions' events, oldest first (for the events-per-minute chart).
pub(crate) async fn recent<S: EventStore>(
    store: &S,
    head: GlobalPosition,
    count: u64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let from = head.get().saturating_sub(count);
    store.read_all(GlobalPosition(from), to_usize(count)).await
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use es_core::{CodecId, ExpectedVersion, InMemory, NewEvent, StreamId};

    use super::*;

    fn event(event_type: &str) -> NewEvent {
        NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            codec: CodecId::Json,
            payload: b"{}".to_vec(),
            metadata: es_core::Metadata::default(),
        }
    }

    /// A store of `n` events alternating between two types on two streams.
    async fn store(n: u64) -> InMemory {
        let store = InMemory::new();
        for i in 1..=n {
            let (stream, kind) = if i % 2 == 0 {
                (StreamId::new("a", "1"), "Even")
            } else {
                (StreamId::new("b", "1"), "Odd")
            };
            store
                .append(&stream, ExpectedVersion::Any, vec![event(kind)])
                .await
                .expect("append");
        }
        store
    }

    fn positions(slice: &LogSlice) -> Vec<u64> {
        slice
            .events
            .iter()
            .map(|event| event.global_position.get())
            .collect()
    }

    #[tokio::test]
    async fn pages_walk_the_whole_log_newest_first() {
        let store = store(25).await;
        let all = EventFilter::all();
        let first = newest_first(&store, None, &all, 10).await.expect("page");
        assert_eq!(first.head, GlobalPosition(25));
        assert_eq!(positions(&first), (16..=25).rev().collect::<Vec<_>>());
        assert_eq!(first.older, Some(GlobalPosition(16)));
        let second = newest_first(&store, first.older, &all, 10)
            .await
            .expect("page");
        assert_eq!(positions(&second), (6..=15).rev().collect::<Vec<_>>());
        let third = newest_first(&store, second.older, &all, 10)
            .await
            .expect("page");
        assert_eq!(positions(&third), (1..=5).rev().collect::<Vec<_>>());
        assert_eq!(third.older, None);
    }

    #[tokio::test]
    async fn a_filtered_page_ends_inside_a_window_and_the_next_goes_on_below() {
        let store = store(40).await;
        let even = EventFilter::all().event_type("Even");
        let first = newest_first(&store, None, &even, 5).await.expect("page");
        assert_eq!(positions(&first), vec![40, 38, 36, 34, 32]);
        assert_eq!(first.older, Some(GlobalPosition(32)));
        let second = newest_first(&store, first.older, &even, 100)
            .await
            .expect("page");
        assert_eq!(
            positions(&second),
            (1..=15).rev().map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(second.older, None);
        let by_type = EventFilter::all().aggregate_type("b");
        let odd = newest_first(&store, None, &by_type, 3).await.expect("page");
        assert_eq!(positions(&odd), vec![39, 37, 35]);
    }

    #[tokio::test]
    async fn before_past_the_head_and_an_empty_store_are_fine() {
        let store = store(3).await;
        let all = EventFilter::all();
        let page = newest_first(&store, Some(GlobalPosition(1_000)), &all, 10)
            .await
            .expect("page");
        assert_eq!(positions(&page), vec![3, 2, 1]);
        let page = newest_first(&store, Some(GlobalPosition(1)), &all, 10)
            .await
            .expect("page");
        assert!(page.events.is_empty());
        assert_eq!(page.older, None);
        let empty = newest_first(&InMemory::new(), None, &all, 10)
            .await
            .expect("page");
        assert!(empty.events.is_empty());
        assert_eq!(empty.older, None);
    }

    #[tokio::test]
    async fn a_filter_matching_nothing_stops_at_the_scan_budget() {
        let store = store(10).await;
        let none = EventFilter::all().event_type("Missing");
        let page = newest_first(&store, None, &none, 10).await.expect("page");
        assert!(page.events.is_empty());
        assert_eq!(page.older, None, "a small store is scanned to its start");
    }
}
