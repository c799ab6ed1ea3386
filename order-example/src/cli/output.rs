//! How things look: one-line descriptions of events, tables of read models, JSON views.

use std::io::Write;

use es_core::{RecordedEvent, Version};
use order_example::read_models::{CustomerOrderHistory, OrderSummary, StockLevel};
use order_example::{CustomerId, Money, Order, OrderEvent, OrderLine, OrderStatus, ProductId};
use serde::Serialize;
use serde_json::{json, Value};

/// `1234567` as `1,234,567`.
pub fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// `count` things done in `seconds`, per second, rounded (0 when no time passed).
pub fn per_second(count: u64, seconds: f64) -> u64 {
    if seconds <= 0.0 {
        return 0;
    }
    #[allow(clippy::cast_precision_loss)] // a rate for people to read
    let rate = count as f64 / seconds;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // positive, far below u64::MAX
    let rounded = rate.round() as u64;
    rounded
}

/// What an event says, in a few words.
pub fn describe(event: &OrderEvent) -> String {
    match event {
        OrderEvent::OrderCreated(e) => format!("created for customer {}", e.customer_id),
        OrderEvent::OrderItemAdded(e) => {
            format!(
                "added {} × {} at {}",
                e.quantity, e.product_id, e.unit_price
            )
        }
        OrderEvent::OrderItemRemoved(e) => {
            format!("removed {} ({} units)", e.product_id, e.quantity)
        }
        OrderEvent::PaymentProcessed(e) => format!("paid {}", e.amount),
        OrderEvent::OrderShipped(e) => format!("shipped, tracking number {}", e.tracking_number),
        OrderEvent::OrderCancelled(e) => format!("cancelled: {}", e.reason),
    }
}

/// The event's payload as JSON.
pub fn payload_json(event: &OrderEvent) -> serde_json::Result<Value> {
    match event {
        OrderEvent::OrderCreated(e) => serde_json::to_value(e),
        OrderEvent::OrderItemAdded(e) => serde_json::to_value(e),
        OrderEvent::OrderItemRemoved(e) => serde_json::to_value(e),
        OrderEvent::PaymentProcessed(e) => serde_json::to_value(e),
        OrderEvent::OrderShipped(e) => serde_json::to_value(e),
        OrderEvent::OrderCancelled(e) => serde_json::to_value(e),
    }
}

/// A recorded event with its envelope, as JSON.
pub fn recorded_json(recorded: &RecordedEvent, event: &OrderEvent) -> serde_json::Result<Value> {
    Ok(json!({
        "version": recorded.version,
        "global_position": recorded.global_position,
        "recorded_at": recorded.recorded_at,
        "event_id": recorded.event_id,
        "event_type": recorded.event_type,
        "schema_version": recorded.schema_version,
        "codec": recorded.codec.name(),
        "metadata": recorded.metadata,
        "payload": payload_json(event)?,
    }))
}

/// An order's state for JSON output.
#[derive(Serialize)]
pub struct OrderView<'a> {
    order_id: &'a str,
    version: Version,
    status: OrderStatus,
    customer_id: Option<&'a CustomerId>,
    lines: &'a std::collections::BTreeMap<ProductId, OrderLine>,
    item_count: u64,
    total: Money,
    paid: Option<Money>,
    tracking_number: Option<&'a str>,
    cancellation_reason: Option<&'a str>,
}

impl<'a> OrderView<'a> {
    pub fn new(order_id: &'a str, version: Version, order: &'a Order) -> Self {
        OrderView {
            order_id,
            version,
            status: order.status(),
            customer_id: order.customer_id(),
            lines: order.lines(),
            item_count: order.item_count(),
            total: order.total(),
            paid: order.paid(),
            tracking_number: order.tracking_number(),
            cancellation_reason: order.cancellation_reason(),
        }
    }
}

/// One product's stock for JSON output.
#[derive(Serialize)]
pub struct StockView<'a> {
    product_id: &'a ProductId,
    on_hand: i64,
    reserved: u64,
    available: u64,
    shipped: u64,
    shortage: u64,
    oversold: bool,
}

impl<'a> StockView<'a> {
    pub fn new(product_id: &'a ProductId, level: &StockLevel) -> Self {
        StockView {
            product_id,
            on_hand: level.on_hand,
            reserved: level.reserved,
            available: level.available(),
            shipped: level.shipped,
            shortage: level.shortage(),
            oversold: level.is_oversold(),
        }
    }
}

/// One customer's history for JSON output (without the full order list).
#[derive(Serialize)]
pub struct CustomerView<'a> {
    customer_id: &'a CustomerId,
    order_count: u64,
    paid_orders: u64,
    total_spent: Money,
    average_order_value: Option<Money>,
    cancellations: u64,
    orders: &'a [order_example::OrderId],
}

impl<'a> CustomerView<'a> {
    pub fn new(history: &'a CustomerOrderHistory) -> Self {
        CustomerView {
            customer_id: &history.customer_id,
            order_count: history.order_count(),
            paid_orders: history.paid_orders,
            total_spent: history.total_spent,
            average_order_value: history.average_order_value(),
            cancellations: history.cancellations,
            orders: &history.orders,
        }
    }
}

/// An order's state as text.
pub fn print_order(out: &mut impl Write, view: &OrderView<'_>) -> std::io::Result<()> {
    writeln!(
        out,
        "order {} at version {}: {}",
        view.order_id, view.version, view.status
    )?;
    if let Some(customer) = view.customer_id {
        writeln!(out, "  customer  {customer}")?;
    }
    for (product, line) in view.lines {
        writeln!(
            out,
            "  {:>4} × {:<14} at {:>9}  = {:>10}",
            line.quantity,
            product.as_str(),
            line.unit_price.to_string(),
            line.checked_total().unwrap_or(Money::ZERO).to_string()
        )?;
    }
    writeln!(
        out,
        "  total     {} ({} items)",
        view.total, view.item_count
    )?;
    if let Some(paid) = view.paid {
        writeln!(out, "  paid      {paid}")?;
    }
    if let Some(tracking) = view.tracking_number {
        writeln!(out, "  tracking  {tracking}")?;
    }
    if let Some(reason) = view.cancellation_reason {
        writeln!(out, "  cancelled {reason}")?;
    }
    Ok(())
}

/// A table of order summaries.
pub fn print_summaries<'a>(
    out: &mut impl Write,
    indent: &str,
    summaries: impl IntoIterator<Item = &'a OrderSummary>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{indent}{:<22} {:<14} {:<9} {:>5} {:>10}  UPDATED",
        "ORDER", "CUSTOMER", "STATUS", "ITEMS", "TOTAL"
    )?;
    for summary in summaries {
        writeln!(
            out,
            "{indent}{:<22} {:<14} {:<9} {:>5} {:>10}  {}",
            summary.order_id.as_str(),
            summary.customer_id.as_str(),
            summary.status.as_str(),
            summary.item_count,
            summary.total.to_string(),
            summary.updated_at
        )?;
    }
    Ok(())
}

/// A table of stock levels.
pub fn print_stock<'a>(
    out: &mut impl Write,
    indent: &str,
    levels: impl IntoIterator<Item = (&'a ProductId, StockLevel)>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{indent}{:<14} {:>8} {:>9} {:>10} {:>8}",
        "PRODUCT", "ON HAND", "RESERVED", "AVAILABLE", "SHIPPED"
    )?;
    let mut oversold = 0;
    for (product, level) in levels {
        let note = if level.is_oversold() {
            oversold += 1;
            "  oversold"
        } else if level.shortage() > 0 {
            "  back-ordered"
        } else {
            ""
        };
        writeln!(
            out,
            "{indent}{:<14} {:>8} {:>9} {:>10} {:>8}{note}",
            product.as_str(),
            level.on_hand,
            level.reserved,
            level.available(),
            level.shipped
        )?;
    }
    if oversold > 0 {
        writeln!(
            out,
            "{indent}warning: {oversold} product(s) shipped more than they had (a log written \
             before stock was kept per product); restock them"
        )?;
    }
    Ok(())
}

/// A table of customer histories.
pub fn print_customers<'a>(
    out: &mut impl Write,
    indent: &str,
    histories: impl IntoIterator<Item = &'a CustomerOrderHistory>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{indent}{:<14} {:>6} {:>5} {:>11} {:>9} {:>10}",
        "CUSTOMER", "ORDERS", "PAID", "SPENT", "AVERAGE", "CANCELLED"
    )?;
    for history in histories {
        let average = history
            .average_order_value()
            .map_or_else(|| "-".to_owned(), |average| average.to_string());
        writeln!(
            out,
            "{indent}{:<14} {:>6} {:>5} {:>11} {:>9} {:>10}",
            history.customer_id.as_str(),
            history.order_count(),
            history.paid_orders,
            history.total_spent.to_string(),
            average,
            history.cancellations
        )?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON and a newline.
pub fn print_json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    // As an `io::Error`, a closed pipe is recognised (see `is_broken_pipe`).
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn rates_are_rounded_and_zero_without_time() {
        assert_eq!(super::per_second(10, 4.0), 3);
        assert_eq!(super::per_second(10, 0.0), 0);
    }
}
