//! The Order aggregate and the order-summary read model written for cqrs-es, so both
//! frameworks run the same domain.
//!
//! The state and the business rules are the order-example's own (`Order`, and
//! `OrderCommand::decide`): only the framework around them differs. cqrs-es wants its own event
//! enum (serde-derived, with a type name and version per variant), so [`CqrsOrderEvent`]
//! carries the order-example's event structs, and its summary view folds the typed events the
//! way `OrderSummaries` folds recorded ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, Query};
use es_core::Aggregate as _;
use order_example::{
    CustomerId, Money, Order, OrderCancelled, OrderCommand, OrderCreated, OrderError, OrderEvent,
    OrderItemAdded, OrderItemRemoved, OrderLine, OrderShipped, OrderStatus, PaymentProcessed,
    ProductId,
};
use serde::{Deserialize, Serialize};

/// The order-example's `Order`, as a cqrs-es aggregate.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CqrsOrder(Order);

/// The six order events, as cqrs-es stores them (typed, in memory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CqrsOrderEvent {
    /// `OrderCreated`.
    Created(OrderCreated),
    /// `OrderItemAdded`.
    ItemAdded(OrderItemAdded),
    /// `OrderItemRemoved`.
    ItemRemoved(OrderItemRemoved),
    /// `PaymentProcessed`.
    Paid(PaymentProcessed),
    /// `OrderShipped`.
    Shipped(OrderShipped),
    /// `OrderCancelled`.
    Cancelled(OrderCancelled),
}

impl From<OrderEvent> for CqrsOrderEvent {
    fn from(event: OrderEvent) -> Self {
        match event {
            OrderEvent::OrderCreated(e) => CqrsOrderEvent::Created(e),
            OrderEvent::OrderItemAdded(e) => CqrsOrderEvent::ItemAdded(e),
            OrderEvent::OrderItemRemoved(e) => CqrsOrderEvent::ItemRemoved(e),
            OrderEvent::PaymentProcessed(e) => CqrsOrderEvent::Paid(e),
            OrderEvent::OrderShipped(e) => CqrsOrderEvent::Shipped(e),
            OrderEvent::OrderCancelled(e) => CqrsOrderEvent::Cancelled(e),
        }
    }
}

impl From<CqrsOrderEvent> for OrderEvent {
    fn from(event: CqrsOrderEvent) -> Self {
        match event {
            CqrsOrderEvent::Created(e) => e.into(),
            CqrsOrderEvent::ItemAdded(e) => e.into(),
            CqrsOrderEvent::ItemRemoved(e) => e.into(),
            CqrsOrderEvent::Paid(e) => e.into(),
            CqrsOrderEvent::Shipped(e) => e.into(),
            CqrsOrderEvent::Cancelled(e) => e.into(),
        }
    }
}

impl DomainEvent for CqrsOrderEvent {
    fn event_type(&self) -> String {
        match self {
            CqrsOrderEvent::Created(_) => "OrderCreated",
            CqrsOrderEvent::ItemAdded(_) => "OrderItemAdded",
            CqrsOrderEvent::ItemRemoved(_) => "OrderItemRemoved",
            CqrsOrderEvent::Paid(_) => "PaymentProcessed",
            CqrsOrderEvent::Shipped(_) => "OrderShipped",
            CqrsOrderEvent::Cancelled(_) => "OrderCancelled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl Aggregate for CqrsOrder {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = CqrsOrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        for event in command.decide(&self.0)? {
            sink.write(event.into(), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: CqrsOrderEvent) {
        self.0.apply_event(&event.into());
    }
}

/// One order's row, the fields `order_example::read_models::OrderSummary` keeps (cqrs-es
/// events carry no timestamps, so those two are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
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
    /// The sequence number of its last event.
    pub version: u64,
}

impl SummaryRow {
    fn recompute(&mut self) {
        self.item_count = self
            .lines
            .values()
            .map(|line| u64::from(line.quantity))
            .sum();
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

/// The order-summary read model: a row per order, updated by cqrs-es right after each commit
/// (its queries run inside `execute`, so a command's caller always reads its own write).
#[derive(Debug, Default)]
pub struct SummaryQuery {
    rows: Mutex<HashMap<String, SummaryRow>>,
}

impl SummaryQuery {
    /// The row of `order`, if it exists.
    pub fn row(&self, order: &str) -> Option<SummaryRow> {
        self.rows.lock().unwrap().get(order).cloned()
    }

    /// How many orders there are.
    pub fn len(&self) -> usize {
        self.rows.lock().unwrap().len()
    }
}

#[async_trait]
impl Query<CqrsOrder> for SummaryQuery {
    async fn dispatch(&self, aggregate_id: &str, events: &[EventEnvelope<CqrsOrder>]) {
        let mut rows = self.rows.lock().unwrap();
        for envelope in events {
            fold(
                &mut rows,
                aggregate_id,
                envelope.sequence as u64,
                &envelope.payload,
            );
        }
    }
}

/// Folds the event at `version` of order `aggregate_id` into its row of `rows`.
pub fn fold(
    rows: &mut HashMap<String, SummaryRow>,
    aggregate_id: &str,
    version: u64,
    event: &CqrsOrderEvent,
) {
    if let CqrsOrderEvent::Created(created) = event {
        rows.insert(
            aggregate_id.to_owned(),
            SummaryRow {
                customer_id: created.customer_id.clone(),
                status: OrderStatus::Open,
                lines: BTreeMap::new(),
                item_count: 0,
                total: Money::ZERO,
                paid: None,
                version,
            },
        );
        return;
    }
    let row = rows
        .get_mut(aggregate_id)
        .expect("every order event follows its creation");
    match event {
        CqrsOrderEvent::Created(_) => {}
        CqrsOrderEvent::ItemAdded(added) => {
            row.lines
                .entry(added.product_id.clone())
                .and_modify(|line| {
                    line.quantity = line.quantity.saturating_add(added.quantity);
                })
                .or_insert(OrderLine {
                    quantity: added.quantity,
                    unit_price: added.unit_price,
                });
            row.recompute();
        }
        CqrsOrderEvent::ItemRemoved(removed) => {
            row.lines.remove(&removed.product_id);
            row.recompute();
        }
        CqrsOrderEvent::Paid(payment) => {
            row.status = OrderStatus::Paid;
            row.paid = Some(payment.amount);
        }
        CqrsOrderEvent::Shipped(_) => row.status = OrderStatus::Shipped,
        CqrsOrderEvent::Cancelled(_) => row.status = OrderStatus::Cancelled,
    }
    row.version = version;
}
