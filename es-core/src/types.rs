//! Newtypes for the concepts every part of the framework shares.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::shared::SharedStr;

/// The position of an event within its stream: 1 for the first event, contiguous after that.
///
/// `Version::INITIAL` (0) is the version of a stream that has no events yet.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of an aggregate before its first event.
    pub const INITIAL: Version = Version(0);

    /// The version as a plain number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version that follows this one.
    #[must_use]
    pub const fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Version {
    fn from(value: u64) -> Self {
        Version(value)
    }
}

/// The position of an event in the store's global log, strictly increasing in commit order.
///
/// Positions start at 1; `GlobalPosition::START` (0) is "before the first event", the checkpoint
/// of a projection that has seen nothing.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct GlobalPosition(pub u64);

impl GlobalPosition {
    /// Before the first event of the log.
    pub const START: GlobalPosition = GlobalPosition(0);

    /// The position as a plain number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for GlobalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for GlobalPosition {
    fn from(value: u64) -> Self {
        GlobalPosition(value)
    }
}

/// Identifies one stream: the events of one aggregate instance.
///
/// Both parts are [`SharedStr`]s, so a clone (every recorded event holds its stream) costs two
/// reference-count increments at most.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    aggregate_type: SharedStr,
    aggregate_id: SharedStr,
}

impl StreamId {
    /// The stream of the aggregate of type `aggregate_type` (for example `"order"`) with id
    /// `aggregate_id`.
    pub fn new(aggregate_type: impl Into<SharedStr>, aggregate_id: impl Into<SharedStr>) -> Self {
        StreamId {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }
    }

    /// The aggregate type, the first half of the stream id.
    #[must_use]
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The aggregate id, the second half of the stream id.
    #[must_use]
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// The aggregate id, shared: a copy costs a reference count, not the text.
    pub(crate) fn shared_aggregate_id(&self) -> &SharedStr {
        &self.aggregate_id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// A UTC instant with microsecond precision, stored as integer microseconds since the Unix
/// epoch.
///
/// Binary codecs store it as one integer (chrono's own serde format is a 27-character string
/// even in postcard); human-readable formats show the RFC 3339 text.
///
/// # Examples
///
/// Parsing accepts any RFC 3339 offset; display is always UTC:
///
/// ```
/// use es_core::Timestamp;
///
/// let opened: Timestamp = "2026-01-31T12:00:00.5+01:00".parse()?;
/// assert_eq!(opened.to_string(), "2026-01-31T11:00:00.500Z");
/// assert_eq!(opened.as_micros(), 1_769_857_200_500_000);
/// assert!(opened < opened.saturating_add_micros(1));
/// # Ok::<(), es_core::types::ParseTimestampError>(())
/// ```
///
/// Arithmetic with [`std::time::Duration`] (whole microseconds; a finer part is dropped):
///
/// ```
/// use std::time::Duration;
/// use es_core::Timestamp;
///
/// let opened: Timestamp = "2026-01-31T11:00:00Z".parse()?;
/// let an_hour = Duration::from_secs(3_600);
/// assert_eq!((opened + an_hour).to_string(), "2026-01-31T12:00:00Z");
/// assert_eq!(opened + an_hour - an_hour, opened);
/// assert_eq!((opened + an_hour).duration_since(opened), Some(an_hour));
/// assert_eq!(opened.duration_since(opened + an_hour), None);
/// assert_eq!(Timestamp::MAX.checked_add(an_hour), None);
/// # Ok::<(), es_core::types::ParseTimestampError>(())
/// ```
///
/// Parse errors say what was expected:
///
/// ```
/// use es_core::Timestamp;
///
/// let error = "yesterday".parse::<Timestamp>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "`yesterday` is not an RFC 3339 timestamp (for example `2026-01-31T12:00:00Z`)"
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// The instant `micros` microseconds after the Unix epoch.
    #[must_use]
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current time of the system clock.
    #[must_use]
    pub fn now() -> Self {
        // Straight from the system time (no calendar arithmetic): every append reads it.
        let micros = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            // In 64-bit steps: `as_micros` divides a 128-bit number.
            Ok(since) => i64::try_from(since.as_secs())
                .ok()
                .and_then(|seconds| seconds.checked_mul(1_000_000))
                .and_then(|micros| micros.checked_add(i64::from(since.subsec_micros())))
                .unwrap_or(i64::MAX),
            // Before 1970: rounded down, as `DateTime::timestamp_micros` does.
            Err(before) => i64::try_from(before.duration().as_nanos().div_ceil(1_000))
                .map_or(i64::MIN, |micros| -micros),
        };
        Timestamp(micros)
    }

    /// This instant as a chrono `DateTime`.
    #[must_use]
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// This instant plus `micros` microseconds, saturating at the ends of the range.
    #[must_use]
    pub const fn saturating_add_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }

    /// This instant plus `duration`, or `None` past [`Timestamp::MAX`].
    #[must_use]
    pub fn checked_add(self, duration: Duration) -> Option<Self> {
        self.0
            .checked_add(duration_micros(duration)?)
            .map(Timestamp)
    }

    /// This instant minus `duration`, or `None` before the earliest representable instant.
    #[must_use]
    pub fn checked_sub(self, duration: Duration) -> Option<Self> {
        self.0
            .checked_sub(duration_micros(duration)?)
            .map(Timestamp)
    }

    /// This instant plus `duration`, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        self.checked_add(duration).unwrap_or(Timestamp::MAX)
    }

    /// This instant minus `duration`, saturating at the earliest representable instant.
    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Self {
        self.checked_sub(duration).unwrap_or(Timestamp(i64::MIN))
    }

    /// The time from `earlier` to this instant, or `None` if `earlier` is later.
    #[must_use]
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        // In i128 the difference of two i64 never overflows, and a non-negative one fits u64.
        let micros = i128::from(self.0) - i128::from(earlier.0);
        u64::try_from(micros).ok().map(Duration::from_micros)
    }
}

/// `duration` in whole microseconds, if it fits the timestamp range.
fn duration_micros(duration: Duration) -> Option<i64> {
    i64::try_from(duration.as_micros()).ok()
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// # Panics
    /// Past [`Timestamp::MAX`], like `std::time::Instant`; see [`Timestamp::checked_add`].
    fn add(self, duration: Duration) -> Timestamp {
        self.checked_add(duration)
            .expect("overflow when adding a duration to a timestamp")
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// # Panics
    /// Before the earliest representable instant; see [`Timestamp::checked_sub`].
    fn sub(self, duration: Duration) -> Timestamp {
        self.checked_sub(duration)
            .expect("overflow when subtracting a duration from a timestamp")
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl SubAssign<Duration> for Timestamp {
    fn sub_assign(&mut self, duration: Duration) {
        *self = *self - duration;
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Timestamp(value.timestamp_micros())
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(value: Timestamp) -> Self {
        value.to_datetime()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )
    }
}

/// The error returned when a text is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an RFC 3339 timestamp (for example `2026-01-31T12:00:00Z`)")]
pub struct ParseTimestampError {
    input: String,
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|dt| Timestamp::from(dt.with_timezone(&Utc)))
            .map_err(|_| ParseTimestampError {
                input: s.to_owned(),
            })
    }
}

/// The instants RFC 3339 text can express, years 0000 to 9999, in microseconds.
const RFC3339_RANGE: std::ops::RangeInclusive<i64> =
    -62_167_219_200_000_000..=253_402_300_799_999_999;

impl Serialize for Timestamp {
    /// RFC 3339 text in human-readable formats (integer microseconds for the rare instant
    /// outside years 0000 to 9999, which the text cannot express); one integer in binary ones.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() && RFC3339_RANGE.contains(&self.0) {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or integer microseconds since the Unix epoch")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, micros: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(micros))
            }
            fn visit_u64<E: serde::de::Error>(self, micros: u64) -> Result<Timestamp, E> {
                i64::try_from(micros)
                    .map(Timestamp)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(micros), &self))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(Visitor)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_reads_the_system_clock_in_microseconds() {
        let before = Timestamp::from(Utc::now());
        let now = Timestamp::now();
        let after = Timestamp::from(Utc::now());
        assert!(
            before <= now && now <= after,
            "{before:?} {now:?} {after:?}"
        );
    }

    #[test]
    fn every_timestamp_round_trips_through_json_and_postcard() {
        let edges = [
            i64::MIN,
            *RFC3339_RANGE.start() - 1,
            *RFC3339_RANGE.start(),
            -1,
            0,
            *RFC3339_RANGE.end(),
            *RFC3339_RANGE.end() + 1,
            i64::MAX,
        ];
        for micros in edges {
            let t = Timestamp::from_micros(micros);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(
                serde_json::from_str::<Timestamp>(&json).unwrap(),
                t,
                "{json}"
            );
            let bytes = postcard::to_stdvec(&t).unwrap();
            assert_eq!(postcard::from_bytes::<Timestamp>(&bytes).unwrap(), t);
        }
        assert_eq!(
            serde_json::to_string(&Timestamp::MAX).unwrap(),
            i64::MAX.to_string()
        );
        assert!(serde_json::from_str::<Timestamp>("true").is_err());
        assert!(serde_json::from_str::<Timestamp>("18446744073709551615").is_err());
    }

    #[test]
    fn timestamp_round_trips_through_text() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn timestamp_rejects_malformed_text() {
        let err = "yesterday".parse::<Timestamp>().unwrap_err();
        assert!(err.to_string().contains("`yesterday`"));
    }

    #[test]
    fn timestamp_is_an_integer_in_postcard_and_text_in_json() {
        let t = Timestamp::from_micros(1_700_000_000_000_000);
        let bytes = postcard::to_stdvec(&t).unwrap();
        assert!(
            bytes.len() <= 9,
            "postcard stores a varint, got {} bytes",
            bytes.len()
        );
        assert_eq!(postcard::from_bytes::<Timestamp>(&bytes).unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
