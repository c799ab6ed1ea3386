//! The projection daemon's `tracing` spans, read back with a small subscriber installed for
//! this test binary: one `daemon.batch` span per delivered batch (first, last, events) and one
//! `daemon.apply` span per read model inside it (projection, first, last, seen, applied); and
//! the in-memory store's `append` span with what the append wrote (version, position).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use es_core::projection::daemon::ProjectionDaemon;
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata, NewEvent, Projection,
    RecordedEvent, StreamId,
};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};

const WAIT: Duration = Duration::from_secs(90);

/// A span: its name and its fields as text.
#[derive(Clone, Debug)]
struct SpanRecord {
    name: String,
    metadata: &'static tracing::Metadata<'static>,
    fields: HashMap<String, String>,
}

impl SpanRecord {
    fn number(&self, field: &str) -> u64 {
        self.fields
            .get(field)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("span `{}` has no number `{field}`: {self:?}", self.name))
    }
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Keeps every span the daemon opens, with the fields recorded on it.
#[derive(Clone, Default)]
struct Spans {
    next: Arc<AtomicU64>,
    spans: Arc<Mutex<HashMap<u64, SpanRecord>>>,
}

impl Spans {
    fn named(&self, name: &str) -> Vec<SpanRecord> {
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<(u64, SpanRecord)> = spans
            .iter()
            .filter(|(_, span)| span.name == name)
            .map(|(id, span)| (*id, span.clone()))
            .collect();
        found.sort_by_key(|(id, _)| *id);
        found.into_iter().map(|(_, span)| span).collect()
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut record = SpanRecord {
            name: span.metadata().name().to_owned(),
            metadata: span.metadata(),
            fields: HashMap::new(),
        };
        span.record(&mut Fields(&mut record.fields));
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, record);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = spans.get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, span: &Id) {
        ENTERED.with_borrow_mut(|entered| entered.push(span.clone()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with_borrow_mut(|entered| {
            if let Some(at) = entered.iter().rposition(|entered| entered == span) {
                entered.remove(at);
            }
        });
    }

    /// What `Span::current` answers: the span this thread entered last (the store records
    /// what an append wrote on it).
    fn current_span(&self) -> tracing_core::span::Current {
        let Some(id) = ENTERED.with_borrow(|entered| entered.last().cloned()) else {
            return tracing_core::span::Current::none();
        };
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        match spans.get(&id.into_u64()) {
            Some(span) => tracing_core::span::Current::new(id, span.metadata),
            None => tracing_core::span::Current::none(),
        }
    }
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: std::cell::RefCell<Vec<Id>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Applies the events of `counter` streams only.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counters(u64);

impl Projection for Counters {
    const NAME: &'static str = "counters";
    type Error = std::convert::Infallible;

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream.aggregate_type() == "counter"
    }

    fn apply(&mut self, _: &RecordedEvent) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "Happened".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"null".to_vec(),
        metadata: Metadata::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_and_each_read_models_apply_of_it_has_a_span_with_positions_and_counts() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(spans.clone()).expect("the only subscriber");

    let store = InMemory::new();
    // 6 events for `counter` streams and 4 for others: seen 10, applied 6.
    store
        .append(
            &StreamId::new("counter", "a"),
            ExpectedVersion::Any,
            (0..6).map(|_| event()).collect(),
        )
        .await
        .unwrap();
    let last = store
        .append(
            &StreamId::new("other", "b"),
            ExpectedVersion::Any,
            (0..4).map(|_| event()).collect(),
        )
        .await
        .unwrap()
        .position;
    let daemon = ProjectionDaemon::builder()
        .with(Counters::default())
        .unwrap()
        .start(store.clone())
        .await
        .unwrap();
    daemon.wait_for(last, WAIT).await.unwrap();
    daemon.shutdown().await.unwrap();

    let batches = spans.named("daemon.batch");
    assert!(!batches.is_empty());
    let mut expected_first = 1;
    for batch in &batches {
        assert_eq!(batch.number("first"), expected_first, "{batch:?}");
        assert_eq!(
            batch.number("last") - batch.number("first") + 1,
            batch.number("events"),
            "{batch:?}"
        );
        expected_first = batch.number("last") + 1;
    }
    assert_eq!(expected_first, last.get() + 1, "the batches cover the log");

    let applies = spans.named("daemon.apply");
    assert_eq!(
        applies.len(),
        batches.len(),
        "one apply span per batch per read model"
    );
    for (apply, batch) in applies.iter().zip(&batches) {
        assert_eq!(apply.fields["projection"], "counters");
        assert_eq!(apply.number("first"), batch.number("first"));
        assert_eq!(apply.number("last"), batch.number("last"));
    }
    let seen_total: u64 = applies.iter().map(|apply| apply.number("seen")).sum();
    let handled_total: u64 = applies.iter().map(|apply| apply.number("applied")).sum();
    assert_eq!(seen_total, 10);
    assert_eq!(handled_total, 6);
    assert_eq!(last, GlobalPosition(10));

    // The store's own `append` spans carry what each append wrote (recorded once the append
    // is done, only when a subscriber takes `debug` spans, as this one does).
    let appends = spans.named("append");
    let written: Vec<(&str, u64, u64, u64)> = appends
        .iter()
        .map(|append| {
            (
                append.fields["stream"].as_str(),
                append.number("events"),
                append.number("version"),
                append.number("position"),
            )
        })
        .collect();
    assert_eq!(written, [("counter/a", 6, 6, 6), ("other/b", 4, 4, 10)]);
}
