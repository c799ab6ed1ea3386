//! Load generation: many valid orders from a seed, written by concurrent workers, with the
//! throughput they reached.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use es_core::{CommandError, Version};
use order_example::fulfillment::{Fulfillment, FulfillmentError};
use order_example::load::{OrderScript, Workload};
use serde_json::json;
use tokio::task::JoinSet;

use super::output;
use super::Context;
use es_core::Store;

/// How many refused orders the text output lists.
const REFUSALS_SHOWN: usize = 5;

/// Writes `orders` orders of the workload of `seed`, `concurrency` orders at a time, and
/// prints how fast.
///
/// Each order's commands run through [`Fulfillment`]: an order and the products it reserves,
/// releases or ships are saved in one atomic append, so several `generate` processes on one
/// store can never oversell. An order whose items are not in stock is refused, and nothing of
/// it is stored; the refusals are counted and listed with their reason. A product with no
/// history starts with `--initial-stock` units.
pub async fn run(
    context: &Context,
    orders: u64,
    seed: u64,
    concurrency: u64,
) -> anyhow::Result<()> {
    let count = usize::try_from(orders).context("--orders is too large for this machine")?;
    let first = Workload::new(seed)
        .next()
        .map(|script| script.order_id)
        .context("the workload is empty")?;
    if context.orders.load(first.as_str()).await?.version() != Version::INITIAL {
        bail!(
            "the store already holds the orders of seed {seed} (`{first}` exists): pick another --seed"
        );
    }
    let workload = Workload::new(seed).with_default_stock(context.initial_stock);
    let scripts = Arc::new(Mutex::new(workload.take(count)));
    let fulfillment =
        Arc::new(Fulfillment::new(context.store.clone()).with_initial_stock(context.initial_stock));
    let refusals = Arc::new(Mutex::new(Vec::new()));

    let bar = context.progress_bar(orders, "orders");
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(orders) {
        let scripts = Arc::clone(&scripts);
        let fulfillment = Arc::clone(&fulfillment);
        let refusals = Arc::clone(&refusals);
        let bar = bar.clone();
        workers.spawn(async move {
            let mut events = 0;
            loop {
                let next = scripts
                    .lock()
                    .map_err(|_| anyhow!("a load worker stopped"))?
                    .next();
                let Some(script) = next else {
                    return Ok::<u64, anyhow::Error>(events);
                };
                match write(&fulfillment, &script).await? {
                    Written::Events(count) => events += count,
                    Written::Refused(reason) => refusals
                        .lock()
                        .map_err(|_| anyhow!("a load worker stopped"))?
                        .push((script.order_id.to_string(), reason)),
                }
                bar.inc(1);
            }
        });
    }
    let mut events = 0;
    while let Some(finished) = workers.join_next().await {
        // The first failure returns, and dropping the set stops the other workers.
        events += finished.context("a load worker stopped")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut refusals = std::mem::take(
        &mut *refusals
            .lock()
            .map_err(|_| anyhow!("a load worker stopped"))?,
    );
    refusals.sort();

    let events_per_second = output::per_second(events, seconds);
    let orders_per_second = output::per_second(orders, seconds);
    let last = format!("load-{seed}-{orders:07}");
    let mut out = super::terminal::stdout(context.json);
    if context.json {
        return output::print_json(
            &mut out,
            &json!({
                "seed": seed,
                "orders": orders,
                "accepted": orders - refusals.len() as u64,
                "refused": refusals
                    .iter()
                    .map(|(order, reason)| json!({ "order": order, "reason": reason }))
                    .collect::<Vec<_>>(),
                "events": events,
                "first_order": first,
                "last_order": last,
                "concurrency": concurrency,
                "seconds": seconds,
                "events_per_second": events_per_second,
                "orders_per_second": orders_per_second,
            }),
        );
    }
    writeln!(
        out,
        "generated {} orders ({first} to {last}): {} events in {seconds:.2} s, {} events/s, {} orders/s",
        output::thousands(orders),
        output::thousands(events),
        output::thousands(events_per_second),
        output::thousands(orders_per_second),
    )?;
    print_refusals(&mut out, &refusals)?;
    writeln!(
        out,
        "the read models take them in at the next `read-models`, or all at once with `rebuild`"
    )?;
    Ok(())
}

/// Lists the first refused orders and why, and how many more.
fn print_refusals(out: &mut impl Write, refusals: &[(String, String)]) -> std::io::Result<()> {
    if refusals.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "refused {} of them, nothing stored for those (the stock is kept per product, so \
         concurrent writers never oversell):",
        output::thousands(refusals.len() as u64)
    )?;
    for (order, reason) in refusals.iter().take(REFUSALS_SHOWN) {
        writeln!(out, "  {order}: {reason}")?;
    }
    if refusals.len() > REFUSALS_SHOWN {
        writeln!(out, "  ... and {} more", refusals.len() - REFUSALS_SHOWN)?;
    }
    Ok(())
}

/// What writing one script did.
enum Written {
    /// The order was stored: this many events (the order's and its products').
    Events(u64),
    /// The order was refused for lack of stock: why. Nothing of it was stored.
    Refused(String),
}

/// Runs the script's batches through `fulfillment`, each batch one atomic append of the
/// order and the products it touches.
async fn write(fulfillment: &Fulfillment<Store>, script: &OrderScript) -> anyhow::Result<Written> {
    let id = &script.order_id;
    let mut events = 0;
    for (index, batch) in script.batches.iter().enumerate() {
        match fulfillment.execute(id, batch).await {
            Ok(fulfilled) => events += fulfilled.events,
            // Only the cart (the first batch) reserves stock; a refusal there stores nothing.
            Err(CommandError::Rejected(refusal)) if refusal.is_out_of_stock() && index == 0 => {
                return Ok(Written::Refused(refusal.to_string()));
            }
            Err(error) => {
                let error = anyhow::Error::new(error);
                return Err(
                    match error.downcast_ref::<CommandError<FulfillmentError>>() {
                        Some(CommandError::Rejected(refusal)) => {
                            anyhow!("order `{id}` refused {batch:?}: {refusal}")
                        }
                        _ => error.context(format!("cannot save order `{id}`")),
                    },
                );
            }
        }
    }
    Ok(Written::Events(events))
}
