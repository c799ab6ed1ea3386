//! Every business rule of the order, as given (past events) / when (a command) / then (the
//! events recorded, or the rule broken).

use es_core::{Aggregate, CodecId, EventSet};
use proptest::prelude::*;

use super::*;
use crate::values::{CustomerId, Money, ProductId};

fn given(history: &[OrderEvent]) -> Order {
    let mut order = Order::default();
    for event in history {
        order.apply_event(event);
    }
    order
}

fn created() -> OrderEvent {
    OrderCreated {
        customer_id: CustomerId::new("alice"),
    }
    .into()
}

fn added(product: &str, quantity: u32, cents: u64) -> OrderEvent {
    OrderItemAdded {
        product_id: ProductId::new(product),
        quantity,
        unit_price: Money::from_minor_units(cents),
    }
    .into()
}

fn paid(cents: u64) -> OrderEvent {
    PaymentProcessed {
        amount: Money::from_minor_units(cents),
    }
    .into()
}

fn shipped() -> OrderEvent {
    OrderShipped {
        tracking_number: "TRACK-1".to_owned(),
    }
    .into()
}

fn cancelled() -> OrderEvent {
    OrderCancelled {
        reason: "changed my mind".to_owned(),
    }
    .into()
}

/// An open order with 2 × mug at 12.50 and 1 × pot at 30.00: total 55.00.
fn open_order() -> Vec<OrderEvent> {
    vec![created(), added("mug", 2, 1_250), added("pot", 1, 3_000)]
}

fn paid_order() -> Vec<OrderEvent> {
    let mut history = open_order();
    history.push(paid(5_500));
    history
}

fn shipped_order() -> Vec<OrderEvent> {
    let mut history = paid_order();
    history.push(shipped());
    history
}

fn cancelled_order() -> Vec<OrderEvent> {
    let mut history = open_order();
    history.push(cancelled());
    history
}

fn mug(quantity: u32) -> (ProductId, u32, Money) {
    (
        ProductId::new("mug"),
        quantity,
        Money::from_minor_units(1_250),
    )
}

fn every_command() -> Vec<OrderCommand> {
    let (product_id, quantity, unit_price) = mug(1);
    vec![
        OrderCommand::Create {
            customer_id: CustomerId::new("bob"),
        },
        OrderCommand::AddItem {
            product_id: product_id.clone(),
            quantity,
            unit_price,
        },
        OrderCommand::RemoveItem { product_id },
        OrderCommand::Pay {
            amount: Money::from_minor_units(5_500),
        },
        OrderCommand::Ship {
            tracking_number: "T".to_owned(),
        },
        OrderCommand::Cancel {
            reason: "r".to_owned(),
        },
    ]
}

// --- creating ----------------------------------------------------------------------------------

#[test]
fn a_new_order_is_created_for_its_customer() {
    let events = given(&[]).create(CustomerId::new("alice")).unwrap();
    assert_eq!(events, vec![created()]);
    assert_eq!(
        given(&events).customer_id(),
        Some(&CustomerId::new("alice"))
    );
}

#[test]
fn an_order_is_created_once() {
    assert_eq!(
        given(&[created()]).create(CustomerId::new("bob")),
        Err(OrderError::DuplicateOrder)
    );
}

#[test]
fn nothing_but_create_works_on_an_order_that_does_not_exist() {
    for command in every_command().into_iter().skip(1) {
        assert_eq!(
            command.decide(&given(&[])),
            Err(OrderError::MissingOrder),
            "{command:?}"
        );
    }
}

// --- items -------------------------------------------------------------------------------------

#[test]
fn items_are_added_to_an_open_order() {
    let (product, quantity, price) = mug(3);
    let events = given(&[created()])
        .add_item(product, quantity, price)
        .unwrap();
    assert_eq!(events, vec![added("mug", 3, 1_250)]);
}

#[test]
fn adding_zero_units_is_refused() {
    let (product, _, price) = mug(0);
    assert_eq!(
        given(&[created()]).add_item(product, 0, price),
        Err(OrderError::ZeroQuantity)
    );
}

#[test]
fn adding_a_product_again_raises_its_quantity_at_the_same_price() {
    let (product, quantity, price) = mug(5);
    let history = open_order();
    let events = given(&history).add_item(product, quantity, price).unwrap();
    let mut after = history.clone();
    after.extend(events);
    let order = given(&after);
    assert_eq!(order.lines()[&ProductId::new("mug")].quantity, 7);
    assert_eq!(order.item_count(), 8);
    assert_eq!(order.total(), Money::from_minor_units(7 * 1_250 + 3_000));
}

#[test]
fn a_product_keeps_its_unit_price_within_an_order() {
    assert_eq!(
        given(&open_order()).add_item(ProductId::new("mug"), 1, Money::from_minor_units(999)),
        Err(OrderError::PriceChange {
            product: ProductId::new("mug"),
            current: Money::from_minor_units(1_250),
            requested: Money::from_minor_units(999),
        })
    );
}

#[test]
fn a_total_out_of_range_is_refused_not_wrapped() {
    let order = given(&open_order());
    assert_eq!(
        order.add_item(
            ProductId::new("gold"),
            u32::MAX,
            Money::from_minor_units(u64::MAX / 2)
        ),
        Err(OrderError::Overflow)
    );
    assert_eq!(
        order.add_item(
            ProductId::new("mug"),
            u32::MAX,
            Money::from_minor_units(1_250)
        ),
        Err(OrderError::Overflow)
    );
}

#[test]
fn an_item_in_the_order_is_removed_with_its_quantity() {
    let history = open_order();
    let events = given(&history).remove_item(ProductId::new("mug")).unwrap();
    assert_eq!(
        events,
        vec![OrderItemRemoved {
            product_id: ProductId::new("mug"),
            quantity: 2,
        }
        .into()]
    );
    let mut after = history;
    after.extend(events);
    assert_eq!(given(&after).total(), Money::from_minor_units(3_000));
}

#[test]
fn removing_an_item_that_is_not_in_the_order_is_refused() {
    assert_eq!(
        given(&open_order()).remove_item(ProductId::new("lamp")),
        Err(OrderError::MissingItem {
            product: ProductId::new("lamp"),
        })
    );
}

#[test]
fn the_items_of_a_paid_order_are_fixed() {
    let (product, quantity, price) = mug(1);
    let order = given(&paid_order());
    assert_eq!(
        order.add_item(product.clone(), quantity, price),
        Err(OrderError::ChangeAfterPayment)
    );
    assert_eq!(
        order.remove_item(product),
        Err(OrderError::ChangeAfterPayment)
    );
}

// --- payment -----------------------------------------------------------------------------------

#[test]
fn paying_exactly_the_total_records_the_payment() {
    let events = given(&open_order())
        .pay(Money::from_minor_units(5_500))
        .unwrap();
    assert_eq!(events, vec![paid(5_500)]);
}

#[test]
fn a_payment_must_equal_the_total() {
    for cents in [0, 5_499, 5_501] {
        assert_eq!(
            given(&open_order()).pay(Money::from_minor_units(cents)),
            Err(OrderError::PaymentMismatch {
                total: Money::from_minor_units(5_500),
                amount: Money::from_minor_units(cents),
            })
        );
    }
}

#[test]
fn an_order_is_paid_once() {
    assert_eq!(
        given(&paid_order()).pay(Money::from_minor_units(5_500)),
        Err(OrderError::DuplicatePayment)
    );
}

#[test]
fn an_empty_order_cannot_be_paid() {
    assert_eq!(
        given(&[created()]).pay(Money::ZERO),
        Err(OrderError::EmptyOrder)
    );
    let emptied = [
        created(),
        added("mug", 1, 1_250),
        OrderItemRemoved {
            product_id: ProductId::new("mug"),
            quantity: 1,
        }
        .into(),
    ];
    assert_eq!(
        given(&emptied).pay(Money::ZERO),
        Err(OrderError::EmptyOrder)
    );
}

// --- shipping and cancelling ---------------------------------------------------------------------

#[test]
fn a_paid_order_ships() {
    assert_eq!(given(&paid_order()).ship("TRACK-1"), Ok(vec![shipped()]));
}

#[test]
fn only_a_paid_order_ships() {
    assert_eq!(
        given(&open_order()).ship("TRACK-1"),
        Err(OrderError::UnpaidShipment)
    );
}

#[test]
fn open_and_paid_orders_can_be_cancelled() {
    assert_eq!(
        given(&open_order()).cancel("changed my mind"),
        Ok(vec![cancelled()])
    );
    assert_eq!(
        given(&paid_order()).cancel("changed my mind"),
        Ok(vec![cancelled()])
    );
}

#[test]
fn a_shipped_order_cannot_be_cancelled() {
    assert_eq!(
        given(&shipped_order()).cancel("too late"),
        Err(OrderError::ClosedOrder {
            status: OrderStatus::Shipped
        })
    );
}

#[test]
fn nothing_changes_a_shipped_or_cancelled_order() {
    for (history, status) in [
        (shipped_order(), OrderStatus::Shipped),
        (cancelled_order(), OrderStatus::Cancelled),
    ] {
        let order = given(&history);
        for command in every_command().into_iter().skip(1) {
            assert_eq!(
                command.decide(&order),
                Err(OrderError::ClosedOrder { status }),
                "{command:?} on a {status} order"
            );
        }
        assert_eq!(
            order.create(CustomerId::new("bob")),
            Err(OrderError::DuplicateOrder)
        );
    }
}

#[test]
fn the_state_follows_the_events() {
    let order = given(&shipped_order());
    assert_eq!(order.status(), OrderStatus::Shipped);
    assert_eq!(order.paid(), Some(Money::from_minor_units(5_500)));
    assert_eq!(order.tracking_number(), Some("TRACK-1"));
    assert_eq!(order.item_count(), 3);
    let order = given(&cancelled_order());
    assert_eq!(order.cancellation_reason(), Some("changed my mind"));
    assert!(order.status().is_final());
}

// --- storage -----------------------------------------------------------------------------------

fn any_event() -> impl Strategy<Value = OrderEvent> {
    let text = "[a-zA-Z0-9 _-]{0,12}";
    prop_oneof![
        text.prop_map(|id| OrderCreated {
            customer_id: CustomerId::new(id)
        }
        .into()),
        (text, any::<u32>(), any::<u64>()).prop_map(|(id, quantity, cents)| OrderItemAdded {
            product_id: ProductId::new(id),
            quantity,
            unit_price: Money::from_minor_units(cents),
        }
        .into()),
        (text, any::<u32>()).prop_map(|(id, quantity)| OrderItemRemoved {
            product_id: ProductId::new(id),
            quantity,
        }
        .into()),
        any::<u64>().prop_map(|cents| PaymentProcessed {
            amount: Money::from_minor_units(cents)
        }
        .into()),
        text.prop_map(|tracking_number| OrderShipped { tracking_number }.into()),
        text.prop_map(|reason| OrderCancelled { reason }.into()),
    ]
}

proptest! {
    #[test]
    fn every_event_round_trips_through_both_codecs(event in any_event()) {
        for codec in [CodecId::Json, CodecId::Postcard] {
            let payload = event.encode(codec).unwrap();
            let decoded =
                OrderEvent::decode(event.event_type(), event.schema_version(), codec, &payload)
                    .unwrap();
            prop_assert_eq!(&decoded, &event);
        }
    }

    #[test]
    fn the_order_state_round_trips_through_both_codecs(
        history in proptest::collection::vec(any_event(), 0..12)
    ) {
        let order = given(&history);
        for codec in [CodecId::Json, CodecId::Postcard] {
            let bytes = codec.encode(&order).unwrap();
            prop_assert_eq!(&codec.decode::<Order>(&bytes).unwrap(), &order);
        }
    }
}

#[test]
fn the_aggregate_is_declared_as_designed() {
    assert_eq!(Order::TYPE, "order");
    assert_eq!(Order::SNAPSHOT_EVERY, Some(100));
    assert_eq!(
        OrderEvent::EVENT_TYPES,
        [
            "OrderCreated",
            "OrderItemAdded",
            "OrderItemRemoved",
            "PaymentProcessed",
            "OrderShipped",
            "OrderCancelled"
        ]
    );
}
