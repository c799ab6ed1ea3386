//! The registry: many read models, each with its own checkpoint, fed from the global log.

use std::any::Any;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::codec::{CodecError, CodecId};
use crate::event::RecordedEvent;
use crate::snapshot::{ProjectionStore, SavedProjection};
use crate::store::{visit_each, EventStore};
use crate::types::{GlobalPosition, Timestamp};

use super::{AsOf, CatchUpReport, DuplicateProjection, Progress, Projection, ProjectionError};

/// How many events one `read_all` call asks for, unless configured.
const DEFAULT_PAGE_SIZE: usize = 512;
/// How many events a paged catch-up applies between two reports of its progress.
pub(super) const PROGRESS_EVERY: u64 = 64;
/// How long [`ProjectionRegistry::catch_up_to`] waits for a position, unless configured.
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause between two polls of the log while waiting for a position.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// The longest pause between two polls of the log.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A read model with its type erased, so one registry (or daemon) holds read models of many
/// types.
pub(super) trait ErasedProjection: Send + Sync {
    fn name(&self) -> &'static str;
    fn as_any(&self) -> &dyn Any;
    fn handles(&self, event: &RecordedEvent) -> bool;
    fn apply(
        &mut self,
        event: &RecordedEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    fn reset(&mut self);
    /// A copy with the same configuration and no events applied.
    fn fresh(&self) -> Box<dyn ErasedProjection>;
    /// A copy of the read model as it is.
    fn clone_box(&self) -> Box<dyn ErasedProjection>;
    fn encode(&self, codec: CodecId) -> Result<Vec<u8>, CodecError>;
    /// Replaces the state with the decoded `bytes`; on error the state is unchanged.
    fn restore(&mut self, codec: CodecId, bytes: &[u8]) -> Result<(), CodecError>;
}

impl<P: Projection> ErasedProjection for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        Projection::handles(self, event)
    }

    fn apply(
        &mut self,
        event: &RecordedEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Projection::apply(self, event).map_err(|error| Box::new(error) as _)
    }

    fn reset(&mut self) {
        Projection::reset(self);
    }

    fn fresh(&self) -> Box<dyn ErasedProjection> {
        let mut copy = self.clone();
        Projection::reset(&mut copy);
        Box::new(copy)
    }

    fn clone_box(&self) -> Box<dyn ErasedProjection> {
        Box::new(self.clone())
    }

    fn encode(&self, codec: CodecId) -> Result<Vec<u8>, CodecError> {
        codec.encode(self)
    }

    fn restore(&mut self, codec: CodecId, bytes: &[u8]) -> Result<(), CodecError> {
        *self = codec.decode::<P>(bytes)?;
        Ok(())
    }
}

/// One registered read model and the position up to which it has seen the log.
struct Entry {
    model: Box<dyn ErasedProjection>,
    checkpoint: GlobalPosition,
}

impl Entry {
    fn fresh_copy(&self) -> Entry {
        Entry {
            model: self.model.fresh(),
            checkpoint: GlobalPosition::START,
        }
    }
}

/// Many read models fed from one global log, each with its own checkpoint.
///
/// See the [module documentation](crate::projection) for the guarantees.
///
/// # Examples
///
/// ```
/// # use es_core::projection::{InfallibleProjection, ProjectionRegistry};
/// # use es_core::RecordedEvent;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Totals(u64);
/// # impl InfallibleProjection for Totals {
/// #     const NAME: &'static str = "totals";
/// #     fn apply(&mut self, _: &RecordedEvent) { self.0 += 1; }
/// #     fn reset(&mut self) { self.0 = 0; }
/// # }
/// let registry = ProjectionRegistry::new().with(Totals::default())?;
/// // Registering the same read model twice is refused.
/// assert!(registry.with(Totals::default()).is_err());
/// # Ok::<(), es_core::projection::DuplicateProjection>(())
/// ```
pub struct ProjectionRegistry {
    entries: Vec<Entry>,
    page_size: usize,
    wait_timeout: Duration,
    /// Stamps saved read models; `None`: the projection store's clock.
    clock: Option<Arc<dyn Clock>>,
    /// The page being applied, kept (empty) between pages so catching up allocates nothing
    /// per page on stores that fill it in place ([`EventStore::read_all_into`]); unused on a
    /// store that lends its events ([`EventStore::lend_all`]).
    page: Vec<RecordedEvent>,
}

impl Default for ProjectionRegistry {
    fn default() -> Self {
        ProjectionRegistry::new()
    }
}

impl fmt::Debug for ProjectionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRegistry")
            .field("checkpoints", &self.checkpoints().collect::<Vec<_>>())
            .field("page_size", &self.page_size)
            .field("wait_timeout", &self.wait_timeout)
            .finish_non_exhaustive()
    }
}

impl ProjectionRegistry {
    /// An empty registry reading pages of 512 events and waiting at most 5 s in
    /// [`catch_up_to`](ProjectionRegistry::catch_up_to).
    #[must_use]
    pub fn new() -> Self {
        ProjectionRegistry {
            entries: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            clock: None,
            page: Vec::new(),
        }
    }

    /// This registry reading the log `page_size` events at a time (at least 1).
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// This registry waiting at most `timeout` in
    /// [`catch_up_to`](ProjectionRegistry::catch_up_to).
    #[must_use]
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// This registry stamping saved read models with `clock` instead of the projection
    /// store's [clock](ProjectionStore::clock). Rarely needed: by default the store's one clock
    /// stamps events and saved read models alike.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// This registry with `projection` registered, at checkpoint
    /// [`GlobalPosition::START`].
    ///
    /// # Errors
    /// [`DuplicateProjection`] if a read model of the same name is already registered.
    pub fn with<P: Projection>(mut self, projection: P) -> Result<Self, DuplicateProjection> {
        self.register(projection)?;
        Ok(self)
    }

    /// Registers `projection` at checkpoint [`GlobalPosition::START`].
    ///
    /// The next catch-up replays the whole log into it, while the read models registered
    /// before only see what is new to them.
    ///
    /// # Errors
    /// [`DuplicateProjection`] if a read model of the same name is already registered.
    pub fn register<P: Projection>(
        &mut self,
        projection: P,
    ) -> Result<&mut Self, DuplicateProjection> {
        if self
            .entries
            .iter()
            .any(|entry| entry.model.name() == P::NAME)
        {
            return Err(DuplicateProjection { name: P::NAME });
        }
        self.entries.push(Entry {
            model: Box::new(projection),
            checkpoint: GlobalPosition::START,
        });
        Ok(self)
    }

    /// The registered read model of type `P`, if any.
    #[must_use]
    pub fn get<P: Projection>(&self) -> Option<&P> {
        find(&self.entries)
    }

    /// The checkpoint of the read model of type `P`, if it is registered.
    #[must_use]
    pub fn checkpoint<P: Projection>(&self) -> Option<GlobalPosition> {
        self.entries
            .iter()
            .find(|entry| entry.model.as_any().is::<P>())
            .map(|entry| entry.checkpoint)
    }

    /// The name and checkpoint of every registered read model, in registration order.
    pub fn checkpoints(&self) -> impl Iterator<Item = (&'static str, GlobalPosition)> + '_ {
        self.entries
            .iter()
            .map(|entry| (entry.model.name(), entry.checkpoint))
    }

    /// The lowest checkpoint: every read model has seen every event at or before it.
    /// [`GlobalPosition::START`] for an empty registry.
    #[must_use]
    pub fn position(&self) -> GlobalPosition {
        lowest_checkpoint(&self.entries)
    }

    /// How many read models are registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no read model is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies every event of the log that a read model has not seen yet, up to the end of the
    /// log as it is when the call starts.
    ///
    /// # Errors
    /// [`ProjectionError::Apply`] when a read model fails: the run stops at that event, the
    /// failing read model's checkpoint stays before it, and every other checkpoint matches
    /// exactly what its read model has applied. [`ProjectionError::CheckpointAhead`] when a
    /// checkpoint is past the end of the log (state restored from another store): nothing is
    /// applied. [`ProjectionError::Store`] when reading fails.
    pub async fn catch_up<S: EventStore>(
        &mut self,
        store: &S,
    ) -> Result<CatchUpReport, ProjectionError> {
        self.catch_up_with_progress(store, |_| {}).await
    }

    /// [`catch_up`](ProjectionRegistry::catch_up), calling `progress` after every page.
    pub async fn catch_up_with_progress<S, F>(
        &mut self,
        store: &S,
        mut progress: F,
    ) -> Result<CatchUpReport, ProjectionError>
    where
        S: EventStore,
        F: FnMut(Progress) + Send,
    {
        run(
            &mut self.entries,
            store,
            self.page_size,
            Bound::default(),
            &mut progress,
        )
        .await
    }

    /// Applies every event up to and including `position`, waiting until the log shows it.
    ///
    /// Pass the [`AppendOutcome::position`](crate::AppendOutcome) of your own append to read
    /// your own writes. Events after `position` are left for the next catch-up.
    ///
    /// The log is polled with growing pauses (1 ms up to 50 ms) for at most the wait timeout
    /// (see [`with_wait_timeout`](ProjectionRegistry::with_wait_timeout)). Waiting uses Tokio's
    /// timer, so the runtime needs its time driver enabled.
    ///
    /// # Errors
    /// [`ProjectionError::PositionNotReached`] if the position is still not visible when the
    /// timeout runs out, and the errors of [`catch_up`](ProjectionRegistry::catch_up).
    pub async fn catch_up_to<S: EventStore>(
        &mut self,
        store: &S,
        position: GlobalPosition,
    ) -> Result<CatchUpReport, ProjectionError> {
        let started = Instant::now();
        let mut pause = FIRST_POLL_INTERVAL;
        let mut events = 0;
        loop {
            let bound = Bound {
                up_to: Some(position),
                until: None,
            };
            let report = run(&mut self.entries, store, self.page_size, bound, &mut |_| {}).await?;
            events += report.events;
            if self.entries.is_empty() || report.position >= position {
                return Ok(CatchUpReport {
                    events,
                    position: report.position,
                });
            }
            let waited = started.elapsed();
            let Some(remaining) = self
                .wait_timeout
                .checked_sub(waited)
                .filter(|d| !d.is_zero())
            else {
                return Err(ProjectionError::PositionNotReached {
                    requested: position,
                    reached: report.position,
                    waited,
                });
            };
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// How long [`catch_up_to`](ProjectionRegistry::catch_up_to) waits for a position.
    #[must_use]
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// Applies what the log shows after the lowest checkpoint, page by page, until a page
    /// comes back short: one `read_all` per page and nothing else (no `last_position`, so on
    /// PostgreSQL the gap-safe bound is computed once per page), or, on a store that lends its
    /// events ([`EventStore::lend_all`]), the log's own events. Burned positions after the
    /// last event are not skipped over, unlike in [`catch_up`](ProjectionRegistry::catch_up):
    /// the next run reads past them. Along the way, every [`PROGRESS_EVERY`] events and after
    /// each full page, `progress` is told the position every read model has seen, so waiters
    /// for earlier positions need not wait for the end of a long run.
    pub(super) async fn catch_up_pages<S: EventStore>(
        &mut self,
        store: &S,
        mut progress: impl FnMut(GlobalPosition),
    ) -> Result<CatchUpReport, ProjectionError> {
        let mut after = lowest_checkpoint(&self.entries);
        let mut events = 0;
        if self.entries.is_empty() {
            return Ok(CatchUpReport::default());
        }
        loop {
            let from = after;
            let mut apply = |event: &RecordedEvent| {
                apply_next(
                    &mut self.entries,
                    event,
                    &mut after,
                    &mut events,
                    &mut progress,
                )
            };
            // A store holding its log in memory lends the events: nothing is copied.
            let read = if let Some(read) = store.lend_all(from, self.page_size, &mut apply) {
                read
            } else {
                self.page.clear();
                store
                    .read_all_into(from, self.page_size, &mut self.page)
                    .await?;
                let read = visit_each(&self.page, &mut apply);
                // Applied: the events are not held until the next catch-up.
                self.page.clear();
                read
            };
            let read = match read {
                ControlFlow::Continue(read) => read,
                ControlFlow::Break(error) => return Err(error),
            };
            if read < self.page_size {
                break;
            }
            progress(lowest_checkpoint(&self.entries));
        }
        Ok(CatchUpReport {
            events,
            position: lowest_checkpoint(&self.entries),
        })
    }

    /// Forgets every applied event: resets each read model and its checkpoint.
    pub fn reset(&mut self) {
        for entry in &mut self.entries {
            entry.model.reset();
            entry.checkpoint = GlobalPosition::START;
        }
    }

    /// Resets every read model and replays the whole log into them.
    ///
    /// # Errors
    /// As for [`catch_up`](ProjectionRegistry::catch_up).
    pub async fn rebuild<S: EventStore>(
        &mut self,
        store: &S,
    ) -> Result<CatchUpReport, ProjectionError> {
        self.rebuild_with_progress(store, |_| {}).await
    }

    /// [`rebuild`](ProjectionRegistry::rebuild), calling `progress` after every page.
    pub async fn rebuild_with_progress<S, F>(
        &mut self,
        store: &S,
        progress: F,
    ) -> Result<CatchUpReport, ProjectionError>
    where
        S: EventStore,
        F: FnMut(Progress) + Send,
    {
        self.reset();
        self.catch_up_with_progress(store, progress).await
    }

    /// Fresh copies of every registered read model (same configuration, no events), built from
    /// the log as it was at `at`. The registry itself is not changed.
    ///
    /// For [`AsOf::Time`], every event with `recorded_at <= t` is applied, in global order,
    /// whatever its position: the whole log is read.
    ///
    /// # Errors
    /// As for [`catch_up`](ProjectionRegistry::catch_up).
    pub async fn as_of<S: EventStore>(
        &self,
        store: &S,
        at: AsOf,
    ) -> Result<HistoricalView, ProjectionError> {
        let mut entries: Vec<Entry> = self.entries.iter().map(Entry::fresh_copy).collect();
        let bound = match at {
            AsOf::Position(position) => Bound {
                up_to: Some(position),
                until: None,
            },
            AsOf::Time(time) => Bound {
                up_to: None,
                until: Some(time),
            },
        };
        let report = run(&mut entries, store, self.page_size, bound, &mut |_| {}).await?;
        Ok(HistoricalView {
            entries,
            at,
            position: report.position,
        })
    }

    /// Saves every read model's state, encoded with `codec`, and its checkpoint in `store`.
    ///
    /// # Errors
    /// [`ProjectionError::Encode`] for a state the codec cannot represent and
    /// [`ProjectionError::Store`] when saving fails. Read models saved before the failure stay
    /// saved; each saved state matches its own checkpoint.
    pub async fn save_to<P: ProjectionStore>(
        &self,
        store: &P,
        codec: CodecId,
    ) -> Result<(), ProjectionError> {
        for entry in &self.entries {
            let projection = entry.model.name();
            let state = entry
                .model
                .encode(codec)
                .map_err(|source| ProjectionError::Encode { projection, source })?;
            store
                .save_projection(SavedProjection {
                    name: projection.to_owned(),
                    position: entry.checkpoint,
                    codec,
                    state,
                    saved_at: match &self.clock {
                        Some(clock) => clock.now(),
                        None => store.clock().now(),
                    },
                })
                .await?;
        }
        Ok(())
    }

    /// Replaces each read model's state and checkpoint with the ones saved in `store`, so the
    /// next catch-up only applies what came after.
    ///
    /// A read model with no saved state is left as it is. A saved state that does not decode
    /// (written by an older layout of the read model, or damaged) is discarded with a warning:
    /// that read model is reset and replays the log from the start.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when loading fails.
    pub async fn restore_from<P: ProjectionStore>(
        &mut self,
        store: &P,
    ) -> Result<RestoreReport, ProjectionError> {
        let mut report = RestoreReport::default();
        for entry in &mut self.entries {
            let name = entry.model.name();
            let Some(saved) = store.load_projection(name).await? else {
                report.missing.push(name);
                continue;
            };
            match entry.model.restore(saved.codec, &saved.state) {
                Ok(()) => {
                    entry.checkpoint = saved.position;
                    report.restored.push(name);
                }
                Err(error) => {
                    tracing::warn!(
                        projection = name,
                        position = %saved.position,
                        error = &error as &dyn std::error::Error,
                        "saved read model does not decode; it will be rebuilt from the log"
                    );
                    entry.model.reset();
                    entry.checkpoint = GlobalPosition::START;
                    report.discarded.push(name);
                }
            }
        }
        Ok(report)
    }
}

/// What [`ProjectionRegistry::restore_from`] found, by read model name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Read models whose saved state and checkpoint were restored.
    pub restored: Vec<&'static str>,
    /// Read models with no saved state.
    pub missing: Vec<&'static str>,
    /// Read models whose saved state did not decode; they were reset to replay from the start.
    pub discarded: Vec<&'static str>,
}

/// Read models as they were at some point in history, from
/// [`ProjectionRegistry::as_of`].
pub struct HistoricalView {
    entries: Vec<Entry>,
    at: AsOf,
    position: GlobalPosition,
}

impl fmt::Debug for HistoricalView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self
            .entries
            .iter()
            .map(|entry| entry.model.name())
            .collect();
        f.debug_struct("HistoricalView")
            .field("at", &self.at)
            .field("position", &self.position)
            .field("projections", &names)
            .finish()
    }
}

impl HistoricalView {
    /// The read model of type `P` as it was, if it is registered.
    #[must_use]
    pub fn get<P: Projection>(&self) -> Option<&P> {
        find(&self.entries)
    }

    /// The point in history this view shows.
    #[must_use]
    pub fn at(&self) -> AsOf {
        self.at
    }

    /// The position of the last event of the log the view considered.
    #[must_use]
    pub fn position(&self) -> GlobalPosition {
        self.position
    }
}

fn find<P: Projection>(entries: &[Entry]) -> Option<&P> {
    entries
        .iter()
        .find_map(|entry| entry.model.as_any().downcast_ref::<P>())
}

/// How many events to read after `after` to reach `target`: a page at most, and never more than
/// the positions in between (positions may be burned, so there are at most that many events).
pub(crate) fn page_limit(after: GlobalPosition, target: GlobalPosition, page_size: usize) -> usize {
    let gap = target.get().saturating_sub(after.get()).max(1);
    usize::try_from(gap).map_or(page_size, |gap| gap.min(page_size))
}

fn lowest_checkpoint(entries: &[Entry]) -> GlobalPosition {
    entries
        .iter()
        .map(|entry| entry.checkpoint)
        .min()
        .unwrap_or(GlobalPosition::START)
}

/// Which part of the log a run applies.
#[derive(Clone, Copy, Debug, Default)]
struct Bound {
    /// Stop after this position (default: the end of the log when the run starts).
    up_to: Option<GlobalPosition>,
    /// Apply only events recorded at or before this instant (the others are still seen).
    until: Option<Timestamp>,
}

/// Applies `event`, the next of a catch-up that has applied `events` events up to `after`, to
/// every entry that has not seen it, telling `progress` the position every read model has
/// seen every [`PROGRESS_EVERY`] events; breaks with the error that stops the catch-up.
fn apply_next(
    entries: &mut [Entry],
    event: &RecordedEvent,
    after: &mut GlobalPosition,
    events: &mut u64,
    progress: &mut impl FnMut(GlobalPosition),
) -> ControlFlow<ProjectionError> {
    let position = event.global_position;
    if position <= *after {
        return ControlFlow::Break(ProjectionError::OutOfOrder {
            previous: *after,
            found: position,
        });
    }
    if let Err(error) = apply_to_entries(entries, event, true) {
        return ControlFlow::Break(error);
    }
    *after = position;
    *events += 1;
    if *events % PROGRESS_EVERY == 0 {
        progress(lowest_checkpoint(entries));
    }
    ControlFlow::Continue(())
}

/// Applies `event` to every entry that has not seen it (only marks it seen when not
/// `visible`), advancing their checkpoints to it.
fn apply_to_entries(
    entries: &mut [Entry],
    event: &RecordedEvent,
    visible: bool,
) -> Result<(), ProjectionError> {
    let position = event.global_position;
    for entry in entries.iter_mut() {
        if entry.checkpoint >= position {
            continue;
        }
        if visible && entry.model.handles(event) {
            entry
                .model
                .apply(event)
                .map_err(|source| ProjectionError::Apply {
                    projection: entry.model.name(),
                    position,
                    event_type: event.event_type.to_string(),
                    source,
                })?;
        }
        entry.checkpoint = position;
    }
    Ok(())
}

/// Reads the log from the lowest checkpoint in pages and applies each event to every entry
/// that has not seen it, in position order.
async fn run<S: EventStore>(
    entries: &mut [Entry],
    store: &S,
    page_size: usize,
    bound: Bound,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<CatchUpReport, ProjectionError> {
    if entries.is_empty() {
        return Ok(CatchUpReport::default());
    }
    let end = store.last_position().await?;
    // A checkpoint can only come from an event this store returned, and the log only grows:
    // one past its end was saved against another store.
    if let Some(ahead) = entries.iter().find(|entry| entry.checkpoint > end) {
        return Err(ProjectionError::CheckpointAhead {
            projection: ahead.model.name(),
            checkpoint: ahead.checkpoint,
            last_position: end,
        });
    }
    let target = bound.up_to.map_or(end, |position| position.min(end));
    let mut after = lowest_checkpoint(entries);
    let mut events = 0;
    // Whether every event at or before `target` has been seen by every entry.
    let mut complete = after >= target;
    while !complete {
        // Never more than the events up to `target`: a read-your-writes wait for the next
        // few events must not copy a whole page of the events after them.
        let page = store
            .read_all(after, page_limit(after, target, page_size))
            .await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            let position = event.global_position;
            if position <= after {
                return Err(ProjectionError::OutOfOrder {
                    previous: after,
                    found: position,
                });
            }
            if position > target {
                complete = true;
                break;
            }
            let visible = bound.until.is_none_or(|until| event.recorded_at <= until);
            apply_to_entries(entries, event, visible)?;
            after = position;
            events += 1;
            if position == target {
                complete = true;
                break;
            }
        }
        progress(Progress {
            events,
            position: after,
            target,
        });
    }
    if complete {
        // Every event up to `target` has been seen, including any burned positions just
        // before it: the checkpoints can say so.
        for entry in entries.iter_mut() {
            entry.checkpoint = entry.checkpoint.max(target);
        }
    }
    Ok(CatchUpReport {
        events,
        position: lowest_checkpoint(entries),
    })
}
