//! Derived events and aggregates, called: dispatch, encode/decode through both codecs, upcast
//! chains, and the typed errors for unknown or corrupt payloads.

use es_core::{Aggregate, AggregateRoot, Apply, CodecId, DecodeError, Event, EventSet};
use serde::{Deserialize, Serialize};

const CODECS: [CodecId; 2] = [CodecId::Json, CodecId::Postcard];

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderCreated")]
struct OrderCreated {
    customer: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct ItemAdded {
    product: String,
    quantity: u32,
    unit_price: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderShipped")]
struct Shipped;

/// Three schema versions of one event: V1 had a single `amount`, V2 split it into minor units
/// and a currency, V3 added a reference.
mod payment {
    use super::{Deserialize, Event, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "PaymentProcessed")]
    pub struct PaymentProcessedV1 {
        pub amount: u64,
    }

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "PaymentProcessed", version = 2, upcast_from = PaymentProcessedV1)]
    pub struct PaymentProcessedV2 {
        pub amount_minor: u64,
        pub currency: String,
    }

    impl From<PaymentProcessedV1> for PaymentProcessedV2 {
        fn from(v1: PaymentProcessedV1) -> Self {
            PaymentProcessedV2 {
                amount_minor: v1.amount * 100,
                currency: "EUR".to_owned(),
            }
        }
    }

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "PaymentProcessed", version = 3, upcast_from = PaymentProcessedV2)]
    pub struct PaymentProcessed {
        pub amount_minor: u64,
        pub currency: String,
        pub reference: Option<String>,
    }

    impl From<PaymentProcessedV2> for PaymentProcessed {
        fn from(v2: PaymentProcessedV2) -> Self {
            PaymentProcessed {
                amount_minor: v2.amount_minor,
                currency: v2.currency,
                reference: None,
            }
        }
    }
}

use payment::{PaymentProcessed, PaymentProcessedV1, PaymentProcessedV2};

#[derive(Aggregate, Default, Serialize, Deserialize, Debug, PartialEq)]
#[aggregate(
    name = "order",
    events(OrderCreated, ItemAdded, payment::PaymentProcessed, Shipped),
    snapshot_every = 50
)]
struct Order {
    customer: String,
    lines: Vec<(String, u32)>,
    total: u64,
    paid: u64,
    shipped: bool,
}

impl Apply<OrderCreated> for Order {
    fn apply(&mut self, event: &OrderCreated) {
        self.customer.clone_from(&event.customer);
    }
}

impl Apply<ItemAdded> for Order {
    fn apply(&mut self, event: &ItemAdded) {
        self.lines.push((event.product.clone(), event.quantity));
        self.total += u64::from(event.quantity) * event.unit_price;
    }
}

impl Apply<PaymentProcessed> for Order {
    fn apply(&mut self, event: &PaymentProcessed) {
        self.paid += event.amount_minor;
    }
}

impl Apply<Shipped> for Order {
    fn apply(&mut self, _: &Shipped) {
        self.shipped = true;
    }
}

/// Defaults everywhere: name `cart_session`, enum `CartSessionEvent`, no snapshots.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(events(ItemAdded))]
struct CartSession(u32);

impl Apply<ItemAdded> for CartSession {
    fn apply(&mut self, event: &ItemAdded) {
        self.0 += event.quantity;
    }
}

fn sample_events() -> Vec<OrderEvent> {
    vec![
        OrderCreated {
            customer: "ada".to_owned(),
        }
        .into(),
        ItemAdded {
            product: "tea".to_owned(),
            quantity: 3,
            unit_price: 450,
        }
        .into(),
        PaymentProcessed {
            amount_minor: 1350,
            currency: "EUR".to_owned(),
            reference: Some("r-1".to_owned()),
        }
        .into(),
        Shipped.into(),
    ]
}

#[test]
fn event_constants_come_from_the_attribute_or_the_type() {
    assert_eq!(OrderCreated::NAME, "OrderCreated");
    assert_eq!(OrderCreated::SCHEMA_VERSION, 1);
    assert_eq!(ItemAdded::NAME, "ItemAdded");
    assert_eq!(Shipped::NAME, "OrderShipped");
    assert_eq!(PaymentProcessedV1::SCHEMA_VERSION, 1);
    assert_eq!(PaymentProcessedV2::SCHEMA_VERSION, 2);
    assert_eq!(PaymentProcessed::NAME, "PaymentProcessed");
    assert_eq!(PaymentProcessed::SCHEMA_VERSION, 3);
}

#[test]
fn aggregate_constants_come_from_the_attribute_or_defaults() {
    assert_eq!(Order::TYPE, "order");
    assert_eq!(Order::SNAPSHOT_EVERY, Some(50));
    assert_eq!(CartSession::TYPE, "cart_session");
    assert_eq!(CartSession::SNAPSHOT_EVERY, None);
    assert_ne!(Order::SCHEMA_FINGERPRINT, CartSession::SCHEMA_FINGERPRINT);
    assert_eq!(
        OrderEvent::EVENT_TYPES,
        [
            "OrderCreated",
            "ItemAdded",
            "PaymentProcessed",
            "OrderShipped"
        ]
    );
    assert_eq!(CartSessionEvent::EVENT_TYPES, ["ItemAdded"]);
}

#[test]
fn the_enum_reports_each_event_type_and_version() {
    let events = sample_events();
    let described: Vec<_> = events
        .iter()
        .map(|event| (event.event_type(), event.schema_version()))
        .collect();
    assert_eq!(
        described,
        [
            ("OrderCreated", 1),
            ("ItemAdded", 1),
            ("PaymentProcessed", 3),
            ("OrderShipped", 1)
        ]
    );
}

#[test]
fn apply_event_dispatches_to_each_apply_impl() {
    let mut root = AggregateRoot::<Order>::new("o-1");
    for event in sample_events() {
        root.record(event);
    }
    assert_eq!(
        root.state(),
        &Order {
            customer: "ada".to_owned(),
            lines: vec![("tea".to_owned(), 3)],
            total: 1350,
            paid: 1350,
            shipped: true,
        }
    );
    assert_eq!(root.pending_events(), sample_events().as_slice());
}

#[test]
fn every_event_round_trips_through_both_codecs() {
    for codec in CODECS {
        for event in sample_events() {
            let payload = event.encode(codec).unwrap();
            let decoded =
                OrderEvent::decode(event.event_type(), event.schema_version(), codec, &payload)
                    .unwrap();
            assert_eq!(decoded, event, "{codec:?}");
        }
    }
}

#[test]
fn the_payload_is_the_event_struct_alone() {
    let event = sample_events().swap_remove(1);
    let OrderEvent::ItemAdded(inner) = &event else {
        panic!("sample event 1 is ItemAdded, got {event:?}");
    };
    for codec in CODECS {
        assert_eq!(
            event.encode(codec).unwrap(),
            codec.encode(inner).unwrap(),
            "{codec:?}"
        );
    }
    assert_eq!(
        event.encode(CodecId::Json).unwrap(),
        br#"{"product":"tea","quantity":3,"unit_price":450}"#
    );
}

#[test]
fn old_versions_upcast_through_the_chain_in_both_codecs() {
    for codec in CODECS {
        let v1 = codec.encode(&PaymentProcessedV1 { amount: 7 }).unwrap();
        let v2 = codec
            .encode(&PaymentProcessedV2 {
                amount_minor: 900,
                currency: "GBP".to_owned(),
            })
            .unwrap();

        assert_eq!(
            PaymentProcessed::decode_versioned(1, codec, &v1).unwrap(),
            PaymentProcessed {
                amount_minor: 700,
                currency: "EUR".to_owned(),
                reference: None,
            }
        );
        assert_eq!(
            OrderEvent::decode("PaymentProcessed", 2, codec, &v2).unwrap(),
            OrderEvent::PaymentProcessed(PaymentProcessed {
                amount_minor: 900,
                currency: "GBP".to_owned(),
                reference: None,
            })
        );
        // A middle link decodes its own and older versions too.
        assert_eq!(
            PaymentProcessedV2::decode_versioned(1, codec, &v1).unwrap(),
            PaymentProcessedV2 {
                amount_minor: 700,
                currency: "EUR".to_owned(),
            }
        );
    }
}

#[test]
fn an_unknown_event_type_is_a_typed_error() {
    let error = OrderEvent::decode("OrderTeleported", 1, CodecId::Json, b"{}").unwrap_err();
    assert!(
        matches!(&error, DecodeError::UnknownEventType { event_type } if event_type == "OrderTeleported"),
        "{error:?}"
    );
}

#[test]
fn an_unknown_schema_version_is_a_typed_error_naming_the_current_version() {
    for (version, codec) in [
        (0, CodecId::Json),
        (4, CodecId::Postcard),
        (u32::MAX, CodecId::Json),
    ] {
        let error = OrderEvent::decode("PaymentProcessed", version, codec, b"").unwrap_err();
        assert!(
            matches!(
                &error,
                DecodeError::UnknownSchemaVersion { event_type, schema_version, current: 3 }
                    if event_type == "PaymentProcessed" && *schema_version == version
            ),
            "{error:?}"
        );
    }
    let error = OrderEvent::decode("OrderCreated", 2, CodecId::Json, b"{}").unwrap_err();
    assert!(
        matches!(
            &error,
            DecodeError::UnknownSchemaVersion {
                schema_version: 2,
                current: 1,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn corrupt_payloads_are_typed_errors_at_the_stored_version() {
    let cases: [(&str, u32, CodecId, &[u8]); 6] = [
        ("OrderCreated", 1, CodecId::Json, b"{\"customer\":"),
        ("OrderCreated", 1, CodecId::Postcard, &[0x05, b'a']),
        ("ItemAdded", 1, CodecId::Json, b"[1, 2]"),
        ("ItemAdded", 1, CodecId::Postcard, &[]),
        ("PaymentProcessed", 1, CodecId::Json, b"{\"amount\":-1}"),
        ("PaymentProcessed", 2, CodecId::Postcard, &[0xff, 0xff]),
    ];
    for (event_type, version, codec, payload) in cases {
        let error = OrderEvent::decode(event_type, version, codec, payload).unwrap_err();
        assert!(
            matches!(
                &error,
                DecodeError::Payload { event_type: stored, schema_version, .. }
                    if stored == event_type && *schema_version == version
            ),
            "{event_type} v{version} {codec:?}: {error:?}"
        );
    }
}

#[test]
fn postcard_rejects_trailing_bytes() {
    let mut payload = CodecId::Postcard
        .encode(&OrderCreated {
            customer: "ada".to_owned(),
        })
        .unwrap();
    payload.push(0);
    let error = OrderEvent::decode("OrderCreated", 1, CodecId::Postcard, &payload).unwrap_err();
    assert!(matches!(error, DecodeError::Payload { .. }), "{error:?}");
}

/// `event_enum` names the generated enum; it has the aggregate's visibility.
mod named_enum {
    use super::{Aggregate, Apply, Deserialize, ItemAdded, Serialize};

    #[derive(Aggregate, Default, Serialize, Deserialize)]
    #[aggregate(name = "basket", events(ItemAdded), event_enum = BasketChange)]
    pub(crate) struct Basket {
        pub(crate) items: u32,
    }

    impl Apply<ItemAdded> for Basket {
        fn apply(&mut self, event: &ItemAdded) {
            self.items += event.quantity;
        }
    }
}

#[test]
fn event_enum_names_the_generated_enum() {
    let mut basket = named_enum::Basket::default();
    let change = named_enum::BasketChange::from(ItemAdded {
        product: "tea".to_owned(),
        quantity: 2,
        unit_price: 1,
    });
    basket.apply_event(&change);
    assert_eq!(basket.items, 2);
    assert_eq!(named_enum::Basket::TYPE, "basket");
}

/// The same aggregate written several ways; the schema fingerprint must change exactly when
/// what a snapshot's bytes depend on changes.
mod fingerprints {
    /// Declares `Account` listing `Opened` from `$events`, with the given fields.
    macro_rules! account {
        ($events:ident, $(#[$attr:meta])* { $($fields:tt)* }) => {
            use super::super::{Aggregate, Apply, Deserialize, Serialize};
            use super::$events::Opened;

            #[derive(Aggregate, Default, Serialize, Deserialize)]
            #[aggregate(name = "account", events(Opened))]
            $(#[$attr])*
            pub struct Account { $($fields)* }

            impl Apply<Opened> for Account {
                fn apply(&mut self, _: &Opened) {}
            }
        };
    }

    pub mod v1 {
        use super::super::{Deserialize, Event, Serialize};

        #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
        pub struct Opened;
    }

    pub mod v2 {
        use super::super::{Deserialize, Event, Serialize};

        #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(version = 2)]
        pub struct Opened;
    }

    pub mod base {
        account!(v1, { pub balance: u64 });
    }
    pub mod documented {
        account!(v1, #[doc = "Docs do not change the schema."] {
            /// Nor do field docs.
            pub balance: u64
        });
    }
    pub mod retyped {
        account!(v1, { pub balance: i64 });
    }
    pub mod renamed_field {
        account!(v1, { pub total: u64 });
    }
    pub mod serde_renamed {
        account!(v1, { #[serde(rename = "b")] pub balance: u64 });
    }
    pub mod newer_event {
        account!(v2, { pub balance: u64 });
    }
    pub mod first_snapshot_version {
        account!(v1, #[aggregate(snapshot_version = 1)] { pub balance: u64 });
    }
    pub mod second_snapshot_version {
        account!(v1, #[aggregate(snapshot_version = 2)] { pub balance: u64 });
    }
    pub mod third_snapshot_version {
        account!(v1, #[aggregate(snapshot_version = 3)] { pub balance: u64 });
    }
}

#[test]
fn snapshot_version_is_part_of_both_fingerprints_from_the_second_version() {
    use fingerprints::{
        base, first_snapshot_version, second_snapshot_version, third_snapshot_version,
    };
    // Version 1 is what an aggregate without the key has: adding it changes nothing.
    assert_eq!(
        first_snapshot_version::Account::SCHEMA_FINGERPRINT,
        base::Account::SCHEMA_FINGERPRINT
    );
    assert_eq!(
        first_snapshot_version::Account::snapshot_fingerprint(),
        base::Account::snapshot_fingerprint()
    );
    let versions = [
        base::Account::snapshot_fingerprint().unwrap(),
        second_snapshot_version::Account::snapshot_fingerprint().unwrap(),
        third_snapshot_version::Account::snapshot_fingerprint().unwrap(),
    ];
    assert_ne!(versions[0], versions[1]);
    assert_ne!(versions[0], versions[2]);
    assert_ne!(versions[1], versions[2]);
}

#[test]
fn schema_fingerprint_follows_fields_serde_attributes_and_event_versions() {
    use fingerprints::{base, documented, newer_event, renamed_field, retyped, serde_renamed};
    let base = base::Account::SCHEMA_FINGERPRINT;
    assert_eq!(documented::Account::SCHEMA_FINGERPRINT, base);
    let changed = [
        retyped::Account::SCHEMA_FINGERPRINT,
        renamed_field::Account::SCHEMA_FINGERPRINT,
        serde_renamed::Account::SCHEMA_FINGERPRINT,
        newer_event::Account::SCHEMA_FINGERPRINT,
    ];
    for (index, fingerprint) in changed.iter().enumerate() {
        assert_ne!(*fingerprint, base, "variant {index}");
        for other in &changed[index + 1..] {
            assert_ne!(fingerprint, other);
        }
    }
}
