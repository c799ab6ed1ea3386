//! Injectable time: stores stamp events with a [`Clock`], so temporal tests are deterministic.
//!
//! There is one clock to set: the event store's (`InMemory::with_clock`,
//! `SqliteOptions::with_clock`, `PostgresOptions::with_clock`). It stamps every event's
//! `recorded_at`, which temporal queries (`Repository::load_as_of`,
//! `ProjectionRegistry::as_of`) read, and the repository and the projection registry stamp
//! snapshots and saved read models with the same clock unless given one of their own.
//!
//! ```
//! use std::time::Duration;
//! use es_core::{Clock, EventStore, InMemory, ManualClock, Timestamp};
//!
//! let clock = ManualClock::new("2026-01-31T09:00:00Z".parse()?);
//! let store = InMemory::with_clock(clock.clone());
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(EventStore::clock(&store).now().to_string(), "2026-01-31T09:01:30Z");
//! # Ok::<(), es_core::types::ParseTimestampError>(())
//! ```

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::types::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            micros: Arc::new(AtomicI64::new(start.as_micros())),
        }
    }

    /// Moves the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        self.micros.store(to.as_micros(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `micros` microseconds.
    pub fn advance_micros(&self, micros: i64) {
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Moves the clock forward by `duration` (whole microseconds), saturating at
    /// [`Timestamp::MAX`].
    pub fn advance(&self, duration: std::time::Duration) {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        self.set(self.now().saturating_add_micros(micros));
    }

    /// Moves the clock forward by `seconds` seconds.
    pub fn advance_secs(&self, seconds: i64) {
        self.advance_micros(seconds * 1_000_000);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.micros.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
