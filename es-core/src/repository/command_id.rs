//! Saving and running commands under a [`CommandId`]: the events get ids derived from it, so
//! a command run again after a lost reply stores nothing new.

use crate::aggregate::{Aggregate, AggregateRoot};
use crate::command::CommandId;
use crate::event::Metadata;
use crate::snapshot::SnapshotLocation;
use crate::store::{AppendOutcome, EventStore, StoreError, VersionRange};
use crate::types::{StreamId, Version};

use super::{CommandError, Repository, RepositoryError, Updated};

impl<A: Aggregate, S: EventStore, P: SnapshotLocation<S>> Repository<A, S, P> {
    /// Like [`Repository::save_with_metadata`], the pending events getting the ids `command`
    /// derives for this stream ([`CommandId::event_id`]) instead of fresh ones.
    ///
    /// Saving the same aggregate again after a failure whose outcome is unknown
    /// ([`StoreError::Connection`]; the aggregate keeps its pending events on error) is safe:
    /// if the first attempt was committed, the store answers its original outcome and stores
    /// nothing.
    ///
    /// # Errors
    /// As [`Repository::save`]; and [`StoreError::DuplicateEventIds`] when `command` already
    /// saved a different batch to this stream (the command was run again on a newer state and
    /// decided otherwise).
    pub async fn save_with_command_id(
        &self,
        root: &mut AggregateRoot<A>,
        command: CommandId,
        metadata: &Metadata,
    ) -> Result<Option<AppendOutcome>, RepositoryError> {
        let stream = root.stream_id();
        self.save_encoded(root, metadata, |index| {
            Some(command.event_id(&stream, index))
        })
        .await
    }

    /// Like [`Repository::update_with_metadata`], for a command identified by `command`: the
    /// events get ids derived from it, and a command that was already saved is not run again.
    ///
    /// Run it again, with the same `command` id, whenever the outcome of an earlier run is
    /// unknown (a lost reply, a crash, a timeout): the aggregate is stored once. A run that
    /// finds the command saved returns the aggregate as it is now with the command's original
    /// outcome (and `attempts` counting this run's loads). A lost connection during the save
    /// is retried here too, within the [retry policy](Repository::with_retry_policy).
    ///
    /// How a saved command is recognised: its events' ids carry the command id. If the
    /// stream's last event is one of them, the command is not run; otherwise the command runs
    /// on the current state and, if it records events, the store recognises its ids (an exact
    /// retry answers the original outcome, a different batch of the same command is
    /// refused, which this method also reads as "already saved"). A command saved *before*
    /// other commands on the same aggregate, and which now records nothing or is rejected on
    /// the newer state, gets that answer (nothing is stored twice either way).
    ///
    /// # Errors
    /// As [`Repository::update`]; a lost connection on the last allowed attempt is returned
    /// as [`CommandError::Repository`].
    pub async fn update_with_command_id<F, E>(
        &self,
        id: &str,
        command: CommandId,
        metadata: &Metadata,
        mut decide: F,
    ) -> Result<Updated<A>, CommandError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        let stream = A::stream_id(id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut root = self.load(id).await?;
            if let Some(outcome) = self.saved_last(&stream, command, root.version()).await? {
                return Ok(Updated {
                    root,
                    outcome: Some(outcome),
                    attempts: attempt,
                });
            }
            root.execute(&mut decide).map_err(CommandError::Rejected)?;
            let loaded = root.version();
            let count = root.pending_events().len() as u64;
            let error = match self
                .save_with_command_id(&mut root, command, metadata)
                .await
            {
                Ok(Some(outcome)) if outcome.version != Version(loaded.get() + count) => {
                    // The store answered with a batch of this command saved before: the
                    // state that was loaded already holds it.
                    return Ok(Updated {
                        root: self.load(id).await?,
                        outcome: Some(outcome),
                        attempts: attempt,
                    });
                }
                Ok(outcome) => {
                    return Ok(Updated {
                        root,
                        outcome,
                        attempts: attempt,
                    })
                }
                Err(RepositoryError::Store(StoreError::DuplicateEventIds(refused)))
                    if refused.duplicates.iter().all(|duplicate| {
                        duplicate.stored_at.as_ref().is_some_and(|stored| {
                            stored.stream == stream
                                && command.event_index(&stream, stored.event_id).is_some()
                        })
                    }) =>
                {
                    // This command's batch is stored, and this run decided otherwise.
                    let last = refused
                        .duplicates
                        .iter()
                        .filter_map(|duplicate| duplicate.stored_at.as_ref())
                        .max_by_key(|stored| stored.version);
                    return Ok(Updated {
                        root: self.load(id).await?,
                        outcome: last.map(|stored| AppendOutcome {
                            version: stored.version,
                            position: stored.position,
                        }),
                        attempts: attempt,
                    });
                }
                Err(error) => error,
            };
            let retryable = match &error {
                RepositoryError::Store(StoreError::Conflict(conflict)) => {
                    if attempt >= self.retry.max_attempts() {
                        return Err(CommandError::RetriesExhausted {
                            attempts: attempt,
                            last: conflict.clone(),
                        });
                    }
                    true
                }
                RepositoryError::Store(StoreError::Connection(_)) => {
                    attempt < self.retry.max_attempts()
                }
                _ => false,
            };
            if !retryable {
                return Err(error.into());
            }
            let delay = self.retry.delay_after(attempt);
            tracing::debug!(%stream, %command, attempt, error = &error as &dyn std::error::Error, "retrying command");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// The outcome of `command`'s batch if the stream's last event (at `version`) is its last.
    async fn saved_last(
        &self,
        stream: &StreamId,
        command: CommandId,
        version: Version,
    ) -> Result<Option<AppendOutcome>, RepositoryError> {
        if version == Version::INITIAL {
            return Ok(None);
        }
        let last = self
            .store
            .read_stream(
                stream,
                VersionRange {
                    from: version,
                    to: version,
                },
            )
            .await?;
        Ok(last
            .first()
            .filter(|event| command.event_index(stream, event.event_id).is_some())
            .map(|event| AppendOutcome {
                version: event.version,
                position: event.global_position,
            }))
    }
}
