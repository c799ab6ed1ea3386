//! Fulfillment: order commands that take or give back stock, saved together with the
//! products' stock events in one atomic multi-stream append.
//!
//! | order command | product effect, same append |
//! |---|---|
//! | add an item | [`Product::reserve`] the units ([`StockError::OutOfStock`] refuses the command) |
//! | remove an item | [`Product::release`] the line's units |
//! | cancel | release every line's units |
//! | ship | [`Product::ship`] every line's units |
//! | create, pay | none |
//!
//! Each attempt loads the order and every product it touches, decides, stages them all in a
//! [`UnitOfWork`] and commits: the order and the products are each checked against the
//! version they were loaded at. A writer that lost a race on *any* of them (another process
//! reserved the same product) gets a conflict, nothing of its decision is stored, and it
//! reloads and decides again on the new stock (up to the [`RetryPolicy`]'s attempts). Stock
//! therefore never goes below zero, whatever the number of concurrent writers or processes.
//!
//! ```
//! use es_core::InMemory;
//! use order_example::fulfillment::{Fulfillment, FulfillmentError};
//! use order_example::{CustomerId, Money, OrderCommand, OrderId, ProductId, StockError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shop = Fulfillment::new(InMemory::new()).with_initial_stock(3);
//! let (mug, price) = (ProductId::new("mug"), Money::from_minor_units(1_250));
//! let add = |quantity| OrderCommand::AddItem { product_id: mug.clone(), quantity, unit_price: price };
//! let create = OrderCommand::Create { customer_id: CustomerId::new("alice") };
//!
//! shop.execute(&OrderId::new("o-1"), &[create.clone(), add(2)]).await?;
//! assert_eq!(shop.products().load("mug").await?.state().available(), 1);
//!
//! // Two more mugs: refused, and nothing of the order is stored.
//! let refused = shop.execute(&OrderId::new("o-2"), &[create, add(2)]).await;
//! assert!(refused.is_err_and(|error| FulfillmentError::is_out_of_stock_error(&error)));
//! assert_eq!(shop.orders().load("o-2").await?.version().get(), 0);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use es_core::{
    retry_on_conflict, AggregateRoot, AppendOutcome, CommandError, EventStore, Repository,
    RetryPolicy, SnapshotStore, UnitOfWork, Version,
};

use crate::domain::{Order, OrderCommand, OrderError, OrderStatus, Product, StockError};
use crate::values::{OrderId, ProductId};

#[cfg(test)]
mod tests;

/// Why a fulfillment command was refused: an order rule or a stock rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FulfillmentError {
    /// The order refused the command.
    #[error(transparent)]
    Order(#[from] OrderError),
    /// A product refused the stock change (most often: out of stock).
    #[error(transparent)]
    Stock(#[from] StockError),
}

impl FulfillmentError {
    /// Whether the command was refused because a product had too few units available.
    #[must_use]
    pub fn is_out_of_stock(&self) -> bool {
        matches!(self, FulfillmentError::Stock(StockError::OutOfStock { .. }))
    }

    /// Whether `error` is a refusal for lack of stock.
    #[must_use]
    pub fn is_out_of_stock_error(error: &CommandError<FulfillmentError>) -> bool {
        matches!(error, CommandError::Rejected(refusal) if refusal.is_out_of_stock())
    }
}

/// What [`Fulfillment::execute`] saved.
#[derive(Debug)]
#[non_exhaustive]
pub struct Fulfilled {
    /// The order after the save.
    pub order: AggregateRoot<Order>,
    /// One outcome per stream written (the order first, then the products, by id); empty
    /// when the commands recorded nothing.
    pub outcomes: Vec<AppendOutcome>,
    /// How many events were appended, over every stream.
    pub events: u64,
    /// How many times the commands ran: 1 unless a race with another writer was lost.
    pub attempts: u32,
}

/// Runs order commands with their stock effects, atomically: see the [module docs](self).
#[derive(Debug)]
pub struct Fulfillment<S: EventStore + SnapshotStore + Clone> {
    orders: Repository<Order, S>,
    products: Repository<Product, S>,
    initial_stock: Option<u64>,
    retry: RetryPolicy,
}

/// A stock change an order command implies for one product.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Reserve(u64),
    Release(u64),
    Ship(u64),
}

impl<S: EventStore + SnapshotStore + Clone> Fulfillment<S> {
    /// Orders and products in `store`; a product with no history has no stock until it
    /// receives some ([`Fulfillment::receive`] or [`Fulfillment::with_initial_stock`]).
    pub fn new(store: S) -> Self {
        Fulfillment {
            orders: Repository::new(store.clone()),
            products: Repository::new(store),
            initial_stock: None,
            retry: RetryPolicy::attempts(100),
        }
    }

    /// Stocks a product that has no history with `units` the first time an order reserves
    /// it (a `StockReceived` in the same atomic append: only one writer can do it).
    #[must_use]
    pub fn with_initial_stock(mut self, units: u64) -> Self {
        self.initial_stock = (units > 0).then_some(units);
        self
    }

    /// Retries conflicting commands as `policy` says (by default up to 100 attempts with
    /// jittered backoff: a popular product is contended by every writer).
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The order repository.
    pub fn orders(&self) -> &Repository<Order, S> {
        &self.orders
    }

    /// The product repository.
    pub fn products(&self) -> &Repository<Product, S> {
        &self.products
    }

    /// Units `product` receives (a restock).
    ///
    /// # Errors
    /// [`CommandError::Rejected`] with [`StockError::ZeroQuantity`] or an overflow, and the
    /// repository's errors.
    pub async fn receive(
        &self,
        product: &ProductId,
        units: u64,
    ) -> Result<AggregateRoot<Product>, CommandError<FulfillmentError>> {
        retry_on_conflict(self.retry, |_| async move {
            let mut stock = self.products.load(product.as_str()).await?;
            stock
                .execute(|state| state.receive(product, units))
                .map_err(|refusal| CommandError::Rejected(refusal.into()))?;
            self.products.save(&mut stock).await?;
            Ok(stock)
        })
        .await
    }

    /// Runs `commands` in order on `order` and the stock effects they imply on the products
    /// (see the [module docs](self)), and saves them all in one atomic append; on a version
    /// conflict, reloads everything and runs them again.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] with the first rule broken (an order rule, or
    /// [`StockError::OutOfStock`]): nothing is saved. [`CommandError::RetriesExhausted`] when
    /// every attempt lost a race, and the repository's errors.
    pub async fn execute(
        &self,
        order: &OrderId,
        commands: &[OrderCommand],
    ) -> Result<Fulfilled, CommandError<FulfillmentError>> {
        retry_on_conflict(self.retry, |attempt| async move {
            let (order, outcomes, events) = self.attempt(order, commands).await?;
            Ok(Fulfilled {
                order,
                outcomes,
                events,
                attempts: attempt,
            })
        })
        .await
    }

    /// One load-decide-commit of [`Fulfillment::execute`].
    async fn attempt(
        &self,
        order_id: &OrderId,
        commands: &[OrderCommand],
    ) -> Result<(AggregateRoot<Order>, Vec<AppendOutcome>, u64), CommandError<FulfillmentError>>
    {
        let mut order = self.orders.load(order_id.as_str()).await?;
        let mut products: BTreeMap<ProductId, AggregateRoot<Product>> = BTreeMap::new();
        for command in commands {
            let effects = effects(order.state(), command);
            order
                .execute(|state| command.decide(state))
                .map_err(|refusal| CommandError::Rejected(refusal.into()))?;
            for (product, effect) in effects {
                if !products.contains_key(&product) {
                    let loaded = self.products.load(product.as_str()).await?;
                    products.insert(product.clone(), loaded);
                }
                let Some(stock) = products.get_mut(&product) else {
                    continue;
                };
                self.apply(stock, &product, order_id, effect)
                    .map_err(|refusal| CommandError::Rejected(refusal.into()))?;
            }
        }
        let events = order.pending_events().len()
            + products
                .values()
                .map(|stock| stock.pending_events().len())
                .sum::<usize>();
        let mut unit = UnitOfWork::new();
        self.orders.stage(&mut unit, &mut order)?;
        for stock in products.values_mut() {
            self.products.stage(&mut unit, stock)?;
        }
        let outcomes = unit.commit(self.orders.store()).await?;
        Ok((order, outcomes, events as u64))
    }

    fn apply(
        &self,
        stock: &mut AggregateRoot<Product>,
        product: &ProductId,
        order: &OrderId,
        effect: Effect,
    ) -> Result<(), StockError> {
        if let (Effect::Reserve(_), Some(units)) = (effect, self.initial_stock) {
            let unstocked = stock.version() == Version::INITIAL && !stock.has_pending_events();
            if unstocked {
                stock.execute(|state| state.receive(product, units))?;
            }
        }
        stock.execute(|state| match effect {
            Effect::Reserve(units) => state.reserve(product, order, units),
            Effect::Release(units) => state.release(product, order, units),
            Effect::Ship(units) => state.ship(product, order, units),
        })?;
        Ok(())
    }
}

/// The stock changes `command` implies on `order` as it is before the command runs. A
/// command the order will refuse implies none that matter: the refusal stops everything.
fn effects(order: &Order, command: &OrderCommand) -> Vec<(ProductId, Effect)> {
    let lines = |make: fn(u64) -> Effect| -> Vec<(ProductId, Effect)> {
        order
            .lines()
            .iter()
            .map(|(product, line)| (product.clone(), make(u64::from(line.quantity))))
            .collect()
    };
    match command {
        OrderCommand::AddItem {
            product_id,
            quantity,
            ..
        } => vec![(product_id.clone(), Effect::Reserve(u64::from(*quantity)))],
        OrderCommand::RemoveItem { product_id } => order
            .lines()
            .get(product_id)
            .map(|line| {
                (
                    product_id.clone(),
                    Effect::Release(u64::from(line.quantity)),
                )
            })
            .into_iter()
            .collect(),
        OrderCommand::Cancel { .. } if !order.status().is_final() => lines(Effect::Release),
        OrderCommand::Ship { .. } if order.status() == OrderStatus::Paid => lines(Effect::Ship),
        OrderCommand::Create { .. }
        | OrderCommand::Pay { .. }
        | OrderCommand::Cancel { .. }
        | OrderCommand::Ship { .. } => Vec::new(),
    }
}
