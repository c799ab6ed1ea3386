//! Looking at one order: its event history, and its state at any version or time.

use std::io::Write as _;

use anyhow::{bail, Context as _};
use es_core::{Aggregate, EventStore, Timestamp, Version, VersionRange};
use order_example::{Order, OrderEvent};
use serde_json::json;

use super::output::{self, OrderView};
use super::Context;

/// Prints every event of `order`.
pub async fn history(context: &Context, order: &str) -> anyhow::Result<()> {
    let stream = Order::stream_id(order);
    let recorded = context
        .store
        .read_stream(&stream, VersionRange::all())
        .await
        .context("cannot read the order's events")?;
    if recorded.is_empty() {
        bail!("no order `{order}` in the store");
    }
    let mut decoded = Vec::with_capacity(recorded.len());
    for event in &recorded {
        let order_event = event.decode::<OrderEvent>().with_context(|| {
            format!("event {} of order `{order}` does not decode", event.version)
        })?;
        decoded.push(order_event);
    }

    let mut out = super::terminal::stdout(context.json);
    if context.json {
        let events = recorded
            .iter()
            .zip(&decoded)
            .map(|(recorded, event)| output::recorded_json(recorded, event))
            .collect::<Result<Vec<_>, _>>()?;
        return output::print_json(&mut out, &json!({ "order_id": order, "events": events }));
    }
    writeln!(out, "order {order}: {} events", recorded.len())?;
    writeln!(
        out,
        "  {:>3}  {:>8}  {:<27}  {:<17}  WHAT",
        "V", "POSITION", "RECORDED AT", "EVENT"
    )?;
    for (recorded, event) in recorded.iter().zip(&decoded) {
        writeln!(
            out,
            "  {:>3}  {:>8}  {:<27}  {:<17}  {}",
            recorded.version.get(),
            recorded.global_position.get(),
            recorded.recorded_at.to_string(),
            recorded.event_type,
            output::describe(event)
        )?;
    }
    Ok(())
}

/// Prints the state of `order` now, right after `version`, or as it was at `at`.
pub async fn state(
    context: &Context,
    order: &str,
    version: Option<u64>,
    at: Option<Timestamp>,
) -> anyhow::Result<()> {
    let latest = context
        .orders
        .load_existing(order)
        .await
        .map_err(|error| match error {
            es_core::RepositoryError::NotFound { .. } => {
                anyhow::anyhow!("no order `{order}` in the store")
            }
            other => anyhow::Error::new(other).context("cannot load the order"),
        })?;
    let root = match (version, at) {
        (Some(version), _) => context
            .orders
            .load_at_version(order, Version(version))
            .await
            .context("cannot load the order at that version")?,
        (None, Some(at)) => context
            .orders
            .load_as_of(order, at)
            .await
            .context("cannot load the order as of that time")?,
        (None, None) => latest,
    };
    if let (Some(at), Version::INITIAL) = (at, root.version()) {
        bail!("order `{order}` did not exist yet at {at}");
    }

    let view = OrderView::new(order, root.version(), root.state());
    let mut out = super::terminal::stdout(context.json);
    if context.json {
        return output::print_json(&mut out, &view);
    }
    if let Some(at) = at {
        writeln!(out, "as of {at}:")?;
    }
    output::print_order(&mut out, &view)?;
    Ok(())
}
