//! Rows to values and back: every stored field is checked on the way out, so a damaged row
//! becomes [`StoreError::Corrupt`] naming the row and the column, never a panic.

use rusqlite::types::ValueRef;
use rusqlite::{ErrorCode, Row};
use uuid::Uuid;

use crate::codec::CodecId;
use crate::event::{Metadata, RecordedEvent};
use crate::snapshot::{SavedProjection, Snapshot};
use crate::store::{StoreError, StoredId};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

/// The columns of `events` that [`event_from_row`] reads, in its order.
pub(super) const EVENT_COLUMNS: &str = "global_position, aggregate_type, aggregate_id, version, \
     event_id, event_type, schema_version, codec, payload, metadata, recorded_at";

/// The columns of `snapshots` that [`snapshot_from_row`] reads, in its order.
pub(super) const SNAPSHOT_COLUMNS: &str =
    "aggregate_type, aggregate_id, version, fingerprint, codec, state, taken_at";

/// The columns of `projections` that [`projection_from_row`] reads, in its order.
pub(super) const PROJECTION_COLUMNS: &str = "name, position, codec, state, saved_at";

/// Turns a SQLite error into a store error; `location` names the database.
pub(super) fn store_error(error: rusqlite::Error, location: &str) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            location: location.to_owned(),
            reason: error.to_string(),
        },
        Some(ErrorCode::NotADatabase) => StoreError::NotAStore {
            location: location.to_owned(),
            reason: "the file is not a SQLite database".to_owned(),
        },
        _ => StoreError::backend(error),
    }
}

/// Whether `error` is SQLite's "the file is busy or locked" (another connection, perhaps of
/// another process, holds a lock it did not wait out).
pub(super) fn is_busy(error: &StoreError) -> bool {
    let StoreError::Backend(source) = error else {
        return false;
    };
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| matches!(code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// A `u64` counter as SQL's `i64`, for values the store itself assigned or was given to write.
pub(super) fn to_sql_integer(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Config(format!(
            "{what} {value} is larger than SQLite can store ({})",
            i64::MAX
        ))
    })
}

/// A `u64` bound of a read as SQL's `i64`: bounds past the largest storable value mean "all".
pub(super) fn to_sql_bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `u64` bit pattern stored as SQL's `i64` (snapshot fingerprints use all 64 bits).
pub(super) const fn bits_to_sql(value: u64) -> i64 {
    value as i64
}

/// An event row as a [`RecordedEvent`], or [`StoreError::Corrupt`] naming what is damaged.
pub(super) fn event_from_row(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position =
        integer(row, 0, "global_position").and_then(|p| at_least(p, 1, "global_position"));
    let location = match &position {
        Ok(position) => format!("event at global position {position}"),
        Err(_) => "an event row".to_owned(),
    };
    let event = || -> Result<RecordedEvent, String> {
        Ok(RecordedEvent {
            global_position: GlobalPosition(position?),
            stream: StreamId::new(
                text(row, 1, "aggregate_type")?,
                text(row, 2, "aggregate_id")?,
            ),
            version: Version(at_least(integer(row, 3, "version")?, 1, "version")?),
            event_id: uuid(row, 4, "event_id")?,
            event_type: text(row, 5, "event_type")?.into(),
            schema_version: small(row, 6, "schema_version")?,
            codec: codec(row, 7, "codec")?,
            payload: blob(row, 8, "payload")?.into(),
            metadata: metadata(row, 9, "metadata")?.into(),
            recorded_at: Timestamp::from_micros(integer(row, 10, "recorded_at")?),
        })
    };
    event().map_err(|reason| StoreError::Corrupt { location, reason })
}

/// A row of `aggregate_type, aggregate_id, version, global_position` of the event `event_id`
/// as a [`StoredId`], or [`StoreError::Corrupt`].
pub(super) fn stored_id_from_row(row: &Row<'_>, event_id: Uuid) -> Result<StoredId, StoreError> {
    let stored = || -> Result<StoredId, String> {
        Ok(StoredId {
            event_id,
            stream: StreamId::new(
                text(row, 0, "aggregate_type")?,
                text(row, 1, "aggregate_id")?,
            ),
            version: Version(at_least(integer(row, 2, "version")?, 1, "version")?),
            position: GlobalPosition(at_least(
                integer(row, 3, "global_position")?,
                1,
                "global_position",
            )?),
        })
    };
    stored().map_err(|reason| StoreError::Corrupt {
        location: format!("event {event_id}"),
        reason,
    })
}

/// A snapshot row as a [`Snapshot`], or [`StoreError::Corrupt`].
pub(super) fn snapshot_from_row(row: &Row<'_>) -> Result<Snapshot, StoreError> {
    let snapshot = || -> Result<Snapshot, String> {
        Ok(Snapshot {
            stream: StreamId::new(
                text(row, 0, "aggregate_type")?,
                text(row, 1, "aggregate_id")?,
            ),
            version: Version(at_least(integer(row, 2, "version")?, 0, "version")?),
            // The fingerprint is a 64-bit pattern stored in SQL's signed integer.
            fingerprint: integer(row, 3, "fingerprint")? as u64,
            codec: codec(row, 4, "codec")?,
            state: blob(row, 5, "state")?,
            taken_at: Timestamp::from_micros(integer(row, 6, "taken_at")?),
        })
    };
    snapshot().map_err(|reason| StoreError::Corrupt {
        location: "a snapshot row".to_owned(),
        reason,
    })
}

/// A projection row as a [`SavedProjection`], or [`StoreError::Corrupt`].
pub(super) fn projection_from_row(row: &Row<'_>) -> Result<SavedProjection, StoreError> {
    let projection = || -> Result<SavedProjection, String> {
        Ok(SavedProjection {
            name: text(row, 0, "name")?.to_owned(),
            position: GlobalPosition(at_least(integer(row, 1, "position")?, 0, "position")?),
            codec: codec(row, 2, "codec")?,
            state: blob(row, 3, "state")?,
            saved_at: Timestamp::from_micros(integer(row, 4, "saved_at")?),
        })
    };
    projection().map_err(|reason| StoreError::Corrupt {
        location: "a projection row".to_owned(),
        reason,
    })
}

/// The stored metadata text of `metadata`: JSON, so it stays readable (and queryable with
/// SQLite's JSON functions) and tolerates fields added by later releases.
pub(super) fn metadata_to_sql(metadata: &Metadata) -> Result<String, StoreError> {
    serde_json::to_string(metadata).map_err(StoreError::backend)
}

fn value<'a>(row: &'a Row<'_>, index: usize, column: &str) -> Result<ValueRef<'a>, String> {
    row.get_ref(index)
        .map_err(|error| format!("column `{column}` cannot be read: {error}"))
}

fn kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn integer(row: &Row<'_>, index: usize, column: &str) -> Result<i64, String> {
    match value(row, index, column)? {
        ValueRef::Integer(value) => Ok(value),
        other => Err(format!(
            "column `{column}` holds {} instead of an integer",
            kind(other)
        )),
    }
}

fn at_least(value: i64, minimum: i64, column: &str) -> Result<u64, String> {
    if value >= minimum {
        Ok(value as u64)
    } else {
        Err(format!(
            "column `{column}` holds {value}, below the smallest valid value {minimum}"
        ))
    }
}

fn small(row: &Row<'_>, index: usize, column: &str) -> Result<u32, String> {
    let value = integer(row, index, column)?;
    u32::try_from(value).map_err(|_| format!("column `{column}` holds {value}, out of range"))
}

fn text<'a>(row: &'a Row<'_>, index: usize, column: &str) -> Result<&'a str, String> {
    match value(row, index, column)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| format!("column `{column}` holds text that is not UTF-8")),
        other => Err(format!(
            "column `{column}` holds {} instead of text",
            kind(other)
        )),
    }
}

fn blob(row: &Row<'_>, index: usize, column: &str) -> Result<Vec<u8>, String> {
    match value(row, index, column)? {
        ValueRef::Blob(bytes) => Ok(bytes.to_vec()),
        other => Err(format!(
            "column `{column}` holds {} instead of a blob",
            kind(other)
        )),
    }
}

fn uuid(row: &Row<'_>, index: usize, column: &str) -> Result<Uuid, String> {
    match value(row, index, column)? {
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes).map_err(|_| {
            format!(
                "column `{column}` holds {} bytes instead of a 16-byte UUID",
                bytes.len()
            )
        }),
        other => Err(format!(
            "column `{column}` holds {} instead of a UUID blob",
            kind(other)
        )),
    }
}

fn codec(row: &Row<'_>, index: usize, column: &str) -> Result<CodecId, String> {
    let value = integer(row, index, column)?;
    let byte = u8::try_from(value)
        .map_err(|_| format!("column `{column}` holds {value}, not a codec id"))?;
    CodecId::from_u8(byte).map_err(|error| format!("column `{column}`: {error}"))
}

fn metadata(row: &Row<'_>, index: usize, column: &str) -> Result<Metadata, String> {
    let bytes = match value(row, index, column)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
        other => {
            return Err(format!(
                "column `{column}` holds {} instead of JSON text",
                kind(other)
            ))
        }
    };
    serde_json::from_slice(bytes)
        .map_err(|error| format!("column `{column}` is not metadata JSON: {error}"))
}
