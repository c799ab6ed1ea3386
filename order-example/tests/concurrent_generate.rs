//! Several `order-example generate` processes on one store at once, with too little stock
//! for all their orders: every order is either stored or refused as out of stock, no product
//! is ever oversold, and the read models take in the whole log (`read-models`, `rebuild`).
//!
//! This is the failure that led to stock on the write side: each process used to take its
//! stock from the inventory read model at start, so two processes sold the same units, and
//! the inventory then stopped for good on the oversold shipment.

mod support;

use std::process::{Command, Stdio};

use serde_json::Value;
use support::Workspace;

/// Generating processes running at once.
const PROCESSES: u64 = 3;
/// Orders each process generates.
const ORDERS: u64 = 60;
/// Units every product starts with: far fewer than the orders ask for (about 7 units an order
/// over 20 products), so the stock runs out while the processes race.
const INITIAL_STOCK: u64 = 12;

/// Runs `PROCESSES` `generate` processes at once on `store` and checks each one's report:
/// every order accepted or refused for lack of stock. Returns how many were refused in all.
fn generate_concurrently(workspace: &Workspace, store: &[&str]) -> u64 {
    let stock = INITIAL_STOCK.to_string();
    let orders = ORDERS.to_string();
    let children: Vec<_> = (1..=PROCESSES)
        .map(|seed| {
            let seed = seed.to_string();
            let mut arguments: Vec<&str> = store.to_vec();
            arguments.extend([
                "--initial-stock",
                &stock,
                "--json",
                "generate",
                "--orders",
                &orders,
                "--seed",
                &seed,
                "--concurrency",
                "4",
            ]);
            Command::new(env!("CARGO_BIN_EXE_order-example"))
                .args(&arguments)
                .current_dir(workspace.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the program starts")
        })
        .collect();
    let mut refused = 0;
    for child in children {
        let output = child.wait_with_output().expect("the program runs");
        assert!(
            output.status.success(),
            "a concurrent generate failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        let refusals = report["refused"].as_array().expect("the refused orders");
        assert_eq!(
            report["accepted"].as_u64().unwrap() + refusals.len() as u64,
            ORDERS,
            "every order is accepted or refused: {report}"
        );
        for refusal in refusals {
            let reason = refusal["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("out of stock: "),
                "a refusal gives its reason: {refusal}"
            );
        }
        refused += refusals.len() as u64;
    }
    refused
}

/// Checks that the read models take in the whole log and that no product is oversold: for
/// each product, on hand plus shipped is its initial stock, on hand is never negative and
/// never below what open orders reserve.
fn assert_never_oversold(workspace: &Workspace, store: &[&str]) {
    let with = |arguments: &[&str]| -> Value {
        let mut all: Vec<&str> = store.to_vec();
        all.extend(arguments);
        workspace.json(&all)
    };
    let stock = INITIAL_STOCK.to_string();
    let models = with(&["--initial-stock", &stock, "read-models", "--limit", "100"]);
    let rebuilt = with(&["--initial-stock", &stock, "rebuild"]);
    assert_eq!(rebuilt["position"], models["position"], "{rebuilt}");
    let inventory = models["inventory"].as_array().expect("the inventory");
    assert!(!inventory.is_empty(), "{models}");
    let mut shipped = 0;
    for level in inventory {
        let on_hand = level["on_hand"].as_i64().unwrap();
        let reserved = level["reserved"].as_i64().unwrap();
        assert!(on_hand >= 0, "a product went below zero: {level}");
        assert!(
            reserved <= on_hand,
            "a product promised more than it has: {level}"
        );
        assert_eq!(level["oversold"], false, "{level}");
        assert_eq!(
            on_hand + level["shipped"].as_i64().unwrap(),
            INITIAL_STOCK as i64,
            "units are neither lost nor made up: {level}"
        );
        shipped += level["shipped"].as_u64().unwrap();
    }
    assert!(shipped > 0, "the processes shipped something: {models}");
}

#[test]
fn concurrent_generate_processes_on_one_sqlite_file_never_oversell() {
    let workspace = Workspace::new();
    let store = ["--store", "sqlite:shop.db"];
    let refused = generate_concurrently(&workspace, &store);
    assert!(refused > 0, "the stock was meant to run out");
    assert_never_oversold(&workspace, &store);
}

#[cfg(feature = "postgres")]
#[test]
fn concurrent_generate_processes_on_postgresql_never_oversell() {
    let Ok(url) = std::env::var("ES_POSTGRES_URL") else {
        println!("PostgreSQL run skipped: ES_POSTGRES_URL not set");
        return;
    };
    let schema = support::unique_schema("order_generate");
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
    // The schema is created once, before the processes race to use it (a query command such
    // as `read-models` never creates a store).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let options = es_core::PostgresOptions::new(url.as_str()).with_schema(schema.as_str());
            let created = es_core::Postgres::connect_with(options)
                .await
                .expect("the schema is created");
            created.close().await;
        });
    let refused = generate_concurrently(&workspace, &store);
    assert!(refused > 0, "the stock was meant to run out");
    assert_never_oversold(&workspace, &store);
}
