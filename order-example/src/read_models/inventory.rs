//! `Inventory`: stock per product. Items added to an order reserve units; removed items and
//! cancelled orders release them; a shipment consumes them from the shelf.

use std::collections::BTreeMap;

use es_core::{Event, Projection, RecordedEvent};
use serde::{Deserialize, Serialize};

use super::{decode, event_type, is_order_event, ReadModelError};
use crate::domain::{OrderEvent, PaymentProcessed};
use crate::values::{OrderId, ProductId};

/// The stock of one product.
///
/// Units are never lost: `on_hand + shipped` is always the initial stock, and `reserved` is
/// always the sum of the product's lines in orders that are neither shipped nor cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Units on the shelf.
    pub on_hand: u64,
    /// Units promised to open or paid orders.
    pub reserved: u64,
    /// Units that left with shipped orders.
    pub shipped: u64,
}

impl StockLevel {
    /// Units on the shelf that no order has promised yet.
    #[must_use]
    pub const fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    /// Units promised beyond what is on the shelf: what must be restocked to ship every order.
    #[must_use]
    pub const fn shortage(&self) -> u64 {
        self.reserved.saturating_sub(self.on_hand)
    }
}

/// Stock levels per product, from a configurable initial stock.
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
    /// Initial stock of a product not listed in `initial_stock`.
    default_stock: u64,
    /// Initial stock per product.
    initial_stock: BTreeMap<ProductId, u64>,
    /// Stock of every product an order has mentioned.
    levels: BTreeMap<ProductId, StockLevel>,
    /// Units each open (not shipped, not cancelled) order reserves, per product.
    reservations: BTreeMap<OrderId, BTreeMap<ProductId, u64>>,
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

    /// The stock of `product` (its initial stock if no order has mentioned it).
    #[must_use]
    pub fn level(&self, product: &ProductId) -> StockLevel {
        self.levels
            .get(product)
            .copied()
            .unwrap_or_else(|| StockLevel {
                on_hand: self.initial_stock(product),
                ..StockLevel::default()
            })
    }

    /// Every product an order has mentioned, with its stock.
    pub fn levels(&self) -> impl Iterator<Item = (&ProductId, &StockLevel)> + '_ {
        self.levels.iter()
    }

    /// The units `order` reserves, per product (empty once it shipped or was cancelled).
    pub fn reserved_by(&self, order: &OrderId) -> impl Iterator<Item = (&ProductId, u64)> + '_ {
        self.reservations
            .get(order)
            .into_iter()
            .flat_map(|lines| lines.iter().map(|(product, units)| (product, *units)))
    }

    fn level_mut(&mut self, product: &ProductId) -> &mut StockLevel {
        let initial = self.initial_stock(product);
        self.levels.entry(product.clone()).or_insert(StockLevel {
            on_hand: initial,
            ..StockLevel::default()
        })
    }

    /// Releases (or, if `ship`, consumes) every unit `order` reserves. Checks everything
    /// before changing anything.
    fn close(
        &mut self,
        order: OrderId,
        ship: bool,
        kind: &'static str,
    ) -> Result<(), ReadModelError> {
        let Some(lines) = self.reservations.get(&order) else {
            return Err(ReadModelError::UnknownOrder {
                order,
                event_type: kind,
            });
        };
        if ship {
            if let Some((product, &requested)) = lines
                .iter()
                .find(|(product, units)| self.level(product).on_hand < **units)
            {
                return Err(ReadModelError::InsufficientStock {
                    product: product.clone(),
                    on_hand: self.level(product).on_hand,
                    requested,
                    order,
                });
            }
        }
        let lines = self.reservations.remove(&order).unwrap_or_default();
        for (product, units) in lines {
            let level = self.level_mut(&product);
            // `reserved` includes these units (raised when they were reserved) and `on_hand`
            // was checked above: saturation never happens, it only rules out a panic.
            level.reserved = level.reserved.saturating_sub(units);
            if ship {
                level.on_hand = level.on_hand.saturating_sub(units);
                level.shipped = level.shipped.saturating_add(units);
            }
        }
        Ok(())
    }
}

impl Projection for Inventory {
    const NAME: &'static str = "inventory";
    type Error = ReadModelError;

    fn handles(&self, event: &RecordedEvent) -> bool {
        is_order_event(event) && event.event_type != PaymentProcessed::NAME
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ReadModelError> {
        let (order, event) = decode(recorded)?;
        let kind = event_type(&event);
        match event {
            OrderEvent::OrderCreated(_) => {
                self.reservations.insert(order, BTreeMap::new());
            }
            OrderEvent::OrderItemAdded(added) => {
                let Some(lines) = self.reservations.get_mut(&order) else {
                    return Err(ReadModelError::UnknownOrder {
                        order,
                        event_type: kind,
                    });
                };
                let units = u64::from(added.quantity);
                let line = lines.entry(added.product_id.clone()).or_default();
                *line = line.saturating_add(units);
                let level = self.level_mut(&added.product_id);
                level.reserved = level.reserved.saturating_add(units);
            }
            OrderEvent::OrderItemRemoved(removed) => {
                let Some(lines) = self.reservations.get_mut(&order) else {
                    return Err(ReadModelError::UnknownOrder {
                        order,
                        event_type: kind,
                    });
                };
                let Some(units) = lines.remove(&removed.product_id) else {
                    return Err(ReadModelError::MissingReservation {
                        order,
                        product: removed.product_id,
                    });
                };
                let level = self.level_mut(&removed.product_id);
                level.reserved = level.reserved.saturating_sub(units);
            }
            OrderEvent::PaymentProcessed(_) => {}
            OrderEvent::OrderShipped(_) => self.close(order, true, kind)?,
            OrderEvent::OrderCancelled(_) => self.close(order, false, kind)?,
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.levels.clear();
        self.reservations.clear();
    }
}
