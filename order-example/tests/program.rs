//! The `order-example` program, run as a user runs it: every command on the default SQLite
//! file, each test in a directory of its own.

mod support;

use serde_json::{json, Value};
use support::Workspace;

/// The ids of the orders the tour created, and when the first one was paid.
fn tour(workspace: &Workspace) -> (String, String, String) {
    let demo = workspace.json(&[]);
    let orders = demo["orders"]
        .as_array()
        .expect("the tour lists its orders");
    assert_eq!(orders.len(), 2, "{demo}");
    let id = |order: &Value| order["order_id"].as_str().unwrap().to_owned();
    let paid_at = demo["paid_at"].as_str().unwrap().to_owned();
    (id(&orders[0]), id(&orders[1]), paid_at)
}

#[test]
fn without_arguments_the_tour_runs_on_a_sqlite_file_in_the_current_directory() {
    let workspace = Workspace::new();
    let text = workspace.success(&[]);
    for step in [
        "Event store: SQLite file `orders.db` (0 events before this run)",
        "1. Create an order and apply business operations",
        "2. Save",
        "3. Pay, then ship",
        "4. The aggregates enforce the business rules",
        "refused: out of stock: `lamp` has 4999 available, 5000 requested",
        "refused: a payment of 10.00 does not match the order total of 45.00",
        "cancel shipped order-0001: refused: the order is shipped and can no longer change",
        "5. Optimistic concurrency",
        "version conflict on stream `order/order-0001`: expected version 4, found version 5",
        "6. Update the projections",
        "3 read models applied 17 new events; all at position 17",
        "7. Query the read models",
        "8. Temporal queries",
        "order-0001 at version 3:  open, 3 items, total 59.00",
        "read models as of position 3: order-0001 open; mugs reserved 2",
        "9. Replay",
        "order-example history order-0001",
    ] {
        assert!(text.contains(step), "no `{step}` in:\n{text}");
    }
    assert!(workspace.path().join("orders.db").is_file());
}

#[test]
fn the_tour_runs_again_on_the_same_file_with_new_orders() {
    let workspace = Workspace::new();
    assert_eq!(tour(&workspace).0, "order-0001");
    let second = workspace.success(&[]);
    assert!(second.contains("(17 events before this run)"), "{second}");
    assert!(second.contains("order-0003 for customer alice"), "{second}");
    assert!(second.contains("order-0004 for customer bob"), "{second}");

    // The read models cover the orders of both runs.
    let models = workspace.json(&["read-models"]);
    assert_eq!(models["order_count"], 4);
    let alice = workspace.json(&["read-models", "--customer", "alice"]);
    assert_eq!(
        alice["customers"][0]["orders"],
        json!(["order-0001", "order-0003"])
    );
    assert_eq!(alice["customers"][0]["total_spent"], 2 * 5_900);
    let mugs = workspace.json(&["read-models", "--product", "mug"]);
    assert_eq!(mugs["inventory"][0]["shipped"], 4);
}

#[test]
fn the_tour_in_json_describes_the_orders_it_created() {
    let workspace = Workspace::new();
    let demo = workspace.json(&[]);
    assert_eq!(demo["orders"][0]["order_id"], "order-0001");
    assert_eq!(demo["orders"][0]["status"], "Shipped");
    assert_eq!(demo["orders"][0]["total"], 5_900);
    assert_eq!(demo["orders"][0]["version"], 5);
    assert_eq!(demo["orders"][1]["status"], "Cancelled");
    assert_eq!(demo["position"], 17);
    assert_eq!(demo["order_count"], 2);
}

#[test]
fn the_tour_runs_on_the_memory_store_and_leaves_no_file() {
    let workspace = Workspace::new();
    let text = workspace.success(&["--store", "memory", "demo"]);
    assert!(text.contains("Event store: in memory"), "{text}");
    assert!(text.contains("9. Replay"), "{text}");
    assert!(!workspace.path().join("orders.db").exists());
}

#[test]
fn the_store_can_be_any_sqlite_path() {
    let workspace = Workspace::new();
    std::fs::create_dir(workspace.path().join("shop")).unwrap();
    let text = workspace.success(&["--store", "sqlite:shop/events.sqlite3"]);
    assert!(text.contains("SQLite file `shop/events.sqlite3`"), "{text}");
    assert!(workspace.path().join("shop/events.sqlite3").is_file());
    let history = workspace.json(&[
        "--store",
        "sqlite:shop/events.sqlite3",
        "history",
        "order-0001",
    ]);
    assert_eq!(history["events"].as_array().map(Vec::len), Some(5));
}

#[test]
fn history_lists_every_event_of_an_order() {
    let workspace = Workspace::new();
    let (alice, bob, _) = tour(&workspace);

    let history = workspace.json(&["history", &alice]);
    assert_eq!(history["order_id"], alice.as_str());
    let events = history["events"].as_array().unwrap();
    let types: Vec<_> = events
        .iter()
        .map(|event| event["event_type"].clone())
        .collect();
    assert_eq!(
        types,
        [
            "OrderCreated",
            "OrderItemAdded",
            "OrderItemAdded",
            "PaymentProcessed",
            "OrderShipped"
        ]
    );
    let versions: Vec<_> = events
        .iter()
        .map(|event| event["version"].clone())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(events[0]["payload"], json!({ "customer_id": "alice" }));
    assert_eq!(
        events[1]["payload"],
        json!({ "product_id": "mug", "quantity": 2, "unit_price": 1_250 })
    );
    // Positions 4-7 hold the mug's and the teapot's stock, saved with the first three.
    assert_eq!(events[3]["global_position"], 8);
    assert_eq!(events[4]["global_position"], 9);

    let text = workspace.success(&["history", &bob]);
    assert!(text.starts_with("order order-0002: 3 events"), "{text}");
    assert!(text.contains("cancelled: changed their mind"), "{text}");
}

#[test]
fn state_shows_an_order_now_after_a_version_and_at_a_time() {
    let workspace = Workspace::new();
    let (alice, _, paid_at) = tour(&workspace);

    let now = workspace.json(&["state", &alice]);
    assert_eq!(now["status"], "Shipped");
    assert_eq!(now["version"], 5);
    assert_eq!(now["tracking_number"], "TRK-0001");

    let early = workspace.json(&["state", &alice, "--at-version", "2"]);
    assert_eq!(early["status"], "Open");
    assert_eq!(early["version"], 2);
    assert_eq!(early["total"], 2_500);
    assert_eq!(
        early["lines"],
        json!({ "mug": { "quantity": 2, "unit_price": 1_250 } })
    );

    let paid = workspace.json(&["state", &alice, "--at", &paid_at]);
    assert_eq!(paid["status"], "Paid");
    assert_eq!(paid["version"], 4);
    assert_eq!(paid["paid"], 5_900);

    let text = workspace.success(&["state", &alice, "--at", &paid_at]);
    assert!(
        text.starts_with(&format!(
            "as of {paid_at}:\norder {alice} at version 4: paid"
        )),
        "{text}"
    );
    assert!(text.contains("total     59.00 (3 items)"), "{text}");
}

#[test]
fn read_models_show_the_present_and_the_past() {
    let workspace = Workspace::new();
    let (alice, bob, paid_at) = tour(&workspace);

    let now = workspace.json(&["read-models"]);
    assert_eq!(now["position"], 17);
    assert_eq!(now["as_of"], Value::Null);
    assert_eq!(now["customer_count"], 2);
    let statuses: Vec<_> = now["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|order| (order["order_id"].clone(), order["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!(bob), json!("Cancelled")),
            (json!(alice), json!("Shipped"))
        ]
    );

    // Right after the first save: the order is open and its mugs are reserved.
    let early = workspace.json(&["read-models", "--position", "3", "--order", &alice]);
    assert_eq!(early["position"], 3);
    assert_eq!(early["as_of"], "position 3");
    assert_eq!(early["order_count"], 1);
    assert_eq!(early["orders"][0]["status"], "Open");
    let mugs = workspace.json(&["read-models", "--position", "3", "--product", "mug"]);
    assert_eq!(
        mugs["inventory"],
        json!([{
            "product_id": "mug", "on_hand": 5_000, "reserved": 2, "available": 4_998,
            "shipped": 0, "shortage": 0, "oversold": false
        }])
    );

    // At the moment of the payment: paid, not shipped; bob's order not created yet.
    let paid = workspace.json(&["read-models", "--at", &paid_at]);
    assert_eq!(paid["as_of"], paid_at.as_str());
    assert_eq!(paid["order_count"], 1);
    assert_eq!(paid["orders"][0]["status"], "Paid");
    assert_eq!(paid["customers"][0]["total_spent"], 5_900);

    let text = workspace.success(&["read-models"]);
    for table in [
        "Order summaries (2 orders)",
        "Inventory",
        "Customer order histories (2 customers)",
    ] {
        assert!(text.contains(table), "no `{table}` in:\n{text}");
    }
    let filtered = workspace.success(&["read-models", "--customer", "bob"]);
    assert!(filtered.contains("Customer order histories"), "{filtered}");
    assert!(!filtered.contains("Order summaries"), "{filtered}");
}

/// `--initial-stock` is what a product gets the first time an order reserves it; from then on
/// the log holds the product's stock, and the read models follow the log.
#[test]
fn the_initial_stock_option_stocks_new_products_and_the_log_keeps_it() {
    let workspace = Workspace::new();
    workspace.json(&["--initial-stock", "10"]);
    let mugs = workspace.json(&["read-models", "--initial-stock", "10", "--product", "mug"]);
    assert_eq!(mugs["inventory"][0]["on_hand"], 8);
    assert_eq!(mugs["inventory"][0]["shipped"], 2);
    // Another option value does not change recorded stock.
    let mugs = workspace.json(&["read-models", "--product", "mug"]);
    assert_eq!(mugs["inventory"][0]["on_hand"], 8);
    // A product never reserved shows the option's stock.
    let vases = workspace.json(&["read-models", "--initial-stock", "7", "--product", "vase"]);
    assert_eq!(vases["inventory"][0]["on_hand"], 7);
}

#[test]
fn rebuild_replays_the_whole_log_and_saves_the_read_models() {
    let workspace = Workspace::new();
    tour(&workspace);
    let rebuilt = workspace.json(&["rebuild"]);
    assert_eq!(rebuilt["events"], 17);
    assert_eq!(rebuilt["position"], 17);
    assert_eq!(
        rebuilt["read_models"],
        json!(["order-summaries", "inventory", "customer-histories"])
    );
    assert!(rebuilt["events_per_second"].is_u64(), "{rebuilt}");

    let text = workspace.success(&["rebuild"]);
    assert!(
        text.starts_with("rebuilt 3 read models from 17 events in "),
        "{text}"
    );
    // Saved: the next query applies nothing new.
    let models = workspace.success(&["read-models"]);
    assert!(
        models.starts_with("read models at position 17 (0 new events applied)"),
        "{models}"
    );
}

#[test]
fn generate_writes_the_same_valid_orders_for_the_same_seed() {
    let first = Workspace::new();
    let second = Workspace::new();
    let report = first.json(&["generate", "--orders", "60", "--seed", "9"]);
    assert_eq!(report["orders"], 60);
    assert_eq!(report["first_order"], "load-9-0000001");
    assert_eq!(report["last_order"], "load-9-0000060");
    let events = report["events"].as_u64().unwrap();
    assert!(events >= 2 * 60, "{report}");
    let again = second.json(&[
        "generate",
        "--orders",
        "60",
        "--seed",
        "9",
        "--concurrency",
        "1",
    ]);
    assert_eq!(again["events"], events);

    // The same commands, whatever the concurrency: compare payloads, not timestamps.
    let payloads = |workspace: &Workspace, order: &str| -> Vec<Value> {
        workspace.json(&["history", order])["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| json!([event["event_type"], event["payload"]]))
            .collect()
    };
    for order in ["load-9-0000001", "load-9-0000033", "load-9-0000060"] {
        assert_eq!(payloads(&first, order), payloads(&second, order), "{order}");
    }

    // Every generated order is valid for the read models: they take in all of it.
    let rebuilt = first.json(&["rebuild"]);
    assert_eq!(rebuilt["events"], events);
    let models = first.json(&["read-models"]);
    assert_eq!(models["order_count"], 60);
    assert_eq!(models["position"], events);

    let text = first.success(&["generate", "--orders", "5", "--seed", "10"]);
    assert!(
        text.starts_with("generated 5 orders (load-10-0000001 to load-10-0000005): "),
        "{text}"
    );
    assert!(text.contains("events/s"), "{text}");
}

#[test]
fn generated_load_and_the_tour_share_one_store() {
    let workspace = Workspace::new();
    workspace.json(&["generate", "--orders", "30"]);
    let (alice, _, _) = tour(&workspace);
    // The tour caught up on the generated orders first, and numbered its own after them.
    assert_eq!(alice, "order-0031");
    let models = workspace.json(&["read-models"]);
    assert_eq!(models["order_count"], 32);
}

#[cfg(feature = "postgres")]
#[test]
fn the_tour_runs_on_postgresql_when_a_server_is_configured() {
    let Ok(url) = std::env::var("ES_POSTGRES_URL") else {
        println!("PostgreSQL run skipped: ES_POSTGRES_URL not set");
        return;
    };
    let schema = support::unique_schema("order_example");
    let _drop = support::DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let workspace = Workspace::new();
    let store = [
        "--store",
        url.as_str(),
        "--postgres-schema",
        schema.as_str(),
    ];
    let demo = workspace.json(&store);
    assert_eq!(demo["orders"][0]["status"], "Shipped");
    let history = workspace.json(&[&store[..], &["history", "order-0001"]].concat());
    assert_eq!(history["events"].as_array().map(Vec::len), Some(5));
    let rebuilt = workspace.json(&[&store[..], &["rebuild"]].concat());
    assert_eq!(rebuilt["events"], 17);
    assert!(!workspace.path().join("orders.db").exists());
}
