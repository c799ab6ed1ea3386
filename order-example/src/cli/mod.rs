//! The command line: arguments, and one module per command.

mod consume;
mod demo;
mod follow;
mod generate;
mod inspect;
mod output;
mod read_side;
mod relay;
mod serve;
mod store;
mod terminal;
mod worker;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use es_core::{GlobalPosition, Repository, Timestamp};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use order_example::fulfillment::Fulfillment;
use order_example::load::DEFAULT_STOCK;
use order_example::Order;

use es_core::Store;
use store::Access;

/// The store used without `--store`: a SQLite file in the current directory.
const DEFAULT_STORE: &str = "sqlite:orders.db";

/// The Order domain on an event store: run without a command for a tour of the whole usage
/// pattern (create an order, add items, pay, ship, save, update the read models, query them,
/// and look into the past).
#[derive(Debug, Parser)]
#[command(name = "order-example", version)]
pub struct Cli {
    /// Where the events live: `memory`, `sqlite:PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, global = true, default_value = DEFAULT_STORE)]
    store: String,

    /// The PostgreSQL schema holding the tables (only with a `postgres://` store).
    #[arg(long, global = true, value_name = "SCHEMA")]
    postgres_schema: Option<String>,

    /// Print JSON instead of text (amounts in minor units, times in RFC 3339).
    #[arg(long, global = true)]
    json: bool,

    /// Units every product starts with: a product gets them (a `StockReceived` on its own
    /// stream) the first time an order reserves it; the inventory read model also uses them for
    /// products whose stock was never recorded (logs of older releases).
    #[arg(long, global = true, value_name = "UNITS", default_value_t = DEFAULT_STOCK)]
    initial_stock: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole usage pattern, step by step (the default).
    Demo,
    /// Every event of one order, oldest first.
    History {
        /// The order id.
        order: String,
    },
    /// One order's state: now, after one of its versions, or as it was at a time.
    State {
        /// The order id.
        order: String,
        /// The state right after this version (1 = after its first event).
        #[arg(
            long = "at-version",
            value_name = "VERSION",
            conflicts_with = "at",
            value_parser = clap::value_parser!(u64).range(1..)
        )]
        version: Option<u64>,
        /// The state as it was at this time (RFC 3339, for example 2026-01-31T12:00:00Z).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// The three read models: caught up now, or as they were at a time or a global position.
    ReadModels {
        /// As they were at this time (RFC 3339).
        #[arg(long, value_name = "TIME", conflicts_with = "position")]
        at: Option<String>,
        /// As they were right after this global position.
        #[arg(long, value_name = "POSITION")]
        position: Option<u64>,
        /// Show only this order's summary.
        #[arg(long, value_name = "ORDER")]
        order: Option<String>,
        /// Show only this customer's history.
        #[arg(long, value_name = "CUSTOMER")]
        customer: Option<String>,
        /// Show only this product's stock.
        #[arg(long, value_name = "PRODUCT")]
        product: Option<String>,
        /// Rows per table.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Rebuild the read models from the whole log, with a progress bar, and save them.
    Rebuild,
    /// Keep the read models current as events are written, and print them as they move
    /// (run `generate` in another terminal); Ctrl-C stops, saving their checkpoints.
    Follow {
        /// Stop once every read model has reached this global position.
        #[arg(long, value_name = "POSITION")]
        until: Option<u64>,
        /// Resume this parked read model (after fixing what made it fail).
        #[arg(long, value_name = "READ_MODEL")]
        resume: Vec<String>,
        /// Skip the event a parked read model failed on: `READ_MODEL=POSITION`.
        #[arg(long, value_name = "READ_MODEL=POSITION")]
        skip: Vec<String>,
    },
    /// Where each read model is: checkpoint, lag, events/s and state (running, or parked
    /// with its error), as recorded in the store by the last `follow`.
    Status,
    /// Keep the read models' SQL tables (`order_summaries`, `inventory_levels`,
    /// `customer_histories`, ...) current as one of several worker processes: one holds the
    /// lease `order-read-models`, the others stand by and take over when it dies. Ctrl-C
    /// stops (and hands the lease on).
    Worker {
        /// How long the lease lasts without renewal, in milliseconds: the longest the tables
        /// stall when the holder dies.
        #[arg(long, value_name = "MILLISECONDS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(30..))]
        lease_time: u64,
    },
    /// Build the three read models from NATS JetStream, where `relay` publishes the log (on
    /// another machine, say): the events come from the broker's durable consumer, the read
    /// models and their checkpoints are saved in `--store` (for example
    /// `sqlite:read-models.db`). Ctrl-C stops, saving their checkpoints.
    /// Publish the log to NATS JetStream (in position order, each event once), for `consume`
    /// on other machines; Ctrl-C stops. A restart goes on from what the stream holds.
    Relay(relay::RelayArgs),
    Consume(consume::ConsumeArgs),
    /// Generate load: valid orders from a seed (the same seed gives the same orders).
    Generate {
        /// How many orders.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
        orders: u64,
        /// The seed; order ids are `load-SEED-NNNNNNN`.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Orders in flight at once (their appends share commits).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
    },
    /// The web console: the live log, streams and their states in time, the read models
    /// (read-only unless `--allow-resume`).
    Serve {
        /// The address to listen on; the default is reachable from this machine only.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS:PORT")]
        bind: std::net::SocketAddr,
        /// Also keep the read models current here (the projection daemon, as `follow` does),
        /// so their status is live. Without it, the status `follow` recorded is shown.
        #[arg(long)]
        follow: bool,
        /// Offer a button to resume a parked read model (the console's one write action).
        #[arg(long, requires = "follow")]
        allow_resume: bool,
    },
}

/// Everything a command needs: the store, the options, a repository of orders.
struct Context {
    store: Store,
    /// The `--store` text, to show commands that reach the same store.
    store_spec: String,
    orders: Repository<Order, Store>,
    /// Order commands with their stock effects, saved atomically.
    fulfillment: Fulfillment<Store>,
    json: bool,
    initial_stock: u64,
}

impl Context {
    /// A progress bar of `length` steps on the terminal, hidden for JSON output or when
    /// standard error is not a terminal.
    fn progress_bar(&self, length: u64, unit: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        if self.json {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template =
            format!("{{bar:40}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Runs the command `cli` asks for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Demo);
    let access = match command {
        Command::Demo
        | Command::Generate { .. }
        | Command::Follow { .. }
        | Command::Worker { .. }
        | Command::Consume(_)
        | Command::Relay(_)
        | Command::Serve { .. } => Access::Create,
        Command::Rebuild => Access::Existing,
        Command::History { .. }
        | Command::State { .. }
        | Command::ReadModels { .. }
        | Command::Status => Access::ReadOnly,
    };
    let store = store::open(&cli.store, cli.postgres_schema.as_deref(), access).await?;
    let context = Context {
        orders: Repository::new(store.clone()),
        fulfillment: Fulfillment::new(store.clone()).with_initial_stock(cli.initial_stock),
        store,
        store_spec: cli.store,
        json: cli.json,
        initial_stock: cli.initial_stock,
    };
    let result = match command {
        Command::Demo => demo::run(&context).await,
        Command::History { order } => inspect::history(&context, &order).await,
        Command::State { order, version, at } => {
            let at = at.as_deref().map(parse_time).transpose()?;
            inspect::state(&context, &order, version, at).await
        }
        Command::ReadModels {
            at,
            position,
            order,
            customer,
            product,
            limit,
        } => {
            let at = at.as_deref().map(parse_time).transpose()?;
            let filter = read_side::Filter {
                order,
                customer,
                product,
                limit,
            };
            read_side::show(&context, at, position.map(GlobalPosition), &filter).await
        }
        Command::Rebuild => read_side::rebuild(&context).await,
        Command::Follow {
            until,
            resume,
            skip,
        } => {
            let options = follow::FollowOptions {
                until: until.map(GlobalPosition),
                resume,
                skip,
            };
            follow::follow(&context, options).await
        }
        Command::Consume(arguments) => consume::consume(&context, arguments).await,
        Command::Relay(arguments) => relay::relay(&context, arguments).await,
        Command::Status => follow::status(&context).await,
        Command::Worker { lease_time } => {
            worker::run(&context, Duration::from_millis(lease_time)).await
        }
        Command::Generate {
            orders,
            seed,
            concurrency,
        } => generate::run(&context, orders, seed, concurrency).await,
        Command::Serve {
            bind,
            follow,
            allow_resume,
        } => {
            let options = serve::ServeOptions {
                bind,
                follow,
                allow_resume,
            };
            serve::serve(&context, options).await
        }
    };
    context.store.close().await;
    result
}

fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    text.parse::<Timestamp>().context("invalid --at")
}

pub use terminal::one_line;

/// Writes `text` to `out` with its control characters escaped (newlines kept).
pub fn write_escaped(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    let mut escaped = terminal::Escaped::new(out, terminal::Style::Text);
    std::io::Write::write_all(&mut escaped, text.as_bytes())
}

/// Whether `error` is a write to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
