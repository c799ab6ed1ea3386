//! Counters and gauges through the `metrics` facade (feature `metrics`); no-ops without it.
//!
//! Every metric carries a `projection` label with the read model's name:
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `es_daemon_events_total` | counter | events the read model has seen (applied or not handled) |
//! | `es_daemon_apply_failures_total` | counter | failed `apply` calls (each retry counts) |
//! | `es_daemon_checkpoint` | gauge | the read model's checkpoint |
//! | `es_daemon_lag_events` | gauge | positions between its checkpoint and the head |
//! | `es_daemon_events_per_second` | gauge | events seen per second over the last interval |
//! | `es_daemon_parked` | gauge | 1 while parked, else 0 |

#[cfg(feature = "metrics")]
mod imp {
    pub(in crate::projection::daemon) fn events_seen(projection: &'static str, events: u64) {
        metrics::counter!("es_daemon_events_total", "projection" => projection).increment(events);
    }

    pub(in crate::projection::daemon) fn apply_failed(projection: &'static str) {
        metrics::counter!("es_daemon_apply_failures_total", "projection" => projection)
            .increment(1);
    }

    #[allow(clippy::cast_precision_loss)] // a gauge is an f64; positions above 2^53 round
    pub(in crate::projection::daemon) fn progress(
        projection: &'static str,
        checkpoint: u64,
        lag: u64,
        events_per_second: f64,
        parked: bool,
    ) {
        metrics::gauge!("es_daemon_checkpoint", "projection" => projection).set(checkpoint as f64);
        metrics::gauge!("es_daemon_lag_events", "projection" => projection).set(lag as f64);
        metrics::gauge!("es_daemon_events_per_second", "projection" => projection)
            .set(events_per_second);
        metrics::gauge!("es_daemon_parked", "projection" => projection).set(if parked {
            1.0
        } else {
            0.0
        });
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    pub(in crate::projection::daemon) fn events_seen(_projection: &'static str, _events: u64) {}

    pub(in crate::projection::daemon) fn apply_failed(_projection: &'static str) {}

    pub(in crate::projection::daemon) fn progress(
        _projection: &'static str,
        _checkpoint: u64,
        _lag: u64,
        _events_per_second: f64,
        _parked: bool,
    ) {
    }
}

pub(super) use imp::{apply_failed, events_seen, progress};
