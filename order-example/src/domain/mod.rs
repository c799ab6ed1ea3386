//! The write side: what an order records, how its state follows, and the rules its commands
//! keep.
//!
//! - [`events`]: the six events, each a plain `#[derive(Event)]` struct.
//! - [`order`]: the [`Order`] aggregate (`#[derive(Aggregate)]` generates [`OrderEvent`])
//!   and one `Apply` impl per event.
//! - [`commands`]: the commands, pure methods on [`Order`] returning the events to record,
//!   and the [`OrderError`] of every rule.
//! - [`product`]: the [`Product`] aggregate, the stock of one product on the write side, so
//!   that orders can never take more than the shelf holds ([`StockError::OutOfStock`]).
//!
//! ```
//! use es_core::AggregateRoot;
//! use order_example::{CustomerId, Money, Order, OrderError, OrderStatus, ProductId};
//!
//! let mut order = AggregateRoot::<Order>::new("order-1");
//! order.execute(|o| o.create(CustomerId::new("alice")))?;
//! order.execute(|o| o.add_item(ProductId::new("mug"), 2, Money::from_minor_units(1_250)))?;
//! assert_eq!(order.state().total(), Money::from_minor_units(2_500));
//!
//! // Rules are checked before anything is recorded.
//! let refused = order.execute(|o| o.pay(Money::from_minor_units(100)));
//! assert!(matches!(refused, Err(OrderError::PaymentMismatch { .. })));
//! order.execute(|o| o.pay(Money::from_minor_units(2_500)))?;
//! assert_eq!(order.state().status(), OrderStatus::Paid);
//! assert_eq!(order.pending_events().len(), 3);
//! # Ok::<(), OrderError>(())
//! ```

pub mod commands;
pub mod events;
pub mod order;
pub mod product;
#[cfg(test)]
mod product_tests;
#[cfg(test)]
mod tests;

pub use commands::{OrderCommand, OrderError};
pub use events::{
    OrderCancelled, OrderCreated, OrderItemAdded, OrderItemRemoved, OrderShipped, PaymentProcessed,
};
pub use order::{Order, OrderEvent, OrderLine, OrderStatus};
pub use product::{
    Product, ProductEvent, StockError, StockReceived, StockReleased, StockReserved, StockShipped,
};
