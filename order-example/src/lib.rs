//! The Order domain built with `es-core`: a guided tour.
//!
//! 1. [`values`]: [`Money`] in integer minor units and typed ids.
//! 2. [`domain`]: the write side. Six events, the [`Order`] aggregate, and commands that
//!    enforce the business rules.
//! 3. [`read_models`]: the read side. Three projections over the same events, each keyed by
//!    what it answers: orders, products, customers.
//! 4. [`load`]: a deterministic generator of valid order histories, for benchmarks and the
//!    program's `generate` command.
//!
//! The program (`cargo run -p order-example`) wires these to a store and shows the whole usage
//! pattern; its code is in `src/main.rs` and `src/cli/`.

pub mod domain;
pub mod load;
pub mod read_models;
pub mod values;

pub use domain::{
    Order, OrderCancelled, OrderCommand, OrderCreated, OrderError, OrderEvent, OrderItemAdded,
    OrderItemRemoved, OrderLine, OrderShipped, OrderStatus, PaymentProcessed,
};
pub use values::{CustomerId, Money, OrderId, ParseMoneyError, ProductId};
