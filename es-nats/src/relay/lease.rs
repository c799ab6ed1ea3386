//! One active relay among several nodes: the relay publishes only while it holds a lease in
//! the store's database (`es_core::lease`).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use es_core::lease::{Lease, LeaseStore};
use es_core::Subscribe;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use super::{error_chain, Relay, RelayError, RelayState};

/// Which lease a relay runs under, and for how long each grant or renewal holds.
///
/// The holder renews every third of `ttl`. A node that crashes keeps the other nodes waiting
/// for at most `ttl`; a node that cannot renew (store unreachable) stops publishing before its
/// lease can have run out, judged by its own monotonic clock from the moment it asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLease {
    name: String,
    holder: String,
    ttl: Duration,
}

impl RelayLease {
    /// The lease `name` (the same on every node relaying this store to this stream), held as
    /// `holder` (unique per node or process), granted for `ttl` at a time.
    pub fn new(name: impl Into<String>, holder: impl Into<String>, ttl: Duration) -> Self {
        RelayLease {
            name: name.into(),
            holder: holder.into(),
            ttl,
        }
    }

    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}

impl<S: Subscribe + LeaseStore> Relay<S> {
    /// Like [`Relay::run_until`], but publishes only while this node holds `lease`: waits in
    /// [`RelayState::Standby`] while another node holds it, publishes once granted, and goes
    /// back to standby if the lease is lost. Releases the lease on shutdown, so another node
    /// takes over at once.
    ///
    /// The lease saves work rather than guarding correctness: two relays publishing at once
    /// still cannot duplicate or reorder (see the [module docs](crate::relay)).
    ///
    /// # Errors
    /// As [`Relay::run_until`]; a store error on the lease is retried, not returned.
    pub async fn run_with_lease(
        &self,
        lease: &RelayLease,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RelayError> {
        let held: Mutex<Option<Lease>> = Mutex::new(None);
        let span = tracing::info_span!(
            "relay",
            stream = %self.options.stream_name,
            lease = %lease.name,
            holder = %lease.holder
        );
        let outcome = tokio::select! {
            error = self.lead(lease, &held).instrument(span) => Err(error),
            () = shutdown => Ok(()),
        };
        let current = held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(current) = current {
            if let Err(error) = self.store.release(&current).await {
                warn!(error = %error_chain(&error), "the relay's lease was not released");
            }
        }
        self.status.send_modify(|status| {
            status.state = if outcome.is_ok() {
                RelayState::Stopped
            } else {
                RelayState::Failed
            };
        });
        outcome
    }

    /// Waits for the lease, publishes while it holds it, and starts over when it is lost.
    async fn lead(&self, lease: &RelayLease, held: &Mutex<Option<Lease>>) -> RelayError {
        loop {
            let (granted, asked_at) = self.acquire(lease).await;
            info!(token = granted.token, "the relay holds the lease");
            *held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(granted.clone());
            tokio::select! {
                error = self.run() => return error,
                () = self.keep(lease, granted, asked_at, held) => {
                    warn!("the relay lost its lease and stops publishing");
                    *held.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                }
            }
        }
    }

    /// Asks for the lease until it is granted; returns it and when it was asked for.
    async fn acquire(&self, lease: &RelayLease) -> (Lease, Instant) {
        loop {
            let asked_at = Instant::now();
            match self
                .store
                .try_acquire(&lease.name, &lease.holder, lease.ttl)
                .await
            {
                Ok(Some(granted)) => return (granted, asked_at),
                Ok(None) => self.status.send_if_modified(|status| {
                    let changed = status.state != RelayState::Standby;
                    status.state = RelayState::Standby;
                    changed
                }),
                Err(error) => self.status.send_if_modified(|status| {
                    status.state = RelayState::Standby;
                    status.last_error = Some(error_chain(&error));
                    true
                }),
            };
            tokio::time::sleep(lease.renew_every()).await;
        }
    }

    /// Renews the lease until it is lost (refused, or not renewed in time); then returns.
    async fn keep(
        &self,
        lease: &RelayLease,
        mut granted: Lease,
        asked_at: Instant,
        held: &Mutex<Option<Lease>>,
    ) {
        let mut valid_until = asked_at + lease.ttl;
        loop {
            tokio::time::sleep(lease.renew_every()).await;
            let asked_at = Instant::now();
            match self.store.renew(&granted, lease.ttl).await {
                Ok(Some(renewed)) => {
                    valid_until = asked_at + lease.ttl;
                    granted = renewed;
                    *held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(granted.clone());
                }
                Ok(None) => return,
                Err(error) => {
                    warn!(error = %error_chain(&error), "the relay's lease was not renewed");
                    // Stop before the lease can have run out, with one renewal interval of
                    // margin: another node may take it after that.
                    if Instant::now() + lease.renew_every() >= valid_until {
                        return;
                    }
                }
            }
        }
    }
}
