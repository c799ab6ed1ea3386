//! The exact encoded sizes of every Order event, JSON against postcard, as a payload alone and
//! inside a whole recorded envelope.
//!
//! The samples are those `benches/codecs.rs` times (`benches/samples/mod.rs`). The table is
//! committed in `BENCHMARKS.md` between the `encoded-sizes` markers; this test computes it
//! again and fails, printing the new table, when the committed one is no longer exact.
//! `cargo test --test encoded_sizes -- --nocapture` prints it.

use std::fmt::Write as _;

use es_core::{CodecId, EventSet, RecordedEvent};
use order_example::OrderEvent;

#[path = "../benches/samples/mod.rs"]
mod samples;

const START_MARKER: &str = "<!-- encoded-sizes:start (tests/encoded_sizes.rs) -->";
const END_MARKER: &str = "<!-- encoded-sizes:end -->";

/// The sizes of one sample event.
struct Sizes {
    event_type: &'static str,
    json_payload: usize,
    postcard_payload: usize,
    json_envelope: usize,
    postcard_envelope: usize,
}

/// Encodes `event` as a payload and as a recorded envelope in `codec`, checks both decode back
/// to what was encoded, and returns the two sizes.
fn sizes_in(event: &OrderEvent, codec: CodecId) -> (usize, usize) {
    let recorded = samples::envelope(event, codec);
    assert_eq!(recorded.decode::<OrderEvent>().unwrap(), *event, "{codec}");
    let envelope = codec.encode(&recorded).unwrap();
    let decoded: RecordedEvent = codec.decode(&envelope).unwrap();
    assert_eq!(decoded, recorded, "{codec}");
    (recorded.payload.len(), envelope.len())
}

fn measure() -> Vec<Sizes> {
    samples::order_events()
        .iter()
        .map(|event| {
            let (json_payload, json_envelope) = sizes_in(event, CodecId::Json);
            let (postcard_payload, postcard_envelope) = sizes_in(event, CodecId::Postcard);
            Sizes {
                event_type: event.event_type(),
                json_payload,
                postcard_payload,
                json_envelope,
                postcard_envelope,
            }
        })
        .collect()
}

#[allow(clippy::cast_precision_loss)] // sizes of a few hundred bytes
fn ratio(postcard: usize, json: usize) -> f64 {
    postcard as f64 / json as f64
}

/// The table as committed in `BENCHMARKS.md`, between (not including) the markers.
fn table(sizes: &[Sizes]) -> String {
    let mut out = String::from(
        "| Event | JSON payload | postcard payload | postcard / JSON | JSON envelope | postcard envelope | postcard / JSON |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in sizes {
        writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} | {:.2} |",
            row.event_type,
            row.json_payload,
            row.postcard_payload,
            ratio(row.postcard_payload, row.json_payload),
            row.json_envelope,
            row.postcard_envelope,
            ratio(row.postcard_envelope, row.json_envelope),
        )
        .unwrap();
    }
    out
}

#[test]
fn every_event_type_is_measured_once() {
    let sizes = measure();
    let measured: Vec<_> = sizes.iter().map(|row| row.event_type).collect();
    assert_eq!(measured, OrderEvent::EVENT_TYPES);
}

#[test]
fn postcard_is_smaller_than_json_for_every_event_and_envelope() {
    for row in measure() {
        assert!(
            row.postcard_payload < row.json_payload,
            "{}: payload",
            row.event_type
        );
        assert!(
            row.postcard_envelope < row.json_envelope,
            "{}: envelope",
            row.event_type
        );
    }
}

#[test]
fn committed_table_is_exact() {
    let table = table(&measure());
    println!("{table}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let document = std::fs::read_to_string(path).unwrap();
    let start = document
        .find(START_MARKER)
        .unwrap_or_else(|| panic!("{path} has no `{START_MARKER}`"))
        + START_MARKER.len();
    let end = document[start..]
        .find(END_MARKER)
        .unwrap_or_else(|| panic!("{path} has no `{END_MARKER}` after the start marker"))
        + start;
    assert_eq!(
        document[start..end].trim(),
        table.trim(),
        "the size table in {path} is out of date; replace it with:\n\n{table}"
    );
}
