//! Stored fields and stream identity: what goes in comes out, and streams never mix.

use uuid::Uuid;

use super::{
    append_ok, assert_conflict, batch, event, ids, new_ids, read_log, read_stream_all, stream,
    versions, Store,
};
use crate::clock::{Clock, ManualClock};
use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::store::ExpectedVersion;
use crate::types::{StreamId, Timestamp, Version};

/// Events exercising every stored field: both codecs, empty and binary payloads, extreme
/// schema versions, full metadata.
fn unusual_events() -> Vec<NewEvent> {
    let every_byte: Vec<u8> = (0..=255_u8).chain((0..=255_u8).rev()).collect();
    let full_metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::from_u128(0x8000_0000_0000_4000_8000_0000_0000_0001))
        .with("user", "ålice 日本")
        .with("empty", "")
        .with("", "empty key")
        .with("quote's \"here\"", "back\\slash / slash")
        .with("newline", "line one\nline two\ttab");
    vec![
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            codec: CodecId::Json,
            payload: br#"{"customer":"c-1","lines":[{"sku":"A","quantity":2}]}"#.to_vec(),
            metadata: Metadata::default(),
        },
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Ünïcødé “type” 🦀".into(),
            schema_version: 7,
            codec: CodecId::Postcard,
            payload: every_byte.clone(),
            metadata: full_metadata.clone(),
        },
        NewEvent {
            // A unit struct encodes to no bytes in postcard.
            event_id: Uuid::now_v7(),
            event_type: "Emptied".into(),
            schema_version: u32::MAX,
            codec: CodecId::Postcard,
            payload: Vec::new(),
            metadata: Metadata::default().with_correlation_id(Uuid::nil()),
        },
        NewEvent {
            event_id: Uuid::max(),
            event_type: "Large".into(),
            schema_version: 2,
            codec: CodecId::Json,
            payload: every_byte
                .iter()
                .cycle()
                .take(64 * 1024 + 3)
                .copied()
                .collect(),
            metadata: Metadata::default().with_causation_id(Uuid::now_v7()),
        },
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ZeroBytes".into(),
            schema_version: 3,
            codec: CodecId::Postcard,
            payload: vec![0; 17],
            metadata: full_metadata,
        },
    ]
}

/// Asserts that `recorded` holds exactly what `appended` gave, at `stream` and `version`.
fn assert_same_fields(
    recorded: &RecordedEvent,
    appended: &NewEvent,
    stream: &StreamId,
    version: Version,
    recorded_at: Timestamp,
    how: &str,
) {
    let sentence = format!("{how}: stored fields must read back unchanged");
    assert_eq!(
        recorded.event_id, appended.event_id,
        "{sentence} (event_id)"
    );
    assert_eq!(&recorded.stream, stream, "{sentence} (stream)");
    assert_eq!(recorded.version, version, "{sentence} (version)");
    assert_eq!(
        recorded.event_type, appended.event_type,
        "{sentence} (event_type)"
    );
    assert_eq!(
        recorded.schema_version, appended.schema_version,
        "{sentence} (schema_version)"
    );
    assert_eq!(recorded.codec, appended.codec, "{sentence} (codec)");
    assert!(
        recorded.payload == appended.payload,
        "{sentence} (payload of {} bytes read back as {} bytes{})",
        appended.payload.len(),
        recorded.payload.len(),
        first_difference(&appended.payload, &recorded.payload)
    );
    assert_eq!(
        recorded.metadata, appended.metadata,
        "{sentence} (metadata)"
    );
    assert_eq!(
        recorded.recorded_at, recorded_at,
        "{sentence} (recorded_at)"
    );
}

fn first_difference(expected: &[u8], actual: &[u8]) -> String {
    expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .map(|i| {
            format!(
                ", first difference at byte {i}: {:#04x} became {:#04x}",
                expected[i], actual[i]
            )
        })
        .unwrap_or_default()
}

pub(super) async fn stored_fields_round_trip_unchanged<S: Store>(store: S, clock: ManualClock) {
    let stream = stream("fields");
    let events = unusual_events();
    let now = clock.now();
    // In one batch, then again one at a time, so both paths of a store are covered.
    append_ok(&store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    let mut again = events.clone();
    for event in &mut again {
        event.event_id = Uuid::now_v7();
    }
    for event in again.clone() {
        append_ok(&store, &stream, ExpectedVersion::Any, vec![event]).await;
    }
    let appended: Vec<NewEvent> = events.into_iter().chain(again).collect();

    let by_stream = read_stream_all(&store, &stream).await;
    let by_time = store
        .read_stream_until(&stream, now)
        .await
        .expect("read_stream_until");
    let by_log = read_log(&store).await;
    for (how, read) in [
        ("read_stream", &by_stream),
        ("read_stream_until", &by_time),
        ("read_all", &by_log),
    ] {
        assert_eq!(
            read.len(),
            appended.len(),
            "{how} must return every appended event"
        );
        for ((recorded, appended), version) in read.iter().zip(&appended).zip(1_u64..) {
            assert_same_fields(recorded, appended, &stream, Version(version), now, how);
        }
    }
}

pub(super) async fn same_id_with_different_aggregate_types_are_different_streams<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let order = StreamId::new("order", "42");
    let invoice = StreamId::new("invoice", "42");
    let order_events = batch("order 42", 3);
    let invoice_events = batch("invoice 42", 1);
    append_ok(
        &store,
        &order,
        ExpectedVersion::NoStream,
        order_events.clone(),
    )
    .await;
    append_ok(
        &store,
        &invoice,
        ExpectedVersion::NoStream,
        invoice_events.clone(),
    )
    .await;

    let read_order = read_stream_all(&store, &order).await;
    let read_invoice = read_stream_all(&store, &invoice).await;
    assert_eq!(
        ids(&read_order),
        new_ids(&order_events),
        "`order/42` holds its own events"
    );
    assert_eq!(
        ids(&read_invoice),
        new_ids(&invoice_events),
        "`invoice/42` holds its own events"
    );
    assert_eq!(
        versions(&read_invoice),
        [1],
        "each stream counts its own versions"
    );
    assert!(read_invoice.iter().all(|e| e.stream == invoice));

    // Each stream's expectation is checked against its own version.
    let result = store
        .append(
            &invoice,
            ExpectedVersion::Exact(Version(3)),
            batch("wrong", 1),
        )
        .await;
    assert_conflict(
        result,
        &invoice,
        ExpectedVersion::Exact(Version(3)),
        Some(Version(1)),
        "an expectation must be checked against the stream of the right aggregate type",
    );
    append_ok(
        &store,
        &invoice,
        ExpectedVersion::Exact(Version(1)),
        batch("right", 1),
    )
    .await;
    assert_eq!(
        versions(&read_stream_all(&store, &order).await),
        [1, 2, 3],
        "appending to `invoice/42` must not touch `order/42`"
    );
}

pub(super) async fn unusual_stream_ids_are_kept_intact_and_apart<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let long_id = "x".repeat(1000);
    let streams = [
        StreamId::new("conformance", "plain"),
        StreamId::new("Conformance", "plain"),
        StreamId::new("conformance", "Plain"),
        StreamId::new("conformance", "ünï-cødé-日本語-🦀"),
        StreamId::new("conformance", "it's \"quoted\""),
        StreamId::new("conformance", "a/b/c"),
        StreamId::new("conformance/a", "b"),
        StreamId::new("conformance", "a/b"),
        StreamId::new("conformance", "back\\slash"),
        StreamId::new("conformance", "100%_like_*?"),
        StreamId::new("conformance", "'; DROP TABLE events; --"),
        StreamId::new("conformance", " padded "),
        StreamId::new("conformance", "padded"),
        StreamId::new("conformance", "tab\tnew\nline"),
        StreamId::new("con formance", "x"),
        StreamId::new("conformance", long_id.as_str()),
    ];
    let mut expected = Vec::new();
    for (index, stream) in streams.iter().enumerate() {
        let events: Vec<NewEvent> = (0..=index)
            .map(|i| event(&format!("{stream} #{i}")))
            .collect();
        expected.push(new_ids(&events));
        // `Any`, so streams a store mixes up fail below with what each one holds.
        append_ok(&store, stream, ExpectedVersion::Any, events).await;
    }
    for (stream, expected) in streams.iter().zip(&expected) {
        let read = read_stream_all(&store, stream).await;
        assert_eq!(
            ids(&read),
            *expected,
            "stream {stream:?} must hold exactly its own events"
        );
        assert!(
            read.iter().all(|e| &e.stream == stream),
            "stream {stream:?} must read back with its id intact, got {:?}",
            read.first().map(|e| &e.stream)
        );
        assert_eq!(
            store.load_snapshot(stream).await.expect("load_snapshot"),
            None,
            "events are not snapshots"
        );
    }
    let log = read_log(&store).await;
    for (stream, expected) in streams.iter().zip(&expected) {
        let in_log: Vec<Uuid> = log
            .iter()
            .filter(|e| &e.stream == stream)
            .map(|e| e.event_id)
            .collect();
        assert_eq!(
            in_log, *expected,
            "read_all must return stream {stream:?} with its id intact"
        );
    }
}
