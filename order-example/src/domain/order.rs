//! The `Order` aggregate: its state, and how each event changes it.
//!
//! Applying never fails and never checks anything: an event is a fact that already happened.
//! The checks live in the commands ([`super::commands`]).

use std::collections::BTreeMap;
use std::fmt;

use es_core::{Aggregate, Apply};
use serde::{Deserialize, Serialize};

use super::events::{
    OrderCancelled, OrderCreated, OrderItemAdded, OrderItemRemoved, OrderShipped, PaymentProcessed,
};
use crate::values::{CustomerId, Money, ProductId};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// No event yet: the order does not exist.
    #[default]
    NotCreated,
    /// Created; items can be added and removed.
    Open,
    /// Paid; it can ship or be cancelled, its items are fixed.
    Paid,
    /// Shipped: final.
    Shipped,
    /// Cancelled: final.
    Cancelled,
}

impl OrderStatus {
    /// Whether the order can no longer change (shipped or cancelled).
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, OrderStatus::Shipped | OrderStatus::Cancelled)
    }

    /// The status in lower case, as shown to people.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::NotCreated => "not created",
            OrderStatus::Open => "open",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One product's line in an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit.
    pub unit_price: Money,
}

impl OrderLine {
    /// Quantity times unit price, or `None` if it does not fit.
    #[must_use]
    pub const fn checked_total(&self) -> Option<Money> {
        self.unit_price.checked_times(self.quantity)
    }
}

/// An order: a consistency boundary whose state is rebuilt from its six kinds of events.
///
/// `#[derive(Aggregate)]` generates the [`OrderEvent`] enum, with a `From` impl per event, and
/// dispatches each variant to the matching [`Apply`] impl below.
#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(
    name = "order",
    events(
        OrderCreated,
        OrderItemAdded,
        OrderItemRemoved,
        PaymentProcessed,
        OrderShipped,
        OrderCancelled
    ),
    snapshot_every = 100,
    event_enum = OrderEvent
)]
pub struct Order {
    pub(super) status: OrderStatus,
    pub(super) customer_id: Option<CustomerId>,
    pub(super) lines: BTreeMap<ProductId, OrderLine>,
    pub(super) paid: Option<Money>,
    pub(super) tracking_number: Option<String>,
    pub(super) cancellation_reason: Option<String>,
}

impl Order {
    /// Where the order is in its life.
    #[must_use]
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// The customer, once the order is created.
    #[must_use]
    pub fn customer_id(&self) -> Option<&CustomerId> {
        self.customer_id.as_ref()
    }

    /// The lines, by product.
    #[must_use]
    pub fn lines(&self) -> &BTreeMap<ProductId, OrderLine> {
        &self.lines
    }

    /// The number of units over all lines.
    #[must_use]
    pub fn item_count(&self) -> u64 {
        self.lines
            .values()
            .map(|line| u64::from(line.quantity))
            .sum()
    }

    /// The sum of the lines.
    ///
    /// Commands refuse any line that would make the total overflow, so for histories they
    /// wrote this is exact; a history written by another program saturates at the maximum.
    #[must_use]
    pub fn total(&self) -> Money {
        self.checked_total()
            .unwrap_or(Money::from_minor_units(u64::MAX))
    }

    /// The sum of the lines, or `None` if it does not fit.
    pub(super) fn checked_total(&self) -> Option<Money> {
        self.lines.values().try_fold(Money::ZERO, |sum, line| {
            sum.checked_add(line.checked_total()?)
        })
    }

    /// The amount paid, once paid.
    #[must_use]
    pub fn paid(&self) -> Option<Money> {
        self.paid
    }

    /// The tracking number, once shipped.
    #[must_use]
    pub fn tracking_number(&self) -> Option<&str> {
        self.tracking_number.as_deref()
    }

    /// Why the order was cancelled, once cancelled.
    #[must_use]
    pub fn cancellation_reason(&self) -> Option<&str> {
        self.cancellation_reason.as_deref()
    }
}

impl Apply<OrderCreated> for Order {
    fn apply(&mut self, event: &OrderCreated) {
        self.status = OrderStatus::Open;
        self.customer_id = Some(event.customer_id.clone());
    }
}

impl Apply<OrderItemAdded> for Order {
    fn apply(&mut self, event: &OrderItemAdded) {
        self.lines
            .entry(event.product_id.clone())
            .and_modify(|line| line.quantity = line.quantity.saturating_add(event.quantity))
            .or_insert(OrderLine {
                quantity: event.quantity,
                unit_price: event.unit_price,
            });
    }
}

impl Apply<OrderItemRemoved> for Order {
    fn apply(&mut self, event: &OrderItemRemoved) {
        self.lines.remove(&event.product_id);
    }
}

impl Apply<PaymentProcessed> for Order {
    fn apply(&mut self, event: &PaymentProcessed) {
        self.status = OrderStatus::Paid;
        self.paid = Some(event.amount);
    }
}

impl Apply<OrderShipped> for Order {
    fn apply(&mut self, event: &OrderShipped) {
        self.status = OrderStatus::Shipped;
        self.tracking_number = Some(event.tracking_number.clone());
    }
}

impl Apply<OrderCancelled> for Order {
    fn apply(&mut self, event: &OrderCancelled) {
        self.status = OrderStatus::Cancelled;
        self.cancellation_reason = Some(event.reason.clone());
    }
}

#[cfg(test)]
mod tests {
    use es_core::Aggregate;

    use super::Order;

    #[test]
    fn the_order_state_traces_so_its_snapshots_are_checked_against_its_whole_shape() {
        let fingerprint = Order::snapshot_fingerprint().expect("every type in `Order` traces");
        assert_ne!(fingerprint, Order::SCHEMA_FINGERPRINT);
    }
}
