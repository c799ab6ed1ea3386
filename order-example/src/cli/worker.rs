//! `worker`: the three read models as SQL tables, run under a lease as one of several worker
//! processes over one store. Start it on as many nodes (or terminals) as you like: one holds
//! the lease `order-read-models` and keeps the tables current, the others stand by and take
//! over within the lease time when it dies. Every batch commits with its checkpoint and is
//! fenced by the lease's token, so each event is in the tables exactly once.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use es_core::projection::daemon::ProjectionDaemon;
use es_core::projection::table::TableStore as _;
use es_core::projection::worker::{Worker, WorkerState};
use order_example::read_models::tables::{CustomerHistoryTable, InventoryTable, OrderSummaryTable};
use serde_json::json;

use super::Context;

/// The lease the workers share.
pub const LEASE: &str = "order-read-models";

/// Runs a worker until Ctrl-C, printing each change of its state.
pub async fn run(context: &Context, lease_time: Duration) -> anyhow::Result<()> {
    let database = context.store.table_database();
    let stock = context.initial_stock;
    let worker = Worker::new(LEASE, move || {
        ProjectionDaemon::builder()
            .with_table(OrderSummaryTable, database.clone())?
            .with_table(InventoryTable::new(stock), database.clone())?
            .with_table(CustomerHistoryTable, database.clone())
    })
    .with_lease_time(lease_time);
    let holder = worker.holder().to_owned();
    let handle = worker.start(context.store.clone());
    let mut states = handle.states();
    print(context, &holder, &WorkerState::Standby)?;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                break;
            }
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = states.borrow_and_update().clone();
                print(context, &holder, &state)?;
            }
        }
    }
    handle.shutdown().await;
    print(context, &holder, &WorkerState::Stopped)
}

fn print(context: &Context, holder: &str, state: &WorkerState) -> anyhow::Result<()> {
    let (name, token) = match state {
        WorkerState::Standby => ("standby", None),
        WorkerState::Holding { lease, .. } => ("holding", Some(lease.token)),
        WorkerState::Stopped => ("stopped", None),
    };
    let mut out = super::terminal::stdout(context.json);
    if context.json {
        serde_json::to_writer(
            &mut out,
            &json!({ "worker": holder, "lease": LEASE, "state": name, "token": token }),
        )
        .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        match token {
            Some(token) => writeln!(
                out,
                "worker {holder}: holding lease `{LEASE}` (token {token}); the read model tables follow the log"
            )?,
            None => writeln!(out, "worker {holder}: {name} (lease `{LEASE}`)")?,
        }
    }
    Ok(out.flush()?)
}
