//! `OrderSummaries`: one denormalized row per order, for quick lists and lookups.

use std::collections::{BTreeMap, HashMap};

use es_core::{Projection, RecordedEvent, Timestamp, Version};
use serde::{Deserialize, Serialize};

use super::{event_type, is_order_event, ReadModelError};
use crate::domain::{OrderEvent, OrderLine, OrderStatus};
use crate::values::{CustomerId, Money, OrderId, ProductId};

/// Everything a list or detail page shows about one order, without loading the aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    /// The order.
    pub order_id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Where the order is in its life.
    pub status: OrderStatus,
    /// The lines, by product.
    pub lines: BTreeMap<ProductId, OrderLine>,
    /// Units over all lines.
    pub item_count: u64,
    /// The sum of the lines.
    pub total: Money,
    /// The amount paid, once paid.
    pub paid: Option<Money>,
    /// When the order was created.
    pub created_at: Timestamp,
    /// When its last event was recorded.
    pub updated_at: Timestamp,
    /// The version of its last event.
    pub version: Version,
}

impl OrderSummary {
    /// Applies an event of the order other than its creation (the in-memory and the table
    /// read models share this rule).
    pub(super) fn apply_change(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::OrderCreated(_) => {}
            OrderEvent::OrderItemAdded(added) => {
                self.lines
                    .entry(added.product_id)
                    .and_modify(|line| line.quantity = line.quantity.saturating_add(added.quantity))
                    .or_insert(OrderLine {
                        quantity: added.quantity,
                        unit_price: added.unit_price,
                    });
                self.recompute();
            }
            OrderEvent::OrderItemRemoved(removed) => {
                self.lines.remove(&removed.product_id);
                self.recompute();
            }
            OrderEvent::PaymentProcessed(payment) => {
                self.status = OrderStatus::Paid;
                self.paid = Some(payment.amount);
            }
            OrderEvent::OrderShipped(_) => self.status = OrderStatus::Shipped,
            OrderEvent::OrderCancelled(_) => self.status = OrderStatus::Cancelled,
        }
    }

    fn recompute(&mut self) {
        self.item_count = self
            .lines
            .values()
            .map(|line| u64::from(line.quantity))
            .sum();
        // The aggregate refuses totals out of range; saturate for foreign histories.
        self.total = self
            .lines
            .values()
            .map(|line| {
                line.checked_total()
                    .unwrap_or(Money::from_minor_units(u64::MAX))
            })
            .fold(Money::ZERO, |sum, line| {
                sum.checked_add(line)
                    .unwrap_or(Money::from_minor_units(u64::MAX))
            });
    }
}

/// The [`OrderSummary`] of every order.
///
/// Kept by hash, not in order: every event is a lookup by id, and lists are rarer than events
/// (they are sorted when asked for). It serializes as the same map of id to summary either
/// way, so saved states read back whichever way they were written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummaries {
    orders: HashMap<OrderId, OrderSummary, foldhash::fast::RandomState>,
}

impl OrderSummaries {
    /// The summary of `order`.
    #[must_use]
    pub fn get(&self, order: &OrderId) -> Option<&OrderSummary> {
        self.orders.get(order)
    }

    /// Every summary, by order id.
    pub fn iter(&self) -> impl Iterator<Item = &OrderSummary> + '_ {
        let mut summaries: Vec<&OrderSummary> = self.orders.values().collect();
        summaries.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        summaries.into_iter()
    }

    /// The orders in `status`.
    pub fn by_status(&self, status: OrderStatus) -> impl Iterator<Item = &OrderSummary> + '_ {
        self.iter().filter(move |summary| summary.status == status)
    }

    /// How many orders there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    /// Whether there is no order.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

impl Projection for OrderSummaries {
    const NAME: &'static str = "order-summaries";
    type Error = ReadModelError;

    fn handles(&self, event: &RecordedEvent) -> bool {
        is_order_event(event)
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ReadModelError> {
        let event = recorded.decode::<OrderEvent>()?;
        let id = recorded.stream.aggregate_id();
        if let OrderEvent::OrderCreated(created) = event {
            let order_id = OrderId::new(id);
            self.orders.insert(
                order_id.clone(),
                OrderSummary {
                    order_id,
                    customer_id: created.customer_id,
                    status: OrderStatus::Open,
                    lines: BTreeMap::new(),
                    item_count: 0,
                    total: Money::ZERO,
                    paid: None,
                    created_at: recorded.recorded_at,
                    updated_at: recorded.recorded_at,
                    version: recorded.version,
                },
            );
            return Ok(());
        }
        // Looked up by the stream's text: no id is allocated for an order already open.
        let Some(summary) = self.orders.get_mut(id) else {
            return Err(ReadModelError::UnknownOrder {
                order: OrderId::new(id),
                event_type: event_type(&event),
            });
        };
        summary.apply_change(event);
        summary.updated_at = recorded.recorded_at;
        summary.version = recorded.version;
        Ok(())
    }

    fn reset(&mut self) {
        self.orders.clear();
    }
}
