//! The six facts an order records. Each is a plain struct; `#[derive(Event)]` gives it a
//! stable name and a schema version, and the payload stored is the struct alone.

use es_core::Event;
use serde::{Deserialize, Serialize};

use crate::values::{CustomerId, Money, ProductId};

/// An order was opened for a customer. Always the first event of an order's stream.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderCreated", version = 1)]
pub struct OrderCreated {
    /// Who the order is for.
    pub customer_id: CustomerId,
}

/// Units of a product were added to the order at a unit price.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderItemAdded", version = 1)]
pub struct OrderItemAdded {
    /// The product.
    pub product_id: ProductId,
    /// How many units were added (at least 1).
    pub quantity: u32,
    /// The price of one unit.
    pub unit_price: Money,
}

/// A product's line was taken out of the order.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderItemRemoved", version = 1)]
pub struct OrderItemRemoved {
    /// The product.
    pub product_id: ProductId,
    /// How many units the line held when it was removed.
    pub quantity: u32,
}

/// The customer paid the order's total.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "PaymentProcessed", version = 1)]
pub struct PaymentProcessed {
    /// The amount paid: the order's total at the time.
    pub amount: Money,
}

/// The paid order left the warehouse.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderShipped", version = 1)]
pub struct OrderShipped {
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// The order was cancelled before it shipped.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderCancelled", version = 1)]
pub struct OrderCancelled {
    /// Why.
    pub reason: String,
}
