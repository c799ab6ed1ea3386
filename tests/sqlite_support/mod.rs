//! Helpers shared by the SQLite store suites.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use es_core::store::sqlite::{Sqlite, SqliteOptions};
use es_core::{CodecId, ManualClock, Metadata, NewEvent, Timestamp};
use tempfile::TempDir;
use uuid::Uuid;

/// A fresh temporary directory and the path of a store file inside it (not created yet).
pub fn temporary_store_path() -> (TempDir, PathBuf) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("events.db");
    (directory, path)
}

/// Opens (or creates) the store at `path` with a manual clock at `start`.
pub async fn open_with_clock(path: &Path, clock: ManualClock) -> Sqlite {
    Sqlite::open_with(path, SqliteOptions::new().with_clock(clock))
        .await
        .expect("the store opens")
}

/// A clock standing at 2023-11-14T22:13:20Z.
pub fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000))
}

/// A JSON event whose payload is `payload` (a JSON text).
pub fn json_event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: payload.as_bytes().to_vec(),
        metadata: Metadata::default(),
    }
}

/// An event tagged with who wrote it and which of its writes it is.
pub fn tagged_event(writer: u64, sequence: u64) -> NewEvent {
    json_event(
        "Tagged",
        &format!(r#"{{"writer":{writer},"sequence":{sequence}}}"#),
    )
}

/// The `(writer, sequence)` tag of an event made by [`tagged_event`].
pub fn tag_of(payload: &[u8]) -> (u64, u64) {
    let value: serde_json::Value = serde_json::from_slice(payload).expect("a tagged payload");
    (
        value["writer"].as_u64().expect("a writer"),
        value["sequence"].as_u64().expect("a sequence"),
    )
}

/// A raw connection to the store file, for tests that damage or inspect it from outside.
pub fn raw_connection(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("a raw connection")
}

/// The names of the files in `directory`, sorted.
pub fn file_names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .expect("a readable directory")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A small deterministic pseudo-random generator (xorshift64*), so runs can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (zero is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A generator seeded from the clock and the process id; its seed is printed to replay.
    pub fn from_entropy(label: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
            });
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        eprintln!("{label}: seed {seed}");
        Rng::new(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}
