//! The repository's aggregate cache: the latest known state of recently used aggregates, so a
//! command does not load them from the store again.
//!
//! Bounded: it holds at most `capacity` aggregates. To make room it forgets one that has not
//! been used since the eviction hand last passed it (the CLOCK approximation of least recently
//! used: a use sets a flag, no list is reordered, so a hit costs one hash lookup). Each entry is
//! a state with the version it is at and the id of the event that brought it there, so a reader
//! can confirm against the log that the entry still describes it (see
//! [`Repository::load`](super::Repository::load)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::shared::SharedStr;
use crate::types::Version;

/// How the aggregate cache of a repository has been used since the repository was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads that found the aggregate in the cache: [`Repository::update`](super::Repository::update)
    /// then makes no store call before its save, [`Repository::load`](super::Repository::load)
    /// reads only the events from the cached version on.
    pub hits: u64,
    /// Loads that did not find the aggregate in the cache and read it from the store.
    pub misses: u64,
    /// Entries dropped because the store had moved past them: a save from a cached state that
    /// conflicted, or a cached state the log no longer confirms.
    pub stale: u64,
    /// Aggregates in the cache now.
    pub len: usize,
    /// The most aggregates the cache holds.
    pub capacity: usize,
}

/// One cached aggregate.
#[derive(Clone, Debug)]
pub(super) struct Cached<A> {
    /// The state after the event at `version`.
    pub state: A,
    /// The version of the last event applied to `state`.
    pub version: Version,
    /// The id of the event at `version`.
    pub last_event: Uuid,
}

/// The cache as the repository sees it: the state type needs `Clone` only where a cache is
/// configured, so the repository holds it type-erased.
pub(super) trait AggregateCache<A>: Send + Sync {
    /// A copy of the entry of `id`, marking it recently used; counts a hit or a miss.
    fn get(&self, id: &str) -> Option<Cached<A>>;
    /// The entry of `id`, moved out (no copy) for a command to run on: until the command's
    /// save [puts](AggregateCache::put) the new state back, the id misses, so a concurrent
    /// command on it loads from the store. Counts a hit or a miss.
    /// Also gives the id, shared with the cache's key (no copy of the text either).
    fn take(&self, id: &str) -> Option<(SharedStr, Cached<A>)>;
    /// Stores a copy of `state` for `id`, unless the cache holds a later version already.
    fn put(&self, id: &str, state: &A, version: Version, last_event: Uuid);
    /// Forgets `id`.
    fn evict(&self, id: &str);
    /// Forgets `id` because the store has moved past it (counted as stale).
    fn evict_stale(&self, id: &str);
    /// Forgets everything.
    fn clear(&self);
    /// The usage counters.
    fn stats(&self) -> CacheStats;
}

/// A bounded least-recently-used map behind one mutex, held for a map operation and a clone.
pub(super) struct LruCache<A> {
    inner: Mutex<Clock<A>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

/// The entries, in a ring the eviction hand walks.
struct Clock<A> {
    /// Where each id sits in `slots`.
    index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    slots: Vec<Slot<A>>,
    /// The next slot the hand looks at when room is needed.
    hand: usize,
}

struct Slot<A> {
    id: Arc<str>,
    /// `None` while a command holds the state it [took](AggregateCache::take).
    cached: Option<Cached<A>>,
    /// Used since the hand last passed: spared once.
    used: bool,
}

impl<A> LruCache<A> {
    pub(super) fn new(capacity: usize) -> Self {
        LruCache {
            inner: Mutex::new(Clock {
                index: HashMap::default(),
                slots: Vec::new(),
                hand: 0,
            }),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock<A>> {
        // The ring is consistent after every operation (no user code runs under the lock but
        // `Clone`, which cannot leave it half-changed), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, found: bool) {
        let counter = if found { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl<A> Clock<A> {
    fn slot_mut(&mut self, id: &str) -> Option<&mut Slot<A>> {
        let &at = self.index.get(id)?;
        Some(&mut self.slots[at])
    }

    /// A slot for a new id, evicting an unused entry when the ring is full.
    fn vacate(&mut self, capacity: usize) -> Option<usize> {
        if self.slots.len() < capacity {
            return None;
        }
        loop {
            let at = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[at];
            if slot.used {
                slot.used = false;
            } else {
                self.index.remove(&slot.id);
                return Some(at);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(at) = self.index.remove(id) else {
            return;
        };
        self.slots.swap_remove(at);
        if let Some(moved) = self.slots.get(at) {
            self.index.insert(Arc::clone(&moved.id), at);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }
}

impl<A: Clone + Send + Sync> AggregateCache<A> for LruCache<A> {
    fn get(&self, id: &str) -> Option<Cached<A>> {
        let found = self.lock().slot_mut(id).and_then(|slot| {
            slot.used = true;
            slot.cached.clone()
        });
        self.count(found.is_some());
        found
    }

    fn take(&self, id: &str) -> Option<(SharedStr, Cached<A>)> {
        let found = self.lock().slot_mut(id).and_then(|slot| {
            slot.used = true;
            let cached = slot.cached.take()?;
            Some((SharedStr::from(Arc::clone(&slot.id)), cached))
        });
        self.count(found.is_some());
        found
    }

    fn put(&self, id: &str, state: &A, version: Version, last_event: Uuid) {
        let mut clock = self.lock();
        if let Some(slot) = clock.slot_mut(id) {
            // Two saves of one aggregate can finish in either order; the later version wins.
            if slot.cached.as_ref().is_some_and(|cached| cached.version > version) {
                return;
            }
            slot.cached = Some(Cached {
                state: state.clone(),
                version,
                last_event,
            });
            slot.used = true;
            return;
        }
        let id: Arc<str> = id.into();
        let slot = Slot {
            id: Arc::clone(&id),
            cached: Some(Cached {
                state: state.clone(),
                version,
                last_event,
            }),
            used: false,
        };
        let at = match clock.vacate(self.capacity) {
            Some(at) => {
                clock.slots[at] = slot;
                at
            }
            None => {
                clock.slots.push(slot);
                clock.slots.len() - 1
            }
        };
        clock.index.insert(id, at);
    }

    fn evict(&self, id: &str) {
        self.lock().remove(id);
    }

    fn evict_stale(&self, id: &str) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        self.evict(id);
    }

    fn clear(&self) {
        let mut clock = self.lock();
        clock.index.clear();
        clock.slots.clear();
        clock.hand = 0;
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            len: self
                .lock()
                .slots
                .iter()
                .filter(|slot| slot.cached.is_some())
                .count(),
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn holds_at_most_its_capacity_and_forgets_the_least_recently_used() {
        let cache = LruCache::<u32>::new(2);
        cache.put("a", &1, Version(1), id(1));
        cache.put("b", &2, Version(1), id(2));
        // `a` is used, so `b` is now the least recently used.
        assert_eq!(cache.get("a").map(|c| c.state), Some(1));
        cache.put("c", &3, Version(1), id(3));
        assert!(cache.get("b").is_none());
        assert_eq!(cache.get("a").map(|c| c.state), Some(1));
        assert_eq!(cache.get("c").map(|c| c.state), Some(3));
        let stats = cache.stats();
        assert_eq!((stats.len, stats.capacity, stats.hits), (2, 2, 3));
    }

    #[test]
    fn a_later_version_is_never_replaced_by_an_earlier_one() {
        let cache = LruCache::<&str>::new(4);
        cache.put("a", &"v3", Version(3), id(3));
        cache.put("a", &"v2", Version(2), id(2));
        let cached = cache.get("a").unwrap();
        assert_eq!(
            (cached.state, cached.version, cached.last_event),
            ("v3", Version(3), id(3))
        );
        cache.put("a", &"v4", Version(4), id(4));
        assert_eq!(cache.get("a").unwrap().state, "v4");
    }

    #[test]
    fn eviction_and_clear_forget_entries() {
        let cache = LruCache::<u8>::new(0);
        assert_eq!(
            cache.stats().capacity,
            1,
            "a capacity of 0 still holds one entry"
        );
        cache.put("a", &1, Version(1), id(1));
        cache.evict_stale("a");
        assert!(cache.get("a").is_none());
        cache.put("b", &2, Version(1), id(2));
        cache.clear();
        assert!(cache.get("b").is_none());
        let stats = cache.stats();
        assert_eq!((stats.len, stats.stale, stats.hits), (0, 1, 0));
    }

    #[test]
    fn many_puts_evictions_and_takes_keep_the_index_consistent() {
        let cache = LruCache::<u64>::new(8);
        for round in 0..500u64 {
            let key = format!("k{}", round % 13);
            cache.put(&key, &round, Version(round), id(u128::from(round)));
            let _ = cache.get(&format!("k{}", round % 5));
            if round % 7 == 0 {
                let _ = cache.take(&format!("k{}", round % 11));
            }
            if round % 17 == 0 {
                cache.evict(&format!("k{}", round % 3));
            }
            let clock = cache.lock();
            assert!(clock.slots.len() <= 8);
            assert_eq!(clock.index.len(), clock.slots.len());
            for (key, &at) in &clock.index {
                assert_eq!(clock.slots[at].id, *key);
            }
            assert!(clock.hand < clock.slots.len().max(1));
        }
    }

    #[test]
    fn a_taken_entry_misses_until_it_is_put_back() {
        let cache = LruCache::<u32>::new(4);
        cache.put("a", &1, Version(1), id(1));
        let (id_taken, taken) = cache.take("a").expect("cached");
        assert_eq!(id_taken, "a");
        assert_eq!((taken.state, taken.version), (1, Version(1)));
        assert!(cache.get("a").is_none());
        assert!(cache.take("a").is_none());
        cache.put("a", &2, Version(2), id(2));
        assert_eq!(cache.get("a").map(|c| c.state), Some(2));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.len), (2, 2, 1));
    }

    #[test]
    fn a_used_entry_survives_a_pass_of_the_hand_and_an_unused_one_goes() {
        let cache = LruCache::<u32>::new(3);
        for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
            cache.put(key, &0, Version(1), id(n as u128));
        }
        let _ = cache.get("a");
        let _ = cache.get("c");
        cache.put("d", &0, Version(1), id(9));
        assert!(cache.get("b").is_none(), "b was the only one not used");
        for key in ["a", "c", "d"] {
            assert!(cache.get(key).is_some(), "{key}");
        }
    }
}
