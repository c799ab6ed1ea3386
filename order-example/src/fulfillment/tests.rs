//! Fulfillment on the in-memory store: each order command's stock effect, all-or-nothing
//! refusals, and many concurrent writers that never oversell.

use std::sync::Arc;

use es_core::{CommandError, EventStore, GlobalPosition, InMemory};

use super::*;
use crate::values::{CustomerId, Money};

fn mug() -> ProductId {
    ProductId::new("mug")
}

fn create(customer: &str) -> OrderCommand {
    OrderCommand::Create {
        customer_id: CustomerId::new(customer),
    }
}

fn add(product: &ProductId, quantity: u32) -> OrderCommand {
    OrderCommand::AddItem {
        product_id: product.clone(),
        quantity,
        unit_price: Money::from_minor_units(100),
    }
}

async fn stock(shop: &Fulfillment<InMemory>, product: &ProductId) -> Product {
    shop.products()
        .load(product.as_str())
        .await
        .unwrap()
        .into_state()
}

#[tokio::test]
async fn each_order_command_moves_the_stock_in_the_same_append() {
    let store = InMemory::new();
    let shop = Fulfillment::new(store.clone()).with_initial_stock(10);
    let (o1, o2) = (OrderId::new("o1"), OrderId::new("o2"));
    let pot = ProductId::new("pot");

    let saved = shop
        .execute(&o1, &[create("alice"), add(&mug(), 3), add(&pot, 1)])
        .await
        .unwrap();
    assert_eq!(saved.outcomes.len(), 3, "the order, the mug and the pot");
    assert_eq!(
        saved.events,
        3 + 2 + 2,
        "each product received, then reserved"
    );
    let mugs = stock(&shop, &mug()).await;
    assert_eq!((mugs.on_hand(), mugs.reserved()), (10, 3));

    shop.execute(
        &o1,
        &[OrderCommand::RemoveItem {
            product_id: pot.clone(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(stock(&shop, &pot).await.available(), 10);

    let total = Money::from_minor_units(300);
    shop.execute(
        &o1,
        &[
            OrderCommand::Pay { amount: total },
            OrderCommand::Ship {
                tracking_number: "T1".to_owned(),
            },
        ],
    )
    .await
    .unwrap();
    let mugs = stock(&shop, &mug()).await;
    assert_eq!((mugs.on_hand(), mugs.reserved()), (7, 0));

    shop.execute(&o2, &[create("bob"), add(&mug(), 5)])
        .await
        .unwrap();
    shop.execute(
        &o2,
        &[OrderCommand::Cancel {
            reason: "no".to_owned(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(stock(&shop, &mug()).await.available(), 7);
    let restocked = shop.receive(&mug(), 3).await.unwrap();
    assert_eq!(restocked.state().on_hand(), 10);
}

#[tokio::test]
async fn a_refusal_stores_nothing_of_any_stream() {
    let store = InMemory::new();
    let shop = Fulfillment::new(store.clone()).with_initial_stock(4);
    let pot = ProductId::new("pot");
    shop.execute(&OrderId::new("o1"), &[create("alice"), add(&mug(), 3)])
        .await
        .unwrap();
    let before = store.last_position().await.unwrap();

    // The pot would be reserved, but the mug is out of stock: neither is.
    let error = shop
        .execute(
            &OrderId::new("o2"),
            &[create("bob"), add(&pot, 1), add(&mug(), 2)],
        )
        .await
        .unwrap_err();
    assert!(FulfillmentError::is_out_of_stock_error(&error), "{error:?}");
    let CommandError::Rejected(refusal) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(
        refusal.to_string(),
        "out of stock: `mug` has 1 available, 2 requested"
    );
    assert_eq!(store.last_position().await.unwrap(), before);
    assert_eq!(
        stock(&shop, &pot).await.on_hand(),
        0,
        "the pot was never stocked"
    );

    // An order rule refuses the same way.
    let error = shop
        .execute(&OrderId::new("o3"), &[add(&mug(), 1)])
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        CommandError::Rejected(FulfillmentError::Order(OrderError::MissingOrder))
    ));
    // Without an initial stock, a new product has nothing to reserve.
    let bare = Fulfillment::new(store.clone());
    let error = bare
        .execute(
            &OrderId::new("o4"),
            &[create("carol"), add(&ProductId::new("vase"), 1)],
        )
        .await
        .unwrap_err();
    assert!(FulfillmentError::is_out_of_stock_error(&error));
    assert_eq!(store.last_position().await.unwrap(), before);
}

/// Many tasks, each placing orders for the same few products with stock for only some of
/// them: the units reserved never exceed the stock, every accepted order holds its units,
/// every refusal says out of stock, and conflicts were resolved by re-deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_never_reserve_more_than_the_stock() {
    const TASKS: usize = 8;
    const ORDERS: usize = 10;
    const STOCK: u64 = 25;
    let store = InMemory::new();
    let shop = Arc::new(Fulfillment::new(store.clone()).with_initial_stock(STOCK));
    let products = [mug(), ProductId::new("pot")];
    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let shop = Arc::clone(&shop);
            let products = products.clone();
            tokio::spawn(async move {
                let mut accepted: Vec<(OrderId, u64)> = Vec::new();
                for n in 0..ORDERS {
                    let id = OrderId::new(format!("o-{task}-{n}"));
                    let quantity = 1 + u32::try_from((task + n) % 3).unwrap();
                    let commands = [
                        create("c"),
                        add(&products[0], quantity),
                        add(&products[1], quantity),
                    ];
                    match shop.execute(&id, &commands).await {
                        Ok(_) => accepted.push((id, u64::from(quantity))),
                        Err(error) => {
                            assert!(FulfillmentError::is_out_of_stock_error(&error), "{error:?}");
                        }
                    }
                }
                accepted
            })
        })
        .collect();
    let mut accepted = Vec::new();
    for handle in handles {
        accepted.extend(handle.await.unwrap());
    }
    let reserved: u64 = accepted.iter().map(|(_, units)| units).sum();
    assert!(reserved <= STOCK, "reserved {reserved} of {STOCK}");
    assert!(!accepted.is_empty());
    for product in &products {
        let state = stock(&shop, product).await;
        assert_eq!(state.reserved(), reserved, "{product}");
        assert_eq!(state.on_hand(), STOCK);
        for (order, units) in &accepted {
            assert_eq!(state.reserved_by(order), *units);
        }
    }
    // Every accepted order exists; the log holds nothing else.
    let log = store
        .read_all(GlobalPosition::START, usize::MAX)
        .await
        .unwrap();
    let orders = log
        .iter()
        .filter(|event| event.event_type == "OrderCreated")
        .count();
    assert_eq!(orders, accepted.len());
}
