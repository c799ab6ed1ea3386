//! The `Product` aggregate: the stock of one product, kept on the write side.
//!
//! Stock is an invariant that spans aggregates: the units reserved by *all* orders must never
//! exceed what is on the shelf. An order cannot check that alone, and a read model cannot
//! either (it lags, and two processes may read the same level). So each product is an
//! aggregate of its own, and every order change that takes or gives back stock records the
//! product's event *in the same atomic append* as the order's (see [`crate::fulfillment`]).
//! Two writers reserving the last unit then conflict on the product's version, and the loser
//! re-decides on the new level: stock can never go below zero, whatever the number of
//! processes.

use std::collections::BTreeMap;

use es_core::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

use crate::values::{OrderId, ProductId};

/// Units of the product arrived on the shelf (the first stock, or a restock).
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "StockReceived", version = 1)]
pub struct StockReceived {
    /// How many units arrived (at least 1).
    pub quantity: u64,
}

/// Units were promised to an order: an item was added to it.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "StockReserved", version = 1)]
pub struct StockReserved {
    /// The order the units are promised to.
    pub order_id: OrderId,
    /// How many units (at least 1).
    pub quantity: u64,
}

/// Units an order had reserved went back to the shelf: the item was removed, or the order
/// was cancelled.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "StockReleased", version = 1)]
pub struct StockReleased {
    /// The order that had reserved them.
    pub order_id: OrderId,
    /// How many units.
    pub quantity: u64,
}

/// Units an order had reserved left the warehouse with it.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "StockShipped", version = 1)]
pub struct StockShipped {
    /// The order shipped.
    pub order_id: OrderId,
    /// How many units.
    pub quantity: u64,
}

/// The stock of one product: units on the shelf, and the part of them promised to orders.
///
/// Always `reserved <= on_hand`: [`Product::reserve`] refuses anything more.
#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(
    name = "product",
    events(StockReceived, StockReserved, StockReleased, StockShipped),
    snapshot_every = 100,
    event_enum = ProductEvent
)]
pub struct Product {
    on_hand: u64,
    reserved: u64,
    /// Units each order with an open reservation holds.
    reservations: BTreeMap<OrderId, u64>,
}

/// Why a stock command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StockError {
    /// The product has fewer units available (on hand, not promised) than asked for.
    #[error("out of stock: `{product}` has {available} available, {requested} requested")]
    OutOfStock {
        /// The product.
        product: ProductId,
        /// Units on hand that no order has reserved.
        available: u64,
        /// Units asked for.
        requested: u64,
    },
    /// A quantity of zero.
    #[error("a stock quantity must be at least 1")]
    ZeroQuantity,
    /// The order holds fewer units of the product than it tries to release or ship.
    #[error("order `{order}` holds {held} of `{product}`, not {requested}")]
    NotReserved {
        /// The product.
        product: ProductId,
        /// The order.
        order: OrderId,
        /// Units the order holds.
        held: u64,
        /// Units it tried to release or ship.
        requested: u64,
    },
    /// Receiving the units would overflow the count.
    #[error("receiving {quantity} units of `{product}` would overflow its stock count")]
    Overflow {
        /// The product.
        product: ProductId,
        /// Units received.
        quantity: u64,
    },
}

type Decision = Result<Vec<ProductEvent>, StockError>;

impl Product {
    /// Units on the shelf.
    #[must_use]
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    /// Units promised to orders that have not shipped.
    #[must_use]
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Units on the shelf that no order has promised: what [`Product::reserve`] can give.
    #[must_use]
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    /// Units `order` holds.
    #[must_use]
    pub fn reserved_by(&self, order: &OrderId) -> u64 {
        self.reservations.get(order).copied().unwrap_or(0)
    }

    /// Receives `quantity` units of `product` (this product's id, for the error).
    pub fn receive(&self, product: &ProductId, quantity: u64) -> Decision {
        if quantity == 0 {
            return Err(StockError::ZeroQuantity);
        }
        if self.on_hand.checked_add(quantity).is_none() {
            return Err(StockError::Overflow {
                product: product.clone(),
                quantity,
            });
        }
        Ok(vec![StockReceived { quantity }.into()])
    }

    /// Promises `quantity` units to `order`, if that many are available.
    pub fn reserve(&self, product: &ProductId, order: &OrderId, quantity: u64) -> Decision {
        if quantity == 0 {
            return Err(StockError::ZeroQuantity);
        }
        if quantity > self.available() {
            return Err(StockError::OutOfStock {
                product: product.clone(),
                available: self.available(),
                requested: quantity,
            });
        }
        Ok(vec![StockReserved {
            order_id: order.clone(),
            quantity,
        }
        .into()])
    }

    /// Gives back `quantity` of the units `order` holds.
    pub fn release(&self, product: &ProductId, order: &OrderId, quantity: u64) -> Decision {
        self.check_held(product, order, quantity)?;
        Ok(vec![StockReleased {
            order_id: order.clone(),
            quantity,
        }
        .into()])
    }

    /// Ships `quantity` of the units `order` holds: they leave the shelf.
    pub fn ship(&self, product: &ProductId, order: &OrderId, quantity: u64) -> Decision {
        self.check_held(product, order, quantity)?;
        Ok(vec![StockShipped {
            order_id: order.clone(),
            quantity,
        }
        .into()])
    }

    fn check_held(
        &self,
        product: &ProductId,
        order: &OrderId,
        quantity: u64,
    ) -> Result<(), StockError> {
        if quantity == 0 {
            return Err(StockError::ZeroQuantity);
        }
        let held = self.reserved_by(order);
        if held < quantity {
            return Err(StockError::NotReserved {
                product: product.clone(),
                order: order.clone(),
                held,
                requested: quantity,
            });
        }
        Ok(())
    }

    /// Takes `quantity` off `order`'s reservation.
    fn unreserve(&mut self, order: &OrderId, quantity: u64) {
        self.reserved = self.reserved.saturating_sub(quantity);
        if let Some(held) = self.reservations.get_mut(order) {
            *held = held.saturating_sub(quantity);
            if *held == 0 {
                self.reservations.remove(order);
            }
        }
    }
}

impl Apply<StockReceived> for Product {
    fn apply(&mut self, event: &StockReceived) {
        self.on_hand = self.on_hand.saturating_add(event.quantity);
    }
}

impl Apply<StockReserved> for Product {
    fn apply(&mut self, event: &StockReserved) {
        self.reserved = self.reserved.saturating_add(event.quantity);
        let held = self.reservations.entry(event.order_id.clone()).or_default();
        *held = held.saturating_add(event.quantity);
    }
}

impl Apply<StockReleased> for Product {
    fn apply(&mut self, event: &StockReleased) {
        self.unreserve(&event.order_id, event.quantity);
    }
}

impl Apply<StockShipped> for Product {
    fn apply(&mut self, event: &StockShipped) {
        self.unreserve(&event.order_id, event.quantity);
        self.on_hand = self.on_hand.saturating_sub(event.quantity);
    }
}
