//! Values the PostgreSQL store cannot keep exactly are refused with a typed error, as the
//! SQLite store refuses them, instead of being stored changed: a snapshot version or a
//! projection position past `i64::MAX` (PostgreSQL's `bigint`).
//!
//! Needs `ES_POSTGRES_URL` (see `.ci/pg-setup`); without it each test says it was skipped.

mod postgres_support;

use es_core::{
    CodecId, GlobalPosition, ProjectionStore, SavedProjection, Snapshot, SnapshotStore, StoreError,
    Timestamp, Version,
};
use postgres_support::{stream, TestSchema};

#[tokio::test]
async fn a_snapshot_version_past_bigint_is_refused_and_the_stored_one_kept() {
    let Some(schema) = TestSchema::new("snapshot_version_past_bigint") else {
        return;
    };
    let store = schema.store().await;
    let order = stream("order", 1);
    let snapshot = |version: u64| Snapshot {
        stream: order.clone(),
        version: Version(version),
        fingerprint: 7,
        codec: CodecId::Postcard,
        state: version.to_le_bytes().to_vec(),
        taken_at: Timestamp::from_micros(42),
    };
    store.save_snapshot(snapshot(10)).await.unwrap();

    for version in [i64::MAX as u64 + 1, u64::MAX] {
        let error = store
            .save_snapshot(snapshot(version))
            .await
            .expect_err("a version PostgreSQL cannot store is refused");
        assert!(matches!(error, StoreError::Config(_)), "got {error:?}");
    }
    assert_eq!(
        store.load_snapshot(&order).await.unwrap(),
        Some(snapshot(10)),
        "the stored snapshot is unchanged"
    );

    // The largest storable version still reads back exactly.
    store
        .save_snapshot(snapshot(i64::MAX as u64))
        .await
        .unwrap();
    assert_eq!(
        store.load_snapshot(&order).await.unwrap(),
        Some(snapshot(i64::MAX as u64))
    );
}

#[tokio::test]
async fn a_projection_position_past_bigint_is_refused_and_the_saved_one_kept() {
    let Some(schema) = TestSchema::new("projection_position_past_bigint") else {
        return;
    };
    let store = schema.store().await;
    let saved = |position: u64| SavedProjection {
        name: "totals".to_owned(),
        position: GlobalPosition(position),
        codec: CodecId::Json,
        state: b"{}".to_vec(),
        saved_at: Timestamp::from_micros(42),
    };
    store.save_projection(saved(3)).await.unwrap();

    let error = store
        .save_projection(saved(u64::MAX))
        .await
        .expect_err("a position PostgreSQL cannot store is refused");
    assert!(matches!(error, StoreError::Config(_)), "got {error:?}");
    assert_eq!(
        store.load_projection("totals").await.unwrap(),
        Some(saved(3)),
        "the saved projection is unchanged"
    );
}
