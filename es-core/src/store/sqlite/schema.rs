//! The file format: recognising a store, creating one, and the connection settings.
//!
//! A store is a SQLite database whose header carries [`APPLICATION_ID`] and whose `meta` table
//! records the schema version. Everything that decides whether a file may be used only reads
//! it; nothing is written to a file until it is known to be a store of a version this release
//! understands, or a new, empty database.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::preflight::Owner;
use super::rows::store_error;
use super::Synchronous;
use crate::store::StoreError;

/// The SQLite `application_id` of a store (the bytes `EvSt`), written in the database header.
pub(super) const APPLICATION_ID: i32 = 0x4576_5374;

/// The newest schema version this release reads and writes. Version 2 added the unique index
/// on event ids, version 3 the `leases` table; an older store is upgraded on open
/// ([`upgrade`]).
pub(super) const SCHEMA_VERSION: u32 = 3;

/// The index that makes event ids unique in the store (schema version 2).
const CREATE_EVENT_ID_INDEX: &str = "CREATE UNIQUE INDEX events_by_event_id ON events (event_id)";

/// The lease table (schema version 3): one row per lease ever granted, never deleted, so its
/// fencing token only grows. `holder` is empty once released; `expires_at` is in microseconds
/// since the Unix epoch, by the store's clock.
const CREATE_LEASES: &str = "CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;";

/// The schema of the current version, created in one transaction.
const CREATE_SCHEMA: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    global_position INTEGER PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    payload BLOB NOT NULL,
    metadata TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, version)
);

CREATE INDEX events_by_stream_and_time ON events (aggregate_type, aggregate_id, recorded_at);

CREATE UNIQUE INDEX events_by_event_id ON events (event_id);

CREATE TABLE snapshots (
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    state BLOB NOT NULL,
    taken_at INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;

CREATE TABLE projections (
    name TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    state BLOB NOT NULL,
    saved_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The tables of every schema version (version 3 adds `leases`).
const TABLES: [&str; 4] = ["events", "meta", "projections", "snapshots"];

/// What an opened database holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Contents {
    /// No tables and no application id: a new file, or one whose creation never committed.
    Empty,
    /// A store of a schema version this release uses.
    Store,
    /// A store of an older schema version, which this release upgrades.
    Older(u32),
}

/// Fails with [`StoreError::NotFound`] when nothing is at `path`: opening an existing store
/// only must not create one.
pub(super) fn check_exists(path: &Path, location: &str) -> Result<(), StoreError> {
    // What kind of file it is, [`preflight::check_file`](super::preflight::check_file) judges.
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
            location: location.to_owned(),
            reason: "the file does not exist".to_owned(),
        }),
        Err(error) => Err(StoreError::backend(error)),
    }
}

/// Checks, from a read-only connection, that the file at `path` is a store this release can
/// read. Nothing is written: not even a new database header.
pub(super) fn check_read_only(
    path: &Path,
    busy_timeout: Duration,
    location: &str,
) -> Result<(), StoreError> {
    check_exists(path, location)?;
    let owner = super::preflight::check_file(path, location)?;
    if owner == Owner::Nobody {
        return Err(not_yet_a_store(location));
    }
    let connection = open_read_only(path, busy_timeout, location)?;
    match inspect(&connection, location, owner)? {
        // An older schema reads the same (its upgrade only adds a constraint for writers),
        // and a read-only store must not upgrade the file.
        Contents::Store | Contents::Older(_) => Ok(()),
        Contents::Empty => Err(not_yet_a_store(location)),
    }
}

/// A read-only connection to the store at `path`, which never writes to the database file.
///
/// In WAL mode SQLite coordinates readers with writers through the `-wal` and `-shm` files
/// next to the database, and a read-only connection creates them when they are missing (empty
/// of data; the database file itself is not touched). On read-only media it cannot, and the
/// open fails; then, if there is no `-wal` file (so every commit is in the database file, and
/// no writer can be at work on media nobody can write), the file is opened as *immutable*,
/// which needs neither file.
pub(super) fn open_read_only(
    path: &Path,
    busy_timeout: Duration,
    location: &str,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let opened = Connection::open_with_flags(path, flags).and_then(|connection| {
        // Opening is lazy: the first read opens the -wal and -shm files.
        connection.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        Ok(connection)
    });
    let connection = match opened {
        Ok(connection) => connection,
        Err(error)
            if error.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
                && !sibling(path, "-wal").exists() =>
        {
            Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
                .map_err(|error| store_error(error, location))?
        }
        Err(error) => return Err(store_error(error, location)),
    };
    configure(&connection, busy_timeout, location)?;
    // Reads only, also should a bug try to write.
    connection
        .pragma_update(None, "query_only", true)
        .map_err(|error| store_error(error, location))?;
    Ok(connection)
}

/// `path` with `suffix` appended to its file name (`orders.db` -> `orders.db-wal`).
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The `file:` URI of `path` opened immutable, its bytes percent-encoded where a URI needs it.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            let _ = write!(uri, "%{byte:02X}");
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn not_yet_a_store(location: &str) -> StoreError {
    StoreError::NotFound {
        location: location.to_owned(),
        reason: "the file is an empty database, not yet a store".to_owned(),
    }
}

/// Settings every connection gets: how long to wait for a lock held by another process.
pub(super) fn configure(
    connection: &Connection,
    busy_timeout: Duration,
    location: &str,
) -> Result<(), StoreError> {
    connection
        .busy_timeout(busy_timeout)
        .map_err(|error| store_error(error, location))
}

/// Checks that the writer's connection opens a store this release can use, creating the
/// schema in a new database (when `may_create`), then switches it to WAL mode with the requested durability.
pub(super) fn prepare_writer(
    connection: &mut Connection,
    synchronous: Synchronous,
    owner: Owner,
    may_create: bool,
    location: &str,
) -> Result<(), StoreError> {
    let contents = inspect(connection, location, owner)?;
    if contents == Contents::Empty && !may_create {
        return Err(not_yet_a_store(location));
    }
    // Only now is the file known to be ours (or empty): from here on it may be written.
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|error| store_error(error, location))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!(
            "`{location}` cannot use write-ahead logging (journal mode stayed `{mode}`)"
        )));
    }
    connection
        .pragma_update(None, "synchronous", synchronous.pragma_value())
        .map_err(|error| store_error(error, location))?;
    match contents {
        Contents::Empty => create(connection, owner, location),
        Contents::Older(_) => upgrade(connection, owner, location),
        Contents::Store => Ok(()),
    }
}

/// Upgrades a store of an older schema version to [`SCHEMA_VERSION`], in one transaction:
/// either every step is made, or (on any failure) the file is left as it was.
///
/// 1 → 2: event ids become unique. If some id is stored twice already, the upgrade is
/// refused with [`StoreError::Migration`] naming (a few of) them.
/// 2 → 3: the `leases` table is created.
fn upgrade(connection: &mut Connection, owner: Owner, location: &str) -> Result<(), StoreError> {
    let sql_error = |error| store_error(error, location);
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    // Another process may have upgraded the store between the check and the write lock.
    let Contents::Older(from) = inspect(&transaction, location, owner)? else {
        return Ok(());
    };
    if from < 2 {
        let mut statement = transaction
            .prepare(
                "SELECT hex(event_id), count(*) FROM events GROUP BY event_id                  HAVING count(*) > 1 ORDER BY min(global_position) LIMIT 6",
            )
            .map_err(sql_error)?;
        let repeated = statement
            .query_map([], |row| {
                Ok(format!(
                    "{} ({} copies)",
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(sql_error)?;
        drop(statement);
        if !repeated.is_empty() {
            return Err(StoreError::Migration {
                location: location.to_owned(),
                from,
                to: SCHEMA_VERSION,
                reason: format!(
                    "event ids must be unique, and some are stored more than once: {}{};                      decide which copies to keep (a retried batch stored twice has the same ids                      at two places), delete the others with the release that wrote the file,                      and open it again",
                    repeated.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                    if repeated.len() > 5 { ", ..." } else { "" },
                ),
            });
        }
        transaction
            .execute_batch(CREATE_EVENT_ID_INDEX)
            .map_err(sql_error)?;
    }
    if from < 3 {
        transaction
            .execute_batch(CREATE_LEASES)
            .map_err(sql_error)?;
    }
    transaction
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION],
        )
        .map_err(sql_error)?;
    transaction.commit().map_err(sql_error)
}

/// Creates the schema, unless another connection created it first.
fn create(connection: &mut Connection, owner: Owner, location: &str) -> Result<(), StoreError> {
    let sql_error = |error| store_error(error, location);
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    // Another process may have created the store between the check and the write lock.
    if inspect(&transaction, location, owner)? != Contents::Empty {
        // A store (maybe of an older version, which the next open upgrades) was made first.
        return Ok(());
    }
    transaction
        .pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sql_error)?;
    transaction
        .execute_batch(CREATE_SCHEMA)
        .and_then(|()| transaction.execute_batch(CREATE_LEASES))
        .map_err(sql_error)?;
    transaction
        .execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION],
        )
        .map_err(sql_error)?;
    transaction.commit().map_err(sql_error)
}

/// Reads what the database holds, without writing anything, in one read transaction (unless
/// the caller's transaction is open already), so the application id and the tables come from
/// one state of the file even while another process creates the store.
///
/// `owner` is what the header said: SQLite failing to read a file whose header carries our
/// application id means a damaged store ([`StoreError::Corrupt`]), not a foreign file.
pub(super) fn inspect(
    connection: &Connection,
    location: &str,
    owner: Owner,
) -> Result<Contents, StoreError> {
    if !connection.is_autocommit() {
        return inspect_in_transaction(connection, location, owner);
    }
    connection
        .execute_batch("BEGIN DEFERRED")
        .map_err(|error| store_error(error, location))?;
    let contents = inspect_in_transaction(connection, location, owner);
    // Nothing was written: ending the read transaction either way changes nothing.
    let ended = connection.execute_batch(if contents.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    });
    let contents = contents?;
    ended.map_err(|error| store_error(error, location))?;
    Ok(contents)
}

fn inspect_in_transaction(
    connection: &Connection,
    location: &str,
    owner: Owner,
) -> Result<Contents, StoreError> {
    let not_a_store = |reason: String| StoreError::NotAStore {
        location: location.to_owned(),
        reason,
    };
    let read_error = |error: rusqlite::Error| match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            if owner == Owner::Us =>
        {
            StoreError::Corrupt {
                location: location.to_owned(),
                reason: format!("the store cannot be read ({error})"),
            }
        }
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            not_a_store(format!(
                "the file is not a readable SQLite database ({error})"
            ))
        }
        _ => store_error(error, location),
    };
    let application_id: i32 = connection
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(read_error)?;
    let mut statement = connection
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(read_error)?;
    let tables = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(read_error)?;

    if application_id != APPLICATION_ID {
        return if application_id != 0 {
            Err(not_a_store(format!(
                "a SQLite database of another application (application_id {application_id:#010x})"
            )))
        } else if tables.is_empty() {
            Ok(Contents::Empty)
        } else {
            Err(not_a_store(format!(
                "a SQLite database with other tables ({})",
                tables.join(", ")
            )))
        };
    }

    let corrupt = |reason: String| StoreError::Corrupt {
        location: location.to_owned(),
        reason,
    };
    if !tables.iter().any(|table| table == "meta") {
        return Err(corrupt("the store has no `meta` table".to_owned()));
    }
    let version: i64 = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .map_err(|error| corrupt(format!("the schema version cannot be read: {error}")))?;
    match u32::try_from(version) {
        Ok(found) if found > SCHEMA_VERSION => Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        }),
        Err(_) if version > 0 => Err(StoreError::NewerSchema {
            found: u32::MAX,
            supported: SCHEMA_VERSION,
        }),
        Ok(found @ 1..=SCHEMA_VERSION) => {
            let missing: Vec<&str> = TABLES
                .into_iter()
                .chain((found >= 3).then_some("leases"))
                .filter(|table| !tables.iter().any(|found| found == table))
                .collect();
            if !missing.is_empty() {
                Err(corrupt(format!(
                    "the store lacks the table(s) {}",
                    missing.join(", ")
                )))
            } else if found < SCHEMA_VERSION {
                Ok(Contents::Older(found))
            } else {
                Ok(Contents::Store)
            }
        }
        _ => Err(corrupt(format!("invalid schema version {version}"))),
    }
}
