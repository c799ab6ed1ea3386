//! Reading the JetStream stream directly, by stream sequence: the events a read model or the
//! feed needs that the durable consumer does not hand over in order (after a restart, or for a
//! read model catching up on its own).
//!
//! The relay publishes the log in position order, exactly once, so the stream's sequences
//! follow the log's positions: the message after sequence `s` holds the next event. A
//! position is found by binary search over the sequences.

use std::collections::BTreeMap;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use es_core::{GlobalPosition, RecordedEvent, StoreError};

use super::SkippedMessage;
use crate::envelope;

/// The stream and what the reader remembers between reads.
pub(super) struct Reader {
    stream: Stream,
}

/// A message that is not an event envelope, or that breaks the stream's position order.
#[derive(Debug)]
pub(super) struct Poison {
    pub(super) sequence: u64,
    pub(super) subject: String,
    pub(super) error: String,
}

/// What reading one sequence found.
pub(super) enum Found {
    Event(RecordedEvent),
    /// No message at this sequence (deleted, or past the end).
    Missing,
    Poison(Poison),
}

/// The stream's bounds: the first sequence it still holds and the last one it assigned.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) messages: u64,
}

impl Reader {
    pub(super) fn new(stream: Stream) -> Self {
        Reader { stream }
    }

    pub(super) fn name(&self) -> &str {
        &self.stream.cached_info().config.name
    }

    pub(super) async fn bounds(&self) -> Result<Bounds, StoreError> {
        let info = self.stream.get_info().await.map_err(StoreError::backend)?;
        Ok(Bounds {
            first: info.state.first_sequence,
            last: info.state.last_sequence,
            messages: info.state.messages,
        })
    }

    async fn raw(&self, sequence: u64) -> Result<Option<StreamMessage>, StoreError> {
        match self.stream.get_raw_message(sequence).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if matches!(error.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(error) => Err(StoreError::backend(error)),
        }
    }

    /// The event at `sequence`, decoded exactly as the store's reader would return it.
    pub(super) async fn read(&self, sequence: u64) -> Result<Found, StoreError> {
        let Some(message) = self.raw(sequence).await? else {
            return Ok(Found::Missing);
        };
        Ok(match envelope::decode(&message.headers, &message.payload) {
            Ok(event) => Found::Event(event),
            Err(error) => Found::Poison(Poison {
                sequence,
                subject: message.subject.to_string(),
                error: error.to_string(),
            }),
        })
    }

    /// The position at the first sequence from `from` (below `to`) whose message carries one.
    async fn position_from(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Option<(u64, GlobalPosition)>, StoreError> {
        for sequence in from..to {
            if let Some(message) = self.raw(sequence).await? {
                if let Ok(position) = envelope::global_position(&message.headers) {
                    return Ok(Some((sequence, position)));
                }
            }
        }
        Ok(None)
    }

    /// The first stream sequence whose event comes after `after` (the stream's last sequence
    /// plus one when there is none).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stream no longer holds the messages that would come
    /// right after `after` (removed by the stream's retention limits, or purged), so reading
    /// on would skip events.
    pub(super) async fn sequence_after(&self, after: GlobalPosition) -> Result<u64, StoreError> {
        let bounds = self.bounds().await?;
        if bounds.messages == 0 {
            if bounds.last > 0 && after == GlobalPosition::START {
                return Err(self.truncated(after, bounds.last + 1));
            }
            return Ok(bounds.last + 1);
        }
        let (mut low, mut high) = (bounds.first, bounds.last + 1);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.position_from(middle, high).await? {
                Some((_, position)) if position > after => high = middle,
                Some((sequence, _)) => low = sequence + 1,
                None => high = middle,
            }
        }
        if low == bounds.first && bounds.first > 1 {
            // Messages before the first one held are gone: they carried positions below the
            // first one's. Only if none of them can be above `after` is nothing lost.
            if let Some((_, first)) = self.position_from(bounds.first, bounds.last + 1).await? {
                if first.get() > after.get() + 1 {
                    return Err(self.truncated(after, bounds.first));
                }
            }
        }
        Ok(low)
    }

    fn truncated(&self, after: GlobalPosition, first: u64) -> StoreError {
        StoreError::Corrupt {
            location: format!("JetStream stream `{}`", self.name()),
            reason: format!(
                "it starts at sequence {first}: the events right after position {after} may have \
                 been removed by its retention limits; rebuild the read models from the store, \
                 or keep the stream longer"
            ),
        }
    }

    /// At most `limit` events after `after`, in order, passing over the skipped sequences.
    /// Also returns the sequence of the last event read, to go on from there.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a message that is not an envelope and was not skipped, a
    /// message missing inside the stream, or positions out of order.
    pub(super) async fn read_after(
        &self,
        start: u64,
        after: GlobalPosition,
        limit: usize,
        skipped: &BTreeMap<u64, SkippedMessage>,
    ) -> Result<(Vec<RecordedEvent>, Option<u64>), StoreError> {
        let bounds = self.bounds().await?;
        let mut events = Vec::new();
        let mut last_sequence = None;
        let mut previous = after;
        for sequence in start..=bounds.last {
            if events.len() >= limit {
                break;
            }
            if skipped.contains_key(&sequence) {
                continue;
            }
            match self.read(sequence).await? {
                Found::Event(event) => {
                    if event.global_position <= previous {
                        return Err(self.corrupt(
                            sequence,
                            &format!(
                                "position {} does not come after {previous}",
                                event.global_position
                            ),
                        ));
                    }
                    previous = event.global_position;
                    last_sequence = Some(sequence);
                    events.push(event);
                }
                Found::Missing => {
                    return Err(self.corrupt(sequence, "the message is gone from the stream"));
                }
                Found::Poison(poison) => return Err(self.corrupt(sequence, &poison.error)),
            }
        }
        Ok((events, last_sequence))
    }

    fn corrupt(&self, sequence: u64, reason: &str) -> StoreError {
        StoreError::Corrupt {
            location: format!("JetStream stream `{}` sequence {sequence}", self.name()),
            reason: reason.to_owned(),
        }
    }

    /// The position of the last event in the stream.
    pub(super) async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        let bounds = self.bounds().await?;
        if bounds.messages == 0 {
            return Ok(GlobalPosition::START);
        }
        let mut sequence = bounds.last;
        while sequence >= bounds.first && sequence > 0 {
            if let Some(message) = self.raw(sequence).await? {
                if let Ok(position) = envelope::global_position(&message.headers) {
                    return Ok(position);
                }
            }
            sequence -= 1;
        }
        Ok(GlobalPosition::START)
    }
}
