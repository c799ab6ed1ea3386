//! The Order domain built with `es-core`: a guided tour.
//!
//! 1. [`values`]: [`Money`] in integer minor units and typed ids.
//! 2. [`domain`]: the write side. Six events, the [`Order`] aggregate, and commands that
//!    enforce the business rules; the [`Product`] aggregate keeps each product's stock.
//! 3. [`fulfillment`]: order commands that take or give back stock, saved with the products'
//!    events in one atomic multi-stream append, so stock can never be oversold.
//! 4. [`read_models`]: the read side. Three projections over the same events, each keyed by
//!    what it answers: orders, products, customers.
//! 5. [`load`]: a deterministic generator of valid order histories, for benchmarks and the
//!    program's `generate` command.
//!
//! The program (`cargo run -p order-example`) wires these to a store and shows the whole usage
//! pattern; its code is in `src/main.rs` and `src/cli/`.
//!
//! # The whole pattern in one page
//!
//! Commands on the aggregate, saved through a repository; read models caught up from the log
//! and queried; then the same questions asked of the past.
//!
//! ```
//! use es_core::projection::AsOf;
//! use es_core::{InMemory, Repository, Version};
//! use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
//! use order_example::{CustomerId, Money, Order, OrderId, OrderStatus, ProductId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemory::new();
//! let orders = Repository::<Order, _>::new(store.clone());
//! let (alice, mug) = (CustomerId::new("alice"), ProductId::new("mug"));
//!
//! // Write side: each command checks the rules and records events; `save` appends them.
//! let mut order = orders.load("order-1").await?;
//! order.execute(|o| o.create(alice.clone()))?;
//! order.execute(|o| o.add_item(mug.clone(), 2, Money::from_minor_units(1_250)))?;
//! let created = orders.save(&mut order).await?.ok_or("nothing to save")?;
//! order.execute(|o| o.pay(Money::from_minor_units(2_500)))?;
//! order.execute(|o| o.ship("TRACK-1"))?;
//! orders.save(&mut order).await?;
//!
//! // Read side: every read model catches up from the global log, then answers queries.
//! let mut registry = read_models::registry(Inventory::new(10))?;
//! registry.catch_up(&store).await?;
//! let summary = registry.get::<OrderSummaries>().ok_or("registered")?;
//! assert_eq!(summary.get(&OrderId::new("order-1")).map(|s| s.status), Some(OrderStatus::Shipped));
//! assert_eq!(registry.get::<Inventory>().ok_or("registered")?.level(&mug).on_hand, 8);
//! let history = registry.get::<CustomerHistories>().ok_or("registered")?;
//! assert_eq!(history.get(&alice).map(|h| h.total_spent), Some(Money::from_minor_units(2_500)));
//!
//! // Temporal queries: the aggregate at a version, the read models at a global position.
//! let before_payment = orders.load_at_version("order-1", Version(2)).await?;
//! assert_eq!(before_payment.state().status(), OrderStatus::Open);
//! let then = registry.as_of(&store, AsOf::Position(created.position)).await?;
//! let mugs_then = then.get::<Inventory>().ok_or("registered")?.level(&mug);
//! assert_eq!((mugs_then.on_hand, mugs_then.reserved), (10, 2));
//! # Ok(())
//! # }
//! ```

pub mod console;
pub mod domain;
pub mod fulfillment;
pub mod load;
pub mod read_models;
pub mod values;

pub use domain::{
    Order, OrderCancelled, OrderCommand, OrderCreated, OrderError, OrderEvent, OrderItemAdded,
    OrderItemRemoved, OrderLine, OrderShipped, OrderStatus, PaymentProcessed, Product,
    ProductEvent, StockError, StockReceived, StockReleased, StockReserved, StockShipped,
};
pub use values::{CustomerId, Money, OrderId, ParseMoneyError, ProductId};
