//! How [`Repository::update`](crate::Repository::update) retries a command that lost a race.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How many times [`Repository::update`](crate::Repository::update) runs a command that keeps
/// conflicting, and how long it waits between attempts.
///
/// After the `n`th conflicting attempt it waits a random delay between zero and
/// `min(max_delay, first_delay × 2ⁿ⁻¹)` ("full jitter"): writers that collided spread out
/// instead of colliding again in lockstep, and the expected wait grows with the contention.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use es_core::RetryPolicy;
///
/// let patient = RetryPolicy::attempts(50)
///     .with_backoff(Duration::from_millis(2), Duration::from_millis(200));
/// assert_eq!(patient.max_attempts(), 50);
/// assert_eq!(RetryPolicy::no_retry().max_attempts(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    first_delay: Duration,
    max_delay: Duration,
}

impl RetryPolicy {
    /// The delay bound after the first conflict, unless set otherwise.
    pub const DEFAULT_FIRST_DELAY: Duration = Duration::from_millis(1);
    /// The largest delay bound, unless set otherwise.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(100);

    /// At most `max_attempts` runs of the command (at least one, even when 0), with the
    /// default backoff (1 ms doubling up to 100 ms, jittered).
    #[must_use]
    pub const fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
            first_delay: Self::DEFAULT_FIRST_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }

    /// One attempt: a conflict is returned at once as
    /// [`CommandError::RetriesExhausted`](crate::CommandError::RetriesExhausted).
    #[must_use]
    pub const fn no_retry() -> Self {
        Self::attempts(1)
    }

    /// This policy waiting up to `first` after the first conflict, doubling after each further
    /// one up to `max` (each wait drawn at random below that bound). Zero `first` retries at
    /// once.
    #[must_use]
    pub const fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_delay = first;
        self.max_delay = max;
        self
    }

    /// The most times the command runs.
    #[must_use]
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The bound of the wait after the `attempt`th conflicting attempt (1-based).
    #[must_use]
    pub fn delay_bound(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first_delay
            .checked_mul(1 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// A random wait after the `attempt`th conflicting attempt, at most
    /// [`delay_bound`](RetryPolicy::delay_bound).
    pub(crate) fn delay_after(&self, attempt: u32) -> Duration {
        let bound = self.delay_bound(attempt);
        let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if bound_nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % bound_nanos.saturating_add(1))
    }
}

impl Default for RetryPolicy {
    /// Up to 10 attempts, waiting up to 1 ms after the first conflict, doubling to 100 ms.
    fn default() -> Self {
        Self::attempts(10)
    }
}

/// A random number for jitter (not for anything that needs unpredictability): std seeds each
/// `RandomState` from the operating system's randomness once per thread and varies it per
/// call, and `SipHash` mixes it.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_doubles_from_the_first_delay_and_stops_at_the_maximum() {
        let policy = RetryPolicy::attempts(100)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(10));
        let bounds: Vec<u128> = (1..=6)
            .map(|attempt| policy.delay_bound(attempt).as_millis())
            .collect();
        assert_eq!(bounds, [1, 2, 4, 8, 10, 10]);
        assert_eq!(
            policy.delay_bound(u32::MAX),
            Duration::from_millis(10),
            "no overflow"
        );
    }

    #[test]
    fn each_wait_is_drawn_below_the_bound_and_the_draws_differ() {
        let policy = RetryPolicy::default();
        for attempt in 1..=12 {
            let bound = policy.delay_bound(attempt);
            let draws: Vec<Duration> = (0..200).map(|_| policy.delay_after(attempt)).collect();
            assert!(draws.iter().all(|draw| *draw <= bound), "attempt {attempt}");
            let first = draws[0];
            assert!(
                draws.iter().any(|draw| *draw != first),
                "attempt {attempt}: 200 equal waits are not jitter"
            );
        }
    }

    #[test]
    fn zero_backoff_never_waits_and_zero_attempts_still_runs_once() {
        let policy = RetryPolicy::attempts(0).with_backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(policy.max_attempts(), 1);
        assert_eq!(policy.delay_after(3), Duration::ZERO);
    }
}
