//! Fixed, realistic samples of every Order event and of a recorded envelope, shared by the
//! codec benchmark (`benches/codecs.rs`) and the encoded-size table (`tests/encoded_sizes.rs`),
//! so the sizes in `BENCHMARKS.md` are those of the values the benchmark times.
//!
//! The values follow the formats of `order_example::load` (ids like `sku-007`,
//! `customer-0042`, tracking numbers like `TRK0012345678`). Nothing here is random and nothing
//! depends on the clock: every size is exact and reproducible.

use es_core::{
    CodecId, EventSet, GlobalPosition, Metadata, RecordedEvent, StreamId, Timestamp, Version,
};
use order_example::{
    CustomerId, Money, OrderCancelled, OrderCreated, OrderEvent, OrderItemAdded, OrderItemRemoved,
    OrderShipped, PaymentProcessed, ProductId,
};
use uuid::Uuid;

/// One event of each of the six Order event types, in the order the aggregate lists them.
pub fn order_events() -> Vec<OrderEvent> {
    vec![
        OrderCreated {
            customer_id: CustomerId::new("customer-0042"),
        }
        .into(),
        OrderItemAdded {
            product_id: ProductId::new("sku-007"),
            quantity: 3,
            unit_price: Money::from_minor_units(4_999),
        }
        .into(),
        OrderItemRemoved {
            product_id: ProductId::new("sku-007"),
            quantity: 3,
        }
        .into(),
        PaymentProcessed {
            amount: Money::from_minor_units(14_997),
        }
        .into(),
        OrderShipped {
            tracking_number: "TRK0012345678".to_owned(),
        }
        .into(),
        OrderCancelled {
            reason: "customer changed their mind".to_owned(),
        }
        .into(),
    ]
}

/// `event` as a store returns it: its payload encoded with `codec`, at version 3 of order
/// `order-0000042`, global position 1,234,567, recorded on 2026-01-15 at 09:30:00.123456 UTC,
/// with a correlation id, a causation id and one free key/value (`user = alice`).
pub fn envelope(event: &OrderEvent, codec: CodecId) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::from_u128(0x0194_6a2b_3c4d_7e5f_8a9b_0c1d_2e3f_4a5b),
        stream: StreamId::new("order", "order-0000042"),
        version: Version(3),
        global_position: GlobalPosition(1_234_567),
        recorded_at: Timestamp::from_micros(1_768_469_400_123_456),
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        codec,
        metadata: Metadata::default()
            .with_correlation_id(Uuid::from_u128(0x0194_6a2b_3c40_7000_8000_0000_0000_0001))
            .with_causation_id(Uuid::from_u128(0x0194_6a2b_3c40_7000_8000_0000_0000_0002))
            .with("user", "alice")
            .into(),
        payload: event
            .encode(codec)
            .expect("every sample event encodes in both codecs")
            .into(),
    }
}
