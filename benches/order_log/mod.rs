//! The Order log the projection and daemon benchmarks read: the orders of
//! `order_example::load::Workload` (seed 1), each event with a correlation id, appended with
//! many orders in flight at once and cut at an exact number of events.

use es_core::{
    AggregateRoot, CodecId, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, Version,
};
use order_example::load::{OrderScript, Workload};
use order_example::Order;
use tokio::task::JoinSet;

/// Orders whose appends may be in flight at once while the log is written.
const IN_FLIGHT: usize = 256;

/// The appends of one order: its stream and its batches, encoded with `codec`, holding at most
/// `limit` events (the last order is cut short so the log has exactly the events asked for).
fn record(script: &OrderScript, codec: CodecId, limit: u64) -> (StreamId, Vec<Vec<NewEvent>>) {
    let mut root = AggregateRoot::<Order>::new(script.order_id.as_str());
    let metadata = Metadata::default().with_correlation_id(uuid::Uuid::now_v7());
    let mut recorded = 0;
    let mut batches = Vec::new();
    for batch in &script.batches {
        for command in batch {
            if recorded == limit {
                break;
            }
            root.execute(|order| command.decide(order))
                .expect("generated commands keep the business rules");
            recorded += 1;
        }
        let events: Vec<NewEvent> = root
            .pending_events()
            .iter()
            .skip(batches.iter().map(Vec::len).sum())
            .map(|event| {
                NewEvent::encode(event, codec)
                    .expect("order events encode")
                    .with_metadata(metadata.clone())
            })
            .collect();
        if !events.is_empty() {
            batches.push(events);
        }
    }
    (root.stream_id(), batches)
}

/// Appends one order's batches in order, each expecting the version the previous one left.
async fn append_order<S: EventStore>(store: &S, stream: StreamId, batches: Vec<Vec<NewEvent>>) {
    let mut version = Version::INITIAL;
    for batch in batches {
        let expected = ExpectedVersion::Exact(version);
        version = store
            .append(&stream, expected, batch)
            .await
            .expect("appending a generated order works")
            .version;
    }
}

/// Writes exactly `events` generated events to `store`, encoded with `codec`, many orders in
/// flight at once.
pub async fn fill<S: EventStore + Clone + 'static>(store: &S, codec: CodecId, events: u64) {
    let mut in_flight = JoinSet::new();
    let mut written = 0;
    for script in Workload::new(1) {
        if written == events {
            break;
        }
        let (stream, batches) = record(&script, codec, events - written);
        written += batches.iter().map(|batch| batch.len() as u64).sum::<u64>();
        if in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await.map(Result::unwrap);
        }
        let store = store.clone();
        in_flight.spawn(async move { append_order(&store, stream, batches).await });
    }
    while let Some(done) = in_flight.join_next().await {
        done.unwrap();
    }
    assert_eq!(store.last_position().await.unwrap().get(), events);
}
