//! The event model: typed events, the generated event enum, and the envelopes a store keeps.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{CodecError, CodecId};
pub use crate::ids::new_event_id;
use crate::shared::{bytes_serde, Bytes, SharedStr};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

/// One kind of domain event: a plain struct with a stable name and a schema version.
///
/// Derive it with `#[derive(Event)]`; `#[event(name = "...", version = N)]` sets the name
/// (default: the type name) and the schema version (default: 1). The stored payload is the
/// struct alone, encoded by a codec; the name (as the event type) and the schema version are
/// stored next to it and select the decoder.
pub trait Event:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// The stable name stored with every event of this type.
    const NAME: &'static str;
    /// The current schema version of this type, from 1.
    const SCHEMA_VERSION: u32;

    /// Decodes a payload of this event type stored at `schema_version`.
    ///
    /// The current version decodes directly; an older version decodes as the older type and is
    /// converted with `From`, step by step (`V1 -> V2 -> current`). The derive generates this.
    ///
    /// # Errors
    /// [`DecodeError::UnknownSchemaVersion`] for a version this type does not know, and
    /// [`DecodeError::Payload`] for bytes that do not decode.
    fn decode_versioned(
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError>;
}

/// Decodes the current schema version of `E`, the base case of every upcast chain.
#[doc(hidden)]
#[inline]
pub fn decode_current<E: Event>(codec: CodecId, payload: &[u8]) -> Result<E, DecodeError> {
    match codec.decode(payload) {
        Ok(event) => Ok(event),
        Err(source) => Err(payload_error(E::NAME, E::SCHEMA_VERSION, source)),
    }
}

/// The error for a payload that does not decode: cold, out of line and shared by every event
/// type, so a decode inlined into its caller carries only the path that succeeds.
#[cold]
#[inline(never)]
fn payload_error(event_type: &'static str, schema_version: u32, source: CodecError) -> DecodeError {
    DecodeError::Payload {
        event_type: event_type.into(),
        schema_version,
        source,
    }
}

/// The closed set of events of one aggregate: the enum `#[derive(Aggregate)]` generates.
pub trait EventSet: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// The names of every event type in the set, in declaration order.
    const EVENT_TYPES: &'static [&'static str];

    /// The stable name of this event's type.
    fn event_type(&self) -> &'static str;

    /// The current schema version of this event's type.
    fn schema_version(&self) -> u32;

    /// Encodes the event struct alone (never an enum variant index) with `codec`.
    ///
    /// # Errors
    /// A [`CodecError`] if the codec cannot represent the value.
    fn encode(&self, codec: CodecId) -> Result<Vec<u8>, CodecError>;

    /// Decodes a stored payload by its recorded type name, schema version and codec.
    ///
    /// # Errors
    /// A typed [`DecodeError`] for an unknown type, an unknown version or bad bytes; never a
    /// panic.
    fn decode(
        event_type: &str,
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError>;
}

/// A stored payload could not be turned back into an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stored event type is not part of the event set.
    #[error("unknown event type `{event_type}`")]
    UnknownEventType {
        /// The stored name.
        event_type: String,
    },
    /// The event type is known, but not at the stored schema version.
    #[error(
        "event type `{event_type}` has no schema version {schema_version} (current: {current})"
    )]
    UnknownSchemaVersion {
        /// The stored name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// The current version of the type.
        current: u32,
    },
    /// The bytes are not a valid payload for the type and version.
    #[error("payload of `{event_type}` v{schema_version} does not decode")]
    Payload {
        /// The stored name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
}

/// Context stored with every event: why it happened and what caused it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Shared by every event of one business transaction, across aggregates and services.
    pub correlation_id: Option<Uuid>,
    /// The id of the event or message that caused this one.
    pub causation_id: Option<Uuid>,
    /// Free key/values (user, tenant, request id, ...).
    pub extra: BTreeMap<String, String>,
}

impl Metadata {
    /// Metadata with this correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Metadata with this causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Metadata with one more free key/value.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Whether no field is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.extra.is_empty()
    }
}

/// The metadata of a [`RecordedEvent`]: a [`Metadata`] shared by the event's copies, read
/// through `Deref` (`event.metadata.correlation_id`).
///
/// Most events carry no metadata: those hold nothing at all, so copying one touches no
/// reference count (a count shared by every such event would be one memory word written by
/// every copy on every core). Built with `.into()` from a [`Metadata`] or an `Arc<Metadata>`;
/// compares, prints and serializes as the [`Metadata`] it holds.
#[derive(Clone, Default)]
pub struct SharedMetadata(Option<Arc<Metadata>>);

/// What an event without metadata reads.
static NO_METADATA: Metadata = Metadata {
    correlation_id: None,
    causation_id: None,
    extra: BTreeMap::new(),
};

impl SharedMetadata {
    /// The metadata to change, copied first if another event shares it.
    pub fn make_mut(&mut self) -> &mut Metadata {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }
}

impl std::ops::Deref for SharedMetadata {
    type Target = Metadata;

    fn deref(&self) -> &Metadata {
        self.0.as_deref().unwrap_or(&NO_METADATA)
    }
}

impl From<Metadata> for SharedMetadata {
    fn from(metadata: Metadata) -> Self {
        if metadata.is_empty() {
            SharedMetadata(None)
        } else {
            SharedMetadata(Some(Arc::new(metadata)))
        }
    }
}

impl From<Arc<Metadata>> for SharedMetadata {
    fn from(metadata: Arc<Metadata>) -> Self {
        if metadata.is_empty() {
            SharedMetadata(None)
        } else {
            SharedMetadata(Some(metadata))
        }
    }
}

impl Debug for SharedMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Debug::fmt(&**self, f)
    }
}

impl PartialEq for SharedMetadata {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SharedMetadata {}

/// A recorded event's metadata compares with a plain [`Metadata`]
/// (`assert_eq!(event.metadata, expected)`).
impl PartialEq<Metadata> for SharedMetadata {
    fn eq(&self, other: &Metadata) -> bool {
        **self == *other
    }
}

/// A plain [`Metadata`] compares with a recorded event's metadata.
impl PartialEq<SharedMetadata> for Metadata {
    fn eq(&self, other: &SharedMetadata) -> bool {
        *self == **other
    }
}

impl Serialize for SharedMetadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Metadata::deserialize(deserializer).map(SharedMetadata::from)
    }
}

/// An event ready to append: encoded, with its type, version and metadata.
///
/// The store assigns its stream version, global position and timestamp.
///
/// # Examples
///
/// Using an [`EventStore`](crate::EventStore) directly; a [`Repository`](crate::Repository)
/// does this for aggregates.
///
/// ```
/// # use es_core::{Aggregate, Apply, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// # struct Deposited { amount: u64 }
/// # #[derive(Aggregate, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "account", events(Deposited))]
/// # struct Account { balance: u64 }
/// # impl Apply<Deposited> for Account {
/// #     fn apply(&mut self, event: &Deposited) { self.balance += event.amount }
/// # }
/// use es_core::{
///     CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata, NewEvent,
///     Version, VersionRange,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemory::new();
/// let stream = Account::stream_id("alice"); // `account/alice`
/// let deposit =
///     |amount| NewEvent::encode(&AccountEvent::from(Deposited { amount }), CodecId::Json);
///
/// let first = deposit(100)?.with_metadata(Metadata::default().with("user", "clerk-7"));
/// let written = store.append(&stream, ExpectedVersion::NoStream, vec![first]).await?;
/// assert_eq!(written.version, Version(1));
///
/// // A writer that also expected an empty stream loses, and writes nothing.
/// let error = store.append(&stream, ExpectedVersion::NoStream, vec![deposit(5)?]).await;
/// assert!(error.is_err_and(|error| error.is_conflict()));
///
/// let events = store.read_stream(&stream, VersionRange::all()).await?;
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].decode::<AccountEvent>()?, Deposited { amount: 100 }.into());
/// assert_eq!(events[0].metadata.extra["user"], "clerk-7");
///
/// // The global log, in pages: pass the position of the last event seen to read on.
/// let page = store.read_all(GlobalPosition::START, 100).await?;
/// assert_eq!(page[0].global_position, written.position);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// A unique id (UUID v7, so ids sort by creation time).
    pub event_id: Uuid,
    /// The stable event type name.
    pub event_type: SharedStr,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// The codec of `payload`.
    pub codec: CodecId,
    /// The event struct, encoded by `codec`.
    #[serde(with = "bytes_serde")]
    pub payload: Vec<u8>,
    /// Correlation, causation and free key/values.
    pub metadata: Metadata,
}

impl NewEvent {
    /// Encodes `event` with `codec`, with a fresh UUID v7 and empty metadata.
    ///
    /// # Errors
    /// A [`CodecError`] if the codec cannot represent the event.
    pub fn encode<E: EventSet>(event: &E, codec: CodecId) -> Result<Self, CodecError> {
        Ok(NewEvent {
            event_id: new_event_id(),
            event_type: SharedStr::from_static(event.event_type()),
            schema_version: event.schema_version(),
            codec,
            payload: event.encode(codec)?,
            metadata: Metadata::default(),
        })
    }

    /// This event with `metadata`.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as the store keeps it: the appended event plus its place in the stream and the log.
///
/// A clone costs a few reference-count increments, whatever the size of the payload: the
/// strings ([`SharedStr`]), the payload ([`Bytes`]) and the metadata are shared, so a store can
/// hand out copies of its events to every reader. The fields read like the owned types they
/// share (`event.event_type == "Deposited"`, `&*event.payload`, `event.metadata.extra["user"]`)
/// and are built with `.into()` from `String`, `&str`, `Vec<u8>` and [`Metadata`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The id given at append.
    pub event_id: Uuid,
    /// The stream (aggregate type and id).
    pub stream: StreamId,
    /// 1, 2, 3 ... within the stream.
    pub version: Version,
    /// Strictly increasing across the store, in commit order.
    pub global_position: GlobalPosition,
    /// When the store committed the event, from the store's clock.
    pub recorded_at: Timestamp,
    /// The stable event type name.
    pub event_type: SharedStr,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// The codec of `payload`.
    pub codec: CodecId,
    /// Correlation, causation and free key/values (shared between the event's copies; free
    /// for the usual event, which carries none).
    pub metadata: SharedMetadata,
    /// The event struct, encoded by `codec`.
    #[serde(with = "bytes_serde")]
    pub payload: Bytes,
}

impl RecordedEvent {
    /// Decodes the payload as a member of the event set `E`.
    ///
    /// # Errors
    /// A typed [`DecodeError`] for an unknown type or version or a corrupt payload.
    #[inline]
    pub fn decode<E: EventSet>(&self) -> Result<E, DecodeError> {
        E::decode(
            &self.event_type,
            self.schema_version,
            self.codec,
            &self.payload,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_metadata_holds_nothing_for_empty_metadata_and_reads_as_what_it_was_given() {
        let empty = SharedMetadata::from(Metadata::default());
        assert!(empty.0.is_none(), "empty metadata allocates nothing");
        assert!(SharedMetadata::from(Arc::new(Metadata::default()))
            .0
            .is_none());
        assert_eq!(empty, Metadata::default());
        assert_eq!(empty, SharedMetadata::default());

        let full = Metadata::default()
            .with_correlation_id(Uuid::from_u128(1))
            .with("user", "ada");
        let shared = SharedMetadata::from(full.clone());
        let copy = shared.clone();
        assert!(Arc::ptr_eq(
            shared.0.as_ref().unwrap(),
            copy.0.as_ref().unwrap()
        ));
        assert_eq!(copy.extra["user"], "ada");
        assert_eq!(full, copy);
        assert_ne!(copy, empty);
        assert_eq!(format!("{copy:?}"), format!("{full:?}"));
    }

    #[test]
    fn shared_metadata_changes_a_copy_of_its_own() {
        let mut first = SharedMetadata::from(Metadata::default().with("a", "1"));
        let second = first.clone();
        first.make_mut().extra.insert("b".into(), "2".into());
        assert_eq!(second, Metadata::default().with("a", "1"));
        assert_eq!(first, Metadata::default().with("a", "1").with("b", "2"));

        let mut empty = SharedMetadata::default();
        empty.make_mut().causation_id = Some(Uuid::from_u128(7));
        assert_eq!(empty.causation_id, Some(Uuid::from_u128(7)));
    }

    #[test]
    fn shared_metadata_serializes_exactly_as_metadata() {
        for metadata in [
            Metadata::default(),
            Metadata::default()
                .with_causation_id(Uuid::from_u128(3))
                .with("tenant", "t1"),
        ] {
            let shared = SharedMetadata::from(metadata.clone());
            let json = serde_json::to_vec(&shared).unwrap();
            assert_eq!(json, serde_json::to_vec(&metadata).unwrap());
            let back: SharedMetadata = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, metadata);
            let bytes = postcard::to_stdvec(&shared).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&metadata).unwrap());
            let back: SharedMetadata = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, metadata);
        }
    }
}
