//! Test support, behind the `testing` feature: the store conformance suite and the
//! given/when/then kit for aggregates.
//!
//! - [`conformance`] checks any [`EventStore`](crate::EventStore) (with its snapshot and
//!   projection stores) against every sentence of the contracts; a store's test file is three
//!   lines with [`conformance_tests!`](crate::conformance_tests).

pub mod conformance;
