//! Shared set-up of the PostgreSQL suites: the server URL from `ES_POSTGRES_URL`, a fresh
//! schema per test (so tests run in parallel and re-runs never collide), raw SQL access.
//!
//! Start a local server with `eval "$(.ci/pg-setup)"`. Without `ES_POSTGRES_URL` every test
//! prints one line saying it was skipped and passes.

#![allow(dead_code)] // Each suite uses a different part of this module.

pub mod proxy;

use std::sync::atomic::{AtomicU32, Ordering};

use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::{Clock, CodecId, Metadata, NewEvent, StreamId};
use uuid::Uuid;

/// The variable holding the server URL.
pub const URL_VARIABLE: &str = "ES_POSTGRES_URL";

/// The server URL, or `None` after printing the line that says the test was skipped.
///
/// # Panics
/// In CI (`CI` set), where skipping would hide the PostgreSQL store from the run.
pub fn url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{URL_VARIABLE} is not set in CI: run `source .ci/pg-setup` first"
            );
            println!("PostgreSQL tests skipped: {URL_VARIABLE} not set");
            None
        }
    }
}

/// A schema only one test uses, dropped (with everything in it) when this is dropped, even
/// when the test fails.
pub struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    /// A fresh schema name for `test`, or `None` (after printing why) when no server is set.
    pub fn new(test: &str) -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let url = url()?;
        let tag: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let unique = Uuid::now_v7().simple().to_string();
        let name = format!(
            "es_test_{tag}_{}_{}",
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &unique[20..]
        );
        Some(TestSchema { url, name })
    }

    /// The schema name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options for a store in this schema.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions::new(self.url.clone()).with_schema(self.name.clone())
    }

    /// A store in this schema.
    pub async fn store(&self) -> Postgres {
        Postgres::connect_with(self.options())
            .await
            .expect("the test server accepts a store")
    }

    /// A store in this schema stamping events with `clock`.
    pub async fn store_with_clock(&self, clock: impl Clock) -> Postgres {
        Postgres::connect_with(self.options().with_clock(clock))
            .await
            .expect("the test server accepts a store")
    }

    /// A plain connection for SQL the store does not offer.
    pub async fn raw(&self) -> tokio_postgres::Client {
        raw_client(&self.url).await
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        // A session the test left inside a transaction would make the drop wait for ever:
        // give up after a while instead (the schema name is unique, so a leftover is harmless).
        let statement = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.name
        );
        // Drop may run on a runtime thread, or during a panic: do the cleanup on a thread of
        // its own with its own small runtime, and never panic here.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(async {
                    let (client, connection) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    let driver = tokio::spawn(connection);
                    client.batch_execute(&statement).await?;
                    drop(client);
                    let _ = driver.await;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
                .map_err(|error| std::io::Error::other(error.to_string()))
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test schema {}: {error}", self.name),
            Err(_) => eprintln!("could not drop test schema {}: cleanup panicked", self.name),
        }
    }
}

/// A plain tokio-postgres connection to `url`, driven on the current runtime.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test server accepts a connection");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A new event of type `event_type` whose payload is `payload` (JSON-coded bytes are not
/// needed: stores keep payloads opaque).
pub fn event(event_type: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        codec: CodecId::Postcard,
        payload: payload.to_vec(),
        metadata: Metadata::default(),
    }
}

/// `count` events of type `Tick`, payloads `0..count` as little-endian bytes.
pub fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|i| event("Tick", &(i as u64).to_le_bytes()))
        .collect()
}

/// The stream `kind/id`.
pub fn stream(kind: &str, id: impl std::fmt::Display) -> StreamId {
    StreamId::new(kind, id.to_string())
}

/// A small deterministic pseudo-random generator (xorshift64*), so a failing run can be
/// repeated from its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number, uniform in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }

    /// The next index, uniform in `0..len` (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).expect("below a usize")
    }
}

/// `url` with the connection parameter `application_name` set to `name`, so a test can find
/// the store's sessions in `pg_stat_activity`.
pub fn with_application_name(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    }
}

/// Waits until a session named `application_name` sits idle inside a transaction (an
/// append held open by its test hook), and returns its process id.
pub async fn idle_in_transaction(watcher: &tokio_postgres::Client, application_name: &str) -> i32 {
    for _ in 0..2_000 {
        let row = watcher
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = $1 AND state = 'idle in transaction'",
                &[&application_name],
            )
            .await
            .expect("pg_stat_activity reads");
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("no session `{application_name}` was ever idle in a transaction");
}
