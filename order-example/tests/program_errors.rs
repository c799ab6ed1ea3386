//! Bad input to the `order-example` program: each gives one line on standard error and exit
//! code 1, never a panic, a backtrace or partial output.

mod support;

use support::Workspace;

/// A workspace whose store holds the tour's two orders (`order-0001`, `order-0002`).
fn after_the_tour() -> Workspace {
    let workspace = Workspace::new();
    workspace.success(&[]);
    workspace
}

#[test]
fn an_unknown_order_is_reported() {
    let workspace = after_the_tour();
    for command in [
        &["history", "order-9999"][..],
        &["state", "order-9999"],
        &["state", "order-9999", "--json"],
    ] {
        let error = workspace.failure(command);
        assert_eq!(
            error, "error: no order `order-9999` in the store",
            "{command:?}"
        );
    }
    assert_eq!(
        workspace.failure(&["read-models", "--order", "order-9999"]),
        "error: no order `order-9999` in the read models"
    );
    assert_eq!(
        workspace.failure(&["read-models", "--customer", "nobody"]),
        "error: no customer `nobody` in the read models"
    );
}

#[test]
fn a_malformed_time_is_reported() {
    let workspace = after_the_tour();
    for command in [
        &["state", "order-0001", "--at", "yesterday"][..],
        &["read-models", "--at", "2026-13-45T99:00:00Z"],
        &["read-models", "--at", ""],
    ] {
        let error = workspace.failure(command);
        assert!(
            error.starts_with("error: invalid --at: `"),
            "{command:?}: {error}"
        );
        assert!(error.contains("is not an RFC 3339 timestamp"), "{error}");
    }
}

#[test]
fn a_point_outside_the_order_s_life_is_reported() {
    let workspace = after_the_tour();
    let error = workspace.failure(&["state", "order-0001", "--at-version", "9"]);
    assert!(
        error.contains("version 9 does not exist") && error.contains("has 5 events"),
        "{error}"
    );
    let error = workspace.failure(&["state", "order-0001", "--at", "2000-01-01T00:00:00Z"]);
    assert_eq!(
        error,
        "error: order `order-0001` did not exist yet at 2000-01-01T00:00:00Z"
    );
}

#[test]
fn a_bad_store_value_is_reported() {
    let workspace = Workspace::new();
    let error = workspace.failure(&["--store", "mysql://localhost/orders"]);
    assert_eq!(
        error,
        "error: unknown store `mysql://localhost/orders`: expected `memory`, `sqlite:PATH` or `postgres://...`"
    );
    let error = workspace.failure(&["--store", "sqlite:"]);
    assert!(error.contains("`sqlite:` needs a file path"), "{error}");
    let error = workspace.failure(&["--store", "memory", "--postgres-schema", "shop"]);
    assert!(
        error.contains("--postgres-schema needs a `postgres://...` store"),
        "{error}"
    );
}

#[test]
fn an_unreachable_store_is_reported() {
    let workspace = Workspace::new();
    let error = workspace.failure(&["--store", "sqlite:no/such/directory/orders.db"]);
    assert!(
        error.starts_with("error: cannot open the SQLite store `no/such/directory/orders.db`"),
        "{error}"
    );
    // Nothing listens on port 1: the connection is refused at once.
    let error = workspace.failure(&[
        "--store",
        "postgres://orders:secret@127.0.0.1:1/orders",
        "history",
        "order-0001",
    ]);
    assert!(
        error.starts_with("error: cannot connect to the PostgreSQL store"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
    let workspace = Workspace::new();
    let path = workspace.path().join("orders.db");
    std::fs::write(&path, "shopping list: milk, eggs\n").unwrap();
    let error = workspace.failure(&[]);
    assert!(
        error.starts_with("error: cannot open the SQLite store `orders.db`"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "shopping list: milk, eggs\n"
    );
}

#[test]
fn generating_a_seed_twice_is_refused() {
    let workspace = Workspace::new();
    workspace.success(&["generate", "--orders", "3", "--seed", "4"]);
    assert_eq!(
        workspace.failure(&["generate", "--orders", "3", "--seed", "4"]),
        "error: the store already holds the orders of seed 4 (`load-4-0000001` exists): pick another --seed"
    );
}
