//! The read side: three read models, each a [`Projection`](es_core::Projection) fed from the
//! global log, each keyed by what its queries ask about.
//!
//! - [`OrderSummaries`]: one denormalized [`OrderSummary`] per order.
//! - [`Inventory`]: one [`StockLevel`] per product; items added reserve units, removed items
//!   and cancellations release them, shipping consumes them. It accepts every recorded fact:
//!   an oversold log (written before stock was kept on the write side) shows as negative
//!   stock with a warning.
//! - [`CustomerHistories`]: one [`CustomerOrderHistory`] per customer: orders, count, total
//!   spent, average order value, cancellations.
//!
//! [`registry`] registers all three, ready to catch up:
//!
//! ```
//! use es_core::{InMemory, Repository};
//! use order_example::read_models::{self, Inventory, OrderSummaries};
//! use order_example::{CustomerId, Money, Order, OrderId, OrderStatus, ProductId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemory::new();
//! let orders = Repository::<Order, _>::new(store.clone());
//! let mut order = orders.load("o-1").await?;
//! order.execute(|o| o.create(CustomerId::new("alice")))?;
//! order.execute(|o| o.add_item(ProductId::new("mug"), 2, Money::from_minor_units(1_250)))?;
//! let saved = orders.save(&mut order).await?.ok_or("nothing to save")?;
//!
//! let mut registry = read_models::registry(Inventory::new(100))?;
//! registry.catch_up_to(&store, saved.position).await?; // read your own write
//! let summary = registry.get::<OrderSummaries>().unwrap().get(&OrderId::new("o-1")).unwrap();
//! assert_eq!(summary.status, OrderStatus::Open);
//! let mugs = registry.get::<Inventory>().unwrap().level(&ProductId::new("mug"));
//! assert_eq!((mugs.on_hand, mugs.reserved, mugs.available()), (100, 2, 98));
//! # Ok(())
//! # }
//! ```

mod customer_history;
mod inventory;
mod order_summary;
pub mod tables;
#[cfg(test)]
mod tests;

use es_core::projection::DuplicateProjection;
use es_core::{Aggregate, DecodeError, ProjectionRegistry, RecordedEvent};

use crate::domain::{Order, OrderEvent};
use crate::values::OrderId;

pub use customer_history::{CustomerHistories, CustomerOrderHistory};
pub use inventory::{Inventory, StockLevel};
pub use order_summary::{OrderSummaries, OrderSummary};

/// A registry with the three read models, `inventory` configured with its initial stock.
///
/// # Errors
/// Never in practice: the three names are distinct. The type says so because registration can
/// fail in general.
pub fn registry(inventory: Inventory) -> Result<ProjectionRegistry, DuplicateProjection> {
    ProjectionRegistry::new()
        .with(OrderSummaries::default())?
        .with(inventory)?
        .with(CustomerHistories::default())
}

/// A read model could not apply an order event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// The payload does not decode as an order event.
    #[error("the event does not decode")]
    Decode(#[from] DecodeError),
    /// An event for an order whose creation the read model has not seen (or that it already
    /// closed): the log is not a valid order history.
    #[error("`{event_type}` for order `{order}`, which is not open in this read model")]
    UnknownOrder {
        /// The order.
        order: OrderId,
        /// The event's type.
        event_type: &'static str,
    },
    /// A statement of a table read model failed.
    #[error(transparent)]
    Sql(#[from] es_core::projection::table::SqlError),
    /// A count or amount does not fit a SQL `BIGINT` (above 2^63 - 1): a table read model
    /// refuses it rather than store it wrong.
    #[error("{what} {value} does not fit a SQL BIGINT")]
    OutOfRange {
        /// What the number is.
        what: &'static str,
        /// The number.
        value: u64,
    },
}

/// Whether `event` belongs to an order stream: every read model here handles only those.
fn is_order_event(event: &RecordedEvent) -> bool {
    event.stream.aggregate_type() == Order::TYPE
}

/// The order an event belongs to, and the event decoded.
fn decode(event: &RecordedEvent) -> Result<(OrderId, OrderEvent), DecodeError> {
    let decoded = event.decode::<OrderEvent>()?;
    Ok((OrderId::new(event.stream.aggregate_id()), decoded))
}

/// The stable name of an order event's type.
fn event_type(event: &OrderEvent) -> &'static str {
    es_core::EventSet::event_type(event)
}
