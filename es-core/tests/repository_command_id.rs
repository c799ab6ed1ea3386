//! Commands under a command id: the events get ids derived from it, so running the command
//! again after a lost reply (the append committed, the caller never heard) stores nothing new
//! and answers the original outcome.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use es_core::{
    AppendOutcome, CommandId, EventStore, ExpectedVersion, GlobalPosition, InMemory, ManualClock,
    Metadata, NewEvent, RecordedEvent, Repository, RepositoryError, RetryPolicy, StoreError,
    StreamBatch, StreamId, Timestamp, Version, VersionRange,
};
use support::{Account, AccountError};
use uuid::Uuid;

const T0: Timestamp = Timestamp::from_micros(1_700_000_000_000_000);

/// The in-memory store, losing the reply of its next `lose` appends: the batch is committed,
/// the caller gets `StoreError::Connection`.
struct LosesReplies {
    inner: InMemory,
    lose: AtomicU32,
}

#[derive(Debug, thiserror::Error)]
#[error("the connection closed before the reply")]
struct ReplyLost;

impl LosesReplies {
    fn new(lose: u32) -> Self {
        LosesReplies {
            inner: InMemory::with_clock(ManualClock::new(T0)),
            lose: AtomicU32::new(lose),
        }
    }

    fn lost(&self) -> bool {
        self.lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl EventStore for LosesReplies {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let outcome = self.inner.append(stream, expected, events).await?;
        if self.lost() {
            return Err(StoreError::Connection(Box::new(ReplyLost)));
        }
        Ok(outcome)
    }

    async fn append_streams(
        &self,
        batches: Vec<StreamBatch>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.append_streams(batches).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, range).await
    }

    async fn read_stream_until(
        &self,
        stream: &StreamId,
        until: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_until(stream, until).await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.inner.last_position().await
    }
}

fn repository(lose: u32) -> Repository<Account, LosesReplies, es_core::NoSnapshots> {
    Repository::without_snapshots(LosesReplies::new(lose))
        .with_retry_policy(RetryPolicy::attempts(5).with_backoff(Duration::ZERO, Duration::ZERO))
}

async fn stored(
    repository: &Repository<Account, LosesReplies, es_core::NoSnapshots>,
    id: &str,
) -> Vec<RecordedEvent> {
    repository
        .store()
        .read_stream(&StreamId::new("account", id), VersionRange::all())
        .await
        .unwrap()
}

#[tokio::test]
async fn idempotent_save_retried_after_a_lost_reply_stores_one_copy() {
    let repository = repository(1);
    let command = CommandId::new(Uuid::now_v7());
    let mut root = repository.load("ada").await.unwrap();
    root.execute(|account| account.open("ada")).unwrap();
    root.execute(|account| account.deposit(10, "first"))
        .unwrap();

    let error = repository
        .save_with_command_id(&mut root, command, &Metadata::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, RepositoryError::Store(StoreError::Connection(_))),
        "{error:?}"
    );
    assert!(
        root.has_pending_events(),
        "an unknown outcome keeps the pending events"
    );

    let outcome = repository
        .save_with_command_id(&mut root, command, &Metadata::default())
        .await
        .unwrap()
        .expect("the retry answers the stored batch");
    assert_eq!(outcome.version, Version(2));
    assert_eq!(root.version(), Version(2));
    assert!(!root.has_pending_events());
    let events = stored(&repository, "ada").await;
    assert_eq!(events.len(), 2, "one copy");
    let stream = StreamId::new("account", "ada");
    assert_eq!(events[0].event_id, command.event_id(&stream, 0));
    assert_eq!(events[1].event_id, command.event_id(&stream, 1));
}

#[tokio::test]
async fn idempotent_update_retries_a_lost_reply_without_running_the_command_twice() {
    let repository = repository(1);
    let command = CommandId::new(Uuid::now_v7());
    let mut runs = 0;
    let updated = repository
        .update_with_command_id("ada", command, &Metadata::default(), |account| {
            runs += 1;
            account.open("ada")
        })
        .await
        .unwrap();
    assert_eq!(runs, 1, "the second attempt found the command saved");
    assert_eq!(updated.attempts, 2);
    assert_eq!(updated.outcome.map(|o| o.version), Some(Version(1)));
    assert_eq!(updated.root.state().owner.as_deref(), Some("ada"));
    assert_eq!(stored(&repository, "ada").await.len(), 1);
}

#[tokio::test]
async fn idempotent_rerun_of_a_saved_command_answers_its_outcome_and_stores_nothing() {
    let repository = repository(0);
    let open = CommandId::new(Uuid::now_v7());
    let first = repository
        .update_with_command_id("ada", open, &Metadata::default(), |account| {
            account.open("ada")
        })
        .await
        .unwrap();
    // The caller never got that reply and sends the command again: on the new state it would
    // be rejected (`AlreadyOpen`), but it is recognised and not run.
    let again = repository
        .update_with_command_id("ada", open, &Metadata::default(), |account| {
            account.open("ada")
        })
        .await
        .unwrap();
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(stored(&repository, "ada").await.len(), 1);

    // A deposit, then other commands, then the deposit sent again: the re-run on the newer
    // state decides the same batch, which the store recognises.
    let deposit = CommandId::new(Uuid::now_v7());
    let deposited = repository
        .update_with_command_id("ada", deposit, &Metadata::default(), |account| {
            account.deposit(30, "salary")
        })
        .await
        .unwrap();
    for reference in ["coffee", "rent"] {
        repository
            .update_with_command_id(
                "ada",
                CommandId::new(Uuid::now_v7()),
                &Metadata::default(),
                |account| account.deposit(1, reference),
            )
            .await
            .unwrap();
    }
    let rerun = repository
        .update_with_command_id("ada", deposit, &Metadata::default(), |account| {
            account.deposit(30, "salary")
        })
        .await
        .unwrap();
    assert_eq!(rerun.outcome, deposited.outcome, "the original outcome");
    assert_eq!(
        rerun.root.state().balance,
        32,
        "the state as stored, not applied twice"
    );
    assert_eq!(rerun.root.version(), Version(4));
    assert_eq!(
        stored(&repository, "ada").await.len(),
        4,
        "nothing stored again"
    );

    // A re-run that decides a different batch of the same command (here: one more event) is
    // read as "already saved", never stored.
    let rerun = repository
        .update_with_command_id("ada", deposit, &Metadata::default(), |account| {
            let mut events = account.deposit(30, "salary")?;
            events.extend(account.deposit(5, "bonus")?);
            Ok::<_, AccountError>(events)
        })
        .await
        .unwrap();
    assert_eq!(rerun.outcome, deposited.outcome);
    assert_eq!(stored(&repository, "ada").await.len(), 4);
}

#[tokio::test]
async fn idempotent_distinct_command_ids_store_distinct_events() {
    let repository = repository(0);
    repository
        .update_with_command_id(
            "ada",
            CommandId::new(Uuid::now_v7()),
            &Metadata::default(),
            |account| account.open("ada"),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        repository
            .update_with_command_id(
                "ada",
                CommandId::new(Uuid::now_v7()),
                &Metadata::default(),
                |account| account.deposit(2, "tip"),
            )
            .await
            .unwrap();
    }
    assert_eq!(repository.load("ada").await.unwrap().state().balance, 6);
    assert_eq!(stored(&repository, "ada").await.len(), 4);
}
