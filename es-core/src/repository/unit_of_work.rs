//! Saving several aggregates together: a unit of work committed as one multi-stream append,
//! and a retry loop for commands that touch several aggregates.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::{CommandError, Repository, RepositoryError, RetryPolicy};
use crate::aggregate::{Aggregate, AggregateRoot};
use crate::codec::CodecError;
use crate::event::{Metadata, NewEvent};
use crate::snapshot::SnapshotLocation;
use crate::store::{AppendOutcome, EventStore, ExpectedVersion, StreamBatch};
use crate::types::Version;

/// The pending events of several aggregates, of any types, saved together in one atomic
/// [`EventStore::append_streams`]: every aggregate is checked against the version it was
/// loaded at, and either all of them are saved or none is.
///
/// Stage each aggregate through its own repository ([`Repository::stage`]), then
/// [`commit`](UnitOfWork::commit) to the store those repositories share. An invariant that
/// spans aggregates (an order may only reserve stock a product has) then holds on the write
/// side, whatever the number of concurrent writers: a writer that decided on stale state of
/// *any* of the aggregates gets a conflict, and nothing of its decision is stored.
///
/// # Examples
///
/// ```
/// # use es_core::{Aggregate, Apply, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// # struct Moved { amount: i64 }
/// # #[derive(Aggregate, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "account", events(Moved))]
/// # struct Account { balance: i64 }
/// # impl Apply<Moved> for Account {
/// #     fn apply(&mut self, event: &Moved) { self.balance += event.amount }
/// # }
/// use es_core::{InMemory, Repository, UnitOfWork};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemory::new();
/// let accounts = Repository::<Account, _>::new(store.clone());
///
/// // A transfer: two aggregates, one atomic append.
/// let mut from = accounts.load("alice").await?;
/// let mut to = accounts.load("bob").await?;
/// from.record(Moved { amount: -30 });
/// to.record(Moved { amount: 30 });
/// let mut unit = UnitOfWork::new();
/// accounts.stage(&mut unit, &mut from)?;
/// accounts.stage(&mut unit, &mut to)?;
/// let outcomes = unit.commit(&store).await?;
/// assert_eq!(outcomes.len(), 2);
/// assert_eq!(accounts.load("bob").await?.state().balance, 30);
/// # Ok(())
/// # }
/// ```
#[must_use = "nothing is saved until the unit of work is committed"]
pub struct UnitOfWork<'a> {
    batches: Vec<StreamBatch>,
    staged: Vec<Box<dyn Staged<'a> + Send + 'a>>,
}

impl fmt::Debug for UnitOfWork<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitOfWork")
            .field(
                "streams",
                &self.batches.iter().map(|b| &b.stream).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for UnitOfWork<'_> {
    fn default() -> Self {
        UnitOfWork::new()
    }
}

impl UnitOfWork<'_> {
    /// An empty unit of work.
    pub fn new() -> Self {
        UnitOfWork {
            batches: Vec::new(),
            staged: Vec::new(),
        }
    }

    /// How many aggregates are staged (those with events to save).
    #[must_use]
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether no aggregate with events to save is staged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Appends every staged aggregate's pending events in one atomic multi-stream append to
    /// `store` (the store of the repositories that staged them), each expecting the version it
    /// was loaded at. On success each aggregate is marked saved (its pending events cleared,
    /// its version moved on) and snapshotted where its repository's policy says; returns one
    /// outcome per staged aggregate, in staging order. An empty unit writes nothing and
    /// returns no outcomes.
    ///
    /// # Errors
    /// [`RepositoryError::Store`] with [`StoreError::Conflicts`](crate::StoreError::Conflicts) naming every aggregate that
    /// another writer changed since it was loaded (reload them all and decide again: see
    /// [`retry_on_conflict`]); [`StoreError::DuplicateStream`](crate::StoreError::DuplicateStream) when one aggregate was staged
    /// twice; the store's other failures. On error nothing is stored and every aggregate
    /// keeps its pending events.
    pub async fn commit<S: EventStore + ?Sized>(
        self,
        store: &S,
    ) -> Result<Vec<AppendOutcome>, RepositoryError> {
        if self.batches.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = store.append_streams(self.batches).await?;
        for (staged, outcome) in self.staged.into_iter().zip(&outcomes) {
            staged.saved(*outcome).await;
        }
        Ok(outcomes)
    }
}

/// An aggregate staged in a unit of work, waiting to learn its new version.
trait Staged<'a> {
    /// Marks the aggregate saved at `outcome` and takes a snapshot if one is due.
    fn saved(
        self: Box<Self>,
        outcome: AppendOutcome,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

struct StagedRoot<'a, A: Aggregate, S, P> {
    repository: &'a Repository<A, S, P>,
    root: &'a mut AggregateRoot<A>,
    /// The id of the last event staged.
    last_event: Option<uuid::Uuid>,
}

impl<'a, A, S, P> Staged<'a> for StagedRoot<'a, A, S, P>
where
    A: Aggregate,
    S: EventStore,
    P: SnapshotLocation<S>,
{
    fn saved(
        self: Box<Self>,
        outcome: AppendOutcome,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let StagedRoot {
                repository,
                root,
                last_event,
            } = *self;
            let loaded = root.version();
            repository.saved(root, loaded, outcome, last_event).await;
        })
    }
}

impl<A: Aggregate, S: EventStore, P: SnapshotLocation<S>> Repository<A, S, P> {
    /// Adds `root`'s pending events to `unit`, to be appended when the unit is committed,
    /// expecting the stream at the version `root` was loaded at. A root with no pending
    /// events is not added (nothing to write, and its version is not checked).
    ///
    /// # Errors
    /// [`RepositoryError::Encode`] when an event does not encode; `unit` is unchanged.
    pub fn stage<'a>(
        &'a self,
        unit: &mut UnitOfWork<'a>,
        root: &'a mut AggregateRoot<A>,
    ) -> Result<(), RepositoryError> {
        self.stage_with_metadata(unit, root, &Metadata::default())
    }

    /// Like [`Repository::stage`], stamping every event with `metadata`.
    pub fn stage_with_metadata<'a>(
        &'a self,
        unit: &mut UnitOfWork<'a>,
        root: &'a mut AggregateRoot<A>,
        metadata: &Metadata,
    ) -> Result<(), RepositoryError> {
        if !root.has_pending_events() {
            return Ok(());
        }
        let events = root
            .pending_events()
            .iter()
            .map(|event| Ok(NewEvent::encode(event, self.codec)?.with_metadata(metadata.clone())))
            .collect::<Result<Vec<_>, CodecError>>()?;
        let loaded = root.version();
        let expected = if loaded == Version::INITIAL {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(loaded)
        };
        let last_event = events.last().map(|event| event.event_id);
        unit.batches
            .push(StreamBatch::new(root.stream_id(), expected, events));
        unit.staged.push(Box::new(StagedRoot {
            repository: self,
            root,
            last_event,
        }));
        Ok(())
    }
}

/// Runs `command` (load the aggregates, decide, stage them, commit) and, when it fails with
/// a version conflict, waits as `policy` says and runs it again, at most
/// [`policy.max_attempts()`](RetryPolicy::max_attempts) times in all.
///
/// This is the retry loop of [`Repository::update`] for a command that touches several
/// aggregates: `command` must load everything it decides on afresh each time, since the
/// conflict means one of them changed. It receives the attempt number, from 1. Pass a
/// repository's [`retry_policy`](Repository::retry_policy) to share its settings.
///
/// # Errors
/// The command's own errors at once ([`CommandError::Rejected`] and non-conflict
/// [`CommandError::Repository`] errors are not retried), and
/// [`CommandError::RetriesExhausted`] with the first conflict of the last attempt when every
/// attempt conflicted.
///
/// # Examples
///
/// ```
/// # use es_core::{Aggregate, Apply, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// # struct Moved { amount: i64 }
/// # #[derive(Aggregate, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "account", events(Moved))]
/// # struct Account { balance: i64 }
/// # impl Apply<Moved> for Account {
/// #     fn apply(&mut self, event: &Moved) { self.balance += event.amount }
/// # }
/// use es_core::{retry_on_conflict, CommandError, InMemory, Repository, RetryPolicy, UnitOfWork};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("insufficient funds")]
/// struct InsufficientFunds;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemory::new();
/// let accounts = Repository::<Account, _>::new(store.clone());
/// let (accounts, store) = (&accounts, &store);
/// let result = retry_on_conflict(RetryPolicy::attempts(5), |_attempt| async move {
///     let mut from = accounts.load("alice").await?;
///     let mut to = accounts.load("bob").await?;
///     if from.state().balance < 30 {
///         return Err(CommandError::Rejected(InsufficientFunds));
///     }
///     from.record(Moved { amount: -30 });
///     to.record(Moved { amount: 30 });
///     let mut unit = UnitOfWork::new();
///     accounts.stage(&mut unit, &mut from)?;
///     accounts.stage(&mut unit, &mut to)?;
///     Ok(unit.commit(store).await?)
/// })
/// .await;
/// assert!(matches!(result, Err(CommandError::Rejected(InsufficientFunds))));
/// # Ok(())
/// # }
/// ```
pub async fn retry_on_conflict<T, E, F, Fut>(
    policy: RetryPolicy,
    mut command: F,
) -> Result<T, CommandError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, CommandError<E>>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match command(attempt).await {
            Err(CommandError::Repository(RepositoryError::Store(error))) if error.is_conflict() => {
                // A conflict error carries at least one conflict.
                let last = error.conflicts().first().cloned();
                match last {
                    Some(last) if attempt >= policy.max_attempts() => {
                        return Err(CommandError::RetriesExhausted {
                            attempts: attempt,
                            last,
                        })
                    }
                    Some(_) => {
                        let delay = policy.delay_after(attempt);
                        tracing::debug!(
                            attempt,
                            %error,
                            delay_micros = delay.as_micros(),
                            "conflict; retrying command"
                        );
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                    None => return Err(RepositoryError::Store(error).into()),
                }
            }
            other => return other,
        }
    }
}
