//! Read-your-writes across processes: wait until a read model's *durable* checkpoint (what
//! any node can see in the store) reaches a position.
//!
//! A [`DaemonClient::wait_for`](super::daemon::DaemonClient::wait_for) waits on a daemon in
//! the same process. When the read models run on another node (a [worker](super::worker)),
//! the writer waits on the store instead: [`wait_for_checkpoint`] for an in-memory read model
//! (its saved checkpoint, written every save interval of the daemon that runs it), and
//! [`wait_for_table_checkpoint`] for a table read model (its checkpoint, committed with every
//! batch). Both poll with a growing pause, from 2 ms up to 100 ms, so a short wait is answered
//! quickly and a long one costs a query every 100 ms.

use std::time::Duration;

use tokio::time::Instant;

use crate::snapshot::ProjectionStore;
use crate::store::StoreError;
use crate::types::GlobalPosition;

#[cfg(feature = "sqlite")]
use super::table::TableDatabase;

/// The first pause between two polls.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
/// The longest pause between two polls.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// A wait for a durable checkpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointWaitError {
    /// The checkpoint did not reach the position in time.
    #[error(
        "read model `{projection}` did not durably reach position {requested} within {waited:?} \
         (its durable checkpoint is {reached})"
    )]
    Timeout {
        /// The read model.
        projection: String,
        /// The position waited for.
        requested: GlobalPosition,
        /// Its durable checkpoint when the wait ended.
        reached: GlobalPosition,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// Reading the checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Waits until the saved checkpoint of the in-memory read model `name` in `store` is at or past
/// `position` (for example the [`AppendOutcome::position`](crate::AppendOutcome) of your own
/// write), at most `timeout`; returns the checkpoint reached. Works from any process over the
/// store.
///
/// # Errors
/// [`CheckpointWaitError::Timeout`] when the time is up first, and
/// [`CheckpointWaitError::Store`] when reading the store fails.
pub async fn wait_for_checkpoint<S: ProjectionStore + ?Sized>(
    store: &S,
    name: &str,
    position: GlobalPosition,
    timeout: Duration,
) -> Result<GlobalPosition, CheckpointWaitError> {
    poll(name, position, timeout, || async {
        Ok(store
            .load_projection(name)
            .await?
            .map_or(GlobalPosition::START, |saved| saved.position))
    })
    .await
}

/// Waits until the committed checkpoint of the table read model `name` in `database` (usually
/// the store's own, [`TableStore::table_database`](super::table::TableStore::table_database))
/// is at or past `position`, at most `timeout`; returns the checkpoint reached. Its rows
/// commit with it, so a query after this sees the write.
///
/// # Errors
/// As for [`wait_for_checkpoint`].
#[cfg(feature = "sqlite")]
pub async fn wait_for_table_checkpoint(
    database: &TableDatabase,
    name: &str,
    position: GlobalPosition,
    timeout: Duration,
) -> Result<GlobalPosition, CheckpointWaitError> {
    poll(name, position, timeout, || async {
        let owned = name.to_owned();
        let checkpoint = database
            .read(move |sql| {
                if super::table::checkpoint_table_exists(sql)? {
                    super::table::read_checkpoint(sql, &owned)
                } else {
                    Ok(None)
                }
            })
            .await?;
        Ok(GlobalPosition(checkpoint.unwrap_or(0)))
    })
    .await
}

/// Polls `checkpoint` with a growing pause until it reaches `position` or `timeout` passes.
async fn poll<F, Fut>(
    name: &str,
    position: GlobalPosition,
    timeout: Duration,
    mut checkpoint: F,
) -> Result<GlobalPosition, CheckpointWaitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<GlobalPosition, StoreError>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let reached = checkpoint().await?;
        if reached >= position {
            return Ok(reached);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CheckpointWaitError::Timeout {
                projection: name.to_owned(),
                requested: position,
                reached,
                waited: timeout,
            });
        }
        tokio::time::sleep_until((now + pause).min(deadline)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}
