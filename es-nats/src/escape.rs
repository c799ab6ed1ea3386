//! The one escaping rule behind subject tokens and text header values.
//!
//! A byte is written as itself when it is printable ASCII (`!` to `~`) and not one of the
//! bytes the place forbids; every other byte, `%` included, is written as `%` followed by two
//! upper-case hex digits (UTF-8 text is escaped byte by byte). The empty string is written as
//! a lone `%`, which no other string produces, because a subject token must not be empty and an
//! empty header value does not survive every parser.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The bytes a subject token must not hold besides the escaped ones: the token separator and
/// the two wildcards.
const SUBJECT_RESERVED: &[u8] = b".*>";

/// Writes `text` for a place that forbids `reserved` (besides whitespace, control bytes and
/// non-ASCII, always escaped).
pub(crate) fn escape<'a>(text: &'a str, reserved: &[u8]) -> Cow<'a, str> {
    if text.is_empty() {
        return Cow::Borrowed("%");
    }
    let keeps =
        |byte: u8| (b'!'..=b'~').contains(&byte) && byte != b'%' && !reserved.contains(&byte);
    if text.bytes().all(keeps) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if keeps(byte) {
            escaped.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(escaped, "%{byte:02X}");
        }
    }
    Cow::Owned(escaped)
}

/// Escapes one token of a subject: also `.`, `*` and `>`.
pub(crate) fn escape_subject_token(text: &str) -> Cow<'_, str> {
    escape(text, SUBJECT_RESERVED)
}

/// Escapes a text header value.
pub(crate) fn escape_header_value(text: &str) -> Cow<'_, str> {
    escape(text, &[])
}

/// Why an escaped text does not unescape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnescapeError {
    /// A `%` not followed by two hex digits (and not a lone `%`).
    BadEscape,
    /// A byte that the escaping would have escaped appears raw.
    UnescapedByte,
    /// The unescaped bytes are not UTF-8.
    NotUtf8,
}

impl UnescapeError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            UnescapeError::BadEscape => "a `%` is not followed by two hex digits",
            UnescapeError::UnescapedByte => "holds a byte that should have been escaped",
            UnescapeError::NotUtf8 => "does not unescape to UTF-8 text",
        }
    }
}

/// Reverses [`escape`]; rejects anything [`escape`] cannot have written, so that every text
/// has exactly one written form.
pub(crate) fn unescape<'a>(
    written: &'a str,
    reserved: &[u8],
) -> Result<Cow<'a, str>, UnescapeError> {
    if written == "%" {
        return Ok(Cow::Borrowed(""));
    }
    let keeps =
        |byte: u8| (b'!'..=b'~').contains(&byte) && byte != b'%' && !reserved.contains(&byte);
    let bytes = written.as_bytes();
    if bytes.is_empty() {
        return Err(UnescapeError::BadEscape);
    }
    if bytes.iter().all(|&byte| keeps(byte)) {
        return Ok(Cow::Borrowed(written));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let high = bytes.get(index + 1).copied().and_then(hex_value);
            let low = bytes.get(index + 2).copied().and_then(hex_value);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(UnescapeError::BadEscape);
            };
            let decoded = high << 4 | low;
            if keeps(decoded) {
                // `escape` writes such a byte as itself: a second spelling is refused.
                return Err(UnescapeError::BadEscape);
            }
            out.push(decoded);
            index += 3;
        } else if keeps(byte) {
            out.push(byte);
            index += 1;
        } else {
            return Err(UnescapeError::UnescapedByte);
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| UnescapeError::NotUtf8)
}

/// The value of an upper-case hex digit.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Reverses [`escape_subject_token`].
pub(crate) fn unescape_subject_token(written: &str) -> Result<Cow<'_, str>, UnescapeError> {
    unescape(written, SUBJECT_RESERVED)
}

/// Reverses [`escape_header_value`].
pub(crate) fn unescape_header_value(written: &str) -> Result<Cow<'_, str>, UnescapeError> {
    unescape(written, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_kept_and_the_rest_is_escaped() {
        assert_eq!(escape_subject_token("order"), "order");
        assert_eq!(escape_subject_token("a.b*c>d e"), "a%2Eb%2Ac%3Ed%20e");
        assert_eq!(escape_subject_token("100%"), "100%25");
        assert_eq!(escape_subject_token(""), "%");
        assert_eq!(escape_subject_token("é"), "%C3%A9");
        assert_eq!(escape_header_value("a.b*c>d"), "a.b*c>d");
        assert_eq!(escape_header_value("line\r\nbreak\t"), "line%0D%0Abreak%09");
    }

    #[test]
    fn forms_escape_cannot_write_are_refused() {
        assert_eq!(unescape_subject_token(""), Err(UnescapeError::BadEscape));
        assert_eq!(unescape_subject_token("%2"), Err(UnescapeError::BadEscape));
        assert_eq!(unescape_subject_token("%2e"), Err(UnescapeError::BadEscape));
        assert_eq!(unescape_subject_token("%41"), Err(UnescapeError::BadEscape));
        assert_eq!(
            unescape_subject_token("a.b"),
            Err(UnescapeError::UnescapedByte)
        );
        assert_eq!(
            unescape_header_value("a b"),
            Err(UnescapeError::UnescapedByte)
        );
        assert_eq!(unescape_header_value("%FF"), Err(UnescapeError::NotUtf8));
    }

    proptest! {
        #[test]
        fn every_text_round_trips_and_escapes_to_a_valid_token(text in any::<String>()) {
            let token = escape_subject_token(&text);
            prop_assert!(!token.is_empty());
            prop_assert!(token.bytes().all(|b| (b'!'..=b'~').contains(&b) && !b".*>".contains(&b)));
            prop_assert_eq!(unescape_subject_token(&token).unwrap(), text.as_str());
            let value = escape_header_value(&text);
            prop_assert!(!value.is_empty());
            prop_assert!(value.bytes().all(|b| (b'!'..=b'~').contains(&b)));
            prop_assert_eq!(unescape_header_value(&value).unwrap(), text.as_str());
        }

        #[test]
        fn distinct_texts_give_distinct_tokens(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(escape_subject_token(&a), escape_subject_token(&b));
        }
    }
}
