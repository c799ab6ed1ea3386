//! What an application tells the console: its store, how to read its payloads, its aggregates'
//! states and its read models.

use std::future::Future;

use es_core::projection::daemon::ReadModelStatus;
use es_core::{
    CodecId, EventStore, GlobalPosition, RecordedEvent, StoreError, StreamId, Subscribe, Timestamp,
    Version,
};

/// The application side of a console: the store it shows and the domain knowledge a store
/// alone does not have (event payloads are bytes; states and read models are the app's types).
///
/// Only [`store`](ConsoleApp::store) is required. The defaults show JSON payloads as they are
/// stored, no aggregate states and no read models.
pub trait ConsoleApp: Send + Sync + 'static {
    /// The event store shown.
    type Store: EventStore + Subscribe + Clone + 'static;

    /// The store.
    fn store(&self) -> &Self::Store;

    /// The console's heading (for example the application's name).
    #[allow(clippy::unnecessary_literal_bound)] // an app may return a name it owns
    fn title(&self) -> &str {
        "Event store"
    }

    /// The payload of `event` as readable JSON, whatever its codec.
    ///
    /// The default parses JSON-encoded payloads as they are and reports other codecs as not
    /// decodable: an app with binary payloads decodes them through its event types.
    ///
    /// # Errors
    /// Why the payload cannot be shown (it is then shown as that error, with its size).
    fn decode_payload(&self, event: &RecordedEvent) -> Result<serde_json::Value, ConsoleError> {
        match event.codec {
            CodecId::Json => serde_json::from_slice(&event.payload)
                .map_err(|error| ConsoleError::app(format!("invalid JSON payload: {error}"))),
            codec => Err(ConsoleError::app(format!(
                "no decoder for `{}` payloads of `{}`",
                codec.name(),
                event.event_type
            ))),
        }
    }

    /// The state of the aggregate whose events are `stream`, at `at`, as JSON; `None` when the
    /// app has no aggregate of that type.
    ///
    /// # Errors
    /// [`ConsoleError::NotFound`] for a version past the stream's end; the store's errors.
    fn aggregate_state(
        &self,
        stream: &StreamId,
        at: StateAt,
    ) -> impl Future<Output = Result<Option<AggregateState>, ConsoleError>> + Send {
        let _ = (stream, at);
        async { Ok(None) }
    }

    /// Each read model's checkpoint, lag and state (parked ones with their error).
    fn read_models(
        &self,
    ) -> impl Future<Output = Result<Vec<ReadModelStatus>, ConsoleError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Each read model's content as it was right after the global position `position`.
    fn read_models_as_of(
        &self,
        position: GlobalPosition,
    ) -> impl Future<Output = Result<Vec<ReadModelContent>, ConsoleError>> + Send {
        let _ = position;
        async { Ok(Vec::new()) }
    }

    /// Resumes the parked read model `name` (only called when the console was started with
    /// [`ConsoleOptions::allow_resume`](crate::ConsoleOptions::allow_resume)).
    ///
    /// # Errors
    /// [`ConsoleError::Unsupported`] by default; the app's own errors (not parked, unknown).
    fn resume(&self, name: &str) -> impl Future<Output = Result<(), ConsoleError>> + Send {
        let _ = name;
        async {
            Err(ConsoleError::Unsupported(
                "this application cannot resume read models from the console",
            ))
        }
    }
}

/// Which state of an aggregate to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateAt {
    /// After every event of the stream.
    Latest,
    /// Right after this version (`Version::INITIAL`: before the first event).
    Version(Version),
    /// As it was at this time: every event recorded at or before it applied.
    Time(Timestamp),
}

/// An aggregate's state at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateState {
    /// The version of the last event applied.
    pub version: Version,
    /// The state, as JSON.
    pub state: serde_json::Value,
}

/// One read model's content at a point of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadModelContent {
    /// The read model's name.
    pub name: String,
    /// The last position applied.
    pub position: GlobalPosition,
    /// Its content, as JSON (an app may trim large read models).
    pub content: serde_json::Value,
}

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// What was asked for does not exist (a 404 page).
    #[error("{0}")]
    NotFound(String),
    /// A parameter is not valid (a 400 page).
    #[error("{0}")]
    BadRequest(String),
    /// The action is not available (a 403 page).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The application failed.
    #[error(transparent)]
    App(Box<dyn std::error::Error + Send + Sync>),
}

impl ConsoleError {
    /// An application error wrapping `error` (a message or any error type).
    pub fn app(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ConsoleError::App(error.into())
    }

    /// The message with every source, as one line.
    #[must_use]
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// `value` with every object and array of more than `max_entries` entries cut to its first
/// `max_entries` (an object gets a `"…"` key, an array a last string, saying how many more),
/// so a large read model shows its shape without a page of megabytes.
#[must_use]
pub fn trimmed(value: serde_json::Value, max_entries: usize) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let total = map.len();
            let mut out: serde_json::Map<String, Value> = map
                .into_iter()
                .take(max_entries)
                .map(|(key, value)| (key, trimmed(value, max_entries)))
                .collect();
            if total > max_entries {
                out.insert(
                    "…".to_owned(),
                    Value::String(format!("{} more", total - max_entries)),
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let total = items.len();
            let mut out: Vec<Value> = items
                .into_iter()
                .take(max_entries)
                .map(|value| trimmed(value, max_entries))
                .collect();
            if total > max_entries {
                out.push(Value::String(format!("… {} more", total - max_entries)));
            }
            Value::Array(out)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn trimmed_cuts_large_maps_and_lists_at_every_depth() {
        let value = json!({"a": [1, 2, 3, 4], "b": {"x": 1, "y": 2, "z": 3}, "c": 1, "d": 2});
        let cut = trimmed(value, 3);
        assert_eq!(cut["a"], json!([1, 2, 3, "… 1 more"]));
        assert_eq!(cut["b"], json!({"x": 1, "y": 2, "z": 3}));
        assert_eq!(cut["…"], json!("1 more"));
        assert!(cut.get("d").is_none());
        assert_eq!(trimmed(json!("text"), 0), json!("text"));
    }

    #[test]
    fn the_default_decoder_shows_json_and_refuses_other_codecs() {
        struct App(es_core::InMemory);
        impl ConsoleApp for App {
            type Store = es_core::InMemory;
            fn store(&self) -> &es_core::InMemory {
                &self.0
            }
        }
        let app = App(es_core::InMemory::new());
        let mut event = RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new("t", "1"),
            version: Version(1),
            global_position: GlobalPosition(1),
            recorded_at: Timestamp::EPOCH,
            event_type: "E".into(),
            schema_version: 1,
            codec: CodecId::Json,
            metadata: es_core::Metadata::default().into(),
            payload: br#"{"a":"<b>"}"#.to_vec().into(),
        };
        assert_eq!(
            app.decode_payload(&event).expect("json"),
            json!({"a": "<b>"})
        );
        event.payload = b"{".to_vec().into();
        assert!(app.decode_payload(&event).is_err());
        event.codec = CodecId::Postcard;
        let error = app.decode_payload(&event).expect_err("postcard");
        assert!(error.to_string().contains("postcard"), "{error}");
    }
}
