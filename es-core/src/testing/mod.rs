//! Test support: the store conformance suite and the given/when/then kit for aggregates.

pub mod conformance;
