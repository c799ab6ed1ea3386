//! The tour (what the program does without arguments): the whole usage pattern, step by step,
//! on the chosen store. Each run creates new orders, so it can run again on the same store.

use std::io::Write;

use anyhow::{bail, Context as _};
use es_core::{
    Aggregate, AggregateRoot, AppendOutcome, AsOf, EventStore, ProjectionRegistry, Repository,
    Timestamp, Version, VersionRange,
};
use order_example::fulfillment::FulfillmentError;
use order_example::read_models::{CustomerHistories, Inventory, OrderSummaries};
use order_example::{
    CustomerId, Money, Order, OrderCommand, OrderError, OrderEvent, OrderId, ProductId,
};
use serde_json::json;

use super::output::{self, OrderView};
use super::read_side::{self, ReadModels as _};
use super::Context;
use es_core::Store;

/// The products of the tour, with their unit prices in minor units.
const MUG: (&str, u64) = ("mug", 1_250);
const TEAPOT: (&str, u64) = ("teapot", 3_400);
const LAMP: (&str, u64) = ("lamp", 4_500);

/// Tables sit under the text of their step.
const TABLE_INDENT: &str = "     ";

fn product((name, _): (&str, u64)) -> ProductId {
    ProductId::new(name)
}

fn price((_, minor_units): (&str, u64)) -> Money {
    Money::from_minor_units(minor_units)
}

/// The orders a repository of the program loads and saves.
type Orders = Repository<Order, Store>;

/// Where the tour is: what it wrote so far, and the read models it keeps.
struct Tour<'a> {
    context: &'a Context,
    out: Box<dyn Write + Send>,
    models: ProjectionRegistry,
    /// alice's order: created, paid and shipped.
    alice: AggregateRoot<Order>,
    /// bob's order: created, refused a few commands, cancelled.
    bob: AggregateRoot<Order>,
    /// What alice's first save wrote (her order, open, with two lines).
    first_save: Option<AppendOutcome>,
    /// When alice's payment was recorded.
    paid_at: Timestamp,
}

/// Runs the tour, narrated on standard output (or summed up as JSON with `--json`).
pub async fn run(context: &Context) -> anyhow::Result<()> {
    let mut tour = Tour::start(context).await?;
    tour.create_an_order()?;
    tour.save_it().await?;
    tour.pay_and_ship().await?;
    tour.enforce_the_rules().await?;
    tour.detect_a_conflict().await?;
    let position = tour.update_the_projections().await?;
    tour.query_the_read_models()?;
    tour.look_into_the_past().await?;
    tour.replay().await?;
    tour.finish(position)
}

impl<'a> Tour<'a> {
    /// Brings the saved read models (if any) up to date first, so the tour shows exactly what
    /// its own writes change, and picks ids for its two orders.
    async fn start(context: &'a Context) -> anyhow::Result<Tour<'a>> {
        let mut out: Box<dyn Write + Send> = if context.json {
            Box::new(std::io::sink())
        } else {
            Box::new(super::terminal::stdout(false))
        };
        let before = context.store.last_position().await?;
        writeln!(
            out,
            "Event store: {} ({} events before this run)\n",
            super::store::describe(&context.store),
            output::thousands(before.get())
        )?;
        let (models, report) = read_side::current(context).await?;
        if report.events > 0 {
            read_side::save(context, &models).await?;
        }
        let known = models.model::<OrderSummaries>()?.len();
        let alice = unused_order_number(&context.orders, known + 1).await?;
        let bob = unused_order_number(&context.orders, alice + 1).await?;
        let (alice, bob) = (order_id(alice), order_id(bob));
        Ok(Tour {
            context,
            out,
            models,
            alice: AggregateRoot::new(alice.as_str()),
            bob: AggregateRoot::new(bob.as_str()),
            first_save: None,
            paid_at: Timestamp::EPOCH,
        })
    }

    fn orders(&self) -> &'a Orders {
        &self.context.orders
    }

    fn alice_id(&self) -> OrderId {
        OrderId::new(self.alice.id())
    }

    fn create_an_order(&mut self) -> anyhow::Result<()> {
        let out = &mut self.out;
        writeln!(
            out,
            "1. Create an order and apply business operations (nothing is stored yet)"
        )?;
        let alice = &mut self.alice;
        alice.execute(|order| order.create(CustomerId::new("alice")))?;
        alice.execute(|order| order.add_item(product(MUG), 2, price(MUG)))?;
        alice.execute(|order| order.add_item(product(TEAPOT), 1, price(TEAPOT)))?;
        writeln!(out, "   {} for customer alice", alice.id())?;
        writeln!(out, "     + 2 × mug at {}", price(MUG))?;
        writeln!(out, "     + 1 × teapot at {}", price(TEAPOT))?;
        writeln!(
            out,
            "   the aggregate holds {} uncommitted events; status {}, total {}\n",
            alice.pending_events().len(),
            alice.state().status(),
            alice.state().total()
        )?;
        Ok(())
    }

    async fn save_it(&mut self) -> anyhow::Result<()> {
        writeln!(
            self.out,
            "2. Save with the stock: the same commands run on the stored order, each item reserves \
             its product's stock,\n   and the order and the products are appended together, \
             atomically (each stream at the version loaded)"
        )?;
        let commands = [
            OrderCommand::Create {
                customer_id: CustomerId::new("alice"),
            },
            add_item(MUG, 2),
            add_item(TEAPOT, 1),
        ];
        let saved = self.fulfill(&self.alice_id(), &commands).await?;
        writeln!(
            self.out,
            "   saved versions 1-{} at global positions {}-{}, with the mug's and the teapot's \
             reservations\n",
            saved.version,
            saved.position.get() + 1 - saved.version.get(),
            saved.position
        )?;
        self.first_save = Some(saved);
        Ok(())
    }

    async fn pay_and_ship(&mut self) -> anyhow::Result<()> {
        writeln!(
            self.out,
            "3. Pay, then ship (which takes the reserved units off each product's shelf in the \
             same append)"
        )?;
        let total = self.alice.state().total();
        let paid = self
            .fulfill(&self.alice_id(), &[OrderCommand::Pay { amount: total }])
            .await?;
        self.paid_at = recorded_at(&self.context.store, &self.alice_id(), paid.version).await?;
        writeln!(
            self.out,
            "   paid {:<14} version {}, position {}, recorded at {}",
            total.to_string(),
            paid.version,
            paid.position,
            self.paid_at
        )?;
        let tracking = format!("TRK-{}", self.alice.id().trim_start_matches("order-"));
        let ship = OrderCommand::Ship {
            tracking_number: tracking.clone(),
        };
        let shipped = self.fulfill(&self.alice_id(), &[ship]).await?;
        writeln!(
            self.out,
            "   shipped {tracking:<11} version {}, position {}\n",
            shipped.version, shipped.position
        )?;
        Ok(())
    }

    /// Runs `commands` on `order` with their stock effects and keeps the saved order: what
    /// the append wrote to the order's stream.
    async fn fulfill(
        &mut self,
        order: &OrderId,
        commands: &[OrderCommand],
    ) -> anyhow::Result<AppendOutcome> {
        let fulfilled = self
            .context
            .fulfillment
            .execute(order, commands)
            .await
            .with_context(|| format!("cannot save order `{order}`"))?;
        let outcome = fulfilled
            .outcomes
            .first()
            .copied()
            .with_context(|| format!("order `{order}` had nothing to save"))?;
        if order.as_str() == self.alice.id() {
            self.alice = fulfilled.order;
        } else {
            self.bob = fulfilled.order;
        }
        Ok(outcome)
    }

    async fn enforce_the_rules(&mut self) -> anyhow::Result<()> {
        writeln!(
            self.out,
            "4. The aggregates enforce the business rules before anything is recorded"
        )?;
        let bob_id = OrderId::new(self.bob.id());
        let create = OrderCommand::Create {
            customer_id: CustomerId::new("bob"),
        };
        self.fulfill(&bob_id, &[create, add_item(LAMP, 1)]).await?;
        let out = &mut self.out;
        let bob = &mut self.bob;
        writeln!(
            out,
            "   {} for customer bob: 1 × lamp at {}, saved with the lamp's reservation",
            bob.id(),
            price(LAMP)
        )?;
        refuse(out, bob, "add 0 lamps to", |order| {
            order.add_item(product(LAMP), 0, price(LAMP))
        })?;
        refuse(out, bob, "pay 10.00 for", |order| {
            order.pay(Money::from_minor_units(1_000))
        })?;
        refuse(out, bob, "ship unpaid", |order| order.ship("TRK-0"))?;
        let alice = &mut self.alice;
        refuse(out, alice, "add a mug to shipped", |order| {
            order.add_item(product(MUG), 1, price(MUG))
        })?;
        refuse(out, alice, "cancel shipped", |order| {
            order.cancel("too late")
        })?;
        let lamps = self
            .context
            .fulfillment
            .products()
            .load(product(LAMP).as_str())
            .await?
            .state()
            .available();
        let too_many = u32::try_from(lamps.saturating_add(1)).unwrap_or(u32::MAX);
        match self
            .context
            .fulfillment
            .execute(&bob_id, &[add_item(LAMP, too_many)])
            .await
        {
            Err(error) if FulfillmentError::is_out_of_stock_error(&error) => writeln!(
                self.out,
                "   add {too_many} lamps to {bob_id}: refused: {}",
                error_reason(&error)
            )?,
            Err(error) => return Err(error).context("cannot add lamps to bob's order"),
            Ok(_) => bail!("{too_many} lamps were reserved with only {lamps} available"),
        }
        let cancel = OrderCommand::Cancel {
            reason: "changed their mind".to_owned(),
        };
        let cancelled = self.fulfill(&bob_id, &[cancel]).await?;
        writeln!(
            self.out,
            "   cancel {bob_id}: accepted, saved as version {} with the lamp released\n",
            cancelled.version
        )?;
        Ok(())
    }

    /// A clerk loaded alice's order before it shipped and now cancels it.
    async fn detect_a_conflict(&mut self) -> anyhow::Result<()> {
        let alice = self.alice_id();
        writeln!(
            self.out,
            "5. Optimistic concurrency: a clerk's copy of {alice} from before it shipped"
        )?;
        let before_shipping = Version(self.alice.version().get() - 1);
        let mut stale = self
            .orders()
            .load_at_version(alice.as_str(), before_shipping)
            .await
            .context("cannot load the order at an earlier version")?;
        stale.execute(|order| order.cancel("customer called"))?;
        match self.orders().save(&mut stale).await {
            Err(error) if error.is_conflict() => {
                writeln!(self.out, "   cancel and save: {error}; nothing written\n")?;
            }
            Err(error) => return Err(error).context("cannot save the stale copy"),
            Ok(_) => bail!("a stale copy of `{alice}` was saved over a newer version"),
        }
        Ok(())
    }

    async fn update_the_projections(&mut self) -> anyhow::Result<es_core::GlobalPosition> {
        writeln!(
            self.out,
            "6. Update the projections: every read model catches up from the global log"
        )?;
        let report = self
            .models
            .catch_up(&self.context.store)
            .await
            .context("cannot update the read models")?;
        read_side::save(self.context, &self.models).await?;
        // The same read models as SQL tables in the store (`sqlite3 orders.db`).
        read_side::catch_up_tables(self.context).await?;
        writeln!(
            self.out,
            "   {} read models applied {} new events; all at position {}\n",
            self.models.len(),
            report.events,
            report.position
        )?;
        Ok(report.position)
    }

    fn query_the_read_models(&mut self) -> anyhow::Result<()> {
        let out = &mut self.out;
        let summaries = self.models.model::<OrderSummaries>()?;
        let inventory = self.models.model::<Inventory>()?;
        let histories = self.models.model::<CustomerHistories>()?;
        writeln!(out, "7. Query the read models")?;
        writeln!(
            out,
            "   OrderSummary: this run's orders ({} orders in all)",
            output::thousands(summaries.len() as u64)
        )?;
        let ours = [self.alice.id(), self.bob.id()].map(OrderId::new);
        output::print_summaries(
            out,
            TABLE_INDENT,
            ours.iter().filter_map(|id| summaries.get(id)),
        )?;
        writeln!(out, "   Inventory: this run's products")?;
        let products = [MUG, TEAPOT, LAMP].map(product);
        output::print_stock(
            out,
            TABLE_INDENT,
            products
                .iter()
                .map(|product| (product, inventory.level(product))),
        )?;
        writeln!(out, "   CustomerOrderHistory: this run's customers")?;
        output::print_customers(
            out,
            TABLE_INDENT,
            ["alice", "bob"]
                .into_iter()
                .filter_map(|customer| histories.get(&CustomerId::new(customer))),
        )?;
        writeln!(out)?;
        Ok(())
    }

    async fn look_into_the_past(&mut self) -> anyhow::Result<()> {
        let alice = self.alice_id();
        let first_save = self
            .first_save
            .context("the tour saved no order before its temporal queries")?;
        writeln!(self.out, "8. Temporal queries")?;
        let then = self
            .orders()
            .load_at_version(alice.as_str(), first_save.version)
            .await?;
        writeln!(
            self.out,
            "   {alice} at version {}:  {}, {} items, total {}",
            then.version(),
            then.state().status(),
            then.state().item_count(),
            then.state().total()
        )?;
        let then = self
            .orders()
            .load_as_of(alice.as_str(), self.paid_at)
            .await?;
        writeln!(
            self.out,
            "   {alice} as of {}:  {}, at version {}",
            self.paid_at,
            then.state().status(),
            then.version()
        )?;
        let past = self
            .models
            .as_of(&self.context.store, AsOf::Position(first_save.position))
            .await
            .context("cannot build the read models as of a position")?;
        let status = past
            .model::<OrderSummaries>()?
            .get(&alice)
            .map_or("absent", |summary| summary.status.as_str());
        let mugs = past.model::<Inventory>()?.level(&product(MUG));
        let spent = past
            .model::<CustomerHistories>()?
            .get(&CustomerId::new("alice"))
            .map_or(Money::ZERO, |history| history.total_spent);
        writeln!(
            self.out,
            "   read models as of position {}: {alice} {status}; mugs reserved {}; alice had spent {spent}\n",
            first_save.position, mugs.reserved,
        )?;
        Ok(())
    }

    async fn replay(&mut self) -> anyhow::Result<()> {
        let alice = self.alice_id();
        writeln!(
            self.out,
            "9. Replay: the complete state is rebuilt from the events alone"
        )?;
        // A repository without snapshots: every event is applied again.
        let replayed = Repository::<Order, _>::without_snapshots(self.context.store.clone())
            .load(alice.as_str())
            .await?;
        if replayed.state() != self.alice.state() || replayed.version() != self.alice.version() {
            bail!("`{alice}` replayed from its events differs from the aggregate that saved them");
        }
        writeln!(
            self.out,
            "   {alice} replayed from its {} events equals the aggregate that recorded them\n",
            replayed.version()
        )?;
        Ok(())
    }

    fn finish(mut self, position: es_core::GlobalPosition) -> anyhow::Result<()> {
        if self.context.json {
            let order_count = self.models.model::<OrderSummaries>()?.len();
            return output::print_json(
                &mut super::terminal::stdout(true),
                &json!({
                    "store": self.context.store.to_string(),
                    "orders": [
                        OrderView::new(self.alice.id(), self.alice.version(), self.alice.state()),
                        OrderView::new(self.bob.id(), self.bob.version(), self.bob.state()),
                    ],
                    "paid_at": self.paid_at,
                    "position": position,
                    "order_count": order_count,
                }),
            );
        }
        let context = self.context;
        let out = &mut self.out;
        if context.store.as_memory().is_some() {
            writeln!(
                out,
                "The memory store is gone when the program ends; run without --store to keep the events in a SQLite file and explore them."
            )?;
            return Ok(());
        }
        let program = if context.store_spec == super::DEFAULT_STORE {
            "order-example".to_owned()
        } else {
            format!("order-example --store {}", context.store_spec)
        };
        let order = self.alice.id();
        writeln!(out, "Explore (add --json for machine-readable output):")?;
        writeln!(out, "   {program} history {order}")?;
        writeln!(out, "   {program} state {order} --at-version 2")?;
        writeln!(out, "   {program} state {order} --at {}", self.paid_at)?;
        writeln!(out, "   {program} read-models --at {}", self.paid_at)?;
        writeln!(
            out,
            "   {program} generate --orders 10000 && {program} rebuild"
        )?;
        Ok(())
    }
}

/// Runs `command` on `root`, which must refuse it, and says why it did.
fn refuse(
    out: &mut impl Write,
    root: &mut AggregateRoot<Order>,
    what: &str,
    command: impl FnOnce(&Order) -> Result<Vec<OrderEvent>, OrderError>,
) -> anyhow::Result<()> {
    let id = root.id().to_owned();
    match root.execute(command) {
        Err(refused) => writeln!(out, "   {what} {id}: refused: {refused}")?,
        Ok(_) => bail!("the order aggregate accepted `{what} {id}`, which breaks a rule"),
    }
    Ok(())
}

/// The tour's order number `number`: `order-0001`, ...
fn order_id(number: usize) -> OrderId {
    OrderId::new(format!("order-{number:04}"))
}

/// The first order number from `from` on whose order has no events. Numbers follow the orders
/// already in the read models, so a second run on the same store creates new orders.
async fn unused_order_number(orders: &Orders, from: usize) -> anyhow::Result<usize> {
    let mut number = from;
    while orders.load(order_id(number).as_str()).await?.version() != Version::INITIAL {
        number += 1;
    }
    Ok(number)
}

/// A command adding `quantity` units of a tour product at its price.
fn add_item(item: (&str, u64), quantity: u32) -> OrderCommand {
    OrderCommand::AddItem {
        product_id: product(item),
        quantity,
        unit_price: price(item),
    }
}

/// The rule a refused command broke.
fn error_reason(error: &es_core::CommandError<FulfillmentError>) -> String {
    match error {
        es_core::CommandError::Rejected(refusal) => refusal.to_string(),
        other => other.to_string(),
    }
}

/// When event `version` of `order` was recorded.
async fn recorded_at(
    store: &Store,
    order: &OrderId,
    version: Version,
) -> anyhow::Result<Timestamp> {
    let range = VersionRange {
        from: version,
        to: version,
    };
    let events = store
        .read_stream(&Order::stream_id(order.as_str()), range)
        .await?;
    events
        .first()
        .map(|event| event.recorded_at)
        .with_context(|| format!("event {version} of order `{order}` is missing"))
}
