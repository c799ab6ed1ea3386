//! `consume`: the three read models built on another machine from NATS JetStream, where
//! `relay` publishes the log. The read models, their checkpoints and the consumer's record
//! live in `--store` (for example `sqlite:read-models.db`); the events come from the broker.

use std::io::Write as _;

use anyhow::Context as _;
use es_core::{GlobalPosition, Store};
use es_nats::consumer::{ConsumerOptions, FeedStatus, JetStreamLog};
use serde_json::json;

use super::follow::{self, FollowOptions};
use super::{output, Context};

/// The JetStream stream `relay` publishes to and `consume` reads, unless told otherwise.
pub const DEFAULT_STREAM: &str = "ES_EVENTS";

/// The durable consumer `consume` reads through, unless told otherwise.
pub const DEFAULT_DURABLE: &str = "order-read-models";

/// `consume`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The NATS server, for example `nats://127.0.0.1:4222`.
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The JetStream stream `relay` publishes to.
    #[arg(long, default_value = DEFAULT_STREAM)]
    stream: String,
    /// The durable consumer's name (one `consume` process per name).
    #[arg(long, default_value = DEFAULT_DURABLE)]
    durable: String,
    /// Stop once every read model has reached this global position.
    #[arg(long, value_name = "POSITION")]
    until: Option<u64>,
    /// Resume this parked read model (after fixing what made it fail).
    #[arg(long, value_name = "READ_MODEL")]
    resume: Vec<String>,
    /// Skip the event a parked read model failed on: `READ_MODEL=POSITION`.
    #[arg(long, value_name = "READ_MODEL=POSITION")]
    skip: Vec<String>,
    /// Read the message the feed is parked on again (after a fix).
    #[arg(long)]
    resume_feed: bool,
    /// Pass over the message the feed is parked on (its stream sequence, as printed).
    #[arg(long, value_name = "SEQUENCE")]
    skip_message: Option<u64>,
}

/// `consume`: runs the daemon over the durable consumer until Ctrl-C (or `--until`),
/// printing the read models as `follow` does, and the feed when it parks.
pub async fn consume(context: &Context, options: ConsumeArgs) -> anyhow::Result<()> {
    let client = async_nats::connect(options.nats.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", options.nats))?;
    let jetstream = async_nats::jetstream::new(client);
    let log = JetStreamLog::open(
        &jetstream,
        ConsumerOptions::new(options.stream.as_str(), options.durable.as_str()),
        context.store.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "cannot open the durable consumer `{}` on stream `{}` (is `relay` running?)",
            options.durable, options.stream
        )
    })?;
    if options.resume_feed {
        log.resume().await.context("cannot resume the feed")?;
    }
    if let Some(sequence) = options.skip_message {
        log.skip(sequence)
            .await
            .with_context(|| format!("cannot skip message {sequence}"))?;
    }
    if !context.json {
        println!(
            "consuming stream `{}` through durable consumer `{}` at {}; read models in {}",
            options.stream, options.durable, options.nats, context.store
        );
    }
    let watcher = tokio::spawn(print_feed(log.clone(), context.json));
    let daemon = follow::builder(context)?
        .start_from(log.clone(), context.store.clone())
        .await
        .context("cannot start the projection daemon")?;
    let follow_options = FollowOptions {
        until: options.until.map(GlobalPosition),
        resume: options.resume,
        skip: options.skip,
    };
    let outcome = follow::run(context, &daemon, &follow_options).await;
    let stopped = daemon
        .shutdown()
        .await
        .context("the projection daemon failed");
    log.close().await;
    watcher.abort();
    outcome?;
    stopped?;
    follow::print_stopped(context).await
}

/// Prints the feed's state each time it changes (parked, resumed, skipped).
async fn print_feed(log: JetStreamLog<Store>, json: bool) {
    let mut shown = log.status();
    print_feed_status(&shown, json);
    loop {
        log.changed().await;
        let now = log.status();
        if now != shown {
            print_feed_status(&now, json);
            shown = now;
        }
    }
}

fn print_feed_status(status: &FeedStatus, json: bool) {
    let mut out = super::terminal::stdout(json);
    let written = if json {
        output::print_json(&mut out, &json!({ "feed": status }))
    } else if let Some(parked) = &status.parked {
        writeln!(
            out,
            "feed parked on message {} ({}): {}\n  it is not acknowledged; run again with \
             --skip-message {} to pass over it, or --resume-feed after a fix",
            parked.sequence, parked.subject, parked.error, parked.sequence
        )
        .map_err(anyhow::Error::from)
    } else {
        Ok(())
    };
    if let Err(error) = written {
        tracing::warn!(error = %error, "cannot print the feed's status");
    }
}
