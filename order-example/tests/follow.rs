//! `follow` and `status`, run as a user runs them: the follower in one process, `generate` in
//! another, Ctrl-C (SIGINT) to stop it; `status` from yet another process; a read model
//! parked on an event it cannot decode, shown by `status`, then skipped.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use es_core::store::sqlite::Sqlite;
use es_core::{CodecId, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use serde_json::Value;
use support::Workspace;

/// How long a test waits for the follower before it fails (never a timing assertion: only a
/// bound so that a broken follower fails the test instead of hanging it).
const PATIENCE: Duration = Duration::from_secs(120);

/// The in-memory read models, then the same three as SQL tables.
const READ_MODELS: [&str; 6] = [
    "order-summaries",
    "inventory",
    "customer-histories",
    "order-summaries-sql",
    "inventory-sql",
    "customer-histories-sql",
];

/// The head of the log, as `status --json` reports it.
fn head(workspace: &Workspace) -> u64 {
    let status = workspace.json(&["status"]);
    status["read_models"][0]["head"].as_u64().unwrap()
}

fn statuses(workspace: &Workspace) -> Vec<Value> {
    workspace.json(&["status"])["read_models"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn follow_until_applies_the_log_and_status_shows_the_saved_checkpoints() {
    let workspace = Workspace::new();
    workspace.success(&["generate", "--orders", "60"]);
    let head = head(&workspace);
    for status in statuses(&workspace) {
        assert_eq!(status["checkpoint"], 0, "{status}");
        assert_eq!(status["lag"], head, "{status}");
        assert_eq!(status["state"], "stopped", "{status}");
    }

    let text = workspace.success(&["follow", "--until", &head.to_string()]);
    assert!(text.contains("60 orders"), "{text}");
    assert!(
        text.contains(&format!("stopped; checkpoints saved at position {head}")),
        "{text}"
    );
    let names: Vec<_> = statuses(&workspace)
        .iter()
        .map(|status| {
            assert_eq!(status["checkpoint"], head, "{status}");
            assert_eq!(status["lag"], 0, "{status}");
            assert_eq!(status["state"], "stopped", "{status}");
            assert!(status["updated_at"].is_string(), "{status}");
            status["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(names, READ_MODELS);

    // The read models `follow` saved are the ones the query commands see.
    let models = workspace.json(&["read-models"]);
    assert_eq!(models["order_count"], 60);
    assert_eq!(models["position"], head);

    let text = workspace.success(&["status"]);
    for name in READ_MODELS {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("stopped"), "{text}");
}

#[test]
fn a_follower_process_sees_a_writer_process_and_ctrl_c_saves_its_checkpoints() {
    let workspace = Workspace::new();
    workspace.success(&["generate", "--orders", "5"]);
    let mut follower = Command::new(env!("CARGO_BIN_EXE_order-example"))
        .args(["follow", "--json"])
        .current_dir(workspace.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the follower starts");
    let (lines, received) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Value {
        let line = received
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("the follower printed no {what}"));
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("{error}: {line}"))
    };
    // The follower has caught up with what was there.
    loop {
        if next("update")["orders"] == 5 {
            break;
        }
    }

    // Another process writes; the follower sees every event of it.
    workspace.success(&["generate", "--orders", "40", "--seed", "9"]);
    let head = head(&workspace);
    loop {
        if next("update")["position"] == head {
            break;
        }
    }

    // Ctrl-C: a clean stop with the checkpoints saved.
    let interrupted = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let last = loop {
        let line = next("final line");
        if line.get("stopped_at").is_some() {
            break line;
        }
    };
    assert_eq!(last["stopped_at"], head);
    let exit = follower.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "{exit}: {stderr}");
    for status in statuses(&workspace) {
        assert_eq!(status["checkpoint"], head, "{status}");
        assert_eq!(status["state"], "stopped", "{status}");
    }
}

/// Appends an `OrderCreated` event whose payload is not an order event to the store file.
fn append_undecodable_order_event(workspace: &Workspace) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Sqlite::open(workspace.path().join("orders.db"))
            .await
            .unwrap();
        let event = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "OrderCreated".into(),
            schema_version: 1,
            codec: CodecId::Json,
            payload: b"{\"not\": \"an order\"}".to_vec(),
            metadata: Metadata::default(),
        };
        let position = store
            .append(
                &StreamId::new("order", "broken-1"),
                ExpectedVersion::NoStream,
                vec![event],
            )
            .await
            .unwrap()
            .position;
        store.close().await;
        position.get()
    })
}

#[test]
fn status_shows_a_parked_read_model_with_its_error_until_the_event_is_skipped() {
    let workspace = Workspace::new();
    workspace.success(&["generate", "--orders", "3"]);
    workspace.success(&["generate", "--orders", "3", "--seed", "2"]);
    // Last: `generate` itself brings the read models up to date before it writes.
    let poison = append_undecodable_order_event(&workspace);
    let head = head(&workspace);
    assert_eq!(head, poison);

    // Every read model handles order events, so each one is parked on it; `--until` cannot
    // be reached and says why.
    let output = workspace.run(&["follow", "--until", &head.to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.starts_with("error: read model"), "{error}");
    assert!(error.contains("is parked"), "{error}");
    assert!(error.contains(&format!("position {poison}")), "{error}");

    for status in statuses(&workspace) {
        let parked = &status["state"]["parked"];
        assert_eq!(parked["position"], poison, "{status}");
        assert_eq!(parked["event_type"], "OrderCreated", "{status}");
        assert!(
            parked["error"]
                .as_str()
                .unwrap()
                .contains("does not decode"),
            "{status}"
        );
        assert_eq!(status["checkpoint"], poison - 1, "{status}");
    }
    let text = workspace.success(&["status"]);
    assert!(
        text.contains(&format!(
            "parked: the `OrderCreated` event at position {poison}"
        )),
        "{text}"
    );

    // Skipping another position is refused; skipping the poison lets each one go on.
    let wrong = format!("inventory={}", poison + 1);
    let error = workspace.failure(&["follow", "--skip", &wrong]);
    assert!(error.contains("cannot skip"), "{error}");
    let mut arguments = vec!["follow".to_owned(), "--until".to_owned(), head.to_string()];
    for name in READ_MODELS {
        arguments.push("--skip".to_owned());
        arguments.push(format!("{name}={poison}"));
    }
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    workspace.success(&arguments);
    for status in statuses(&workspace) {
        assert_eq!(status["checkpoint"], head, "{status}");
        assert_eq!(status["state"], "stopped", "{status}");
        assert_eq!(status["skipped"][0]["position"], poison, "{status}");
    }
    let models = workspace.json(&["read-models"]);
    assert_eq!(models["order_count"], 6);
}
