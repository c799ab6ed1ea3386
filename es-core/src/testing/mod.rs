//! Test support, behind the `testing` feature: the store conformance suite and the
//! given/when/then kit for aggregates.
//!
//! - [`conformance`] checks any [`EventStore`](crate::EventStore) (with its snapshot and
//!   projection stores) against every sentence of the contracts; a store's test file is three
//!   lines with [`conformance_tests!`](crate::conformance_tests).
//! - [`AggregateFixture`] tests an aggregate's commands without a store: given these events,
//!   when this command runs, then these events are recorded, or this error is returned.

pub mod conformance;
mod fixture;

pub use fixture::{AggregateFixture, Outcome};
