//! The three read models as SQL tables in the store's own database (`orders.db`, or the
//! PostgreSQL schema), updated exactly once by [table projections](es_core::projection::table):
//! each batch of events and the read model's checkpoint commit in one transaction.
//!
//! They hold what the in-memory read models hold, row by row, and any tool can query them:
//!
//! ```text
//! sqlite3 orders.db "SELECT order_id, status, total FROM order_summaries ORDER BY updated_at DESC LIMIT 5"
//! ```
//!
//! | read model | tables |
//! | --- | --- |
//! | [`OrderSummaryTable`] | `order_summaries` (one row per order), `order_summary_lines` (one per order and product) |
//! | [`InventoryTable`] | `inventory_levels` (one row per product), `inventory_reservations` (units each open order reserves), `inventory_open_orders`, `inventory_anomalies` (accepted facts that break the stock rules) |
//! | [`CustomerHistoryTable`] | `customer_histories` (one row per customer), `customer_history_orders` (each customer's orders in creation order), `customer_open_orders` |
//!
//! Money is `BIGINT` minor units, timestamps `BIGINT` microseconds since the Unix epoch,
//! statuses lowercase text (`open`, `paid`, `shipped`, `cancelled`). Each `apply` reads the
//! rows it changes, changes them with the same rules as the in-memory read model, and writes
//! them back, so both kinds agree after the same events (a test checks it on random
//! histories). An amount beyond `BIGINT` (above 2^63 - 1 minor units) is refused with
//! [`ReadModelError::OutOfRange`] instead of being stored wrong.

use std::collections::BTreeMap;

use es_core::projection::table::{Sql, SqlError, TableProjection, Value};
use es_core::{Aggregate, Event, RecordedEvent, Timestamp, Version};

use super::{decode, event_type, is_order_event, ReadModelError};
use crate::domain::{
    OrderEvent, OrderItemAdded, OrderItemRemoved, OrderLine, OrderStatus, PaymentProcessed,
    Product, ProductEvent, StockReceived,
};
use crate::read_models::{CustomerOrderHistory, OrderSummary, StockLevel};
use crate::values::{CustomerId, Money, OrderId, ProductId};

/// A count or amount as a SQL `BIGINT`.
fn bigint(value: u64, what: &'static str) -> Result<Value, ReadModelError> {
    i64::try_from(value)
        .map(Value::Integer)
        .map_err(|_| ReadModelError::OutOfRange { what, value })
}

fn money(value: Money, what: &'static str) -> Result<Value, ReadModelError> {
    bigint(value.minor_units(), what)
}

fn status_text(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::NotCreated => "not_created",
        OrderStatus::Open => "open",
        OrderStatus::Paid => "paid",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Cancelled => "cancelled",
    }
}

fn status_from_text(text: &str) -> Result<OrderStatus, SqlError> {
    Ok(match text {
        "not_created" => OrderStatus::NotCreated,
        "open" => OrderStatus::Open,
        "paid" => OrderStatus::Paid,
        "shipped" => OrderStatus::Shipped,
        "cancelled" => OrderStatus::Cancelled,
        _ => {
            return Err(SqlError::Column {
                index: 2,
                expected: "an order status",
                found: "other text",
            })
        }
    })
}

fn create_all(sql: &mut dyn Sql, statements: &[&str]) -> Result<(), SqlError> {
    for statement in statements {
        sql.execute(statement, &[])?;
    }
    Ok(())
}

/// [`OrderSummaries`](super::OrderSummaries) as the tables `order_summaries` and
/// `order_summary_lines`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderSummaryTable;

impl OrderSummaryTable {
    /// Every order's summary, by order id.
    ///
    /// # Errors
    /// A statement that fails, or a row that does not hold a summary.
    pub fn load_all(sql: &mut dyn Sql) -> Result<Vec<OrderSummary>, SqlError> {
        let mut lines: BTreeMap<String, BTreeMap<ProductId, OrderLine>> = BTreeMap::new();
        for row in sql.query(
            "SELECT order_id, product_id, quantity, unit_price FROM order_summary_lines",
            &[],
        )? {
            lines.entry(row.get(0)?).or_default().insert(
                ProductId::new(row.get::<String>(1)?),
                OrderLine {
                    quantity: row.get(2)?,
                    unit_price: Money::from_minor_units(row.get(3)?),
                },
            );
        }
        let mut summaries = Vec::new();
        for row in sql.query(
            "SELECT order_id, customer_id, status, item_count, total, paid, created_at, \
             updated_at, version FROM order_summaries",
            &[],
        )? {
            let order_id: String = row.get(0)?;
            summaries.push(OrderSummary {
                lines: lines.remove(&order_id).unwrap_or_default(),
                order_id: OrderId::new(order_id),
                customer_id: CustomerId::new(row.get::<String>(1)?),
                status: status_from_text(&row.get::<String>(2)?)?,
                item_count: row.get(3)?,
                total: Money::from_minor_units(row.get(4)?),
                paid: row.get::<Option<u64>>(5)?.map(Money::from_minor_units),
                created_at: Timestamp::from_micros(row.get(6)?),
                updated_at: Timestamp::from_micros(row.get(7)?),
                version: Version(row.get(8)?),
            });
        }
        summaries.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(summaries)
    }

    fn load(sql: &mut dyn Sql, order: &OrderId) -> Result<Option<OrderSummary>, SqlError> {
        let Some(row) = sql.query_optional(
            "SELECT customer_id, status, item_count, total, paid, created_at, updated_at, \
             version FROM order_summaries WHERE order_id = $1",
            &[order.as_str().into()],
        )?
        else {
            return Ok(None);
        };
        let mut lines = BTreeMap::new();
        for line in sql.query(
            "SELECT product_id, quantity, unit_price FROM order_summary_lines WHERE order_id = $1",
            &[order.as_str().into()],
        )? {
            lines.insert(
                ProductId::new(line.get::<String>(0)?),
                OrderLine {
                    quantity: line.get(1)?,
                    unit_price: Money::from_minor_units(line.get(2)?),
                },
            );
        }
        Ok(Some(OrderSummary {
            order_id: order.clone(),
            customer_id: CustomerId::new(row.get::<String>(0)?),
            status: status_from_text(&row.get::<String>(1)?)?,
            lines,
            item_count: row.get(2)?,
            total: Money::from_minor_units(row.get(3)?),
            paid: row.get::<Option<u64>>(4)?.map(Money::from_minor_units),
            created_at: Timestamp::from_micros(row.get(5)?),
            updated_at: Timestamp::from_micros(row.get(6)?),
            version: Version(row.get(7)?),
        }))
    }

    fn store(sql: &mut dyn Sql, summary: &OrderSummary) -> Result<(), ReadModelError> {
        let order = summary.order_id.as_str();
        sql.execute(
            "INSERT INTO order_summaries (order_id, customer_id, status, item_count, total, \
             paid, created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, \
             status = excluded.status, item_count = excluded.item_count, total = excluded.total, \
             paid = excluded.paid, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, version = excluded.version",
            &[
                order.into(),
                summary.customer_id.as_str().into(),
                status_text(summary.status).into(),
                bigint(summary.item_count, "item count")?,
                money(summary.total, "order total")?,
                match summary.paid {
                    Some(paid) => money(paid, "amount paid")?,
                    None => Value::Null,
                },
                summary.created_at.as_micros().into(),
                summary.updated_at.as_micros().into(),
                bigint(summary.version.get(), "version")?,
            ],
        )?;
        sql.execute(
            "DELETE FROM order_summary_lines WHERE order_id = $1",
            &[order.into()],
        )?;
        for (product, line) in &summary.lines {
            sql.execute(
                "INSERT INTO order_summary_lines (order_id, product_id, quantity, unit_price) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    order.into(),
                    product.as_str().into(),
                    line.quantity.into(),
                    money(line.unit_price, "unit price")?,
                ],
            )?;
        }
        Ok(())
    }
}

impl TableProjection for OrderSummaryTable {
    const NAME: &'static str = "order-summaries-sql";
    const TABLES: &'static [&'static str] = &["order_summaries", "order_summary_lines"];
    type Error = ReadModelError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        create_all(
            sql,
            &[
                "CREATE TABLE IF NOT EXISTS order_summaries (order_id TEXT PRIMARY KEY, \
                 customer_id TEXT NOT NULL, status TEXT NOT NULL, item_count BIGINT NOT NULL, \
                 total BIGINT NOT NULL, paid BIGINT, created_at BIGINT NOT NULL, \
                 updated_at BIGINT NOT NULL, version BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS order_summaries_by_customer \
                 ON order_summaries (customer_id)",
                "CREATE TABLE IF NOT EXISTS order_summary_lines (order_id TEXT NOT NULL, \
                 product_id TEXT NOT NULL, quantity BIGINT NOT NULL, \
                 unit_price BIGINT NOT NULL, PRIMARY KEY (order_id, product_id))",
            ],
        )
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        is_order_event(event)
    }

    fn apply(&self, recorded: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), ReadModelError> {
        let (order_id, event) = decode(recorded)?;
        if let OrderEvent::OrderCreated(created) = &event {
            let summary = OrderSummary {
                order_id,
                customer_id: created.customer_id.clone(),
                status: OrderStatus::Open,
                lines: BTreeMap::new(),
                item_count: 0,
                total: Money::ZERO,
                paid: None,
                created_at: recorded.recorded_at,
                updated_at: recorded.recorded_at,
                version: recorded.version,
            };
            return OrderSummaryTable::store(sql, &summary);
        }
        let Some(mut summary) = OrderSummaryTable::load(sql, &order_id)? else {
            return Err(ReadModelError::UnknownOrder {
                order: order_id,
                event_type: event_type(&event),
            });
        };
        summary.apply_change(event);
        summary.updated_at = recorded.recorded_at;
        summary.version = recorded.version;
        OrderSummaryTable::store(sql, &summary)
    }
}

/// [`Inventory`](super::Inventory) as the tables `inventory_levels`,
/// `inventory_reservations`, `inventory_open_orders` and `inventory_anomalies`, with the same
/// initial stock configuration.
#[derive(Clone, Debug, Default)]
pub struct InventoryTable {
    default_stock: u64,
    initial_stock: BTreeMap<ProductId, u64>,
}

/// One `inventory_levels` row as the rules change it.
#[derive(Clone, Copy, Debug, Default)]
struct ProductRow {
    received: Option<u64>,
    reserved: u64,
    shipped: u64,
}

impl InventoryTable {
    /// An inventory in which every product starts with `default_stock` units.
    #[must_use]
    pub fn new(default_stock: u64) -> Self {
        InventoryTable {
            default_stock,
            initial_stock: BTreeMap::new(),
        }
    }

    /// This inventory with `product` starting at `units` instead of the default.
    #[must_use]
    pub fn with_stock(mut self, product: ProductId, units: u64) -> Self {
        self.initial_stock.insert(product, units);
        self
    }

    /// Every product with its stock, by product id.
    ///
    /// # Errors
    /// A statement that fails, or a row that does not hold a stock level.
    pub fn levels(sql: &mut dyn Sql) -> Result<Vec<(ProductId, StockLevel)>, SqlError> {
        let mut levels = Vec::new();
        for row in sql.query(
            "SELECT product_id, on_hand, reserved, shipped FROM inventory_levels",
            &[],
        )? {
            levels.push((
                ProductId::new(row.get::<String>(0)?),
                StockLevel {
                    on_hand: row.get(1)?,
                    reserved: row.get(2)?,
                    shipped: row.get(3)?,
                },
            ));
        }
        levels.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(levels)
    }

    /// The units each open order reserves, per product.
    ///
    /// # Errors
    /// A statement that fails, or a row that does not hold a reservation.
    pub fn reservations(
        sql: &mut dyn Sql,
    ) -> Result<BTreeMap<OrderId, BTreeMap<ProductId, u64>>, SqlError> {
        let mut reservations: BTreeMap<OrderId, BTreeMap<ProductId, u64>> = BTreeMap::new();
        for row in sql.query("SELECT order_id FROM inventory_open_orders", &[])? {
            reservations.insert(OrderId::new(row.get::<String>(0)?), BTreeMap::new());
        }
        for row in sql.query(
            "SELECT order_id, product_id, units FROM inventory_reservations",
            &[],
        )? {
            reservations
                .entry(OrderId::new(row.get::<String>(0)?))
                .or_default()
                .insert(ProductId::new(row.get::<String>(1)?), row.get(2)?);
        }
        Ok(reservations)
    }

    /// How many recorded facts broke the stock rules.
    ///
    /// # Errors
    /// A statement that fails.
    pub fn anomalies(sql: &mut dyn Sql) -> Result<u64, SqlError> {
        sql.query("SELECT COUNT(*) FROM inventory_anomalies", &[])?
            .first()
            .map_or(Ok(0), |row| row.get(0))
    }

    fn starting_stock(&self, product: &ProductId, row: &ProductRow) -> u64 {
        row.received.unwrap_or_else(|| {
            self.initial_stock
                .get(product)
                .copied()
                .unwrap_or(self.default_stock)
        })
    }

    fn level(&self, product: &ProductId, row: &ProductRow) -> StockLevel {
        let start = i64::try_from(self.starting_stock(product, row)).unwrap_or(i64::MAX);
        StockLevel {
            on_hand: start.saturating_sub(i64::try_from(row.shipped).unwrap_or(i64::MAX)),
            reserved: row.reserved,
            shipped: row.shipped,
        }
    }

    fn load(sql: &mut dyn Sql, product: &ProductId) -> Result<ProductRow, SqlError> {
        Ok(
            match sql.query_optional(
                "SELECT received, reserved, shipped FROM inventory_levels WHERE product_id = $1",
                &[product.as_str().into()],
            )? {
                Some(row) => ProductRow {
                    received: row.get(0)?,
                    reserved: row.get(1)?,
                    shipped: row.get(2)?,
                },
                None => ProductRow::default(),
            },
        )
    }

    fn store(
        &self,
        sql: &mut dyn Sql,
        product: &ProductId,
        row: &ProductRow,
    ) -> Result<(), ReadModelError> {
        let level = self.level(product, row);
        sql.execute(
            "INSERT INTO inventory_levels (product_id, received, reserved, shipped, on_hand, \
             available) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_id) DO UPDATE SET \
             received = excluded.received, reserved = excluded.reserved, \
             shipped = excluded.shipped, on_hand = excluded.on_hand, \
             available = excluded.available",
            &[
                product.as_str().into(),
                match row.received {
                    Some(received) => bigint(received, "units received")?,
                    None => Value::Null,
                },
                bigint(row.reserved, "units reserved")?,
                bigint(row.shipped, "units shipped")?,
                level.on_hand.into(),
                bigint(level.available(), "units available")?,
            ],
        )?;
        Ok(())
    }

    fn is_open(sql: &mut dyn Sql, order: &OrderId) -> Result<bool, SqlError> {
        Ok(sql
            .query_optional(
                "SELECT 1 FROM inventory_open_orders WHERE order_id = $1",
                &[order.as_str().into()],
            )?
            .is_some())
    }

    fn open(sql: &mut dyn Sql, order: &OrderId) -> Result<(), SqlError> {
        sql.execute(
            "INSERT INTO inventory_open_orders (order_id) VALUES ($1) \
             ON CONFLICT (order_id) DO NOTHING",
            &[order.as_str().into()],
        )?;
        Ok(())
    }

    fn anomaly(
        sql: &mut dyn Sql,
        recorded: &RecordedEvent,
        order: &OrderId,
        what: &str,
    ) -> Result<(), ReadModelError> {
        tracing::warn!(%order, "inventory accepts a recorded fact that breaks the stock rules: {what}");
        sql.execute(
            "INSERT INTO inventory_anomalies (position, order_id, description) VALUES ($1, $2, $3)",
            &[
                bigint(recorded.global_position.get(), "position")?,
                order.as_str().into(),
                what.into(),
            ],
        )?;
        Ok(())
    }

    /// Releases (or, if `ship`, consumes) every unit `order` reserves.
    fn close(
        &self,
        sql: &mut dyn Sql,
        recorded: &RecordedEvent,
        order: &OrderId,
        ship: bool,
        kind: &'static str,
    ) -> Result<(), ReadModelError> {
        if !InventoryTable::is_open(sql, order)? {
            return InventoryTable::anomaly(
                sql,
                recorded,
                order,
                &format!("`{kind}` for an order with no open reservation"),
            );
        }
        let mut lines = Vec::new();
        for row in sql.query(
            "SELECT product_id, units FROM inventory_reservations WHERE order_id = $1",
            &[order.as_str().into()],
        )? {
            lines.push((ProductId::new(row.get::<String>(0)?), row.get::<u64>(1)?));
        }
        lines.sort();
        sql.execute(
            "DELETE FROM inventory_reservations WHERE order_id = $1",
            &[order.as_str().into()],
        )?;
        sql.execute(
            "DELETE FROM inventory_open_orders WHERE order_id = $1",
            &[order.as_str().into()],
        )?;
        for (product, units) in lines {
            let mut row = InventoryTable::load(sql, &product)?;
            let before = self.level(&product, &row);
            row.reserved = row.reserved.saturating_sub(units);
            if ship {
                row.shipped = row.shipped.saturating_add(units);
            }
            self.store(sql, &product, &row)?;
            if ship && before.on_hand < i64::try_from(units).unwrap_or(i64::MAX) {
                InventoryTable::anomaly(
                    sql,
                    recorded,
                    order,
                    &format!(
                        "ships {units} of `{product}` with {} on hand (oversold)",
                        before.on_hand
                    ),
                )?;
            }
        }
        Ok(())
    }
}

impl TableProjection for InventoryTable {
    const NAME: &'static str = "inventory-sql";
    const TABLES: &'static [&'static str] = &[
        "inventory_levels",
        "inventory_reservations",
        "inventory_open_orders",
        "inventory_anomalies",
    ];
    type Error = ReadModelError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        create_all(
            sql,
            &[
                "CREATE TABLE IF NOT EXISTS inventory_levels (product_id TEXT PRIMARY KEY, \
                 received BIGINT, reserved BIGINT NOT NULL, shipped BIGINT NOT NULL, \
                 on_hand BIGINT NOT NULL, available BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS inventory_reservations (order_id TEXT NOT NULL, \
                 product_id TEXT NOT NULL, units BIGINT NOT NULL, \
                 PRIMARY KEY (order_id, product_id))",
                "CREATE TABLE IF NOT EXISTS inventory_open_orders (order_id TEXT PRIMARY KEY)",
                "CREATE TABLE IF NOT EXISTS inventory_anomalies (position BIGINT NOT NULL, \
                 order_id TEXT NOT NULL, description TEXT NOT NULL)",
            ],
        )
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        (is_order_event(event) && event.event_type != PaymentProcessed::NAME)
            || (event.stream.aggregate_type() == <Product as Aggregate>::TYPE
                && event.event_type == StockReceived::NAME)
    }

    fn apply(&self, recorded: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), ReadModelError> {
        if !is_order_event(recorded) {
            let product = ProductId::new(recorded.stream.aggregate_id());
            if let ProductEvent::StockReceived(received) = recorded.decode::<ProductEvent>()? {
                let mut row = InventoryTable::load(sql, &product)?;
                row.received = Some(row.received.unwrap_or(0).saturating_add(received.quantity));
                self.store(sql, &product, &row)?;
            }
            return Ok(());
        }
        let (order, event) = decode(recorded)?;
        let kind = event_type(&event);
        match event {
            OrderEvent::OrderCreated(_) => {
                sql.execute(
                    "DELETE FROM inventory_reservations WHERE order_id = $1",
                    &[order.as_str().into()],
                )?;
                InventoryTable::open(sql, &order)?;
            }
            OrderEvent::OrderItemAdded(added) => {
                if !InventoryTable::is_open(sql, &order)? {
                    InventoryTable::anomaly(
                        sql,
                        recorded,
                        &order,
                        &format!("`{kind}` for an order never created"),
                    )?;
                    InventoryTable::open(sql, &order)?;
                }
                let units = u64::from(added.quantity);
                let line: u64 = sql
                    .query_optional(
                        "SELECT units FROM inventory_reservations \
                         WHERE order_id = $1 AND product_id = $2",
                        &[order.as_str().into(), added.product_id.as_str().into()],
                    )?
                    .map_or(Ok(0), |row| row.get(0))?;
                sql.execute(
                    "INSERT INTO inventory_reservations (order_id, product_id, units) \
                     VALUES ($1, $2, $3) ON CONFLICT (order_id, product_id) \
                     DO UPDATE SET units = excluded.units",
                    &[
                        order.as_str().into(),
                        added.product_id.as_str().into(),
                        bigint(line.saturating_add(units), "units reserved")?,
                    ],
                )?;
                let mut row = InventoryTable::load(sql, &added.product_id)?;
                row.reserved = row.reserved.saturating_add(units);
                self.store(sql, &added.product_id, &row)?;
            }
            OrderEvent::OrderItemRemoved(removed) => {
                let units: Option<u64> = sql
                    .query_optional(
                        "SELECT units FROM inventory_reservations \
                         WHERE order_id = $1 AND product_id = $2",
                        &[order.as_str().into(), removed.product_id.as_str().into()],
                    )?
                    .map(|row| row.get(0))
                    .transpose()?;
                match units {
                    Some(units) => {
                        sql.execute(
                            "DELETE FROM inventory_reservations \
                             WHERE order_id = $1 AND product_id = $2",
                            &[order.as_str().into(), removed.product_id.as_str().into()],
                        )?;
                        let mut row = InventoryTable::load(sql, &removed.product_id)?;
                        row.reserved = row.reserved.saturating_sub(units);
                        self.store(sql, &removed.product_id, &row)?;
                    }
                    None => InventoryTable::anomaly(
                        sql,
                        recorded,
                        &order,
                        &format!("removes `{}`, which it never reserved", removed.product_id),
                    )?,
                }
            }
            OrderEvent::PaymentProcessed(_) => {}
            OrderEvent::OrderShipped(_) => self.close(sql, recorded, &order, true, kind)?,
            OrderEvent::OrderCancelled(_) => self.close(sql, recorded, &order, false, kind)?,
        }
        Ok(())
    }
}

/// [`CustomerHistories`](super::CustomerHistories) as the tables `customer_histories`,
/// `customer_history_orders` and `customer_open_orders`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CustomerHistoryTable;

impl CustomerHistoryTable {
    /// Every customer's history, by customer id.
    ///
    /// # Errors
    /// A statement that fails, or a row that does not hold a history.
    pub fn load_all(sql: &mut dyn Sql) -> Result<Vec<CustomerOrderHistory>, SqlError> {
        let ids: Vec<String> = sql
            .query("SELECT customer_id FROM customer_histories", &[])?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()?;
        let mut histories = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(history) = CustomerHistoryTable::load(sql, &CustomerId::new(id))? {
                histories.push(history);
            }
        }
        histories.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        Ok(histories)
    }

    fn load(
        sql: &mut dyn Sql,
        customer: &CustomerId,
    ) -> Result<Option<CustomerOrderHistory>, SqlError> {
        let Some(row) = sql.query_optional(
            "SELECT paid_orders, total_spent, cancellations, first_order_at, last_order_at \
             FROM customer_histories WHERE customer_id = $1",
            &[customer.as_str().into()],
        )?
        else {
            return Ok(None);
        };
        let orders = sql
            .query(
                "SELECT order_id FROM customer_history_orders WHERE customer_id = $1 ORDER BY seq",
                &[customer.as_str().into()],
            )?
            .iter()
            .map(|row| row.get::<String>(0).map(OrderId::new))
            .collect::<Result<_, _>>()?;
        Ok(Some(CustomerOrderHistory {
            customer_id: customer.clone(),
            orders,
            paid_orders: row.get(0)?,
            total_spent: Money::from_minor_units(row.get(1)?),
            cancellations: row.get(2)?,
            first_order_at: Timestamp::from_micros(row.get(3)?),
            last_order_at: Timestamp::from_micros(row.get(4)?),
        }))
    }

    /// Writes the history's own row (its orders are appended one by one).
    fn store(sql: &mut dyn Sql, history: &CustomerOrderHistory) -> Result<(), ReadModelError> {
        sql.execute(
            "INSERT INTO customer_histories (customer_id, order_count, paid_orders, \
             total_spent, cancellations, average_order_value, first_order_at, last_order_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (customer_id) DO UPDATE SET \
             order_count = excluded.order_count, paid_orders = excluded.paid_orders, \
             total_spent = excluded.total_spent, cancellations = excluded.cancellations, \
             average_order_value = excluded.average_order_value, \
             first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at",
            &[
                history.customer_id.as_str().into(),
                bigint(history.order_count(), "order count")?,
                bigint(history.paid_orders, "paid orders")?,
                money(history.total_spent, "total spent")?,
                bigint(history.cancellations, "cancellations")?,
                match history.average_order_value() {
                    Some(average) => money(average, "average order value")?,
                    None => Value::Null,
                },
                history.first_order_at.as_micros().into(),
                history.last_order_at.as_micros().into(),
            ],
        )?;
        Ok(())
    }

    /// The open order's customer and payment, or the error for an order not open.
    fn open_order(
        sql: &mut dyn Sql,
        order: OrderId,
        kind: &'static str,
    ) -> Result<(CustomerId, Option<Money>), ReadModelError> {
        match sql.query_optional(
            "SELECT customer_id, paid FROM customer_open_orders WHERE order_id = $1",
            &[order.as_str().into()],
        )? {
            Some(row) => Ok((
                CustomerId::new(row.get::<String>(0)?),
                row.get::<Option<u64>>(1)?.map(Money::from_minor_units),
            )),
            None => Err(ReadModelError::UnknownOrder {
                order,
                event_type: kind,
            }),
        }
    }

    fn close(sql: &mut dyn Sql, order: &OrderId) -> Result<(), SqlError> {
        sql.execute(
            "DELETE FROM customer_open_orders WHERE order_id = $1",
            &[order.as_str().into()],
        )?;
        Ok(())
    }

    fn history(sql: &mut dyn Sql, customer: &CustomerId) -> Result<CustomerOrderHistory, SqlError> {
        Ok(
            CustomerHistoryTable::load(sql, customer)?.unwrap_or_else(|| CustomerOrderHistory {
                customer_id: customer.clone(),
                orders: Vec::new(),
                paid_orders: 0,
                total_spent: Money::ZERO,
                cancellations: 0,
                first_order_at: Timestamp::EPOCH,
                last_order_at: Timestamp::EPOCH,
            }),
        )
    }
}

impl TableProjection for CustomerHistoryTable {
    const NAME: &'static str = "customer-histories-sql";
    const TABLES: &'static [&'static str] = &[
        "customer_histories",
        "customer_history_orders",
        "customer_open_orders",
    ];
    type Error = ReadModelError;

    fn create_tables(&self, sql: &mut dyn Sql) -> Result<(), SqlError> {
        create_all(
            sql,
            &[
                "CREATE TABLE IF NOT EXISTS customer_histories (customer_id TEXT PRIMARY KEY, \
                 order_count BIGINT NOT NULL, paid_orders BIGINT NOT NULL, \
                 total_spent BIGINT NOT NULL, cancellations BIGINT NOT NULL, \
                 average_order_value BIGINT, first_order_at BIGINT NOT NULL, \
                 last_order_at BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS customer_history_orders (customer_id TEXT NOT NULL, \
                 seq BIGINT NOT NULL, order_id TEXT NOT NULL, PRIMARY KEY (customer_id, seq))",
                "CREATE TABLE IF NOT EXISTS customer_open_orders (order_id TEXT PRIMARY KEY, \
                 customer_id TEXT NOT NULL, paid BIGINT)",
            ],
        )
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        is_order_event(event)
            && event.event_type != OrderItemAdded::NAME
            && event.event_type != OrderItemRemoved::NAME
    }

    fn apply(&self, recorded: &RecordedEvent, sql: &mut dyn Sql) -> Result<(), ReadModelError> {
        let (order, event) = decode(recorded)?;
        let kind = event_type(&event);
        match event {
            OrderEvent::OrderCreated(created) => {
                let mut history = CustomerHistoryTable::history(sql, &created.customer_id)?;
                if history.orders.is_empty() {
                    history.first_order_at = recorded.recorded_at;
                }
                history.last_order_at = recorded.recorded_at;
                let seq = history.order_count();
                history.orders.push(order.clone());
                CustomerHistoryTable::store(sql, &history)?;
                sql.execute(
                    "INSERT INTO customer_history_orders (customer_id, seq, order_id) \
                     VALUES ($1, $2, $3)",
                    &[
                        created.customer_id.as_str().into(),
                        bigint(seq, "order count")?,
                        order.as_str().into(),
                    ],
                )?;
                sql.execute(
                    "INSERT INTO customer_open_orders (order_id, customer_id, paid) \
                     VALUES ($1, $2, NULL) ON CONFLICT (order_id) DO UPDATE SET \
                     customer_id = excluded.customer_id, paid = excluded.paid",
                    &[order.as_str().into(), created.customer_id.as_str().into()],
                )?;
            }
            OrderEvent::PaymentProcessed(payment) => {
                let (customer, _) = CustomerHistoryTable::open_order(sql, order.clone(), kind)?;
                sql.execute(
                    "UPDATE customer_open_orders SET paid = $2 WHERE order_id = $1",
                    &[order.as_str().into(), money(payment.amount, "payment")?],
                )?;
                let mut history = CustomerHistoryTable::history(sql, &customer)?;
                history.paid_orders += 1;
                history.total_spent = history
                    .total_spent
                    .checked_add(payment.amount)
                    .unwrap_or(Money::from_minor_units(u64::MAX));
                CustomerHistoryTable::store(sql, &history)?;
            }
            OrderEvent::OrderShipped(_) => {
                CustomerHistoryTable::open_order(sql, order.clone(), kind)?;
                CustomerHistoryTable::close(sql, &order)?;
            }
            OrderEvent::OrderCancelled(_) => {
                let (customer, paid) = CustomerHistoryTable::open_order(sql, order.clone(), kind)?;
                CustomerHistoryTable::close(sql, &order)?;
                let mut history = CustomerHistoryTable::history(sql, &customer)?;
                history.cancellations += 1;
                if let Some(refund) = paid {
                    history.paid_orders = history.paid_orders.saturating_sub(1);
                    history.total_spent = history
                        .total_spent
                        .checked_sub(refund)
                        .unwrap_or(Money::ZERO);
                }
                CustomerHistoryTable::store(sql, &history)?;
            }
            OrderEvent::OrderItemAdded(_) | OrderEvent::OrderItemRemoved(_) => {}
        }
        Ok(())
    }
}
