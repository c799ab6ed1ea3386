//! A web console for any `es-core` event store: the global log (live), streams with every
//! event decoded and the aggregate's state at any version or time, read models with their
//! checkpoint, lag and state, and their content at any position of the log.
//!
//! The store is the app's ([`ConsoleApp::Store`]: any [`EventStore`](es_core::EventStore) that
//! can [`Subscribe`](es_core::Subscribe)); what a store cannot know (how to decode a payload,
//! what an aggregate's state is, which read models exist) the app supplies through
//! [`ConsoleApp`].
//!
//! Pages are rendered on the server (`maud` templates, escaped by default), with one small
//! script for the live log and the sliders, and a strict content security policy: no inline
//! script runs, whatever an event holds. The console is read-only unless
//! [`ConsoleOptions::allow_resume`] is set.
//!
//! # Routes
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the global log, newest first; `?aggregate_type=`, `?event_type=`, `?before=` (paging), `?limit=` |
//! | `GET /live` | server-sent events: each new event of the log (same filters), from `?after=` or `Last-Event-ID` |
//! | `GET /streams` | find a stream; the streams of the latest events |
//! | `GET /streams/{type}/{id}` | a stream's events with envelope and decoded payload, its state `?version=` or `?at=` |
//! | `GET /streams/{type}/{id}/state` | the state as JSON, `?version=` or `?at=` (for the slider) |
//! | `GET /read-models` | checkpoint, lag and state of each read model, lag chart; content `?position=` |
//! | `POST /read-models/{name}/resume` | resume a parked read model (only with [`ConsoleOptions::allow_resume`]) |
//!
//! # Example
//!
//! ```no_run
//! use es_console::{Console, ConsoleApp, ConsoleOptions};
//! use es_core::InMemory;
//!
//! struct App(InMemory);
//!
//! impl ConsoleApp for App {
//!     type Store = InMemory;
//!     fn store(&self) -> &InMemory {
//!         &self.0
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("console on http://{}", listener.local_addr()?);
//! Console::new(App(InMemory::new()), ConsoleOptions::default())
//!     .serve(listener, std::future::pending())
//!     .await
//! # }
//! ```

mod app;
mod chart;
mod html;
mod lag;
mod live;
mod log;
mod log_page;
mod read_models_page;
mod stream_page;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use app::{trimmed, AggregateState, ConsoleApp, ConsoleError, ReadModelContent, StateAt};

use lag::LagHistory;

/// How the console runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConsoleOptions {
    /// Whether the one write action, resuming a parked read model, is offered. Off by default:
    /// the console is read-only.
    pub allow_resume: bool,
    /// How often the read models' lag is sampled for the lag chart.
    pub lag_sample_interval: Duration,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            allow_resume: false,
            lag_sample_interval: Duration::from_secs(2),
        }
    }
}

impl ConsoleOptions {
    /// Read-only options (the default).
    #[must_use]
    pub fn new() -> Self {
        ConsoleOptions::default()
    }

    /// Offers (or not) the resume action on parked read models.
    #[must_use]
    pub fn with_allow_resume(mut self, allow: bool) -> Self {
        self.allow_resume = allow;
        self
    }

    /// Samples the read models' lag every `interval` (at least 100 ms).
    #[must_use]
    pub fn with_lag_sample_interval(mut self, interval: Duration) -> Self {
        self.lag_sample_interval = interval.max(Duration::from_millis(100));
        self
    }
}

/// What every request handler sees.
pub(crate) struct Shared<A> {
    pub(crate) app: A,
    pub(crate) options: ConsoleOptions,
    pub(crate) lag: LagHistory,
}

/// The shared state of the router.
pub(crate) type AppState<A> = State<Arc<Shared<A>>>;

/// A web console over one app's store.
pub struct Console<A> {
    shared: Arc<Shared<A>>,
}

impl<A: ConsoleApp> Console<A> {
    /// A console showing `app`.
    pub fn new(app: A, options: ConsoleOptions) -> Self {
        Console {
            shared: Arc::new(Shared {
                app,
                options,
                lag: LagHistory::default(),
            }),
        }
    }

    /// The routes, for serving them yourself or nesting them in a larger router. The lag
    /// chart stays empty unless [`Console::sample_lag`] runs beside it.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/", get(log_page::page::<A>))
            .route("/live", get(live::events::<A>))
            .route("/streams", get(stream_page::find::<A>))
            .route(
                "/streams/{aggregate_type}/{aggregate_id}",
                get(stream_page::page::<A>),
            )
            .route(
                "/streams/{aggregate_type}/{aggregate_id}/state",
                get(stream_page::state::<A>),
            )
            .route("/read-models", get(read_models_page::page::<A>))
            .route("/assets/console.js", get(script))
            .route("/assets/console.css", get(style));
        if self.shared.options.allow_resume {
            router = router.route(
                "/read-models/{name}/resume",
                post(read_models_page::resume::<A>),
            );
        }
        router
            .fallback(not_found::<A>)
            .method_not_allowed_fallback(method_not_allowed::<A>)
            .layer(middleware::from_fn(security_headers))
            .with_state(Arc::clone(&self.shared))
    }

    /// Samples the read models' lag for the lag chart, every
    /// [`lag_sample_interval`](ConsoleOptions::lag_sample_interval), until dropped.
    pub fn sample_lag(&self) -> impl Future<Output = ()> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move {
            let mut ticks = tokio::time::interval(shared.options.lag_sample_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match shared.app.read_models().await {
                    Ok(statuses) => shared.lag.record(&statuses),
                    Err(error) => {
                        tracing::debug!(error = %error.chain(), "lag sample failed");
                    }
                }
            }
        }
    }

    /// Serves the console on `listener` (and samples the lag) until `shutdown` completes.
    ///
    /// # Errors
    /// When accepting connections fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sampler = tokio::spawn(self.sample_lag());
        let mut router = self.router();
        if listener.local_addr()?.ip().is_loopback() {
            router = router.layer(middleware::from_fn(loopback_hosts_only));
        }
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        sampler.abort();
        result
    }
}

/// The content security policy of every answer: scripts and styles only from the console's
/// own files, so markup that slipped into a page could not run anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: under it a browser sends `Origin: null` with the page's own form
        // posts, and the resume action could not tell them from another site's.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// On a loopback listener, answers only requests that name a loopback host: a page of another
/// site that resolves its own name to 127.0.0.1 (DNS rebinding) cannot read the console.
async fn loopback_hosts_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    if matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        next.run(request).await
    } else {
        (
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to 127.0.0.1, localhost and [::1]",
        )
            .into_response()
    }
}

async fn not_found<A: ConsoleApp>(State(shared): AppState<A>, request: Request) -> Response {
    let error = ConsoleError::NotFound(format!("no page at `{}`", request.uri().path()));
    html::error_page(shared.app.title(), &error)
}

async fn method_not_allowed<A: ConsoleApp>(State(shared): AppState<A>) -> Response {
    html::status_page(
        shared.app.title(),
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this address does not answer that method",
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/console.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/console.css"),
    )
}
