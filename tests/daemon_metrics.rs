//! The projection daemon's counters and gauges through the `metrics` facade (es-core feature
//! `metrics`), read back with a small recorder installed for this test binary: events seen per
//! read model, apply failures counted per attempt, the parked gauge, checkpoints and lag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use es_core::projection::daemon::{ModelState, ProjectionDaemon};
use es_core::{
    CodecId, EventStore, ExpectedVersion, GlobalPosition, InMemory, Metadata, NewEvent, Projection,
    RecordedEvent, RetryPolicy, StreamId,
};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Recorder, SharedString, Unit,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(90);

/// One metric's value: a counter's total, or a gauge's value as f64 bits.
#[derive(Default)]
struct Value(AtomicU64);

impl CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::SeqCst);
    }
}

impl GaugeFn for Value {
    fn increment(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) + value);
    }

    fn decrement(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) - value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }
}

/// Keeps every counter and gauge by `name{projection}`.
#[derive(Clone, Default)]
struct TestRecorder {
    values: Arc<Mutex<HashMap<String, Arc<Value>>>>,
}

impl TestRecorder {
    fn value(&self, key: &Key) -> Arc<Value> {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(values.entry(name).or_default())
    }

    fn counter(&self, name: &str, projection: &str) -> u64 {
        let key = format!("{name}{{projection={projection}}}");
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values
            .get(&key)
            .map_or(0, |value| value.0.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str, projection: &str) -> Option<f64> {
        let key = format!("{name}{{projection={projection}}}");
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values
            .get(&key)
            .map(|value| f64::from_bits(value.0.load(Ordering::SeqCst)))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &metrics::Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key))
    }

    fn register_gauge(&self, key: &Key, _: &metrics::Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key))
    }

    fn register_histogram(&self, _: &Key, _: &metrics::Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Applies everything.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Everything(u64);

impl Projection for Everything {
    const NAME: &'static str = "everything";
    type Error = std::convert::Infallible;

    fn apply(&mut self, _: &RecordedEvent) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Refuses the event at position 3.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RefusesThird(u64);

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Projection for RefusesThird {
    const NAME: &'static str = "refuses-third";
    type Error = Refused;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Refused> {
        if event.global_position == GlobalPosition(3) {
            return Err(Refused);
        }
        self.0 += 1;
        Ok(())
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_counts_events_failures_and_parks_through_the_metrics_facade() {
    let recorder = TestRecorder::default();
    metrics::set_global_recorder(recorder.clone()).expect("the only recorder of this binary");

    let store = InMemory::new();
    let daemon = ProjectionDaemon::builder()
        .with(Everything::default())
        .unwrap()
        .with(RefusesThird::default())
        .unwrap()
        .with_retry(
            RetryPolicy::attempts(3)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(1)),
        )
        .with_save_interval(Duration::from_millis(10))
        .start(store.clone())
        .await
        .unwrap();
    let mut last = GlobalPosition::START;
    for _ in 0..10 {
        let event = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "Happened".into(),
            schema_version: 1,
            codec: CodecId::Json,
            payload: b"null".to_vec(),
            metadata: Metadata::default(),
        };
        last = store
            .append(
                &StreamId::new("thing", "1"),
                ExpectedVersion::Any,
                vec![event],
            )
            .await
            .unwrap()
            .position;
    }
    let client = daemon.client();
    client
        .wait_for_model::<Everything>(last, WAIT)
        .await
        .unwrap();
    // The gauges are set every save interval: wait until they show the end state.
    let mut updates = client.updates();
    tokio::time::timeout(WAIT, async {
        loop {
            let parked = client
                .status()
                .iter()
                .any(|status| matches!(status.state, ModelState::Parked(_)));
            let settled = recorder.gauge("es_daemon_checkpoint", "everything") == Some(10.0)
                && recorder.gauge("es_daemon_parked", "refuses-third") == Some(1.0)
                && recorder.gauge("es_daemon_lag_events", "everything") == Some(0.0);
            if parked && settled {
                break;
            }
            updates.changed().await.unwrap();
        }
    })
    .await
    .expect("the gauges reach the end state");

    assert_eq!(recorder.counter("es_daemon_events_total", "everything"), 10);
    assert_eq!(
        recorder.counter("es_daemon_events_total", "refuses-third"),
        2
    );
    assert_eq!(
        recorder.counter("es_daemon_apply_failures_total", "refuses-third"),
        3,
        "each attempt counts"
    );
    assert_eq!(
        recorder.counter("es_daemon_apply_failures_total", "everything"),
        0
    );
    assert_eq!(recorder.gauge("es_daemon_parked", "everything"), Some(0.0));
    assert_eq!(
        recorder.gauge("es_daemon_checkpoint", "refuses-third"),
        Some(2.0)
    );
    assert_eq!(
        recorder.gauge("es_daemon_lag_events", "refuses-third"),
        Some(8.0)
    );
    daemon.shutdown().await.unwrap();
}
