//! Leases and fenced writes on the PostgreSQL store, through two store handles (two pools) on
//! one schema, timed by the database server's clock.
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod lease_support;
mod postgres_support;

use es_core::lease::LeaseStore;
use es_core::store::postgres::Postgres;
use lease_support::{Expiry, TTL};
use postgres_support::TestSchema;

async fn two_handles(schema: &TestSchema) -> (Postgres, Postgres) {
    (schema.store().await, schema.store().await)
}

#[tokio::test]
async fn postgres_lease_is_granted_renewed_and_released() {
    let Some(schema) = TestSchema::new("lease_granted") else {
        return;
    };
    let (one, other) = two_handles(&schema).await;
    lease_support::lease_is_granted_renewed_and_released(&one, &other).await;
}

#[tokio::test]
async fn postgres_lease_expires_and_fences_the_old_holder() {
    let Some(schema) = TestSchema::new("lease_expires") else {
        return;
    };
    let (one, other) = two_handles(&schema).await;
    lease_support::lease_expires_and_fences_the_old_holder(&one, &other, &Expiry::Wait).await;
}

#[tokio::test]
async fn postgres_lease_renewal_keeps_it() {
    let Some(schema) = TestSchema::new("lease_renewal") else {
        return;
    };
    let (one, other) = two_handles(&schema).await;
    lease_support::lease_renewal_keeps_it_and_an_untaken_lease_stays_renewable(
        &one,
        &other,
        &Expiry::Wait,
    )
    .await;
}

#[tokio::test]
async fn postgres_fenced_write_without_the_lease_is_refused() {
    let Some(schema) = TestSchema::new("fenced_without") else {
        return;
    };
    lease_support::fenced_write_without_the_lease_is_refused(&schema.store().await).await;
}

#[tokio::test]
async fn postgres_lease_bad_input_is_a_typed_error() {
    let Some(schema) = TestSchema::new("lease_bad_input") else {
        return;
    };
    lease_support::lease_bad_input_is_a_typed_error(&schema.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_lease_contenders_race_and_one_wins() {
    let Some(schema) = TestSchema::new("lease_race") else {
        return;
    };
    let (one, other) = two_handles(&schema).await;
    lease_support::lease_contenders_race_and_one_wins(vec![one, other]).await;
}

/// The token lives in the schema: a new store handle (a restarted node) continues it.
#[tokio::test]
async fn postgres_lease_token_grows_across_a_restart() {
    let Some(schema) = TestSchema::new("lease_restart") else {
        return;
    };
    let store = schema.store().await;
    let first = store
        .try_acquire("models", "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(store.release(&first).await.unwrap());
    store.close().await;
    let restarted = schema.store().await;
    let second = restarted
        .try_acquire("models", "node-b", TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.token, first.token + 1);
}

/// A takeover waits for a fenced write in flight: while a transaction holds the token row
/// `FOR SHARE` (as a fenced write does until it commits), a takeover of the expired lease
/// blocks; once it commits, the takeover is granted and the next fenced write of the old
/// holder is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_takeover_waits_for_a_fenced_write_in_flight() {
    let Some(schema) = TestSchema::new("lease_waits") else {
        return;
    };
    let (one, other) = two_handles(&schema).await;
    let first = one
        .try_acquire("models", "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    Expiry::Wait.run_out().await;

    let mut raw = schema.raw().await;
    let transaction = raw.transaction().await.unwrap();
    let token: i64 = transaction
        .query_one(
            &format!(
                "SELECT token FROM {}.leases WHERE name = 'models' FOR SHARE",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(token as u64, first.token);

    let takeover =
        tokio::spawn(async move { other.try_acquire("models", "node-b", TTL).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !takeover.is_finished(),
        "the takeover waits for the write in flight"
    );
    transaction.commit().await.unwrap();
    let second = takeover
        .await
        .unwrap()
        .expect("granted once the write committed");
    assert_eq!(second.token, first.token + 1);
    let error = es_core::ProjectionStore::save_projection_fenced(
        &one,
        lease_support::saved("count", 1, "stale"),
        &first.fence(),
    )
    .await
    .unwrap_err();
    assert!(error.is_fenced(), "got {error:?}");
}
