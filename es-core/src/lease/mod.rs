//! Leases and fencing tokens: one holder at a time for a named piece of work (a group of read
//! models), across processes and nodes, with writes that a stale holder cannot make.
//!
//! # Design
//!
//! A lease is a row in the store's own database (`leases` in the SQLite file, `<schema>.leases`
//! in PostgreSQL): its name, its holder, a *fencing token* and the time it expires.
//! [`LeaseStore::try_acquire`] takes the lease when nobody holds it or the holder's time ran
//! out, and then always raises the token by one; the token is never lowered or reused (it lives
//! in the row, so it survives restarts, and a released lease keeps it).
//! [`LeaseStore::renew`] extends the lease for its holder as long as the token is unchanged.
//!
//! A holder carries its [`Fence`] (the lease's name and its token) with every durable write,
//! and the store checks the token *inside the write's transaction*: if the lease has moved on,
//! the write fails with [`StoreError::Fenced`] and nothing is written. So a holder that was
//! paused (a GC pause, `SIGSTOP`, a network partition) and wakes after its lease was taken
//! writes nothing, whatever it believes about its lease. On PostgreSQL the check reads the
//! token `FOR SHARE`, so a takeover waits for a fenced write in flight to commit, and the next
//! write of the old holder sees the new token; a holder paused *inside* that write holds the
//! takeover off until the server ends its idle transaction, after the store's statement bound
//! (`PostgresOptions::with_statement_timeout`, 30 s by default). On SQLite, writes and lease
//! changes take the database's single write lock, so they are serialized the same way; a
//! process paused while it holds that lock (for the milliseconds of a commit) holds every
//! other writer off until it resumes or exits, since no server can end its transaction.
//!
//! # Deploying it
//!
//! - **Lease time against pause tolerance.** A holder that cannot renew (dead, paused,
//!   partitioned) keeps the work stalled for up to the lease time before another node takes
//!   over; a shorter lease moves work sooner but loses it on shorter hiccups (a slow disk, a
//!   long collection pause). Renew at a fraction of the lease time (a third of it leaves
//!   room for two failed attempts). Fencing keeps the data
//!   right whatever the lease time: the lease time only decides how fast work moves.
//! - **Clocks.** On PostgreSQL, expiry is measured by the database server's clock alone, so the
//!   nodes' clocks may differ. On SQLite (processes on one machine sharing a file), by the
//!   store's [clock](crate::EventStore::clock), the system clock unless configured: the
//!   processes share it. A holder judges its own lease by its monotonic clock from the moment
//!   it sent the request, which never overestimates what the database grants.
//! - **One lease table per store.** Leases are named within a store (a SQLite file, a
//!   PostgreSQL schema); the same name in two schemas is two leases. Give each group of read
//!   models its own lease name, and each process (or worker) its own holder name.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use es_core::lease::LeaseStore;
//! use es_core::InMemory;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), es_core::StoreError> {
//! let store = InMemory::new();
//! let lease = store
//!     .try_acquire("read-models", "node-a", Duration::from_secs(5))
//!     .await?
//!     .expect("nobody holds it yet");
//! // Another node does not get it while it is held...
//! assert!(store.try_acquire("read-models", "node-b", Duration::from_secs(5)).await?.is_none());
//! // ...the holder keeps it by renewing, and hands it on by releasing it.
//! assert!(store.renew(&lease, Duration::from_secs(5)).await?.is_some());
//! assert!(store.release(&lease).await?);
//! let next = store.try_acquire("read-models", "node-b", Duration::from_secs(5)).await?.unwrap();
//! assert!(next.token > lease.token);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::types::Timestamp;

/// The longest lease time a store accepts: a day.
pub const MAX_LEASE_TIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A lease as granted (or renewed): who holds it, with which fencing token, until when.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The lease's name, unique within the store.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// The fencing token: raised by every acquisition, never reused.
    pub token: u64,
    /// When it expires unless renewed, by the clock that decides expiry (the PostgreSQL
    /// server's, or the store's clock on SQLite and in memory).
    pub expires_at: Timestamp,
}

impl Lease {
    /// What a write under this lease carries, for the store to check.
    #[must_use]
    pub fn fence(&self) -> Fence {
        Fence {
            lease: self.name.clone(),
            token: self.token,
        }
    }
}

/// What a durable write carries to prove its writer still holds a lease: the lease's name and
/// the token it was granted. A write whose fence does not match the lease's current token
/// fails with [`StoreError::Fenced`] and writes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The lease's name.
    pub lease: String,
    /// The token the writer was granted.
    pub token: u64,
}

/// Keeps leases with fencing tokens in the store's database. Every store of this crate
/// implements it; see the [module documentation](self) for the design.
///
/// # Contract
///
/// - `try_acquire` grants the lease to `holder` when it has no holder (never acquired, or
///   released) or its holder's time has run out; the grant raises the token by one (the first
///   grant gets 1) and runs until the clock's now plus `ttl`. A lease still held (by anyone,
///   `holder` included) is not granted: `None`. Of concurrent calls, at most one is granted.
/// - `renew` extends the lease to now plus `ttl` while `lease.holder` holds it with
///   `lease.token` (also after its time ran out, as long as nobody took it): `None` once it
///   was taken or released.
/// - `release` ends the lease if `lease` is still the current grant, so another holder may
///   take it at once; the token stays.
/// - Tokens of one lease only ever grow, across restarts of the store and its users.
/// - Empty names and holders, and lease times of zero or above [`MAX_LEASE_TIME`], are
///   [`StoreError::Config`].
pub trait LeaseStore: Send + Sync {
    /// Takes the lease `name` for `holder` for `ttl`, if nobody holds it.
    fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// Extends `lease` to now plus `ttl`, if it is still held with its token; the renewed
    /// lease, or `None` if it was lost.
    fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// Gives `lease` up; whether it was still held (`false`: it had been taken already).
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The lease `name` as stored now: its holder, token and expiry (`None` if it was never
    /// granted or was released). Its expiry may be past: compare with the clock that decides
    /// it (on PostgreSQL, the server's).
    fn load_lease(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;
}

macro_rules! forward_lease_store {
    ($($ty:ty),*) => {$(
        impl<S: LeaseStore + ?Sized> LeaseStore for $ty {
            fn try_acquire(
                &self,
                name: &str,
                holder: &str,
                ttl: Duration,
            ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send {
                (**self).try_acquire(name, holder, ttl)
            }

            fn renew(
                &self,
                lease: &Lease,
                ttl: Duration,
            ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send {
                (**self).renew(lease, ttl)
            }

            fn release(&self, lease: &Lease) -> impl Future<Output = Result<bool, StoreError>> + Send {
                (**self).release(lease)
            }

            fn load_lease(
                &self,
                name: &str,
            ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send {
                (**self).load_lease(name)
            }
        }
    )*};
}

forward_lease_store!(&S, Arc<S>, Box<S>);

/// The lease time in whole microseconds, checked: more than zero, at most [`MAX_LEASE_TIME`].
pub(crate) fn lease_micros(ttl: Duration) -> Result<i64, StoreError> {
    if ttl.is_zero() || ttl > MAX_LEASE_TIME {
        return Err(StoreError::Config(format!(
            "a lease time must be more than zero and at most {MAX_LEASE_TIME:?}, not {ttl:?}"
        )));
    }
    // At most a day: fits easily, and at least one microsecond.
    Ok(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX).max(1))
}

/// Checks a lease name or holder: not empty, no NUL (PostgreSQL text cannot hold it).
pub(crate) fn check_lease_text(what: &str, text: &str) -> Result<(), StoreError> {
    if text.is_empty() {
        return Err(StoreError::Config(format!(
            "a lease {what} must not be empty"
        )));
    }
    if text.contains('\0') {
        return Err(StoreError::Config(format!(
            "a lease {what} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// Checks the arguments of `try_acquire`, returning the lease time in microseconds.
pub(crate) fn check_acquire(name: &str, holder: &str, ttl: Duration) -> Result<i64, StoreError> {
    check_lease_text("name", name)?;
    check_lease_text("holder", holder)?;
    lease_micros(ttl)
}

/// The error of a write whose `fence` does not match the lease's `current` token.
pub(crate) fn fenced(fence: &Fence, current: Option<u64>) -> StoreError {
    StoreError::Fenced {
        lease: fence.lease.clone(),
        token: fence.token,
        current,
    }
}

/// Checks `fence` against the lease's `current` token.
pub(crate) fn check_token(fence: &Fence, current: Option<u64>) -> Result<(), StoreError> {
    if current == Some(fence.token) {
        Ok(())
    } else {
        Err(fenced(fence, current))
    }
}

/// A lease as the in-memory store keeps it.
#[derive(Clone, Debug)]
pub(crate) struct LeaseRow {
    /// Empty when released.
    pub(crate) holder: String,
    pub(crate) token: u64,
    pub(crate) expires_at: Timestamp,
}

impl LeaseRow {
    /// Grants the lease to `holder` until `now + ttl` if it is free (the row as stored, if any).
    pub(crate) fn acquire(
        row: Option<&mut LeaseRow>,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_micros: i64,
    ) -> Option<(LeaseRow, Lease)> {
        let token = match row {
            None => 1,
            Some(row) if row.holder.is_empty() || row.expires_at <= now => row.token + 1,
            Some(_) => return None,
        };
        let granted = LeaseRow {
            holder: holder.to_owned(),
            token,
            expires_at: now.saturating_add_micros(ttl_micros),
        };
        let lease = granted.to_lease(name);
        Some((granted, lease))
    }

    /// Whether `lease` is this row's current grant.
    pub(crate) fn is_granted_to(&self, lease: &Lease) -> bool {
        !self.holder.is_empty() && self.holder == lease.holder && self.token == lease.token
    }

    /// The row as a [`Lease`] named `name`, or `None` when released.
    pub(crate) fn to_lease(&self, name: &str) -> Lease {
        Lease {
            name: name.to_owned(),
            holder: self.holder.clone(),
            token: self.token,
            expires_at: self.expires_at,
        }
    }
}
