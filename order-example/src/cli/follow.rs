//! The live read side: `follow` runs the projection daemon on the store and prints the read
//! models as they move (Ctrl-C stops it, checkpoints saved); `status` shows, from the store,
//! where each read model is and whether one is parked (it works from another terminal).

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use es_core::projection::daemon::{DaemonBuilder, DaemonClient, ModelState, ReadModelStatus};
use es_core::projection::table::TableStore as _;
use es_core::{GlobalPosition, ProjectionDaemon};
use order_example::read_models::tables::{CustomerHistoryTable, InventoryTable, OrderSummaryTable};
use order_example::read_models::{CustomerHistories, Inventory, OrderSummaries};
use order_example::OrderStatus;
use serde::Serialize;
use serde_json::json;

use super::{output, Context};

/// How often `follow` prints at most.
const PRINT_INTERVAL: Duration = Duration::from_millis(250);

/// What `follow` is asked to do besides following.
pub struct FollowOptions {
    /// Stop once every read model has reached this position.
    pub until: Option<GlobalPosition>,
    /// Parked read models to resume at start.
    pub resume: Vec<String>,
    /// `NAME=POSITION`: parked read models whose failing event to skip at start.
    pub skip: Vec<String>,
}

/// The daemon with the three read models (the saved inventory keeps the stock it was built
/// with; a new one starts with `--initial-stock`).
pub(super) fn builder(context: &Context) -> anyhow::Result<DaemonBuilder> {
    Ok(ProjectionDaemon::builder()
        .with(OrderSummaries::default())?
        .with(Inventory::new(context.initial_stock))?
        .with(CustomerHistories::default())?)
}

/// `builder` with the three read models as SQL tables too, in the store's own database (so
/// `sqlite3 orders.db` or `psql` can query them), each batch committed with its checkpoint.
pub(super) fn with_tables(
    builder: DaemonBuilder,
    context: &Context,
) -> anyhow::Result<DaemonBuilder> {
    let database = context.store.table_database();
    Ok(builder
        .with_table(OrderSummaryTable, database.clone())?
        .with_table(InventoryTable::new(context.initial_stock), database.clone())?
        .with_table(CustomerHistoryTable, database)?)
}

/// One printed update: where the read models are and what they hold.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Update {
    /// The lowest checkpoint.
    position: GlobalPosition,
    orders: usize,
    open: usize,
    paid: usize,
    shipped: usize,
    cancelled: usize,
    customers: usize,
    reserved_units: u64,
    shipped_units: u64,
    states: Vec<(String, ModelState)>,
}

impl Update {
    fn read(client: &DaemonClient) -> anyhow::Result<Update> {
        let statuses = client.status();
        let position = statuses
            .iter()
            .map(|status| status.checkpoint)
            .min()
            .unwrap_or_default();
        let (orders, open, paid, shipped, cancelled) = client.read(|s: &OrderSummaries| {
            let count = |status| s.by_status(status).count();
            (
                s.len(),
                count(OrderStatus::Open),
                count(OrderStatus::Paid),
                count(OrderStatus::Shipped),
                count(OrderStatus::Cancelled),
            )
        })?;
        let (reserved_units, shipped_units) = client.read(|inventory: &Inventory| {
            inventory
                .levels()
                .fold((0, 0), |(reserved, shipped), (_, level)| {
                    (reserved + level.reserved, shipped + level.shipped)
                })
        })?;
        let customers = client.read(|histories: &CustomerHistories| histories.len())?;
        Ok(Update {
            position,
            orders,
            open,
            paid,
            shipped,
            cancelled,
            customers,
            reserved_units,
            shipped_units,
            states: statuses
                .into_iter()
                .map(|status| (status.name, status.state))
                .collect(),
        })
    }

    fn print(&self, context: &Context, previous: Option<&Update>) -> anyhow::Result<()> {
        let mut out = super::terminal::stdout(context.json);
        if context.json {
            serde_json::to_writer(&mut out, self).map_err(std::io::Error::from)?;
            writeln!(out)?;
            return Ok(out.flush()?);
        }
        let new = previous.map_or(self.position.get(), |previous| {
            self.position.get().saturating_sub(previous.position.get())
        });
        writeln!(
            out,
            "position {} (+{}): {} orders ({} open, {} paid, {} shipped, {} cancelled), {} customers, {} units reserved, {} shipped",
            output::thousands(self.position.get()),
            output::thousands(new),
            output::thousands(self.orders as u64),
            output::thousands(self.open as u64),
            output::thousands(self.paid as u64),
            output::thousands(self.shipped as u64),
            output::thousands(self.cancelled as u64),
            output::thousands(self.customers as u64),
            output::thousands(self.reserved_units),
            output::thousands(self.shipped_units),
        )?;
        for (name, state) in &self.states {
            let before = previous.and_then(|previous| {
                previous
                    .states
                    .iter()
                    .find(|(other, _)| other == name)
                    .map(|(_, state)| state)
            });
            let notable = !matches!(state, ModelState::Running | ModelState::CatchingUp);
            if notable && before != Some(state) {
                writeln!(out, "  {name}: {state}")?;
            }
        }
        Ok(out.flush()?)
    }
}

/// `follow`: runs the daemon until Ctrl-C (or `--until`), printing the read models as they
/// move; the checkpoints are saved when it stops.
pub async fn follow(context: &Context, options: FollowOptions) -> anyhow::Result<()> {
    let daemon = with_tables(builder(context)?, context)?
        .start(context.store.clone())
        .await
        .context("cannot start the projection daemon")?;
    let outcome = run(context, &daemon, &options).await;
    let stopped = daemon
        .shutdown()
        .await
        .context("the projection daemon failed");
    outcome?;
    stopped?;
    print_stopped(context).await
}

/// Prints where the read models stopped, as saved by the daemon's shutdown.
pub(super) async fn print_stopped(context: &Context) -> anyhow::Result<()> {
    let statuses = builder(context)?
        .saved_status(&context.store)
        .await
        .context("cannot read the saved checkpoints")?;
    let position = statuses
        .iter()
        .map(|status| status.checkpoint)
        .min()
        .unwrap_or_default();
    if context.json {
        let mut out = super::terminal::stdout(context.json);
        serde_json::to_writer(&mut out, &json!({ "stopped_at": position }))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        println!(
            "stopped; checkpoints saved at position {}",
            output::thousands(position.get())
        );
    }
    Ok(())
}

/// Resumes and skips as asked, then prints the read models as they move until Ctrl-C, the
/// daemon's end, or `--until`.
pub(super) async fn run(
    context: &Context,
    daemon: &ProjectionDaemon,
    options: &FollowOptions,
) -> anyhow::Result<()> {
    for name in &options.resume {
        daemon
            .resume(name)
            .await
            .with_context(|| format!("cannot resume `{name}`"))?;
    }
    for spec in &options.skip {
        let (name, position) = spec
            .split_once('=')
            .and_then(|(name, position)| Some((name, position.parse::<u64>().ok()?)))
            .with_context(|| format!("invalid --skip `{spec}`: expected NAME=POSITION"))?;
        daemon
            .skip(name, GlobalPosition(position))
            .await
            .with_context(|| format!("cannot skip position {position} of `{name}`"))?;
    }
    let client = daemon.client();
    if !context.json {
        println!(
            "following {} with {} read models; Ctrl-C stops",
            context.store,
            client.status().len()
        );
    }
    let mut updates = client.updates();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut printed: Option<Update> = None;
    loop {
        let update = Update::read(&client)?;
        if printed.as_ref() != Some(&update) {
            update.print(context, printed.as_ref())?;
            printed = Some(update);
        }
        if let Some(until) = options.until {
            let statuses = client.status();
            if statuses.iter().all(|status| status.checkpoint >= until) {
                return Ok(());
            }
            // Once no read model is between retries, a parked one below `until` means it
            // will not get there.
            let retrying = statuses
                .iter()
                .any(|status| matches!(status.state, ModelState::Retrying { .. }));
            let blocked = statuses.iter().find(|status| status_blocks(status, until));
            if let (Some(parked), false) = (blocked, retrying) {
                bail!(
                    "read model `{}` is {}; it will not reach position {until}",
                    parked.name,
                    parked.state
                );
            }
        }
        if daemon.is_finished() {
            return Ok(());
        }
        tokio::select! {
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                return Ok(());
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
        // Print at most a few times a second, still stopping at once on Ctrl-C.
        tokio::select! {
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                return Ok(());
            }
            () = tokio::time::sleep(PRINT_INTERVAL) => {}
        }
    }
}

fn status_blocks(status: &ReadModelStatus, until: GlobalPosition) -> bool {
    status.state.is_parked() && status.checkpoint < until
}

/// `status`: each read model's checkpoint, the head, the lag and the state, as the last
/// daemon recorded them in the store (read only).
pub async fn status(context: &Context) -> anyhow::Result<()> {
    let statuses = with_tables(builder(context)?, context)?
        .saved_status(&context.store)
        .await
        .context("cannot read the read models' status")?;
    let mut out = super::terminal::stdout(context.json);
    if context.json {
        return output::print_json(&mut out, &json!({ "read_models": statuses }));
    }
    let head = statuses.first().map_or(0, |status| status.head.get());
    writeln!(
        out,
        "{} read models of {}; head of the log at position {}\n",
        statuses.len(),
        context.store,
        output::thousands(head)
    )?;
    writeln!(
        out,
        "  {:<22} {:>12} {:>10} {:>10}  state",
        "read model", "checkpoint", "lag", "events/s"
    )?;
    for status in &statuses {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a rate to read
        let rate = status.events_per_second.round() as u64;
        let updated = status
            .updated_at
            .map_or_else(String::new, |at| format!(" (recorded {at})"));
        writeln!(
            out,
            "  {:<22} {:>12} {:>10} {:>10}  {}{updated}",
            status.name,
            output::thousands(status.checkpoint.get()),
            output::thousands(status.lag),
            output::thousands(rate),
            status.state,
        )?;
        for skipped in &status.skipped {
            writeln!(
                out,
                "  {:<22} skipped the `{}` event at position {} ({}): {}",
                "", skipped.event_type, skipped.position, skipped.skipped_at, skipped.error
            )?;
        }
    }
    Ok(())
}
