//! Why the relay stopped or started over.

use es_core::{GlobalPosition, StoreError};
use uuid::Uuid;

use crate::envelope::EnvelopeError;

/// The boxed error of the NATS client.
pub type BrokerSource = Box<dyn std::error::Error + Send + Sync>;

/// A relay failure. [`RelayError::is_recoverable`] tells the ones the relay retries by itself
/// (broker or store unreachable, a publish out of chain) from the ones that need an operator
/// (a stream it must not write to).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The existing stream cannot take the relay's log.
    #[error("JetStream stream `{stream}` cannot take the event log: {reason}")]
    StreamConfig {
        /// The stream name.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stream has had messages but holds none now (purged, or removed by a limit): the
    /// relay cannot tell where it stopped, and republishing from the start would duplicate.
    #[error(
        "JetStream stream `{stream}` has reached sequence {sequence} but holds no message there: \
         where the relay stopped is unknown"
    )]
    LastMessageGone {
        /// The stream name.
        stream: String,
        /// The stream's last sequence.
        sequence: u64,
    },
    /// The stream's last message is not an event envelope.
    #[error("message {sequence} of JetStream stream `{stream}` is not an event envelope")]
    NotAnEnvelope {
        /// The stream name.
        stream: String,
        /// The message's sequence.
        sequence: u64,
        /// What is wrong with it.
        #[source]
        source: EnvelopeError,
    },
    /// The stream's last event is not the store's event at that position: the stream belongs to
    /// another store, or the store was replaced.
    #[error(
        "JetStream stream `{stream}` ends with event {event_id} at position {position}, \
         but the store {found}"
    )]
    ForeignStream {
        /// The stream name.
        stream: String,
        /// The position in the stream's last envelope.
        position: GlobalPosition,
        /// The event id in the stream's last envelope.
        event_id: Uuid,
        /// What the store has there.
        found: String,
    },
    /// A request to the broker failed or timed out.
    #[error("JetStream {operation} failed")]
    Broker {
        /// What the relay asked.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: BrokerSource,
    },
    /// JetStream acknowledged a publish at another sequence than the next one, or as a
    /// duplicate: something else wrote to the stream, or an earlier publish landed late. The
    /// relay starts over from what the stream holds.
    #[error(
        "JetStream stored the event at position {position} as sequence {found}{}, expected {expected}",
        if *duplicate { " (a duplicate)" } else { "" }
    )]
    OutOfChain {
        /// The event's position.
        position: GlobalPosition,
        /// The sequence the relay expected.
        expected: u64,
        /// The acknowledged sequence.
        found: u64,
        /// Whether JetStream took it as a duplicate.
        duplicate: bool,
    },
    /// Reading the store failed.
    #[error("reading the store failed")]
    Store(#[source] StoreError),
}

impl RelayError {
    /// Whether the relay retries this failure by itself (after a backoff) rather than stop.
    #[must_use]
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            RelayError::Broker { .. } | RelayError::OutOfChain { .. } | RelayError::Store(_)
        )
    }

    pub(crate) fn broker(
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        RelayError::Broker {
            operation,
            source: Box::new(source),
        }
    }
}
