//! The in-memory store's index of event ids: where each stored id sits in the log.

use std::collections::HashMap;

use uuid::Uuid;

/// Where each stored event id sits in the log.
///
/// Ids made by this process ([`new_event_id`](crate::event::new_event_id)) increase, so almost
/// every id appended is above every id stored: those go to the end of a sorted run, where
/// checking that an id is new is one comparison with the run's last id, and adding it touches
/// only the run's end (a hash map would hash every id and touch a random place of a large
/// table twice per event, a cache miss each once the store is large). An id that is not above
/// the run's last one (an id made elsewhere, or one of another thread that reached the lock
/// later than a newer one) goes to a hash map.
///
/// Every id in `others` was at most the run's last id when it was added, and the run's last id
/// only grows: so an id above the run's last one is in neither.
#[derive(Default)]
pub(super) struct IdIndex {
    /// Increasing ids, with their log indexes.
    run: Vec<(Uuid, usize)>,
    /// The ids that were not above the run's last one when added.
    others: HashMap<Uuid, usize, foldhash::fast::RandomState>,
}

impl IdIndex {
    /// Whether `id` is above every stored id, and so certainly not stored.
    fn is_above(&self, id: &Uuid) -> bool {
        self.run.last().is_none_or(|(last, _)| id > last)
    }

    /// Whether `id` is stored.
    pub(super) fn contains(&self, id: &Uuid) -> bool {
        !self.is_above(id) && self.get(id).is_some()
    }

    /// The log index of `id`, if it is stored.
    pub(super) fn get(&self, id: &Uuid) -> Option<usize> {
        if self.is_above(id) {
            return None;
        }
        self.in_run(id).or_else(|| self.others.get(id).copied())
    }

    /// Adds `id`, stored at log index `index`; `id` is not stored yet.
    pub(super) fn insert(&mut self, id: Uuid, index: usize) {
        debug_assert!(!self.contains(&id), "{id} is stored already");
        if self.is_above(&id) {
            self.run.push((id, index));
        } else {
            self.others.insert(id, index);
        }
    }

    /// `id`'s log index if the run holds it. The ids looked up are mostly recent, so the
    /// search gallops back from the run's end (touching its end only) before it bisects.
    fn in_run(&self, id: &Uuid) -> Option<usize> {
        let mut low = self.run.len();
        let mut step = 1;
        while low > 0 {
            let next = low.saturating_sub(step);
            if self.run[next].0 <= *id {
                low = next;
                break;
            }
            low = next;
            step *= 2;
        }
        let high = (low + step).min(self.run.len());
        let window = &self.run[low..high];
        window
            .binary_search_by(|(stored, _)| stored.cmp(id))
            .ok()
            .map(|at| window[at].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn finds_every_id_in_order_or_not_and_none_other() {
        let mut index = IdIndex::default();
        // Mostly increasing, with ids below the run's end mixed in (they go to the map).
        let ids: Vec<u128> = (0..2_000u128)
            .map(|n| if n % 7 == 3 { n * 10 - 25 } else { n * 10 })
            .collect();
        let mut stored = std::collections::HashSet::new();
        for (at, &n) in ids.iter().enumerate() {
            if stored.insert(n) {
                assert!(!index.contains(&id(n)));
                index.insert(id(n), at);
            }
        }
        assert!(!index.others.is_empty(), "some ids went to the map");
        assert!(index.run.len() > index.others.len(), "most went to the run");
        for (at, &n) in ids.iter().enumerate() {
            let found = index.get(&id(n)).expect("stored");
            assert_eq!(ids[found], n, "id {n} at {at}");
            assert!(index.contains(&id(n)));
        }
        for n in 0..25_000u128 {
            assert_eq!(index.contains(&id(n)), stored.contains(&n), "{n}");
        }
    }

    proptest::proptest! {
        /// Against a hash map as the model: ids that mostly increase (as this process makes
        /// them), with steps back (other writers' ids) and repeats skipped, each found at its
        /// index, and probes around each one found exactly when stored.
        #[test]
        fn agrees_with_a_map(steps in proptest::collection::vec((0u128..4, proptest::bool::ANY), 1..400)) {
            let mut index = IdIndex::default();
            let mut model = HashMap::new();
            let mut next = 1_000u128;
            for (at, (gap, back)) in steps.into_iter().enumerate() {
                next += gap;
                let n = if back { next.saturating_sub(gap * 7 + 3) } else { next };
                if model.contains_key(&n) {
                    continue;
                }
                proptest::prop_assert!(!index.contains(&id(n)));
                index.insert(id(n), at);
                model.insert(n, at);
            }
            for probe in 0..next + 5 {
                proptest::prop_assert_eq!(index.get(&id(probe)), model.get(&probe).copied());
            }
        }
    }

    #[test]
    fn an_empty_index_holds_nothing() {
        let index = IdIndex::default();
        assert!(!index.contains(&id(0)));
        assert_eq!(index.get(&Uuid::max()), None);
    }
}
