//! The lease table: granting, renewing and releasing leases, and the fence check that durable
//! writes make inside their transaction.

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::store_error;
use crate::lease::{check_token, Fence, Lease, LeaseRow};
use crate::store::StoreError;
use crate::types::Timestamp;

/// Grants the lease `?1` to `?2` until `?3 + ?4` (now plus the lease time) when it has no row,
/// no holder, or its time `expires_at <= ?3` ran out; each grant raises the token by one.
/// Returns no row when the lease is held.
const ACQUIRE: &str = "INSERT INTO leases (name, holder, token, expires_at) \
     VALUES (?1, ?2, 1, ?3 + ?4) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = leases.token + 1, \
     expires_at = excluded.expires_at \
     WHERE leases.holder = '' OR leases.expires_at <= ?3 \
     RETURNING token, expires_at";

/// Extends the lease `?1` held by `?2` with token `?3` to `?4`.
const RENEW: &str = "UPDATE leases SET expires_at = ?4 \
     WHERE name = ?1 AND holder = ?2 AND token = ?3 AND holder <> '' RETURNING expires_at";

/// Releases the lease `?1` held by `?2` with token `?3`: no holder, and expired; the token stays.
const RELEASE: &str = "UPDATE leases SET holder = '', expires_at = ?4 \
     WHERE name = ?1 AND holder = ?2 AND token = ?3 AND holder <> ''";

const LOAD: &str = "SELECT holder, token, expires_at FROM leases WHERE name = ?1";

const TOKEN: &str = "SELECT token FROM leases WHERE name = ?1";

/// A token as SQLite stores it (tokens start at 1 and grow by one: never near the limit).
fn token_to_sql(token: u64) -> i64 {
    i64::try_from(token).unwrap_or(i64::MAX)
}

fn token_from_sql(token: i64, name: &str, location: &str) -> Result<u64, StoreError> {
    u64::try_from(token).map_err(|_| StoreError::Corrupt {
        location: format!("{location}: lease `{name}`"),
        reason: format!("negative fencing token {token}"),
    })
}

/// Grants `name` to `holder` for `ttl_micros` from `now`, if it is free.
pub(super) fn acquire(
    connection: &Connection,
    name: &str,
    holder: &str,
    now: Timestamp,
    ttl_micros: i64,
    location: &str,
) -> Result<Option<Lease>, StoreError> {
    let granted: Option<(i64, i64)> = connection
        .prepare_cached(ACQUIRE)
        .and_then(|mut statement| {
            statement
                .query_row(params![name, holder, now.as_micros(), ttl_micros], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
        })
        .map_err(|error| store_error(error, location))?;
    granted
        .map(|(token, expires_at)| {
            Ok(Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                token: token_from_sql(token, name, location)?,
                expires_at: Timestamp::from_micros(expires_at),
            })
        })
        .transpose()
}

/// Extends `lease` to `now + ttl_micros` if it is still the current grant.
pub(super) fn renew(
    connection: &Connection,
    lease: &Lease,
    now: Timestamp,
    ttl_micros: i64,
    location: &str,
) -> Result<Option<Lease>, StoreError> {
    let expires_at = now.saturating_add_micros(ttl_micros);
    let renewed: Option<i64> = connection
        .prepare_cached(RENEW)
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![
                        lease.name,
                        lease.holder,
                        token_to_sql(lease.token),
                        expires_at.as_micros()
                    ],
                    |row| row.get(0),
                )
                .optional()
        })
        .map_err(|error| store_error(error, location))?;
    Ok(renewed.map(|expires_at| Lease {
        expires_at: Timestamp::from_micros(expires_at),
        ..lease.clone()
    }))
}

/// Releases `lease` if it is still the current grant; whether it was.
pub(super) fn release(
    connection: &Connection,
    lease: &Lease,
    location: &str,
) -> Result<bool, StoreError> {
    connection
        .prepare_cached(RELEASE)
        .and_then(|mut statement| {
            statement.execute(params![
                lease.name,
                lease.holder,
                token_to_sql(lease.token),
                i64::MIN
            ])
        })
        .map(|changed| changed > 0)
        .map_err(|error| store_error(error, location))
}

/// The lease `name` as stored (`None`: never granted, or released).
pub(super) fn load(
    connection: &Connection,
    name: &str,
    location: &str,
) -> Result<Option<Lease>, StoreError> {
    let row: Option<(String, i64, i64)> = connection
        .prepare_cached(LOAD)
        .and_then(|mut statement| {
            statement
                .query_row([name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()
        })
        .map_err(|error| store_error(error, location))?;
    match row {
        Some((holder, token, expires_at)) if !holder.is_empty() => {
            let row = LeaseRow {
                holder,
                token: token_from_sql(token, name, location)?,
                expires_at: Timestamp::from_micros(expires_at),
            };
            Ok(Some(row.to_lease(name)))
        }
        _ => Ok(None),
    }
}

/// Checks, inside the caller's write transaction, that `fence` is the current token of its
/// lease: [`StoreError::Fenced`] otherwise (the caller must then roll back or not write).
///
/// The write transaction holds SQLite's write lock, so no lease can change hands between this
/// check and the commit: a `&rusqlite::Transaction` (or the writer's connection inside
/// `BEGIN IMMEDIATE`) passes here by deref.
pub(crate) fn check_fence_sqlite(connection: &Connection, fence: &Fence) -> Result<(), StoreError> {
    let current: Option<i64> = connection
        .prepare_cached(TOKEN)
        .and_then(|mut statement| {
            statement
                .query_row([&fence.lease], |row| row.get(0))
                .optional()
        })
        .map_err(StoreError::backend)?;
    let current = current
        .map(|token| token_from_sql(token, &fence.lease, "SQLite store"))
        .transpose()?;
    check_token(fence, current)
}
