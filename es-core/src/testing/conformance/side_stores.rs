//! The snapshot store and the projection store.

use std::sync::Arc;

use tokio::sync::Barrier;

use super::{join, stream, Store};
use crate::clock::{Clock, ManualClock};
use crate::codec::CodecId;
use crate::snapshot::{SavedProjection, Snapshot};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

fn every_byte() -> Vec<u8> {
    (0..=255_u8).chain((0..=255_u8).rev()).collect()
}

fn snapshot(stream: &StreamId, version: u64, state: Vec<u8>, taken_at: Timestamp) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version: Version(version),
        fingerprint: 0x0123_4567_89ab_cdef,
        codec: CodecId::Postcard,
        state,
        taken_at,
    }
}

async fn load_snapshot<S: Store>(store: &S, stream: &StreamId) -> Option<Snapshot> {
    store
        .load_snapshot(stream)
        .await
        .unwrap_or_else(|error| panic!("load_snapshot(`{stream}`) failed: {error:?}"))
}

async fn save_snapshot<S: Store>(store: &S, snapshot: Snapshot) {
    let stream = snapshot.stream.clone();
    store
        .save_snapshot(snapshot)
        .await
        .unwrap_or_else(|error| panic!("save_snapshot(`{stream}`) failed: {error:?}"));
}

pub(super) async fn snapshot_round_trips_unchanged<S: Store>(store: S, clock: ManualClock) {
    let binary = stream("snapshotted");
    let empty = stream("snapshotted-empty");
    assert_eq!(
        load_snapshot(&store, &binary).await,
        None,
        "a stream without a snapshot must load None"
    );
    let mut first = snapshot(&binary, 7, every_byte(), clock.now());
    // Fingerprints are hashes: every bit pattern must survive, including the top bit.
    first.fingerprint = u64::MAX;
    let second = Snapshot {
        stream: empty.clone(),
        version: Version(1),
        fingerprint: 0,
        codec: CodecId::Json,
        state: Vec::new(),
        taken_at: clock.now().saturating_add_micros(1),
    };
    save_snapshot(&store, first.clone()).await;
    save_snapshot(&store, second.clone()).await;
    assert_eq!(
        load_snapshot(&store, &binary).await,
        Some(first),
        "a snapshot must load back unchanged (stream, version, fingerprint, codec, state, \
         taken_at)"
    );
    assert_eq!(
        load_snapshot(&store, &empty).await,
        Some(second),
        "a snapshot with an empty state must load back unchanged"
    );
}

pub(super) async fn replace_snapshot_replaces_whatever_is_stored<S: Store>(
    store: S,
    clock: ManualClock,
) {
    let replaced = stream("snapshot-replaced");
    let other = stream("snapshot-replaced-other");
    let at = clock.now();
    let ahead = snapshot(&replaced, 1_000, b"ahead of the log".to_vec(), at);
    save_snapshot(&store, ahead).await;
    let kept = snapshot(&other, 1_000, b"another stream".to_vec(), at);
    save_snapshot(&store, kept.clone()).await;

    let replacement = snapshot(&replaced, 6, b"version six".to_vec(), at);
    store
        .replace_snapshot(replacement.clone())
        .await
        .unwrap_or_else(|error| panic!("replace_snapshot failed: {error:?}"));
    assert_eq!(
        load_snapshot(&store, &replaced).await,
        Some(replacement.clone()),
        "replace_snapshot must replace a stored snapshot of a higher version"
    );
    assert_eq!(
        load_snapshot(&store, &other).await,
        Some(kept),
        "replace_snapshot must leave other streams' snapshots alone"
    );
    // Afterwards the ordinary rule holds again.
    save_snapshot(&store, snapshot(&replaced, 5, b"late".to_vec(), at)).await;
    assert_eq!(load_snapshot(&store, &replaced).await, Some(replacement));

    let fresh = stream("snapshot-replaced-fresh");
    let first = snapshot(&fresh, 3, b"first".to_vec(), at);
    store
        .replace_snapshot(first.clone())
        .await
        .unwrap_or_else(|error| panic!("replace_snapshot failed: {error:?}"));
    assert_eq!(
        load_snapshot(&store, &fresh).await,
        Some(first),
        "replace_snapshot must store a stream's first snapshot"
    );
}

pub(super) async fn snapshot_fallbacks_are_counted_per_store<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let before = store.snapshot_fallbacks();
    store.record_snapshot_fallback(&stream("fallback-one"));
    store.record_snapshot_fallback(&stream("fallback-two"));
    store.record_snapshot_fallback(&stream("fallback-one"));
    assert_eq!(
        store.snapshot_fallbacks(),
        before + 3,
        "every recorded fallback must be counted"
    );
}

pub(super) async fn older_snapshot_does_not_replace_newer<S: Store>(store: S, clock: ManualClock) {
    let stream = stream("snapshot-order");
    let at = clock.now();
    let newer = snapshot(&stream, 10, b"version ten".to_vec(), at);
    save_snapshot(&store, newer.clone()).await;
    save_snapshot(&store, snapshot(&stream, 5, b"version five".to_vec(), at)).await;
    assert_eq!(
        load_snapshot(&store, &stream).await,
        Some(newer),
        "a snapshot of version 5 arriving after one of version 10 must not replace it"
    );

    let equal = snapshot(
        &stream,
        10,
        b"version ten, again".to_vec(),
        at.saturating_add_micros(1),
    );
    save_snapshot(&store, equal.clone()).await;
    assert_eq!(
        load_snapshot(&store, &stream).await,
        Some(equal),
        "a snapshot of an equal version must replace the stored one"
    );

    let higher = snapshot(&stream, 20, b"version twenty".to_vec(), at);
    save_snapshot(&store, higher.clone()).await;
    save_snapshot(&store, snapshot(&stream, 19, b"late".to_vec(), at)).await;
    assert_eq!(
        load_snapshot(&store, &stream).await,
        Some(higher),
        "a snapshot of a higher version must replace the stored one, and stay"
    );
}

pub(super) async fn snapshots_are_kept_per_stream<S: Store>(store: S, clock: ManualClock) {
    let streams = [
        StreamId::new("order", "1"),
        StreamId::new("invoice", "1"),
        StreamId::new("order", "2"),
        StreamId::new("order/1", ""),
        StreamId::new("order", "1/"),
        StreamId::new("Order", "1"),
    ];
    for (version, stream) in (1_u64..).zip(&streams) {
        let state = format!("state of {stream:?}").into_bytes();
        // Decreasing versions: a newer snapshot of one stream must not block another's.
        save_snapshot(&store, snapshot(stream, 100 - version, state, clock.now())).await;
    }
    for (version, stream) in (1_u64..).zip(&streams) {
        let loaded = load_snapshot(&store, stream).await;
        let expected = snapshot(
            stream,
            100 - version,
            format!("state of {stream:?}").into_bytes(),
            clock.now(),
        );
        assert_eq!(
            loaded,
            Some(expected),
            "stream {stream:?} must keep its own snapshot"
        );
    }
    assert_eq!(
        load_snapshot(&store, &StreamId::new("order", "3")).await,
        None
    );
}

pub(super) async fn concurrent_snapshot_saves_keep_the_highest_version<S: Store>(
    store: S,
    clock: ManualClock,
) {
    const TASKS: usize = 16;
    const SAVES: u64 = 8;
    let store = Arc::new(store);
    let stream = stream("contended-snapshot");
    let at = clock.now();
    let state_of = |version: u64| format!("state at version {version}").into_bytes();
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|task| {
            let store = Arc::clone(&store);
            let stream = stream.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                // Each task saves its versions in a different order, some rising, some falling.
                for save in 0..SAVES {
                    let version = 1 + (task * 7 + save * 13) % (TASKS as u64 * SAVES);
                    save_snapshot(&*store, snapshot(&stream, version, state_of(version), at)).await;
                }
            })
        })
        .collect();
    let mut highest = 0;
    for task in 0..TASKS as u64 {
        for save in 0..SAVES {
            highest = highest.max(1 + (task * 7 + save * 13) % (TASKS as u64 * SAVES));
        }
    }
    for task in tasks {
        join(task).await;
    }
    assert_eq!(
        load_snapshot(&*store, &stream).await,
        Some(snapshot(&stream, highest, state_of(highest), at)),
        "of snapshots saved concurrently, the one of the highest version ({highest}) must be kept"
    );
}

fn projection(name: &str, position: u64, state: Vec<u8>, saved_at: Timestamp) -> SavedProjection {
    SavedProjection {
        name: name.to_owned(),
        position: GlobalPosition(position),
        codec: CodecId::Postcard,
        state,
        saved_at,
    }
}

async fn load_projection<S: Store>(store: &S, name: &str) -> Option<SavedProjection> {
    store
        .load_projection(name)
        .await
        .unwrap_or_else(|error| panic!("load_projection({name:?}) failed: {error:?}"))
}

async fn save_projection<S: Store>(store: &S, saved: SavedProjection) {
    let name = saved.name.clone();
    store
        .save_projection(saved)
        .await
        .unwrap_or_else(|error| panic!("save_projection({name:?}) failed: {error:?}"));
}

pub(super) async fn projection_round_trips_and_is_replaced<S: Store>(store: S, clock: ManualClock) {
    assert_eq!(
        load_projection(&store, "order-summary").await,
        None,
        "a projection never saved must load None"
    );
    let first = projection("order-summary", 42, every_byte(), clock.now());
    save_projection(&store, first.clone()).await;
    assert_eq!(
        load_projection(&store, "order-summary").await,
        Some(first),
        "a saved projection must load back unchanged"
    );

    clock.advance_micros(1_000_000);
    let ahead = SavedProjection {
        codec: CodecId::Json,
        ..projection(
            "order-summary",
            1_000,
            br#"{"orders":3}"#.to_vec(),
            clock.now(),
        )
    };
    save_projection(&store, ahead.clone()).await;
    assert_eq!(
        load_projection(&store, "order-summary").await,
        Some(ahead),
        "saving again must replace state and position"
    );

    // A rebuild starts over: a lower position replaces a higher one.
    let rebuilt = projection("order-summary", 0, Vec::new(), clock.now());
    save_projection(&store, rebuilt.clone()).await;
    assert_eq!(
        load_projection(&store, "order-summary").await,
        Some(rebuilt),
        "saving a lower position (a rebuild) must replace the stored one"
    );
}

pub(super) async fn projections_are_kept_per_name<S: Store>(store: S, clock: ManualClock) {
    let names = [
        "inventory",
        "Inventory",
        "inventory/eu",
        "inventory-eu",
        "ünï-cødé 日本",
        "it's \"quoted\"",
    ];
    for (position, name) in (1_u64..).zip(names) {
        let state = format!("state of {name:?}").into_bytes();
        save_projection(&store, projection(name, position, state, clock.now())).await;
    }
    for (position, name) in (1_u64..).zip(names) {
        let expected = projection(
            name,
            position,
            format!("state of {name:?}").into_bytes(),
            clock.now(),
        );
        assert_eq!(
            load_projection(&store, name).await,
            Some(expected),
            "projection {name:?} must keep its own state and position"
        );
    }
    assert_eq!(load_projection(&store, "inventory-us").await, None);
}
