//! What the relay is doing and how far it got.

use std::time::Duration;

use es_core::GlobalPosition;

/// A snapshot of the relay's progress, from [`Relay::status`](crate::relay::Relay::status).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// What the relay is doing.
    pub state: RelayState,
    /// The position of the last event JetStream holds, as acknowledged to the relay or read
    /// back from the stream at start. Every event up to it is in the stream, once, in order.
    pub published: GlobalPosition,
    /// The JetStream stream sequence of that event's message.
    pub stream_sequence: u64,
    /// The store's last position, as last read (at start, with each batch, and every
    /// [`head refresh`](crate::relay::RelayOptions::with_head_refresh)).
    pub head: GlobalPosition,
    /// How many times the relay started over from what the stream holds (after the first).
    pub restarts: u64,
    /// The last error the relay recovered from, if any since it last made progress.
    pub last_error: Option<String>,
}

impl RelayStatus {
    pub(crate) fn starting() -> Self {
        RelayStatus {
            state: RelayState::Starting,
            published: GlobalPosition::START,
            stream_sequence: 0,
            head: GlobalPosition::START,
            restarts: 0,
            last_error: None,
        }
    }

    /// How far the published position trails the store's head, in positions (events on a
    /// store whose positions have no gaps, such as SQLite and the in-memory store; an upper
    /// bound on PostgreSQL, whose sequence can skip numbers).
    #[must_use]
    pub fn lag(&self) -> u64 {
        self.head.get().saturating_sub(self.published.get())
    }
}

/// What the relay is doing, in [`RelayStatus::state`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayState {
    /// Creating or checking the stream and reading its last message.
    Starting,
    /// Waiting for the lease another node holds ([`Relay::run_with_lease`](crate::relay::Relay::run_with_lease)).
    Standby,
    /// Publishing the store's events as they commit.
    Publishing,
    /// Waiting `delay` before starting over after `attempt` failures in a row.
    Retrying {
        /// Failures in a row.
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// Stopped on request.
    Stopped,
    /// Stopped on an error it cannot recover from (see the error `run` returned).
    Failed,
}
