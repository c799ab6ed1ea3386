//! Read-your-writes for many tasks at once: one registry, one catch-up at a time, serving every
//! waiter whose position it passes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::store::EventStore;
use crate::types::GlobalPosition;

use super::{ProjectionError, ProjectionRegistry};

/// The first pause between two catch-ups while a position is not visible yet.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// The longest pause between two catch-ups.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A [`ProjectionRegistry`] shared by many tasks, each waiting until the read models show its
/// own write: read-your-writes that scales with the number of writers.
///
/// [`ProjectionRegistry::catch_up_to`] needs `&mut` access, so tasks sharing a registry take
/// turns behind one lock, and each turn asks the store for the end of the log first. Here:
///
/// - A waiter whose position the read models have already seen returns at once, without any
///   store call and without waiting for the lock.
/// - Otherwise, if no catch-up is running, it runs one itself, to the end of what the log
///   shows (reading pages until a short one, one `read_all` per page; on PostgreSQL the
///   gap-safe bound is computed once per page). If one is running, it does not queue for a
///   lock: it sleeps until that run ends, and every waiter whose write committed before the
///   run began is served by it and returns, all at once, without a store call.
/// - A position the log does not show yet (a write still committing elsewhere) is polled for,
///   with growing pauses (1 ms up to 50 ms) during which the lock is free.
/// - Every wait is bounded by the registry's
///   [wait timeout](ProjectionRegistry::with_wait_timeout), whether it is sleeping, catching up
///   or pausing: [`ProjectionError::PositionNotReached`] when it runs out. A catch-up cut short
///   by a timeout leaves every checkpoint matching what its read model has applied. No timer
///   is armed for a catch-up that completes when first polled (an in-memory store's).
/// - A failing catch-up (a read model's error, the store's) is returned to the waiter that ran
///   it; every other waiter still behind runs its own and sees the failure too.
///
/// The first catch-up is a full [`catch_up`](ProjectionRegistry::catch_up), which also checks
/// that no checkpoint is past the end of the log ([`ProjectionError::CheckpointAhead`]).
///
/// Running a [`ProjectionDaemon`](crate::ProjectionDaemon) instead? Its
/// [`DaemonClient::wait_for`](crate::projection::daemon::DaemonClient::wait_for) gives the same
/// read-your-writes without any lock: waiters watch the daemon's checkpoints, which a task of
/// its own advances as the log grows. Pick the daemon when the read models should stay current
/// whether or not anyone waits, this type when catch-ups should run only on demand, in the
/// writers' own tasks.
///
/// Cloning is cheap: clones share the registry.
///
/// # Examples
///
/// ```
/// # use es_core::projection::{InfallibleProjection, ProjectionRegistry, SharedRegistry};
/// # use es_core::{CodecId, EventStore, ExpectedVersion, InMemory, Metadata, NewEvent};
/// # use es_core::{RecordedEvent, StreamId};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct EventCount(u64);
/// # impl InfallibleProjection for EventCount {
/// #     const NAME: &'static str = "event-count";
/// #     fn apply(&mut self, _event: &RecordedEvent) { self.0 += 1 }
/// #     fn reset(&mut self) { self.0 = 0 }
/// # }
/// # fn counted() -> NewEvent {
/// #     NewEvent {
/// #         event_id: uuid::Uuid::now_v7(),
/// #         event_type: "Counted".into(),
/// #         schema_version: 1,
/// #         codec: CodecId::Json,
/// #         payload: b"{}".to_vec().into(),
/// #         metadata: Metadata::default(),
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemory::new();
/// let registry = ProjectionRegistry::new().with(EventCount::default())?;
/// let shared = SharedRegistry::new(registry, store.clone());
///
/// let mut writers = tokio::task::JoinSet::new();
/// for writer in 0..8 {
///     let (store, shared) = (store.clone(), shared.clone());
///     writers.spawn(async move {
///         let stream = StreamId::new("counter", writer.to_string());
///         let written = store
///             .append(&stream, ExpectedVersion::NoStream, vec![counted()])
///             .await
///             .expect("a new stream");
///         // Returns once the read models have seen this task's own event.
///         shared.wait_for(written.position).await.expect("caught up");
///         shared.read(|registry| registry.get::<EventCount>().map(|count| count.0)).await
///     });
/// }
/// while let Some(seen) = writers.join_next().await {
///     // Each writer saw at least its own event.
///     assert!(seen?.is_some_and(|count| count >= 1));
/// }
/// # Ok(())
/// # }
/// ```
pub struct SharedRegistry<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for SharedRegistry<S> {
    fn clone(&self) -> Self {
        SharedRegistry {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for SharedRegistry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRegistry")
            .field(
                "position",
                &GlobalPosition(self.inner.reached.load(Ordering::Acquire)),
            )
            .field("wait_timeout", &self.inner.wait_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    store: S,
    /// Held by the one catch-up running, and by [`SharedRegistry::read`]. Waiters never queue
    /// for it: they `try_lock`, and sleep on `released` when it is taken.
    registry: Mutex<Locked>,
    /// Signalled when the registry lock is released while `sleepers` wait for it.
    released: Notify,
    /// Waiters sleeping on `released`.
    sleepers: AtomicUsize,
    /// The lowest checkpoint after the last catch-up: every read model has seen it.
    reached: AtomicU64,
    wait_timeout: Duration,
    /// No read model registered: every position counts as seen.
    empty: bool,
}

impl<S> Inner<S> {
    /// Makes `seen` (every read model has seen it) visible to waiters, waking those asleep
    /// behind the run that got there: each looks again at the position, and goes back to
    /// sleep if it is not served yet.
    fn publish(&self, seen: GlobalPosition) {
        let before = self.reached.fetch_max(seen.get(), Ordering::AcqRel);
        if before >= seen.get() {
            return;
        }
        wake_sleepers(&self.sleepers, &self.released);
    }
}

struct Locked {
    registry: ProjectionRegistry,
    /// Whether a full catch-up (with its checks) has run.
    checked: bool,
}

impl<S: EventStore> SharedRegistry<S> {
    /// Shares `registry`, catching up from `store`.
    #[must_use]
    pub fn new(registry: ProjectionRegistry, store: S) -> Self {
        SharedRegistry {
            inner: Arc::new(Inner {
                store,
                reached: AtomicU64::new(registry.position().get()),
                wait_timeout: registry.wait_timeout(),
                empty: registry.is_empty(),
                released: Notify::new(),
                sleepers: AtomicUsize::new(0),
                registry: Mutex::new(Locked {
                    registry,
                    checked: false,
                }),
            }),
        }
    }

    /// The position every read model has seen, as of the last catch-up.
    #[must_use]
    pub fn position(&self) -> GlobalPosition {
        GlobalPosition(self.inner.reached.load(Ordering::Acquire))
    }

    /// Waits until every read model has seen `position` (pass the
    /// [`AppendOutcome::position`](crate::AppendOutcome) of your own append), catching up as
    /// described on the [type](SharedRegistry); returns the position they have seen, at or
    /// past `position`.
    ///
    /// # Errors
    /// [`ProjectionError::PositionNotReached`] when the wait timeout runs out first, and the
    /// errors of [`ProjectionRegistry::catch_up`] from a catch-up this wait ran.
    pub async fn wait_for(
        &self,
        position: GlobalPosition,
    ) -> Result<GlobalPosition, ProjectionError> {
        let reached = self.position();
        if reached >= position || self.inner.empty {
            return Ok(reached);
        }
        let mut clock = WaitClock::new(self.inner.wait_timeout);
        let mut pause = FIRST_POLL_INTERVAL;
        loop {
            let reached = self.position();
            if reached >= position {
                return Ok(reached);
            }
            let guard = match self.inner.registry.try_lock() {
                Ok(guard) => guard,
                Err(_) => match self.sleep_or_lock(&mut clock).await {
                    Ok(Some(guard)) => guard,
                    // Woken by a release: look at the position again.
                    Ok(None) => continue,
                    Err(TimedOut) => return Err(self.not_reached(position, &clock)),
                },
            };
            let mut turn = Turn {
                guard: Some(guard),
                sleepers: &self.inner.sleepers,
                released: &self.inner.released,
            };
            let locked = turn.locked();
            let inner = &*self.inner;
            let run = async {
                if locked.checked {
                    // Waiters for positions the run has passed return at once, not at its end.
                    let progress = |seen: GlobalPosition| inner.publish(seen);
                    locked.registry.catch_up_pages(&inner.store, progress).await
                } else {
                    let report = locked.registry.catch_up(&inner.store).await;
                    locked.checked = report.is_ok();
                    report
                }
            };
            match clock.within(run).await {
                Ok(Ok(report)) => {
                    self.inner
                        .reached
                        .fetch_max(report.position.get(), Ordering::AcqRel);
                }
                Ok(Err(error)) => return Err(error),
                Err(TimedOut) => {
                    // Cut short between two events: the checkpoints match what was applied.
                    let seen = turn.locked().registry.position().get();
                    self.inner.reached.fetch_max(seen, Ordering::AcqRel);
                    return Err(self.not_reached(position, &clock));
                }
            }
            drop(turn);
            let reached = self.position();
            if reached >= position {
                return Ok(reached);
            }
            // The log does not show the position yet: let others run, and look again.
            let remaining = clock.remaining();
            if remaining.is_zero() {
                return Err(self.not_reached(position, &clock));
            }
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// Called when the registry lock is taken: sleeps until it is released, or takes it if it
    /// was released meanwhile (`Some`).
    async fn sleep_or_lock(
        &self,
        clock: &mut WaitClock,
    ) -> Result<Option<MutexGuard<'_, Locked>>, TimedOut> {
        let inner = &*self.inner;
        // Counted and registered before the lock is tried again: the holder's release either
        // happened before that try (which then succeeds), or sees this sleeper and wakes it
        // (a `Notified` created before `notify_waiters` completes).
        let _sleeping = Sleeping::new(&inner.sleepers);
        let released = inner.released.notified();
        if let Ok(guard) = inner.registry.try_lock() {
            return Ok(Some(guard));
        }
        clock.within(released).await.map(|()| None)
    }

    /// Runs `query` on the registry (after any catch-up in progress): read the read models
    /// with [`ProjectionRegistry::get`].
    pub async fn read<R>(&self, query: impl FnOnce(&ProjectionRegistry) -> R) -> R {
        let mut turn = Turn {
            guard: Some(self.inner.registry.lock().await),
            sleepers: &self.inner.sleepers,
            released: &self.inner.released,
        };
        query(&turn.locked().registry)
    }

    fn not_reached(&self, requested: GlobalPosition, clock: &WaitClock) -> ProjectionError {
        ProjectionError::PositionNotReached {
            requested,
            reached: self.position(),
            waited: clock.waited(),
        }
    }
}

/// The registry lock, held: releasing it (also when the holder's future is dropped midway)
/// wakes every waiter sleeping on `released`.
struct Turn<'a> {
    guard: Option<MutexGuard<'a, Locked>>,
    sleepers: &'a AtomicUsize,
    released: &'a Notify,
}

impl Turn<'_> {
    fn locked(&mut self) -> &mut Locked {
        self.guard.as_mut().expect("held until the turn drops")
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Unlocked first, so every waiter woken finds the lock free.
        drop(self.guard.take());
        wake_sleepers(self.sleepers, self.released);
    }
}

/// Wakes every waiter sleeping on `released`, if any is counted in `sleepers`.
///
/// Pairs with the count in `Sleeping::new`: a sleeper counted before this load is woken; one
/// counted after looks at the position and tries the lock after what the caller changed (a
/// release, or a published position), and sees it.
fn wake_sleepers(sleepers: &AtomicUsize, released: &Notify) {
    std::sync::atomic::fence(Ordering::SeqCst);
    if sleepers.load(Ordering::Relaxed) > 0 {
        released.notify_waiters();
    }
}

/// One waiter counted among the sleepers while it lives.
struct Sleeping<'a>(&'a AtomicUsize);

impl<'a> Sleeping<'a> {
    fn new(sleepers: &'a AtomicUsize) -> Self {
        sleepers.fetch_add(1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        Sleeping(sleepers)
    }
}

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The deadline of one wait, armed only when something has to wait: a wait served by a
/// catch-up that completes at its first poll reads no clock.
struct WaitClock {
    timeout: Duration,
    /// When the wait first had to wait, and its deadline.
    armed: Option<(Instant, tokio::time::Instant)>,
}

/// A wait ran out of time.
struct TimedOut;

impl WaitClock {
    fn new(timeout: Duration) -> Self {
        WaitClock {
            timeout,
            armed: None,
        }
    }

    fn deadline(&mut self) -> tokio::time::Instant {
        let timeout = self.timeout;
        self.armed
            .get_or_insert_with(|| (Instant::now(), tokio::time::Instant::now() + timeout))
            .1
    }

    /// `future`'s output, unless the deadline passes first; the timer is armed only if the
    /// first poll does not complete it.
    async fn within<F: Future>(&mut self, future: F) -> Result<F::Output, TimedOut> {
        let mut future = pin!(future);
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
            return Ok(output);
        }
        tokio::time::timeout_at(self.deadline(), future)
            .await
            .map_err(|_| TimedOut)
    }

    fn remaining(&mut self) -> Duration {
        self.deadline()
            .saturating_duration_since(tokio::time::Instant::now())
    }

    fn waited(&self) -> Duration {
        self.armed
            .map_or(Duration::ZERO, |(since, _)| since.elapsed())
    }
}

#[cfg(test)]
mod tests;
