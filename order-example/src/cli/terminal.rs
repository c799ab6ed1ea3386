//! Output that cannot drive the terminal: control characters from input or stored data (an
//! order id with an escape sequence, a cancel reason with a carriage return) are written as
//! visible escapes, never raw.

use std::fmt::Write as _;
use std::io::{self, Write};

/// How a character that must not reach the terminal is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Text for people: `\u{1b}`, `\r`, `\t` (Rust's spelling).
    Text,
    /// Inside JSON strings: `\u001b`, so the output stays valid JSON. (`serde_json` already
    /// escapes U+0000 to U+001F; this also catches DEL, the C1 controls and bidi overrides.)
    Json,
}

/// Whether `c` must not be written raw: control characters (C0 but the newline, DEL, C1) and
/// the invisible bidirectional formatting characters that can make text display as
/// something else.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char, style: Style) {
    match (style, c) {
        (Style::Text, '\t') => out.push_str("\\t"),
        (Style::Text, '\r') => out.push_str("\\r"),
        (Style::Text, '\n') => out.push_str("\\n"),
        (Style::Text, c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        (Style::Json, c) => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
    }
}

/// `text` with every unsafe character escaped (in `Text` style), newlines included: for a
/// one-line message such as an error.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) || c == '\n' {
            push_escaped(&mut out, c, Style::Text);
        } else {
            out.push(c);
        }
    }
    out
}

/// A writer that escapes unsafe characters on their way to `inner` (UTF-8 split across two
/// writes is put back together; bytes that are not UTF-8 are escaped as `\x..`).
pub struct Escaped<W: Write> {
    inner: W,
    style: Style,
    /// The start of a UTF-8 character whose remaining bytes have not been written yet.
    pending: Vec<u8>,
}

impl<W: Write> Escaped<W> {
    /// Escapes what is written to `inner` in `style`.
    pub fn new(inner: W, style: Style) -> Self {
        Escaped {
            inner,
            style,
            pending: Vec::new(),
        }
    }

    fn write_text(&mut self, text: &str) -> io::Result<()> {
        if !text.chars().any(is_unsafe) {
            return self.inner.write_all(text.as_bytes());
        }
        let mut escaped = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if is_unsafe(c) {
                push_escaped(&mut escaped, c, self.style);
            } else {
                escaped.push(c);
            }
        }
        self.inner.write_all(escaped.as_bytes())
    }
}

/// Standard output for `--json` (`json`) or text, escaped.
pub fn stdout(json: bool) -> Escaped<io::Stdout> {
    Escaped::new(io::stdout(), if json { Style::Json } else { Style::Text })
}

impl<W: Write> Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(buf);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    self.write_text(text)?;
                    rest = &[];
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    // `valid` is UTF-8 by the error's own account.
                    self.write_text(std::str::from_utf8(valid).unwrap_or_default())?;
                    if let Some(length) = error.error_len() {
                        let mut escaped = String::new();
                        for byte in &after[..length] {
                            let _ = write!(escaped, "\\x{byte:02x}");
                        }
                        self.inner.write_all(escaped.as_bytes())?;
                        rest = &after[length..];
                    } else {
                        // An incomplete character at the end: wait for the rest.
                        self.pending = after.to_vec();
                        rest = &[];
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for Escaped<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let mut escaped = String::new();
            for byte in &self.pending {
                let _ = write!(escaped, "\\x{byte:02x}");
            }
            let _ = self.inner.write_all(escaped.as_bytes());
        }
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(style: Style, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut escaped = Escaped::new(&mut out, style);
            for chunk in chunks {
                escaped.write_all(chunk).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn control_characters_become_visible_escapes_and_the_rest_is_untouched() {
        let text = "order-\u{1b}[31mred\u{7}\r\tcafé ✓\n\u{9b}2J\u{202e}gnp.exe\u{7f}";
        assert_eq!(
            written(Style::Text, &[text.as_bytes()]),
            "order-\\u{1b}[31mred\\u{7}\\r\\tcafé ✓\n\\u{9b}2J\\u{202e}gnp.exe\\u{7f}"
        );
        assert_eq!(
            written(
                Style::Json,
                &[br#"{"id":"a"#, "\u{9b}\u{202e}b\"}".as_bytes()]
            ),
            "{\"id\":\"a\\u009b\\u202eb\"}"
        );
    }

    #[test]
    fn a_character_split_across_writes_is_joined_and_invalid_bytes_are_escaped() {
        let e_acute = "é".as_bytes();
        assert_eq!(
            written(Style::Text, &[b"caf", &e_acute[..1], &e_acute[1..], b"!"]),
            "café!"
        );
        assert_eq!(written(Style::Text, &[b"a\xffb"]), "a\\xffb");
        assert_eq!(written(Style::Text, &[b"cut\xc3"]), "cut\\xc3");
    }

    #[test]
    fn one_line_escapes_newlines_too() {
        assert_eq!(one_line("no order `a\nb\u{1b}`"), "no order `a\\nb\\u{1b}`");
    }
}
