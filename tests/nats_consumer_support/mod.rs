//! What the consumer suite needs besides `nats_support`: a JetStream stream of its own per
//! test, an Order log written to a store, and a plain publisher of a store's log (to put a
//! message that is not an event between events, which the relay would never do).

#![allow(dead_code)] // each suite uses part of it

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, stream};
use es_core::{
    AggregateRoot, CodecId, EventStore, ExpectedVersion, GlobalPosition, Metadata, NewEvent,
    Version,
};
use es_nats::envelope::Subjects;
use order_example::load::Workload;
use order_example::Order;

/// A name no other test or run uses (letters, digits and `_`, valid as a stream name and as
/// a subject token).
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!("{test}_{}_{nanos}", std::process::id())
}

/// A fresh file-backed stream `name` holding the subjects of `subjects`.
pub async fn create_stream(js: &jetstream::Context, name: &str, subjects: &Subjects) {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.all()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(90),
        ..stream::Config::default()
    })
    .await
    .expect("the stream is created");
}

/// Publishes every event of `store` after `after` to JetStream, in position order, each
/// acknowledged by the stream before the next; the last position published.
pub async fn publish_after<S: EventStore>(
    js: &jetstream::Context,
    subjects: &Subjects,
    store: &S,
    mut after: GlobalPosition,
) -> GlobalPosition {
    loop {
        let page = store.read_all(after, 512).await.expect("the log reads");
        if page.is_empty() {
            return after;
        }
        for event in &page {
            let envelope = subjects.envelope(event);
            js.publish_with_headers(envelope.subject, envelope.headers, envelope.payload)
                .await
                .expect("publishing is accepted")
                .await
                .expect("the stream stores the event");
            after = event.global_position;
        }
    }
}

/// Appends the next `orders` orders of `workload` to `store`, one order at a time (each
/// batch of an order one append); the events written.
pub async fn append_orders<S: EventStore>(
    store: &S,
    workload: &mut Workload,
    orders: usize,
) -> u64 {
    let mut written = 0;
    for script in workload.by_ref().take(orders) {
        let mut root = AggregateRoot::<Order>::new(script.order_id.as_str());
        let mut version = Version::INITIAL;
        let mut recorded = 0;
        for batch in &script.batches {
            for command in batch {
                root.execute(|order| command.decide(order))
                    .expect("generated commands keep the business rules");
            }
            let events: Vec<NewEvent> = root
                .pending_events()
                .iter()
                .skip(recorded)
                .map(|event| {
                    NewEvent::encode(event, CodecId::Postcard)
                        .expect("order events encode")
                        .with_metadata(Metadata::default())
                })
                .collect();
            recorded += events.len();
            written += events.len() as u64;
            version = store
                .append(&root.stream_id(), ExpectedVersion::Exact(version), events)
                .await
                .expect("the append succeeds")
                .version;
        }
    }
    written
}
