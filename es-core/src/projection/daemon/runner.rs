//! The daemon's task: applies delivered batches to the live read models, catches lagging ones
//! up on their own, retries and parks failing ones, and saves checkpoints.
//!
//! One task owns every read model's checkpoint and mode, so their bookkeeping needs no locks;
//! the read models themselves sit behind one `RwLock` each, taken for writing once per batch,
//! so queries read them between batches. A second task (the pump) reads the subscription
//! ahead into a small channel, so reading the next batch overlaps applying this one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::codec::CodecId;
use crate::event::RecordedEvent;
use crate::lease::Fence;
use crate::projection::registry::ErasedProjection;
#[cfg(feature = "sqlite")]
use crate::projection::table::TableRunner;
use crate::projection::ProjectionError;
use crate::snapshot::{ProjectionStore, SavedProjection};
use crate::store::StoreError;
use crate::types::{GlobalPosition, Timestamp};

use super::source::{Feed, LogSource};
use super::status::{ModelState, Parked, Record, Skipped, MAX_SKIPPED};
use super::{telemetry, DaemonError};
use crate::repository::RetryPolicy;

/// How long a read model whose catch-up read failed waits before reading again.
const CATCH_UP_PAUSE: Duration = Duration::from_millis(500);

/// What every waiter and reader sees of one read model.
pub(super) struct SharedModel {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) progress: watch::Sender<Progress>,
    /// `progress`'s checkpoint, stored with it: a waiter already served compares one number
    /// (no subscription, no lock, no clock); one still behind subscribes to `progress`.
    pub(super) seen: AtomicU64,
    pub(super) status: Mutex<StatusCell>,
}

impl SharedModel {
    /// Whether the read model's last published checkpoint is at or past `position`.
    pub(super) fn has_seen(&self, position: GlobalPosition) -> bool {
        // Pairs with the `Release` store in `publish`, made after the events were applied.
        self.seen.load(Ordering::Acquire) >= position.get()
    }
}

/// Where a read model's state lives.
pub(super) enum Kind {
    /// In memory, behind a lock queries take; saved as a whole every save interval.
    Memory(RwLock<Box<dyn ErasedProjection>>),
    /// In tables of the store's database, each batch committed with its checkpoint.
    #[cfg(feature = "sqlite")]
    Table(TableRunner),
}

impl SharedModel {
    /// The in-memory state, or `None` for a table read model.
    #[cfg_attr(not(feature = "sqlite"), allow(clippy::unnecessary_wraps))]
    pub(super) fn read(&self) -> Option<RwLockReadGuard<'_, Box<dyn ErasedProjection>>> {
        match &self.kind {
            // Applies run inside `catch_unwind` with the guard held, so a panicking read model
            // never poisons the lock; a reader's own panic leaves nothing half-written.
            Kind::Memory(live) => Some(live.read().unwrap_or_else(PoisonError::into_inner)),
            #[cfg(feature = "sqlite")]
            Kind::Table(_) => None,
        }
    }

    #[cfg_attr(not(feature = "sqlite"), allow(clippy::unnecessary_wraps))]
    fn write(&self) -> Option<RwLockWriteGuard<'_, Box<dyn ErasedProjection>>> {
        match &self.kind {
            Kind::Memory(live) => Some(live.write().unwrap_or_else(PoisonError::into_inner)),
            #[cfg(feature = "sqlite")]
            Kind::Table(_) => None,
        }
    }

    /// Puts `state` in place of the in-memory state (nothing for a table read model).
    fn replace(&self, state: Box<dyn ErasedProjection>) {
        if let Some(mut live) = self.write() {
            *live = state;
        }
    }

    /// The table read model, if this is one.
    #[cfg(feature = "sqlite")]
    fn table(&self) -> Option<&TableRunner> {
        match &self.kind {
            Kind::Table(table) => Some(table),
            Kind::Memory(_) => None,
        }
    }

    /// Whether the state is in tables (whose failed batches roll back: nothing to restore).
    fn is_table(&self) -> bool {
        match &self.kind {
            Kind::Memory(_) => false,
            #[cfg(feature = "sqlite")]
            Kind::Table(_) => true,
        }
    }

    pub(super) fn status(&self) -> MutexGuard<'_, StatusCell> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A read model's checkpoint as waiters see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) checkpoint: GlobalPosition,
    pub(super) parked: bool,
    pub(super) stopped: bool,
}

/// The parts of a read model's status that are not its checkpoint.
pub(super) struct StatusCell {
    pub(super) state: ModelState,
    pub(super) events_per_second: f64,
    pub(super) skipped: Vec<Skipped>,
}

/// Everything the handles share with the task.
pub(super) struct Shared {
    pub(super) models: Vec<SharedModel>,
    /// The highest log position the daemon has seen (delivered, or read as the store's end).
    pub(super) head: AtomicU64,
    pub(super) control: mpsc::Sender<Control>,
    /// Bumped after every change of a checkpoint or state.
    pub(super) updates: watch::Sender<u64>,
}

impl Shared {
    pub(super) fn head(&self) -> GlobalPosition {
        GlobalPosition(self.head.load(Ordering::Acquire))
    }

    fn raise_head(&self, position: GlobalPosition) {
        self.head.fetch_max(position.get(), Ordering::AcqRel);
    }

    fn notify(&self) {
        self.updates.send_modify(|generation| *generation += 1);
    }
}

/// An operation asked of the task by a handle.
pub(super) enum Control {
    Resume {
        index: usize,
        reply: oneshot::Sender<Result<(), DaemonError>>,
    },
    Skip {
        index: usize,
        position: GlobalPosition,
        reply: oneshot::Sender<Result<(), DaemonError>>,
    },
}

/// The settings the task runs with.
pub(super) struct Settings {
    pub(super) retry: RetryPolicy,
    pub(super) save_interval: Duration,
    pub(super) codec: CodecId,
    pub(super) page_size: usize,
    /// The clock stamping saved states and records (`None`: the store's).
    pub(super) clock: Option<Arc<dyn Clock>>,
    /// The lease every durable write is conditional on (`None`: no lease).
    pub(super) fence: Option<Fence>,
}

/// A read model's state as last saved (or restored), kept to restore it after a failed apply.
pub(super) struct SavedState {
    pub(super) position: GlobalPosition,
    pub(super) codec: CodecId,
    pub(super) bytes: Vec<u8>,
}

/// How the task drives one read model.
pub(super) enum Mode {
    /// Fed from the shared subscription (events at or below its checkpoint are passed over).
    Live,
    /// Reading the log on its own until it reaches the shared subscription's position.
    CatchingUp { not_before: Option<Instant> },
    /// `event` failed; it is tried again at `due` on a copy of `base`, the read model as it
    /// was before the event (`None`: not restored yet).
    Retrying {
        event: Box<RecordedEvent>,
        failures: u32,
        error: String,
        due: Instant,
        base: Option<Box<dyn ErasedProjection>>,
    },
    /// Stopped on the event at `position` until resumed or told to skip it.
    Parked {
        position: GlobalPosition,
        event_type: String,
        error: String,
    },
}

/// The task's own bookkeeping for one read model.
pub(super) struct ModelRun {
    /// The read model as registered, reset: the base to replay into when nothing is saved
    /// (`None` for a table read model).
    pub(super) pristine: Option<Box<dyn ErasedProjection>>,
    pub(super) checkpoint: GlobalPosition,
    pub(super) mode: Mode,
    pub(super) saved: Option<SavedState>,
    /// Until its checkpoint reaches this head, its state shows as catching up.
    pub(super) catching_up_until: GlobalPosition,
    /// Whether the in-memory state may be damaged (a failed apply that could not be undone):
    /// it is then never saved.
    pub(super) suspect: bool,
    /// Events seen since the last tick, for the rate.
    pub(super) seen_since_tick: u64,
    /// The record as last written to the store, to write it again only when it changes.
    pub(super) record_written: Option<(ModelState, GlobalPosition)>,
}

/// What applying a slice of events to one read model did.
struct Applied {
    seen: u64,
    handled: u64,
    /// The index (in the slice) of the event that failed, and the error text.
    failure: Option<(usize, String)>,
}

/// The daemon's task.
pub(super) struct Runner<L, P> {
    /// Where the log is read.
    pub(super) log: L,
    /// Where read models are saved.
    pub(super) store: P,
    pub(super) shared: Arc<Shared>,
    pub(super) runs: Vec<ModelRun>,
    /// The position of the last batch delivered by the shared subscription.
    pub(super) position: GlobalPosition,
    pub(super) settings: Settings,
    pub(super) last_tick: Instant,
    /// Set when a durable write was refused because the lease moved on: the daemon stops.
    pub(super) fenced: Option<StoreError>,
}

impl<L: LogSource, P: ProjectionStore> Runner<L, P> {
    /// Runs until `shutdown` changes or its sender is dropped, then saves every checkpoint.
    pub(super) async fn run(
        mut self,
        mut batches: mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>>,
        mut control: mpsc::Receiver<Control>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let mut tick = tokio::time::interval_at(
            Instant::now() + self.settings.save_interval,
            self.settings.save_interval,
        );
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Alternates the shared batches with catch-up pages, so neither starves the other.
        let mut catch_up_turn = false;
        let outcome = loop {
            if let Some(error) = self.fenced.take() {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "the lease moved on: the daemon stops without writing more"
                );
                break Err(ProjectionError::Store(error));
            }
            let wake = self.next_wake();
            let catch_up_ready = self.catch_up_ready();
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Ok(()),
                Some(message) = control.recv() => self.on_control(message).await,
                () = sleep_until_some(wake), if wake.is_some() => self.on_due().await,
                _ = tick.tick() => self.on_tick().await,
                () = std::future::ready(()), if catch_up_ready && catch_up_turn => {
                    catch_up_turn = false;
                    self.catch_up_round().await;
                }
                batch = batches.recv() => {
                    catch_up_turn = true;
                    match batch {
                        Some(Ok(batch)) => {
                            if let Err(error) = self.on_batch(batch).await {
                                break Err(error);
                            }
                        }
                        // The store is gone: nothing more will come.
                        Some(Err(StoreError::Closed)) => {
                            break Err(ProjectionError::Store(StoreError::Closed));
                        }
                        Some(Err(error)) => tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "the subscription failed; it tries again"
                        ),
                        None => break Err(ProjectionError::Store(StoreError::Closed)),
                    }
                }
                () = std::future::ready(()), if catch_up_ready => self.catch_up_round().await,
            }
        };
        let saved = self.finish().await;
        outcome.and(saved)
    }

    /// Now, on the daemon's clock (the store's unless one was configured).
    fn now(&self) -> Timestamp {
        match &self.settings.clock {
            Some(clock) => clock.now(),
            None => ProjectionStore::clock(&self.store).now(),
        }
    }

    /// The earliest instant a retrying or paused read model needs the task.
    fn next_wake(&self) -> Option<Instant> {
        self.runs
            .iter()
            .filter_map(|run| match &run.mode {
                Mode::Retrying { due, .. } => Some(*due),
                Mode::CatchingUp { not_before } => *not_before,
                _ => None,
            })
            .min()
    }

    fn catch_up_ready(&self) -> bool {
        let now = Instant::now();
        self.runs.iter().any(|run| {
            matches!(run.mode, Mode::CatchingUp { not_before } if not_before.is_none_or(|at| at <= now))
        })
    }

    /// Applies a batch from the shared subscription to every live read model.
    async fn on_batch(&mut self, batch: Vec<RecordedEvent>) -> Result<(), ProjectionError> {
        let batch: Arc<[RecordedEvent]> = batch.into();
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let (first, last) = (first.global_position, last.global_position);
        if first <= self.position {
            return Err(ProjectionError::OutOfOrder {
                previous: self.position,
                found: first,
            });
        }
        let span = tracing::debug_span!(
            "daemon.batch",
            first = first.get(),
            last = last.get(),
            events = batch.len()
        );
        let mut failures = Vec::new();
        for index in 0..self.runs.len() {
            if !matches!(self.runs[index].mode, Mode::Live) {
                continue;
            }
            let applied = self
                .apply_logged(index, Arc::clone(&batch))
                .instrument(span.clone())
                .await;
            if let Some(error) = self.fenced.take() {
                // Nothing of this batch was written for this read model: stop here.
                return Err(ProjectionError::Store(error));
            }
            if let Some((at, error)) = applied.failure {
                failures.push((index, batch[at].clone(), error));
            } else {
                let run = &mut self.runs[index];
                run.checkpoint = run.checkpoint.max(last);
            }
        }
        self.position = last;
        self.shared.raise_head(last);
        for index in 0..self.runs.len() {
            if matches!(self.runs[index].mode, Mode::Live) {
                self.publish(index);
            }
        }
        for (index, event, error) in failures {
            self.on_failure(index, event, error)
                .instrument(span.clone())
                .await;
        }
        self.shared.notify();
        Ok(())
    }

    /// Applies `events` to one read model inside a span naming it.
    #[cfg_attr(not(feature = "sqlite"), allow(clippy::unused_async))]
    async fn apply_logged(&mut self, index: usize, events: Arc<[RecordedEvent]>) -> Applied {
        #[cfg(feature = "sqlite")]
        let now = self.now();
        let model = &self.shared.models[index];
        let span = tracing::debug_span!(
            "daemon.apply",
            projection = model.name,
            first = events
                .first()
                .map_or(0, |event| event.global_position.get()),
            last = events.last().map_or(0, |event| event.global_position.get()),
            seen = tracing::field::Empty,
            applied = tracing::field::Empty,
        );
        let applied = match &model.kind {
            Kind::Memory(live) => {
                let _entered = span.enter();
                apply_events(live, &mut self.runs[index], &events)
            }
            #[cfg(feature = "sqlite")]
            Kind::Table(table) => {
                let fence = self.settings.fence.as_ref();
                let (applied, fenced) =
                    apply_table(table, &mut self.runs[index], events, now, fence)
                        .instrument(span.clone())
                        .await;
                if fenced.is_some() {
                    self.fenced = fenced;
                }
                applied
            }
        };
        let model = &self.shared.models[index];
        span.record("seen", applied.seen);
        span.record("applied", applied.handled);
        self.runs[index].seen_since_tick += applied.seen;
        telemetry::events_seen(model.name, applied.seen);
        applied
    }

    /// One page of the log for every read model that is catching up; those that reach the
    /// shared subscription's position join it.
    async fn catch_up_round(&mut self) {
        let now = Instant::now();
        for index in 0..self.runs.len() {
            let ready = matches!(self.runs[index].mode, Mode::CatchingUp { not_before } if not_before.is_none_or(|at| at <= now));
            if !ready {
                continue;
            }
            let checkpoint = self.runs[index].checkpoint;
            if checkpoint >= self.position {
                self.join(index);
                continue;
            }
            let page = match self.log.read_all(checkpoint, self.settings.page_size).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(
                        projection = self.shared.models[index].name,
                        error = &error as &dyn std::error::Error,
                        "reading the log to catch up failed; trying again shortly"
                    );
                    self.runs[index].mode = Mode::CatchingUp {
                        not_before: Some(Instant::now() + CATCH_UP_PAUSE),
                    };
                    continue;
                }
            };
            // Only up to the shared position: what comes after, the shared subscription
            // delivers once the read model has joined it.
            let within = page
                .iter()
                .take_while(|event| event.global_position <= self.position)
                .count();
            let span = tracing::debug_span!(
                "daemon.catch_up",
                projection = self.shared.models[index].name,
                after = checkpoint.get(),
                events = within
            );
            let complete = within < page.len() || page.is_empty();
            let page: Arc<[RecordedEvent]> = page.into_iter().take(within).collect();
            let applied = self
                .apply_logged(index, Arc::clone(&page))
                .instrument(span.clone())
                .await;
            if self.fenced.is_some() {
                // The run loop stops before anything else is written.
                return;
            }
            if let Some((at, error)) = applied.failure {
                let event = page[at].clone();
                self.on_failure(index, event, error).instrument(span).await;
            } else if complete {
                // Nothing else up to the shared position: the log is gap-safe, and the
                // shared subscription has already delivered that position.
                self.join(index);
            }
            self.publish(index);
        }
        self.shared.notify();
    }

    /// A catching-up read model joins the shared subscription.
    fn join(&mut self, index: usize) {
        let run = &mut self.runs[index];
        run.checkpoint = run.checkpoint.max(self.position);
        run.mode = Mode::Live;
        tracing::debug!(
            projection = self.shared.models[index].name,
            position = run.checkpoint.get(),
            "caught up; joined the shared subscription"
        );
        self.publish(index);
    }

    /// `event` failed on read model `index` (its checkpoint is just before it).
    async fn on_failure(&mut self, index: usize, event: RecordedEvent, error: String) {
        let name = self.shared.models[index].name;
        telemetry::apply_failed(name);
        let failures = match &self.runs[index].mode {
            Mode::Retrying { failures, .. } => failures + 1,
            _ => 1,
        };
        tracing::warn!(
            projection = name,
            position = event.global_position.get(),
            event_type = event.event_type.as_str(),
            failures,
            error,
            "a read model failed to apply an event"
        );
        if self.shared.models[index].is_table() {
            // The failed batch was rolled back: the tables are as they were before the event.
            self.after_failure(index, event, error, failures, None);
            self.save_if_parked(index).await;
            return;
        }
        // The failed apply may have changed part of the state: put back the state from before
        // the event (the last saved state plus the events after it, replayed aside) before
        // anyone reads it again or the event is retried.
        let base = match self.restore(index).await {
            Ok(base) => {
                self.shared.models[index].replace(base.clone_box());
                self.runs[index].suspect = false;
                Some(base)
            }
            Err(restore_error) => {
                tracing::error!(
                    projection = name,
                    error = restore_error,
                    "cannot restore the state from before the failed event; trying again later"
                );
                self.runs[index].suspect = true;
                None
            }
        };
        self.after_failure(index, event, error, failures, base);
        self.save_if_parked(index).await;
    }

    /// Schedules another try of `event`, or parks the read model when the attempts are spent.
    fn after_failure(
        &mut self,
        index: usize,
        event: RecordedEvent,
        error: String,
        failures: u32,
        base: Option<Box<dyn ErasedProjection>>,
    ) {
        // Parked only from a clean state: restored in memory, or rolled back in the tables.
        let clean = base.is_some() || self.shared.models[index].is_table();
        if failures >= self.settings.retry.max_attempts() && clean {
            self.park(index, &event, error, failures);
            return;
        }
        let due = Instant::now() + self.settings.retry.delay_after(failures);
        self.shared.models[index].status().state = ModelState::Retrying {
            failures,
            position: event.global_position,
            event_type: event.event_type.to_string(),
            error: error.clone(),
        };
        self.runs[index].mode = Mode::Retrying {
            event: Box::new(event),
            failures,
            error,
            due,
            base,
        };
        self.shared.notify();
    }

    fn park(&mut self, index: usize, event: &RecordedEvent, error: String, attempts: u32) {
        let name = self.shared.models[index].name;
        tracing::error!(
            projection = name,
            position = event.global_position.get(),
            event_type = event.event_type.as_str(),
            attempts,
            error,
            "read model parked; the others go on (resume or skip it)"
        );
        let parked = Parked {
            position: event.global_position,
            event_type: event.event_type.to_string(),
            error: error.clone(),
            attempts,
            parked_at: self.now(),
        };
        self.shared.models[index].status().state = ModelState::Parked(parked);
        self.runs[index].mode = Mode::Parked {
            position: event.global_position,
            event_type: event.event_type.to_string(),
            error,
        };
        self.publish(index);
        self.shared.notify();
    }

    /// Tries every read model whose retry is due again.
    async fn on_due(&mut self) {
        let now = Instant::now();
        for index in 0..self.runs.len() {
            match &mut self.runs[index].mode {
                Mode::Retrying { due, .. } if *due <= now => {}
                Mode::CatchingUp { not_before } if not_before.is_some_and(|at| at <= now) => {
                    *not_before = None;
                    continue;
                }
                _ => continue,
            }
            let Mode::Retrying {
                event,
                failures,
                error,
                base,
                ..
            } = std::mem::replace(
                &mut self.runs[index].mode,
                Mode::CatchingUp { not_before: None },
            )
            else {
                unreachable!("matched as retrying above");
            };
            #[cfg(feature = "sqlite")]
            if let Some(table) = self.shared.models[index].table() {
                let table = table.clone();
                self.retry_table(index, &table, event, failures).await;
                continue;
            }
            let base = match base {
                Some(base) => base,
                None => match self.restore(index).await {
                    Ok(base) => {
                        self.shared.models[index].replace(base.clone_box());
                        self.runs[index].suspect = false;
                        base
                    }
                    Err(restore_error) => {
                        tracing::warn!(
                            projection = self.shared.models[index].name,
                            error = restore_error,
                            "still cannot restore the state from before the failed event"
                        );
                        self.after_failure(index, *event, error, failures, None);
                        continue;
                    }
                },
            };
            // The retry works on a copy: a failure leaves the read model as it was.
            let mut candidate = base.clone_box();
            match apply_caught(&mut *candidate, &event) {
                Ok(()) => {
                    self.shared.models[index].replace(candidate);
                    let run = &mut self.runs[index];
                    run.checkpoint = event.global_position;
                    run.seen_since_tick += 1;
                    run.mode = Mode::CatchingUp { not_before: None };
                    tracing::info!(
                        projection = self.shared.models[index].name,
                        position = event.global_position.get(),
                        failures,
                        "the retried event applied"
                    );
                    self.refresh_state(index);
                    self.publish(index);
                }
                Err(error) => {
                    telemetry::apply_failed(self.shared.models[index].name);
                    tracing::warn!(
                        projection = self.shared.models[index].name,
                        position = event.global_position.get(),
                        failures = failures + 1,
                        error,
                        "the retried event failed again"
                    );
                    self.after_failure(index, *event, error, failures + 1, Some(base));
                    self.save_if_parked(index).await;
                }
            }
        }
        self.shared.notify();
    }

    /// Tries the failed `event` of table read model `index` again, alone in a transaction.
    #[cfg(feature = "sqlite")]
    async fn retry_table(
        &mut self,
        index: usize,
        table: &TableRunner,
        event: Box<RecordedEvent>,
        failures: u32,
    ) {
        let now = self.now();
        let events: Arc<[RecordedEvent]> = Arc::from(vec![(*event).clone()]);
        let fence = self.settings.fence.as_ref();
        let (applied, fenced) = apply_table(table, &mut self.runs[index], events, now, fence).await;
        if fenced.is_some() {
            // Nothing was written; the daemon stops before anything else.
            self.fenced = fenced;
            self.runs[index].mode = Mode::Retrying {
                event,
                failures,
                error: "the lease moved on".to_owned(),
                due: Instant::now(),
                base: None,
            };
            return;
        }
        let name = self.shared.models[index].name;
        match applied.failure {
            None => {
                let run = &mut self.runs[index];
                run.seen_since_tick += applied.seen;
                run.mode = Mode::CatchingUp { not_before: None };
                tracing::info!(
                    projection = name,
                    position = event.global_position.get(),
                    failures,
                    "the retried event applied"
                );
                self.refresh_state(index);
                self.publish(index);
            }
            Some((_, error)) => {
                telemetry::apply_failed(name);
                tracing::warn!(
                    projection = name,
                    position = event.global_position.get(),
                    failures = failures + 1,
                    error,
                    "the retried event failed again"
                );
                self.after_failure(index, *event, error, failures + 1, None);
                self.save_if_parked(index).await;
            }
        }
    }

    /// The read model as it was at its checkpoint, rebuilt aside from its last saved state
    /// (or from scratch) and the log.
    async fn restore(&self, index: usize) -> Result<Box<dyn ErasedProjection>, String> {
        let run = &self.runs[index];
        let Some(pristine) = &run.pristine else {
            return Err("a table read model has no state in memory to restore".to_owned());
        };
        let mut base = pristine.clone_box();
        let mut after = GlobalPosition::START;
        if let Some(saved) = &run.saved {
            if saved.position <= run.checkpoint {
                base.restore(saved.codec, &saved.bytes)
                    .map_err(|error| format!("the saved state does not decode: {error}"))?;
                after = saved.position;
            }
        }
        while after < run.checkpoint {
            let page = self
                .log
                .read_all(after, self.settings.page_size)
                .await
                .map_err(|error| error_text(&error))?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                if event.global_position > run.checkpoint {
                    return Ok(base);
                }
                if base.handles(event) {
                    apply_caught(&mut *base, event).map_err(|error| {
                        format!(
                            "replaying the event at position {} failed this time: {error}",
                            event.global_position
                        )
                    })?;
                }
                after = event.global_position;
            }
        }
        Ok(base)
    }

    async fn on_control(&mut self, message: Control) {
        match message {
            Control::Resume { index, reply } => {
                let result = self.resume(index).await;
                let _ = reply.send(result);
            }
            Control::Skip {
                index,
                position,
                reply,
            } => {
                let result = self.skip(index, position).await;
                let _ = reply.send(result);
            }
        }
        self.shared.notify();
    }

    async fn resume(&mut self, index: usize) -> Result<(), DaemonError> {
        let name = self.shared.models[index].name;
        if !matches!(self.runs[index].mode, Mode::Parked { .. }) {
            return Err(DaemonError::NotParked { projection: name });
        }
        tracing::info!(projection = name, "read model resumed");
        self.runs[index].mode = Mode::CatchingUp { not_before: None };
        self.runs[index].catching_up_until = self.shared.head();
        self.refresh_state(index);
        self.publish(index);
        self.save_record(index).await?;
        Ok(())
    }

    async fn skip(&mut self, index: usize, position: GlobalPosition) -> Result<(), DaemonError> {
        let name = self.shared.models[index].name;
        let Mode::Parked {
            position: parked_at,
            event_type,
            error,
        } = &self.runs[index].mode
        else {
            return Err(DaemonError::NotParked { projection: name });
        };
        if *parked_at != position {
            return Err(DaemonError::SkipMismatch {
                projection: name,
                parked_at: *parked_at,
                requested: position,
            });
        }
        // Exactly that event: it must be the next one after the checkpoint, or events
        // between them would be skipped with it.
        let next = self.log.read_all(self.runs[index].checkpoint, 1).await?;
        if next.first().map(|event| event.global_position) != Some(position) {
            return Err(DaemonError::SkipMismatch {
                projection: name,
                parked_at: self.runs[index].checkpoint,
                requested: position,
            });
        }
        let skipped = Skipped {
            position,
            event_type: event_type.clone(),
            error: error.clone(),
            skipped_at: self.now(),
        };
        tracing::warn!(
            projection = name,
            position = position.get(),
            event_type = skipped.event_type,
            "event skipped by request"
        );
        // A table read model's checkpoint moves in its own table, past exactly that event.
        #[cfg(feature = "sqlite")]
        if let Some(table) = self.shared.models[index].table() {
            table
                .skip_to(
                    self.runs[index].checkpoint,
                    position,
                    self.now(),
                    self.settings.fence.as_ref(),
                )
                .await?;
        }
        {
            let mut status = self.shared.models[index].status();
            status.skipped.push(skipped);
            let excess = status.skipped.len().saturating_sub(MAX_SKIPPED);
            status.skipped.drain(..excess);
        }
        let run = &mut self.runs[index];
        run.checkpoint = position;
        run.mode = Mode::CatchingUp { not_before: None };
        run.catching_up_until = self.shared.head();
        self.refresh_state(index);
        self.publish(index);
        // The skip is durable before it is acknowledged: state and checkpoint, then record.
        self.save_state(index).await?;
        self.save_record(index).await?;
        Ok(())
    }

    /// Every save interval: the store's head, the rates, the gauges, and the checkpoints.
    async fn on_tick(&mut self) {
        match self.log.last_position().await {
            Ok(head) => self.shared.raise_head(head),
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot read the log's last position"
            ),
        }
        let elapsed = self.last_tick.elapsed().as_secs_f64();
        self.last_tick = Instant::now();
        let head = self.shared.head();
        for index in 0..self.runs.len() {
            let run = &mut self.runs[index];
            #[allow(clippy::cast_precision_loss)] // a rate; counts above 2^53 round
            let rate = if elapsed > 0.0 {
                run.seen_since_tick as f64 / elapsed
            } else {
                0.0
            };
            run.seen_since_tick = 0;
            let checkpoint = run.checkpoint;
            let parked = matches!(run.mode, Mode::Parked { .. });
            self.shared.models[index].status().events_per_second = rate;
            self.refresh_state(index);
            telemetry::progress(
                self.shared.models[index].name,
                checkpoint.get(),
                head.get().saturating_sub(checkpoint.get()),
                rate,
                parked,
            );
            match self.save(index).await {
                Ok(()) => {}
                Err(ProjectionError::Store(error)) if error.is_fenced() => {
                    self.fenced = Some(error);
                    return;
                }
                Err(error) => tracing::warn!(
                    projection = self.shared.models[index].name,
                    error = &error as &dyn std::error::Error,
                    "cannot save the read model; trying again at the next interval"
                ),
            }
        }
        self.report_saved();
        self.shared.notify();
    }

    /// Tells the log how far every read model it feeds has durably saved (the lowest saved
    /// position among them), so that a broker is acknowledged no further than that.
    fn report_saved(&self) {
        let floor = self
            .runs
            .iter()
            .zip(&self.shared.models)
            .filter(|(run, _)| matches!(run.mode, Mode::Live))
            .map(|(run, model)| {
                if model.is_table() {
                    // Committed with every batch.
                    run.checkpoint
                } else {
                    run.saved
                        .as_ref()
                        .map_or(GlobalPosition::START, |saved| saved.position)
                }
            })
            .min();
        if let Some(floor) = floor {
            self.log.saved(floor);
        }
    }

    /// Saves the state if its checkpoint moved, and the record if it changed.
    async fn save(&mut self, index: usize) -> Result<(), ProjectionError> {
        let run = &self.runs[index];
        let moved = run
            .saved
            .as_ref()
            .is_none_or(|saved| saved.position != run.checkpoint);
        if moved {
            self.save_state(index).await?;
        }
        let state = self.shared.models[index].status().state.clone();
        let run = &self.runs[index];
        if run.record_written.as_ref() != Some(&(state, run.checkpoint)) {
            self.save_record(index).await?;
        }
        Ok(())
    }

    /// Saves the read model's state and checkpoint (unless its state may be damaged).
    async fn save_state(&mut self, index: usize) -> Result<(), ProjectionError> {
        let run = &self.runs[index];
        let model = &self.shared.models[index];
        let codec = self.settings.codec;
        let bytes = {
            // A table read model's checkpoint is committed with its rows: nothing to save.
            let Some(live) = model.read() else {
                return Ok(());
            };
            if run.suspect {
                return Ok(());
            }
            live.encode(codec)
                .map_err(|source| ProjectionError::Encode {
                    projection: model.name,
                    source,
                })?
        };
        let position = run.checkpoint;
        self.save_projection(SavedProjection {
            name: model.name.to_owned(),
            position,
            codec,
            state: bytes.clone(),
            saved_at: self.now(),
        })
        .await?;
        self.runs[index].saved = Some(SavedState {
            position,
            codec,
            bytes,
        });
        Ok(())
    }

    /// Saves the read model's daemon record (state, rate, skipped events).
    async fn save_record(&mut self, index: usize) -> Result<(), StoreError> {
        let model = &self.shared.models[index];
        let record = {
            let status = model.status();
            Record {
                state: status.state.clone(),
                events_per_second: status.events_per_second,
                head: self.shared.head(),
                skipped: status.skipped.clone(),
            }
        };
        let checkpoint = self.runs[index].checkpoint;
        let saved = record.to_saved(model.name, checkpoint, self.now())?;
        self.save_projection(saved).await?;
        self.runs[index].record_written = Some((record.state, checkpoint));
        Ok(())
    }

    /// Saves a state or record, conditional on the fence when the daemon has one.
    async fn save_projection(&self, saved: SavedProjection) -> Result<(), StoreError> {
        match &self.settings.fence {
            Some(fence) => self.store.save_projection_fenced(saved, fence).await,
            None => self.store.save_projection(saved).await,
        }
    }

    /// Saves every read model and marks it stopped (unless parked).
    async fn finish(&mut self) -> Result<(), ProjectionError> {
        let mut outcome = Ok(());
        for index in 0..self.runs.len() {
            {
                let mut status = self.shared.models[index].status();
                if !status.state.is_parked() {
                    status.state = ModelState::Stopped;
                }
            }
            let saved = self.save(index).await;
            if let Err(error) = saved {
                tracing::error!(
                    projection = self.shared.models[index].name,
                    error = &error as &dyn std::error::Error,
                    "cannot save the read model at shutdown"
                );
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
            self.shared.models[index]
                .progress
                .send_modify(|progress| progress.stopped = true);
        }
        self.report_saved();
        self.shared.notify();
        outcome
    }

    /// Running or catching up, from the read model's checkpoint (parked and retrying stay).
    fn refresh_state(&self, index: usize) {
        let run = &self.runs[index];
        if matches!(run.mode, Mode::Live | Mode::CatchingUp { .. }) {
            let state = if run.checkpoint < run.catching_up_until {
                ModelState::CatchingUp
            } else {
                ModelState::Running
            };
            self.shared.models[index].status().state = state;
        }
    }

    /// Tells the waiters of read model `index` its checkpoint (and refreshes its state).
    fn publish(&self, index: usize) {
        self.refresh_state(index);
        let run = &self.runs[index];
        let progress = Progress {
            checkpoint: run.checkpoint,
            parked: matches!(run.mode, Mode::Parked { .. }),
            stopped: false,
        };
        let model = &self.shared.models[index];
        model.progress.send_if_modified(|current| {
            let changed = *current != progress;
            *current = progress;
            changed
        });
        model.seen.store(run.checkpoint.get(), Ordering::Release);
    }

    /// Saves read model `index` now if it is parked, so that its parked state is durable.
    async fn save_if_parked(&mut self, index: usize) {
        if !matches!(self.runs[index].mode, Mode::Parked { .. }) {
            return;
        }
        if let Err(error) = self.save(index).await {
            tracing::error!(
                projection = self.shared.models[index].name,
                error = &error as &dyn std::error::Error,
                "cannot save the parked read model; trying again at the next interval"
            );
        }
    }
}

/// Applies the events after the read model's checkpoint, in order, advancing it; stops at the
/// first failure, with the checkpoint just before the failing event.
fn apply_events(
    live: &RwLock<Box<dyn ErasedProjection>>,
    run: &mut ModelRun,
    events: &[RecordedEvent],
) -> Applied {
    let mut applied = Applied {
        seen: 0,
        handled: 0,
        failure: None,
    };
    let mut live = live.write().unwrap_or_else(PoisonError::into_inner);
    for (index, event) in events.iter().enumerate() {
        let position = event.global_position;
        if position <= run.checkpoint {
            continue;
        }
        if live.handles(event) {
            if let Err(error) = apply_caught(&mut **live, event) {
                applied.failure = Some((index, error));
                return applied;
            }
            applied.handled += 1;
        }
        run.checkpoint = position;
        applied.seen += 1;
    }
    applied
}

/// Applies the events after the table read model's checkpoint in one transaction with its
/// checkpoint; on a failure the events before the failing one are committed, and the
/// checkpoint stops right before it. A database failure counts as a failure of the first
/// event after the checkpoint (nothing was committed).
#[cfg(feature = "sqlite")]
async fn apply_table(
    table: &TableRunner,
    run: &mut ModelRun,
    events: Arc<[RecordedEvent]>,
    now: Timestamp,
    fence: Option<&Fence>,
) -> (Applied, Option<StoreError>) {
    let checkpoint = run.checkpoint;
    match table
        .apply_batch(checkpoint, Arc::clone(&events), now, fence)
        .await
    {
        Ok(outcome) => {
            run.checkpoint = outcome.checkpoint;
            let applied = Applied {
                seen: outcome.seen,
                handled: outcome.handled,
                failure: outcome.failure,
            };
            (applied, None)
        }
        Err(error) => {
            let applied = Applied {
                seen: 0,
                handled: 0,
                failure: events
                    .iter()
                    .position(|event| event.global_position > checkpoint)
                    .map(|at| (at, error_text(&error))),
            };
            // A refused fence is no failure of the read model: the daemon stops.
            let fenced = error.is_fenced().then_some(error);
            (applied, fenced)
        }
    }
}

/// `apply`, with a panic turned into an error.
fn apply_caught(model: &mut dyn ErasedProjection, event: &RecordedEvent) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| model.apply(event))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error_text(&*error)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(format!("panicked: {message}"))
        }
    }
}

/// An error and its sources, joined with `: `.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Reads the subscription ahead into `batches` until the receiver is gone. A failed read is
/// passed on as it is (the subscription pauses before reading again, and stays usable).
pub(super) async fn pump<F: Feed>(
    mut feed: F,
    batches: mpsc::Sender<Result<Vec<RecordedEvent>, StoreError>>,
) {
    loop {
        let batch = feed.next_batch().await;
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}
