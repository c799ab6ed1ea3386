//! The projection daemon: read models kept current from a live subscription, in the
//! background, until shut down.
//!
//! Where a [`ProjectionRegistry`](super::ProjectionRegistry) moves only when the application
//! calls `catch_up`, a [`ProjectionDaemon`] runs on its own task: it restores each read model
//! from the [`ProjectionStore`] (state and checkpoint), subscribes to the log from the lowest
//! checkpoint, and applies every delivered batch to every read model that has not seen it.
//!
//! # Guarantees
//!
//! - **Order and exactly once.** Each read model sees every event after its checkpoint once,
//!   in global-position order (the subscription's guarantee), across restarts: its checkpoint
//!   is saved with its state, atomically, every [save interval](DaemonBuilder::with_save_interval)
//!   and at shutdown, and a restart resumes from it.
//! - **Failure isolation.** A read model whose `apply` fails (or panics) is put back to its
//!   state before the event (its last saved state plus the events after it, replayed aside,
//!   so a partial change is never kept, whatever the read model did), and the event is tried
//!   again after a pause, on a copy, as the [`RetryPolicy`] says. When the attempts are spent
//!   the read model is *parked*: its error, the event's position and type are recorded in the
//!   store, it stops, and every other read model goes on. [`resume`](DaemonClient::resume)
//!   (after a fix: tries the event again) and [`skip`](DaemonClient::skip) (passes over exactly
//!   that event, recorded) are explicit; nothing is retried or skipped on its own after parking.
//!   A parked read model stays parked across restarts.
//! - **Graceful shutdown.** [`shutdown`](ProjectionDaemon::shutdown) finishes the batch in
//!   hand, saves every read model and its checkpoint, and returns. Dropping the daemon does the
//!   same in the background.
//! - **Read-your-writes.** [`wait_for`](DaemonClient::wait_for) waits until every read model
//!   (or [one](DaemonClient::wait_for_model)) has seen a position, such as the
//!   [`AppendOutcome::position`](crate::AppendOutcome) of your own write. Each read model
//!   publishes its checkpoint on a `tokio::sync::watch` channel, so any number of tasks wait at
//!   once without taking a shared lock; a parked read model ends the wait at once with
//!   [`DaemonError::Parked`] instead of letting it run into the timeout.
//! - **Queries while it runs.** [`read`](DaemonClient::read) runs a closure on a read model's
//!   current state under a read lock; the daemon takes the write lock once per batch, so a
//!   query waits at most for one batch, and queries never wait for each other.
//!
//! # How the log is read
//!
//! Read models at the same checkpoint share one subscription: a batch is read once and applied
//! to each of them in turn (one write lock per read model per batch), as
//! [`rebuild`](super::ProjectionRegistry::rebuild) does with a page. A second task reads the
//! next batch while the current one is applied. The subscription starts at the lowest
//! checkpoint of the read models that are not parked; read models ahead of it pass over what
//! they have seen. A read model that falls behind later (resumed, or retried after a failure)
//! reads the log on its own, one page per turn, alternating with the shared batches, until it
//! reaches the shared position, then joins the shared subscription again.
//!
//! The log need not come from the store that keeps the read models:
//! [`start_from`](DaemonBuilder::start_from) reads it from any [`LogSource`] (a message
//! broker's copy of the log, for example) and saves the read models in a local store, telling
//! the source after each save how far every read model it feeds has durably saved, so that a
//! broker is acknowledged only for what a crash cannot lose.
//!
//! # Status
//!
//! [`status`](DaemonClient::status) gives each read model's checkpoint, the head of the log,
//! the lag, events per second and [state](ModelState). The daemon also writes this record to
//! the store beside each read model (under the read model's name followed by
//! [`RECORD_SUFFIX`]), so [`DaemonBuilder::saved_status`] shows it from another process.
//!
//! # Observability
//!
//! `tracing` spans: `daemon.batch` for each delivered batch (`first`, `last`, `events`), with a
//! `daemon.apply` span per read model inside (`projection`, `first`, `last`, `seen`,
//! `applied`), and `daemon.catch_up` for a page read by a lagging read model. Failures, parking,
//! resume and skip are logged as events. With the `metrics` feature, counters and gauges go
//! through the `metrics` facade (no exporter is chosen for you), listed under
//! [Metrics](self#metrics).
//!
//! # Metrics
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `es_daemon_events_total` | counter | events the read model has seen |
//! | `es_daemon_apply_failures_total` | counter | failed `apply` calls (each retry counts) |
//! | `es_daemon_checkpoint` | gauge | the read model's checkpoint |
//! | `es_daemon_lag_events` | gauge | positions between its checkpoint and the head |
//! | `es_daemon_events_per_second` | gauge | events seen per second over the last interval |
//! | `es_daemon_parked` | gauge | 1 while parked, else 0 |
//!
//! Each carries a `projection` label; gauges are set every save interval.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use es_core::projection::daemon::ProjectionDaemon;
//! use es_core::projection::Projection;
//! use es_core::{EventStore, ExpectedVersion, InMemory, NewEvent, RecordedEvent, StreamId};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Default, Serialize, Deserialize)]
//! struct Count(u64);
//!
//! impl Projection for Count {
//!     const NAME: &'static str = "count";
//!     type Error = std::convert::Infallible;
//!     fn apply(&mut self, _event: &RecordedEvent) -> Result<(), Self::Error> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//!     fn reset(&mut self) {
//!         self.0 = 0;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemory::new();
//! let daemon = ProjectionDaemon::builder()
//!     .with(Count::default())?
//!     .start(store.clone())
//!     .await?;
//!
//! let stream = StreamId::new("counter", "a");
//! let event = NewEvent {
//!     event_id: uuid::Uuid::now_v7(),
//!     event_type: "Ticked".into(),
//!     schema_version: 1,
//!     codec: es_core::CodecId::Json,
//!     payload: b"null".to_vec(),
//!     metadata: es_core::Metadata::default(),
//! };
//! let written = store.append(&stream, ExpectedVersion::Any, vec![event]).await?;
//!
//! // Read your own write.
//! daemon.wait_for(written.position, Duration::from_secs(5)).await?;
//! assert_eq!(daemon.read(|count: &Count| count.0)?, 1);
//!
//! daemon.shutdown().await?; // saves the checkpoint: a restart goes on from here
//! # Ok(())
//! # }
//! ```

mod error;
mod runner;
mod source;
mod status;
#[cfg(all(test, feature = "sqlite"))]
mod table_tests;
mod telemetry;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::codec::CodecId;
use crate::lease::Fence;
use crate::repository::RetryPolicy;
use crate::snapshot::ProjectionStore;
use crate::store::EventStore;
use crate::subscription::Subscribe;
use crate::types::GlobalPosition;

use super::registry::ErasedProjection;
#[cfg(feature = "sqlite")]
use super::table::{TableDatabase, TableProjection, TableRunner};
use super::{DuplicateProjection, Projection, ProjectionError};

pub use error::DaemonError;
pub use source::{Feed, LogSource, StoreLog};
pub use status::{ModelState, Parked, ReadModelStatus, Skipped, MAX_SKIPPED, RECORD_SUFFIX};

use runner::{
    Control, Kind, Mode, ModelRun, Progress, Runner, SavedState, Settings, Shared, SharedModel,
    StatusCell,
};
use status::{record_key, Record};

/// How many events a lagging read model reads per page, unless configured.
const DEFAULT_PAGE_SIZE: usize = 512;
/// How often checkpoints are saved and rates measured, unless configured.
const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How a failing event is retried, unless configured: 5 attempts in all, pausing 100 ms, then
/// 200 ms, 400 ms, 800 ms.
const DEFAULT_RETRY: RetryPolicy =
    RetryPolicy::attempts(5).with_backoff(Duration::from_millis(100), Duration::from_secs(5));
/// How many batches the reading task may hold ahead of the applying one.
const READ_AHEAD: usize = 2;

/// Configures a [`ProjectionDaemon`]: its read models and settings. Start it with
/// [`start`](DaemonBuilder::start).
pub struct DaemonBuilder {
    models: Vec<Registered>,
    retry: RetryPolicy,
    save_interval: Duration,
    codec: CodecId,
    page_size: usize,
    clock: Option<Arc<dyn Clock>>,
    fence: Option<Fence>,
}

/// A read model as registered: kept in memory, or in tables.
enum Registered {
    Memory(Box<dyn ErasedProjection>),
    #[cfg(feature = "sqlite")]
    Table(TableRunner),
}

impl Registered {
    fn name(&self) -> &'static str {
        match self {
            Registered::Memory(model) => model.name(),
            #[cfg(feature = "sqlite")]
            Registered::Table(table) => table.name(),
        }
    }
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        DaemonBuilder {
            models: Vec::new(),
            retry: DEFAULT_RETRY,
            save_interval: DEFAULT_SAVE_INTERVAL,
            codec: CodecId::Postcard,
            page_size: DEFAULT_PAGE_SIZE,
            clock: None,
            fence: None,
        }
    }
}

impl fmt::Debug for DaemonBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.models.iter().map(Registered::name).collect();
        f.debug_struct("DaemonBuilder")
            .field("projections", &names)
            .field("retry", &self.retry)
            .field("save_interval", &self.save_interval)
            .field("codec", &self.codec)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl DaemonBuilder {
    /// This builder with `projection` registered. Its saved state and checkpoint, if any, are
    /// restored at start; otherwise it starts from the beginning of the log.
    ///
    /// # Errors
    /// [`DuplicateProjection`] if a read model of the same name is already registered.
    pub fn with<P: Projection>(mut self, projection: P) -> Result<Self, DuplicateProjection> {
        self.register(projection)?;
        Ok(self)
    }

    /// Registers `projection` (see [`with`](DaemonBuilder::with)).
    ///
    /// # Errors
    /// [`DuplicateProjection`] if a read model of the same name is already registered.
    pub fn register<P: Projection>(
        &mut self,
        projection: P,
    ) -> Result<&mut Self, DuplicateProjection> {
        self.check_unique(P::NAME)?;
        self.models.push(Registered::Memory(Box::new(projection)));
        Ok(self)
    }

    /// This builder with the table read model `projection` registered, its tables and
    /// checkpoint in `database` (usually the store's own:
    /// [`TableStore::table_database`](crate::projection::table::TableStore::table_database)).
    ///
    /// It runs beside the in-memory read models, with the same status, waits, retries,
    /// parking, resume and skip; each batch is applied in one transaction that also moves its
    /// checkpoint (see [`projection::table`](crate::projection::table)), so it has nothing to
    /// save at intervals or at shutdown, and a crash loses nothing it committed. At start its
    /// tables and checkpoint row are created if missing, and it resumes from its checkpoint.
    /// [`read`](DaemonClient::read) does not reach it: query its tables.
    ///
    /// # Errors
    /// [`DuplicateProjection`] if a read model of the same name is already registered.
    #[cfg(feature = "sqlite")]
    pub fn with_table<T: TableProjection>(
        mut self,
        projection: T,
        database: TableDatabase,
    ) -> Result<Self, DuplicateProjection> {
        self.check_unique(T::NAME)?;
        self.models.push(Registered::Table(TableRunner::new(
            Arc::new(projection),
            database,
        )));
        Ok(self)
    }

    fn check_unique(&self, name: &'static str) -> Result<(), DuplicateProjection> {
        if self.models.iter().any(|model| model.name() == name) {
            return Err(DuplicateProjection { name });
        }
        Ok(())
    }

    /// How a failing event is retried before its read model is parked: at most
    /// [`max_attempts`](RetryPolicy::max_attempts) tries in all, pausing (with jitter) below
    /// the policy's [`delay_bound`](RetryPolicy::delay_bound) between them. The default is 5
    /// attempts, pausing up to 100 ms, 200 ms, 400 ms, 800 ms. [`RetryPolicy::no_retry`] parks a
    /// read model on its first failure.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How often checkpoints are saved, rates measured and the head read (default 1 s; at
    /// least 1 ms). A crash loses at most this much progress, which is applied again on
    /// restart, never skipped.
    #[must_use]
    pub fn with_save_interval(mut self, interval: Duration) -> Self {
        self.save_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The codec read models are saved with (default postcard).
    #[must_use]
    pub fn with_codec(mut self, codec: CodecId) -> Self {
        self.codec = codec;
        self
    }

    /// How many events the subscription and a lagging read model read per page (default 512,
    /// at least 1).
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Makes every durable write of the daemon conditional on `fence` (a lease token from a
    /// [`LeaseStore`](crate::lease::LeaseStore)): table batches check it in their transaction,
    /// saved states and records are saved with
    /// [`save_projection_fenced`](ProjectionStore::save_projection_fenced). When a write is
    /// refused with [`StoreError::Fenced`](crate::StoreError::Fenced) (the lease moved on), the
    /// daemon writes nothing more and stops with that error: a holder paused past its lease
    /// cannot change the read models the next holder owns.
    #[must_use]
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The clock that stamps saved states and records (default: the store's
    /// [`clock`](ProjectionStore::clock)).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The names of the registered read models, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.models.iter().map(Registered::name)
    }

    /// Each registered read model's status as the last daemon that ran it recorded it in
    /// `store` (checkpoint from its saved state, head from the store now), without starting
    /// anything: for a `status` command in another process.
    ///
    /// A read model no daemon has run shows as [`ModelState::Stopped`] with no `updated_at`.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when reading the store fails.
    pub async fn saved_status<S: EventStore + ProjectionStore>(
        &self,
        store: &S,
    ) -> Result<Vec<ReadModelStatus>, ProjectionError> {
        let head = store.last_position().await?;
        let mut statuses = Vec::with_capacity(self.models.len());
        for model in &self.models {
            let name = model.name();
            let checkpoint = match model {
                Registered::Memory(_) => store
                    .load_projection(name)
                    .await?
                    .map_or(GlobalPosition::START, |saved| saved.position),
                #[cfg(feature = "sqlite")]
                Registered::Table(table) => table.checkpoint().await?,
            };
            let saved_record = store.load_projection(&record_key(name)).await?;
            let record = saved_record.as_ref().and_then(Record::from_saved);
            let (state, events_per_second, skipped) = match record {
                Some(record) => (record.state, record.events_per_second, record.skipped),
                None => (ModelState::Stopped, 0.0, Vec::new()),
            };
            statuses.push(ReadModelStatus {
                name: name.to_owned(),
                checkpoint,
                head,
                lag: head.get().saturating_sub(checkpoint.get()),
                events_per_second,
                state,
                skipped,
                updated_at: saved_record.map(|saved| saved.saved_at),
            });
        }
        Ok(statuses)
    }

    /// Restores every read model from `store` and starts the daemon on the current Tokio
    /// runtime (which needs its time driver).
    ///
    /// A saved state that does not decode is discarded with a warning: that read model
    /// replays the log from the start. A read model recorded as parked starts parked.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when loading fails, and
    /// [`ProjectionError::CheckpointAhead`] when a saved checkpoint is past the end of the
    /// log (state saved against another store).
    pub async fn start<S>(self, store: S) -> Result<ProjectionDaemon, ProjectionError>
    where
        S: Subscribe + ProjectionStore + 'static,
    {
        let store = Arc::new(store);
        self.start_from(StoreLog(Arc::clone(&store)), store).await
    }

    /// Starts the daemon on a log read from `log` (for example a message broker's copy of a
    /// store's log), keeping the read models' states, checkpoints and records in `store`.
    ///
    /// Everything else is as for [`start`](DaemonBuilder::start); `log` is told, through
    /// [`LogSource::saved`], how far every read model fed by it has durably saved.
    ///
    /// # Errors
    /// As for [`start`](DaemonBuilder::start), the head being `log`'s last position.
    pub async fn start_from<L, P>(
        self,
        log: L,
        store: P,
    ) -> Result<ProjectionDaemon, ProjectionError>
    where
        L: LogSource,
        P: ProjectionStore + 'static,
    {
        let head = log.last_position().await?;
        let mut shared_models = Vec::with_capacity(self.models.len());
        let mut runs = Vec::with_capacity(self.models.len());
        for live in self.models {
            let (shared_model, run) = restore_model(&store, live, head).await?;
            shared_models.push(shared_model);
            runs.push(run);
        }
        // The shared subscription starts where the furthest-behind running read model is.
        let start = runs
            .iter()
            .filter(|run| matches!(run.mode, Mode::Live))
            .map(|run| run.checkpoint)
            .min()
            .unwrap_or(head);
        let (control_sender, control) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            models: shared_models,
            head: AtomicU64::new(head.get()),
            control: control_sender,
            updates: watch::Sender::new(0),
        });
        let (batch_sender, batches) = mpsc::channel(READ_AHEAD);
        let feed = log.feed(start, self.page_size);
        let pump = tokio::spawn(runner::pump(feed, batch_sender));
        let (shutdown, shutdown_signal) = watch::channel(false);
        let runner = Runner {
            log,
            store,
            shared: Arc::clone(&shared),
            runs,
            position: start,
            settings: Settings {
                retry: self.retry,
                save_interval: self.save_interval,
                codec: self.codec,
                page_size: self.page_size,
                clock: self.clock,
                fence: self.fence,
            },
            fenced: None,
            last_tick: tokio::time::Instant::now(),
        };
        tracing::info!(
            projections = shared.models.len(),
            start = start.get(),
            head = head.get(),
            "projection daemon started"
        );
        let task = tokio::spawn(async move {
            let outcome = runner.run(batches, control, shutdown_signal).await;
            pump.abort();
            outcome
        });
        Ok(ProjectionDaemon {
            client: DaemonClient { shared },
            shutdown,
            task,
        })
    }
}

/// Restores one read model (state, checkpoint, parked record) from `store` for a daemon
/// starting at `head`.
async fn restore_model<S: ProjectionStore>(
    store: &S,
    registered: Registered,
    head: GlobalPosition,
) -> Result<(SharedModel, ModelRun), ProjectionError> {
    let name = registered.name();
    let (kind, pristine, checkpoint, saved_state) = match registered {
        Registered::Memory(live) => {
            let pristine = live.fresh();
            let (live, checkpoint, saved) = restore_memory(store, live).await?;
            (
                Kind::Memory(RwLock::new(live)),
                Some(pristine),
                checkpoint,
                saved,
            )
        }
        #[cfg(feature = "sqlite")]
        Registered::Table(table) => {
            // Creates the tables and checkpoint row if missing; the checkpoint is durable.
            let checkpoint = table.prepare(store.clock().now()).await?;
            (Kind::Table(table), None, checkpoint, None)
        }
    };
    if checkpoint > head {
        return Err(ProjectionError::CheckpointAhead {
            projection: name,
            checkpoint,
            last_position: head,
        });
    }
    let record = store
        .load_projection(&record_key(name))
        .await?
        .as_ref()
        .and_then(Record::from_saved);
    let skipped = record
        .as_ref()
        .map(|record| record.skipped.clone())
        .unwrap_or_default();
    let parked = record.and_then(|record| match record.state {
        ModelState::Parked(parked) => Some(parked),
        _ => None,
    });
    let (mode, state) = match parked {
        Some(parked) => (
            Mode::Parked {
                position: parked.position,
                event_type: parked.event_type.clone(),
                error: parked.error.clone(),
            },
            ModelState::Parked(parked),
        ),
        None if checkpoint < head => (Mode::Live, ModelState::CatchingUp),
        None => (Mode::Live, ModelState::Running),
    };
    let is_parked = matches!(mode, Mode::Parked { .. });
    let shared_model = SharedModel {
        name,
        kind,
        progress: watch::Sender::new(Progress {
            checkpoint,
            parked: is_parked,
            stopped: false,
        }),
        seen: AtomicU64::new(checkpoint.get()),
        status: Mutex::new(StatusCell {
            state,
            events_per_second: 0.0,
            skipped,
        }),
    };
    let run = ModelRun {
        pristine,
        checkpoint,
        mode,
        saved: saved_state,
        catching_up_until: head,
        suspect: false,
        seen_since_tick: 0,
        record_written: None,
    };
    Ok((shared_model, run))
}

/// An in-memory read model restored from its saved state (if it has one that decodes), with
/// its checkpoint and that saved state.
async fn restore_memory<S: ProjectionStore>(
    store: &S,
    mut live: Box<dyn ErasedProjection>,
) -> Result<
    (
        Box<dyn ErasedProjection>,
        GlobalPosition,
        Option<SavedState>,
    ),
    ProjectionError,
> {
    let name = live.name();
    let mut checkpoint = GlobalPosition::START;
    let mut saved_state = None;
    if let Some(saved) = store.load_projection(name).await? {
        match live.restore(saved.codec, &saved.state) {
            Ok(()) => {
                checkpoint = saved.position;
                saved_state = Some(SavedState {
                    position: saved.position,
                    codec: saved.codec,
                    bytes: saved.state,
                });
            }
            Err(error) => {
                tracing::warn!(
                    projection = name,
                    position = %saved.position,
                    error = &error as &dyn std::error::Error,
                    "saved read model does not decode; it will be rebuilt from the log"
                );
                live.reset();
            }
        }
    }
    Ok((live, checkpoint, saved_state))
}

/// A running daemon. See the [module documentation](self).
///
/// Its methods that wait, query or control forward to its [`DaemonClient`], which can be
/// cloned into other tasks. Dropping it shuts the daemon down in the background (checkpoints
/// are still saved); [`shutdown`](ProjectionDaemon::shutdown) does it and waits.
pub struct ProjectionDaemon {
    client: DaemonClient,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl fmt::Debug for ProjectionDaemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionDaemon")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl ProjectionDaemon {
    /// A builder with no read models and the default settings.
    #[must_use]
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// A handle for other tasks: waits, queries, status, resume and skip.
    #[must_use]
    pub fn client(&self) -> DaemonClient {
        self.client.clone()
    }

    /// See [`DaemonClient::wait_for`].
    ///
    /// # Errors
    /// As for [`DaemonClient::wait_for`].
    pub async fn wait_for(
        &self,
        position: GlobalPosition,
        timeout: Duration,
    ) -> Result<(), DaemonError> {
        self.client.wait_for(position, timeout).await
    }

    /// See [`DaemonClient::read`].
    ///
    /// # Errors
    /// As for [`DaemonClient::read`].
    pub fn read<P: Projection, R>(&self, query: impl FnOnce(&P) -> R) -> Result<R, DaemonError> {
        self.client.read(query)
    }

    /// See [`DaemonClient::status`].
    #[must_use]
    pub fn status(&self) -> Vec<ReadModelStatus> {
        self.client.status()
    }

    /// See [`DaemonClient::resume`].
    ///
    /// # Errors
    /// As for [`DaemonClient::resume`].
    pub async fn resume(&self, name: &str) -> Result<(), DaemonError> {
        self.client.resume(name).await
    }

    /// See [`DaemonClient::skip`].
    ///
    /// # Errors
    /// As for [`DaemonClient::skip`].
    pub async fn skip(&self, name: &str, position: GlobalPosition) -> Result<(), DaemonError> {
        self.client.skip(name, position).await
    }

    /// Whether the daemon's task has ended (shut down, or stopped on an error).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the daemon: the batch in hand is finished, then every read model's state and
    /// checkpoint is saved.
    ///
    /// # Errors
    /// The error that stopped the daemon, if it stopped on its own (the store's log out of
    /// order, or the subscription gone), or the first failure to save at shutdown.
    ///
    /// # Panics
    /// If the daemon's task panicked (a bug in the daemon: panics in read models are caught
    /// and treated as failures), the panic is resumed here.
    pub async fn shutdown(self) -> Result<(), ProjectionError> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Ok(()),
        }
    }
}

/// A cheap, cloneable handle on a running daemon, for the tasks that wait, query or control.
#[derive(Clone)]
pub struct DaemonClient {
    shared: Arc<Shared>,
}

impl fmt::Debug for DaemonClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checkpoints: Vec<_> = self
            .shared
            .models
            .iter()
            .map(|model| (model.name, model.progress.borrow().checkpoint))
            .collect();
        f.debug_struct("DaemonClient")
            .field("checkpoints", &checkpoints)
            .finish()
    }
}

impl DaemonClient {
    /// Waits until every read model has seen `position` (its checkpoint is at or past it), at
    /// most `timeout`.
    ///
    /// # Errors
    /// [`DaemonError::Parked`] as soon as a read model that has not reached `position` is
    /// parked, [`DaemonError::Timeout`] naming a read model still behind when the time is up,
    /// and [`DaemonError::Stopped`] when the daemon stops first.
    pub async fn wait_for(
        &self,
        position: GlobalPosition,
        timeout: Duration,
    ) -> Result<(), DaemonError> {
        // Served already (the usual case for a write made a while ago): one load per model.
        if self
            .shared
            .models
            .iter()
            .all(|model| model.has_seen(position))
        {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for index in 0..self.shared.models.len() {
            self.wait_model(index, position, deadline, timeout).await?;
        }
        Ok(())
    }

    /// Waits until the read model `P` has seen `position`, at most `timeout`.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`], and as for [`wait_for`](DaemonClient::wait_for).
    pub async fn wait_for_model<P: Projection>(
        &self,
        position: GlobalPosition,
        timeout: Duration,
    ) -> Result<(), DaemonError> {
        self.wait_for_named(P::NAME, position, timeout).await
    }

    /// Waits until the read model called `name` has seen `position`, at most `timeout`.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`], and as for [`wait_for`](DaemonClient::wait_for).
    pub async fn wait_for_named(
        &self,
        name: &str,
        position: GlobalPosition,
        timeout: Duration,
    ) -> Result<(), DaemonError> {
        let index = self.index(name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_model(index, position, deadline, timeout).await
    }

    async fn wait_model(
        &self,
        index: usize,
        position: GlobalPosition,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), DaemonError> {
        let model = &self.shared.models[index];
        if model.has_seen(position) {
            return Ok(());
        }
        let mut progress = model.progress.subscribe();
        let waited = tokio::time::timeout_at(
            deadline,
            progress.wait_for(|now| now.checkpoint >= position || now.parked || now.stopped),
        )
        .await
        .is_ok();
        let now = *progress.borrow();
        match waited {
            true if now.checkpoint >= position => Ok(()),
            true if now.parked => Err(self.parked_error(index)),
            true => Err(DaemonError::Stopped),
            false => Err(DaemonError::Timeout {
                projection: model.name,
                requested: position,
                reached: now.checkpoint,
                waited: timeout,
            }),
        }
    }

    fn parked_error(&self, index: usize) -> DaemonError {
        let model = &self.shared.models[index];
        match &model.status().state {
            ModelState::Parked(parked) => DaemonError::Parked {
                projection: model.name,
                position: parked.position,
                event_type: parked.event_type.clone(),
                error: parked.error.clone(),
            },
            // Resumed between the two reads: it is on its way again, but not there yet.
            _ => DaemonError::Timeout {
                projection: model.name,
                requested: model.progress.borrow().checkpoint,
                reached: model.progress.borrow().checkpoint,
                waited: Duration::ZERO,
            },
        }
    }

    /// Runs `query` on the current state of the read model `P`, under its read lock: keep it
    /// short (copy out what you need), as the daemon waits for it before the next batch.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`] if no read model of type `P` is registered.
    pub fn read<P: Projection, R>(&self, query: impl FnOnce(&P) -> R) -> Result<R, DaemonError> {
        let index = self.index(P::NAME)?;
        let model = &self.shared.models[index];
        let live = model.read().ok_or(DaemonError::InTables {
            projection: model.name,
        })?;
        let any: &dyn Any = live.as_any();
        let model = any
            .downcast_ref::<P>()
            .ok_or_else(|| DaemonError::NotRegistered {
                name: std::any::type_name::<P>().to_owned(),
            })?;
        Ok(query(model))
    }

    /// A copy of the read model `P` as it is now, with its checkpoint.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`] if no read model of type `P` is registered.
    pub fn snapshot<P: Projection>(&self) -> Result<(P, GlobalPosition), DaemonError> {
        let index = self.index(P::NAME)?;
        let model = &self.shared.models[index];
        let live = model.read().ok_or(DaemonError::InTables {
            projection: model.name,
        })?;
        let checkpoint = model.progress.borrow().checkpoint;
        let copy = live.as_any().downcast_ref::<P>().cloned().ok_or_else(|| {
            DaemonError::NotRegistered {
                name: std::any::type_name::<P>().to_owned(),
            }
        })?;
        Ok((copy, checkpoint))
    }

    /// Each read model's checkpoint, head, lag, rate and state, in registration order. The
    /// head is the highest position the daemon has seen (read from the store every save
    /// interval, and raised by every delivered batch).
    #[must_use]
    pub fn status(&self) -> Vec<ReadModelStatus> {
        let head = self.shared.head();
        self.shared
            .models
            .iter()
            .map(|model| {
                let checkpoint = model.progress.borrow().checkpoint;
                let head = head.max(checkpoint);
                let status = model.status();
                ReadModelStatus {
                    name: model.name.to_owned(),
                    checkpoint,
                    head,
                    lag: head.get() - checkpoint.get(),
                    events_per_second: status.events_per_second,
                    state: status.state.clone(),
                    skipped: status.skipped.clone(),
                    updated_at: None,
                }
            })
            .collect()
    }

    /// The checkpoint of the read model called `name`.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`] if there is none.
    pub fn checkpoint(&self, name: &str) -> Result<GlobalPosition, DaemonError> {
        let index = self.index(name)?;
        Ok(self.shared.models[index].progress.borrow().checkpoint)
    }

    /// A receiver that changes after every batch, catch-up page or state change, to follow
    /// the daemon (for example to print the read models as they move).
    #[must_use]
    pub fn updates(&self) -> Updates {
        Updates(self.shared.updates.subscribe())
    }

    /// Resumes a parked read model: it tries the event it failed on again (with a fresh
    /// retry budget), catches up on its own, then rejoins the others.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`], [`DaemonError::NotParked`],
    /// [`DaemonError::Store`] if the resumed state could not be recorded (it is resumed
    /// all the same), [`DaemonError::Stopped`].
    pub async fn resume(&self, name: &str) -> Result<(), DaemonError> {
        let index = self.index(name)?;
        self.control(|reply| Control::Resume { index, reply }).await
    }

    /// Passes over the event a parked read model failed on, exactly that one (give its
    /// position, from the status, so a stale command cannot skip another event), records the
    /// skip durably, and lets the read model go on from the next event.
    ///
    /// # Errors
    /// [`DaemonError::NotRegistered`], [`DaemonError::NotParked`],
    /// [`DaemonError::SkipMismatch`] if it is parked on another event (or the event is not the
    /// next one after its checkpoint), [`DaemonError::Store`] if reading or recording failed
    /// (then the read model stays parked when the read failed, or is already moving on when
    /// only the record failed), [`DaemonError::Stopped`].
    pub async fn skip(&self, name: &str, position: GlobalPosition) -> Result<(), DaemonError> {
        let index = self.index(name)?;
        self.control(|reply| Control::Skip {
            index,
            position,
            reply,
        })
        .await
    }

    async fn control(
        &self,
        message: impl FnOnce(oneshot::Sender<Result<(), DaemonError>>) -> Control,
    ) -> Result<(), DaemonError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .control
            .send(message(reply))
            .await
            .map_err(|_| DaemonError::Stopped)?;
        answer.await.map_err(|_| DaemonError::Stopped)?
    }

    fn index(&self, name: &str) -> Result<usize, DaemonError> {
        self.shared
            .models
            .iter()
            .position(|model| model.name == name)
            .ok_or_else(|| DaemonError::NotRegistered {
                name: name.to_owned(),
            })
    }
}

/// Changes of a daemon's read models, from [`DaemonClient::updates`].
#[derive(Debug)]
pub struct Updates(watch::Receiver<u64>);

impl Updates {
    /// Waits for the next change after the last one seen (changes in between are merged).
    ///
    /// # Errors
    /// [`DaemonError::Stopped`] once the daemon is gone.
    pub async fn changed(&mut self) -> Result<(), DaemonError> {
        self.0.changed().await.map_err(|_| DaemonError::Stopped)
    }
}
