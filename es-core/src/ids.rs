//! Event ids: UUID v7 (RFC 9562), increasing across the whole process, made without a system
//! call or a lock.
//!
//! The layout, most significant bits first:
//!
//! | bits | what |
//! |---|---|
//! | 48 | Unix time in milliseconds |
//! | 4 | the version, 7 |
//! | 12 | a sequence number within the millisecond, high bits |
//! | 2 | the variant, `10` |
//! | 4 | the sequence number, low bits |
//! | 58 | random |
//!
//! The time and the 16-bit sequence come from one process-wide atomic word, moved on by a
//! compare-and-swap: every id is greater than every id made before it in the process, even
//! when the system clock steps back (the time then stays where it was and the sequence goes
//! on), and a 65,537th id within one millisecond borrows the next millisecond (RFC 9562,
//! method 1, with the counter's rollover into the time). The random bits tell ids of
//! different processes apart; they come from a per-thread generator seeded once from the
//! operating system, so no id costs a system call.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// The last id's millisecond (high 48 bits) and sequence number (low 16 bits).
static LAST: AtomicU64 = AtomicU64::new(0);

const SEQUENCE_BITS: u32 = 16;
const MILLIS: u64 = (1 << 48) - 1;

thread_local! {
    /// The random bits' generator (wyrand): seeded from the operating system's randomness on a
    /// thread's first id.
    static RANDOM: Cell<u64> = Cell::new(Uuid::new_v4().as_u64_pair().0);
}

/// A fresh event id: a UUID v7, greater than every id this function returned before in the
/// process, and unique across processes (58 random bits).
///
/// [`NewEvent::encode`](crate::event::NewEvent::encode) gives every event one; use it for
/// events built by hand too.
///
/// # Examples
///
/// ```
/// let first = es_core::event::new_event_id();
/// let second = es_core::event::new_event_id();
/// assert!(second > first);
/// assert_eq!(first.get_version_num(), 7);
/// ```
#[must_use]
pub fn new_event_id() -> Uuid {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            // In 64-bit steps: `as_millis` divides a 128-bit number.
            since
                .as_secs()
                .saturating_mul(1_000)
                .saturating_add(u64::from(since.subsec_millis()))
        })
        & MILLIS;
    let stamp = next_stamp(&LAST, now);
    let millis = stamp >> SEQUENCE_BITS;
    let sequence = stamp & ((1 << SEQUENCE_BITS) - 1);
    let high = (millis << 16) | (0x7 << 12) | (sequence >> 4);
    let low = (0b10 << 62) | ((sequence & 0xf) << 58) | (random() >> 6);
    Uuid::from_u64_pair(high, low)
}

/// Moves `last` on to the stamp of the next id at time `now` (milliseconds), and returns it.
fn next_stamp(last: &AtomicU64, now: u64) -> u64 {
    let mut current = last.load(Ordering::Relaxed);
    loop {
        let next = if now > current >> SEQUENCE_BITS {
            now << SEQUENCE_BITS
        } else {
            // The same millisecond (or the clock stepped back): the next sequence number; its
            // overflow carries into the millisecond.
            current + 1
        };
        match last.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => current = actual,
        }
    }
}

/// The next 64 random bits of this thread's generator (wyrand: fast, and statistically good;
/// the ids need bits that differ between processes, not secrets).
#[expect(
    clippy::cast_possible_truncation,
    reason = "the product's two halves, folded into one"
)]
fn random() -> u64 {
    RANDOM.with(|state| {
        let seed = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(seed);
        let mixed = u128::from(seed) * u128::from(seed ^ 0xe703_7ed1_a0b4_28db);
        (mixed >> 64) as u64 ^ mixed as u64
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_version_7_with_the_rfc_variant_and_the_current_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let id = new_event_id();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = id.get_timestamp().expect("a v7 id has a time").to_unix();
        let millis = u128::from(seconds) * 1_000 + u128::from(nanos / 1_000_000);
        // The sequence may have borrowed a millisecond or two from the future under load.
        assert!(
            before <= millis && millis <= after + 2,
            "{before} <= {millis} <= {after}"
        );
    }

    #[test]
    fn ids_increase_on_a_thread_and_across_threads() {
        let earlier = new_event_id();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let ids: Vec<Uuid> = (0..20_000).map(|_| new_event_id()).collect();
                    assert!(
                        ids.windows(2).all(|pair| pair[0] < pair[1]),
                        "one thread's ids increase"
                    );
                    ids
                })
            })
            .collect();
        let ids: Vec<Uuid> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("the thread runs"))
            .collect();
        let later = new_event_id();
        let distinct: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), ids.len(), "no id is made twice");
        assert!(ids.iter().all(|&id| earlier < id && id < later));
    }

    #[test]
    fn the_sequence_carries_into_the_millisecond_and_survives_a_clock_step_back() {
        let last = AtomicU64::new(0);
        assert_eq!(next_stamp(&last, 1_000), 1_000 << SEQUENCE_BITS);
        assert_eq!(next_stamp(&last, 1_000), (1_000 << SEQUENCE_BITS) + 1);
        // The clock steps back: the time stays, the sequence goes on.
        assert_eq!(next_stamp(&last, 400), (1_000 << SEQUENCE_BITS) + 2);
        // The sequence's last number, then the carry into the next millisecond.
        last.store((1_000 << SEQUENCE_BITS) | 0xffff, Ordering::Relaxed);
        assert_eq!(next_stamp(&last, 1_000), 1_001 << SEQUENCE_BITS);
        // A later clock starts the sequence again.
        assert_eq!(next_stamp(&last, 1_005), 1_005 << SEQUENCE_BITS);
    }
}
