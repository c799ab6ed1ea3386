//! Turning driver and pool errors into [`StoreError`]s.

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Whether `error` means the connection is gone or could not be made: the socket failed or
/// closed, the server shut the session down (`pg_terminate_backend`, a restart), refused the
/// login, or has no room for another connection.
pub(super) fn is_connection_failure(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08") // connection exception
            || code.starts_with("28") // invalid authorization
            || code.starts_with("57P") // admin / crash shutdown, cannot connect now
            || code == SqlState::TOO_MANY_CONNECTIONS.code()
            || code == SqlState::INVALID_CATALOG_NAME.code(); // no such database
    }
    // Not from the server: a socket failure carries an I/O error somewhere in its chain;
    // encoding and decoding failures (the other client-side errors) do not.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether `error` is a unique violation of the event-id constraint: another transaction
/// stored one of the batch's ids first.
pub(super) fn is_event_id_taken(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some(super::schema::EVENT_ID_CONSTRAINT)
    })
}

/// Whether `error` is a concurrent write that a version conflict explains: a unique
/// violation (another transaction wrote the same stream version) or a serialization failure.
pub(super) fn is_write_conflict(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// The store error for a failed statement.
pub(crate) fn query_error(error: tokio_postgres::Error) -> StoreError {
    if is_connection_failure(&error) {
        StoreError::Connection(Box::new(error))
    } else {
        StoreError::backend(error)
    }
}

/// The store error for a failure to get a connection from the pool: [`StoreError::Closed`]
/// after [`Postgres::close`](super::Postgres::close), else a connection failure.
pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::{PoolError, TimeoutType};
    match error {
        PoolError::Closed => StoreError::Closed,
        // The pool gives the kind of wait, not its length: the length is in the options.
        PoolError::Timeout(TimeoutType::Create) => StoreError::Connection(Box::new(PoolTimeout(
            "opening a connection (TCP connect and startup handshake)",
        ))),
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Connection(Box::new(PoolTimeout(
            "waiting for a free pooled connection",
        ))),
        PoolError::Timeout(TimeoutType::Recycle) => StoreError::Connection(Box::new(PoolTimeout(
            "checking a pooled connection before reuse",
        ))),
        error => StoreError::Connection(Box::new(error)),
    }
}

/// The pool gave up waiting: see the bounds on
/// [`PostgresOptions`](super::PostgresOptions).
#[derive(Debug, thiserror::Error)]
#[error("{0} took longer than its configured bound")]
struct PoolTimeout(&'static str);
