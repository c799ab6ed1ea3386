// Text and byte fields are filled with `.into()` so the tests compile whether the event model
// holds `String`/`Vec<u8>` or shared types.
#![allow(clippy::useless_conversion)]

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use es_core::{CodecId, GlobalPosition, Metadata, RecordedEvent, StreamId, Timestamp, Version};
use proptest::prelude::*;
use uuid::Uuid;

use super::{decode, from_message, global_position, header, header_name, EnvelopeError, Subjects};

fn metadata() -> impl Strategy<Value = Metadata> {
    (
        proptest::option::of(any::<u128>()),
        proptest::option::of(any::<u128>()),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    )
        .prop_map(|(correlation, causation, extra)| {
            let mut metadata = Metadata {
                correlation_id: correlation.map(Uuid::from_u128),
                causation_id: causation.map(Uuid::from_u128),
                ..Metadata::default()
            };
            for (key, value) in extra {
                metadata.extra.insert(key.into(), value.into());
            }
            metadata
        })
}

prop_compose! {
    fn recorded_event()(
        event_id in any::<u128>(),
        aggregate_type in any::<String>(),
        aggregate_id in any::<String>(),
        version in any::<u64>(),
        position in any::<u64>(),
        recorded_at in any::<i64>(),
        event_type in any::<String>(),
        schema_version in any::<u32>(),
        postcard in any::<bool>(),
        metadata in metadata(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::from_u128(event_id),
            stream: StreamId::new(aggregate_type, aggregate_id),
            version: Version(version),
            global_position: GlobalPosition(position),
            recorded_at: Timestamp::from_micros(recorded_at),
            event_type: event_type.into(),
            schema_version,
            codec: if postcard { CodecId::Postcard } else { CodecId::Json },
            metadata: metadata.into(),
            payload: payload.into(),
        }
    }
}

fn sample() -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        stream: StreamId::new("order", "7"),
        version: Version(3),
        global_position: GlobalPosition(42),
        recorded_at: Timestamp::from_micros(1_769_857_200_500_000),
        event_type: "OrderShipped".into(),
        schema_version: 2,
        codec: CodecId::Postcard,
        metadata: Metadata::default()
            .with_correlation_id(Uuid::from_u128(9))
            .with("user", "clerk 7\r\n")
            .into(),
        payload: vec![0, 1, 2, 0xff].into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_event_round_trips(event in recorded_event()) {
        let subjects = Subjects::new("es.events").unwrap();
        let message = subjects.envelope(&event);
        prop_assert_eq!(&message.payload[..], &event.payload[..]);
        prop_assert_eq!(subjects.stream_of(&message.subject), Some(event.stream.clone()));
        for (name, values) in message.headers.iter() {
            for value in values {
                let value = value.as_str();
                prop_assert!(
                    !value.is_empty() && value.bytes().all(|b| (b'!'..=b'~').contains(&b)),
                    "header {:?} = {:?} is not plain printable ASCII", name, value
                );
            }
        }
        prop_assert_eq!(global_position(&message.headers).unwrap(), event.global_position);
        let decoded = decode(&message.headers, &message.payload).unwrap();
        prop_assert_eq!(decoded, event);
    }

    #[test]
    fn the_subject_is_one_token_per_stream_half(event in recorded_event()) {
        let subject = Subjects::new("p").unwrap().subject(&event.stream);
        let tokens: Vec<&str> = subject.split('.').collect();
        prop_assert_eq!(tokens.len(), 3);
        prop_assert!(tokens.iter().all(|t| !t.is_empty() && *t != "*" && *t != ">"));
        prop_assert!(subject.bytes().all(|b| (b'!'..=b'~').contains(&b)));
    }
}

#[test]
fn the_documented_headers_are_written() {
    let event = sample();
    let headers = Subjects::new("es").unwrap().envelope(&event).headers;
    let get = |name| {
        headers
            .get(header_name(name))
            .map(async_nats::HeaderValue::as_str)
    };
    let id = "01900000-0000-7000-8000-000000000001";
    assert_eq!(get(header::MSG_ID), Some(id));
    assert_eq!(get(header::EVENT_ID), Some(id));
    assert_eq!(get(header::EVENT_TYPE), Some("OrderShipped"));
    assert_eq!(get(header::SCHEMA_VERSION), Some("2"));
    assert_eq!(get(header::CODEC), Some("postcard"));
    assert_eq!(get(header::AGGREGATE_TYPE), Some("order"));
    assert_eq!(get(header::AGGREGATE_ID), Some("7"));
    assert_eq!(get(header::VERSION), Some("3"));
    assert_eq!(get(header::GLOBAL_POSITION), Some("42"));
    assert_eq!(get(header::RECORDED_AT), Some("1769857200500000"));
    assert_eq!(
        get(header::CORRELATION_ID),
        Some("00000000-0000-0000-0000-000000000009")
    );
    assert_eq!(get(header::CAUSATION_ID), None);
    assert_eq!(get(header::METADATA), Some(r#"{"user":"clerk%207\r\n"}"#));
    let bare = RecordedEvent {
        metadata: Metadata::default().into(),
        ..sample()
    };
    let headers = Subjects::new("es").unwrap().envelope(&bare).headers;
    assert!(headers.get(header_name(header::METADATA)).is_none());
    assert!(headers.get(header_name(header::CORRELATION_ID)).is_none());
    // JetStream's de-duplication reads the id under the client's own name for the header.
    assert_eq!(
        headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(async_nats::HeaderValue::as_str),
        Some("01900000-0000-7000-8000-000000000001")
    );
}

fn headers_without(name: &str) -> HeaderMap {
    let full = Subjects::new("es").unwrap().envelope(&sample()).headers;
    full.iter()
        .filter(|(key, _)| AsRef::<str>::as_ref(*key) != name)
        .flat_map(|(key, values)| values.iter().map(move |value| (key.clone(), value.clone())))
        .collect()
}

fn with_header(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = headers_without(name);
    headers.insert(header_name(name), value);
    headers
}

fn invalid_header(headers: &HeaderMap) -> (&'static str, String) {
    match decode(headers, b"") {
        Err(EnvelopeError::InvalidHeader { name, value, .. }) => (name, value),
        other => panic!("expected an invalid header, got {other:?}"),
    }
}

#[test]
fn each_missing_required_header_is_named() {
    for name in [
        header::MSG_ID,
        header::EVENT_ID,
        header::EVENT_TYPE,
        header::SCHEMA_VERSION,
        header::CODEC,
        header::AGGREGATE_TYPE,
        header::AGGREGATE_ID,
        header::VERSION,
        header::GLOBAL_POSITION,
        header::RECORDED_AT,
    ] {
        match decode(&headers_without(name), b"") {
            Err(EnvelopeError::MissingHeader { name: missing }) => assert_eq!(missing, name),
            other => panic!("without {name}: expected a missing header, got {other:?}"),
        }
    }
}

#[test]
fn a_message_without_headers_is_refused() {
    let message = async_nats::Message {
        subject: "es.order.7".into(),
        reply: None,
        payload: b"{}".as_slice().into(),
        headers: None,
        status: None,
        description: None,
        length: 2,
    };
    assert!(matches!(
        from_message(&message),
        Err(EnvelopeError::NoHeaders)
    ));
}

#[test]
fn malformed_values_are_refused_with_the_header_and_value() {
    let cases: [(&'static str, &str); 14] = [
        (header::EVENT_ID, "not-a-uuid"),
        (header::EVENT_ID, "01900000-0000-7000-8000-00000000000A"),
        (header::MSG_ID, "00000000-0000-0000-0000-000000000001"),
        (header::SCHEMA_VERSION, "-1"),
        (header::SCHEMA_VERSION, "+2"),
        (header::VERSION, "03"),
        (header::GLOBAL_POSITION, "18446744073709551616"),
        (header::RECORDED_AT, "2026-01-31T11:00:00Z"),
        (header::CODEC, "xml"),
        (header::AGGREGATE_ID, "a b"),
        (header::EVENT_TYPE, "%4"),
        (header::CORRELATION_ID, "x"),
        (header::METADATA, "[1,2]"),
        (header::METADATA, "{}"),
    ];
    for (name, value) in cases {
        assert_eq!(
            invalid_header(&with_header(name, value)),
            (name, value.to_owned()),
            "{name} = {value}"
        );
    }
}

#[test]
fn a_repeated_header_is_refused() {
    let mut headers = headers_without(header::GLOBAL_POSITION);
    headers.append(header_name(header::GLOBAL_POSITION), "42");
    headers.append(header_name(header::GLOBAL_POSITION), "43");
    assert_eq!(invalid_header(&headers).0, header::GLOBAL_POSITION);
}

#[test]
fn metadata_keys_are_sorted_in_the_header() {
    let mut extra = BTreeMap::new();
    extra.insert("b", "2");
    extra.insert("a", "1");
    let mut event = sample();
    let mut metadata = Metadata::default();
    for (key, value) in extra {
        metadata.extra.insert(key.into(), value.into());
    }
    event.metadata = metadata.into();
    let headers = Subjects::new("es").unwrap().envelope(&event).headers;
    assert_eq!(
        headers
            .get(header::METADATA)
            .map(async_nats::HeaderValue::as_str),
        Some(r#"{"a":"1","b":"2"}"#)
    );
}

#[test]
fn prefixes_are_checked() {
    for bad in [
        "", ".es", "es.", "es..x", "es.*", "es.>", "e s", "es.%", "é",
    ] {
        assert!(Subjects::new(bad).is_err(), "{bad:?} was accepted");
    }
    assert_eq!(Subjects::new("es.events").unwrap(), Subjects::default());
    assert_eq!(Subjects::new("p").unwrap().stream_of("q.order.7"), None);
    assert_eq!(Subjects::new("p").unwrap().stream_of("p.order"), None);
}
