//! Commands: pure decisions. Each checks the business rules against the current state and
//! returns the events that record the decision, or the rule it breaks. Nothing changes until
//! the events are applied ([`AggregateRoot::execute`](es_core::AggregateRoot::execute)) and
//! saved ([`Repository::save`](es_core::Repository::save)); a command may run again on a
//! reloaded order after a version conflict.

use super::events::{
    OrderCancelled, OrderCreated, OrderItemAdded, OrderItemRemoved, OrderShipped, PaymentProcessed,
};
use super::order::{Order, OrderStatus};
use super::OrderEvent;
use crate::values::{CustomerId, Money, ProductId};

/// A business rule refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The order has no events yet: create it first.
    #[error("the order does not exist")]
    MissingOrder,
    /// The order already exists.
    #[error("the order already exists")]
    DuplicateOrder,
    /// The order is shipped or cancelled: nothing about it can change any more.
    #[error("the order is {status} and can no longer change")]
    ClosedOrder {
        /// Shipped or cancelled.
        status: OrderStatus,
    },
    /// The order is paid: its items are fixed.
    #[error("the order is paid, so its items can no longer change")]
    ChangeAfterPayment,
    /// Items are added at least one unit at a time.
    #[error("the quantity must be at least 1")]
    ZeroQuantity,
    /// The product is already in the order at another price.
    #[error("`{product}` is in the order at {current} per unit, not {requested}")]
    PriceChange {
        /// The product.
        product: ProductId,
        /// Its unit price in the order.
        current: Money,
        /// The unit price asked for.
        requested: Money,
    },
    /// The quantity or the total would not fit in its integer type.
    #[error("the order would be too large (quantity or total out of range)")]
    Overflow,
    /// The product to remove is not in the order.
    #[error("`{product}` is not in the order")]
    MissingItem {
        /// The product.
        product: ProductId,
    },
    /// An order with no items cannot be paid.
    #[error("the order has no items to pay for")]
    EmptyOrder,
    /// A payment must be exactly the order's total.
    #[error("a payment of {amount} does not match the order total of {total}")]
    PaymentMismatch {
        /// The order's total.
        total: Money,
        /// The amount offered.
        amount: Money,
    },
    /// The order is already paid.
    #[error("the order is already paid")]
    DuplicatePayment,
    /// Only a paid order ships.
    #[error("the order is not paid, so it cannot ship")]
    UnpaidShipment,
}

type Decision = Result<Vec<OrderEvent>, OrderError>;

impl Order {
    /// Opens the order for `customer_id`.
    ///
    /// # Errors
    /// [`OrderError::DuplicateOrder`] if it already exists.
    pub fn create(&self, customer_id: CustomerId) -> Decision {
        if self.status != OrderStatus::NotCreated {
            return Err(OrderError::DuplicateOrder);
        }
        Ok(vec![OrderCreated { customer_id }.into()])
    }

    /// Adds `quantity` units of a product at `unit_price`; a product already in the order gets
    /// its line's quantity raised.
    ///
    /// # Errors
    /// The order must be open (not missing, not paid, not shipped or cancelled);
    /// [`OrderError::ZeroQuantity`] for no units, [`OrderError::PriceChange`] for a product
    /// already in the order at another price, [`OrderError::Overflow`] for a total out of
    /// range.
    pub fn add_item(&self, product_id: ProductId, quantity: u32, unit_price: Money) -> Decision {
        self.ensure_items_can_change()?;
        if quantity == 0 {
            return Err(OrderError::ZeroQuantity);
        }
        let line_quantity = match self.lines.get(&product_id) {
            Some(line) if line.unit_price != unit_price => {
                return Err(OrderError::PriceChange {
                    product: product_id,
                    current: line.unit_price,
                    requested: unit_price,
                });
            }
            Some(line) => line.quantity.checked_add(quantity),
            None => Some(quantity),
        };
        let others = self
            .lines
            .iter()
            .filter(|(product, _)| **product != product_id)
            .try_fold(Money::ZERO, |sum, (_, line)| {
                sum.checked_add(line.checked_total()?)
            });
        line_quantity
            .and_then(|quantity| unit_price.checked_times(quantity))
            .zip(others)
            .and_then(|(line, others)| line.checked_add(others))
            .ok_or(OrderError::Overflow)?;
        Ok(vec![OrderItemAdded {
            product_id,
            quantity,
            unit_price,
        }
        .into()])
    }

    /// Takes a product's whole line out of the order.
    ///
    /// # Errors
    /// The order must be open; [`OrderError::MissingItem`] if the product is not in it.
    pub fn remove_item(&self, product_id: ProductId) -> Decision {
        self.ensure_items_can_change()?;
        let Some(line) = self.lines.get(&product_id) else {
            return Err(OrderError::MissingItem {
                product: product_id,
            });
        };
        Ok(vec![OrderItemRemoved {
            quantity: line.quantity,
            product_id,
        }
        .into()])
    }

    /// Records the payment of the order's total.
    ///
    /// # Errors
    /// [`OrderError::DuplicatePayment`] for a second payment, [`OrderError::EmptyOrder`] for an
    /// order without items, [`OrderError::PaymentMismatch`] unless `amount` is exactly the
    /// total; a missing, shipped or cancelled order cannot be paid.
    pub fn pay(&self, amount: Money) -> Decision {
        match self.status {
            OrderStatus::NotCreated => return Err(OrderError::MissingOrder),
            OrderStatus::Paid => return Err(OrderError::DuplicatePayment),
            status @ (OrderStatus::Shipped | OrderStatus::Cancelled) => {
                return Err(OrderError::ClosedOrder { status });
            }
            OrderStatus::Open => {}
        }
        if self.lines.is_empty() {
            return Err(OrderError::EmptyOrder);
        }
        let total = self.checked_total().ok_or(OrderError::Overflow)?;
        if amount != total {
            return Err(OrderError::PaymentMismatch { total, amount });
        }
        Ok(vec![PaymentProcessed { amount }.into()])
    }

    /// Records that the order left the warehouse.
    ///
    /// # Errors
    /// [`OrderError::UnpaidShipment`] unless the order is paid; a missing, shipped or
    /// cancelled order cannot ship.
    pub fn ship(&self, tracking_number: impl Into<String>) -> Decision {
        match self.status {
            OrderStatus::Paid => Ok(vec![OrderShipped {
                tracking_number: tracking_number.into(),
            }
            .into()]),
            OrderStatus::NotCreated => Err(OrderError::MissingOrder),
            OrderStatus::Open => Err(OrderError::UnpaidShipment),
            status @ (OrderStatus::Shipped | OrderStatus::Cancelled) => {
                Err(OrderError::ClosedOrder { status })
            }
        }
    }

    /// Cancels the order (a paid order is refunded outside this domain).
    ///
    /// # Errors
    /// A missing order cannot be cancelled; a shipped or cancelled one is
    /// [`OrderError::ClosedOrder`].
    pub fn cancel(&self, reason: impl Into<String>) -> Decision {
        match self.status {
            OrderStatus::Open | OrderStatus::Paid => Ok(vec![OrderCancelled {
                reason: reason.into(),
            }
            .into()]),
            OrderStatus::NotCreated => Err(OrderError::MissingOrder),
            status @ (OrderStatus::Shipped | OrderStatus::Cancelled) => {
                Err(OrderError::ClosedOrder { status })
            }
        }
    }

    fn ensure_items_can_change(&self) -> Result<(), OrderError> {
        match self.status {
            OrderStatus::Open => Ok(()),
            OrderStatus::NotCreated => Err(OrderError::MissingOrder),
            OrderStatus::Paid => Err(OrderError::ChangeAfterPayment),
            status @ (OrderStatus::Shipped | OrderStatus::Cancelled) => {
                Err(OrderError::ClosedOrder { status })
            }
        }
    }
}

/// One command as data, so it can be generated, logged or sent: the load generator and the
/// property tests script orders with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderCommand {
    /// [`Order::create`].
    Create {
        /// Who the order is for.
        customer_id: CustomerId,
    },
    /// [`Order::add_item`].
    AddItem {
        /// The product.
        product_id: ProductId,
        /// Units to add.
        quantity: u32,
        /// Price of one unit.
        unit_price: Money,
    },
    /// [`Order::remove_item`].
    RemoveItem {
        /// The product.
        product_id: ProductId,
    },
    /// [`Order::pay`].
    Pay {
        /// The amount paid.
        amount: Money,
    },
    /// [`Order::ship`].
    Ship {
        /// The carrier's tracking number.
        tracking_number: String,
    },
    /// [`Order::cancel`].
    Cancel {
        /// Why.
        reason: String,
    },
}

impl OrderCommand {
    /// Runs the command against `order`: the events it records, or the rule it breaks.
    ///
    /// # Errors
    /// The [`OrderError`] of the matching method of [`Order`].
    pub fn decide(&self, order: &Order) -> Decision {
        match self {
            OrderCommand::Create { customer_id } => order.create(customer_id.clone()),
            OrderCommand::AddItem {
                product_id,
                quantity,
                unit_price,
            } => order.add_item(product_id.clone(), *quantity, *unit_price),
            OrderCommand::RemoveItem { product_id } => order.remove_item(product_id.clone()),
            OrderCommand::Pay { amount } => order.pay(*amount),
            OrderCommand::Ship { tracking_number } => order.ship(tracking_number.clone()),
            OrderCommand::Cancel { reason } => order.cancel(reason.clone()),
        }
    }
}
