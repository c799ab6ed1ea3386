//! A deterministic workload: realistic order histories generated from a seed, for
//! benchmarks, demos and the program's `generate` command.
//!
//! The same seed always gives the same orders, ids and commands, whatever this crate's
//! dependencies: the generator is a `SplitMix64` written here, not a library RNG whose stream
//! may change between versions.
//!
//! Every script is valid: its commands pass the business rules, and an order ships only while
//! the stock it tracks covers the order (otherwise it is cancelled as out of stock), so an
//! [`Inventory`] starting from the same stock never goes below zero.
//!
//! ```
//! use order_example::load::Workload;
//!
//! let first: Vec<_> = Workload::new(7).take(3).collect();
//! let again: Vec<_> = Workload::new(7).take(3).collect();
//! assert_eq!(first, again);
//! assert_eq!(first[0].order_id.as_str(), "load-7-0000001");
//! ```

use std::collections::BTreeMap;

use crate::domain::OrderCommand;
use crate::read_models::Inventory;
use crate::values::{CustomerId, Money, OrderId, ProductId};

/// Products in the generated catalogue.
pub const PRODUCTS: u64 = 20;
/// Customers orders are generated for.
pub const CUSTOMERS: u64 = 200;
/// The stock of each product when none is given: enough for about 5,000 orders.
pub const DEFAULT_STOCK: u64 = 5_000;

/// The commands of one order, in the batches they are saved in (each batch is one append).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderScript {
    /// The order.
    pub order_id: OrderId,
    /// The first batch creates the order and fills the cart; the second, if any, pays and
    /// ships or cancels.
    pub batches: Vec<Vec<OrderCommand>>,
}

impl OrderScript {
    /// How many commands (and so events) the script records.
    #[must_use]
    pub fn command_count(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }
}

/// The id of product number `index` (from 0) of the generated catalogue.
#[must_use]
pub fn product_id(index: u64) -> ProductId {
    ProductId::new(format!("sku-{:03}", index + 1))
}

/// The unit price of product number `index` of the generated catalogue: 2.49 to 99.99.
#[must_use]
pub fn unit_price(index: u64) -> Money {
    Money::from_minor_units(249 + (index * 7_919) % 9_751)
}

/// An endless, deterministic stream of valid [`OrderScript`]s.
#[derive(Clone, Debug)]
pub struct Workload {
    random: SplitMix64,
    prefix: String,
    generated: u64,
    on_hand: BTreeMap<ProductId, u64>,
    default_stock: u64,
}

impl Workload {
    /// Scripts from `seed`, with order ids `load-{seed}-0000001`, ... and every product
    /// starting with [`DEFAULT_STOCK`] units.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Workload {
            random: SplitMix64(seed),
            prefix: format!("load-{seed}-"),
            generated: 0,
            on_hand: BTreeMap::new(),
            default_stock: DEFAULT_STOCK,
        }
    }

    /// This workload with every product starting with `units` units.
    #[must_use]
    pub fn with_default_stock(mut self, units: u64) -> Self {
        self.default_stock = units;
        self
    }

    /// This workload starting from the units on hand in `inventory` (for products it has
    /// seen) minus what is already reserved, so the shipments it adds never exceed the stock.
    #[must_use]
    pub fn with_stock_from(mut self, inventory: &Inventory) -> Self {
        for index in 0..PRODUCTS {
            let product = product_id(index);
            let level = inventory.level(&product);
            self.on_hand.insert(product, level.available());
        }
        self
    }

    fn next_below(&mut self, bound: u64) -> u64 {
        self.random.next_u64() % bound
    }

    fn script(&mut self) -> OrderScript {
        self.generated += 1;
        let order_id = OrderId::new(format!("{}{:07}", self.prefix, self.generated));
        let customer_id =
            CustomerId::new(format!("customer-{:04}", self.next_below(CUSTOMERS) + 1));

        let mut cart = vec![OrderCommand::Create { customer_id }];
        let mut lines: Vec<(u64, u32)> = Vec::new();
        let wanted = 1 + self.next_below(4);
        while (lines.len() as u64) < wanted {
            let product = self.next_below(PRODUCTS);
            if lines.iter().any(|(p, _)| *p == product) {
                continue;
            }
            let quantity = 1 + u32::try_from(self.next_below(5)).unwrap_or(0);
            lines.push((product, quantity));
            cart.push(OrderCommand::AddItem {
                product_id: product_id(product),
                quantity,
                unit_price: unit_price(product),
            });
        }
        if lines.len() > 1 && self.next_below(5) == 0 {
            let (product, _) = lines.remove(0);
            cart.push(OrderCommand::RemoveItem {
                product_id: product_id(product),
            });
        }

        let total = lines
            .iter()
            .map(|(product, quantity)| unit_price(*product).checked_times(*quantity))
            .try_fold(Money::ZERO, |sum, line| sum.checked_add(line?))
            .unwrap_or(Money::ZERO);
        let mut checkout = Vec::new();
        match self.next_below(100) {
            0..5 => {} // still open
            5..15 => checkout.push(cancel("customer changed their mind")),
            15..20 => checkout.push(OrderCommand::Pay { amount: total }),
            20..25 => {
                checkout.push(OrderCommand::Pay { amount: total });
                checkout.push(cancel("payment refunded"));
            }
            _ => {
                checkout.push(OrderCommand::Pay { amount: total });
                if self.take_stock(&lines) {
                    checkout.push(OrderCommand::Ship {
                        tracking_number: format!("TRK{:010}", self.next_below(10_000_000_000)),
                    });
                } else {
                    checkout.push(cancel("out of stock"));
                }
            }
        }
        let mut batches = vec![cart];
        if !checkout.is_empty() {
            batches.push(checkout);
        }
        OrderScript { order_id, batches }
    }

    /// Takes the units of `lines` from the tracked stock if all of them are there.
    fn take_stock(&mut self, lines: &[(u64, u32)]) -> bool {
        let default_stock = self.default_stock;
        let enough = lines.iter().all(|(product, quantity)| {
            self.on_hand
                .get(&product_id(*product))
                .copied()
                .unwrap_or(default_stock)
                >= u64::from(*quantity)
        });
        if enough {
            for (product, quantity) in lines {
                let units = self
                    .on_hand
                    .entry(product_id(*product))
                    .or_insert(default_stock);
                *units -= u64::from(*quantity);
            }
        }
        enough
    }
}

fn cancel(reason: &str) -> OrderCommand {
    OrderCommand::Cancel {
        reason: reason.to_owned(),
    }
}

impl Iterator for Workload {
    type Item = OrderScript;

    fn next(&mut self) -> Option<OrderScript> {
        Some(self.script())
    }
}

/// `SplitMix64` (Steele, Lea and Flood): tiny, fast, and its output for a seed never changes.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Order, OrderStatus};
    use es_core::AggregateRoot;

    #[test]
    fn splitmix_matches_the_reference_output() {
        // The first outputs of the reference implementation for seed 1234567.
        let mut random = SplitMix64(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| random.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn every_script_passes_the_business_rules() {
        let mut statuses = BTreeMap::new();
        for script in Workload::new(42).take(2_000) {
            let mut root = AggregateRoot::<Order>::new(script.order_id.as_str());
            for command in script.batches.iter().flatten() {
                root.execute(|order| command.decide(order))
                    .unwrap_or_else(|error| panic!("{}: {command:?}: {error}", script.order_id));
            }
            assert_eq!(root.pending_events().len(), script.command_count());
            *statuses.entry(root.state().status().as_str()).or_insert(0) += 1;
        }
        for status in [
            OrderStatus::Open,
            OrderStatus::Paid,
            OrderStatus::Shipped,
            OrderStatus::Cancelled,
        ] {
            assert!(
                statuses.contains_key(status.as_str()),
                "no {status} order in {statuses:?}"
            );
        }
    }

    #[test]
    fn shipments_stop_when_the_stock_runs_out() {
        let scripts: Vec<_> = Workload::new(3).with_default_stock(10).take(500).collect();
        let mut shipped: BTreeMap<ProductId, u64> = BTreeMap::new();
        let mut out_of_stock = 0;
        for script in &scripts {
            let mut root = AggregateRoot::<Order>::new(script.order_id.as_str());
            for command in script.batches.iter().flatten() {
                root.execute(|order| command.decide(order)).unwrap();
            }
            let order = root.state();
            if order.status() == OrderStatus::Shipped {
                for (product, line) in order.lines() {
                    *shipped.entry(product.clone()).or_default() += u64::from(line.quantity);
                }
            }
            if order.cancellation_reason() == Some("out of stock") {
                out_of_stock += 1;
            }
        }
        assert!(shipped.values().all(|&units| units <= 10), "{shipped:?}");
        assert!(out_of_stock > 0);
    }
}
