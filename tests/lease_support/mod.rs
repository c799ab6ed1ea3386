//! The lease and fencing checks every store runs: each takes two handles on one store (two
//! connections, or clones of one in-memory store) and a way to let a lease time run out.
#![allow(dead_code)] // Each suite uses a different part of this module.

use std::sync::Arc;
use std::time::Duration;

use es_core::lease::{LeaseStore, MAX_LEASE_TIME};
use es_core::{CodecId, GlobalPosition, ManualClock, ProjectionStore, SavedProjection, StoreError};
use tokio::sync::Barrier;

/// The lease time of grants a check lets run out.
pub const TTL: Duration = Duration::from_millis(400);

/// The lease time of grants a check needs held throughout, however slow the machine.
pub const HELD: Duration = Duration::from_mins(1);

/// How a check lets a granted lease time run out.
pub enum Expiry {
    /// Advance the store's manual clock past the lease time.
    Clock(ManualClock),
    /// Wait past the lease time (a store timed by a clock the test does not control: the
    /// PostgreSQL server's).
    Wait,
}

impl Expiry {
    /// Lets every lease granted for [`TTL`] so far expire.
    pub async fn run_out(&self) {
        match self {
            Expiry::Clock(clock) => clock.advance(TTL * 2),
            Expiry::Wait => tokio::time::sleep(TTL * 2).await,
        }
    }
}

/// A read model's saved state, marked with `mark`.
pub fn saved(name: &str, position: u64, mark: &str) -> SavedProjection {
    SavedProjection {
        name: name.to_owned(),
        position: GlobalPosition(position),
        codec: CodecId::Json,
        state: format!("\"{mark}\"").into_bytes(),
        saved_at: es_core::Timestamp::from_micros(1_700_000_000_000_000),
    }
}

/// Grant, refusal while held, renewal, release, and a new grant with a higher token.
pub async fn lease_is_granted_renewed_and_released<S: LeaseStore>(one: &S, other: &S) {
    let lease = one
        .try_acquire("models", "node-a", HELD)
        .await
        .unwrap()
        .expect("a lease never granted is free");
    assert_eq!(
        (lease.name.as_str(), lease.holder.as_str()),
        ("models", "node-a")
    );
    assert_eq!(lease.token, 1, "the first grant has token 1");
    assert_eq!(
        other.load_lease("models").await.unwrap(),
        Some(lease.clone())
    );

    assert_eq!(
        other.try_acquire("models", "node-b", HELD).await.unwrap(),
        None
    );
    assert_eq!(
        one.try_acquire("models", "node-a", HELD).await.unwrap(),
        None,
        "a held lease is not granted again, not even to its holder"
    );
    let renewed = one
        .renew(&lease, HELD)
        .await
        .unwrap()
        .expect("the holder renews its lease");
    assert_eq!(renewed.token, lease.token, "renewing keeps the token");
    assert!(renewed.expires_at >= lease.expires_at);

    let stranger = es_core::Lease {
        holder: "node-b".to_owned(),
        ..lease.clone()
    };
    assert_eq!(
        other.renew(&stranger, HELD).await.unwrap(),
        None,
        "only the holder renews"
    );
    assert!(
        !other.release(&stranger).await.unwrap(),
        "only the holder releases"
    );

    assert!(one.release(&lease).await.unwrap());
    assert!(
        !one.release(&lease).await.unwrap(),
        "a released lease is released once"
    );
    assert_eq!(
        one.renew(&lease, HELD).await.unwrap(),
        None,
        "a released lease is lost"
    );
    assert_eq!(other.load_lease("models").await.unwrap(), None);

    let next = other
        .try_acquire("models", "node-b", HELD)
        .await
        .unwrap()
        .expect("a released lease is free at once");
    assert_eq!(next.token, 2, "every grant raises the token");
    assert_eq!(one.load_lease("models").await.unwrap(), Some(next));
    // Another name is another lease.
    let unrelated = one
        .try_acquire("other-models", "node-a", HELD)
        .await
        .unwrap();
    assert_eq!(unrelated.map(|lease| lease.token), Some(1));
}

/// A lease whose time ran out goes to the next taker with a higher token; the old holder can
/// neither renew it nor write under it, and its fenced writes leave the state as it was.
pub async fn lease_expires_and_fences_the_old_holder<S: LeaseStore + ProjectionStore>(
    one: &S,
    other: &S,
    expiry: &Expiry,
) {
    let first = one
        .try_acquire("models", "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    one.save_projection_fenced(saved("count", 10, "a"), &first.fence())
        .await
        .expect("the holder writes under its fence");

    expiry.run_out().await;
    let second = other
        .try_acquire("models", "node-b", TTL)
        .await
        .unwrap()
        .expect("an expired lease is free");
    assert_eq!(second.token, first.token + 1);
    assert_eq!(
        one.renew(&first, TTL).await.unwrap(),
        None,
        "a taken lease cannot be renewed"
    );

    let refused = one
        .save_projection_fenced(saved("count", 20, "stale"), &first.fence())
        .await
        .expect_err("a write under a lease that moved on is fenced off");
    match &refused {
        StoreError::Fenced {
            lease,
            token,
            current,
        } => {
            assert_eq!(lease, "models");
            assert_eq!(*token, first.token);
            assert_eq!(*current, Some(second.token));
        }
        other => panic!("expected StoreError::Fenced, got {other:?}"),
    }
    assert!(refused.is_fenced());
    let stored = other.load_projection("count").await.unwrap().unwrap();
    assert_eq!(
        stored,
        saved("count", 10, "a"),
        "the fenced write changed nothing"
    );

    other
        .save_projection_fenced(saved("count", 30, "b"), &second.fence())
        .await
        .expect("the new holder writes");
    assert_eq!(
        one.load_projection("count").await.unwrap().unwrap(),
        saved("count", 30, "b")
    );
    assert!(
        !one.release(&first).await.unwrap(),
        "the old holder cannot release it"
    );
}

/// A renewed lease does not expire at its first expiry; a lease that expired but was not
/// taken can still be renewed by its holder, token unchanged.
pub async fn lease_renewal_keeps_it_and_an_untaken_lease_stays_renewable<S: LeaseStore>(
    one: &S,
    other: &S,
    expiry: &Expiry,
) {
    let lease = one
        .try_acquire("models", "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    expiry.run_out().await;
    let renewed = one
        .renew(&lease, HELD)
        .await
        .unwrap()
        .expect("nobody took it: its holder still holds it");
    assert_eq!(renewed.token, lease.token);
    assert_eq!(
        other.try_acquire("models", "node-b", TTL).await.unwrap(),
        None,
        "a renewed lease is held"
    );
}

/// A fenced write under a lease never granted, or under a made-up token, is refused.
pub async fn fenced_write_without_the_lease_is_refused<S: LeaseStore + ProjectionStore>(store: &S) {
    let never = es_core::Fence {
        lease: "nobody".to_owned(),
        token: 1,
    };
    let error = store
        .save_projection_fenced(saved("count", 1, "x"), &never)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Fenced { current: None, .. }),
        "got {error:?}"
    );
    let lease = store
        .try_acquire("models", "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    let forged = es_core::Fence {
        token: lease.token + 1,
        ..lease.fence()
    };
    let error = store
        .save_projection_fenced(saved("count", 1, "x"), &forged)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Fenced { current: Some(current), .. } if current == lease.token),
        "got {error:?}"
    );
    assert_eq!(store.load_projection("count").await.unwrap(), None);
}

/// Empty names and holders, and lease times out of range, are configuration errors.
pub async fn lease_bad_input_is_a_typed_error<S: LeaseStore>(store: &S) {
    for (name, holder, ttl) in [
        ("", "node-a", TTL),
        ("models", "", TTL),
        ("models", "node-a", Duration::ZERO),
        ("models", "node-a", MAX_LEASE_TIME + Duration::from_secs(1)),
        ("mod\0els", "node-a", TTL),
    ] {
        let error = store.try_acquire(name, holder, ttl).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Config(_)),
            "{name:?}/{holder:?}/{ttl:?}: {error:?}"
        );
    }
    assert_eq!(
        store.load_lease("models").await.unwrap(),
        None,
        "nothing was granted"
    );
}

/// Many contenders at once on two handles: exactly one is granted. The lease time is long, so
/// a slow contender cannot find it expired; each round ends by releasing it.
pub async fn lease_contenders_race_and_one_wins<S: LeaseStore + Clone + 'static>(handles: Vec<S>) {
    const CONTENDERS: usize = 16;
    for round in 0..3_u64 {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                let store = handles[contender % handles.len()].clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .try_acquire("models", &format!("node-{contender}"), MAX_LEASE_TIME)
                        .await
                        .expect("a contender's attempt does not fail")
                })
            })
            .collect();
        let mut granted = Vec::new();
        for task in tasks {
            if let Some(lease) = task.await.unwrap() {
                granted.push(lease);
            }
        }
        assert_eq!(
            granted.len(),
            1,
            "round {round}: exactly one contender wins: {granted:?}"
        );
        assert_eq!(
            granted[0].token,
            round + 1,
            "each round's grant raises the token by one"
        );
        assert_eq!(
            handles[0].load_lease("models").await.unwrap(),
            Some(granted[0].clone())
        );
        assert!(handles[1].release(&granted[0]).await.unwrap());
    }
}
