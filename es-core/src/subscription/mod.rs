//! Live subscriptions: every new event pushed to its readers as its append commits.
//!
//! [`Subscribe::subscribe`] gives a [`Subscription`]: a [`Stream`](futures_core::Stream) of
//! the events after a position that pass an [`EventFilter`]. It first reads what the log
//! already holds, then waits for commits and reads each new event, with no gap, no duplicate
//! and no reordering at the switch, because there is no switch: a subscription is a cursor
//! over the log that sleeps when it has read to the end.
//!
//! # Example
//!
//! ```
//! use es_core::{
//!     CodecId, EventFilter, EventStore, ExpectedVersion, GlobalPosition, InMemory, NewEvent,
//!     StreamId, Subscribe,
//! };
//!
//! fn event(event_type: &str) -> NewEvent {
//!     NewEvent {
//!         event_id: uuid::Uuid::now_v7(),
//!         event_type: event_type.into(),
//!         schema_version: 1,
//!         codec: CodecId::Json,
//!         payload: b"{}".to_vec(),
//!         metadata: Default::default(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), es_core::StoreError> {
//! let store = InMemory::new();
//! let order = StreamId::new("order", "7");
//! store
//!     .append(&order, ExpectedVersion::NoStream, vec![event("OrderCreated")])
//!     .await?;
//!
//! // Every shipment, from the start of the log: what is stored, then what comes.
//! let filter = EventFilter::all().event_type("OrderShipped");
//! let mut shipments = store.subscribe(GlobalPosition::START, filter);
//!
//! let writer = store.clone();
//! tokio::spawn(async move {
//!     let paid_and_shipped = vec![event("PaymentProcessed"), event("OrderShipped")];
//!     writer.append(&order, ExpectedVersion::Any, paid_and_shipped).await
//! });
//!
//! let batch = shipments.next_batch().await?;
//! assert_eq!(batch[0].event_type, "OrderShipped");
//! assert_eq!(batch[0].global_position, GlobalPosition(3));
//! // The subscription has read everything up to the shipment.
//! assert_eq!(shipments.position(), GlobalPosition(3));
//! # Ok(())
//! # }
//! ```
//!
//! # Why memory stays bounded
//!
//! A store keeps no queue per subscriber. A commit only wakes the subscriptions (a counter in
//! a [`tokio::sync::watch`] channel, see [`Wakeups`]); each subscription then reads the log
//! from its own position, one page at a time, and holds at most that page. A subscriber that
//! stalls costs the store nothing while it stalls, and catches up from the log when it
//! resumes. [`Subscribe::subscription_stats`] shows it: the events held, summed over every
//! subscription, never exceed one page each.
//!
//! # How each store delivers
//!
//! - [`InMemory`](crate::InMemory): every append wakes the subscriptions.
//! - [`Sqlite`](crate::store::sqlite::Sqlite): the writer thread wakes them after each
//!   commit; appends by other processes are seen by a cheap change check (`PRAGMA
//!   data_version` on a dedicated connection) at an interval set by
//!   `SqliteOptions::with_change_check_interval`, run only while a subscription is alive.
//! - `Postgres` (feature `postgres`): each append sends a `NOTIFY` on a channel named after the
//!   store's schema, inside its transaction; one `LISTEN` connection per store, opened while a
//!   subscription is alive and reopened if it drops, wakes the subscriptions; a slow poll
//!   (`PostgresOptions::with_subscription_poll_interval`) is the fallback, so a lost
//!   notification only delays. Reads never pass the store's gap-safe read bound.
//!
//! The filter is evaluated in SQL on both SQL stores, and each filtered read scans a bounded
//! range of positions and says how far it got, so a subscriber to rare events moves past the
//! others without reading them twice.
//!
//! # Tracing
//!
//! At `debug` level: a `subscription_page` span around every page a subscription reads
//! (`after`, `limit`, then `scanned_to` and `events`), and a `subscription_batch` span for every
//! batch handed to the subscriber (`first`, `last`, `count`). The stores' own `append`,
//! `append_streams`, `read_stream`, `read_stream_until` and `read_all` spans carry the stream,
//! the positions and the counts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::event::RecordedEvent;
use crate::store::{EventStore, StoreError};
use crate::types::GlobalPosition;

mod filter;
mod stream;
#[cfg(test)]
mod tests;
mod wakeups;

pub use filter::EventFilter;
pub use stream::{Subscription, DEFAULT_PAGE_SIZE};
pub use wakeups::{SubscriptionStats, Wakeups};

/// The most positions one filtered read of an SQL store scans, so a read for rare events
/// stays short; it reports how far it got and the next read goes on from there.
pub(crate) const SCAN_WINDOW: u64 = 8192;

/// A store that pushes new events to subscribers.
///
/// # Contract
///
/// Every implementation guarantees, and the conformance suite checks (its checks named
/// `subscription_*`):
///
/// 1. **Exactly once, in order.** A subscription from `after` delivers every event with a
///    position above `after` that passes the filter, each exactly once, in global-position
///    order: first the events already stored, then each new one after its append commits.
///    Nothing is skipped, repeated or reordered where one turns into the other, however the
///    appends race with the subscription.
/// 2. **Gap-safe.** A subscription delivers an event only once no event with a lower position
///    can still appear (the rule [`EventStore::read_all`] keeps).
/// 3. **Any start.** `after` may be [`GlobalPosition::START`], the head of the log, or a
///    position the log has not reached: then it delivers the events above `after` once they
///    exist, and nothing before.
/// 4. **Filtered.** Only events passing the filter are delivered; the others are read past,
///    and [`Subscription::position`] moves beyond them.
/// 5. **Live.** An event is delivered without any call on the store: after a commit made
///    through any handle of the store in this process, and, for stores shared by processes,
///    after one made by another process (possibly after a store-configured interval).
/// 6. **Bounded.** The store buffers no events for a subscriber; a subscription holds at most
///    one page. A subscriber that stops reading for any length of time, then resumes, gets
///    every event it missed, from the log.
/// 7. **Owned and freed.** A subscription is `'static` and `Send`, and dropping it at any
///    point (mid-stream, mid-read) frees everything it held; the store's
///    [`subscription_stats`](Subscribe::subscription_stats) then no longer count it.
/// 8. **Errors are not losses.** A failed read is yielded as an error and the subscription
///    stays usable: the next poll reads again from [`Subscription::position`]. Once the store
///    is closed, the stream yields [`StoreError::Closed`] and ends.
pub trait Subscribe: EventStore {
    /// Every event after `after` that passes `filter`, exactly once, in global-position order:
    /// what the log holds, then each new event as its append commits.
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription;

    /// How many subscriptions are alive and how many events they hold.
    fn subscription_stats(&self) -> SubscriptionStats;
}

macro_rules! forward_subscribe {
    ($($ty:ty),*) => {$(
        impl<S: Subscribe + ?Sized> Subscribe for $ty {
            fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
                (**self).subscribe(after, filter)
            }

            fn subscription_stats(&self) -> SubscriptionStats {
                (**self).subscription_stats()
            }
        }
    )*};
}

forward_subscribe!(&S, Arc<S>, Box<S>);

/// One page of a filtered read of the log, from [`PageSource::read_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPage {
    /// The events that passed the filter, in position order.
    pub events: Vec<RecordedEvent>,
    /// The read looked at every position up to and including this one: the next read goes on
    /// after it. At least the position of the last event of the page.
    pub scanned_to: GlobalPosition,
    /// Whether the read reached the last position readable now, so that reading again before
    /// another commit finds nothing.
    pub at_head: bool,
}

/// The boxed future of [`PageSource::read_page`].
pub type PageFuture<'a> = Pin<Box<dyn Future<Output = Result<LogPage, StoreError>> + Send + 'a>>;

/// What a [`Subscription`] reads: filtered pages of a store's log. For store implementations.
///
/// `read_page` must keep the gap-safety of [`EventStore::read_all`]: once a page has reported
/// `scanned_to = p`, no event at or below `p` may become visible later.
pub trait PageSource: Send + Sync + 'static {
    /// At most `limit` events after `after` that pass `filter`, in position order, and how
    /// far the read looked.
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a>;
}

/// A [`PageSource`] for any [`EventStore`], built on [`EventStore::read_all`] with the filter
/// applied in memory. For stores that have no filtered read of their own.
#[derive(Clone, Debug)]
pub struct ReadAllPages<S>(pub S);

impl<S: EventStore + 'static> PageSource for ReadAllPages<S> {
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a> {
        Box::pin(async move {
            let limit = limit.max(1);
            let events = self.0.read_all(after, limit).await?;
            let at_head = events.len() < limit;
            let scanned_to = events.last().map_or(after, |event| event.global_position);
            let events = events
                .into_iter()
                .filter(|event| filter.matches(event))
                .collect();
            Ok(LogPage {
                events,
                scanned_to,
                at_head,
            })
        })
    }
}
