//! The feed: stream sequence after stream sequence, from the durable consumer when it delivers
//! in order, from the stream itself when it does not.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::Message;
use es_core::projection::daemon::Feed;
use es_core::snapshot::ProjectionStore;
use es_core::{GlobalPosition, RecordedEvent, StoreError};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::watch;

use super::reader::{Found, Poison};
use super::{Command, Inner, PoisonMessage};
use crate::envelope;

/// The [`Feed`] of a [`JetStreamLog`](super::JetStreamLog): every event after a position,
/// once, in order. See the [module documentation](super).
pub struct JetStreamFeed<P> {
    inner: Arc<Inner<P>>,
    /// Where the feed was asked to start; `None` once the start sequence is known.
    after: Option<GlobalPosition>,
    /// The stream sequence to hand on next.
    next: u64,
    /// The position of the last event handed on.
    last_position: GlobalPosition,
    /// Read from the stream directly up to this sequence (the durable consumer has not
    /// delivered these in order).
    read_to: u64,
    page_size: usize,
    messages: Option<pull::Stream>,
    changes: watch::Receiver<u64>,
    /// The wait before reading again after a failed read (doubling, at most
    /// [`MAX_PAUSE`]), so a broker that is down is not asked in a tight loop.
    pause: Option<Duration>,
}

/// The first wait after a failed read.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest wait between failed reads.
const MAX_PAUSE: Duration = Duration::from_secs(2);

impl<P> std::fmt::Debug for JetStreamFeed<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamFeed")
            .field("next", &self.next)
            .field("last_position", &self.last_position)
            .field("read_to", &self.read_to)
            .finish_non_exhaustive()
    }
}

/// What to do with one delivered message.
enum Delivery {
    /// The next event, handed on.
    Event(Box<RecordedEvent>),
    /// Not the next sequence (a redelivery, or ahead of a gap): kept for acknowledgement.
    Kept,
}

impl<P: ProjectionStore + 'static> JetStreamFeed<P> {
    pub(super) fn new(inner: Arc<Inner<P>>, after: GlobalPosition, page_size: usize) -> Self {
        let changes = inner.changes.subscribe();
        JetStreamFeed {
            inner,
            after: Some(after),
            next: 0,
            last_position: after,
            read_to: 0,
            page_size: page_size.max(1),
            messages: None,
            changes,
            pause: None,
        }
    }

    async fn next_events(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            if let Some(after) = self.after {
                // Everything up to the start sequence is durable in every read model fed.
                let next = self.inner.reader.sequence_after(after).await?;
                // The durable consumer goes on after the last sequence it delivered; what it
                // delivered before (to a process that is gone) is read from the stream.
                let delivered = self
                    .inner
                    .consumer
                    .get_info()
                    .await
                    .map_err(StoreError::backend)?
                    .delivered
                    .stream_sequence;
                self.next = next;
                self.read_to = delivered;
                self.inner.acks.start_at(next);
                self.after = None;
            }
            self.obey();
            if self.inner.state().record.parked.is_some() {
                let _ = self.changes.changed().await;
                continue;
            }
            if self.next <= self.read_to {
                let events = self.read_stream().await?;
                if events.is_empty() {
                    continue;
                }
                return Ok(events);
            }
            if let Some(events) = self.receive().await? {
                return Ok(events);
            }
        }
    }

    /// Carries out a command from a handle.
    fn obey(&mut self) {
        let command = std::mem::replace(&mut self.inner.state().command, Command::None);
        match command {
            // The parked message is read again from the stream.
            Command::Resume => self.read_to = self.read_to.max(self.next),
            Command::Skip(sequence) if sequence == self.next => self.pass_over(sequence),
            Command::None | Command::Skip(_) => {}
        }
    }

    /// Passes over a skipped sequence: it is acknowledged with the event before it.
    fn pass_over(&mut self, sequence: u64) {
        self.inner.acks.handed(sequence, self.last_position);
        self.next = sequence + 1;
    }

    fn hand_on(&mut self, sequence: u64, event: &RecordedEvent) {
        self.inner.acks.handed(sequence, event.global_position);
        self.last_position = event.global_position;
        self.next = sequence + 1;
    }

    /// Up to a page from the stream itself, from the next sequence; parks on a poison message.
    async fn read_stream(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        while self.next <= self.read_to && events.len() < self.page_size {
            let sequence = self.next;
            if self.inner.state().record.skipped.contains_key(&sequence) {
                self.pass_over(sequence);
                continue;
            }
            let found = match self.inner.reader.read(sequence).await {
                Ok(found) => found,
                Err(error) if events.is_empty() => return Err(error),
                Err(_) => break,
            };
            match found {
                Found::Event(event) if event.global_position > self.last_position => {
                    self.hand_on(sequence, &event);
                    events.push(event);
                }
                Found::Event(event) => {
                    if events.is_empty() {
                        let subject = self.inner.options.stream.clone();
                        self.park(Poison {
                            sequence,
                            subject,
                            error: format!(
                                "position {} does not come after {}: the stream is not the \
                                 log in order",
                                event.global_position, self.last_position
                            ),
                        })
                        .await;
                    }
                    break;
                }
                Found::Poison(poison) => {
                    if events.is_empty() {
                        self.park(poison).await;
                    }
                    break;
                }
                Found::Missing if sequence > self.inner.reader.bounds().await?.last => {
                    self.read_to = sequence - 1;
                }
                Found::Missing => {
                    return Err(StoreError::Corrupt {
                        location: format!(
                            "JetStream stream `{}` sequence {sequence}",
                            self.inner.options.stream
                        ),
                        reason: "the message is gone from the stream (deleted or removed by \
                                 retention) before these read models applied it"
                            .to_owned(),
                    });
                }
            }
        }
        Ok(events)
    }

    /// Parks the feed on `poison`: logged, recorded, never acknowledged.
    async fn park(&mut self, poison: Poison) {
        tracing::error!(
            durable = self.inner.options.durable,
            sequence = poison.sequence,
            subject = poison.subject,
            error = poison.error,
            "a message is not an event of this log; the feed is parked until resumed or skipped"
        );
        let mut record = self.inner.state().record.clone();
        record.parked = Some(PoisonMessage {
            sequence: poison.sequence,
            subject: poison.subject,
            error: poison.error,
            parked_at: self.inner.records.clock().now(),
        });
        // Shown once recorded; parked in this process even when the record cannot be saved.
        if let Err(error) = self.inner.save_record(&record).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "cannot record the parked feed (it is parked all the same)"
            );
        }
        let command = self.inner.state().command;
        self.inner.apply(record, command);
    }

    /// Waits for deliveries from the durable consumer; `None` when the feed must read the
    /// stream (a gap, a poison message, or a quiet consumer while the stream has more).
    async fn receive(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        if self.messages.is_none() {
            let messages = self
                .inner
                .consumer
                .stream()
                .max_messages_per_batch(self.page_size)
                .messages()
                .await
                .map_err(StoreError::backend)?;
            self.messages = Some(messages);
        }
        let idle = self.inner.options.idle_check;
        let first = {
            let messages = self.messages.as_mut().expect("opened above");
            tokio::select! {
                delivered = tokio::time::timeout(idle, messages.next()) => delivered,
                // A command (resume, skip) is carried out at once.
                _ = self.changes.changed() => return Ok(None),
            }
        };
        let message = match first {
            Err(_) => {
                // Quiet: anything the stream holds beyond what was handed on is read from it.
                let bounds = self.inner.reader.bounds().await?;
                self.read_to = self.read_to.max(bounds.last);
                return Ok(None);
            }
            Ok(None) => {
                self.messages = None;
                return Ok(None);
            }
            Ok(Some(Err(error))) => {
                self.messages = None;
                return Err(StoreError::backend(error));
            }
            Ok(Some(Ok(message))) => message,
        };
        let mut events = Vec::new();
        match self.accept(message)? {
            Delivery::Event(event) => events.push(*event),
            Delivery::Kept => return Ok(None),
        }
        // Whatever else is already here, without waiting.
        while events.len() < self.page_size {
            let messages = self.messages.as_mut().expect("opened above");
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => match self.accept(message)? {
                    Delivery::Event(event) => events.push(*event),
                    Delivery::Kept => break,
                },
                _ => break,
            }
        }
        Ok(Some(events))
    }

    /// Hands on a delivered message if it is the next sequence and an event; keeps every
    /// delivered message for acknowledgement.
    fn accept(&mut self, message: Message) -> Result<Delivery, StoreError> {
        let sequence = message
            .info()
            .map_err(|error| StoreError::backend(std::io::Error::other(error.to_string())))?
            .stream_sequence;
        let delivery = if sequence == self.next {
            let decoded = message
                .message
                .headers
                .as_ref()
                .ok_or(envelope::EnvelopeError::NoHeaders)
                .and_then(|headers| envelope::decode(headers, &message.message.payload));
            match decoded {
                Ok(event) if event.global_position > self.last_position => {
                    self.hand_on(sequence, &event);
                    Delivery::Event(Box::new(event))
                }
                // Not an event in order: the stream read parks on it.
                _ => {
                    self.read_to = self.read_to.max(sequence);
                    Delivery::Kept
                }
            }
        } else {
            if sequence > self.next {
                // A gap: the sequences before it are read from the stream, then this one.
                self.read_to = self.read_to.max(sequence);
            }
            Delivery::Kept
        };
        self.inner.acks.delivered(sequence, message);
        Ok(delivery)
    }
}

impl<P: ProjectionStore + 'static> Feed for JetStreamFeed<P> {
    async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Some(pause) = self.pause {
            tokio::time::sleep(pause).await;
        }
        let batch = self.next_events().await;
        self.pause = match (&batch, self.pause) {
            (Ok(_), _) => None,
            (Err(_), None) => Some(FIRST_PAUSE),
            (Err(_), Some(pause)) => Some((pause * 2).min(MAX_PAUSE)),
        };
        batch
    }
}
