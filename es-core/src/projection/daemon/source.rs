//! Where a daemon reads the log from: the store that also keeps its read models (the usual
//! case, [`StoreLog`]), or another source of the same log, such as a message broker that a
//! relay publishes the log to, with the read models kept in a local store.

use std::future::Future;

use crate::event::RecordedEvent;
use crate::store::StoreError;
use crate::subscription::{EventFilter, Subscribe, Subscription};
use crate::types::GlobalPosition;

/// A source of the global log for a [`ProjectionDaemon`](super::ProjectionDaemon), started
/// with [`DaemonBuilder::start_from`](super::DaemonBuilder::start_from).
///
/// # Contract
///
/// 1. **One log.** [`feed`](LogSource::feed), [`read_all`](LogSource::read_all) and
///    [`last_position`](LogSource::last_position) show the same log: the same events at the
///    same global positions, in position order, gap-safe as [`EventStore::read_all`](crate::EventStore::read_all) is (once
///    an event at position `p` has been returned, no event below `p` appears later).
/// 2. **The feed** delivers every event after `after`, exactly once, in position order, in
///    batches, and waits when there is nothing new. A failed read is yielded as an error and
///    the feed stays usable (the next call reads again from where it was): errors are never
///    losses. [`StoreError::Closed`] ends the daemon.
/// 3. **Durable progress.** [`saved`](LogSource::saved) is called after the daemon has
///    durably saved every running read model's state at or past a position; a source that
///    must acknowledge what it delivered (a broker's consumer) acknowledges up to there, and
///    nothing above it, so a crash can make it deliver again but never lose.
pub trait LogSource: Send + Sync + 'static {
    /// The feed's type.
    type Feed: Feed;

    /// Every event after `after`, exactly once, in position order, reading about `page_size`
    /// events at a time.
    fn feed(&self, after: GlobalPosition, page_size: usize) -> Self::Feed;

    /// At most `limit` events after `after`, in position order (for read models that read
    /// the log on their own: catching up, resumed, or restoring their state before a failed
    /// event).
    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The position of the last event of the log ([`GlobalPosition::START`] when empty).
    fn last_position(&self) -> impl Future<Output = Result<GlobalPosition, StoreError>> + Send;

    /// Every read model that reads the feed has durably saved its state at or past
    /// `position` (read models that read the log on their own are not counted: they read it
    /// through [`read_all`](LogSource::read_all)). The default does nothing.
    fn saved(&self, position: GlobalPosition) {
        let _ = position;
    }
}

/// The live part of a [`LogSource`]: batches of events in position order.
pub trait Feed: Send + 'static {
    /// The next batch (never empty), waiting until there is one.
    fn next_batch(&mut self)
        -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;
}

impl Feed for Subscription {
    fn next_batch(
        &mut self,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        Subscription::next_batch(self)
    }
}

/// A store's own log as a [`LogSource`]: the feed is a [`Subscription`], reads go to
/// [`EventStore::read_all`](crate::EventStore::read_all). What [`DaemonBuilder::start`](super::DaemonBuilder::start) uses.
#[derive(Clone, Debug)]
pub struct StoreLog<S>(pub S);

impl<S: Subscribe + 'static> LogSource for StoreLog<S> {
    type Feed = Subscription;

    fn feed(&self, after: GlobalPosition, page_size: usize) -> Subscription {
        self.0
            .subscribe(after, EventFilter::all())
            .with_page_size(page_size)
    }

    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.0.read_all(after, limit)
    }

    fn last_position(&self) -> impl Future<Output = Result<GlobalPosition, StoreError>> + Send {
        self.0.last_position()
    }
}
