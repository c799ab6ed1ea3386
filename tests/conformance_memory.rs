//! The store conformance suite against the in-memory store.

use es_core::{InMemory, ManualClock};

async fn store(clock: ManualClock) -> InMemory {
    InMemory::with_clock(clock)
}

es_core::conformance_tests!(store);
