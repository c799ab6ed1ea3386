//! `Inventory`: stock per product. Items added to an order reserve units; removed items and
//! cancelled orders release them; a shipment consumes them from the shelf. The stock a
//! product starts with is what its `StockReceived` events say, or, for a product that has
//! none (a log written before products kept their own stock), the configured initial stock.
//!
//! A read model must accept every recorded fact: the write side now makes overselling
//! impossible, but a log written by an older release may hold shipments beyond the stock.
//! Those show as a negative `on_hand` (and reservations beyond the shelf as a shortage), with
//! a warning; the inventory never stops on them.

use std::collections::BTreeMap;

use es_core::{Event, Projection, RecordedEvent};
use serde::{Deserialize, Serialize};

use super::{decode, event_type, is_order_event, ReadModelError};
use crate::domain::{OrderEvent, PaymentProcessed, Product, ProductEvent, StockReceived};
use crate::values::{OrderId, ProductId};

/// The stock of one product.
///
/// `on_hand + shipped` is always the product's received (or initial) stock, and `reserved` is
/// always the sum of the product's lines in orders that are neither shipped nor cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Units on the shelf; negative when a log written before stock was kept on the write
    /// side shipped more than the product ever had (an oversell).
    pub on_hand: i64,
    /// Units promised to open or paid orders.
    pub reserved: u64,
    /// Units that left with shipped orders.
    pub shipped: u64,
}

impl StockLevel {
    /// Units on the shelf that no order has promised yet (zero when there are none).
    #[must_use]
    pub fn available(&self) -> u64 {
        u64::try_from(self.on_hand)
            .unwrap_or(0)
            .saturating_sub(self.reserved)
    }

    /// Units promised beyond what is on the shelf (back-ordered): what must be restocked to
    /// ship every order.
    #[must_use]
    pub fn shortage(&self) -> u64 {
        let on_hand = u64::try_from(self.on_hand).unwrap_or(0);
        self.reserved.saturating_sub(on_hand)
    }

    /// Whether more units shipped than the product ever had.
    #[must_use]
    pub const fn is_oversold(&self) -> bool {
        self.on_hand < 0
    }
}

/// What the inventory counts per product; the level is computed from it and the stock the
/// product started with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counts {
    reserved: u64,
    shipped: u64,
}

/// Stock levels per product, from the received stock (or a configurable initial stock).
///
/// ```
/// use order_example::read_models::Inventory;
/// use order_example::ProductId;
///
/// let inventory = Inventory::new(100).with_stock(ProductId::new("lamp"), 3);
/// assert_eq!(inventory.level(&ProductId::new("lamp")).on_hand, 3);
/// assert_eq!(inventory.level(&ProductId::new("mug")).available(), 100);
/// assert_eq!(inventory.default_stock(), 100);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Initial stock of a product with no `StockReceived` and not in `initial_stock`.
    default_stock: u64,
    /// Initial stock per product, for products with no `StockReceived`.
    initial_stock: BTreeMap<ProductId, u64>,
    /// Units received per product, from its `StockReceived` events.
    received: BTreeMap<ProductId, u64>,
    /// Reserved and shipped units of every product an order has mentioned.
    counts: BTreeMap<ProductId, Counts>,
    /// Units each open (not shipped, not cancelled) order reserves, per product.
    reservations: BTreeMap<OrderId, BTreeMap<ProductId, u64>>,
    /// Recorded facts that break the stock rules (oversold shipments, releases of units
    /// never reserved), accepted with a warning.
    anomalies: u64,
}

impl Inventory {
    /// An inventory in which every product starts with `default_stock` units.
    #[must_use]
    pub fn new(default_stock: u64) -> Self {
        Inventory {
            default_stock,
            ..Inventory::default()
        }
    }

    /// This inventory with `product` starting at `units` instead of the default.
    #[must_use]
    pub fn with_stock(mut self, product: ProductId, units: u64) -> Self {
        self.initial_stock.insert(product, units);
        self
    }

    /// The initial stock of a product not configured with
    /// [`with_stock`](Inventory::with_stock).
    #[must_use]
    pub fn default_stock(&self) -> u64 {
        self.default_stock
    }

    /// The initial stock of `product`.
    #[must_use]
    pub fn initial_stock(&self, product: &ProductId) -> u64 {
        self.initial_stock
            .get(product)
            .copied()
            .unwrap_or(self.default_stock)
    }

    /// The stock `product` started with: the units its `StockReceived` events brought, or
    /// the configured initial stock for a product that has none.
    #[must_use]
    pub fn starting_stock(&self, product: &ProductId) -> u64 {
        self.received
            .get(product)
            .copied()
            .unwrap_or_else(|| self.initial_stock(product))
    }

    /// The stock of `product` (its starting stock if no order has mentioned it).
    #[must_use]
    pub fn level(&self, product: &ProductId) -> StockLevel {
        let counts = self.counts.get(product).copied().unwrap_or_default();
        let start = i64::try_from(self.starting_stock(product)).unwrap_or(i64::MAX);
        StockLevel {
            on_hand: start.saturating_sub(i64::try_from(counts.shipped).unwrap_or(i64::MAX)),
            reserved: counts.reserved,
            shipped: counts.shipped,
        }
    }

    /// Every product an order has mentioned or stock was received for, with its stock.
    pub fn levels(&self) -> impl Iterator<Item = (&ProductId, StockLevel)> + '_ {
        let mut products: Vec<&ProductId> =
            self.counts.keys().chain(self.received.keys()).collect();
        products.sort();
        products.dedup();
        products
            .into_iter()
            .map(|product| (product, self.level(product)))
    }

    /// The units `order` reserves, per product (empty once it shipped or was cancelled).
    pub fn reserved_by(&self, order: &OrderId) -> impl Iterator<Item = (&ProductId, u64)> + '_ {
        self.reservations
            .get(order)
            .into_iter()
            .flat_map(|lines| lines.iter().map(|(product, units)| (product, *units)))
    }

    /// How many recorded facts broke the stock rules (a shipment beyond the stock, an item
    /// removed or an order closed that this inventory never saw reserve), each accepted
    /// with a warning.
    #[must_use]
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Products whose shipments exceeded their stock (logs written before the write side
    /// kept stock).
    pub fn oversold(&self) -> impl Iterator<Item = (&ProductId, StockLevel)> + '_ {
        self.levels().filter(|(_, level)| level.is_oversold())
    }

    fn counts_mut(&mut self, product: &ProductId) -> &mut Counts {
        self.counts.entry(product.clone()).or_default()
    }

    fn anomaly(&mut self, order: &OrderId, what: &str) {
        self.anomalies += 1;
        tracing::warn!(%order, "inventory accepts a recorded fact that breaks the stock rules: {what}");
    }

    /// Releases (or, if `ship`, consumes) every unit `order` reserves.
    fn close(&mut self, order: &OrderId, ship: bool, kind: &'static str) {
        let Some(lines) = self.reservations.remove(order) else {
            self.anomaly(
                order,
                &format!("`{kind}` for an order with no open reservation"),
            );
            return;
        };
        for (product, units) in lines {
            let before = self.level(&product);
            let counts = self.counts_mut(&product);
            counts.reserved = counts.reserved.saturating_sub(units);
            if ship {
                counts.shipped = counts.shipped.saturating_add(units);
                if before.on_hand < i64::try_from(units).unwrap_or(i64::MAX) {
                    self.anomaly(
                        order,
                        &format!(
                            "ships {units} of `{product}` with {} on hand (oversold)",
                            before.on_hand
                        ),
                    );
                }
            }
        }
    }
}

impl Projection for Inventory {
    const NAME: &'static str = "inventory";
    type Error = ReadModelError;

    fn handles(&self, event: &RecordedEvent) -> bool {
        (is_order_event(event) && event.event_type != PaymentProcessed::NAME)
            || (event.stream.aggregate_type() == <Product as es_core::Aggregate>::TYPE
                && event.event_type == StockReceived::NAME)
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ReadModelError> {
        if !is_order_event(recorded) {
            let product = ProductId::new(recorded.stream.aggregate_id());
            if let ProductEvent::StockReceived(received) = recorded.decode::<ProductEvent>()? {
                let units = self.received.entry(product).or_default();
                *units = units.saturating_add(received.quantity);
            }
            return Ok(());
        }
        let (order, event) = decode(recorded)?;
        let kind = event_type(&event);
        match event {
            OrderEvent::OrderCreated(_) => {
                self.reservations.insert(order, BTreeMap::new());
            }
            OrderEvent::OrderItemAdded(added) => {
                if !self.reservations.contains_key(&order) {
                    self.anomaly(&order, &format!("`{kind}` for an order never created"));
                }
                let units = u64::from(added.quantity);
                let line = self
                    .reservations
                    .entry(order)
                    .or_default()
                    .entry(added.product_id.clone())
                    .or_default();
                *line = line.saturating_add(units);
                let counts = self.counts_mut(&added.product_id);
                counts.reserved = counts.reserved.saturating_add(units);
            }
            OrderEvent::OrderItemRemoved(removed) => {
                let units = self
                    .reservations
                    .get_mut(&order)
                    .and_then(|lines| lines.remove(&removed.product_id));
                match units {
                    Some(units) => {
                        let counts = self.counts_mut(&removed.product_id);
                        counts.reserved = counts.reserved.saturating_sub(units);
                    }
                    None => self.anomaly(
                        &order,
                        &format!("removes `{}`, which it never reserved", removed.product_id),
                    ),
                }
            }
            OrderEvent::PaymentProcessed(_) => {}
            OrderEvent::OrderShipped(_) => self.close(&order, true, kind),
            OrderEvent::OrderCancelled(_) => self.close(&order, false, kind),
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.received.clear();
        self.counts.clear();
        self.reservations.clear();
        self.anomalies = 0;
    }
}
