//! Given/when/then tests for aggregates: given past events, when a command runs, then these
//! events are recorded (or this error is returned).
//!
//! A command is a decision on the aggregate's state, `FnOnce(&A) -> Result<Vec<A::Event>, E>`,
//! the shape [`AggregateRoot::execute`](crate::AggregateRoot::execute) and
//! [`Repository::update`](crate::Repository::update) run. The fixture needs no store: it
//! applies the given events to a fresh state, runs the command on it, and compares.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use es_core::{Aggregate, CodecError, CodecId, DecodeError, Event, EventSet};
//! # #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
//! # pub struct Deposited { pub amount: u64 }
//! # impl Event for Deposited {
//! #     const NAME: &'static str = "Deposited";
//! #     const SCHEMA_VERSION: u32 = 1;
//! #     fn decode_versioned(_: u32, codec: CodecId, payload: &[u8]) -> Result<Self, DecodeError> {
//! #         es_core::__private::decode_current(codec, payload)
//! #     }
//! # }
//! # #[derive(Clone, Debug, PartialEq)]
//! # pub enum AccountEvent { Deposited(Deposited) }
//! # impl EventSet for AccountEvent {
//! #     const EVENT_TYPES: &'static [&'static str] = &["Deposited"];
//! #     fn event_type(&self) -> &'static str { "Deposited" }
//! #     fn schema_version(&self) -> u32 { 1 }
//! #     fn encode(&self, codec: CodecId) -> Result<Vec<u8>, CodecError> {
//! #         let AccountEvent::Deposited(event) = self;
//! #         codec.encode(event)
//! #     }
//! #     fn decode(_: &str, version: u32, codec: CodecId, payload: &[u8]) -> Result<Self, DecodeError> {
//! #         Deposited::decode_versioned(version, codec, payload).map(AccountEvent::Deposited)
//! #     }
//! # }
//! # impl From<Deposited> for AccountEvent {
//! #     fn from(event: Deposited) -> Self { AccountEvent::Deposited(event) }
//! # }
//! # #[derive(Default, Serialize, Deserialize)]
//! # pub struct Account { balance: u64 }
//! # impl Aggregate for Account {
//! #     type Event = AccountEvent;
//! #     const TYPE: &'static str = "account";
//! #     const SNAPSHOT_EVERY: Option<u64> = None;
//! #     const SCHEMA_FINGERPRINT: u64 = 1;
//! #     fn apply_event(&mut self, AccountEvent::Deposited(event): &AccountEvent) {
//! #         self.balance += event.amount;
//! #     }
//! # }
//! #[derive(Debug, PartialEq)]
//! enum AccountError {
//!     ZeroAmount,
//!     LimitExceeded { balance: u64 },
//! }
//!
//! impl Account {
//!     fn deposit(&self, amount: u64) -> Result<Vec<AccountEvent>, AccountError> {
//!         match amount {
//!             0 => Err(AccountError::ZeroAmount),
//!             _ if self.balance + amount > 1_000 => {
//!                 Err(AccountError::LimitExceeded { balance: self.balance })
//!             }
//!             _ => Ok(vec![Deposited { amount }.into()]),
//!         }
//!     }
//! }
//!
//! use es_core::testing::AggregateFixture;
//!
//! AggregateFixture::<Account>::given_none()
//!     .when(|account| account.deposit(100))
//!     .then(vec![Deposited { amount: 100 }.into()]);
//!
//! AggregateFixture::<Account>::given(vec![Deposited { amount: 900 }.into()])
//!     .when(|account| account.deposit(200))
//!     .then_error(AccountError::LimitExceeded { balance: 900 });
//!
//! AggregateFixture::<Account>::given_none()
//!     .when(|account| account.deposit(0))
//!     .then_error_matches(|error| matches!(error, AccountError::ZeroAmount));
//! ```

use std::any::Any;
use std::fmt::{self, Debug, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::aggregate::Aggregate;

/// The "given" step: an aggregate's past events, before a command runs.
///
/// Start with [`AggregateFixture::given`] or [`AggregateFixture::given_none`], run the command
/// with [`when`](AggregateFixture::when), then check with [`Outcome::then`],
/// [`Outcome::then_error`] or [`Outcome::then_error_matches`]. A failed check panics with the
/// given events, the produced events (or error) and the expected ones.
pub struct AggregateFixture<A: Aggregate> {
    given: Vec<A::Event>,
}

impl<A: Aggregate> Debug for AggregateFixture<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateFixture")
            .field("aggregate", &A::TYPE)
            .field("given", &self.given)
            .finish()
    }
}

impl<A: Aggregate> AggregateFixture<A> {
    /// An aggregate whose history is `events`, applied in order before the command runs.
    #[must_use]
    pub fn given(events: Vec<A::Event>) -> Self {
        AggregateFixture { given: events }
    }

    /// An aggregate with no history.
    #[must_use]
    pub fn given_none() -> Self {
        AggregateFixture { given: Vec::new() }
    }

    /// Applies the given events to a fresh state and runs `command` on it.
    ///
    /// # Panics
    /// If applying a given event panics: the message names the event.
    #[track_caller]
    pub fn when<F, E>(self, command: F) -> Outcome<A, E>
    where
        F: FnOnce(&A) -> Result<Vec<A::Event>, E>,
    {
        let mut state = A::default();
        for (index, event) in self.given.iter().enumerate() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| state.apply_event(event))) {
                panic!(
                    "given/when/then: applying given event {} panicked: {}\n{}",
                    index + 1,
                    panic_message(&*payload),
                    list("given", &self.given)
                );
            }
        }
        let result = command(&state);
        Outcome {
            given: self.given,
            state,
            result,
        }
    }
}

/// The "then" step: what the command returned, to check against the expectation.
#[must_use = "an outcome checks nothing until `then`, `then_error` or `then_error_matches` runs"]
pub struct Outcome<A: Aggregate, E> {
    given: Vec<A::Event>,
    state: A,
    result: Result<Vec<A::Event>, E>,
}

impl<A: Aggregate, E: Debug> Debug for Outcome<A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("aggregate", &A::TYPE)
            .field("given", &self.given)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, E: Debug> Outcome<A, E> {
    /// Checks that the command succeeded and recorded exactly `expected`, in order.
    ///
    /// Also checks that applying them to the state does not panic. Returns the state with them
    /// applied, for further checks.
    ///
    /// # Panics
    /// If the command failed, recorded other events, or applying them panicked; the message
    /// lists the given, produced and expected events.
    #[allow(clippy::needless_pass_by_value)] // `vec![...]` at the call site reads best.
    #[track_caller]
    pub fn then(self, expected: Vec<A::Event>) -> A {
        let produced = match self.result {
            Ok(produced) => produced,
            Err(error) => panic!(
                "given/when/then: the command failed, events were expected\n{}  error: \
                 {error:?}\n{}",
                list("given", &self.given),
                list("expected", &expected)
            ),
        };
        assert!(
            produced == expected,
            "given/when/then: the command recorded other events than expected{}\n{}{}{}",
            first_difference(&produced, &expected),
            list("given", &self.given),
            list("produced", &produced),
            list("expected", &expected)
        );
        let mut state = self.state;
        for (index, event) in produced.iter().enumerate() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| state.apply_event(event))) {
                panic!(
                    "given/when/then: applying produced event {} to the state panicked: {}\n{}{}",
                    index + 1,
                    panic_message(&*payload),
                    list("given", &self.given),
                    list("produced", &produced)
                );
            }
        }
        state
    }

    /// Checks that the command failed with exactly `expected`.
    ///
    /// # Panics
    /// If the command succeeded, or failed with another error.
    #[allow(clippy::needless_pass_by_value)] // an error value at the call site reads best.
    #[track_caller]
    pub fn then_error(self, expected: E)
    where
        E: PartialEq,
    {
        match self.result {
            Err(error) if error == expected => {}
            Err(error) => panic!(
                "given/when/then: the command failed with another error\n{}  error:    \
                 {error:?}\n  expected: {expected:?}",
                list("given", &self.given)
            ),
            Ok(produced) => panic!(
                "given/when/then: the command succeeded, an error was expected\n{}{}  expected \
                 error: {expected:?}",
                list("given", &self.given),
                list("produced", &produced)
            ),
        }
    }

    /// Checks that the command failed with an error for which `predicate` holds.
    ///
    /// # Panics
    /// If the command succeeded, or `predicate` rejects its error.
    #[track_caller]
    pub fn then_error_matches(self, predicate: impl FnOnce(&E) -> bool) {
        match self.result {
            Err(error) if predicate(&error) => {}
            Err(error) => panic!(
                "given/when/then: the command failed with an error the predicate rejects\n{}  \
                 error: {error:?}",
                list("given", &self.given)
            ),
            Ok(produced) => panic!(
                "given/when/then: the command succeeded, an error was expected\n{}{}",
                list("given", &self.given),
                list("produced", &produced)
            ),
        }
    }
}

/// `label`, then one numbered event per line (or `(none)`).
fn list<T: Debug>(label: &str, events: &[T]) -> String {
    let mut out = format!("  {label}:");
    if events.is_empty() {
        out.push_str(" (none)\n");
        return out;
    }
    out.push('\n');
    for (index, event) in events.iter().enumerate() {
        let _ = writeln!(out, "    {}. {event:?}", index + 1);
    }
    out
}

/// Where two event lists first differ, as a clause of the failure message.
fn first_difference<T: PartialEq>(produced: &[T], expected: &[T]) -> String {
    match produced.iter().zip(expected).position(|(p, e)| p != e) {
        Some(index) => format!(" (first difference at event {})", index + 1),
        None => format!(
            " ({} produced, {} expected)",
            count(produced.len()),
            count(expected.len())
        ),
    }
}

/// `1 event`, `2 events`.
fn count(events: usize) -> String {
    if events == 1 {
        "1 event".to_owned()
    } else {
        format!("{events} events")
    }
}

/// The text of a panic payload (`panic!` with a literal or a format string).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a non-text panic payload)")
}
