//! The store conformance suite against the PostgreSQL store: each check gets a store in a
//! fresh schema of its own, dropped when the check ends.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each check says it was skipped.

mod postgres_support;

use es_core::store::postgres::Postgres;
use es_core::testing::conformance::Guarded;
use es_core::ManualClock;
use postgres_support::TestSchema;

/// A fresh store stamping events with `clock`, in a schema dropped after it; `None` when no
/// server is configured.
async fn store(clock: ManualClock) -> Option<Guarded<Postgres, TestSchema>> {
    let schema = TestSchema::new("conformance")?;
    let store = schema.store_with_clock(clock).await;
    Some(Guarded::new(store, schema))
}

es_core::conformance_tests!(optional: store);
