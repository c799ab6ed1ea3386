//! Replay equivalence of the read side: for random valid command sequences over many orders,
//! the read models caught up in several steps (and across a save/restore restart) equal the
//! read models rebuilt from scratch, and the inventory never goes negative nor loses units.
//! The SQL table versions, caught up on the same schedule (and reopened at each restart),
//! hold exactly what the in-memory ones hold, and equal their own rebuild.

use std::collections::BTreeMap;

use es_core::projection::table::{TableDatabase, TableStore, Tables};
use es_core::{CodecId, InMemory, ProjectionRegistry, Repository};
use order_example::read_models::tables::{CustomerHistoryTable, InventoryTable, OrderSummaryTable};
use order_example::read_models::{self, CustomerHistories, Inventory, OrderSummaries};
use order_example::{CustomerId, Money, Order, OrderCommand, OrderStatus, ProductId};
use proptest::prelude::*;

const ORDERS: usize = 12;
const PRODUCTS: usize = 5;
const CUSTOMERS: usize = 4;
const INITIAL_STOCK: u64 = 25;

/// One random step: an intention on one order, turned into a valid command by [`Shop::step`].
#[derive(Clone, Debug)]
struct Step {
    order: usize,
    action: u8,
    product: usize,
    quantity: u32,
    /// What the reader does after the step.
    reader: Reader,
}

#[derive(Clone, Copy, Debug)]
enum Reader {
    Nothing,
    CatchUp,
    /// Save the read models, drop them, restore them from the store (a restart).
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..ORDERS,
        0u8..7,
        0..PRODUCTS,
        1u32..5,
        prop_oneof![6 => Just(Reader::Nothing), 3 => Just(Reader::CatchUp), 1 => Just(Reader::Restart)],
    )
        .prop_map(|(order, action, product, quantity, reader)| Step {
            order,
            action,
            product,
            quantity,
            reader,
        })
}

fn product(index: usize) -> ProductId {
    ProductId::new(format!("p{index}"))
}

fn price(index: usize) -> Money {
    Money::from_minor_units(100 + 37 * index as u64)
}

struct Shop {
    store: InMemory,
    orders: Repository<Order, InMemory>,
    /// Units shipped so far, per product: an order ships only within the stock.
    shipped: BTreeMap<ProductId, u64>,
}

impl Shop {
    /// Turns `step` into a command the order accepts in its current state (or nothing) and
    /// saves it.
    async fn step(&mut self, step: &Step) {
        let id = format!("order-{}", step.order);
        let root = self.orders.load(&id).await.unwrap();
        let order = root.state();
        let command = match (order.status(), step.action) {
            (OrderStatus::NotCreated, _) => Some(OrderCommand::Create {
                customer_id: CustomerId::new(format!("c{}", step.order % CUSTOMERS)),
            }),
            (OrderStatus::Open, 0..=2) => Some(OrderCommand::AddItem {
                product_id: product(step.product),
                quantity: step.quantity,
                unit_price: price(step.product),
            }),
            (OrderStatus::Open, 3) => {
                let in_order = order
                    .lines()
                    .keys()
                    .nth(step.product % order.lines().len().max(1));
                in_order.map(|product_id| OrderCommand::RemoveItem {
                    product_id: product_id.clone(),
                })
            }
            (OrderStatus::Open, 4 | 5) if !order.lines().is_empty() => Some(OrderCommand::Pay {
                amount: order.total(),
            }),
            (OrderStatus::Paid, 0..=4) => {
                let fits = order.lines().iter().all(|(product, line)| {
                    self.shipped.get(product).copied().unwrap_or(0) + u64::from(line.quantity)
                        <= INITIAL_STOCK
                });
                if fits {
                    for (product, line) in order.lines() {
                        *self.shipped.entry(product.clone()).or_default() +=
                            u64::from(line.quantity);
                    }
                    Some(OrderCommand::Ship {
                        tracking_number: format!("T{}", step.order),
                    })
                } else {
                    Some(OrderCommand::Cancel {
                        reason: "out of stock".to_owned(),
                    })
                }
            }
            (OrderStatus::Open | OrderStatus::Paid, 6) => Some(OrderCommand::Cancel {
                reason: "changed mind".to_owned(),
            }),
            _ => None,
        };
        if let Some(command) = command {
            self.orders
                .update(&id, |order| command.decide(order))
                .await
                .unwrap_or_else(|error| panic!("{id}: {command:?} refused: {error:?}"));
        }
    }
}

fn registry() -> ProjectionRegistry {
    read_models::registry(Inventory::new(INITIAL_STOCK))
        .unwrap()
        .with_page_size(7)
}

/// Units are never lost: per product, `on_hand + shipped` is the initial stock, `shipped` is
/// what shipped orders hold and `reserved` what open and paid orders hold.
fn check_inventory(models: &ProjectionRegistry) {
    let inventory = models.get::<Inventory>().unwrap();
    let summaries = models.get::<OrderSummaries>().unwrap();
    for index in 0..PRODUCTS {
        let product = product(index);
        let level = inventory.level(&product);
        let held_by = |statuses: &[OrderStatus]| -> u64 {
            summaries
                .iter()
                .filter(|summary| statuses.contains(&summary.status))
                .filter_map(|summary| summary.lines.get(&product))
                .map(|line| u64::from(line.quantity))
                .sum()
        };
        assert_eq!(
            level.on_hand + i64::try_from(level.shipped).unwrap(),
            i64::try_from(INITIAL_STOCK).unwrap(),
            "{product}: {level:?}"
        );
        assert!(!level.is_oversold(), "{product}: {level:?}");
        assert_eq!(level.shipped, held_by(&[OrderStatus::Shipped]), "{product}");
        assert_eq!(
            level.reserved,
            held_by(&[OrderStatus::Open, OrderStatus::Paid]),
            "{product}"
        );
    }
}

fn check_customers(models: &ProjectionRegistry) {
    let histories = models.get::<CustomerHistories>().unwrap();
    let summaries = models.get::<OrderSummaries>().unwrap();
    for history in histories.iter() {
        let mine: Vec<_> = summaries
            .iter()
            .filter(|summary| summary.customer_id == history.customer_id)
            .collect();
        assert_eq!(history.order_count(), mine.len() as u64);
        let kept_paid = |s: &&&order_example::read_models::OrderSummary| {
            s.paid.is_some() && s.status != OrderStatus::Cancelled
        };
        let spent: u64 = mine
            .iter()
            .filter(kept_paid)
            .map(|s| s.total.minor_units())
            .sum();
        assert_eq!(history.total_spent.minor_units(), spent);
        assert_eq!(
            history.paid_orders,
            mine.iter().filter(kept_paid).count() as u64
        );
        let cancelled = mine
            .iter()
            .filter(|s| s.status == OrderStatus::Cancelled)
            .count();
        assert_eq!(history.cancellations, cancelled as u64);
    }
}

/// The three table read models over one database.
struct TableModels {
    summaries: Tables<OrderSummaryTable>,
    inventory: Tables<InventoryTable>,
    histories: Tables<CustomerHistoryTable>,
}

impl TableModels {
    async fn open(database: &TableDatabase) -> TableModels {
        TableModels {
            summaries: Tables::open(OrderSummaryTable, database.clone())
                .await
                .unwrap(),
            inventory: Tables::open(InventoryTable::new(INITIAL_STOCK), database.clone())
                .await
                .unwrap(),
            histories: Tables::open(CustomerHistoryTable, database.clone())
                .await
                .unwrap(),
        }
    }

    async fn catch_up(&self, store: &InMemory) {
        self.summaries.catch_up(store).await.unwrap();
        self.inventory.catch_up(store).await.unwrap();
        self.histories.catch_up(store).await.unwrap();
    }
}

/// The tables hold what the in-memory read models hold, row for row.
async fn assert_tables_equal(database: &TableDatabase, models: &ProjectionRegistry) {
    let (summaries, levels, reservations, anomalies, histories) = database
        .read(|sql| {
            Ok((
                OrderSummaryTable::load_all(sql)?,
                InventoryTable::levels(sql)?,
                InventoryTable::reservations(sql)?,
                InventoryTable::anomalies(sql)?,
                CustomerHistoryTable::load_all(sql)?,
            ))
        })
        .await
        .unwrap();
    let memory_summaries: Vec<_> = models
        .get::<OrderSummaries>()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(summaries, memory_summaries);
    let inventory = models.get::<Inventory>().unwrap();
    let memory_levels: Vec<_> = inventory
        .levels()
        .map(|(product, level)| (product.clone(), level))
        .collect();
    assert_eq!(levels, memory_levels);
    assert_eq!(anomalies, inventory.anomalies());
    for summary in models.get::<OrderSummaries>().unwrap().iter() {
        let memory: BTreeMap<_, _> = inventory
            .reserved_by(&summary.order_id)
            .map(|(product, units)| (product.clone(), units))
            .collect();
        let table = reservations
            .get(&summary.order_id)
            .cloned()
            .unwrap_or_default();
        assert_eq!(table, memory, "reservations of {}", summary.order_id);
    }
    let memory_histories: Vec<_> = models
        .get::<CustomerHistories>()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(histories, memory_histories);
}

async fn scenario(steps: Vec<Step>, codec: CodecId) {
    let store = InMemory::new();
    let mut shop = Shop {
        orders: Repository::new(store.clone()),
        store,
        shipped: BTreeMap::new(),
    };
    let mut live = registry();
    let database = shop.store.table_database();
    let mut tables = TableModels::open(&database).await;
    for step in &steps {
        shop.step(step).await;
        match step.reader {
            Reader::Nothing => {}
            Reader::CatchUp => {
                live.catch_up(&shop.store).await.unwrap();
                check_inventory(&live);
                tables.catch_up(&shop.store).await;
            }
            Reader::Restart => {
                live.save_to(&shop.store, codec).await.unwrap();
                live = registry();
                let restored = live.restore_from(&shop.store).await.unwrap();
                assert_eq!(restored.restored.len(), 3);
                // The table read models resume from their durable checkpoints.
                tables = TableModels::open(&database).await;
            }
        }
    }
    live.catch_up(&shop.store).await.unwrap();
    tables.catch_up(&shop.store).await;

    let mut rebuilt = registry();
    let report = rebuilt.rebuild(&shop.store).await.unwrap();
    assert_eq!(live.position(), report.position);
    assert_eq!(
        live.get::<OrderSummaries>(),
        rebuilt.get::<OrderSummaries>()
    );
    assert_eq!(live.get::<Inventory>(), rebuilt.get::<Inventory>());
    assert_eq!(
        live.get::<CustomerHistories>(),
        rebuilt.get::<CustomerHistories>()
    );
    check_inventory(&rebuilt);
    check_customers(&rebuilt);

    assert_tables_equal(&database, &rebuilt).await;
    // A rebuild of the tables gives the same rows.
    tables.summaries.rebuild(&shop.store).await.unwrap();
    tables.inventory.rebuild(&shop.store).await.unwrap();
    tables.histories.rebuild(&shop.store).await.unwrap();
    assert_tables_equal(&database, &rebuilt).await;
    assert_eq!(
        tables.inventory.checkpoint().await.unwrap(),
        report.position
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn incremental_read_models_equal_rebuilt_ones(
        steps in proptest::collection::vec(step(), 1..250),
        postcard in any::<bool>(),
    ) {
        let codec = if postcard { CodecId::Postcard } else { CodecId::Json };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(scenario(steps, codec));
    }
}

/// The case proptest shrank a failure to while this suite was written (kept in
/// `order_read_models.proptest-regressions`): an item added and removed again before any
/// catch-up. Spelled out so it runs on every codec whatever the generator does.
#[test]
fn an_item_added_then_removed_leaves_the_read_models_consistent() {
    let add = |reader| Step {
        order: 10,
        action: 0,
        product: 0,
        quantity: 1,
        reader,
    };
    let remove = |reader| Step {
        action: 3,
        ..add(reader)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for codec in [CodecId::Json, CodecId::Postcard] {
        for reader in [Reader::Nothing, Reader::CatchUp, Reader::Restart] {
            let steps = vec![add(reader), add(reader), remove(reader)];
            runtime.block_on(scenario(steps, codec));
        }
    }
}
