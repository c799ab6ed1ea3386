//! `GET /streams/{type}/{id}`: one stream's events, envelope and decoded payload, and the
//! aggregate's state at a version (a slider) or as of a time; `GET /streams` to find one.

use std::collections::{BTreeSet, HashMap};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use es_core::{
    EventStore, GlobalPosition, RecordedEvent, StoreError, StreamId, Timestamp, Version,
    VersionRange,
};
use maud::{html, Markup};
use serde_json::json;

use crate::app::{AggregateState, ConsoleApp, ConsoleError, StateAt};
use crate::html::{self, pretty, stream_href, Tab};
use crate::log_page::{non_empty, number};
use crate::AppState;

/// Events per page of a stream.
const PAGE: u64 = 100;
/// How many of the latest events `/streams` lists the streams of.
const RECENT: usize = 200;

type PathParts = Result<Path<(String, String)>, PathRejection>;
type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn parts(
    path: PathParts,
    query: QueryMap,
) -> Result<(StreamId, HashMap<String, String>), ConsoleError> {
    let Path((aggregate_type, aggregate_id)) =
        path.map_err(|_| ConsoleError::NotFound("no such stream".to_owned()))?;
    let Query(query) = query.map_err(|error| ConsoleError::BadRequest(error.body_text()))?;
    Ok((StreamId::new(aggregate_type, aggregate_id), query))
}

/// The stream page.
pub(crate) async fn page<A: ConsoleApp>(
    State(shared): AppState<A>,
    path: PathParts,
    query: QueryMap,
) -> Response {
    let title = shared.app.title();
    let result = match parts(path, query) {
        Ok((stream, query)) => render(&shared.app, &stream, &query).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(markup) => markup.into_response(),
        Err(error) => html::error_page(title, &error),
    }
}

/// The state as JSON, for the slider: `{"version": n, "state": "pretty JSON"}`.
pub(crate) async fn state<A: ConsoleApp>(
    State(shared): AppState<A>,
    path: PathParts,
    query: QueryMap,
) -> Response {
    let result = match parts(path, query) {
        Ok((stream, query)) => state_json(&shared.app, &stream, &query).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(value) => html::json(&value),
        Err(error) => {
            let status = match error {
                ConsoleError::NotFound(_) => axum::http::StatusCode::NOT_FOUND,
                ConsoleError::BadRequest(_) => axum::http::StatusCode::BAD_REQUEST,
                _ => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, html::json(&json!({ "error": error.chain() }))).into_response()
        }
    }
}

async fn state_json<A: ConsoleApp>(
    app: &A,
    stream: &StreamId,
    query: &HashMap<String, String>,
) -> Result<serde_json::Value, ConsoleError> {
    let last = last_version(app.store(), stream).await?;
    if last == 0 {
        return Err(no_stream(stream));
    }
    let at = state_at(query, last)?;
    let state = app.aggregate_state(stream, at).await?;
    Ok(match state {
        Some(state) => json!({ "version": state.version.get(), "state": pretty(&state.state) }),
        None => {
            json!({ "version": null, "state": "(no state: the app has no aggregate of this type)" })
        }
    })
}

fn no_stream(stream: &StreamId) -> ConsoleError {
    ConsoleError::NotFound(format!("stream `{stream}` has no events"))
}

/// Which state `?version=` or `?at=` asks for.
fn state_at(query: &HashMap<String, String>, last: u64) -> Result<StateAt, ConsoleError> {
    if let Some(version) = number(query, "version")? {
        if version > last {
            return Err(ConsoleError::BadRequest(format!(
                "version {version} is past the stream's last version {last}"
            )));
        }
        return Ok(StateAt::Version(Version(version)));
    }
    if let Some(at) = non_empty(query, "at") {
        let at = at
            .parse::<Timestamp>()
            .map_err(|error| ConsoleError::BadRequest(error.to_string()))?;
        return Ok(StateAt::Time(at));
    }
    Ok(StateAt::Latest)
}

/// Whether the stream has an event at `version`.
async fn has_version<S: EventStore>(
    store: &S,
    stream: &StreamId,
    version: u64,
) -> Result<bool, StoreError> {
    let range = VersionRange {
        from: Version(version),
        to: Version(version),
    };
    Ok(!store.read_stream(stream, range).await?.is_empty())
}

/// The stream's last version (0: no events), found with point reads (versions are
/// contiguous): doubling, then bisecting, so a stream of a million events costs about 40
/// reads of one event, never a read of the whole stream.
pub(crate) async fn last_version<S: EventStore>(
    store: &S,
    stream: &StreamId,
) -> Result<u64, StoreError> {
    if !has_version(store, stream, 1).await? {
        return Ok(0);
    }
    let (mut present, mut absent) = (1_u64, 2_u64);
    while has_version(store, stream, absent).await? {
        present = absent;
        absent = absent.saturating_mul(2);
        if absent == u64::MAX {
            break;
        }
    }
    while absent - present > 1 {
        let middle = present + (absent - present) / 2;
        if has_version(store, stream, middle).await? {
            present = middle;
        } else {
            absent = middle;
        }
    }
    Ok(present)
}

async fn render<A: ConsoleApp>(
    app: &A,
    stream: &StreamId,
    query: &HashMap<String, String>,
) -> Result<Markup, ConsoleError> {
    let store = app.store();
    let last = last_version(store, stream).await?;
    if last == 0 {
        return Err(no_stream(stream));
    }
    let from = number(query, "from")?.unwrap_or(1).clamp(1, last);
    let to = from.saturating_add(PAGE - 1).min(last);
    let range = VersionRange {
        from: Version(from),
        to: Version(to),
    };
    let events = store.read_stream(stream, range).await?;
    let at = state_at(query, last)?;
    // A state that cannot be loaded (an event that does not decode) is shown as its error;
    // the events are still worth seeing.
    let state = app.aggregate_state(stream, at).await;
    let href = stream_href(stream.aggregate_type(), stream.aggregate_id());
    let body = html! {
        h1 { "Stream " code { (stream) } }
        p.summary { (last) " events." }
        (state_panel(stream, &href, last, at, &state))
        h2 { "Events " (from) "–" (to) }
        (pager(&href, from, to, last))
        @for event in &events { (event_card(app, event)) }
        (pager(&href, from, to, last))
    };
    Ok(html::page(
        &stream.to_string(),
        app.title(),
        Tab::Streams,
        &body,
    ))
}

fn pager(href: &str, from: u64, to: u64, last: u64) -> Markup {
    html! {
        p.paging {
            @if from > 1 {
                a href={ (href) "?from=" (from.saturating_sub(PAGE).max(1)) } { "← Earlier" } " "
            }
            @if to < last {
                a href={ (href) "?from=" (to + 1) } { "Later →" }
            }
        }
    }
}

fn state_panel(
    stream: &StreamId,
    href: &str,
    last: u64,
    at: StateAt,
    state: &Result<Option<AggregateState>, ConsoleError>,
) -> Markup {
    let shown = match state {
        Ok(Some(state)) => state.version.get(),
        _ => last,
    };
    let heading = match at {
        StateAt::Latest => "State now".to_owned(),
        StateAt::Version(version) => format!("State after version {version}"),
        StateAt::Time(time) => format!("State as of {time}"),
    };
    let at_text = match at {
        StateAt::Time(time) => time.to_string(),
        _ => String::new(),
    };
    html! {
        section.state {
            h2 id="state-heading" { (heading) }
            @if let Ok(None) = state {
                p { "The app has no aggregate of type " code { (stream.aggregate_type()) } "." }
            } @else {
                form.slider {
                    label for="version-slider" { "Version " output id="slider-version" { (shown) } " of " (last) }
                    input id="version-slider" type="range" min="0" max=(last) value=(shown)
                        data-state-url={ (href) "/state" };
                }
                form.as-of method="get" action=(href) {
                    label { "As of a time " input name="at" value=(at_text) placeholder="2026-01-31T12:00:00Z"; }
                    button type="submit" { "Show" }
                    " " a href=(href) { "Now" }
                }
                @match state {
                    Ok(Some(state)) => pre id="state" { (pretty(&state.state)) },
                    Err(error) => pre.error id="state" { "The state cannot be shown: " (error.chain()) },
                    Ok(None) => {},
                }
            }
        }
    }
}

fn event_card<A: ConsoleApp>(app: &A, event: &RecordedEvent) -> Markup {
    let metadata = &event.metadata;
    html! {
        article.event id={ "v" (event.version.get()) } {
            header {
                span.version { "v" (event.version.get()) }
                " " strong.type { (event.event_type) }
                " " span.position { "position " (event.global_position.get()) }
                " " time { (event.recorded_at) }
            }
            dl.envelope {
                dt { "Schema version" } dd { (event.schema_version) }
                dt { "Codec" } dd { (event.codec.name()) }
                dt { "Event id" } dd { code { (event.event_id) } }
                @if let Some(id) = metadata.correlation_id {
                    dt { "Correlation id" } dd { code { (id) } }
                }
                @if let Some(id) = metadata.causation_id {
                    dt { "Causation id" } dd { code { (id) } }
                }
                @for (key, value) in &metadata.extra {
                    dt { (key) } dd { (value) }
                }
            }
            @match app.decode_payload(event) {
                Ok(payload) => pre.payload { (pretty(&payload)) },
                Err(error) => p.error.payload {
                    "Payload of " (event.payload.len()) " bytes not shown: " (error.chain())
                },
            }
        }
    }
}

/// `/streams`: go to a stream by type and id, or pick one of the latest events' streams.
pub(crate) async fn find<A: ConsoleApp>(State(shared): AppState<A>, query: QueryMap) -> Response {
    let app = &shared.app;
    let result = async {
        let Query(query) = query.map_err(|error| ConsoleError::BadRequest(error.body_text()))?;
        if let (Some(kind), Some(id)) = (
            non_empty(&query, "aggregate_type"),
            non_empty(&query, "aggregate_id"),
        ) {
            return Ok(Redirect::to(&stream_href(kind, id)).into_response());
        }
        let store = app.store();
        let head = store.last_position().await?;
        let from = head.get().saturating_sub(RECENT as u64);
        let recent = store.read_all(GlobalPosition(from), RECENT).await?;
        let streams: BTreeSet<&StreamId> = recent.iter().map(|event| &event.stream).collect();
        let body = html! {
            h1 { "Streams" }
            form.filters method="get" action="/streams" {
                label { "Aggregate type " input name="aggregate_type" required; }
                label { "Id " input name="aggregate_id" required; }
                button type="submit" { "Open" }
            }
            h2 { "Streams of the latest " (recent.len()) " events" }
            ul.streams {
                @for stream in &streams {
                    li { a href=(stream_href(stream.aggregate_type(), stream.aggregate_id())) { (stream) } }
                }
            }
            @if streams.is_empty() { p.empty { "No events yet." } }
            p { a href="/" { "Back to the log" } }
        };
        Ok::<_, ConsoleError>(html::page("Streams", app.title(), Tab::Streams, &body).into_response())
    }
    .await;
    result.unwrap_or_else(|error| html::error_page(app.title(), &error))
}
