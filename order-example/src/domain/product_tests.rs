//! Every stock rule of the product, as given (past events) / when (a command) / then (the
//! events recorded, or the rule broken).

use es_core::testing::AggregateFixture;

use super::product::*;
use crate::values::{OrderId, ProductId};

fn mug() -> ProductId {
    ProductId::new("mug")
}

fn order(id: &str) -> OrderId {
    OrderId::new(id)
}

fn received(quantity: u64) -> ProductEvent {
    StockReceived { quantity }.into()
}

fn reserved(by: &str, quantity: u64) -> ProductEvent {
    StockReserved {
        order_id: order(by),
        quantity,
    }
    .into()
}

fn released(by: &str, quantity: u64) -> ProductEvent {
    StockReleased {
        order_id: order(by),
        quantity,
    }
    .into()
}

fn shipped(by: &str, quantity: u64) -> ProductEvent {
    StockShipped {
        order_id: order(by),
        quantity,
    }
    .into()
}

#[test]
fn stock_is_received() {
    let product = AggregateFixture::<Product>::given(vec![received(3)])
        .when(|p| p.receive(&mug(), 4))
        .then(vec![received(4)]);
    assert_eq!((product.on_hand(), product.available()), (7, 7));
}

#[test]
fn receiving_nothing_or_past_the_count_is_refused() {
    AggregateFixture::<Product>::given_none()
        .when(|p| p.receive(&mug(), 0))
        .then_error(StockError::ZeroQuantity);
    AggregateFixture::<Product>::given(vec![received(u64::MAX)])
        .when(|p| p.receive(&mug(), 1))
        .then_error(StockError::Overflow {
            product: mug(),
            quantity: 1,
        });
}

#[test]
fn an_order_reserves_what_is_available() {
    let product = AggregateFixture::<Product>::given(vec![received(5), reserved("o1", 2)])
        .when(|p| p.reserve(&mug(), &order("o2"), 3))
        .then(vec![reserved("o2", 3)]);
    assert_eq!(
        (product.on_hand(), product.reserved(), product.available()),
        (5, 5, 0)
    );
    assert_eq!(product.reserved_by(&order("o2")), 3);
}

#[test]
fn reserving_more_than_is_available_is_out_of_stock() {
    AggregateFixture::<Product>::given(vec![received(5), reserved("o1", 4)])
        .when(|p| p.reserve(&mug(), &order("o2"), 2))
        .then_error(StockError::OutOfStock {
            product: mug(),
            available: 1,
            requested: 2,
        });
    // A product never stocked has nothing to give.
    AggregateFixture::<Product>::given_none()
        .when(|p| p.reserve(&mug(), &order("o1"), 1))
        .then_error_matches(|error| matches!(error, StockError::OutOfStock { available: 0, .. }));
    AggregateFixture::<Product>::given(vec![received(5)])
        .when(|p| p.reserve(&mug(), &order("o1"), 0))
        .then_error(StockError::ZeroQuantity);
}

#[test]
fn released_units_are_available_again() {
    let product = AggregateFixture::<Product>::given(vec![received(5), reserved("o1", 4)])
        .when(|p| p.release(&mug(), &order("o1"), 4))
        .then(vec![released("o1", 4)]);
    assert_eq!((product.on_hand(), product.available()), (5, 5));
    assert_eq!(product.reserved_by(&order("o1")), 0);
}

#[test]
fn shipped_units_leave_the_shelf() {
    let product = AggregateFixture::<Product>::given(vec![received(5), reserved("o1", 2)])
        .when(|p| p.ship(&mug(), &order("o1"), 2))
        .then(vec![shipped("o1", 2)]);
    assert_eq!(
        (product.on_hand(), product.reserved(), product.available()),
        (3, 0, 3)
    );
}

#[test]
fn an_order_can_only_release_or_ship_what_it_holds() {
    for command in [Product::release, Product::ship] {
        AggregateFixture::<Product>::given(vec![received(5), reserved("o1", 2)])
            .when(|p| command(p, &mug(), &order("o1"), 3))
            .then_error(StockError::NotReserved {
                product: mug(),
                order: order("o1"),
                held: 2,
                requested: 3,
            });
        AggregateFixture::<Product>::given(vec![received(5), reserved("o1", 2)])
            .when(|p| command(p, &mug(), &order("o2"), 1))
            .then_error_matches(|error| matches!(error, StockError::NotReserved { held: 0, .. }));
    }
}
