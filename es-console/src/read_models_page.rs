//! `GET /read-models`: each read model's checkpoint, lag and state, the lag over time, and the
//! content as of a global position (a slider); `POST /read-models/{name}/resume` when enabled.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use es_core::projection::daemon::{ModelState, ReadModelStatus};
use es_core::{EventStore, GlobalPosition};
use maud::{html, Markup};

use crate::app::{ConsoleApp, ConsoleError, ReadModelContent};
use crate::html::{self, encode, pretty, thousands, Tab};
use crate::log_page::number;
use crate::{chart, AppState};

pub(crate) async fn page<A: ConsoleApp>(
    State(shared): AppState<A>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let app = &shared.app;
    let result = async {
        let Query(query) = query.map_err(|error| ConsoleError::BadRequest(error.body_text()))?;
        let position = number(&query, "position")?;
        let statuses = app.read_models().await?;
        let head = app.store().last_position().await?;
        let position = position.map(|p| GlobalPosition(p.min(head.get())));
        let contents = match position {
            Some(position) => Some(app.read_models_as_of(position).await?),
            None => None,
        };
        let series = shared.lag.series();
        let body = html! {
            h1 { "Read models" }
            p.summary { "Head of the log at position " (thousands(head.get())) "." }
            (status_table(&statuses, shared.options.allow_resume))
            @if statuses.is_empty() {
                p.empty { "This application has no read models." }
            }
            @if series.first().is_some_and(|(_, values)| values.len() > 1) {
                (chart::lines("lag-chart", "Lag (positions behind the head) over the last samples", &series))
            } @else if !statuses.is_empty() {
                p.note { "The lag chart fills in as the console samples the read models." }
            }
            (as_of(head, position, contents.as_deref()))
        };
        Ok::<_, ConsoleError>(html::page("Read models", app.title(), Tab::ReadModels, &body))
    }
    .await;
    match result {
        Ok(markup) => markup.into_response(),
        Err(error) => html::error_page(app.title(), &error),
    }
}

fn status_table(statuses: &[ReadModelStatus], allow_resume: bool) -> Markup {
    html! {
        table id="read-models" {
            thead {
                tr {
                    th { "Read model" } th { "Checkpoint" } th { "Lag" } th { "Events/s" }
                    th { "State" } th { "Recorded" }
                }
            }
            tbody {
                @for status in statuses {
                    tr class=(if status.state.is_parked() { "parked" } else { "" }) {
                        td { (status.name) }
                        td.num { (thousands(status.checkpoint.get())) }
                        td.num { (thousands(status.lag)) }
                        td.num { (format!("{:.0}", status.events_per_second)) }
                        td { (state_cell(status, allow_resume)) }
                        td { @if let Some(at) = status.updated_at { (at) } @else { "live" } }
                    }
                }
            }
        }
    }
}

fn state_cell(status: &ReadModelStatus, allow_resume: bool) -> Markup {
    match &status.state {
        ModelState::Parked(parked) => html! {
            strong { "parked" }
            p.error {
                "The " code { (parked.event_type) } " event at position "
                (parked.position) " failed " (parked.attempts) " time(s): " (parked.error)
            }
            @if allow_resume {
                form method="post" action={ "/read-models/" (encode(&status.name)) "/resume" } {
                    button type="submit" { "Resume" }
                }
            }
        },
        other => html! { (other.to_string()) },
    }
}

fn as_of(
    head: GlobalPosition,
    position: Option<GlobalPosition>,
    contents: Option<&[ReadModelContent]>,
) -> Markup {
    let shown = position.unwrap_or(head).get();
    html! {
        section.as-of {
            h2 { "Content as of a position" }
            form id="position-form" method="get" action="/read-models" {
                label for="position-slider" { "Position " output id="slider-position" { (shown) } " of " (head.get()) }
                input id="position-slider" type="range" name="position" min="0" max=(head.get()) value=(shown);
                button type="submit" { "Show" }
            }
            @match contents {
                Some(contents) => {
                    p.note { "Replayed from the log up to position " (shown) "." }
                    @for content in contents {
                        h3 { (content.name) " at position " (content.position.get()) }
                        pre.content { (pretty(&content.content)) }
                    }
                    @if contents.is_empty() { p.empty { "No read models." } }
                },
                None => p.note { "Pick a position and press Show: the read models are replayed from the log up to it." },
            }
        }
    }
}

/// Resumes a parked read model. Only routed when the console allows it; refuses requests a
/// page of another site made the browser send.
pub(crate) async fn resume<A: ConsoleApp>(
    State(shared): AppState<A>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let app = &shared.app;
    let result = async {
        let Path(name) =
            path.map_err(|_| ConsoleError::NotFound("no such read model".to_owned()))?;
        if !same_origin(&headers) {
            return Err(ConsoleError::Unsupported(
                "a resume must come from the console's own page",
            ));
        }
        let known = app.read_models().await?;
        if !known.iter().any(|status| status.name == name) {
            return Err(ConsoleError::NotFound(format!("no read model `{name}`")));
        }
        app.resume(&name).await?;
        tracing::info!(read_model = name, "resumed from the console");
        Ok(Redirect::to("/read-models").into_response())
    }
    .await;
    result.unwrap_or_else(|error| html::error_page(app.title(), &error))
}

/// Whether the request came from a page of this console: a browser names the page's origin in
/// `Origin` (and says `Sec-Fetch-Site`) on every form post; tools like curl send neither.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_the_consoles_own_pages_may_resume() {
        assert!(same_origin(&headers(&[])), "curl sends no origin");
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin(&headers(&[(
            "origin",
            "http://127.0.0.1:8080"
        )])));
    }
}
