//! `GET /`: the global log, newest first, filtered, paged, and live on its first page.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use es_core::{EventFilter, GlobalPosition, RecordedEvent};
use maud::{html, Markup};

use crate::app::{ConsoleApp, ConsoleError};
use crate::html::{self, encode, stream_href, thousands, Tab};
use crate::log::{self, LogSlice};
use crate::{chart, AppState};

/// Rows per page unless `?limit=` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// The most rows one page shows.
const MAX_LIMIT: usize = 500;
/// How many of the latest positions the events-per-minute chart looks at.
const CHART_EVENTS: u64 = 5_000;
/// How many minutes the chart shows.
const CHART_MINUTES: usize = 30;

/// The filter of `?aggregate_type=` and `?event_type=` (empty values mean no filter).
pub(crate) fn filter_from(query: &HashMap<String, String>) -> EventFilter {
    let mut filter = EventFilter::all();
    if let Some(kind) = non_empty(query, "aggregate_type") {
        filter = filter.aggregate_type(kind);
    }
    if let Some(kind) = non_empty(query, "event_type") {
        filter = filter.event_type(kind);
    }
    filter
}

pub(crate) fn non_empty<'a>(query: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    query
        .get(key)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

/// A number parameter, or a 400 naming it.
pub(crate) fn number(
    query: &HashMap<String, String>,
    key: &str,
) -> Result<Option<u64>, ConsoleError> {
    non_empty(query, key)
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                ConsoleError::BadRequest(format!("`{key}` must be a whole number, not `{text}`"))
            })
        })
        .transpose()
}

pub(crate) async fn page<A: ConsoleApp>(
    State(shared): AppState<A>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let title = shared.app.title();
    match render(&shared.app, query).await {
        Ok(markup) => markup.into_response(),
        Err(error) => html::error_page(title, &error),
    }
}

async fn render<A: ConsoleApp>(
    app: &A,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Markup, ConsoleError> {
    let Query(query) = query.map_err(|error| ConsoleError::BadRequest(error.body_text()))?;
    let before = number(&query, "before")?.map(GlobalPosition);
    let limit = number(&query, "limit")?.map_or(DEFAULT_LIMIT, |n| {
        usize::try_from(n).unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT)
    });
    let aggregate_type = non_empty(&query, "aggregate_type").unwrap_or("");
    let event_type = non_empty(&query, "event_type").unwrap_or("");
    let filter = filter_from(&query);
    let store = app.store();
    let slice = log::newest_first(store, before, &filter, limit).await?;
    let live = before.is_none();
    let recent = if live {
        log::recent(store, slice.head, CHART_EVENTS).await?
    } else {
        Vec::new()
    };
    let filters = format!(
        "aggregate_type={}&event_type={}&limit={limit}",
        encode(aggregate_type),
        encode(event_type)
    );
    let body = html! {
        h1 { "Global log" }
        p.summary {
            "Head of the log at position " strong id="head" { (thousands(slice.head.get())) } ". "
            @if live {
                span.live.off id="live-status" { "connecting…" }
            } @else {
                "Showing events before position " (before.map_or(0, GlobalPosition::get)) ". "
                a href={ "/?" (filters) } { "Newest" }
            }
        }
        form.filters method="get" action="/" {
            label { "Aggregate type " input name="aggregate_type" value=(aggregate_type); }
            label { "Event type " input name="event_type" value=(event_type); }
            label { "Rows " input name="limit" type="number" min="1" max=(MAX_LIMIT) value=(limit); }
            button type="submit" { "Filter" }
        }
        @if live && !recent.is_empty() {
            (events_per_minute(&recent))
        }
        (table(&slice, live, aggregate_type, event_type, limit))
        p.paging {
            @if let Some(older) = slice.older {
                a id="older" href={ "/?" (filters) "&before=" (older.get()) } { "Older events →" }
            } @else {
                "Start of the log."
            }
        }
        @if !filter.is_all() && slice.events.len() < limit && slice.older.is_some() {
            p.note {
                "The filter matched fewer events than a page in the "
                (thousands(log::SCAN_BUDGET)) " positions looked at; older events may match."
            }
        }
    };
    Ok(html::page("Log", app.title(), Tab::Log, &body))
}

fn table(
    slice: &LogSlice,
    live: bool,
    aggregate_type: &str,
    event_type: &str,
    limit: usize,
) -> Markup {
    html! {
        table id="log" data-live=[live.then_some("true")]
            data-after=(slice.head.get()) data-limit=(limit)
            data-aggregate-type=(aggregate_type) data-event-type=(event_type) {
            thead {
                tr { th { "Position" } th { "Recorded" } th { "Stream" } th { "Version" } th { "Event type" } }
            }
            tbody {
                @for event in &slice.events { (row(event)) }
            }
        }
        @if slice.events.is_empty() {
            p.empty { "No events." }
        }
    }
}

fn row(event: &RecordedEvent) -> Markup {
    let stream = &event.stream;
    html! {
        tr {
            td.num { (event.global_position.get()) }
            td { (event.recorded_at) }
            td { a href=(stream_href(stream.aggregate_type(), stream.aggregate_id())) { (stream) } }
            td.num { (event.version.get()) }
            td { (event.event_type) }
        }
    }
}

/// Events per minute over the latest positions, the last minutes up to the newest event.
fn events_per_minute(recent: &[RecordedEvent]) -> Markup {
    const MINUTE: i64 = 60_000_000;
    let Some(newest) = recent.last() else {
        return html! {};
    };
    let newest_minute = newest.recorded_at.as_micros().div_euclid(MINUTE);
    let mut counts = vec![0_u64; CHART_MINUTES];
    for event in recent {
        let minute = event.recorded_at.as_micros().div_euclid(MINUTE);
        let age = newest_minute - minute;
        if let Ok(age) = usize::try_from(age) {
            if age < CHART_MINUTES {
                counts[CHART_MINUTES - 1 - age] += 1;
            }
        }
    }
    let caption = format!(
        "Events per minute, the last {CHART_MINUTES} minutes up to the newest event (of the latest {} events)",
        thousands(CHART_EVENTS)
    );
    chart::bars("events-per-minute", &caption, &counts)
}
