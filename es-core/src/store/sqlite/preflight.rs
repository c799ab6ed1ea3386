//! What is decided about a file before SQLite opens it.
//!
//! SQLite recovers a database when it opens it: it rolls back a hot journal into the file and,
//! when the last connection closes, checkpoints a write-ahead log into it and deletes the log.
//! That is right for a store of ours after a crash, and wrong for anybody else's file, which
//! must be refused exactly as it was. So the path is judged from its bytes first:
//!
//! - not a regular file (a named pipe, a directory, a device): refused without opening it, so
//!   a FIFO cannot block the open;
//! - not starting with the SQLite header: refused;
//! - a SQLite header cut short of its 100 bytes: damaged;
//! - our application id in the header: ours, SQLite may recover it;
//! - another application id: refused;
//! - no application id (a new database, ours before its first checkpoint, or a database of an
//!   application that sets none) with a journal or write-ahead log beside it: the files are
//!   copied to a private temporary directory and the copy is inspected, so recovery happens
//!   on the copy. A copy showing a database that is not a store is refused; anything else
//!   goes on to the ordinary checks under SQLite's locks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use super::schema::{inspect, APPLICATION_ID};
use crate::store::StoreError;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The length of the SQLite database header.
const HEADER_LENGTH: usize = 100;

/// Where the header keeps the application id (big-endian).
const APPLICATION_ID_OFFSET: usize = 68;

/// What the bytes of the path say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// No file, or an empty one: a new store.
    Nobody,
    /// The header carries our application id: a store, whatever state it is in.
    Us,
    /// A SQLite database without an application id: SQLite's own checks decide.
    Unmarked,
}

/// Judges `path` without letting SQLite touch it (see the module docs).
///
/// # Errors
/// [`StoreError::NotAStore`] for a path that is not a regular file, not a SQLite database or
/// another application's; [`StoreError::Corrupt`] for a header cut short; I/O failures as
/// [`StoreError::Backend`].
pub(super) fn check_file(path: &Path, location: &str) -> Result<Owner, StoreError> {
    let not_a_store = |reason: String| StoreError::NotAStore {
        location: location.to_owned(),
        reason,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Owner::Nobody),
        Err(error) => return Err(StoreError::backend(error)),
    };
    if !metadata.is_file() {
        return Err(not_a_store(format!(
            "it is {}, not a regular file",
            kind(metadata.file_type())
        )));
    }
    let mut file = std::fs::File::open(path).map_err(StoreError::backend)?;
    // The path may have been replaced between the two looks: judge what was opened.
    let opened = file.metadata().map_err(StoreError::backend)?;
    if !opened.is_file() {
        return Err(not_a_store(format!(
            "it is {}, not a regular file",
            kind(opened.file_type())
        )));
    }
    let mut header = Vec::with_capacity(HEADER_LENGTH);
    file.by_ref()
        .take(HEADER_LENGTH as u64)
        .read_to_end(&mut header)
        .map_err(StoreError::backend)?;
    drop(file);

    let owner = if header.is_empty() {
        Owner::Nobody
    } else if !header.starts_with(SQLITE_HEADER) {
        return Err(not_a_store("the file is not a SQLite database".to_owned()));
    } else if header.len() < HEADER_LENGTH {
        return Err(StoreError::Corrupt {
            location: location.to_owned(),
            reason: format!(
                "the file is cut short: {} bytes, less than a SQLite header",
                header.len()
            ),
        });
    } else {
        let id = &header[APPLICATION_ID_OFFSET..APPLICATION_ID_OFFSET + 4];
        match i32::from_be_bytes([id[0], id[1], id[2], id[3]]) {
            APPLICATION_ID => return Ok(Owner::Us),
            0 => Owner::Unmarked,
            other => {
                return Err(not_a_store(format!(
                    "a SQLite database of another application (application_id {other:#010x})"
                )))
            }
        }
    };
    if has_recovery_files(path) {
        inspect_copy(path, location)?;
    }
    Ok(owner)
}

/// The kind of a path that is not a regular file, in words.
fn kind(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The journal and write-ahead log SQLite would recover from.
fn recovery_files(path: &Path) -> [PathBuf; 2] {
    ["-journal", "-wal"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

fn has_recovery_files(path: &Path) -> bool {
    recovery_files(path).iter().any(|file| file.exists())
}

/// Inspects a copy of the database and its recovery files, and refuses the original when the
/// copy is not a store. Anything else (a store, an empty database, a copy torn by a writer
/// working on the original) is left to the checks under SQLite's locks.
fn inspect_copy(path: &Path, location: &str) -> Result<(), StoreError> {
    let directory = PrivateDirectory::new().map_err(StoreError::backend)?;
    let copy = directory.0.join("inspected.db");
    std::fs::copy(path, &copy).map_err(StoreError::backend)?;
    for (original, copied) in recovery_files(path).iter().zip(recovery_files(&copy)) {
        match std::fs::copy(original, &copied) {
            Ok(_) => {}
            // Gone since it was seen: a writer finished with it.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StoreError::backend(error)),
        }
    }
    let verdict = Connection::open_with_flags(
        &copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::backend)
    .and_then(|connection| inspect(&connection, location, Owner::Unmarked));
    match verdict {
        Err(StoreError::NotAStore { location, reason }) => Err(StoreError::NotAStore {
            location,
            reason: format!("{reason} (its journal or write-ahead log was left as it was)"),
        }),
        _ => Ok(()),
    }
}

/// A new directory under the system's temporary directory, removed with its contents on drop.
struct PrivateDirectory(PathBuf);

impl PrivateDirectory {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "es-core-inspect-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // `create_dir` fails if the name is taken: never inspect inside someone else's.
        std::fs::create_dir(&path)?;
        Ok(PrivateDirectory(path))
    }
}

impl Drop for PrivateDirectory {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::debug!(path = %self.0.display(), %error, "inspection copy not removed");
        }
    }
}
