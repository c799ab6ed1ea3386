//! Leases and fenced writes on the SQLite store, through two store handles on one file (two
//! write connections, as two processes have), timed by a shared manual clock.

mod lease_support;
mod sqlite_support;

use es_core::lease::LeaseStore;
use es_core::store::sqlite::Sqlite;
use lease_support::{Expiry, TTL};
use sqlite_support::{clock, open_with_clock, temporary_store_path};

/// Two handles on one new store file, sharing `clock`.
async fn two_handles(path: &std::path::Path, clock: &es_core::ManualClock) -> (Sqlite, Sqlite) {
    let one = open_with_clock(path, clock.clone()).await;
    let other = open_with_clock(path, clock.clone()).await;
    (one, other)
}

#[tokio::test]
async fn sqlite_lease_is_granted_renewed_and_released() {
    let (_directory, path) = temporary_store_path();
    let (one, other) = two_handles(&path, &clock()).await;
    lease_support::lease_is_granted_renewed_and_released(&one, &other).await;
}

#[tokio::test]
async fn sqlite_lease_expires_and_fences_the_old_holder() {
    let (_directory, path) = temporary_store_path();
    let clock = clock();
    let (one, other) = two_handles(&path, &clock).await;
    lease_support::lease_expires_and_fences_the_old_holder(&one, &other, &Expiry::Clock(clock))
        .await;
}

#[tokio::test]
async fn sqlite_lease_renewal_keeps_it() {
    let (_directory, path) = temporary_store_path();
    let clock = clock();
    let (one, other) = two_handles(&path, &clock).await;
    lease_support::lease_renewal_keeps_it_and_an_untaken_lease_stays_renewable(
        &one,
        &other,
        &Expiry::Clock(clock),
    )
    .await;
}

#[tokio::test]
async fn sqlite_fenced_write_without_the_lease_is_refused() {
    let (_directory, path) = temporary_store_path();
    let store = open_with_clock(&path, clock()).await;
    lease_support::fenced_write_without_the_lease_is_refused(&store).await;
}

#[tokio::test]
async fn sqlite_lease_bad_input_is_a_typed_error() {
    let (_directory, path) = temporary_store_path();
    let store = open_with_clock(&path, clock()).await;
    lease_support::lease_bad_input_is_a_typed_error(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_lease_contenders_race_and_one_wins() {
    let (_directory, path) = temporary_store_path();
    let clock = clock();
    let (one, other) = two_handles(&path, &clock).await;
    lease_support::lease_contenders_race_and_one_wins(vec![one, other]).await;
}

/// The token lives in the file: after every handle closed and the store reopened, the next
/// grant's token is still higher than every earlier one, and a fence from before the restart
/// is still refused.
#[tokio::test]
async fn sqlite_lease_token_grows_across_a_restart() {
    let (_directory, path) = temporary_store_path();
    let clock = clock();
    let store = open_with_clock(&path, clock.clone()).await;
    let first = store
        .try_acquire("models", "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(store.release(&first).await.unwrap());
    let second = store
        .try_acquire("models", "node-b", TTL)
        .await
        .unwrap()
        .unwrap();
    store.close().await;

    let reopened = open_with_clock(&path, clock.clone()).await;
    assert_eq!(
        reopened.load_lease("models").await.unwrap(),
        Some(second.clone())
    );
    clock.advance(TTL * 2);
    let third = reopened
        .try_acquire("models", "node-c", TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.token, second.token + 1);
    assert!(third.token > first.token);
    let error = es_core::ProjectionStore::save_projection_fenced(
        &reopened,
        lease_support::saved("count", 1, "stale"),
        &second.fence(),
    )
    .await
    .unwrap_err();
    assert!(error.is_fenced(), "got {error:?}");
}
