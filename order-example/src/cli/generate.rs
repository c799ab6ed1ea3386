//! Load generation: many valid orders from a seed, written by concurrent workers, with the
//! throughput they reached.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use es_core::{AggregateRoot, Repository, Version};
use order_example::load::{OrderScript, Workload};
use order_example::read_models::Inventory;
use order_example::Order;
use serde_json::json;
use tokio::task::JoinSet;

use super::output;
use super::read_side::{self, ReadModels as _};
use super::store::AnyStore;
use super::Context;

/// Writes `orders` orders of the workload of `seed`, `concurrency` orders at a time, and
/// prints how fast.
///
/// The workload takes the stock still available in the (caught-up) inventory read model into
/// account, so shipments never exceed the stock; the same seed on the same store state gives
/// the same orders.
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
    let (models, _) = read_side::current(context).await?;
    let workload = Workload::new(seed)
        .with_default_stock(context.initial_stock)
        .with_stock_from(models.model::<Inventory>()?);
    let scripts = Arc::new(Mutex::new(workload.take(count)));

    let bar = context.progress_bar(orders, "orders");
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(orders) {
        let scripts = Arc::clone(&scripts);
        let repository = Repository::<Order, _>::new(context.store.clone());
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
                events += write(&repository, &script).await?;
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

    let events_per_second = output::per_second(events, seconds);
    let orders_per_second = output::per_second(orders, seconds);
    let last = format!("load-{seed}-{orders:07}");
    let mut out = std::io::stdout();
    if context.json {
        return output::print_json(
            &mut out,
            &json!({
                "seed": seed,
                "orders": orders,
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
    writeln!(
        out,
        "the read models take them in at the next `read-models`, or all at once with `rebuild`"
    )?;
    Ok(())
}

/// Runs the script's commands on a new order and saves each batch: the events written.
async fn write(
    repository: &Repository<Order, AnyStore>,
    script: &OrderScript,
) -> anyhow::Result<u64> {
    let id = script.order_id.as_str();
    let mut root = AggregateRoot::<Order>::new(id);
    let mut events = 0;
    for batch in &script.batches {
        for command in batch {
            root.execute(|order| command.decide(order))
                .with_context(|| format!("order `{id}` refused {command:?}"))?;
        }
        let outcome = repository
            .save(&mut root)
            .await
            .with_context(|| format!("cannot save order `{id}`"))?;
        if outcome.is_some() {
            events += batch.len() as u64;
        }
    }
    Ok(events)
}
