//! The page frame, error pages and the small text helpers every page uses.
//!
//! Pages are `maud` templates: every value spliced into one is HTML-escaped unless it is
//! wrapped in `PreEscaped`, which only the chart module uses, on SVG it builds from numbers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::app::ConsoleError;

/// Which tab of the navigation is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Log,
    Streams,
    ReadModels,
    None,
}

/// A full page: head, navigation, `body`.
pub(crate) fn page(title: &str, app_title: &str, tab: Tab, body: &Markup) -> Markup {
    let current = |t: Tab| if t == tab { "current" } else { "" };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (app_title) }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    span.brand { (app_title) }
                    nav {
                        a class=(current(Tab::Log)) href="/" { "Log" }
                        a class=(current(Tab::Streams)) href="/streams" { "Streams" }
                        a class=(current(Tab::ReadModels)) href="/read-models" { "Read models" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The error page for `error`, with its status code.
pub(crate) fn error_page(app_title: &str, error: &ConsoleError) -> Response {
    let (status, heading) = match error {
        ConsoleError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ConsoleError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
        ConsoleError::Unsupported(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        ConsoleError::Store(_) | ConsoleError::App(_) => {
            tracing::warn!(error = %error.chain(), "console page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something failed")
        }
    };
    status_page(app_title, status, heading, &error.chain())
}

/// A page saying `heading` and `message`, with `status`.
pub(crate) fn status_page(
    app_title: &str,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> Response {
    let body = html! {
        h1 { (heading) }
        p.error { (message) }
        p { a href="/" { "Back to the log" } }
    };
    (status, page(heading, app_title, Tab::None, &body)).into_response()
}

/// A JSON answer.
pub(crate) fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `text` percent-encoded for one path segment or query value: everything but the unreserved
/// characters of RFC 3986 is encoded.
pub(crate) fn encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The console path of a stream.
pub(crate) fn stream_href(aggregate_type: &str, aggregate_id: &str) -> String {
    format!(
        "/streams/{}/{}",
        encode(aggregate_type),
        encode(aggregate_id)
    )
}

/// `n` with thin groups of three digits (`1,234,567`).
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// JSON pretty-printed for a `<pre>` block.
pub(crate) fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved_and_encodes_the_rest() {
        assert_eq!(encode("load-1_a.b~c"), "load-1_a.b~c");
        assert_eq!(encode("a/b c?d&e#<>"), "a%2Fb%20c%3Fd%26e%23%3C%3E");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
