//! `GET /live`: the log's new events as server-sent events, fed by a store subscription.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use es_core::{EventStore, GlobalPosition, RecordedEvent, StoreError, Subscribe, Subscription};
use futures_core::Stream;

use crate::app::{ConsoleApp, ConsoleError};
use crate::html;
use crate::log_page::filter_from;
use crate::AppState;

/// A reconnecting page gets at most this many events it missed: the page shows the newest
/// ones only, so older ones would be thrown away by the browser.
const MAX_BACKLOG: u64 = 200;

/// The SSE stream of the events after `?after=` (or the `Last-Event-ID` a reconnecting browser
/// sends) that pass `?aggregate_type=` / `?event_type=`.
pub(crate) async fn events<A: ConsoleApp>(
    axum::extract::State(shared): AppState<A>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let title = shared.app.title();
    let Ok(Query(query)) = query else {
        return html::error_page(title, &ConsoleError::BadRequest("bad query".to_owned()));
    };
    let resume_from = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .or(query.get("after").map(String::as_str));
    let Ok(after) = resume_from.map(str::parse::<u64>).transpose() else {
        let error = ConsoleError::BadRequest("`after` must be a global position".to_owned());
        return html::error_page(title, &error);
    };
    let store = shared.app.store();
    let head = match store.last_position().await {
        Ok(head) => head.get(),
        Err(error) => return html::error_page(title, &error.into()),
    };
    let after = after
        .unwrap_or(head)
        .min(head)
        .max(head.saturating_sub(MAX_BACKLOG));
    let filter = filter_from(&query);
    let subscription = store.subscribe(GlobalPosition(after), filter);
    Sse::new(LiveEvents {
        subscription,
        ended: false,
    })
    .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    .into_response()
}

/// A subscription turned into SSE events: one per event, `id` its position, `data` the row
/// the page shows as JSON. A failed read is sent as an `error` event and the subscription goes
/// on; a closed store ends the stream.
struct LiveEvents {
    subscription: Subscription,
    ended: bool,
}

impl Stream for LiveEvents {
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.subscription).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None | Some(Err(StoreError::Closed))) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(row(&event)))),
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "live log read failed; the subscription retries");
                Poll::Ready(Some(Ok(Event::default()
                    .event("error")
                    .data(error.to_string()))))
            }
        }
    }
}

/// The SSE event for one log row.
fn row(event: &RecordedEvent) -> Event {
    let data = serde_json::json!({
        "position": event.global_position.get(),
        "recorded_at": event.recorded_at.to_string(),
        "aggregate_type": event.stream.aggregate_type(),
        "aggregate_id": event.stream.aggregate_id(),
        "version": event.version.get(),
        "event_type": event.event_type,
        "href": html::stream_href(event.stream.aggregate_type(), event.stream.aggregate_id()),
    });
    Event::default()
        .id(event.global_position.get().to_string())
        .data(data.to_string())
}
