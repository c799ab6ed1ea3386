//! The read side from the command line: keep the read models current, show them (now or in
//! the past), rebuild them.

use std::io::Write as _;
use std::time::Instant;

use anyhow::Context as _;
use es_core::projection::table::{TableProjection, TableStore as _, Tables};
use es_core::projection::{CatchUpReport, HistoricalView};
use es_core::{
    AsOf, CodecId, EventStore, GlobalPosition, Projection, ProjectionRegistry, Timestamp,
};
use order_example::read_models::tables::{CustomerHistoryTable, InventoryTable, OrderSummaryTable};
use order_example::read_models::{
    self, CustomerHistories, CustomerOrderHistory, Inventory, OrderSummaries, OrderSummary,
    StockLevel,
};
use order_example::{CustomerId, OrderId, ProductId};
use serde_json::json;

use super::output::{self, CustomerView, StockView};
use super::Context;

/// Saved read models are encoded compactly; `--json` output is built from the typed models.
const SAVED_CODEC: CodecId = CodecId::Postcard;

/// A registry of the three read models with the configured initial stock.
pub fn registry(context: &Context) -> anyhow::Result<ProjectionRegistry> {
    Ok(read_models::registry(Inventory::new(
        context.initial_stock,
    ))?)
}

/// The read models restored from the store and caught up with the log (progress bar when there
/// is much to do). Nothing is written: commands that write save them with [`save`], so a
/// restart only applies what is new.
pub async fn current(context: &Context) -> anyhow::Result<(ProjectionRegistry, CatchUpReport)> {
    let mut registry = registry(context)?;
    registry
        .restore_from(&context.store)
        .await
        .context("cannot restore the saved read models")?;
    let saved_stock = registry.get::<Inventory>().map(Inventory::default_stock);
    if saved_stock != Some(context.initial_stock) {
        // Saved under another --initial-stock: its numbers do not hold, and resetting would
        // keep the saved configuration. Start over from a fresh registry.
        registry = self::registry(context)?;
    }
    let behind = context
        .store
        .last_position()
        .await?
        .get()
        .saturating_sub(registry.position().get());
    let bar = (behind > 10_000).then(|| context.progress_bar(behind, "events"));
    let start = registry.position().get();
    let report = registry
        .catch_up_with_progress(&context.store, |progress| {
            if let Some(bar) = &bar {
                bar.set_position(progress.position.get().saturating_sub(start));
            }
        })
        .await
        .context("cannot update the read models")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((registry, report))
}

/// The three read models as SQL tables in the store's database, opened (tables created if
/// missing) at their durable checkpoints.
async fn tables(
    context: &Context,
) -> anyhow::Result<(
    Tables<OrderSummaryTable>,
    Tables<InventoryTable>,
    Tables<CustomerHistoryTable>,
)> {
    let database = context.store.table_database();
    let open = "cannot open the read model tables";
    Ok((
        Tables::open(OrderSummaryTable, database.clone())
            .await
            .context(open)?,
        Tables::open(InventoryTable::new(context.initial_stock), database.clone())
            .await
            .context(open)?,
        Tables::open(CustomerHistoryTable, database)
            .await
            .context(open)?,
    ))
}

/// Applies what is new to the read models' SQL tables (each page one transaction with its
/// checkpoint).
pub async fn catch_up_tables(context: &Context) -> anyhow::Result<()> {
    let (summaries, inventory, histories) = tables(context).await?;
    let failed = "cannot update the read model tables";
    summaries.catch_up(&context.store).await.context(failed)?;
    inventory.catch_up(&context.store).await.context(failed)?;
    histories.catch_up(&context.store).await.context(failed)?;
    Ok(())
}

/// Rebuilds the read models' SQL tables, each in one transaction (readers see the old rows
/// until it commits); their names.
async fn rebuild_tables(context: &Context) -> anyhow::Result<[&'static str; 3]> {
    let (summaries, inventory, histories) = tables(context).await?;
    let failed = "cannot rebuild the read model tables";
    summaries.rebuild(&context.store).await.context(failed)?;
    inventory.rebuild(&context.store).await.context(failed)?;
    histories.rebuild(&context.store).await.context(failed)?;
    Ok([
        OrderSummaryTable::NAME,
        InventoryTable::NAME,
        CustomerHistoryTable::NAME,
    ])
}

/// Saves the read models and their checkpoints in the store.
pub async fn save(context: &Context, registry: &ProjectionRegistry) -> anyhow::Result<()> {
    registry
        .save_to(&context.store, SAVED_CODEC)
        .await
        .context("cannot save the read models")
}

/// Which rows `read-models` shows.
pub struct Filter {
    pub order: Option<String>,
    pub customer: Option<String>,
    pub product: Option<String>,
    pub limit: usize,
}

/// Read access to the three read models, live or historical.
pub trait ReadModels {
    /// The read model `P`, or an error naming it if it is not registered.
    fn model<P: Projection>(&self) -> anyhow::Result<&P>;
}

impl ReadModels for ProjectionRegistry {
    fn model<P: Projection>(&self) -> anyhow::Result<&P> {
        self.get::<P>()
            .with_context(|| format!("read model `{}` is not registered", P::NAME))
    }
}

impl ReadModels for HistoricalView {
    fn model<P: Projection>(&self) -> anyhow::Result<&P> {
        self.get::<P>()
            .with_context(|| format!("read model `{}` is not registered", P::NAME))
    }
}

/// Shows the read models: current, or as of `at` / `position`.
pub async fn show(
    context: &Context,
    at: Option<Timestamp>,
    position: Option<GlobalPosition>,
    filter: &Filter,
) -> anyhow::Result<()> {
    let as_of = match (at, position) {
        (Some(at), _) => Some(AsOf::Time(at)),
        (None, Some(position)) => Some(AsOf::Position(position)),
        (None, None) => None,
    };
    let Some(as_of) = as_of else {
        let (live, report) = current(context).await?;
        let heading = format!(
            "read models at position {} ({} new events applied)",
            live.position(),
            output::thousands(report.events)
        );
        return print_models(context, &live, live.position(), None, filter, &heading);
    };
    // A temporal query replays the log into fresh read models: the saved ones do not help.
    let view = registry(context)?
        .as_of(&context.store, as_of)
        .await
        .context("cannot build the read models as of that point")?;
    let heading = format!("read models as of {as_of}");
    print_models(
        context,
        &view,
        view.position(),
        Some(as_of),
        filter,
        &heading,
    )
}

/// The rows `read-models` shows.
struct Rows<'a> {
    orders: Vec<&'a OrderSummary>,
    products: Vec<(ProductId, StockLevel)>,
    customers: Vec<&'a CustomerOrderHistory>,
}

impl Filter {
    /// Whether any of `--order`, `--customer`, `--product` is given.
    fn is_narrowed(&self) -> bool {
        self.order.is_some() || self.customer.is_some() || self.product.is_some()
    }

    /// The rows to show: the filtered ones, or else the most recent orders, the products in
    /// name order and the customers who spent most, `limit` of each.
    fn select<'a>(
        &self,
        summaries: &'a OrderSummaries,
        inventory: &Inventory,
        histories: &'a CustomerHistories,
    ) -> anyhow::Result<Rows<'a>> {
        let narrowed = self.is_narrowed();
        let mut orders: Vec<_> = match &self.order {
            Some(order) => {
                let summary = summaries.get(&OrderId::new(order.as_str()));
                vec![summary.with_context(|| format!("no order `{order}` in the read models"))?]
            }
            None if narrowed => Vec::new(),
            None => summaries.iter().collect(),
        };
        orders.sort_by_key(|summary| std::cmp::Reverse(summary.updated_at));
        orders.truncate(self.limit);
        let products = match &self.product {
            Some(product) => {
                let product = ProductId::new(product.as_str());
                let level = inventory.level(&product);
                vec![(product, level)]
            }
            None if narrowed => Vec::new(),
            None => inventory
                .levels()
                .take(self.limit)
                .map(|(product, level)| (product.clone(), level))
                .collect(),
        };
        let mut customers: Vec<_> = match &self.customer {
            Some(customer) => {
                let history = histories.get(&CustomerId::new(customer.as_str()));
                vec![history
                    .with_context(|| format!("no customer `{customer}` in the read models"))?]
            }
            None if narrowed => Vec::new(),
            None => histories.iter().collect(),
        };
        customers.sort_by_key(|history| std::cmp::Reverse(history.total_spent));
        customers.truncate(self.limit);
        Ok(Rows {
            orders,
            products,
            customers,
        })
    }
}

fn print_models(
    context: &Context,
    models: &impl ReadModels,
    position: GlobalPosition,
    as_of: Option<AsOf>,
    filter: &Filter,
    heading: &str,
) -> anyhow::Result<()> {
    let summaries = models.model::<OrderSummaries>()?;
    let inventory = models.model::<Inventory>()?;
    let histories = models.model::<CustomerHistories>()?;
    let rows = filter.select(summaries, inventory, histories)?;

    let mut out = super::terminal::stdout(context.json);
    if context.json {
        let stock: Vec<_> = rows
            .products
            .iter()
            .map(|(product, level)| StockView::new(product, level))
            .collect();
        let customers: Vec<_> = rows
            .customers
            .iter()
            .map(|h| CustomerView::new(h))
            .collect();
        return output::print_json(
            &mut out,
            &json!({
                "position": position,
                "as_of": as_of.map(|as_of| as_of.to_string()),
                "order_count": summaries.len(),
                "customer_count": histories.len(),
                "orders": rows.orders,
                "inventory": stock,
                "customers": customers,
            }),
        );
    }
    writeln!(out, "{heading}\n")?;
    let everything = !filter.is_narrowed();
    if everything || filter.order.is_some() {
        writeln!(
            out,
            "Order summaries ({} orders)",
            output::thousands(summaries.len() as u64)
        )?;
        output::print_summaries(&mut out, "  ", rows.orders.iter().copied())?;
        writeln!(out)?;
    }
    if everything || filter.product.is_some() {
        writeln!(out, "Inventory")?;
        output::print_stock(
            &mut out,
            "  ",
            rows.products
                .iter()
                .map(|(product, level)| (product, *level)),
        )?;
        writeln!(out)?;
    }
    if everything || filter.customer.is_some() {
        writeln!(
            out,
            "Customer order histories ({} customers)",
            output::thousands(histories.len() as u64)
        )?;
        output::print_customers(&mut out, "  ", rows.customers.iter().copied())?;
    }
    Ok(())
}

/// Resets the read models, replays the whole log into them with a progress bar, saves them.
pub async fn rebuild(context: &Context) -> anyhow::Result<()> {
    let mut registry = registry(context)?;
    let end = context.store.last_position().await?;
    let bar = context.progress_bar(end.get(), "events");
    let started = Instant::now();
    let report = registry
        .rebuild_with_progress(&context.store, |progress| {
            bar.set_position(progress.position.get());
        })
        .await
        .context("cannot rebuild the read models")?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    save(context, &registry).await?;
    let tables = rebuild_tables(context).await?;

    let seconds = elapsed.as_secs_f64();
    let rate = output::per_second(report.events, seconds);
    let mut out = super::terminal::stdout(context.json);
    if context.json {
        return output::print_json(
            &mut out,
            &json!({
                "events": report.events,
                "position": report.position,
                "seconds": seconds,
                "events_per_second": rate,
                "read_models": registry.checkpoints().map(|(name, _)| name).collect::<Vec<_>>(),
                "tables": tables,
            }),
        );
    }
    writeln!(
        out,
        "rebuilt {} read models from {} events in {:.2} s ({} events/s); saved at position {}",
        registry.len(),
        output::thousands(report.events),
        seconds,
        output::thousands(rate),
        report.position
    )?;
    writeln!(
        out,
        "rebuilt their SQL tables too ({}), each in one transaction",
        tables.join(", ")
    )?;
    Ok(())
}
