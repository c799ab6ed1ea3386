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
