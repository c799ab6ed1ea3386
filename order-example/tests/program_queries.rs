//! The query commands (`history`, `state`, `read-models`) read and never write: they open an
//! existing store only, leave its files as they were, work on read-only media, and never send
//! a control character from their input or the stored data to the terminal.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use es_core::{Repository, Sqlite, SqliteOptions};
use order_example::{CustomerId, Money, Order, ProductId};
use support::Workspace;

/// Every query command, on the tour's first order.
const QUERIES: [&[&str]; 6] = [
    &["history", "order-0001"],
    &["state", "order-0001"],
    &["state", "order-0001", "--at-version", "2"],
    &["read-models"],
    &["read-models", "--position", "3"],
    &["read-models", "--order", "order-0001"],
];

/// Every file in `directory` with its bytes.
fn files(directory: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(directory)
        .expect("the directory lists")
        .map(|entry| {
            let entry = entry.expect("an entry");
            let bytes = std::fs::read(entry.path()).expect("the file reads");
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Checks that the store's files after a query are those before: the database file byte for
/// byte. The only file a query may add is SQLite's empty write-ahead log and its index
/// (`-shm`), which a read-only connection creates on writable media to read safely beside a
/// writer; neither holds data.
fn assert_unchanged(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    for (name, bytes) in before {
        assert!(after.get(name) == Some(bytes), "{what} changed `{name}`");
    }
    for (name, bytes) in after {
        if before.contains_key(name) {
            continue;
        }
        match name.as_str() {
            "orders.db-wal" => assert!(bytes.is_empty(), "{what} wrote to the log"),
            "orders.db-shm" => {}
            other => panic!("{what} created `{other}`"),
        }
    }
}

/// Appends events the read models have not seen, through the library, so a query that
/// caught up and saved the read models would change the file.
fn append_behind_the_read_models(path: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Sqlite::open_with(path, SqliteOptions::new().existing_only())
            .await
            .unwrap();
        let orders = Repository::<Order, _>::new(store.clone());
        orders
            .update("late-order", |order| order.create(CustomerId::new("carol")))
            .await
            .unwrap();
        store.close().await;
    });
}

#[test]
fn query_commands_never_write_even_when_the_read_models_are_behind() {
    let workspace = Workspace::new();
    workspace.success(&[]);
    append_behind_the_read_models(&workspace.path().join("orders.db"));
    let before = files(workspace.path());
    for query in QUERIES {
        workspace.success(query);
        let mut json = query.to_vec();
        json.push("--json");
        workspace.success(&json);
        assert_unchanged(&before, &files(workspace.path()), &format!("{query:?}"));
    }
    // The new order is shown all the same: the read models caught up in memory.
    let models = workspace.json(&["read-models"]);
    assert_eq!(models["order_count"], 3, "{models}");
}

#[test]
fn a_mistyped_store_path_is_an_error_and_creates_nothing() {
    let workspace = Workspace::new();
    workspace.success(&[]);
    let before = files(workspace.path());
    for command in [
        &["--store", "sqlite:ordrs.db", "history", "order-0001"][..],
        &["--store", "sqlite:ordrs.db", "state", "order-0001"],
        &["--store", "sqlite:ordrs.db", "read-models"],
        &["--store", "sqlite:ordrs.db", "rebuild"],
    ] {
        let error = workspace.failure(command);
        assert_eq!(
            error,
            "error: cannot open the SQLite store `ordrs.db`: no event store at `ordrs.db`: the \
             file does not exist",
            "{command:?}"
        );
        assert_eq!(
            files(workspace.path()),
            before,
            "{command:?} created a file"
        );
    }
    let error = workspace.failure(&["--store", "memory", "history", "order-0001"]);
    assert!(
        error.starts_with("error: the memory store starts empty"),
        "{error}"
    );
}

#[test]
fn an_empty_file_is_not_turned_into_a_store_by_a_query() {
    let workspace = Workspace::new();
    std::fs::write(workspace.path().join("empty.db"), b"").unwrap();
    let error = workspace.failure(&["--store", "sqlite:empty.db", "read-models"]);
    assert!(error.contains("no event store at `empty.db`"), "{error}");
    assert_eq!(
        std::fs::read(workspace.path().join("empty.db")).unwrap(),
        b""
    );
}

/// A directory the program may not write to, holding a copy of `source`: a read-only bind
/// mount when running as root (root writes through permissions), else a directory and file
/// without write permission. `None` (the test says why and does not run) when neither works.
struct ReadOnlyCopy {
    /// The directory holding the copy.
    path: PathBuf,
    mounted: bool,
    _directory: tempfile::TempDir,
}

impl ReadOnlyCopy {
    fn of(source: &Path) -> Option<Self> {
        let directory = tempfile::tempdir().unwrap();
        let writable = directory.path().join("writable");
        let path = directory.path().join("read-only");
        std::fs::create_dir(&writable).unwrap();
        std::fs::create_dir(&path).unwrap();
        std::fs::copy(source, writable.join("orders.db")).unwrap();
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
        if is_root {
            let mounted = Command::new("mount")
                .args(["--bind".as_ref(), writable.as_os_str(), path.as_os_str()])
                .status()
                .is_ok_and(|status| status.success());
            if !mounted {
                eprintln!("did not run: running as root and cannot bind-mount a directory");
                return None;
            }
            let copy = ReadOnlyCopy {
                path,
                mounted: true,
                _directory: directory,
            };
            let remounted = Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(&copy.path)
                .status()
                .is_ok_and(|status| status.success());
            if !remounted {
                eprintln!("did not run: cannot remount the directory read-only");
                return None;
            }
            return Some(copy);
        }
        std::fs::copy(writable.join("orders.db"), path.join("orders.db")).unwrap();
        std::fs::set_permissions(
            path.join("orders.db"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
        Some(ReadOnlyCopy {
            path,
            mounted: false,
            _directory: directory,
        })
    }
}

impl Drop for ReadOnlyCopy {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        } else {
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn queries_work_on_a_read_only_copy_and_writes_are_refused_clearly() {
    let workspace = Workspace::new();
    workspace.success(&[]);
    let Some(copy) = ReadOnlyCopy::of(&workspace.path().join("orders.db")) else {
        return;
    };
    assert!(
        std::fs::write(copy.path.join("probe"), b"").is_err(),
        "the copy's directory is writable: the test would prove nothing"
    );
    let before = files(&copy.path);
    let store = format!("sqlite:{}", copy.path.join("orders.db").display());
    for query in QUERIES {
        let mut arguments = vec!["--store", store.as_str()];
        arguments.extend_from_slice(query);
        let text = workspace.success(&arguments);
        assert!(!text.is_empty(), "{query:?} printed nothing");
    }
    let history = workspace.json(&["--store", &store, "history", "order-0001"]);
    assert_eq!(history["events"].as_array().map(Vec::len), Some(5));
    assert_eq!(files(&copy.path), before);

    // A command that writes says why it cannot.
    let error = workspace.failure(&["--store", &store, "rebuild"]);
    assert!(
        error.starts_with("error: cannot open the SQLite store"),
        "{error}"
    );
}

/// Bytes that would drive a terminal: C0 controls other than the newline, DEL, and the C1
/// controls (as UTF-8), and the bidi overrides.
fn raw_controls(output: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(output)
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
        .map(|c| format!("{c:?}"))
        .collect()
}

#[test]
fn control_characters_from_input_and_data_are_escaped_never_sent_raw() {
    let workspace = Workspace::new();
    let path = workspace.path().join("orders.db");
    let id = "evil\u{1b}]0;owned\u{7}\u{9b}2J";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Sqlite::open(&path).await.unwrap();
        let orders = Repository::<Order, _>::new(store.clone());
        orders
            .update(id, |order| {
                order.create(CustomerId::new("\u{1b}[2Jmallory\r"))
            })
            .await
            .unwrap();
        orders
            .update(id, |order| {
                order.add_item(
                    ProductId::new("mug\u{202e}gpj.exe"),
                    1,
                    Money::from_minor_units(500),
                )
            })
            .await
            .unwrap();
        orders
            .update(id, |order| {
                order.cancel("line one\nline\u{8}\u{8} two\u{7f}")
            })
            .await
            .unwrap();
        store.close().await;
    });

    for command in [
        &["history", id][..],
        &["state", id],
        &["read-models"],
        &["read-models", "--order", id],
        &["read-models", "--customer", "\u{1b}[2Jmallory\r"],
    ] {
        for json in [false, true] {
            let mut arguments = command.to_vec();
            if json {
                arguments.push("--json");
            }
            let output = workspace.run(&arguments);
            assert!(
                output.status.success(),
                "{arguments:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(
                raw_controls(&output.stdout),
                Vec::<String>::new(),
                "{arguments:?}"
            );
            assert_eq!(
                raw_controls(&output.stderr),
                Vec::<String>::new(),
                "{arguments:?}"
            );
            if json {
                let parsed: serde_json::Value = serde_json::from_slice(&output.stdout)
                    .unwrap_or_else(|error| panic!("{arguments:?}: not JSON ({error})"));
                assert!(parsed.to_string().contains("evil") || !command.contains(&id));
            } else {
                let text = String::from_utf8_lossy(&output.stdout);
                if command.contains(&id) {
                    assert!(
                        text.contains("evil\\u{1b}]0;owned\\u{7}\\u{9b}2J"),
                        "{text}"
                    );
                }
            }
        }
    }
    // JSON readers get the data back exactly.
    let history = workspace.json(&["history", id]);
    assert_eq!(history["order_id"], id);

    // Errors quoting the input are escaped too, and stay on one line.
    let error = workspace.failure(&["history", "no\u{1b}[1mbody\nsecond line"]);
    assert_eq!(
        error,
        "error: no order `no\\u{1b}[1mbody\\nsecond line` in the store"
    );
}
