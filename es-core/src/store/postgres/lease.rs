//! Leases in the store's schema, timed by the database server's clock, and the fence check
//! that durable writes make inside their transaction.

use std::time::Duration;

use super::checkout::Checkout;
use super::errors::query_error;
use super::rows::{to_bigint, to_stored_bigint};
use super::Postgres;
use crate::lease::{check_acquire, check_token, lease_micros, Fence, Lease, LeaseStore};
use crate::snapshot::SavedProjection;
use crate::store::StoreError;
use crate::types::Timestamp;

/// A stored token as a `u64`: the table's check keeps it positive.
fn token_from_row(token: i64, name: &str, location: &str) -> Result<u64, StoreError> {
    u64::try_from(token).map_err(|_| StoreError::Corrupt {
        location: format!("{location}: lease `{name}`"),
        reason: format!("negative fencing token {token}"),
    })
}

impl Postgres {
    fn location(&self) -> String {
        format!("PostgreSQL schema `{}`", self.shared.schema.as_str())
    }

    /// Saves `saved` if `fence` holds, in one transaction: the lease's token is read
    /// `FOR SHARE` first, so a takeover waits for this write to commit or roll back.
    pub(super) async fn save_projection_under(
        &self,
        saved: &SavedProjection,
        position: i64,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let shared = &self.shared;
        let mut checkout = Checkout::get(shared).await?;
        let timeout = shared.statement_timeout;
        let client = checkout.client_mut();
        let work = async {
            let transaction = client.transaction().await.map_err(query_error)?;
            check_fence_postgres(&transaction, shared.schema.as_str(), fence).await?;
            let statement = transaction
                .prepare_cached(&shared.sql.save_projection)
                .await
                .map_err(query_error)?;
            transaction
                .execute(
                    &statement,
                    &[
                        &saved.name,
                        &position,
                        &i16::from(saved.codec.as_u8()),
                        &saved.state,
                        &saved.saved_at.as_micros(),
                    ],
                )
                .await
                .map_err(query_error)?;
            transaction.commit().await.map_err(query_error)
        };
        // A fenced or failed write rolls back as the transaction drops; past the bound, the
        // checkout is dropped below, which closes the connection (the server rolls back).
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(())) => {
                checkout.release();
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(super::checkout::TimedOut {
                operation: "a fenced save to PostgreSQL",
                limit: timeout,
            }
            .into_error()),
        }
    }
}

/// Checks, inside the caller's transaction, that `fence` is the current token of its lease in
/// the store whose tables are in `schema` (its plain name, as
/// [`Postgres::schema`](super::Postgres::schema) gives it): [`StoreError::Fenced`] otherwise
/// (the caller must then roll back).
///
/// The token row is locked `FOR SHARE` until the transaction ends: a concurrent takeover (which
/// updates the row) waits until this transaction commits, and the next fenced write sees the
/// new token.
pub(crate) async fn check_fence_postgres(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
    fence: &Fence,
) -> Result<(), StoreError> {
    let quoted = schema.replace('"', "\"\"");
    let row = transaction
        .query_opt(
            &format!("SELECT token FROM \"{quoted}\".leases WHERE name = $1 FOR SHARE"),
            &[&fence.lease],
        )
        .await
        .map_err(query_error)?;
    let location = || format!("PostgreSQL schema `{schema}`");
    let current = row
        .map(|row| token_from_row(row.get(0), &fence.lease, &location()))
        .transpose()?;
    check_token(fence, current)
}

impl LeaseStore for Postgres {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.shared.check_writable()?;
        let ttl_micros = check_acquire(name, holder, ttl)?;
        let shared = &self.shared;
        let rows = shared
            .query(&shared.sql.acquire_lease, &[&name, &holder, &ttl_micros])
            .await?;
        rows.first()
            .map(|row| {
                Ok(Lease {
                    name: name.to_owned(),
                    holder: holder.to_owned(),
                    token: token_from_row(row.get(0), name, &self.location())?,
                    expires_at: Timestamp::from_micros(row.get(1)),
                })
            })
            .transpose()
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.shared.check_writable()?;
        let ttl_micros = lease_micros(ttl)?;
        if lease.name.contains('\0') || lease.holder.contains('\0') {
            return Ok(None);
        }
        let shared = &self.shared;
        let token = to_bigint(lease.token);
        let rows = shared
            .query(
                &shared.sql.renew_lease,
                &[&lease.name, &lease.holder, &token, &ttl_micros],
            )
            .await?;
        Ok(rows.first().map(|row| Lease {
            expires_at: Timestamp::from_micros(row.get(0)),
            ..lease.clone()
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.shared.check_writable()?;
        if lease.name.contains('\0') || lease.holder.contains('\0') {
            return Ok(false);
        }
        let shared = &self.shared;
        let token = to_stored_bigint(lease.token, "fencing token")?;
        let checkout = Checkout::get(shared).await?;
        let client = checkout.client();
        let changed = checkout
            .bounded(async {
                let statement = client.prepare_cached(&shared.sql.release_lease).await?;
                client
                    .execute(&statement, &[&lease.name, &lease.holder, &token])
                    .await
            })
            .await?;
        checkout.release();
        Ok(changed > 0)
    }

    async fn load_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        if name.contains('\0') {
            return Ok(None);
        }
        let shared = &self.shared;
        let rows = shared.query(&shared.sql.load_lease, &[&name]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let holder: String = row.get(0);
        if holder.is_empty() {
            return Ok(None);
        }
        Ok(Some(Lease {
            name: name.to_owned(),
            holder,
            token: token_from_row(row.get(1), name, &self.location())?,
            expires_at: Timestamp::from_micros(row.get(2)),
        }))
    }
}
