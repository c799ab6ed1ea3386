//! Saving several aggregates together: `UnitOfWork` commits them in one multi-stream append,
//! all or nothing, and `retry_on_conflict` reloads and re-runs a command that touches several.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use es_core::{
    retry_on_conflict, AggregateRoot, CodecId, CommandError, EventStore, ExpectedVersion, InMemory,
    NewEvent, Repository, RepositoryError, RetryPolicy, SnapshotStore, StoreError, UnitOfWork,
    Version,
};
use support::{deposited, opened, Account, AccountError, SNAPSHOT_EVERY};

type Accounts = Repository<Account, InMemory>;

fn accounts(store: &InMemory) -> Accounts {
    Repository::new(store.clone())
}

/// Opens `id` with `balance` deposited.
async fn open(accounts: &Accounts, id: &str, balance: u64) {
    let mut root = accounts.load(id).await.unwrap();
    root.record(opened(id));
    if balance > 0 {
        root.record(deposited(balance, "opening"));
    }
    accounts.save(&mut root).await.unwrap();
}

/// Moves `amount` from `from` to `to` in one unit of work, on the states loaded now; the
/// command checks the balance, so only optimistic concurrency keeps it from overdrawing.
async fn transfer(
    accounts: &Accounts,
    from: &str,
    to: &str,
    amount: u64,
) -> Result<(), CommandError<AccountError>> {
    let mut source = accounts.load_existing(from).await?;
    let mut target = accounts.load_existing(to).await?;
    source
        .execute(|account| account.withdraw(amount))
        .map_err(CommandError::Rejected)?;
    target
        .execute(|account| account.deposit(amount, &format!("from {from}")))
        .map_err(CommandError::Rejected)?;
    let mut unit = UnitOfWork::new();
    accounts.stage(&mut unit, &mut source)?;
    accounts.stage(&mut unit, &mut target)?;
    unit.commit(accounts.store()).await?;
    Ok(())
}

#[tokio::test]
async fn a_unit_of_work_saves_every_aggregate_in_one_append_and_marks_them_saved() {
    let store = InMemory::new();
    let accounts = accounts(&store);
    open(&accounts, "alice", 100).await;
    let before = store.last_position().await.unwrap();

    let mut alice = accounts.load("alice").await.unwrap();
    let mut bob = accounts.load("bob").await.unwrap();
    let mut idle = accounts.load("idle").await.unwrap();
    alice.execute(|a| a.withdraw(40)).unwrap();
    bob.execute(|b| b.open("bob")).unwrap();
    bob.execute(|b| b.deposit(40, "from alice")).unwrap();
    let mut unit = UnitOfWork::new();
    accounts.stage(&mut unit, &mut alice).unwrap();
    accounts.stage(&mut unit, &mut bob).unwrap();
    accounts.stage(&mut unit, &mut idle).unwrap();
    assert_eq!(
        unit.len(),
        2,
        "an aggregate with nothing to save is not staged"
    );
    let outcomes = unit.commit(&store).await.unwrap();

    assert_eq!(
        outcomes.iter().map(|o| o.version).collect::<Vec<_>>(),
        [Version(3), Version(2)]
    );
    assert_eq!((alice.version(), bob.version()), (Version(3), Version(2)));
    assert!(!alice.has_pending_events() && !bob.has_pending_events());
    let log = store.read_all(before, 100).await.unwrap();
    assert_eq!(
        log.len(),
        3,
        "one withdrawal and two events of bob, in one run"
    );
    assert_eq!(accounts.load("bob").await.unwrap().state().balance, 40);
    assert_eq!(accounts.load("alice").await.unwrap().state().balance, 60);
    assert!(UnitOfWork::new().commit(&store).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_aggregate_fails_the_whole_unit_and_every_aggregate_keeps_its_events() {
    let store = InMemory::new();
    let accounts = accounts(&store);
    open(&accounts, "alice", 100).await;
    open(&accounts, "bob", 0).await;
    let mut alice = accounts.load("alice").await.unwrap();
    let mut bob = accounts.load("bob").await.unwrap();
    // Another writer changes bob after he was loaded.
    open(&accounts, "carol", 0).await;
    let mut other = accounts.load("bob").await.unwrap();
    other.execute(|b| b.deposit(1, "elsewhere")).unwrap();
    accounts.save(&mut other).await.unwrap();

    alice.execute(|a| a.withdraw(50)).unwrap();
    bob.execute(|b| b.deposit(50, "from alice")).unwrap();
    let log_before = store.last_position().await.unwrap();
    let mut unit = UnitOfWork::new();
    accounts.stage(&mut unit, &mut alice).unwrap();
    accounts.stage(&mut unit, &mut bob).unwrap();
    let error = unit.commit(&store).await.unwrap_err();

    let RepositoryError::Store(StoreError::Conflicts(conflicts)) = &error else {
        panic!("expected a multi-stream conflict, got {error:?}");
    };
    assert_eq!(
        conflicts.as_slice().len(),
        1,
        "only bob was stale: {conflicts}"
    );
    let conflict = &conflicts.as_slice()[0];
    assert_eq!(conflict.stream.aggregate_id(), "bob");
    assert_eq!(
        (conflict.expected, conflict.actual),
        (ExpectedVersion::Exact(Version(1)), Some(Version(2)))
    );
    assert!(error.is_conflict());
    assert_eq!(
        store.last_position().await.unwrap(),
        log_before,
        "nothing stored"
    );
    assert_eq!(accounts.load("alice").await.unwrap().state().balance, 100);
    assert_eq!(
        (alice.pending_events().len(), bob.pending_events().len()),
        (1, 1),
        "both keep their pending events"
    );
    assert_eq!((alice.version(), bob.version()), (Version(2), Version(1)));
}

#[tokio::test]
async fn staging_the_same_aggregate_twice_is_a_typed_error() {
    let store = InMemory::new();
    let accounts = accounts(&store);
    open(&accounts, "alice", 10).await;
    let mut first = accounts.load("alice").await.unwrap();
    let mut second = accounts.load("alice").await.unwrap();
    first.execute(|a| a.withdraw(1)).unwrap();
    second.execute(|a| a.withdraw(2)).unwrap();
    let mut unit = UnitOfWork::new();
    accounts.stage(&mut unit, &mut first).unwrap();
    accounts.stage(&mut unit, &mut second).unwrap();
    let error = unit.commit(&store).await.unwrap_err();
    assert!(
        matches!(
            error,
            RepositoryError::Store(StoreError::DuplicateStream { .. })
        ),
        "{error:?}"
    );
    assert_eq!(accounts.load("alice").await.unwrap().state().balance, 10);
}

#[tokio::test]
async fn a_unit_of_work_takes_snapshots_where_the_policy_says() {
    let store = InMemory::new();
    let accounts = accounts(&store);
    open(&accounts, "alice", 1000).await;
    open(&accounts, "bob", 0).await;
    let stream = AggregateRoot::<Account>::new("alice").stream_id();
    // Alice is at version 2; transfers move her past the snapshot boundary.
    for _ in 0..SNAPSHOT_EVERY {
        transfer(&accounts, "alice", "bob", 1).await.unwrap();
    }
    let snapshot = store
        .load_snapshot(&stream)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.version, Version(SNAPSHOT_EVERY));
    assert_eq!(
        accounts.load("alice").await.unwrap().state().balance,
        1000 - SNAPSHOT_EVERY
    );
}

#[tokio::test]
async fn retry_on_conflict_reloads_and_reruns_a_command_over_several_aggregates() {
    let store = InMemory::new();
    let accounts = accounts(&store);
    open(&accounts, "alice", 100).await;
    open(&accounts, "bob", 0).await;
    let runs = AtomicU32::new(0);
    let (accounts, runs) = (&accounts, &runs);

    let result = retry_on_conflict(RetryPolicy::attempts(3), |attempt| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        let mut alice = accounts.load("alice").await?;
        let mut bob = accounts.load("bob").await?;
        alice
            .execute(|a| a.withdraw(30))
            .map_err(CommandError::Rejected)?;
        bob.execute(|b| b.deposit(30, "from alice"))
            .map_err(CommandError::Rejected)?;
        if attempt == 1 {
            // Another writer takes money from alice between this load and the commit.
            let mut rival = accounts.load("alice").await?;
            rival
                .execute(|a| a.withdraw(80))
                .map_err(CommandError::Rejected)?;
            accounts.save(&mut rival).await?;
        }
        let mut unit = UnitOfWork::new();
        accounts.stage(&mut unit, &mut alice)?;
        accounts.stage(&mut unit, &mut bob)?;
        Ok(unit.commit(accounts.store()).await?)
    })
    .await;

    // The rerun decides on the reloaded balance (20), which cannot cover 30.
    assert!(
        matches!(
            result,
            Err(CommandError::Rejected(AccountError::InsufficientFunds {
                balance: 20,
                requested: 30
            }))
        ),
        "{result:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(accounts.load("bob").await.unwrap().state().balance, 0);
}

#[tokio::test]
async fn retry_on_conflict_gives_up_after_the_attempts_it_was_given() {
    let store = InMemory::new();
    let accounts = accounts(&store);
    open(&accounts, "alice", 100).await;
    let accounts = &accounts;
    let result: Result<(), CommandError<AccountError>> =
        retry_on_conflict(RetryPolicy::attempts(3), |_| async move {
            let mut alice = accounts.load("alice").await?;
            alice
                .execute(|a| a.withdraw(1))
                .map_err(CommandError::Rejected)?;
            // A competitor always commits first.
            let competing = NewEvent::encode(&deposited(1, "competitor"), CodecId::Json).unwrap();
            accounts
                .store()
                .append(&alice.stream_id(), ExpectedVersion::Any, vec![competing])
                .await
                .map_err(RepositoryError::from)?;
            let mut unit = UnitOfWork::new();
            accounts.stage(&mut unit, &mut alice)?;
            unit.commit(accounts.store()).await?;
            Ok(())
        })
        .await;
    match result {
        Err(CommandError::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert_eq!(last.stream.aggregate_id(), "alice");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

/// Many tasks moving money between overlapping pairs of accounts, each transfer checked
/// against the balance it loaded: no account is ever overdrawn and no money is created or
/// lost, because a transfer decided on a stale balance conflicts and is re-decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_overdraw_and_conserve_money() {
    const ACCOUNTS: usize = 4;
    const TASKS: usize = 8;
    const TRANSFERS: usize = 25;
    let store = InMemory::new();
    let accounts = Arc::new(accounts(&store));
    for i in 0..ACCOUNTS {
        open(&accounts, &format!("acct-{i}"), 10).await;
    }
    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let accounts = Arc::clone(&accounts);
            tokio::spawn(async move {
                let mut refused = 0;
                for n in 0..TRANSFERS {
                    let from = format!("acct-{}", (task + n) % ACCOUNTS);
                    let to = format!("acct-{}", (task + n + 1 + task % 2) % ACCOUNTS);
                    let accounts = &*accounts;
                    let (from, to) = (&from, &to);
                    match retry_on_conflict(RetryPolicy::attempts(1000), |_| {
                        transfer(accounts, from, to, 3)
                    })
                    .await
                    {
                        Ok(()) => {}
                        Err(CommandError::Rejected(AccountError::InsufficientFunds { .. })) => {
                            refused += 1;
                        }
                        Err(other) => panic!("a transfer failed: {other:?}"),
                    }
                }
                refused
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let account = accounts.load(&format!("acct-{i}")).await.unwrap();
        // Replayed with saturating arithmetic: an overdraft would lose money in the sum.
        total += account.state().balance;
    }
    assert_eq!(total, 10 * ACCOUNTS as u64, "money must be conserved");
}
