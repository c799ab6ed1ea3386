//! `CustomerHistories`: per customer, the orders placed and what they add up to.

use std::collections::BTreeMap;

use es_core::{Event, Projection, RecordedEvent, Timestamp};
use serde::{Deserialize, Serialize};

use super::{decode, event_type, is_order_event, ReadModelError};
use crate::domain::{OrderEvent, OrderItemAdded, OrderItemRemoved};
use crate::values::{CustomerId, Money, OrderId};

/// One customer's orders and statistics.
///
/// A cancelled order that was paid is refunded: it leaves `total_spent` and `paid_orders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerOrderHistory {
    /// The customer.
    pub customer_id: CustomerId,
    /// Every order, in the order they were created.
    pub orders: Vec<OrderId>,
    /// Paid orders not cancelled since.
    pub paid_orders: u64,
    /// The sum of the payments of `paid_orders`.
    pub total_spent: Money,
    /// Orders cancelled (paid or not).
    pub cancellations: u64,
    /// When the first order was created.
    pub first_order_at: Timestamp,
    /// When the latest order was created.
    pub last_order_at: Timestamp,
}

impl CustomerOrderHistory {
    /// How many orders the customer created.
    #[must_use]
    pub fn order_count(&self) -> u64 {
        self.orders.len() as u64
    }

    /// `total_spent` per paid order, rounded down to the minor unit; `None` before the first
    /// payment.
    #[must_use]
    pub fn average_order_value(&self) -> Option<Money> {
        self.total_spent.checked_div(self.paid_orders)
    }
}

/// An order that can still be paid or cancelled: whose it is and what it paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct OpenOrder {
    customer_id: CustomerId,
    paid: Option<Money>,
}

/// The [`CustomerOrderHistory`] of every customer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerHistories {
    customers: BTreeMap<CustomerId, CustomerOrderHistory>,
    /// Orders neither shipped nor cancelled: later events only name the order, not the
    /// customer.
    open_orders: BTreeMap<OrderId, OpenOrder>,
}

impl CustomerHistories {
    /// The history of `customer`.
    #[must_use]
    pub fn get(&self, customer: &CustomerId) -> Option<&CustomerOrderHistory> {
        self.customers.get(customer)
    }

    /// Every customer's history, by customer id.
    pub fn iter(&self) -> impl Iterator<Item = &CustomerOrderHistory> + '_ {
        self.customers.values()
    }

    /// How many customers have ordered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    /// Whether no customer has ordered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    fn open_order(
        &mut self,
        order: OrderId,
        kind: &'static str,
    ) -> Result<&mut OpenOrder, ReadModelError> {
        match self.open_orders.get_mut(&order) {
            Some(open) => Ok(open),
            None => Err(ReadModelError::UnknownOrder {
                order,
                event_type: kind,
            }),
        }
    }

    fn customer(&mut self, customer: &CustomerId) -> &mut CustomerOrderHistory {
        self.customers
            .entry(customer.clone())
            .or_insert_with(|| CustomerOrderHistory {
                customer_id: customer.clone(),
                orders: Vec::new(),
                paid_orders: 0,
                total_spent: Money::ZERO,
                cancellations: 0,
                first_order_at: Timestamp::EPOCH,
                last_order_at: Timestamp::EPOCH,
            })
    }
}

impl Projection for CustomerHistories {
    const NAME: &'static str = "customer-histories";
    type Error = ReadModelError;

    fn handles(&self, event: &RecordedEvent) -> bool {
        is_order_event(event)
            && event.event_type != OrderItemAdded::NAME
            && event.event_type != OrderItemRemoved::NAME
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ReadModelError> {
        let (order, event) = decode(recorded)?;
        let kind = event_type(&event);
        match event {
            OrderEvent::OrderCreated(created) => {
                let history = self.customer(&created.customer_id);
                if history.orders.is_empty() {
                    history.first_order_at = recorded.recorded_at;
                }
                history.last_order_at = recorded.recorded_at;
                history.orders.push(order.clone());
                self.open_orders.insert(
                    order,
                    OpenOrder {
                        customer_id: created.customer_id,
                        paid: None,
                    },
                );
            }
            OrderEvent::PaymentProcessed(payment) => {
                let open = self.open_order(order, kind)?;
                open.paid = Some(payment.amount);
                let customer = open.customer_id.clone();
                let history = self.customer(&customer);
                history.paid_orders += 1;
                history.total_spent = history
                    .total_spent
                    .checked_add(payment.amount)
                    .unwrap_or(Money::from_minor_units(u64::MAX));
            }
            OrderEvent::OrderShipped(_) => {
                if self.open_orders.remove(&order).is_none() {
                    return Err(ReadModelError::UnknownOrder {
                        order,
                        event_type: kind,
                    });
                }
            }
            OrderEvent::OrderCancelled(_) => {
                let Some(open) = self.open_orders.remove(&order) else {
                    return Err(ReadModelError::UnknownOrder {
                        order,
                        event_type: kind,
                    });
                };
                let history = self.customer(&open.customer_id);
                history.cancellations += 1;
                if let Some(refund) = open.paid {
                    history.paid_orders = history.paid_orders.saturating_sub(1);
                    history.total_spent = history
                        .total_spent
                        .checked_sub(refund)
                        .unwrap_or(Money::ZERO);
                }
            }
            OrderEvent::OrderItemAdded(_) | OrderEvent::OrderItemRemoved(_) => {}
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.customers.clear();
        self.open_orders.clear();
    }
}
