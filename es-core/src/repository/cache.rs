//! The repository's aggregate cache: the latest known state of recently used aggregates, so a
//! command does not load them from the store again.
//!
//! Bounded: it holds at most `capacity` aggregates. To make room it forgets one that has not
//! been used since the eviction hand last passed it (the CLOCK approximation of least recently
//! used: a use sets a flag, no list is reordered, so a hit costs one hash lookup). Each entry is
//! a state with the version it is at and the id of the event that brought it there, so a reader
//! can confirm against the log that the entry still describes it (see
//! [`Repository::load`](super::Repository::load)).
//!
//! A large cache is split into shards by a hash of the id, each with its own lock, ring and
//! share of the capacity, so commands on different aggregates rarely wait for one another;
//! a small one (under 512 entries) is one ring, exact to its capacity and its order.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateRoot};
use crate::shared::SharedStr;
use crate::types::{StreamId, Version};

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
#[derive(Debug)]
pub(super) struct Cached<A> {
    /// The state after the event at `version`, shared with the roots built on it.
    pub state: Arc<A>,
    /// The version of the last event applied to `state`.
    pub version: Version,
    /// The id of the event at `version`.
    pub last_event: Uuid,
}

impl<A> Clone for Cached<A> {
    fn clone(&self) -> Self {
        Cached {
            state: Arc::clone(&self.state),
            version: self.version,
            last_event: self.last_event,
        }
    }
}

/// The cache as the repository sees it: the state type needs `Clone` only where a cache is
/// configured, so the repository holds it type-erased. No state is copied going in or out:
/// entries and roots share it, and a root copies it only to change it while still shared.
pub(super) trait AggregateCache<A: Aggregate>: Send + Sync {
    /// The entry of `id` as a root sharing its state, with the id of the event at its
    /// version, marking it recently used; counts a hit or a miss.
    fn get(&self, id: &str) -> Option<(AggregateRoot<A>, Uuid)>;
    /// The entry of `id` moved out as a root for a command to run on: until the command's
    /// save [puts](AggregateCache::put) the new state back, the id misses, so a concurrent
    /// command on it loads from the store. Counts a hit or a miss.
    fn take(&self, id: &str) -> Option<AggregateRoot<A>>;
    /// Keeps `root`'s state (shared, not copied) at `root`'s version, `last_event` being the
    /// id of the event at that version, unless the cache holds a later version already.
    fn put(&self, root: &mut AggregateRoot<A>, last_event: Uuid);
    /// Forgets `id`.
    fn evict(&self, id: &str);
    /// Forgets `id` because the store has moved past it (counted as stale).
    fn evict_stale(&self, id: &str);
    /// Forgets everything.
    fn clear(&self);
    /// The usage counters.
    fn stats(&self) -> CacheStats;
}

pub(super) struct ClockCache<A> {
    /// A power of two of them; an id lives in the one its hash picks.
    shards: Box<[Mutex<Clock<A>>]>,
    /// Picks the shard.
    hasher: foldhash::fast::FixedState,
    capacity: usize,
    stale: AtomicU64,
}

/// The entries, in a ring the eviction hand walks.
struct Clock<A> {
    /// Where each id sits in `slots`.
    index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    slots: Vec<Slot<A>>,
    /// The next slot the hand looks at when room is needed.
    hand: usize,
    /// The most entries this ring holds.
    capacity: usize,
    /// Lookups that found their id, and that did not: counted per ring, under its lock, so
    /// two cores never write one counter.
    hits: u64,
    misses: u64,
}

struct Slot<A> {
    id: Arc<str>,
    /// The aggregate's stream (`A::stream_id(id)`), kept so a root built from the entry does
    /// not work it out, and copy the id, again.
    stream: StreamId,
    /// `None` while a command holds the state it [took](AggregateCache::take).
    cached: Option<Cached<A>>,
    /// Used since the hand last passed: spared once.
    used: bool,
}

/// Entries per shard below which a cache is not split further.
const SHARD_SIZE: usize = 256;
/// The most shards: enough that two cores seldom meet on one lock.
const MAX_SHARDS: usize = 16;

impl<A> ClockCache<A> {
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = (capacity / SHARD_SIZE).clamp(1, MAX_SHARDS);
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        // The capacity is dealt out exactly: the shards together hold at most `capacity`.
        let shards = (0..shards)
            .map(|shard| {
                Mutex::new(Clock {
                    index: HashMap::default(),
                    slots: Vec::new(),
                    hand: 0,
                    capacity: capacity / shards + usize::from(shard < capacity % shards),
                    hits: 0,
                    misses: 0,
                })
            })
            .collect();
        ClockCache {
            shards,
            hasher: foldhash::fast::FixedState::default(),
            capacity,
            stale: AtomicU64::new(0),
        }
    }

    /// The ring `id` lives in, locked.
    fn lock(&self, id: &str) -> std::sync::MutexGuard<'_, Clock<A>> {
        let shard = if self.shards.len() == 1 {
            0
        } else {
            // The hash's high bits: the shard's map uses its own seed, so the two stay apart.
            (self.hasher.hash_one(id) >> 32) as usize & (self.shards.len() - 1)
        };
        Self::locked(&self.shards[shard])
    }

    fn locked(shard: &Mutex<Clock<A>>) -> std::sync::MutexGuard<'_, Clock<A>> {
        // The ring is consistent after every operation (no user code runs under the lock but
        // `Clone`, which cannot leave it half-changed), so a poisoned lock is still usable.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<A: Aggregate + Clone> ClockCache<A> {
    /// The entry of `id`, got out of its slot by `out` (a copy or the entry itself), as a root
    /// sharing its state, with the id of the event at its version; marks the entry used and
    /// counts a hit or a miss.
    fn use_entry(
        &self,
        id: &str,
        out: impl FnOnce(&mut Option<Cached<A>>) -> Option<Cached<A>>,
    ) -> Option<(AggregateRoot<A>, Uuid)> {
        let mut clock = self.lock(id);
        let found = clock.slot_mut(id).and_then(|slot| {
            slot.used = true;
            let cached = out(&mut slot.cached)?;
            Some((
                SharedStr::from(Arc::clone(&slot.id)),
                slot.stream.clone(),
                cached,
            ))
        });
        if found.is_some() {
            clock.hits += 1;
        } else {
            clock.misses += 1;
        }
        drop(clock);
        let (id, stream, cached) = found?;
        let root = AggregateRoot::from_shared(id, stream, cached.state, cached.version, A::clone);
        Some((root, cached.last_event))
    }
}

impl<A> Clock<A> {
    fn slot_mut(&mut self, id: &str) -> Option<&mut Slot<A>> {
        let &at = self.index.get(id)?;
        Some(&mut self.slots[at])
    }

    /// A slot for a new id, evicting an unused entry when the ring is full.
    fn vacate(&mut self) -> Option<usize> {
        if self.slots.len() < self.capacity {
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

    /// Forgets `id`, returning its slot (to be dropped after the lock is let go).
    fn remove(&mut self, id: &str) -> Option<Slot<A>> {
        let at = self.index.remove(id)?;
        let removed = self.slots.swap_remove(at);
        if let Some(moved) = self.slots.get(at) {
            self.index.insert(Arc::clone(&moved.id), at);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        Some(removed)
    }
}

impl<A: Aggregate + Clone> AggregateCache<A> for ClockCache<A> {
    fn get(&self, id: &str) -> Option<(AggregateRoot<A>, Uuid)> {
        self.use_entry(id, |cached| cached.clone())
    }

    fn take(&self, id: &str) -> Option<AggregateRoot<A>> {
        self.use_entry(id, Option::take).map(|(root, _)| root)
    }

    fn put(&self, root: &mut AggregateRoot<A>, last_event: Uuid) {
        let cached = Cached {
            state: root.share_state(A::clone),
            version: root.version(),
            last_event,
        };
        let id = root.id();
        let mut clock = self.lock(id);
        // What the put replaces or evicts is dropped after the lock is let go: freeing a
        // state can take longer than the rest of the put.
        let replaced = if let Some(slot) = clock.slot_mut(id) {
            // Two saves of one aggregate can finish in either order; the later version wins.
            if slot
                .cached
                .as_ref()
                .is_some_and(|held| held.version > cached.version)
            {
                return;
            }
            slot.used = true;
            slot.cached.replace(cached)
        } else {
            let (shared_id, stream) = root.shared_ids();
            // The root's own copy of the id, shared (copied only if it is a `'static` text).
            let id: Arc<str> = shared_id.clone().into();
            let slot = Slot {
                id: Arc::clone(&id),
                stream: stream.clone(),
                cached: Some(cached),
                used: false,
            };
            let (at, evicted) = if let Some(at) = clock.vacate() {
                (at, std::mem::replace(&mut clock.slots[at], slot).cached)
            } else {
                clock.slots.push(slot);
                (clock.slots.len() - 1, None)
            };
            clock.index.insert(id, at);
            evicted
        };
        drop(clock);
        drop(replaced);
    }

    fn evict(&self, id: &str) {
        let removed = self.lock(id).remove(id);
        drop(removed);
    }

    fn evict_stale(&self, id: &str) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        self.evict(id);
    }

    fn clear(&self) {
        for shard in &self.shards {
            let mut clock = Self::locked(shard);
            let slots = std::mem::take(&mut clock.slots);
            clock.index.clear();
            clock.hand = 0;
            drop(clock);
            drop(slots);
        }
    }

    fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            stale: self.stale.load(Ordering::Relaxed),
            capacity: self.capacity,
            ..CacheStats::default()
        };
        for shard in &self.shards {
            let clock = Self::locked(shard);
            stats.hits += clock.hits;
            stats.misses += clock.misses;
            stats.len += clock
                .slots
                .iter()
                .filter(|slot| slot.cached.is_some())
                .count();
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecError, CodecId};
    use crate::event::{DecodeError, EventSet};

    /// A counter: the state is a number, the one event sets it.
    #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Counter(u32);

    #[derive(Clone, Debug, PartialEq)]
    struct Set(u32);

    impl EventSet for Set {
        const EVENT_TYPES: &'static [&'static str] = &["Set"];
        fn event_type(&self) -> &'static str {
            "Set"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn encode(&self, codec: CodecId) -> Result<Vec<u8>, CodecError> {
            codec.encode(&self.0)
        }
        fn decode(_: &str, _: u32, codec: CodecId, payload: &[u8]) -> Result<Self, DecodeError> {
            codec
                .decode(payload)
                .map(Set)
                .map_err(|source| DecodeError::Payload {
                    event_type: "Set".into(),
                    schema_version: 1,
                    source,
                })
        }
    }

    impl Aggregate for Counter {
        type Event = Set;
        const TYPE: &'static str = "counter";
        const SNAPSHOT_EVERY: Option<u64> = None;
        const SCHEMA_FINGERPRINT: u64 = 0;
        fn apply_event(&mut self, event: &Set) {
            self.0 = event.0;
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn put(cache: &ClockCache<Counter>, key: &str, value: u32, version: u64, last: u128) {
        let mut root = AggregateRoot::from_parts(key, Counter(value), Version(version));
        cache.put(&mut root, id(last));
    }

    fn value(cache: &ClockCache<Counter>, key: &str) -> Option<u32> {
        cache.get(key).map(|(root, _)| root.state().0)
    }

    #[test]
    fn holds_at_most_its_capacity_and_forgets_the_least_recently_used() {
        let cache = ClockCache::<Counter>::new(2);
        put(&cache, "a", 1, 1, 1);
        put(&cache, "b", 2, 1, 2);
        // `a` is used, so `b` is the one the hand evicts.
        assert_eq!(value(&cache, "a"), Some(1));
        put(&cache, "c", 3, 1, 3);
        assert!(cache.get("b").is_none());
        assert_eq!(value(&cache, "a"), Some(1));
        assert_eq!(value(&cache, "c"), Some(3));
        let stats = cache.stats();
        assert_eq!((stats.len, stats.capacity, stats.hits), (2, 2, 3));
    }

    #[test]
    fn a_later_version_is_never_replaced_by_an_earlier_one() {
        let cache = ClockCache::<Counter>::new(4);
        put(&cache, "a", 3, 3, 3);
        put(&cache, "a", 2, 2, 2);
        let (root, last_event) = cache.get("a").unwrap();
        assert_eq!(
            (root.state().0, root.version(), last_event),
            (3, Version(3), id(3))
        );
        put(&cache, "a", 4, 4, 4);
        assert_eq!(value(&cache, "a"), Some(4));
    }

    #[test]
    fn eviction_and_clear_forget_entries() {
        let cache = ClockCache::<Counter>::new(0);
        assert_eq!(
            cache.stats().capacity,
            1,
            "a capacity of 0 still holds one entry"
        );
        put(&cache, "a", 1, 1, 1);
        cache.evict_stale("a");
        assert!(cache.get("a").is_none());
        put(&cache, "b", 2, 1, 2);
        cache.clear();
        assert!(cache.get("b").is_none());
        let stats = cache.stats();
        assert_eq!((stats.len, stats.stale, stats.hits), (0, 1, 0));
    }

    #[test]
    fn many_puts_evictions_and_takes_keep_the_index_consistent() {
        let cache = ClockCache::<Counter>::new(8);
        for round in 0..500u32 {
            let key = format!("k{}", round % 13);
            put(&cache, &key, round, u64::from(round), u128::from(round));
            let _ = cache.get(&format!("k{}", round % 5));
            if round % 7 == 0 {
                let _ = cache.take(&format!("k{}", round % 11));
            }
            if round % 17 == 0 {
                cache.evict(&format!("k{}", round % 3));
            }
            let clock = ClockCache::locked(&cache.shards[0]);
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
        let cache = ClockCache::<Counter>::new(4);
        put(&cache, "a", 1, 1, 1);
        let taken = cache.take("a").expect("cached");
        assert_eq!(
            (taken.id(), taken.state().0, taken.version()),
            ("a", 1, Version(1))
        );
        assert!(cache.get("a").is_none());
        assert!(cache.take("a").is_none());
        put(&cache, "a", 2, 2, 2);
        assert_eq!(value(&cache, "a"), Some(2));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.len), (2, 2, 1));
    }

    #[test]
    fn a_used_entry_survives_a_pass_of_the_hand_and_an_unused_one_goes() {
        let cache = ClockCache::<Counter>::new(3);
        for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
            put(&cache, key, 0, 1, n as u128);
        }
        let _ = cache.get("a");
        let _ = cache.get("c");
        put(&cache, "d", 0, 1, 9);
        assert!(cache.get("b").is_none(), "b was the only one not used");
        for key in ["a", "c", "d"] {
            assert!(cache.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn a_root_and_the_cache_share_a_state_until_one_changes_it() {
        let cache = ClockCache::<Counter>::new(4);
        let mut saved = AggregateRoot::<Counter>::from_parts("a", Counter(1), Version(1));
        cache.put(&mut saved, id(1));
        let (mut loaded, _) = cache.get("a").expect("cached");
        assert!(
            std::ptr::eq(saved.state(), loaded.state()),
            "shared, not copied"
        );
        // A change to a shared state copies it first: the cache and the other root keep theirs.
        loaded.record(Set(7));
        assert_eq!(loaded.state().0, 7);
        assert_eq!((saved.state().0, value(&cache, "a")), (1, Some(1)));
        // A root that is the only holder changes its state in place.
        let mut taken = cache.take("a").expect("cached");
        drop((saved, loaded));
        let before: *const Counter = taken.state();
        taken.record(Set(9));
        assert!(std::ptr::eq(before, taken.state()), "changed in place");
        assert_eq!(taken.into_state(), Counter(9));
    }

    #[test]
    fn a_large_cache_is_sharded_and_still_holds_at_most_its_capacity() {
        for (capacity, shards) in [(511, 1), (512, 2), (1_000, 2), (4_096, 16), (4_097, 16)] {
            let cache = ClockCache::<Counter>::new(capacity);
            assert_eq!(cache.shards.len(), shards, "capacity {capacity}");
            let dealt: usize = cache
                .shards
                .iter()
                .map(|shard| ClockCache::locked(shard).capacity)
                .sum();
            assert_eq!(dealt, capacity, "the shards share the capacity exactly");
        }
        let cache = ClockCache::<Counter>::new(1_024);
        for n in 0..3_000u32 {
            put(&cache, &format!("order-{n}"), n, 1, u128::from(n));
        }
        let stats = cache.stats();
        assert!(stats.len <= 1_024 && stats.len > 900, "{stats:?}");
        for shard in &cache.shards {
            let clock = ClockCache::locked(shard);
            assert!(clock.slots.len() <= clock.capacity);
            assert_eq!(clock.index.len(), clock.slots.len());
        }
        // Every id is found where its puts went: the recent ones are all there.
        for n in 2_900..3_000u32 {
            assert_eq!(value(&cache, &format!("order-{n}")), Some(n));
        }
        cache.clear();
        assert_eq!(cache.stats().len, 0);
        assert!(cache.get("order-2999").is_none());
    }

    /// An aggregate that names its own streams (`Aggregate::stream_id` overridden).
    #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Elsewhere(u32);

    impl Aggregate for Elsewhere {
        type Event = Set;
        const TYPE: &'static str = "elsewhere";
        const SNAPSHOT_EVERY: Option<u64> = None;
        const SCHEMA_FINGERPRINT: u64 = 0;
        fn apply_event(&mut self, event: &Set) {
            self.0 = event.0;
        }
        fn stream_id(id: &str) -> StreamId {
            StreamId::new("tenant-7", format!("elsewhere:{id}"))
        }
    }

    #[test]
    fn a_loaded_root_shares_its_id_with_its_stream_when_the_stream_names_it() {
        let root = AggregateRoot::loaded("a", Counter::stream_id("a"), Counter(1), Version(1));
        let stream = root.stream_id();
        assert_eq!((root.id(), stream.aggregate_id()), ("a", "a"));
        assert!(
            std::ptr::eq(root.id(), stream.aggregate_id()),
            "one copy of the text"
        );
        // A stream named otherwise keeps its own text, and the root the id.
        let root = AggregateRoot::loaded("a", Elsewhere::stream_id("a"), Elsewhere(1), Version(1));
        assert_eq!(
            (root.id(), root.stream_id()),
            ("a", StreamId::new("tenant-7", "elsewhere:a"))
        );
    }

    #[test]
    fn a_root_from_the_cache_is_on_the_stream_its_aggregate_names() {
        let cache = ClockCache::<Elsewhere>::new(4);
        let mut root = AggregateRoot::from_parts("a", Elsewhere(1), Version(1));
        let stream = StreamId::new("tenant-7", "elsewhere:a");
        assert_eq!(root.stream_id(), stream);
        cache.put(&mut root, id(1));
        let (got, _) = cache.get("a").expect("cached");
        assert_eq!((got.id(), got.stream_id()), ("a", stream.clone()));
        let mut taken = cache.take("a").expect("cached");
        assert_eq!((taken.id(), taken.stream_id()), ("a", stream.clone()));
        // Put back, the entry keeps the stream it was created with.
        cache.put(&mut taken, id(2));
        assert_eq!(cache.get("a").expect("cached").0.stream_id(), stream);
    }
}
