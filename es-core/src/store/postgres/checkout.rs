//! Pooled connections that are never handed on dirty, and the time bound on every round trip.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Object;

use super::errors::{pool_error, query_error};
use super::Shared;
use crate::store::StoreError;

/// A round trip to the server, or the wait for a connection, took longer than its bound.
/// Reported as [`StoreError::Connection`]: the server may have done the work (an append may
/// be committed), and the connection it ran on is closed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} took longer than its bound of {limit:?}")]
pub(super) struct TimedOut {
    /// What was waited for.
    pub(super) operation: &'static str,
    /// The bound.
    pub(super) limit: Duration,
}

impl TimedOut {
    pub(super) fn into_error(self) -> StoreError {
        StoreError::Connection(Box::new(self))
    }
}

/// A pooled connection that goes back to the pool only when [`Checkout::release`] says the
/// session is clean (outside any transaction, no reply outstanding). Dropped any other way (an
/// error, a round trip past its bound, or the caller's future dropped mid-transaction), the
/// connection is closed instead, so the server rolls an open transaction back and frees its
/// locks, and no later user of the pool inherits a frozen or half-used session.
pub(super) struct Checkout {
    client: Option<Object>,
    statement_timeout: Duration,
}

impl Checkout {
    /// A connection from the pool, waiting at most as long as the pool's bounds allow.
    pub(super) async fn get(store: &Shared) -> Result<Self, StoreError> {
        let client = store.pool.get().await.map_err(pool_error)?;
        Ok(Checkout {
            client: Some(client),
            statement_timeout: store.statement_timeout,
        })
    }

    /// The connection.
    pub(super) fn client(&self) -> &Object {
        self.client
            .as_ref()
            .expect("a checkout holds its client until it is released or dropped")
    }

    /// The connection, to open a transaction on.
    pub(super) fn client_mut(&mut self) -> &mut Object {
        self.client
            .as_mut()
            .expect("a checkout holds its client until it is released or dropped")
    }

    /// Runs one round trip on this connection, bounded by the statement timeout.
    ///
    /// # Errors
    /// The driver's error as a [`StoreError`], or [`StoreError::Connection`] past the bound
    /// (the caller must then drop this checkout, which closes the connection).
    pub(super) async fn bounded<T>(
        &self,
        round_trip: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        self.bounded_raw(round_trip).await?.map_err(query_error)
    }

    /// Like [`Checkout::bounded`], keeping the driver's error for the caller to classify.
    pub(super) async fn bounded_raw<T>(
        &self,
        round_trip: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<Result<T, tokio_postgres::Error>, StoreError> {
        tokio::time::timeout(self.statement_timeout, round_trip)
            .await
            .map_err(|_| {
                TimedOut {
                    operation: "a round trip to PostgreSQL",
                    limit: self.statement_timeout,
                }
                .into_error()
            })
    }

    /// Returns the connection to the pool.
    pub(super) fn release(mut self) {
        drop(self.client.take());
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Detached from the pool, the wrapper aborts its connection task when dropped,
            // which closes the socket.
            drop(Object::take(client));
        }
    }
}
