//! The given/when/then kit: passing checks pass, failing checks panic with a readable message
//! listing the given, produced and expected events.

mod support;

use std::panic::{catch_unwind, UnwindSafe};

use es_core::testing::AggregateFixture;
use es_core::Aggregate;
use serde::{Deserialize, Serialize};
use support::{deposited, opened, withdrawn, Account, AccountError, AccountEvent};

/// The message of the panic `check` raises (it must raise one).
fn panic_message(check: impl FnOnce() + UnwindSafe) -> String {
    let payload = catch_unwind(check).expect_err("the check must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("a text panic")
}

#[test]
fn then_passes_when_the_command_records_the_expected_events() {
    AggregateFixture::<Account>::given_none()
        .when(|account| account.open("ada"))
        .then(vec![opened("ada")]);

    let state = AggregateFixture::<Account>::given(vec![opened("ada"), deposited(100, "pay")])
        .when(|account| account.withdraw(30))
        .then(vec![withdrawn(30)]);
    assert_eq!(
        state.balance, 70,
        "then returns the state with the events applied"
    );
    assert_eq!(state.withdrawals, 1);
}

#[test]
fn then_accepts_a_command_that_records_nothing() {
    let state = AggregateFixture::<Account>::given(vec![opened("ada")])
        .when(|_| Ok::<_, AccountError>(Vec::new()))
        .then(Vec::new());
    assert_eq!(state.owner.as_deref(), Some("ada"));
}

#[test]
fn then_error_and_then_error_matches_pass_on_the_expected_rejection() {
    AggregateFixture::<Account>::given(vec![opened("ada"), deposited(10, "")])
        .when(|account| account.withdraw(11))
        .then_error(AccountError::InsufficientFunds {
            balance: 10,
            requested: 11,
        });
    AggregateFixture::<Account>::given_none()
        .when(|account| account.deposit(5, ""))
        .then_error_matches(|error| *error == AccountError::NotOpen);
}

#[test]
fn a_mismatch_lists_given_produced_and_expected_events() {
    let message = panic_message(|| {
        AggregateFixture::<Account>::given(vec![opened("ada"), deposited(100, "pay")])
            .when(|account| account.withdraw(30))
            .then(vec![withdrawn(31)]);
    });
    assert!(
        message.contains("recorded other events than expected (first difference at event 1)"),
        "{message}"
    );
    let given = message.find("given:").expect("given section");
    let produced = message.find("produced:").expect("produced section");
    let expected = message.find("expected:").expect("expected section");
    assert!(given < produced && produced < expected, "{message}");
    assert!(
        message.contains("1. Opened(Opened { owner: \"ada\" })"),
        "{message}"
    );
    assert!(message.contains("2. Deposited(Deposited { amount: 100, reference: \"pay\" })"));
    assert!(message[produced..expected].contains("Withdrawn(Withdrawn { amount: 30 })"));
    assert!(message[expected..].contains("Withdrawn(Withdrawn { amount: 31 })"));
}

#[test]
fn a_different_number_of_events_is_a_mismatch() {
    let message = panic_message(|| {
        AggregateFixture::<Account>::given_none()
            .when(|account| account.open("ada"))
            .then(vec![opened("ada"), deposited(1, "")]);
    });
    assert!(
        message.contains("(1 event produced, 2 events expected)"),
        "{message}"
    );
    assert!(message.contains("given: (none)"), "{message}");
}

#[test]
fn then_fails_with_the_error_when_the_command_was_rejected() {
    let message = panic_message(|| {
        AggregateFixture::<Account>::given_none()
            .when(|account| account.withdraw(5))
            .then(vec![withdrawn(5)]);
    });
    assert!(
        message.contains("the command failed, events were expected"),
        "{message}"
    );
    assert!(message.contains("error: NotOpen"), "{message}");
    assert!(
        message.contains("Withdrawn(Withdrawn { amount: 5 })"),
        "{message}"
    );
}

#[test]
fn then_error_fails_on_success_and_on_another_error() {
    let message = panic_message(|| {
        AggregateFixture::<Account>::given_none()
            .when(|account| account.open("ada"))
            .then_error(AccountError::AlreadyOpen);
    });
    assert!(
        message.contains("the command succeeded, an error was expected"),
        "{message}"
    );
    assert!(message.contains("produced:\n    1. Opened"), "{message}");
    assert!(message.contains("expected error: AlreadyOpen"), "{message}");

    let message = panic_message(|| {
        AggregateFixture::<Account>::given(vec![opened("ada")])
            .when(|account| account.deposit(0, ""))
            .then_error(AccountError::NotOpen);
    });
    assert!(message.contains("failed with another error"), "{message}");
    assert!(message.contains("error:    ZeroAmount"), "{message}");
    assert!(message.contains("expected: NotOpen"), "{message}");
}

#[test]
fn then_error_matches_fails_on_success_and_on_a_rejected_error() {
    let message = panic_message(|| {
        AggregateFixture::<Account>::given_none()
            .when(|account| account.open("ada"))
            .then_error_matches(|_| true);
    });
    assert!(message.contains("the command succeeded"), "{message}");

    let message = panic_message(|| {
        AggregateFixture::<Account>::given_none()
            .when(|account| account.deposit(1, ""))
            .then_error_matches(|error| matches!(error, AccountError::ZeroAmount));
    });
    assert!(
        message.contains("an error the predicate rejects"),
        "{message}"
    );
    assert!(message.contains("error: NotOpen"), "{message}");
}

/// An aggregate whose `apply` has a bug: it panics on withdrawals.
#[derive(Default, Serialize, Deserialize)]
struct Fragile {
    balance: u64,
}

impl Aggregate for Fragile {
    type Event = AccountEvent;
    const TYPE: &'static str = "fragile";
    const SNAPSHOT_EVERY: Option<u64> = None;
    const SCHEMA_FINGERPRINT: u64 = 2;

    fn apply_event(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(d) => self.balance += d.amount,
            AccountEvent::Withdrawn(w) => panic!("cannot apply a withdrawal of {}", w.amount),
            AccountEvent::Opened(_) => {}
        }
    }
}

#[test]
fn then_reports_a_produced_event_that_panics_when_applied() {
    let message = panic_message(|| {
        AggregateFixture::<Fragile>::given(vec![deposited(10, "")])
            .when(|_| Ok::<_, AccountError>(vec![deposited(1, ""), withdrawn(4)]))
            .then(vec![deposited(1, ""), withdrawn(4)]);
    });
    assert!(
        message.contains(
            "applying produced event 2 to the state panicked: cannot apply a withdrawal of 4"
        ),
        "{message}"
    );
    assert!(message.contains("produced:"), "{message}");
}

#[test]
fn when_reports_a_given_event_that_panics_when_applied() {
    let message = panic_message(|| {
        let _ = AggregateFixture::<Fragile>::given(vec![deposited(10, ""), withdrawn(3)])
            .when(|_| Ok::<_, AccountError>(Vec::new()));
    });
    assert!(
        message.contains("applying given event 2 panicked: cannot apply a withdrawal of 3"),
        "{message}"
    );
}
