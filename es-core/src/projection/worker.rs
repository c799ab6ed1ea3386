//! Workers: a group of read models run on exactly one node at a time, moved to another node
//! when that one dies.
//!
//! A [`Worker`] owns one [lease](crate::lease) named after its group of read models. Every node
//! of the application starts the same worker over the same store; each tries the lease, and
//! the one that gets it runs a [`ProjectionDaemon`](super::daemon::ProjectionDaemon) for the
//! group, restored from the durable checkpoints, with every durable write fenced by the lease's
//! token ([`DaemonBuilder::with_fence`](super::daemon::DaemonBuilder::with_fence)). The holder
//! renews the lease every third of the lease time;
//! the others stand by and poll for it at the same pace. When the holder dies (or is cut off,
//! or paused), its lease runs out and a standby takes it over within about the lease time plus
//! one poll, and goes on from the last durable checkpoints.
//!
//! - **Losing the lease stops the work at once.** When a renewal says the lease was taken, or
//!   no renewal succeeded before the lease time (measured on the holder's monotonic clock from
//!   the moment it sent its last successful request, which never overestimates what the
//!   database granted) ran out, the worker stops its daemon. A holder that was paused and
//!   wakes after its lease moved cannot write anyway: its daemon's next write is fenced off
//!   ([`StoreError::Fenced`](crate::StoreError::Fenced)), which stops it.
//! - **Exactly once, durably.** In-memory read models save state and checkpoint together,
//!   fenced; table read models commit rows and checkpoint together, fenced. A new holder
//!   restores what the last holder made durable and applies everything after it once.
//! - **One lease per group.** A worker's read models share one lease and one subscription. To
//!   spread read models over nodes, run several workers with different lease names, each with
//!   its own group: each lease goes to whichever node gets it first. (Splitting one read model
//!   into segments by stream hash is not offered: every node would read the whole log anyway,
//!   and a read model's state is one value, so segments would need merging on every query.)
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use es_core::projection::daemon::ProjectionDaemon;
//! use es_core::projection::worker::Worker;
//! use es_core::projection::Projection;
//! use es_core::{InMemory, RecordedEvent};
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
//! // The same on every node: the lease name, and how to build the group's daemon.
//! let worker = Worker::new("counters", || ProjectionDaemon::builder().with(Count::default()))
//!     .with_lease_time(Duration::from_secs(5))
//!     .start(store.clone());
//! let holding = worker.wait_until_holding(Duration::from_secs(5)).await?;
//! assert_eq!(holding.token, 1);
//! worker.shutdown().await; // saves, and releases the lease for the next node
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::lease::{Lease, LeaseStore};
use crate::snapshot::ProjectionStore;
use crate::subscription::Subscribe;

use super::daemon::{DaemonBuilder, DaemonClient};
use super::{DuplicateProjection, ProjectionError};

/// The lease time unless [`Worker::with_lease_time`] says otherwise.
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(5);

/// Builds the daemon of a worker's group, each time the worker gets the lease.
type Build = dyn Fn() -> Result<DaemonBuilder, DuplicateProjection> + Send + Sync;

/// A group of read models run under a lease: see the [module documentation](self).
pub struct Worker {
    lease: String,
    holder: String,
    lease_time: Duration,
    build: Arc<Build>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("lease", &self.lease)
            .field("holder", &self.holder)
            .field("lease_time", &self.lease_time)
            .finish_non_exhaustive()
    }
}

/// What a worker is doing, as [`WorkerHandle::state`] reports it.
#[derive(Clone, Debug)]
pub enum WorkerState {
    /// Waiting for the lease (another node holds it, or the worker just started).
    Standby,
    /// Holding the lease and running the group's daemon.
    Holding {
        /// The lease, as last granted or renewed.
        lease: Lease,
        /// The running daemon: waits, queries and status.
        client: DaemonClient,
    },
    /// Shut down.
    Stopped,
}

impl Worker {
    /// A worker for the lease `lease`, whose group's daemon `build` configures (its read
    /// models and settings; the worker adds the fence). The holder name is this process's id
    /// and a random part; the lease time is [`DEFAULT_LEASE_TIME`].
    #[must_use]
    pub fn new(
        lease: impl Into<String>,
        build: impl Fn() -> Result<DaemonBuilder, DuplicateProjection> + Send + Sync + 'static,
    ) -> Self {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        Worker {
            lease: lease.into(),
            holder: format!("pid-{}-{}", std::process::id(), &unique[20..]),
            lease_time: DEFAULT_LEASE_TIME,
            build: Arc::new(build),
        }
    }

    /// Names this worker in the lease table (unique per worker: two workers with one holder
    /// name would be taken for one).
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// How long a lease lasts without renewal (default [`DEFAULT_LEASE_TIME`]; at least
    /// 30 ms): the longest a dead holder keeps the group stalled, and the longest pause a
    /// holder survives. It renews every third of it, and standbys poll at that pace too.
    #[must_use]
    pub fn with_lease_time(mut self, lease_time: Duration) -> Self {
        self.lease_time = lease_time.max(Duration::from_millis(30));
        self
    }

    /// The holder name this worker uses in the lease table.
    #[must_use]
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Starts the worker on the current Tokio runtime: it tries the lease at once, then as
    /// described in the [module documentation](self).
    pub fn start<S>(self, store: S) -> WorkerHandle
    where
        S: Subscribe + ProjectionStore + LeaseStore + Clone + 'static,
    {
        let (state, state_receiver) = watch::channel(WorkerState::Standby);
        let (stop, stop_signal) = watch::channel(false);
        let holder = self.holder.clone();
        let fenced_off = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            self,
            store,
            state,
            stop_signal,
            Arc::clone(&fenced_off),
        ));
        WorkerHandle {
            holder,
            state: state_receiver,
            stop,
            task,
            fenced_off,
        }
    }
}

/// A running [`Worker`].
#[derive(Debug)]
pub struct WorkerHandle {
    holder: String,
    state: watch::Receiver<WorkerState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    fenced_off: Arc<AtomicU64>,
}

/// [`WorkerHandle::wait_until_holding`] ran out of time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the worker did not get its lease within {waited:?}")]
pub struct NotHolding {
    /// How long it waited.
    pub waited: Duration,
}

impl WorkerHandle {
    /// The holder name the worker uses in the lease table.
    #[must_use]
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How many times a lease this worker held ended with a write of its daemon fenced off
    /// ([`StoreError::Fenced`](crate::StoreError::Fenced)): the lease had moved on to another
    /// holder while this one still worked (it was paused, or cut off), and the store refused
    /// what it tried to write.
    #[must_use]
    pub fn fenced_off(&self) -> u64 {
        self.fenced_off.load(Ordering::Acquire)
    }

    /// What the worker is doing now.
    #[must_use]
    pub fn state(&self) -> WorkerState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of the worker's state.
    #[must_use]
    pub fn states(&self) -> watch::Receiver<WorkerState> {
        self.state.clone()
    }

    /// Waits until the worker holds its lease and runs its daemon; the lease it holds.
    ///
    /// # Errors
    /// [`NotHolding`] when `timeout` passes first (or the worker stopped).
    pub async fn wait_until_holding(&self, timeout: Duration) -> Result<Lease, NotHolding> {
        let mut states = self.state.clone();
        let held = tokio::time::timeout(
            timeout,
            states.wait_for(|state| {
                matches!(state, WorkerState::Holding { .. } | WorkerState::Stopped)
            }),
        )
        .await;
        let held = match &held {
            Ok(Ok(state)) => match &**state {
                WorkerState::Holding { lease, .. } => Some(lease.clone()),
                _ => None,
            },
            _ => None,
        };
        held.ok_or(NotHolding { waited: timeout })
    }

    /// Stops the worker: a running daemon is shut down (its read models saved, fenced) and the
    /// lease released, so a standby takes over at once.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }
}

/// Whether the worker was told to stop.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Waits until `at` or until the worker is told to stop; whether it was.
async fn pause_until(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep_until(at) => stopping(stop),
        _ = stop.changed() => true,
    }
}

/// The worker's task: stand by, hold, stand by again, until told to stop.
async fn run<S>(
    worker: Worker,
    store: S,
    state: watch::Sender<WorkerState>,
    mut stop: watch::Receiver<bool>,
    fenced_off: Arc<AtomicU64>,
) where
    S: Subscribe + ProjectionStore + LeaseStore + Clone + 'static,
{
    let poll = worker.lease_time / 3;
    while !stopping(&stop) {
        let sent = Instant::now();
        match store
            .try_acquire(&worker.lease, &worker.holder, worker.lease_time)
            .await
        {
            Ok(Some(lease)) => {
                tracing::info!(
                    lease = lease.name,
                    holder = lease.holder,
                    token = lease.token,
                    "lease acquired; starting the read models"
                );
                if hold(&worker, &store, lease, sent, &state, &mut stop).await {
                    fenced_off.fetch_add(1, Ordering::AcqRel);
                }
                let _ = state.send(WorkerState::Standby);
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(
                lease = worker.lease,
                error = &error as &dyn std::error::Error,
                "cannot try the lease; trying again shortly"
            ),
        }
        if pause_until(sent + poll, &mut stop).await {
            break;
        }
    }
    let _ = state.send(WorkerState::Stopped);
}

/// Why a holder stopped holding.
enum Ended {
    /// Told to stop: release the lease.
    Stopping,
    /// The lease was taken, or could not be renewed in time.
    Lost,
    /// The daemon stopped on its own (fenced off, or failed).
    DaemonStopped,
}

/// Runs the group's daemon while `lease` is held; returns once it is not (or the worker
/// stops), telling whether a write of the daemon was fenced off.
async fn hold<S>(
    worker: &Worker,
    store: &S,
    mut lease: Lease,
    sent: Instant,
    state: &watch::Sender<WorkerState>,
    stop: &mut watch::Receiver<bool>,
) -> bool
where
    S: Subscribe + ProjectionStore + LeaseStore + Clone + 'static,
{
    let lease_time = worker.lease_time;
    let renew_every = lease_time / 3;
    // The lease is ours until at least this instant, by our own clock.
    let mut deadline = sent + lease_time;
    let daemon = match (worker.build)() {
        Ok(builder) => builder.with_fence(lease.fence()).start(store.clone()).await,
        Err(error) => {
            tracing::error!(
                lease = lease.name,
                error = &error as &dyn std::error::Error,
                "the worker's read models cannot be registered"
            );
            release(store, &lease).await;
            // Waits a lease time, so a misconfigured node does not spin on the lease.
            pause_until(Instant::now() + lease_time, stop).await;
            return false;
        }
    };
    let daemon = match daemon {
        Ok(daemon) => daemon,
        Err(error) => {
            tracing::error!(
                lease = lease.name,
                error = &error as &dyn std::error::Error,
                "the read models cannot start; giving the lease up"
            );
            release(store, &lease).await;
            pause_until(Instant::now() + renew_every, stop).await;
            return false;
        }
    };
    let _ = state.send(WorkerState::Holding {
        lease: lease.clone(),
        client: daemon.client(),
    });
    let mut next_renewal = sent + renew_every;
    let ended = loop {
        if daemon.is_finished() {
            break Ended::DaemonStopped;
        }
        tokio::select! {
            _ = stop.changed() => break Ended::Stopping,
            () = tokio::time::sleep_until(deadline) => break Ended::Lost,
            () = tokio::time::sleep_until(next_renewal) => {
                let sent = Instant::now();
                let renewal = tokio::time::timeout_at(deadline, store.renew(&lease, lease_time));
                match renewal.await {
                    Ok(Ok(Some(renewed))) => {
                        lease = renewed;
                        deadline = sent + lease_time;
                        next_renewal = sent + renew_every;
                    }
                    // Taken or released, or no answer before the lease ran out.
                    Ok(Ok(None)) | Err(_) => break Ended::Lost,
                    Ok(Err(error)) => {
                        tracing::warn!(
                            lease = lease.name,
                            error = &error as &dyn std::error::Error,
                            "cannot renew the lease; trying again until it runs out"
                        );
                        next_renewal = Instant::now() + renew_every.min(Duration::from_millis(100));
                    }
                }
            }
        }
    };
    match ended {
        Ended::Stopping => {
            let stopped = daemon.shutdown().await;
            if let Err(error) = &stopped {
                tracing::warn!(
                    lease = lease.name,
                    error = error as &dyn std::error::Error,
                    "the read models did not stop cleanly"
                );
            }
            release(store, &lease).await;
            is_fenced(&stopped)
        }
        Ended::Lost | Ended::DaemonStopped => {
            tracing::warn!(
                lease = lease.name,
                token = lease.token,
                "lease lost; the read models stop"
            );
            // Its saves are fenced: if the lease moved on they write nothing, and if it only
            // ran out with nobody taking it, what they save is still this holder's to save.
            match tokio::time::timeout(lease_time, daemon.shutdown()).await {
                Ok(stopped) => {
                    if let Err(error) = &stopped {
                        tracing::info!(
                            lease = lease.name,
                            error = error as &dyn std::error::Error,
                            "the read models stopped"
                        );
                    }
                    is_fenced(&stopped)
                }
                Err(_) => false,
            }
        }
    }
}

/// Whether the daemon stopped because a write was fenced off.
fn is_fenced(stopped: &Result<(), ProjectionError>) -> bool {
    matches!(stopped, Err(ProjectionError::Store(error)) if error.is_fenced())
}

/// Releases `lease`, logging a failure (it then runs out on its own).
async fn release<S: LeaseStore>(store: &S, lease: &Lease) {
    if let Err(error) = store.release(lease).await {
        tracing::warn!(
            lease = lease.name,
            error = &error as &dyn std::error::Error,
            "cannot release the lease; it runs out on its own"
        );
    }
}
