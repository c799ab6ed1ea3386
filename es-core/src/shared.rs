//! Cheaply cloned values for the fields every recorded event carries.
//!
//! A store hands out copies of its events (every read, every subscription page, every read
//! model). [`SharedStr`] and [`Bytes`] make such a copy a reference-count increment instead of
//! a fresh allocation per field, and read like the `String` and `Vec<u8>` they replace.

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use bytes::Bytes;

/// An immutable string that clones in O(1): a `&'static str` or a reference-counted `str`.
///
/// It dereferences to `str` and compares equal to `str`, `&str` and `String` with the same
/// text, so reading code looks as it would with a `String`. It serializes exactly as a
/// `String` does, in every format.
///
/// # Examples
///
/// ```
/// use es_core::SharedStr;
///
/// let event_type: SharedStr = "OrderPlaced".into();
/// let copy = event_type.clone(); // no allocation
/// assert_eq!(copy, "OrderPlaced");
/// assert!(event_type.starts_with("Order"));
/// assert_eq!(serde_json::to_string(&event_type)?, "\"OrderPlaced\"");
///
/// // A name known at compile time is never copied at all.
/// const PLACED: SharedStr = SharedStr::from_static("OrderPlaced");
/// assert_eq!(PLACED, event_type);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl SharedStr {
    /// A string borrowed for the whole program: no allocation, now or on clone.
    #[must_use]
    pub const fn from_static(text: &'static str) -> Self {
        SharedStr(Repr::Static(text))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(text) => text,
            Repr::Shared(text) => text,
        }
    }
}

impl Default for SharedStr {
    /// The empty string.
    fn default() -> Self {
        SharedStr::from_static("")
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    /// Hashes as the `str` does, as [`Borrow<str>`] requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// `SharedStr == str`, `SharedStr == &str`, `SharedStr == String` and the mirrored forms.
macro_rules! eq_text {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for SharedStr {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }

        impl PartialEq<SharedStr> for $other {
            fn eq(&self, other: &SharedStr) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

eq_text!(str, &str, String);

impl From<&str> for SharedStr {
    /// Copies the text once; clones after that share it.
    fn from(text: &str) -> Self {
        SharedStr(Repr::Shared(Arc::from(text)))
    }
}

impl From<&String> for SharedStr {
    fn from(text: &String) -> Self {
        SharedStr::from(text.as_str())
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> Self {
        SharedStr(Repr::Shared(Arc::from(text)))
    }
}

impl From<Box<str>> for SharedStr {
    fn from(text: Box<str>) -> Self {
        SharedStr(Repr::Shared(Arc::from(text)))
    }
}

impl From<Cow<'_, str>> for SharedStr {
    fn from(text: Cow<'_, str>) -> Self {
        match text {
            Cow::Borrowed(text) => SharedStr::from(text),
            Cow::Owned(text) => SharedStr::from(text),
        }
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(text: Arc<str>) -> Self {
        SharedStr(Repr::Shared(text))
    }
}

impl From<&SharedStr> for SharedStr {
    fn from(text: &SharedStr) -> Self {
        text.clone()
    }
}

impl From<SharedStr> for String {
    fn from(text: SharedStr) -> Self {
        text.as_str().to_owned()
    }
}

impl From<SharedStr> for Arc<str> {
    fn from(text: SharedStr) -> Self {
        match text.0 {
            Repr::Static(text) => Arc::from(text),
            Repr::Shared(text) => text,
        }
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SharedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SharedStr, E> {
                Ok(SharedStr::from(text))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<SharedStr, E> {
                Ok(SharedStr::from(text))
            }
        }
        deserializer.deserialize_string(Visitor)
    }
}

/// Serializes a payload (`Vec<u8>` or [`Bytes`]) as one byte string (not a sequence of
/// numbers) in binary codecs, and reads back a byte string or a sequence of numbers (JSON
/// writes bytes as an array).
pub(crate) mod bytes_serde {
    use std::marker::PhantomData;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: From<Vec<u8>>,
    {
        struct Visitor<T>(PhantomData<T>);
        impl<'de, T: From<Vec<u8>>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
                Ok(T::from(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<T, E> {
                Ok(T::from(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(byte) = seq.next_element()? {
                    out.push(byte);
                }
                Ok(T::from(out))
            }
        }
        deserializer.deserialize_byte_buf(Visitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_text() {
        let text = SharedStr::from(String::from("order"));
        let copy = text.clone();
        assert!(std::ptr::eq(text.as_str(), copy.as_str()));
        let fixed = SharedStr::from_static("order");
        assert!(std::ptr::eq(fixed.clone().as_str(), fixed.as_str()));
    }

    #[test]
    fn compares_and_hashes_as_its_text() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        let shared = SharedStr::from("b");
        let fixed = SharedStr::from_static("b");
        assert_eq!(shared, fixed);
        assert_eq!(shared, "b");
        assert_eq!("b", shared);
        assert_eq!(shared, String::from("b"));
        assert_ne!(shared, "a");
        let smaller = SharedStr::from("a");
        assert!(smaller < fixed && smaller.cmp(&shared).is_lt());
        assert_eq!(
            hash(&|h| shared.hash(h)),
            hash(&|h| "b".hash(h)),
            "Borrow<str> needs equal hashes"
        );
        assert_eq!(hash(&|h| shared.hash(h)), hash(&|h| fixed.hash(h)));
    }

    #[test]
    fn serializes_exactly_as_a_string() {
        for text in ["", "OrderPlaced", "ünïcode / with \"quotes\""] {
            let shared = SharedStr::from(text);
            let json = serde_json::to_string(&shared).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<SharedStr>(&json).unwrap(), text);
            let bytes = postcard::to_stdvec(&shared).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&text.to_owned()).unwrap());
            assert_eq!(postcard::from_bytes::<SharedStr>(&bytes).unwrap(), text);
        }
        assert!(serde_json::from_str::<SharedStr>("12").is_err());
    }
}
