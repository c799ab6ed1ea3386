//! Converting between the framework's types and table rows: the column arrays of a batch
//! going in, and checked decoding of every row coming out.

use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::codec::CodecId;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::shared::Bytes;
use crate::snapshot::{SavedProjection, Snapshot};
use crate::store::{StoreError, StoredId};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

/// A text value PostgreSQL cannot store: its `text` type has no NUL character.
#[derive(Debug, thiserror::Error)]
#[error("the {field} contains a NUL character, which PostgreSQL text cannot store")]
pub(super) struct NulInText {
    field: &'static str,
}

/// Rejects `value` if PostgreSQL cannot store it as text.
pub(super) fn check_text(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        Err(StoreError::backend(NulInText { field }))
    } else {
        Ok(())
    }
}

/// A batch of events as one array per column, bound to the single multi-row insert.
pub(super) struct Batch {
    pub event_ids: Vec<Uuid>,
    pub event_types: Vec<String>,
    pub schema_versions: Vec<i64>,
    pub codecs: Vec<i16>,
    pub payloads: Vec<Vec<u8>>,
    pub metadata: Vec<String>,
}

impl Batch {
    /// Splits `events` into columns, encoding metadata as JSON (stored in a `json` column,
    /// which keeps the text as written, so it reads back byte for byte).
    pub(super) fn new(events: Vec<NewEvent>) -> Result<Self, StoreError> {
        let count = events.len();
        let mut batch = Batch {
            event_ids: Vec::with_capacity(count),
            event_types: Vec::with_capacity(count),
            schema_versions: Vec::with_capacity(count),
            codecs: Vec::with_capacity(count),
            payloads: Vec::with_capacity(count),
            metadata: Vec::with_capacity(count),
        };
        for event in events {
            check_text("event type", &event.event_type)?;
            batch
                .metadata
                .push(serde_json::to_string(&event.metadata).map_err(StoreError::backend)?);
            batch.event_ids.push(event.event_id);
            batch.event_types.push(event.event_type.into());
            batch.schema_versions.push(i64::from(event.schema_version));
            batch.codecs.push(i16::from(event.codec.as_u8()));
            batch.payloads.push(event.payload);
        }
        Ok(batch)
    }
}

/// A version or position as the `bigint` PostgreSQL stores: values past `i64::MAX` cannot
/// exist in the store, so they saturate (a read up to `u64::MAX` reads to the end).
pub(super) fn to_bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A version or position to write as `bigint`: one past `i64::MAX` cannot be stored as
/// given, so it is refused rather than changed.
pub(super) fn to_stored_bigint(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Config(format!(
            "{what} {value} is larger than PostgreSQL can store ({})",
            i64::MAX
        ))
    })
}

/// Reads column `index` as `T`, or says why it cannot.
fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize, name: &str) -> Result<T, String> {
    row.try_get(index)
        .map_err(|error| format!("column `{name}` does not read: {error}"))
}

fn unsigned(row: &Row, index: usize, name: &str) -> Result<u64, String> {
    let value: i64 = column(row, index, name)?;
    u64::try_from(value).map_err(|_| format!("column `{name}` is negative ({value})"))
}

fn codec(row: &Row, index: usize) -> Result<CodecId, String> {
    let value: i16 = column(row, index, "codec")?;
    u8::try_from(value)
        .map_err(|_| format!("codec id {value} is out of range"))
        .and_then(|byte| CodecId::from_u8(byte).map_err(|error| error.to_string()))
}

/// Decodes a row of [`super::schema::EVENT_COLUMNS`].
pub(super) fn recorded_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0).map_err(|error| StoreError::Corrupt {
        location: "an event row".to_owned(),
        reason: format!("column `global_position` does not read: {error}"),
    })?;
    let decode = || -> Result<RecordedEvent, String> {
        let schema_version = unsigned(row, 6, "schema_version")?;
        let metadata: &str = column(row, 9, "metadata")?;
        Ok(RecordedEvent {
            global_position: GlobalPosition(unsigned(row, 0, "global_position")?),
            stream: StreamId::new(
                column::<&str>(row, 1, "aggregate_type")?,
                column::<&str>(row, 2, "aggregate_id")?,
            ),
            version: Version(unsigned(row, 3, "version")?),
            event_id: column(row, 4, "event_id")?,
            event_type: column::<&str>(row, 5, "event_type")?.into(),
            schema_version: u32::try_from(schema_version)
                .map_err(|_| format!("schema version {schema_version} is out of range"))?,
            codec: codec(row, 7)?,
            payload: Bytes::copy_from_slice(column(row, 8, "payload")?),
            metadata: serde_json::from_str::<Metadata>(metadata)
                .map_err(|error| format!("column `metadata` is not metadata JSON: {error}"))?
                .into(),
            recorded_at: Timestamp::from_micros(column(row, 10, "recorded_at")?),
        })
    };
    decode().map_err(|reason| StoreError::Corrupt {
        location: format!("global position {position}"),
        reason,
    })
}

/// Decodes a row of the `find_event_ids` statement.
pub(super) fn stored_id(row: &Row) -> Result<StoredId, StoreError> {
    let decode = || -> Result<StoredId, String> {
        Ok(StoredId {
            event_id: column(row, 0, "event_id")?,
            stream: StreamId::new(
                column::<String>(row, 1, "aggregate_type")?,
                column::<String>(row, 2, "aggregate_id")?,
            ),
            version: Version(unsigned(row, 3, "version")?),
            position: GlobalPosition(unsigned(row, 4, "global_position")?),
        })
    };
    decode().map_err(|reason| StoreError::Corrupt {
        location: "an event row".to_owned(),
        reason,
    })
}

/// Decodes a row of the `load_snapshot` statement.
pub(super) fn snapshot(stream: &StreamId, row: &Row) -> Result<Snapshot, StoreError> {
    let decode = || -> Result<Snapshot, String> {
        let fingerprint: i64 = column(row, 1, "fingerprint")?;
        Ok(Snapshot {
            stream: stream.clone(),
            version: Version(unsigned(row, 0, "version")?),
            // Stored as the same 64 bits in a signed column.
            fingerprint: fingerprint as u64,
            codec: codec(row, 2)?,
            state: column(row, 3, "state")?,
            taken_at: Timestamp::from_micros(column(row, 4, "taken_at")?),
        })
    };
    decode().map_err(|reason| StoreError::Corrupt {
        location: format!("the snapshot of stream `{stream}`"),
        reason,
    })
}

/// Decodes a row of the `load_projection` statement.
pub(super) fn saved_projection(name: &str, row: &Row) -> Result<SavedProjection, StoreError> {
    let decode = || -> Result<SavedProjection, String> {
        Ok(SavedProjection {
            name: name.to_owned(),
            position: GlobalPosition(unsigned(row, 0, "position")?),
            codec: codec(row, 1)?,
            state: column(row, 2, "state")?,
            saved_at: Timestamp::from_micros(column(row, 3, "saved_at")?),
        })
    };
    decode().map_err(|reason| StoreError::Corrupt {
        location: format!("the saved projection `{name}`"),
        reason,
    })
}
