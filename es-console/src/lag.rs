//! The read models' lag over time: the last samples, kept in memory for the lag chart.

use std::collections::VecDeque;
use std::sync::Mutex;

use es_core::projection::daemon::ReadModelStatus;

/// How many samples the chart shows (at the default interval of 2 s, ten minutes).
const KEPT: usize = 300;

/// The last [`KEPT`] lag samples of every read model.
#[derive(Default)]
pub(crate) struct LagHistory {
    samples: Mutex<VecDeque<Vec<(String, u64)>>>,
}

impl LagHistory {
    /// Records one sample: each read model's name and lag.
    pub(crate) fn record(&self, statuses: &[ReadModelStatus]) {
        let sample = statuses
            .iter()
            .map(|status| (status.name.clone(), status.lag))
            .collect();
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// One series per read model (in the order of the latest sample), oldest sample first; a
    /// read model missing from a sample counts as lag 0 there.
    pub(crate) fn series(&self) -> Vec<(String, Vec<u64>)> {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(latest) = samples.back() else {
            return Vec::new();
        };
        latest
            .iter()
            .map(|(name, _)| {
                let values = samples
                    .iter()
                    .map(|sample| {
                        sample
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(0, |(_, lag)| *lag)
                    })
                    .collect();
                (name.clone(), values)
            })
            .collect()
    }
}
