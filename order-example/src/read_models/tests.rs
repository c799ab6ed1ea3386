//! The read models on small, hand-written histories.

use es_core::{
    Aggregate, CodecId, EventStore, InMemory, ManualClock, Projection, ProjectionError,
    ProjectionRegistry, Repository, Timestamp, Version,
};

use super::*;
use crate::domain::{OrderCommand, OrderStatus};
use crate::values::{CustomerId, Money, ProductId};

struct Shop {
    clock: ManualClock,
    store: InMemory,
    orders: Repository<Order, InMemory>,
}

impl Shop {
    fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_micros(1_000_000));
        let store = InMemory::with_clock(clock.clone());
        Shop {
            clock,
            orders: Repository::new(store.clone()),
            store,
        }
    }

    /// Runs `command` on `order` one second after the previous command.
    async fn run(&self, order: &str, command: OrderCommand) {
        self.clock.advance_secs(1);
        self.orders
            .update(order, |state| command.decide(state))
            .await
            .unwrap();
    }

    async fn create(&self, order: &str, customer: &str) {
        self.run(
            order,
            OrderCommand::Create {
                customer_id: CustomerId::new(customer),
            },
        )
        .await;
    }

    async fn add(&self, order: &str, product: &str, quantity: u32, cents: u64) {
        self.run(
            order,
            OrderCommand::AddItem {
                product_id: ProductId::new(product),
                quantity,
                unit_price: Money::from_minor_units(cents),
            },
        )
        .await;
    }

    async fn remove(&self, order: &str, product: &str) {
        let product_id = ProductId::new(product);
        self.run(order, OrderCommand::RemoveItem { product_id })
            .await;
    }

    async fn pay(&self, order: &str, cents: u64) {
        let amount = Money::from_minor_units(cents);
        self.run(order, OrderCommand::Pay { amount }).await;
    }

    async fn ship(&self, order: &str) {
        let tracking_number = format!("T-{order}");
        self.run(order, OrderCommand::Ship { tracking_number })
            .await;
    }

    async fn cancel(&self, order: &str) {
        let reason = "changed mind".to_owned();
        self.run(order, OrderCommand::Cancel { reason }).await;
    }

    async fn read_models(&self, inventory: Inventory) -> ProjectionRegistry {
        let mut registry = registry(inventory).unwrap();
        registry.catch_up(&self.store).await.unwrap();
        registry
    }
}

fn level(on_hand: i64, reserved: u64, shipped: u64) -> StockLevel {
    StockLevel {
        on_hand,
        reserved,
        shipped,
    }
}

/// o1: alice, 2 mugs + 1 pot, paid, shipped. o2: bob, 3 mugs, lamp removed, cancelled.
/// o3: alice, 1 pot, paid, cancelled (refunded). o4: bob, 4 mugs, still open.
async fn shop() -> Shop {
    let shop = Shop::new();
    shop.create("o1", "alice").await;
    shop.add("o1", "mug", 2, 1_250).await;
    shop.add("o1", "pot", 1, 3_000).await;
    shop.create("o2", "bob").await;
    shop.add("o2", "mug", 3, 1_250).await;
    shop.add("o2", "lamp", 1, 9_900).await;
    shop.pay("o1", 5_500).await;
    shop.remove("o2", "lamp").await;
    shop.ship("o1").await;
    shop.cancel("o2").await;
    shop.create("o3", "alice").await;
    shop.add("o3", "pot", 1, 3_000).await;
    shop.pay("o3", 3_000).await;
    shop.cancel("o3").await;
    shop.create("o4", "bob").await;
    shop.add("o4", "mug", 4, 1_250).await;
    shop
}

#[tokio::test]
async fn order_summaries_follow_each_order() {
    let shop = shop().await;
    let registry = shop.read_models(Inventory::new(10)).await;
    let summaries = registry.get::<OrderSummaries>().unwrap();
    assert_eq!(summaries.len(), 4);

    let o1 = summaries.get(&OrderId::new("o1")).unwrap();
    assert_eq!(o1.customer_id, CustomerId::new("alice"));
    assert_eq!(o1.status, OrderStatus::Shipped);
    assert_eq!(o1.item_count, 3);
    assert_eq!(o1.total, Money::from_minor_units(5_500));
    assert_eq!(o1.paid, Some(Money::from_minor_units(5_500)));
    assert_eq!(o1.version, Version(5));
    assert_eq!(o1.created_at, Timestamp::from_micros(2_000_000));
    assert_eq!(o1.updated_at, Timestamp::from_micros(10_000_000));

    let o2 = summaries.get(&OrderId::new("o2")).unwrap();
    assert_eq!(o2.status, OrderStatus::Cancelled);
    assert_eq!(o2.lines.len(), 1, "the lamp was removed");
    assert_eq!(o2.total, Money::from_minor_units(3_750));

    let open: Vec<_> = summaries
        .by_status(OrderStatus::Open)
        .map(|s| s.order_id.as_str())
        .collect();
    assert_eq!(open, ["o4"]);
    // Listed by id, whatever order the map keeps them in.
    let listed: Vec<_> = summaries.iter().map(|s| s.order_id.as_str()).collect();
    assert_eq!(listed, ["o1", "o2", "o3", "o4"]);
    let closed: Vec<_> = summaries
        .by_status(OrderStatus::Cancelled)
        .map(|s| s.order_id.as_str())
        .collect();
    assert_eq!(closed, ["o2", "o3"]);
}

#[tokio::test]
async fn inventory_reserves_releases_and_consumes() {
    let shop = shop().await;
    let registry = shop
        .read_models(Inventory::new(10).with_stock(ProductId::new("pot"), 1))
        .await;
    let inventory = registry.get::<Inventory>().unwrap();
    // mug: o1 shipped 2, o2 cancelled (released 3), o4 reserves 4.
    assert_eq!(inventory.level(&ProductId::new("mug")), level(8, 4, 2));
    assert_eq!(inventory.level(&ProductId::new("mug")).available(), 4);
    // pot: 1 initially, o1 shipped it, o3 reserved one then cancelled.
    assert_eq!(inventory.level(&ProductId::new("pot")), level(0, 0, 1));
    // lamp: reserved by o2, then removed.
    assert_eq!(inventory.level(&ProductId::new("lamp")), level(10, 0, 0));
    // Never ordered: the initial stock.
    assert_eq!(inventory.level(&ProductId::new("desk")), level(10, 0, 0));
    assert_eq!(
        inventory
            .reserved_by(&OrderId::new("o4"))
            .collect::<Vec<_>>(),
        [(&ProductId::new("mug"), 4)]
    );
    assert_eq!(inventory.reserved_by(&OrderId::new("o1")).count(), 0);
}

#[tokio::test]
async fn inventory_reports_more_reserved_than_on_hand_as_a_shortage() {
    let shop = shop().await;
    let registry = shop.read_models(Inventory::new(3)).await;
    let mug = registry
        .get::<Inventory>()
        .unwrap()
        .level(&ProductId::new("mug"));
    assert_eq!(mug, level(1, 4, 2));
    assert_eq!((mug.available(), mug.shortage()), (0, 3));
}

/// The shop's log is what an older release wrote: orders alone, with no product stock on the
/// write side. Against an initial stock of 1 it oversold mugs (2 shipped). The inventory
/// accepts it: negative stock on hand, the open order's mugs back-ordered, one anomaly
/// counted (and logged), and every read model reaches the end of the log.
#[tokio::test]
async fn an_oversold_log_shows_negative_stock_and_the_read_models_go_on() {
    let shop = shop().await;
    let mut registry = registry(Inventory::new(1)).unwrap();
    let report = registry.catch_up(&shop.store).await.unwrap();
    let end = shop.store.last_position().await.unwrap();
    assert_eq!(report.position, end);
    assert_eq!(registry.checkpoint::<Inventory>().unwrap(), end);
    assert_eq!(registry.checkpoint::<OrderSummaries>().unwrap(), end);
    let inventory = registry.get::<Inventory>().unwrap();
    let mug = inventory.level(&ProductId::new("mug"));
    assert_eq!(mug, level(-1, 4, 2));
    assert!(mug.is_oversold());
    assert_eq!((mug.available(), mug.shortage()), (0, 4));
    assert_eq!(inventory.anomalies(), 1, "one oversold shipment");
    assert_eq!(
        inventory
            .oversold()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["mug"]
    );
    // A rebuild gives the same answer: the read model is a function of the log.
    let mut rebuilt = super::registry(Inventory::new(1)).unwrap();
    rebuilt.rebuild(&shop.store).await.unwrap();
    assert_eq!(rebuilt.get::<Inventory>(), registry.get::<Inventory>());
}

/// Stock received on a product's stream replaces the configured initial stock.
#[tokio::test]
async fn received_stock_replaces_the_configured_initial_stock() {
    let shop = shop().await;
    let received: crate::domain::ProductEvent =
        crate::domain::StockReceived { quantity: 40 }.into();
    shop.store
        .append(
            &crate::domain::Product::stream_id("mug"),
            es_core::ExpectedVersion::NoStream,
            vec![es_core::NewEvent::encode(&received, CodecId::Json).unwrap()],
        )
        .await
        .unwrap();
    let registry = shop.read_models(Inventory::new(3)).await;
    let inventory = registry.get::<Inventory>().unwrap();
    assert_eq!(inventory.level(&ProductId::new("mug")), level(38, 4, 2));
    assert_eq!(inventory.starting_stock(&ProductId::new("pot")), 3);
}

#[tokio::test]
async fn customer_histories_count_spending_and_cancellations() {
    let shop = shop().await;
    let registry = shop.read_models(Inventory::new(10)).await;
    let histories = registry.get::<CustomerHistories>().unwrap();
    assert_eq!(histories.len(), 2);

    let alice = histories.get(&CustomerId::new("alice")).unwrap();
    assert_eq!(alice.order_count(), 2);
    assert_eq!(alice.orders, [OrderId::new("o1"), OrderId::new("o3")]);
    assert_eq!(alice.cancellations, 1);
    assert_eq!(alice.paid_orders, 1, "o3 was refunded");
    assert_eq!(alice.total_spent, Money::from_minor_units(5_500));
    assert_eq!(
        alice.average_order_value(),
        Some(Money::from_minor_units(5_500))
    );
    assert_eq!(alice.first_order_at, Timestamp::from_micros(2_000_000));

    let bob = histories.get(&CustomerId::new("bob")).unwrap();
    assert_eq!(
        (bob.order_count(), bob.cancellations, bob.paid_orders),
        (2, 1, 0)
    );
    assert_eq!(bob.total_spent, Money::ZERO);
    assert_eq!(bob.average_order_value(), None);
}

#[tokio::test]
async fn read_models_as_of_a_time_show_the_past() {
    let shop = shop().await;
    let registry = shop.read_models(Inventory::new(10)).await;
    // Event 7 (o1 paid) was recorded at 8 s.
    let view = registry
        .as_of(
            &shop.store,
            es_core::AsOf::Time(Timestamp::from_micros(8_000_000)),
        )
        .await
        .unwrap();
    let o1 = view
        .get::<OrderSummaries>()
        .unwrap()
        .get(&OrderId::new("o1"))
        .unwrap()
        .clone();
    assert_eq!(o1.status, OrderStatus::Paid);
    assert!(view
        .get::<OrderSummaries>()
        .unwrap()
        .get(&OrderId::new("o3"))
        .is_none());
    let mug = view
        .get::<Inventory>()
        .unwrap()
        .level(&ProductId::new("mug"));
    assert_eq!(mug, level(10, 5, 0));
}

#[tokio::test]
async fn read_models_round_trip_through_both_codecs() {
    let shop = shop().await;
    let registry = shop.read_models(Inventory::new(10)).await;
    for codec in [CodecId::Json, CodecId::Postcard] {
        let summaries = registry.get::<OrderSummaries>().unwrap();
        let bytes = codec.encode(summaries).unwrap();
        assert_eq!(&codec.decode::<OrderSummaries>(&bytes).unwrap(), summaries);
        let inventory = registry.get::<Inventory>().unwrap();
        let bytes = codec.encode(inventory).unwrap();
        assert_eq!(&codec.decode::<Inventory>(&bytes).unwrap(), inventory);
        let histories = registry.get::<CustomerHistories>().unwrap();
        let bytes = codec.encode(histories).unwrap();
        assert_eq!(
            &codec.decode::<CustomerHistories>(&bytes).unwrap(),
            histories
        );
    }
}

async fn only_error<P: Projection>(store: &InMemory, read_model: P) -> ReadModelError {
    let mut registry = ProjectionRegistry::new().with(read_model).unwrap();
    match registry.catch_up(store).await {
        Err(ProjectionError::Apply { source, .. }) => *source.downcast::<ReadModelError>().unwrap(),
        other => panic!("{}: expected an apply error, got {other:?}", P::NAME),
    }
}

#[tokio::test]
async fn events_of_an_order_never_created_are_reported() {
    let store = InMemory::new();
    let cancelled: OrderEvent = crate::domain::OrderCancelled {
        reason: "never existed".to_owned(),
    }
    .into();
    store
        .append(
            &Order::stream_id("ghost"),
            es_core::ExpectedVersion::NoStream,
            vec![es_core::NewEvent::encode(&cancelled, CodecId::Json).unwrap()],
        )
        .await
        .unwrap();
    let errors = [
        only_error(&store, OrderSummaries::default()).await,
        only_error(&store, CustomerHistories::default()).await,
    ];
    // The inventory only counts stock: it accepts the event with a warning.
    let mut inventory = ProjectionRegistry::new().with(Inventory::new(1)).unwrap();
    inventory.catch_up(&store).await.unwrap();
    assert_eq!(inventory.get::<Inventory>().unwrap().anomalies(), 1);
    for error in errors {
        assert!(
            matches!(
                &error,
                ReadModelError::UnknownOrder { order, event_type: "OrderCancelled" }
                    if order.as_str() == "ghost"
            ),
            "{error}"
        );
    }
}
