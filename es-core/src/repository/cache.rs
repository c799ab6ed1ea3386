//! The repository's aggregate cache: the latest known state of recently used aggregates, so a
//! command does not load them from the store again.
//!
//! Bounded: it holds at most `capacity` aggregates and forgets the least recently used one to
//! make room. Each entry is a state with the version it is at and the id of the event that
//! brought it there, so a reader can confirm against the log that the entry still describes
//! it (see [`Repository::load`](super::Repository::load)).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

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
    inner: Mutex<Lru<A>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

struct Lru<A> {
    entries: HashMap<Box<str>, Slot<A>>,
    /// Entry ids by the tick of their last use: the first is the least recently used.
    by_use: BTreeMap<u64, Box<str>>,
    tick: u64,
}

struct Slot<A> {
    cached: Cached<A>,
    used: u64,
}

impl<A> LruCache<A> {
    /// An empty cache holding at most `capacity` aggregates (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        LruCache {
            inner: Mutex::new(Lru {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
            }),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<A>> {
        // The map is consistent after every operation (no user code runs under the lock but
        // `Clone`, which cannot leave it half-changed), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<A> Lru<A> {
    fn touch(&mut self, id: &str) -> Option<&Slot<A>> {
        self.tick += 1;
        let tick = self.tick;
        let slot = self.entries.get_mut(id)?;
        let key = self.by_use.remove(&slot.used).unwrap_or_else(|| id.into());
        slot.used = tick;
        self.by_use.insert(tick, key);
        Some(slot)
    }

    fn remove(&mut self, id: &str) {
        if let Some(slot) = self.entries.remove(id) {
            self.by_use.remove(&slot.used);
        }
    }
}

impl<A: Clone + Send + Sync> AggregateCache<A> for LruCache<A> {
    fn get(&self, id: &str) -> Option<Cached<A>> {
        let found = self.lock().touch(id).map(|slot| slot.cached.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn put(&self, id: &str, state: &A, version: Version, last_event: Uuid) {
        let mut lru = self.lock();
        if let Some(slot) = lru.entries.get(id) {
            // Two saves of one aggregate can finish in either order; the later version wins.
            if slot.cached.version > version {
                return;
            }
        }
        let cached = Cached {
            state: state.clone(),
            version,
            last_event,
        };
        lru.remove(id);
        while lru.entries.len() >= self.capacity {
            let Some((_, oldest)) = lru.by_use.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
        lru.tick += 1;
        let used = lru.tick;
        lru.by_use.insert(used, id.into());
        lru.entries.insert(id.into(), Slot { cached, used });
    }

    fn evict(&self, id: &str) {
        self.lock().remove(id);
    }

    fn evict_stale(&self, id: &str) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        self.evict(id);
    }

    fn clear(&self) {
        let mut lru = self.lock();
        lru.entries.clear();
        lru.by_use.clear();
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            len: self.lock().entries.len(),
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
    fn many_puts_keep_the_use_order_consistent() {
        let cache = LruCache::<u64>::new(8);
        for round in 0..100u64 {
            let key = format!("k{}", round % 13);
            cache.put(&key, &round, Version(round), id(u128::from(round)));
            let _ = cache.get(&format!("k{}", round % 5));
        }
        let lru = cache.lock();
        assert_eq!(lru.entries.len(), 8);
        assert_eq!(lru.by_use.len(), 8);
        for (tick, key) in &lru.by_use {
            assert_eq!(lru.entries[key].used, *tick);
        }
    }
}
