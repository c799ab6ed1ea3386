//! The wake-up hint a store gives its subscriptions: a counter of committed appends, nothing
//! more. Subscriptions read their events from the log, so the store never holds events for
//! them, however far behind they fall.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

/// A store's wake-up signal for its subscriptions, and the counters that show what they cost.
///
/// A store calls [`Wakeups::wake`] after every commit (or when it learns of one made
/// elsewhere); each [`Subscription`](super::Subscription) built on it then reads the log from
/// where it stands. The signal carries no events and coalesces: a thousand commits while a
/// subscriber is busy cost it one read, and cost the store one counter.
#[derive(Debug)]
pub struct Wakeups {
    commits: watch::Sender<u64>,
    /// Events read from the log and not yet delivered, summed over the live subscriptions.
    buffered: AtomicUsize,
}

/// What the live subscriptions of a store cost it, from [`Subscribe::subscription_stats`].
///
/// [`Subscribe::subscription_stats`]: super::Subscribe::subscription_stats
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Subscriptions alive now (each is one registration for wake-ups).
    pub subscriptions: usize,
    /// Events read from the log and not yet handed to the subscriber, summed over the live
    /// subscriptions: at most one page each, however many events are appended meanwhile.
    pub buffered_events: usize,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups::new()
    }
}

impl Wakeups {
    /// A signal nobody listens to yet.
    #[must_use]
    pub fn new() -> Self {
        Wakeups {
            commits: watch::Sender::new(0),
            buffered: AtomicUsize::new(0),
        }
    }

    /// Wakes every subscription waiting for new events. Cheap (no allocation, no I/O) and
    /// callable from any thread; many calls before a subscription looks count as one.
    ///
    /// With no subscription alive it does nothing at all (one atomic load): a subscription
    /// registers for wake-ups before it first reads the log, so a commit made before it
    /// registered is in that first read, and the signal is only needed once one exists.
    pub fn wake(&self) {
        // Pairs with the registration in `listen`: a subscription registered before this
        // commit's wake-up is counted here, one registered after reads the log after it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.commits.receiver_count() == 0 {
            return;
        }
        self.commits
            .send_modify(|commits| *commits = commits.wrapping_add(1));
    }

    /// The live subscriptions and the events they hold.
    #[must_use]
    pub fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            subscriptions: self.commits.receiver_count(),
            buffered_events: self.buffered.load(Ordering::Relaxed),
        }
    }

    /// Whether no subscription is alive.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.commits.receiver_count() == 0
    }

    /// Resolves once no subscription is alive (at once if none is).
    #[cfg(feature = "postgres")]
    pub(crate) async fn idle(&self) {
        self.commits.closed().await;
    }

    pub(super) fn listen(&self) -> watch::Receiver<u64> {
        let receiver = self.commits.subscribe();
        // Pairs with the fence in `wake`: the registration is visible to every commit whose
        // wake-up comes after the log read that follows it.
        std::sync::atomic::fence(Ordering::SeqCst);
        receiver
    }

    pub(super) fn hold(&self, events: usize) {
        self.buffered.fetch_add(events, Ordering::Relaxed);
    }

    pub(super) fn release(&self, events: usize) {
        self.buffered.fetch_sub(events, Ordering::Relaxed);
    }
}
