//! Runs the built `order-example` binary in a temporary directory of its own, so the default
//! store (`orders.db` in the current directory) is private to each test.

#![allow(dead_code)] // Each suite uses a different part of this module.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// A temporary working directory for the program.
pub struct Workspace {
    directory: TempDir,
}

impl Workspace {
    /// A new, empty directory.
    pub fn new() -> Self {
        Workspace {
            directory: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The directory the program runs in.
    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    /// Runs the program with `arguments` in this directory. `RUST_BACKTRACE` is on, as in CI,
    /// so a panic or an error printed with its backtrace would show.
    pub fn run(&self, arguments: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_order-example"))
            .args(arguments)
            .current_dir(self.path())
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("the program starts")
    }

    /// Runs the program, which must succeed: its standard output.
    pub fn success(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments);
        assert!(
            output.status.success(),
            "order-example {arguments:?} failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("the output is UTF-8")
    }

    /// Runs the program with `--json`, which must succeed: its output, parsed.
    pub fn json(&self, arguments: &[&str]) -> Value {
        let mut arguments = arguments.to_vec();
        arguments.push("--json");
        let text = self.success(&arguments);
        serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("order-example {arguments:?} printed no JSON ({error}):\n{text}")
        })
    }

    /// Runs the program, which must fail the way bad input should: a non-zero exit code, no
    /// output, and one line on standard error that starts with `error: `, never a panic or a
    /// backtrace. Returns that line.
    pub fn failure(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !output.status.success(),
            "order-example {arguments:?} succeeded:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(output.stdout.is_empty(), "{arguments:?} printed to stdout");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "not one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        lines[0].to_owned()
    }
}

/// A PostgreSQL schema name no other test run uses: `prefix`, the process id and the time.
pub fn unique_schema(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros())
    )
}

/// Drops the test's PostgreSQL schema, also when the test fails.
#[cfg(feature = "postgres")]
pub struct DropSchema {
    /// The server.
    pub url: String,
    /// The schema to drop.
    pub schema: String,
}

#[cfg(feature = "postgres")]
impl Drop for DropSchema {
    fn drop(&mut self) {
        let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        let url = self.url.clone();
        let dropped = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
            .and_then(|runtime| {
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .map_err(|error| error.to_string())?;
                    let driver = tokio::spawn(connection);
                    let result = client.batch_execute(&statement).await;
                    drop(client);
                    let _ = driver.await;
                    result.map_err(|error| error.to_string())
                })
            });
        if let Err(error) = dropped {
            eprintln!("could not drop schema {}: {error}", self.schema);
        }
    }
}
