//! The web console for the Order domain: how `es-console` is told to decode order and product
//! events, load their aggregates and show the three read models.
//!
//! The program's `serve` command starts it; a test can start it on any store.

use es_console::{AggregateState, ConsoleApp, ConsoleError, ReadModelContent, StateAt};
use es_core::projection::daemon::{DaemonBuilder, DaemonClient, ReadModelStatus};
use es_core::{
    Aggregate, AsOf, EventStore, GlobalPosition, Projection, ProjectionDaemon, ProjectionStore,
    RecordedEvent, Repository, RepositoryError, SnapshotStore, StreamId, Subscribe,
};
use serde::Serialize;

use crate::domain::{Order, OrderEvent, Product, ProductEvent};
use crate::read_models::{self, CustomerHistories, Inventory, OrderSummaries};

/// How many entries of each map or list of a read model the console shows.
const SHOWN_ENTRIES: usize = 25;

/// Where the read models' status comes from.
enum ReadSide {
    /// As the last `follow` recorded it in the store (read only).
    Saved,
    /// From a daemon running in this process (live; resumable).
    Live(DaemonClient),
}

/// The Order domain on a store `S`, for the console.
pub struct OrderConsole<S> {
    store: S,
    orders: Repository<Order, S>,
    products: Repository<Product, S>,
    initial_stock: u64,
    read_side: ReadSide,
}

impl<S> OrderConsole<S>
where
    S: EventStore + Subscribe + SnapshotStore + ProjectionStore + Clone + 'static,
{
    /// The console of the orders in `store`, showing the read models' status as the last
    /// `follow` recorded it; `initial_stock` as for the inventory read model.
    pub fn new(store: S, initial_stock: u64) -> Self {
        OrderConsole {
            orders: Repository::new(store.clone()),
            products: Repository::new(store.clone()),
            store,
            initial_stock,
            read_side: ReadSide::Saved,
        }
    }

    /// Shows the read models of the daemon `client` belongs to (live status, resumable).
    #[must_use]
    pub fn with_daemon(mut self, client: DaemonClient) -> Self {
        self.read_side = ReadSide::Live(client);
        self
    }

    /// The daemon of the three read models (start it with [`DaemonBuilder::start`] and pass its
    /// client to [`OrderConsole::with_daemon`]).
    ///
    /// # Errors
    /// Never in practice: the three names are distinct.
    pub fn daemon_builder(
        initial_stock: u64,
    ) -> Result<DaemonBuilder, es_core::projection::DuplicateProjection> {
        ProjectionDaemon::builder()
            .with(OrderSummaries::default())?
            .with(Inventory::new(initial_stock))?
            .with(CustomerHistories::default())
    }

    async fn load<A: Aggregate + Serialize>(
        repository: &Repository<A, S>,
        id: &str,
        at: StateAt,
    ) -> Result<AggregateState, ConsoleError> {
        let root = match at {
            StateAt::Latest => repository.load(id).await,
            StateAt::Version(version) => repository.load_at_version(id, version).await,
            StateAt::Time(time) => repository.load_as_of(id, time).await,
        }
        .map_err(|error| match error {
            RepositoryError::VersionOutOfRange { .. } => ConsoleError::NotFound(error.to_string()),
            other => ConsoleError::app(other),
        })?;
        let state = serde_json::to_value(root.state()).map_err(ConsoleError::app)?;
        Ok(AggregateState {
            version: root.version(),
            state,
        })
    }
}

impl<S> ConsoleApp for OrderConsole<S>
where
    S: EventStore + Subscribe + SnapshotStore + ProjectionStore + Clone + 'static,
{
    type Store = S;

    fn store(&self) -> &S {
        &self.store
    }

    fn title(&self) -> &'static str {
        "Orders · event store console"
    }

    fn decode_payload(&self, event: &RecordedEvent) -> Result<serde_json::Value, ConsoleError> {
        match event.stream.aggregate_type() {
            <Order as Aggregate>::TYPE => {
                order_event_json(&event.decode().map_err(ConsoleError::app)?)
            }
            <Product as Aggregate>::TYPE => {
                product_event_json(&event.decode().map_err(ConsoleError::app)?)
            }
            other => Err(ConsoleError::app(format!(
                "no decoder for events of aggregate type `{other}`"
            ))),
        }
    }

    async fn aggregate_state(
        &self,
        stream: &StreamId,
        at: StateAt,
    ) -> Result<Option<AggregateState>, ConsoleError> {
        let id = stream.aggregate_id();
        match stream.aggregate_type() {
            <Order as Aggregate>::TYPE => Ok(Some(Self::load(&self.orders, id, at).await?)),
            <Product as Aggregate>::TYPE => Ok(Some(Self::load(&self.products, id, at).await?)),
            _ => Ok(None),
        }
    }

    async fn read_models(&self) -> Result<Vec<ReadModelStatus>, ConsoleError> {
        match &self.read_side {
            ReadSide::Live(client) => Ok(client.status()),
            ReadSide::Saved => Self::daemon_builder(self.initial_stock)
                .map_err(ConsoleError::app)?
                .saved_status(&self.store)
                .await
                .map_err(ConsoleError::app),
        }
    }

    async fn read_models_as_of(
        &self,
        position: GlobalPosition,
    ) -> Result<Vec<ReadModelContent>, ConsoleError> {
        let registry =
            read_models::registry(Inventory::new(self.initial_stock)).map_err(ConsoleError::app)?;
        let view = registry
            .as_of(&self.store, AsOf::Position(position))
            .await
            .map_err(ConsoleError::app)?;
        let at = view.position();
        Ok(vec![
            content::<OrderSummaries>(view.get(), at)?,
            content::<Inventory>(view.get(), at)?,
            content::<CustomerHistories>(view.get(), at)?,
        ])
    }

    async fn resume(&self, name: &str) -> Result<(), ConsoleError> {
        match &self.read_side {
            ReadSide::Live(client) => client.resume(name).await.map_err(ConsoleError::app),
            ReadSide::Saved => Err(ConsoleError::Unsupported(
                "the read models run in another process: start `serve --follow` to run them here",
            )),
        }
    }
}

fn content<P: Projection>(
    model: Option<&P>,
    position: GlobalPosition,
) -> Result<ReadModelContent, ConsoleError> {
    let model =
        model.ok_or_else(|| ConsoleError::app(format!("`{}` is not registered", P::NAME)))?;
    let content = serde_json::to_value(model).map_err(ConsoleError::app)?;
    Ok(ReadModelContent {
        name: P::NAME.to_owned(),
        position,
        content: es_console::trimmed(content, SHOWN_ENTRIES),
    })
}

/// The event struct alone as JSON (the enum is not part of what is stored).
fn order_event_json(event: &OrderEvent) -> Result<serde_json::Value, ConsoleError> {
    match event {
        OrderEvent::OrderCreated(e) => serde_json::to_value(e),
        OrderEvent::OrderItemAdded(e) => serde_json::to_value(e),
        OrderEvent::OrderItemRemoved(e) => serde_json::to_value(e),
        OrderEvent::PaymentProcessed(e) => serde_json::to_value(e),
        OrderEvent::OrderShipped(e) => serde_json::to_value(e),
        OrderEvent::OrderCancelled(e) => serde_json::to_value(e),
    }
    .map_err(ConsoleError::app)
}

fn product_event_json(event: &ProductEvent) -> Result<serde_json::Value, ConsoleError> {
    match event {
        ProductEvent::StockReceived(e) => serde_json::to_value(e),
        ProductEvent::StockReserved(e) => serde_json::to_value(e),
        ProductEvent::StockReleased(e) => serde_json::to_value(e),
        ProductEvent::StockShipped(e) => serde_json::to_value(e),
    }
    .map_err(ConsoleError::app)
}

#[cfg(test)]
mod tests {
    use es_core::{CodecId, ExpectedVersion, InMemory, NewEvent, Version};

    use super::*;
    use crate::{CustomerId, Money, OrderCreated, OrderItemAdded, ProductId};

    async fn store_with_one_order() -> InMemory {
        let store = InMemory::new();
        let created = OrderEvent::from(OrderCreated {
            customer_id: CustomerId::new("alice"),
        });
        let added = OrderEvent::from(OrderItemAdded {
            product_id: ProductId::new("mug"),
            quantity: 2,
            unit_price: Money::from_minor_units(1_250),
        });
        let events = vec![
            NewEvent::encode(&created, CodecId::Json).expect("encode"),
            NewEvent::encode(&added, CodecId::Postcard).expect("encode"),
        ];
        store
            .append(&Order::stream_id("o-1"), ExpectedVersion::NoStream, events)
            .await
            .expect("append");
        store
    }

    #[tokio::test]
    async fn payloads_of_both_codecs_decode_to_the_event_struct() {
        let store = store_with_one_order().await;
        let console = OrderConsole::new(store.clone(), 10);
        let events = store
            .read_stream(&Order::stream_id("o-1"), es_core::VersionRange::all())
            .await
            .expect("read");
        let created = console.decode_payload(&events[0]).expect("json payload");
        assert_eq!(created["customer_id"], "alice");
        let added = console
            .decode_payload(&events[1])
            .expect("postcard payload");
        assert_eq!(added["quantity"], 2);
        let mut unknown = events[0].clone();
        unknown.event_type = "Nope".into();
        assert!(console.decode_payload(&unknown).is_err());
    }

    #[tokio::test]
    async fn states_at_a_version_and_past_the_end() {
        let store = store_with_one_order().await;
        let console = OrderConsole::new(store, 10);
        let stream = Order::stream_id("o-1");
        let before = console
            .aggregate_state(&stream, StateAt::Version(Version(1)))
            .await
            .expect("state")
            .expect("an order");
        assert_eq!(before.version, Version(1));
        assert_eq!(before.state["lines"], serde_json::json!({}));
        let latest = console
            .aggregate_state(&stream, StateAt::Latest)
            .await
            .expect("state")
            .expect("an order");
        assert_eq!(latest.version, Version(2));
        assert_eq!(latest.state["lines"]["mug"]["quantity"], 2);
        let past = console
            .aggregate_state(&stream, StateAt::Version(Version(9)))
            .await;
        assert!(matches!(past, Err(ConsoleError::NotFound(_))));
        let other = console
            .aggregate_state(&StreamId::new("invoice", "1"), StateAt::Latest)
            .await
            .expect("no error");
        assert!(other.is_none());
    }

    #[tokio::test]
    async fn read_models_saved_status_and_content_as_of_a_position() {
        let store = store_with_one_order().await;
        let console = OrderConsole::new(store, 10);
        let statuses = console.read_models().await.expect("status");
        let names: Vec<_> = statuses.iter().map(|status| status.name.as_str()).collect();
        assert_eq!(
            names,
            ["order-summaries", "inventory", "customer-histories"]
        );
        assert!(statuses.iter().all(|status| status.lag == 2));
        let at_one = console
            .read_models_as_of(GlobalPosition(1))
            .await
            .expect("as of");
        assert_eq!(at_one.len(), 3);
        assert!(at_one
            .iter()
            .all(|content| content.position == GlobalPosition(1)));
        let resumed = console.resume("inventory").await;
        assert!(matches!(resumed, Err(ConsoleError::Unsupported(_))));
    }
}
