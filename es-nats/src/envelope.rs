//! A recorded event as a NATS message, and back: subject, headers, payload as stored.
//!
//! # The message
//!
//! - **Subject**: `<prefix>.<aggregate type>.<aggregate id>` (see [`Subjects`]), so a consumer
//!   can filter on one aggregate type (`<prefix>.order.*`) or one stream.
//! - **Payload**: the event's payload bytes exactly as the store holds them, in the event's
//!   codec. Nothing is re-encoded.
//! - **Headers** (names in [`header`]), one value each:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | the event id (JetStream drops a second message with the same id inside its duplicate window) |
//! | `Es-Event-Id` | the event id, hyphenated lower-case UUID |
//! | `Es-Event-Type` | the event type name, escaped |
//! | `Es-Schema-Version` | decimal |
//! | `Es-Codec` | the codec's name (`json`, `postcard`) |
//! | `Es-Aggregate-Type` | the stream's aggregate type, escaped |
//! | `Es-Aggregate-Id` | the stream's aggregate id, escaped |
//! | `Es-Version` | the event's version in its stream, decimal |
//! | `Es-Global-Position` | the event's global position, decimal |
//! | `Es-Recorded-At` | the commit time, integer microseconds since the Unix epoch (exact over the whole range, unlike a formatted date) |
//! | `Es-Correlation-Id` | only when set: UUID |
//! | `Es-Causation-Id` | only when set: UUID |
//! | `Es-Metadata` | only when the free key/values are not empty: a JSON object of string to string, keys sorted, no whitespace, then escaped |
//!
//! "Escaped" is the rule of the [`Subjects`] docs without its three extra reserved bytes: a
//! header value keeps printable ASCII except `%`, and writes every other byte (space, control
//! bytes, non-ASCII, `%`) as `%XX`; the empty text is a lone `%`. So no value holds a line
//! break or leading or trailing space that the NATS header block could mangle, and each text has
//! exactly one written form.
//!
//! [`from_message`] (or [`decode`]) rebuilds the [`RecordedEvent`] from the headers and payload
//! alone; the subject is routing only. A missing or malformed header is an
//! [`EnvelopeError`] naming the header, never a panic or a guessed value.
//!
//! # Example
//!
//! ```
//! use es_core::{CodecId, GlobalPosition, Metadata, RecordedEvent, StreamId, Timestamp, Version};
//! use es_nats::envelope::{self, Subjects};
//!
//! let event = RecordedEvent {
//!     event_id: uuid::Uuid::now_v7(),
//!     stream: StreamId::new("order", "2026.01/7"),
//!     version: Version(1),
//!     global_position: GlobalPosition(42),
//!     recorded_at: Timestamp::from_micros(1_769_857_200_500_000),
//!     event_type: "OrderCreated".into(),
//!     schema_version: 1,
//!     codec: CodecId::Json,
//!     metadata: Metadata::default().with("user", "clerk 7").into(),
//!     payload: br#"{"customer_id":"c-1"}"#.to_vec().into(),
//! };
//! let subjects = Subjects::new("es.events")?;
//! let message = subjects.envelope(&event);
//! // The `.` of the aggregate id would split the token: it is escaped.
//! assert_eq!(message.subject, "es.events.order.2026%2E01/7");
//! assert_eq!(message.payload.as_ref(), &event.payload[..]);
//!
//! let decoded = envelope::decode(&message.headers, &message.payload)?;
//! assert_eq!(decoded, event);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;

use async_nats::header::HeaderName;
use async_nats::HeaderMap;
use bytes::Bytes;
use es_core::{CodecId, GlobalPosition, Metadata, RecordedEvent, StreamId, Timestamp, Version};
use uuid::Uuid;

use crate::escape::{
    escape_header_value, escape_subject_token, unescape_header_value, unescape_subject_token,
};

/// The header names of the envelope.
pub mod header {
    /// JetStream's de-duplication id: the event id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// The event id.
    pub const EVENT_ID: &str = "Es-Event-Id";
    /// The event type name.
    pub const EVENT_TYPE: &str = "Es-Event-Type";
    /// The payload's schema version.
    pub const SCHEMA_VERSION: &str = "Es-Schema-Version";
    /// The payload's codec name.
    pub const CODEC: &str = "Es-Codec";
    /// The stream's aggregate type.
    pub const AGGREGATE_TYPE: &str = "Es-Aggregate-Type";
    /// The stream's aggregate id.
    pub const AGGREGATE_ID: &str = "Es-Aggregate-Id";
    /// The event's version within its stream.
    pub const VERSION: &str = "Es-Version";
    /// The event's global position.
    pub const GLOBAL_POSITION: &str = "Es-Global-Position";
    /// The commit time in microseconds since the Unix epoch.
    pub const RECORDED_AT: &str = "Es-Recorded-At";
    /// The correlation id, when set.
    pub const CORRELATION_ID: &str = "Es-Correlation-Id";
    /// The causation id, when set.
    pub const CAUSATION_ID: &str = "Es-Causation-Id";
    /// The free metadata key/values as a JSON object, when not empty.
    pub const METADATA: &str = "Es-Metadata";
}

/// How events map to subjects: `<prefix>.<aggregate type>.<aggregate id>`.
///
/// The prefix is one or more plain tokens (for example `es.events`). The aggregate type and
/// id become one token each, escaped: NATS splits subjects at `.`, treats `*` and `>` as
/// wildcards and ends a subject at whitespace, and a token must not be empty. So every byte
/// that is not printable ASCII (space, control bytes, each byte of a non-ASCII character), and
/// `.`, `*`, `>` and `%` itself, is written as `%` and two upper-case hex digits; an empty
/// text is written as a lone `%`. Different streams always get different subjects.
///
/// ```
/// use es_core::StreamId;
/// use es_nats::envelope::Subjects;
///
/// let subjects = Subjects::new("shop")?;
/// assert_eq!(subjects.subject(&StreamId::new("order", "7")), "shop.order.7");
/// assert_eq!(subjects.subject(&StreamId::new("order", "a b.c>")), "shop.order.a%20b%2Ec%3E");
/// assert_eq!(subjects.aggregate_type_filter("order"), "shop.order.*");
/// assert_eq!(subjects.all(), "shop.>");
/// assert!(Subjects::new("shop.*").is_err());
/// # Ok::<(), es_nats::envelope::InvalidPrefix>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// The prefix given to [`Subjects::new`] is not a list of plain subject tokens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{prefix}` is not a subject prefix: {reason}")]
pub struct InvalidPrefix {
    /// The refused prefix.
    pub prefix: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Default for Subjects {
    /// Subjects under the prefix `es.events`.
    fn default() -> Self {
        Subjects {
            prefix: "es.events".to_owned(),
        }
    }
}

impl Subjects {
    /// Subjects under `prefix`: one or more `.`-separated tokens, each non-empty printable
    /// ASCII without `*`, `>` or `%`.
    ///
    /// # Errors
    /// [`InvalidPrefix`] for anything else.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        let reason = if prefix.is_empty() {
            Some("it is empty")
        } else if prefix.split('.').any(str::is_empty) {
            Some("it has an empty token")
        } else if prefix
            .bytes()
            .any(|byte| !(b'!'..=b'~').contains(&byte) || b"*>%".contains(&byte))
        {
            Some("tokens must be printable ASCII without `*`, `>` or `%`")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidPrefix { prefix, reason }),
            None => Ok(Subjects { prefix }),
        }
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of every event of `stream`.
    #[must_use]
    pub fn subject(&self, stream: &StreamId) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            escape_subject_token(stream.aggregate_type()),
            escape_subject_token(stream.aggregate_id())
        )
    }

    /// The filter matching every event of one aggregate type.
    #[must_use]
    pub fn aggregate_type_filter(&self, aggregate_type: &str) -> String {
        format!("{}.{}.*", self.prefix, escape_subject_token(aggregate_type))
    }

    /// The filter matching every event: the subjects a JetStream stream must bind.
    #[must_use]
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The stream a subject of this scheme names, or `None` for a subject that is not one.
    #[must_use]
    pub fn stream_of(&self, subject: &str) -> Option<StreamId> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?;
        let (aggregate_type, aggregate_id) = rest.split_once('.')?;
        let aggregate_type = unescape_subject_token(aggregate_type).ok()?;
        let aggregate_id = unescape_subject_token(aggregate_id).ok()?;
        Some(StreamId::new(
            aggregate_type.into_owned(),
            aggregate_id.into_owned(),
        ))
    }

    /// The message that publishes `event`: its subject, envelope headers and stored payload.
    #[must_use]
    pub fn envelope(&self, event: &RecordedEvent) -> Envelope {
        Envelope {
            subject: self.subject(&event.stream),
            headers: headers(event),
            payload: event.payload.clone(),
        }
    }
}

/// One event as a NATS message, ready to publish.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Where it is published.
    pub subject: String,
    /// The envelope fields.
    pub headers: HeaderMap,
    /// The payload bytes as stored.
    pub payload: Bytes,
}

/// The envelope headers of `event` (see the [module docs](self)).
#[must_use]
pub fn headers(event: &RecordedEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let event_id = event.event_id.hyphenated().to_string();
    headers.insert(header_name(header::MSG_ID), event_id.as_str());
    headers.insert(header_name(header::EVENT_ID), event_id);
    headers.insert(
        header_name(header::EVENT_TYPE),
        escape_header_value(&event.event_type[..]).as_ref(),
    );
    headers.insert(
        header_name(header::SCHEMA_VERSION),
        event.schema_version.to_string(),
    );
    headers.insert(header_name(header::CODEC), event.codec.name());
    headers.insert(
        header_name(header::AGGREGATE_TYPE),
        escape_header_value(event.stream.aggregate_type()).as_ref(),
    );
    headers.insert(
        header_name(header::AGGREGATE_ID),
        escape_header_value(event.stream.aggregate_id()).as_ref(),
    );
    headers.insert(
        header_name(header::VERSION),
        event.version.get().to_string(),
    );
    headers.insert(
        header_name(header::GLOBAL_POSITION),
        event.global_position.get().to_string(),
    );
    headers.insert(
        header_name(header::RECORDED_AT),
        event.recorded_at.as_micros().to_string(),
    );
    if let Some(id) = event.metadata.correlation_id {
        headers.insert(
            header_name(header::CORRELATION_ID),
            id.hyphenated().to_string(),
        );
    }
    if let Some(id) = event.metadata.causation_id {
        headers.insert(
            header_name(header::CAUSATION_ID),
            id.hyphenated().to_string(),
        );
    }
    if !event.metadata.extra.is_empty() {
        let extra: BTreeMap<&str, &str> = event
            .metadata
            .extra
            .iter()
            .map(|(key, value)| (&key[..], &value[..]))
            .collect();
        // A map of strings always serializes.
        let json = serde_json::to_string(&extra).unwrap_or_default();
        headers.insert(
            header_name(header::METADATA),
            escape_header_value(&json).as_ref(),
        );
    }
    headers
}

/// A message is not an event envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The message has no headers at all.
    #[error("the message has no headers: it is not an event envelope")]
    NoHeaders,
    /// A required header is absent.
    #[error("the message has no `{name}` header")]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header's value does not parse.
    #[error("header `{name}` = `{value}` is invalid: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl EnvelopeError {
    fn invalid(name: &'static str, value: &str, reason: impl std::fmt::Display) -> Self {
        EnvelopeError::InvalidHeader {
            name,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The event a received message carries.
///
/// # Errors
/// [`EnvelopeError`] for a message without the envelope headers or with a malformed one.
pub fn from_message(message: &async_nats::Message) -> Result<RecordedEvent, EnvelopeError> {
    let headers = message.headers.as_ref().ok_or(EnvelopeError::NoHeaders)?;
    decode(headers, &message.payload)
}

/// The event that `headers` and `payload` carry (see the [module docs](self)).
///
/// # Errors
/// [`EnvelopeError`] for a missing or malformed header.
// The text and byte fields are filled with `.into()` so this compiles whether the event model
// holds `String`/`Vec<u8>` or shared types.
#[allow(clippy::useless_conversion)]
pub fn decode(headers: &HeaderMap, payload: &[u8]) -> Result<RecordedEvent, EnvelopeError> {
    let event_id: Uuid = parsed(headers, header::EVENT_ID)?;
    let msg_id = required(headers, header::MSG_ID)?;
    if Uuid::from_str(msg_id).ok() != Some(event_id) {
        return Err(EnvelopeError::invalid(
            header::MSG_ID,
            msg_id,
            format!("it differs from `{}`", header::EVENT_ID),
        ));
    }
    let codec_name = required(headers, header::CODEC)?;
    let codec = CodecId::from_str(codec_name)
        .map_err(|error| EnvelopeError::invalid(header::CODEC, codec_name, error))?;

    let mut metadata = Metadata {
        correlation_id: optional_parsed(headers, header::CORRELATION_ID)?,
        causation_id: optional_parsed(headers, header::CAUSATION_ID)?,
        ..Metadata::default()
    };
    if let Some(written) = value(headers, header::METADATA) {
        let json = unescaped(header::METADATA, written)?;
        let extra: BTreeMap<String, String> = serde_json::from_str(&json)
            .map_err(|error| EnvelopeError::invalid(header::METADATA, written, error))?;
        if extra.is_empty() {
            // The encoder leaves the header out instead: one form per metadata.
            return Err(EnvelopeError::invalid(
                header::METADATA,
                written,
                "an empty object is written as no header",
            ));
        }
        for (key, value) in extra {
            metadata.extra.insert(key.into(), value.into());
        }
    }

    Ok(RecordedEvent {
        event_id,
        stream: StreamId::new(
            text(headers, header::AGGREGATE_TYPE)?,
            text(headers, header::AGGREGATE_ID)?,
        ),
        version: Version(parsed(headers, header::VERSION)?),
        global_position: GlobalPosition(parsed(headers, header::GLOBAL_POSITION)?),
        recorded_at: Timestamp::from_micros(parsed(headers, header::RECORDED_AT)?),
        event_type: text(headers, header::EVENT_TYPE)?.into(),
        schema_version: parsed(headers, header::SCHEMA_VERSION)?,
        codec,
        metadata: metadata.into(),
        payload: payload.to_vec().into(),
    })
}

/// The global position in an envelope's headers, without decoding the rest.
///
/// # Errors
/// [`EnvelopeError`] if the header is missing or not a number.
pub fn global_position(headers: &HeaderMap) -> Result<GlobalPosition, EnvelopeError> {
    parsed(headers, header::GLOBAL_POSITION).map(GlobalPosition)
}

/// The client's form of the header name `name`.
///
/// async-nats keeps the names it knows (`Nats-Msg-Id`, ...) as a variant of their own and
/// others as text, and a received message's names are parsed that way: a lookup or insert by a
/// plain `&str` would not find the known ones. Parsing the name gives the same form.
pub(crate) fn header_name(name: &'static str) -> HeaderName {
    name.parse()
        .expect("the envelope's header names are valid header names")
}

/// The one value of header `name`, if present. A repeated header is refused by [`required`].
fn value<'a>(headers: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    headers
        .get(header_name(name))
        .map(async_nats::HeaderValue::as_str)
}

fn required<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, EnvelopeError> {
    let mut values = headers.get_all(header_name(name));
    let first = values
        .next()
        .ok_or(EnvelopeError::MissingHeader { name })?
        .as_str();
    if values.next().is_some() {
        return Err(EnvelopeError::invalid(
            name,
            first,
            "the header is repeated",
        ));
    }
    Ok(first)
}

fn parsed<T>(headers: &HeaderMap, name: &'static str) -> Result<T, EnvelopeError>
where
    T: FromStr + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let written = required(headers, name)?;
    canonical(name, written)
}

fn optional_parsed<T>(headers: &HeaderMap, name: &'static str) -> Result<Option<T>, EnvelopeError>
where
    T: FromStr + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    match headers.get(header_name(name)) {
        None => Ok(None),
        Some(_) => parsed(headers, name).map(Some),
    }
}

/// Parses a number or UUID, refusing any spelling the encoder never writes (sign, padding,
/// upper case, braces): each envelope has exactly one written form.
fn canonical<T>(name: &'static str, written: &str) -> Result<T, EnvelopeError>
where
    T: FromStr + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let value = written
        .parse::<T>()
        .map_err(|error| EnvelopeError::invalid(name, written, error))?;
    if value.to_string() != written {
        return Err(EnvelopeError::invalid(
            name,
            written,
            "not in canonical form",
        ));
    }
    Ok(value)
}

fn unescaped(name: &'static str, written: &str) -> Result<String, EnvelopeError> {
    unescape_header_value(written)
        .map(std::borrow::Cow::into_owned)
        .map_err(|error| EnvelopeError::invalid(name, written, error.reason()))
}

fn text(headers: &HeaderMap, name: &'static str) -> Result<String, EnvelopeError> {
    unescaped(name, required(headers, name)?)
}

#[cfg(test)]
mod tests;
