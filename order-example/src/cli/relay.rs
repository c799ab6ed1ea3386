//! `relay`: publishes the store's log to a NATS JetStream stream (es-nats's relay), in
//! position order, each event once, until Ctrl-C; `consume` builds the read models from it.

use std::time::Duration;

use anyhow::Context as _;
use es_nats::relay::{Relay, RelayOptions, RelayState, RelayStatus};
use serde_json::json;

use super::consume::DEFAULT_STREAM;
use super::{output, Context};

/// How often `relay` prints its progress at most.
const PRINT_INTERVAL: Duration = Duration::from_secs(1);

/// `relay`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The NATS server, for example `nats://127.0.0.1:4222`.
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The JetStream stream to publish to (created if missing).
    #[arg(long, default_value = DEFAULT_STREAM)]
    stream: String,
}

/// `relay`: publishes until Ctrl-C, printing the published position and the lag.
pub async fn relay(context: &Context, arguments: RelayArgs) -> anyhow::Result<()> {
    // A broker that is down at start is waited for, as one that goes down later is.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(arguments.nats.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", arguments.nats))?;
    let relay = Relay::new(
        context.store.clone(),
        client,
        RelayOptions::new().with_stream_name(arguments.stream.as_str()),
    );
    if !context.json {
        println!(
            "relaying {} to stream `{}` at {}; Ctrl-C stops",
            context.store, arguments.stream, arguments.nats
        );
    }
    let mut status = relay.status();
    let json = context.json;
    let printer = tokio::spawn(async move {
        let mut shown: Option<RelayStatus> = None;
        loop {
            let now = status.borrow_and_update().clone();
            if shown.as_ref() != Some(&now) {
                print_status(&now, json);
                shown = Some(now);
            }
            tokio::time::sleep(PRINT_INTERVAL).await;
            if status.changed().await.is_err() {
                return;
            }
        }
    });
    let outcome = relay
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    printer.abort();
    print_status(&relay.status().borrow(), json);
    outcome.context("the relay stopped")
}

fn print_status(status: &RelayStatus, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "published": status.published,
                "stream_sequence": status.stream_sequence,
                "head": status.head,
                "lag": status.lag(),
                "restarts": status.restarts,
                "last_error": status.last_error,
            })
        );
        return;
    }
    let state = match &status.state {
        RelayState::Publishing => "publishing".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    let error = status
        .last_error
        .as_deref()
        .map_or_else(String::new, |error| format!("; last error: {error}"));
    println!(
        "{state}: published up to position {} (stream sequence {}), {} behind the store{error}",
        output::thousands(status.published.get()),
        output::thousands(status.stream_sequence),
        output::thousands(status.lag()),
    );
}
