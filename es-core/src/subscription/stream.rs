//! [`Subscription`]: a cursor over the log that reads one page at a time and sleeps on the
//! store's wake-up signal when it has read everything.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::{EventFilter, LogPage, PageSource, Wakeups};
use crate::event::RecordedEvent;
use crate::store::StoreError;
use crate::types::GlobalPosition;

/// How many events a subscription reads at once unless told otherwise (the projection
/// registry's page size, so a daemon and a rebuild read alike).
pub const DEFAULT_PAGE_SIZE: usize = 512;

/// The first wait before retrying a read that failed; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(20);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

type Reading =
    Pin<Box<dyn Future<Output = (Cursor, Result<Vec<RecordedEvent>, StoreError>)> + Send>>;

/// A live subscription to a store's log: every event after a position that passes a filter,
/// exactly once, in global-position order; first what the log holds, then each new event as
/// its append commits. See [`Subscribe`](super::Subscribe) for the contract.
///
/// Consume it as a [`Stream`](futures_core::Stream) of `Result<RecordedEvent, StoreError>`
/// (one event at a time), or with [`Subscription::next_batch`] (a page at a time). Both are
/// cancel-safe: dropping a pending `next_batch` or `next` loses nothing; the read in flight is
/// kept and the next call picks it up.
///
/// It holds at most one page of events and a registration for wake-ups; dropping it frees
/// both. It keeps its store's connections open while it lives.
pub struct Subscription {
    /// The cursor, while no read is in flight.
    cursor: Option<Cursor>,
    /// The read in flight, which owns the cursor until it finishes.
    reading: Option<Reading>,
    /// The page in hand, not yet delivered.
    page: VecDeque<RecordedEvent>,
    /// The position of the last event delivered.
    delivered: GlobalPosition,
    /// How far the log was read when the last page was taken from the cursor: every event up
    /// to here is delivered, in hand, or did not pass the filter.
    read_to: GlobalPosition,
    /// How far the cursor has read past events that did not pass the filter, while no event
    /// is pending (it advances during a read in flight, so `position` moves while a filtered
    /// subscription waits).
    skipped_to: Arc<AtomicU64>,
    wakeups: Arc<Wakeups>,
    /// Whether the stream ended (after yielding [`StoreError::Closed`]).
    ended: bool,
}

/// The state a read needs, moved into the read while it runs.
struct Cursor {
    source: Arc<dyn PageSource>,
    commits: watch::Receiver<u64>,
    filter: EventFilter,
    after: GlobalPosition,
    skipped_to: Arc<AtomicU64>,
    page_size: usize,
    poll_interval: Option<Duration>,
    /// The wait before the next read, after a failed one.
    retry_delay: Option<Duration>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position())
            .field("in_hand", &self.page.len())
            .field("reading", &self.reading.is_some())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription reading pages from `source`, woken by `wakeups`, delivering the events
    /// after `after` that pass `filter`. For store implementations: an application gets its
    /// subscriptions from [`Subscribe::subscribe`](super::Subscribe::subscribe).
    ///
    /// `source` must be gap-safe (see [`PageSource`]) and `wakeups` must be woken after every
    /// commit; a store that cannot promise the second sets a poll interval with
    /// [`Subscription::with_poll_interval`].
    pub fn new(
        source: Arc<dyn PageSource>,
        wakeups: Arc<Wakeups>,
        after: GlobalPosition,
        filter: EventFilter,
    ) -> Self {
        let skipped_to = Arc::new(AtomicU64::new(after.get()));
        Subscription {
            cursor: Some(Cursor {
                source,
                commits: wakeups.listen(),
                filter,
                after,
                skipped_to: Arc::clone(&skipped_to),
                page_size: DEFAULT_PAGE_SIZE,
                poll_interval: None,
                retry_delay: None,
            }),
            reading: None,
            page: VecDeque::new(),
            delivered: after,
            read_to: after,
            skipped_to,
            wakeups,
            ended: false,
        }
    }

    /// This subscription reading up to `page_size` events at a time (at least 1; the default
    /// is [`DEFAULT_PAGE_SIZE`]). Takes effect from the next read.
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        if let Some(cursor) = &mut self.cursor {
            cursor.page_size = page_size.max(1);
        }
        self
    }

    /// This subscription also reading the log every `interval` while it waits, so a missed
    /// wake-up only delays events (`None`: rely on wake-ups alone).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Option<Duration>) -> Self {
        if let Some(cursor) = &mut self.cursor {
            cursor.poll_interval = interval.filter(|interval| !interval.is_zero());
        }
        self
    }

    /// The log position this subscription has delivered or read past: at least the position
    /// of the last event delivered, and with a filter possibly beyond it (the events in
    /// between did not pass). Resuming a new subscription from here delivers exactly what
    /// this one has not.
    #[must_use]
    pub fn position(&self) -> GlobalPosition {
        if self.page.is_empty() {
            let skipped_to = GlobalPosition(self.skipped_to.load(Ordering::Acquire));
            self.delivered.max(self.read_to).max(skipped_to)
        } else {
            self.delivered
        }
    }

    /// The next events, in order: at least one, at most one page. Waits until there is one.
    ///
    /// # Errors
    /// The store's error when a read fails. Nothing is lost or skipped: the next call reads
    /// again from [`Subscription::position`] (after a short, growing delay while reads keep
    /// failing).
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        poll_fn(|cx| self.poll_batch(cx)).await
    }

    /// Polls for the next batch: the page in hand, or the next page read.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<RecordedEvent>, StoreError>> {
        if self.page.is_empty() {
            let events = ready!(self.poll_read(cx))?;
            self.deliver_whole(&events);
            return Poll::Ready(Ok(events));
        }
        // The page in hand as it is (no copy when its events sit in one piece).
        let events = Vec::from(std::mem::take(&mut self.page));
        self.wakeups.release(events.len());
        self.deliver_whole(&events);
        Poll::Ready(Ok(events))
    }

    fn deliver_whole(&mut self, events: &[RecordedEvent]) {
        if let Some(last) = events.last() {
            self.delivered = last.global_position;
            trace_batch(events);
        }
    }

    /// Polls the read in flight, starting one if there is none.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<RecordedEvent>, StoreError>> {
        let mut reading = match (self.reading.take(), self.cursor.take()) {
            (Some(reading), _) => reading,
            (None, Some(cursor)) => Box::pin(cursor.next_page()),
            (None, None) => {
                unreachable!("a subscription holds its cursor or the read that owns it")
            }
        };
        match reading.as_mut().poll(cx) {
            Poll::Pending => {
                self.reading = Some(reading);
                Poll::Pending
            }
            Poll::Ready((cursor, result)) => {
                // The page (if any) is taken in the same step, so `read_to` never runs ahead of
                // what the subscriber has or had.
                self.read_to = cursor.after;
                self.cursor = Some(cursor);
                Poll::Ready(result)
            }
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<RecordedEvent, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let event = loop {
            if let Some(event) = this.page.pop_front() {
                break event;
            }
            match ready!(this.poll_read(cx)) {
                Ok(events) => {
                    trace_batch(&events);
                    this.wakeups.hold(events.len());
                    this.page = events.into();
                }
                Err(error) => {
                    this.ended = matches!(error, StoreError::Closed);
                    return Poll::Ready(Some(Err(error)));
                }
            }
        };
        this.wakeups.release(1);
        this.delivered = event.global_position;
        Poll::Ready(Some(Ok(event)))
    }
}

/// A `subscription_batch` span (first and last position, count) with one event in it, for a
/// batch handed to the subscriber: whole by `next_batch`, event by event through the stream.
fn trace_batch(events: &[RecordedEvent]) {
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        let span = tracing::debug_span!(
            "subscription_batch",
            first = first.global_position.get(),
            last = last.global_position.get(),
            count = events.len(),
        );
        span.in_scope(|| tracing::debug!("subscription delivers a batch"));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.wakeups.release(self.page.len());
    }
}

impl Cursor {
    /// Reads until at least one event passes the filter, waiting for commits when the log is
    /// read to its end. Returns the cursor with the outcome so the subscription can keep it.
    async fn next_page(mut self) -> (Self, Result<Vec<RecordedEvent>, StoreError>) {
        let result = self.read_until_events().await;
        (self, result)
    }

    async fn read_until_events(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            if let Some(delay) = self.retry_delay {
                tokio::time::sleep(delay).await;
            }
            // A source that is always ready (the in-memory store) must still let the other
            // tasks of the runtime run: each read counts against the task's budget.
            tokio::task::consume_budget().await;
            // Mark the signal seen before reading: a commit after this point wakes the wait
            // below, and one before it is visible to the read.
            self.commits.borrow_and_update();
            let span = tracing::debug_span!(
                "subscription_page",
                after = self.after.get(),
                limit = self.page_size,
                scanned_to = tracing::field::Empty,
                events = tracing::field::Empty,
            );
            let read = self
                .source
                .read_page(self.after, &self.filter, self.page_size)
                .instrument(span.clone())
                .await;
            let page = match read {
                Ok(page) => {
                    self.retry_delay = None;
                    page
                }
                Err(error) => {
                    self.retry_delay = Some(
                        self.retry_delay
                            .map_or(FIRST_RETRY_DELAY, |delay| (delay * 2).min(MAX_RETRY_DELAY)),
                    );
                    return Err(error);
                }
            };
            let LogPage {
                mut events,
                scanned_to,
                at_head,
            } = page;
            span.record("scanned_to", scanned_to.get());
            span.record("events", events.len());
            // Whatever the source returns, deliver each position once and in order.
            events.retain(|event| event.global_position > self.after);
            if let Some(pair) = events
                .windows(2)
                .find(|pair| pair[0].global_position >= pair[1].global_position)
            {
                return Err(StoreError::Corrupt {
                    location: format!("the page of the log after position {}", self.after),
                    reason: format!(
                        "position {} is followed by position {}",
                        pair[0].global_position, pair[1].global_position
                    ),
                });
            }
            let last = events
                .last()
                .map_or(scanned_to, |event| event.global_position);
            self.after = self.after.max(scanned_to).max(last);
            if !events.is_empty() {
                return Ok(events);
            }
            // Nothing pending: what was read past did not pass the filter.
            self.skipped_to.store(self.after.get(), Ordering::Release);
            if at_head {
                self.wait().await;
            }
        }
    }

    /// Waits for a wake-up, or for the poll interval to pass.
    async fn wait(&mut self) {
        let changed = self.commits.changed();
        match self.poll_interval {
            Some(interval) => {
                // Either way the log is read again: a timeout is the fallback for a lost
                // wake-up. A closed signal (the store dropped it) leaves the poll.
                let _ = tokio::time::timeout(interval, changed).await;
            }
            None => {
                if changed.await.is_err() {
                    // The store dropped its signal: never woken again, so poll slowly rather
                    // than stall.
                    tokio::time::sleep(MAX_RETRY_DELAY).await;
                }
            }
        }
    }
}
