//! The store conformance suite against the in-memory store.

#[test]
fn in_memory_store_keeps_the_contract() {
    // Filled by the conformance suite.
}
