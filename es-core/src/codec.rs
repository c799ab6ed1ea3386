//! Payload codecs: JSON for people and tools, postcard for compact, fast binary.
//!
//! Every stored payload records the [`CodecId`] that wrote it, so a reader never guesses.
//! Both codecs share one small trait, [`Codec`]; code that picks the codec at run time (a
//! repository configured from the command line, a store decoding what it finds) goes through
//! [`CodecId`], which dispatches to the same functions.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A serialization format for event payloads, snapshots and read-model state.
pub trait Codec {
    /// The identifier recorded next to every payload this codec writes.
    const ID: CodecId;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a value of type `T` from `bytes`, which must hold exactly one value.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// JSON through `serde_json`: human readable, the default for inspection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

/// postcard: a compact binary format that is not self-describing.
///
/// Stored types must not use `#[serde(flatten)]`, internally tagged or untagged enums, or
/// `skip_serializing_if`: postcard cannot read those back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Postcard;

impl Codec for Json {
    const ID: CodecId = CodecId::Json;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        encode_exact(|buffer| serde_json::to_writer(buffer, value))
            .map_err(|e| CodecError::new(CodecId::Json, e))
    }

    // Never inlined: parsing JSON takes far longer than a call, and the parser's code would
    // crowd the postcard path next to it in `CodecId::decode` out of its callers.
    #[inline(never)]
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(json_error)
    }
}

impl Codec for Postcard {
    const ID: CodecId = CodecId::Postcard;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        encode_exact(|buffer| {
            *buffer = postcard::to_extend(value, std::mem::take(buffer))?;
            Ok::<_, postcard::Error>(())
        })
        .map_err(|e| CodecError::new(CodecId::Postcard, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        match postcard::take_from_bytes(bytes) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(trailing_bytes(rest.len())),
            Err(e) => Err(postcard_error(e)),
        }
    }
}

/// The most a thread's encoding buffer keeps between encodings.
const KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Where this thread encodes, reused from one encoding to the next.
    static ENCODING: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What `write` encodes, in a vector exactly its size. `write` appends to a buffer the thread
/// reuses, so an encoding grows no vector of its own, and the one allocation made is the exact
/// result: no unused capacity is kept with a stored payload, and a store turns it into shared
/// bytes without a second allocation. An encoding within another on the same thread (a
/// `Serialize` that encodes) gets a buffer of its own.
fn encode_exact<E>(write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<Vec<u8>, E> {
    ENCODING.with(|buffer| {
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            let mut own = Vec::new();
            write(&mut own)?;
            return Ok(own);
        };
        buffer.clear();
        let written = write(&mut buffer).map(|()| buffer.to_vec());
        if buffer.capacity() > KEPT_BUFFER {
            *buffer = Vec::new();
        }
        written
    })
}

// The decoders' error paths, cold and out of line: a postcard decode is inlined into its
// caller (replay, read models), where boxing an error in place would cost registers and code
// on the path that succeeds.

#[cold]
#[inline(never)]
fn json_error(error: serde_json::Error) -> CodecError {
    CodecError::new(CodecId::Json, error)
}

#[cold]
#[inline(never)]
fn postcard_error(error: postcard::Error) -> CodecError {
    CodecError::new(CodecId::Postcard, error)
}

#[cold]
#[inline(never)]
fn trailing_bytes(count: usize) -> CodecError {
    CodecError::new(CodecId::Postcard, TrailingBytes { count })
}

#[derive(Debug, thiserror::Error)]
#[error("{count} unexpected bytes after the value")]
struct TrailingBytes {
    count: usize,
}

/// The codec that wrote a payload, recorded with it. Stored as one byte: `1` JSON, `2` postcard.
///
/// Code that chooses the codec at run time (from configuration, or from what a store recorded)
/// encodes and decodes through this value.
///
/// # Examples
///
/// ```
/// use es_core::CodecId;
///
/// let codec: CodecId = "postcard".parse()?;
/// let bytes = codec.encode(&(3_u32, "mug"))?;
/// assert_eq!(codec.decode::<(u32, String)>(&bytes)?, (3, "mug".to_owned()));
///
/// // The byte stored next to the payload, and back.
/// assert_eq!(codec.as_u8(), 2);
/// assert_eq!(CodecId::from_u8(2)?, CodecId::Postcard);
/// assert!(CodecId::from_u8(7).is_err());
/// assert!("xml".parse::<CodecId>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CodecId {
    /// [`Json`].
    #[default]
    Json,
    /// [`Postcard`].
    Postcard,
}

impl CodecId {
    /// The byte stored for this codec.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        match self {
            CodecId::Json => 1,
            CodecId::Postcard => 2,
        }
    }

    /// The codec stored as `byte`.
    ///
    /// # Errors
    /// [`UnknownCodec`] for a byte no codec of this version writes.
    pub const fn from_u8(byte: u8) -> Result<Self, UnknownCodec> {
        match byte {
            1 => Ok(CodecId::Json),
            2 => Ok(CodecId::Postcard),
            other => Err(UnknownCodec(other)),
        }
    }

    /// Encodes `value` with this codec.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            CodecId::Json => Json::encode(value),
            CodecId::Postcard => Postcard::encode(value),
        }
    }

    /// Decodes a `T` from `bytes` with this codec.
    #[inline]
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            CodecId::Json => Json::decode(bytes),
            CodecId::Postcard => Postcard::decode(bytes),
        }
    }

    /// The codec's name, as accepted by [`str::parse`].
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            CodecId::Json => "json",
            CodecId::Postcard => "postcard",
        }
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CodecId {
    type Err = UnknownCodecName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(CodecId::Json),
            "postcard" => Ok(CodecId::Postcard),
            other => Err(UnknownCodecName(other.to_owned())),
        }
    }
}

/// A stored codec byte that no codec of this version writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec id {0} (known: 1 = json, 2 = postcard)")]
pub struct UnknownCodec(pub u8);

/// A codec name that is neither `json` nor `postcard`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec `{0}` (expected `json` or `postcard`)")]
pub struct UnknownCodecName(pub String);

/// A value could not be encoded, or bytes could not be decoded, by a codec.
///
/// Its message includes the codec's own (serde's), for example
/// ``json codec failed: missing field `amount` at line 1 column 2``. Like [`std::io::Error`]
/// wrapping a custom error, it shows the wrapped error in its own message and does not
/// return it again from [`source`](std::error::Error::source) (that goes on to the wrapped
/// error's own source, if any), so a report that walks the chain prints each cause once.
/// [`CodecError::get_ref`] gives the wrapped error.
///
/// ```
/// use es_core::CodecId;
///
/// let error = CodecId::Json.decode::<u32>(b"\"ten\"").unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "json codec failed: invalid type: string \"ten\", expected u32 at line 1 column 5"
/// );
/// ```
#[derive(Debug)]
pub struct CodecError {
    codec: CodecId,
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} codec failed: {}", self.codec, self.inner)
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl CodecError {
    /// An error of `codec` caused by `source`.
    pub fn new(codec: CodecId, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        CodecError {
            codec,
            inner: Box::new(source),
        }
    }

    /// The codec's own error, whose message this error's message includes.
    #[must_use]
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// The codec that failed.
    #[must_use]
    pub fn codec(&self) -> CodecId {
        self.codec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        name: String,
        quantity: u32,
    }

    /// Encodes a `Sample` inside its own serialization, with the given codec.
    struct Nested(CodecId);

    impl Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = Sample {
                name: "inner".into(),
                quantity: 1,
            };
            let bytes = self.0.encode(&inner).map_err(serde::ser::Error::custom)?;
            serializer.serialize_bytes(&bytes)
        }
    }

    #[test]
    fn encodings_are_exactly_their_size_and_may_nest() {
        for codec in [CodecId::Json, CodecId::Postcard] {
            let sample = Sample {
                name: "x".repeat(100),
                quantity: 7,
            };
            let bytes = codec.encode(&sample).unwrap();
            assert_eq!(bytes.len(), bytes.capacity(), "{codec}: no spare capacity");
            assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), sample);

            // An encoding within an encoding on the same thread gets its own buffer.
            let outer = codec.encode(&Nested(codec)).unwrap();
            let inner: Vec<u8> = codec.decode(&outer).unwrap();
            let inner: Sample = codec.decode(&inner).unwrap();
            assert_eq!(inner.name, "inner");

            // A large encoding leaves no large buffer behind.
            let large = Sample {
                name: "y".repeat(4 * KEPT_BUFFER),
                quantity: 1,
            };
            assert_eq!(
                codec
                    .decode::<Sample>(&codec.encode(&large).unwrap())
                    .unwrap(),
                large
            );
            ENCODING.with(|buffer| assert!(buffer.borrow().capacity() <= KEPT_BUFFER));
        }
    }

    #[test]
    fn both_codecs_round_trip() {
        let value = Sample {
            name: "widget".into(),
            quantity: 3,
        };
        for codec in [CodecId::Json, CodecId::Postcard] {
            let bytes = codec.encode(&value).unwrap();
            assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), value, "{codec}");
        }
    }

    #[test]
    fn postcard_rejects_trailing_bytes() {
        let mut bytes = Postcard::encode(&Sample {
            name: "a".into(),
            quantity: 1,
        })
        .unwrap();
        bytes.push(0);
        let err = Postcard::decode::<Sample>(&bytes).unwrap_err();
        assert_eq!(err.codec(), CodecId::Postcard);
        assert_eq!(
            err.to_string(),
            "postcard codec failed: 1 unexpected bytes after the value"
        );
    }

    #[test]
    fn the_message_names_the_codec_and_says_what_serde_found_once() {
        let error = Json::decode::<Sample>(br#"{"name":"mug"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "json codec failed: missing field `quantity` at line 1 column 14"
        );
        assert!(
            std::error::Error::source(&error).is_none(),
            "serde's error is in the message already; a chain must not repeat it"
        );
        assert_eq!(
            error.get_ref().to_string(),
            "missing field `quantity` at line 1 column 14"
        );
        let error = Postcard::decode::<Sample>(&[]).unwrap_err();
        assert!(
            error.to_string().starts_with("postcard codec failed: ")
                && error.to_string().len() > "postcard codec failed: ".len(),
            "{error}"
        );
    }

    #[test]
    fn truncated_payloads_are_errors() {
        for codec in [CodecId::Json, CodecId::Postcard] {
            let bytes = codec
                .encode(&Sample {
                    name: "widget".into(),
                    quantity: 300,
                })
                .unwrap();
            for len in 0..bytes.len() {
                assert!(
                    codec.decode::<Sample>(&bytes[..len]).is_err(),
                    "{codec} prefix {len}"
                );
            }
        }
    }

    #[test]
    fn codec_ids_round_trip_through_bytes_and_names() {
        for codec in [CodecId::Json, CodecId::Postcard] {
            assert_eq!(CodecId::from_u8(codec.as_u8()).unwrap(), codec);
            assert_eq!(codec.name().parse::<CodecId>().unwrap(), codec);
        }
        assert_eq!(CodecId::from_u8(9), Err(UnknownCodec(9)));
        assert!("xml".parse::<CodecId>().is_err());
    }
}
