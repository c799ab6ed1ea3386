//! Leases and fenced writes on the in-memory store (several workers in one process), timed by
//! a manual clock.

mod lease_support;

use es_core::{InMemory, ManualClock, Timestamp};
use lease_support::Expiry;

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000))
}

#[tokio::test]
async fn memory_lease_is_granted_renewed_and_released() {
    let store = InMemory::new();
    lease_support::lease_is_granted_renewed_and_released(&store, &store.clone()).await;
}

#[tokio::test]
async fn memory_lease_expires_and_fences_the_old_holder() {
    let clock = clock();
    let store = InMemory::with_clock(clock.clone());
    lease_support::lease_expires_and_fences_the_old_holder(
        &store,
        &store.clone(),
        &Expiry::Clock(clock),
    )
    .await;
}

#[tokio::test]
async fn memory_lease_renewal_keeps_it() {
    let clock = clock();
    let store = InMemory::with_clock(clock.clone());
    lease_support::lease_renewal_keeps_it_and_an_untaken_lease_stays_renewable(
        &store,
        &store.clone(),
        &Expiry::Clock(clock),
    )
    .await;
}

#[tokio::test]
async fn memory_fenced_write_without_the_lease_is_refused() {
    lease_support::fenced_write_without_the_lease_is_refused(&InMemory::new()).await;
}

#[tokio::test]
async fn memory_lease_bad_input_is_a_typed_error() {
    lease_support::lease_bad_input_is_a_typed_error(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_lease_contenders_race_and_one_wins() {
    let store = InMemory::new();
    lease_support::lease_contenders_race_and_one_wins(vec![store.clone(), store]).await;
}
