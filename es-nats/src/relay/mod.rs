//! The relay: every committed event, in global-position order, published once to a JetStream
//! stream.
//!
//! # How it keeps exactly once and in order
//!
//! - **It resumes from the broker, not from a checkpoint of its own.** At start (and after
//!   every failure) the relay reads the last message the stream actually holds, decodes its
//!   envelope, checks that the store has that very event at that position, and subscribes to
//!   the store after it. Nothing the stream holds is published again, however long ago it was
//!   stored: this does not depend on JetStream's duplicate window.
//! - **Each publish names the stream sequence it must follow.** The message for the event after
//!   stream sequence `n` carries `Nats-Expected-Last-Sequence: n`; JetStream refuses it unless
//!   the stream's last message is still `n`. So the relay can pipeline many publishes (a bounded
//!   window of acknowledgements in flight) and still never leave a hole or reorder: if one
//!   publish is lost, every later one is refused, the relay sees the first refusal or timeout,
//!   reads the stream's last message again and goes on from there. A publish from before a
//!   restart that reaches the broker late is refused the same way, or takes its place in the
//!   chain and the new one is refused. Two relays running at once cannot interleave either
//!   (each refuses the other's successors); the lease only saves the wasted work.
//! - **`Nats-Msg-Id` is the event id**, a second guard: JetStream drops a message whose id it
//!   stored within its duplicate window.
//!
//! The sequence rather than `Nats-Expected-Last-Msg-Id` is the chain's link because the
//! stream's last sequence is durable state of the stream, while the last message id is kept in
//! the server's memory and rebuilt after a restart only from messages inside the duplicate
//! window; after a long outage the id check would refuse a correct publish.
//!
//! # Failures
//!
//! The broker restarting or unreachable, a publish timing out, the store failing: the relay
//! records the error in its [`RelayStatus`], waits (100 ms doubling to 5 s by default, see
//! [`RelayOptions::with_backoff`]) and starts over from what the stream holds. Killed at any
//! moment, a new relay does the same. Only a stream it must not write to stops it with an
//! error (see [`RelayError::is_recoverable`]).
//!
//! # Several nodes
//!
//! [`Relay::run_with_lease`] publishes only while the node holds a lease in the store's own
//! database (`es_core::lease`), so among several nodes one relays and the others stand by,
//! taking over within the lease time when it stops. The chain above already keeps two relays
//! from duplicating or reordering; the lease saves their wasted work.
//!
//! # What the operator must configure
//!
//! The stream is the relay's alone: nothing else publishes to its subjects. Retention must be
//! `limits` (interest or work-queue retention would remove the last message). A limit (age,
//! count, bytes) may drop old messages, but never all of them: the relay needs the last one to
//! know where it stopped, and refuses to guess when the stream is empty past sequence 0. The
//! stream the relay creates ([`RelayOptions::stream_config`]) has no limit and denies deletes
//! and purges.
//!
//! # Example
//!
//! ```no_run
//! use es_core::InMemory;
//! use es_nats::relay::{Relay, RelayOptions};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemory::new();
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let relay = Relay::new(store, client, RelayOptions::new().with_stream_name("SHOP"));
//! let status = relay.status();
//! tokio::spawn(async move { relay.run_until(std::future::pending()).await });
//! // ... append events; `status.borrow().published` follows them into the stream.
//! # Ok(()) }
//! ```

mod error;
mod lease;
mod options;
mod status;

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::context::{GetStreamErrorKind, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use es_core::{EventFilter, GlobalPosition, RecordedEvent, Subscribe};
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

pub use error::{BrokerSource, RelayError};
pub use lease::RelayLease;
pub use options::RelayOptions;
pub use status::{RelayState, RelayStatus};

use crate::envelope;

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// A publish awaiting its acknowledgement.
struct InFlight {
    position: GlobalPosition,
    sequence: u64,
    ack: AckFuture,
}

/// Where the stream ends: the sequence and position of its last message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamEnd {
    sequence: u64,
    position: GlobalPosition,
}

/// Publishes a store's log to a JetStream stream (see the [module docs](self)).
pub struct Relay<S> {
    store: S,
    jetstream: jetstream::Context,
    options: RelayOptions,
    status: watch::Sender<RelayStatus>,
}

impl<S> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("options", &self.options)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<S: Subscribe> Relay<S> {
    /// A relay from `store` to the JetStream of `client`'s server. It does nothing until
    /// [`Relay::run_until`].
    ///
    /// The client should reconnect by itself (async-nats does by default) and, if the broker
    /// may be down when the process starts, be connected with
    /// `ConnectOptions::retry_on_initial_connect`.
    ///
    /// # Panics
    /// Outside a Tokio runtime: the JetStream context spawns the task that collects dropped
    /// acknowledgements.
    pub fn new(store: S, client: async_nats::Client, options: RelayOptions) -> Self {
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .max_ack_inflight(options.max_in_flight.max(1) * 2)
            .build(client);
        Relay {
            store,
            jetstream,
            options,
            status: watch::channel(RelayStatus::starting()).0,
        }
    }

    /// The relay's progress, updated as it goes.
    #[must_use]
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.subscribe()
    }

    /// Publishes until `shutdown` completes (then returns `Ok`), recovering from every
    /// recoverable failure by itself.
    ///
    /// # Errors
    /// A [`RelayError`] that is not [recoverable](RelayError::is_recoverable): the stream
    /// cannot take the log, or does not belong to this store.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        let span = tracing::info_span!("relay", stream = %self.options.stream_name);
        let outcome = tokio::select! {
            error = self.run().instrument(span) => Err(error),
            () = shutdown => Ok(()),
        };
        self.status.send_modify(|status| {
            status.state = if outcome.is_ok() {
                RelayState::Stopped
            } else {
                RelayState::Failed
            };
        });
        outcome
    }

    /// Runs until an unrecoverable error.
    async fn run(&self) -> RelayError {
        let mut failures: u32 = 0;
        let mut first = true;
        loop {
            if !first {
                self.status.send_modify(|status| status.restarts += 1);
            }
            first = false;
            self.status
                .send_modify(|status| status.state = RelayState::Starting);
            let error = match self.sync().await {
                Ok(end) => {
                    let mut progressed = false;
                    let error = self.publish_after(end, &mut progressed).await;
                    if progressed {
                        failures = 0;
                    }
                    error
                }
                Err(error) => error,
            };
            if !error.is_recoverable() {
                warn!(%error, "relay stopped");
                self.status
                    .send_modify(|status| status.last_error = Some(error_chain(&error)));
                return error;
            }
            failures = failures.saturating_add(1);
            let delay = self.backoff(failures);
            warn!(error = %error_chain(&error), attempt = failures, ?delay, "relay starts over");
            self.status.send_modify(|status| {
                status.last_error = Some(error_chain(&error));
                status.state = RelayState::Retrying {
                    attempt: failures,
                    delay,
                };
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// The delay after `failures` failures in a row: the initial one doubled each time, capped.
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.options
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.options.backoff_max)
    }

    /// Creates or checks the stream and finds where it ends, checked against the store.
    async fn sync(&self) -> Result<StreamEnd, RelayError> {
        let span = tracing::debug_span!("relay_sync");
        async {
            let mut stream = self.stream().await?;
            let name = self.options.stream_name.clone();
            let info = stream
                .info()
                .await
                .map_err(|error| RelayError::broker("stream info", error))?;
            if let Some(reason) = self.options.refusal(info) {
                return Err(RelayError::StreamConfig {
                    stream: name,
                    reason,
                });
            }
            let last_sequence = info.state.last_sequence;
            let messages = info.state.messages;
            let head = self
                .store
                .last_position()
                .await
                .map_err(RelayError::Store)?;
            let end = if last_sequence == 0 {
                StreamEnd {
                    sequence: 0,
                    position: GlobalPosition::START,
                }
            } else if messages == 0 {
                return Err(RelayError::LastMessageGone {
                    stream: name,
                    sequence: last_sequence,
                });
            } else {
                self.last_event(&stream, last_sequence).await?
            };
            info!(
                sequence = end.sequence,
                position = end.position.get(),
                head = head.get(),
                "relay resumes after the stream's last message"
            );
            self.status.send_modify(|status| {
                status.published = end.position;
                status.stream_sequence = end.sequence;
                status.head = head;
            });
            Ok(end)
        }
        .instrument(span)
        .await
    }

    /// The stream, created with [`RelayOptions::stream_config`] if missing.
    async fn stream(&self) -> Result<Stream, RelayError> {
        match self.jetstream.get_stream(&self.options.stream_name).await {
            Ok(stream) => Ok(stream),
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    info!("creating the JetStream stream");
                    self.jetstream
                        .create_stream(self.options.stream_config())
                        .await
                        .map_err(|error| RelayError::broker("stream creation", error))
                }
                _ => Err(RelayError::broker("stream lookup", error)),
            },
        }
    }

    /// The stream's last message, decoded and checked against the store.
    async fn last_event(&self, stream: &Stream, sequence: u64) -> Result<StreamEnd, RelayError> {
        let name = &self.options.stream_name;
        let message = match stream.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Err(RelayError::LastMessageGone {
                    stream: name.clone(),
                    sequence,
                })
            }
            Err(error) => return Err(RelayError::broker("last message read", error)),
        };
        let published = envelope::decode(&message.headers, &message.payload).map_err(|source| {
            RelayError::NotAnEnvelope {
                stream: name.clone(),
                sequence,
                source,
            }
        })?;
        let position = published.global_position;
        let before = GlobalPosition(position.get().saturating_sub(1));
        let stored = self
            .store
            .read_all(before, 1)
            .await
            .map_err(RelayError::Store)?;
        let found = match stored.first() {
            Some(event)
                if event.global_position == position && event.event_id == published.event_id =>
            {
                return Ok(StreamEnd { sequence, position });
            }
            Some(event) if event.global_position == position => {
                format!("has event {} there", event.event_id)
            }
            _ => "has no event at that position".to_owned(),
        };
        Err(RelayError::ForeignStream {
            stream: name.clone(),
            position,
            event_id: published.event_id,
            found,
        })
    }

    /// Publishes every event after `end`, as it commits, until a failure.
    async fn publish_after(&self, end: StreamEnd, progressed: &mut bool) -> RelayError {
        let mut subscription = self.store.subscribe(end.position, EventFilter::all());
        let mut pending: VecDeque<RecordedEvent> = VecDeque::new();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut last_sent = end.sequence;
        let mut head_refresh = tokio::time::interval(self.options.head_refresh);
        head_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.status
            .send_modify(|status| status.state = RelayState::Publishing);
        loop {
            while in_flight.len() < self.options.max_in_flight {
                let Some(event) = pending.pop_front() else {
                    break;
                };
                match self.publish(&event, last_sent).await {
                    Ok(ack) => {
                        last_sent += 1;
                        in_flight.push_back(InFlight {
                            position: event.global_position,
                            sequence: last_sent,
                            ack,
                        });
                    }
                    Err(error) => return error,
                }
            }
            tokio::select! {
                biased;
                ack = async { in_flight.front_mut().map(|first| first.ack.as_mut()).expect("guarded").await },
                    if !in_flight.is_empty() =>
                {
                    let done = in_flight.pop_front().expect("polled above");
                    let ack = match ack {
                        Ok(ack) => ack,
                        Err(error) => return RelayError::broker("publish", error),
                    };
                    if ack.duplicate || ack.sequence != done.sequence {
                        return RelayError::OutOfChain {
                            position: done.position,
                            expected: done.sequence,
                            found: ack.sequence,
                            duplicate: ack.duplicate,
                        };
                    }
                    *progressed = true;
                    self.status.send_modify(|status| {
                        status.published = done.position;
                        status.stream_sequence = done.sequence;
                        status.head = status.head.max(done.position);
                        status.last_error = None;
                    });
                }
                batch = subscription.next_batch(), if pending.is_empty() => {
                    match batch {
                        Ok(events) => {
                            if let Some(last) = events.last() {
                                let position = last.global_position;
                                debug!(events = events.len(), to = position.get(), "relay read a batch");
                                self.status.send_if_modified(|status| {
                                    let moved = position > status.head;
                                    status.head = status.head.max(position);
                                    moved
                                });
                            }
                            pending.extend(events);
                        }
                        Err(error) => return RelayError::Store(error),
                    }
                }
                _ = head_refresh.tick() => {
                    // Only for the lag: a failed read here is reported by the next batch read.
                    if let Ok(head) = self.store.last_position().await {
                        self.status.send_if_modified(|status| {
                            let moved = head > status.head;
                            status.head = status.head.max(head);
                            moved
                        });
                    }
                }
            }
        }
    }

    /// Sends the message for `event`, to follow stream sequence `after`.
    async fn publish(&self, event: &RecordedEvent, after: u64) -> Result<AckFuture, RelayError> {
        let envelope = self.options.subjects.envelope(event);
        let mut headers = envelope.headers;
        // JetStream refuses the message unless the stream's last sequence is `after`.
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
            after.to_string(),
        );
        let ack = self
            .jetstream
            .send_publish(
                envelope.subject,
                PublishMessage::build()
                    .payload(envelope.payload)
                    .headers(headers),
            )
            .await
            .map_err(|error| RelayError::broker("publish", error))?;
        Ok(ack.into_future())
    }
}

/// The error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
