//! The log consumed from JetStream on another process: a [`LogSource`] that feeds
//! es-core's projection daemon from a durable JetStream consumer, with the read models'
//! states and checkpoints kept in a local store.
//!
//! ```no_run
//! # async fn run(
//! #     daemon: es_core::projection::daemon::DaemonBuilder,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use es_nats::consumer::{ConsumerOptions, JetStreamLog};
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let jetstream = async_nats::jetstream::new(client);
//! // The read models' states, checkpoints and records (and this feed's record) live here.
//! let store = es_core::Store::open("sqlite:read-models.db").await?;
//! let log = JetStreamLog::open(&jetstream, ConsumerOptions::new("EVENTS", "read-models"), store.clone())
//!     .await?;
//! let running = daemon.start_from(log.clone(), store).await?;
//! // ... serve queries from `running` ...
//! running.shutdown().await?;
//! log.close().await; // the last acknowledgements reach the broker
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Decoded as the store does.** Each message becomes the [`RecordedEvent`] the store
//!   holds ([`envelope::decode`](crate::envelope::decode)): read models and their `decode`
//!   run unchanged.
//! - **Every event once, in order.** The relay publishes the log in position order, exactly
//!   once, so stream sequences follow positions. The feed hands on stream sequence after
//!   stream sequence, with no gap: what the durable consumer delivers in order is handed on at
//!   once; what it does not (messages delivered to a process that crashed come back only after
//!   the ack wait, and redeliveries come out of order) is read from the stream by sequence. A
//!   message already handed on is never handed on again, and the daemon passes over events at
//!   or below each read model's checkpoint.
//! - **Acknowledged only once durable.** A delivered message is acknowledged after every read
//!   model fed by the consumer has durably saved a checkpoint at or past its event
//!   ([`LogSource::saved`]), never before: a crash makes the broker deliver again, never lose.
//! - **Poison parks.** A message that is not an event envelope, or whose position does not
//!   come after the one before it, parks the feed (every read model needs the log in order):
//!   it is logged, recorded in the local store, shown by [`JetStreamLog::status`] and
//!   [`JetStreamLog::saved_status`], and never acknowledged. [`resume`](JetStreamLog::resume)
//!   reads it again; [`skip`](JetStreamLog::skip) passes over exactly that sequence, recorded
//!   (and acknowledges it once the events before it are durable). A parked feed stays parked
//!   across restarts. A read model whose `apply` keeps failing is parked by the daemon as
//!   usual, and reads the log from the stream when resumed.
//!
//! # What an operator configures
//!
//! The stream is the relay's. The durable consumer is created on first use with
//! [`ConsumerOptions`]: explicit acknowledgements, its ack wait (how long a delivered message
//! waits for its acknowledgement before the broker delivers it again; it must exceed the
//! daemon's save interval), unlimited deliveries by default (the feed never relies on them,
//! but a limit would make the broker give up on a message silently), and the most messages
//! awaiting acknowledgement (keep it above what arrives in one save interval). One process
//! consumes one durable name: two processes on one durable would each see part of the log.
//! The stream's retention must keep messages until every consumer's read models have saved
//! past them (and a parked read model has been resumed); a feed that finds the events it needs
//! removed stops with [`StoreError::Corrupt`] instead of skipping them.

mod acks;
mod feed;
mod reader;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::Context;
use es_core::projection::daemon::LogSource;
use es_core::snapshot::{ProjectionStore, SavedProjection};
use es_core::{CodecId, GlobalPosition, RecordedEvent, StoreError, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use acks::Acks;
pub use feed::JetStreamFeed;
use reader::Reader;

/// Appended to the durable name to name the feed's record in the local store.
pub const RECORD_SUFFIX: &str = ".nats-feed";

/// How the durable consumer is named and set up (when it does not exist yet) and how the feed
/// waits.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    stream: String,
    durable: String,
    ack_wait: Duration,
    max_deliver: i64,
    max_ack_pending: i64,
    idle_check: Duration,
}

impl ConsumerOptions {
    /// A durable consumer called `durable` on the JetStream stream `stream`, with the
    /// defaults: ack wait 30 s, unlimited deliveries, 65,536 messages awaiting
    /// acknowledgement at most, and a look at the stream's end after 1 s without deliveries.
    pub fn new(stream: impl Into<String>, durable: impl Into<String>) -> Self {
        ConsumerOptions {
            stream: stream.into(),
            durable: durable.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            max_ack_pending: 65_536,
            idle_check: Duration::from_secs(1),
        }
    }

    /// How long the broker waits for a delivered message's acknowledgement before delivering
    /// it again (set when the consumer is created). Keep it above the daemon's save interval.
    #[must_use]
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// How many times the broker delivers a message at most (`-1`: no limit, the default; set
    /// when the consumer is created). The feed reads what it needs from the stream itself, so
    /// a limit only stops redeliveries of unacknowledged messages.
    #[must_use]
    pub fn with_max_deliver(mut self, max_deliver: i64) -> Self {
        self.max_deliver = max_deliver;
        self
    }

    /// How many delivered messages may await acknowledgement before the broker stops
    /// delivering (set when the consumer is created).
    #[must_use]
    pub fn with_max_ack_pending(mut self, max_ack_pending: i64) -> Self {
        self.max_ack_pending = max_ack_pending;
        self
    }

    /// After how long without a delivery the feed reads the stream's end itself (default 1 s),
    /// so that nothing waits for a redelivery.
    #[must_use]
    pub fn with_idle_check(mut self, idle_check: Duration) -> Self {
        self.idle_check = idle_check.max(Duration::from_millis(10));
        self
    }

    /// The JetStream stream's name.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The durable consumer's name.
    #[must_use]
    pub fn durable(&self) -> &str {
        &self.durable
    }
}

/// Opening a [`JetStreamLog`], or controlling its feed, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The JetStream stream could not be opened.
    #[error("cannot open JetStream stream `{stream}`")]
    Stream {
        /// The stream's name.
        stream: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The durable consumer could not be opened or created.
    #[error("cannot open or create durable consumer `{durable}`")]
    Consumer {
        /// The consumer's name.
        durable: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `resume` or `skip` while the feed is not parked.
    #[error("the feed is not parked")]
    NotParked,
    /// `skip` named another sequence than the one the feed is parked on.
    #[error("the feed is parked on stream sequence {parked_at}, not {requested}")]
    SkipMismatch {
        /// The sequence it is parked on.
        parked_at: u64,
        /// The sequence asked to skip.
        requested: u64,
    },
    /// Reading or writing the feed's record in the local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The message a parked feed stopped on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// Why it is not an event the log can hold here.
    pub error: String,
    /// When the feed parked on it.
    pub parked_at: Timestamp,
}

/// A message passed over by request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// The error it was parked with.
    pub error: String,
    /// When it was skipped.
    pub skipped_at: Timestamp,
}

/// The feed's state: parked or not, and what was skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// The message the feed is parked on, if it is.
    pub parked: Option<PoisonMessage>,
    /// Every message skipped, by sequence.
    pub skipped: Vec<SkippedMessage>,
}

/// What the feed keeps under its name in the local store.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Record {
    parked: Option<PoisonMessage>,
    skipped: BTreeMap<u64, SkippedMessage>,
}

/// A command from a handle to the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    None,
    Resume,
    Skip(u64),
}

/// The state the handles and the feed share.
struct State {
    record: Record,
    command: Command,
    /// The last event read by `read_all` (position, sequence), to go on without a search.
    last_read: Option<(GlobalPosition, u64)>,
}

struct Inner<P> {
    options: ConsumerOptions,
    reader: Reader,
    consumer: PullConsumer,
    context: Context,
    records: P,
    state: Mutex<State>,
    /// Bumped on every command and every change of the record.
    changes: watch::Sender<u64>,
    acks: Arc<Acks>,
}

impl<P> Inner<P> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: ProjectionStore> Inner<P> {
    fn record_name(&self) -> String {
        format!("{}{RECORD_SUFFIX}", self.options.durable)
    }

    /// Saves `record` as the feed's record; the caller shows it in the state only after.
    async fn save_record(&self, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::backend)?;
        self.records
            .save_projection(SavedProjection {
                name: self.record_name(),
                position: GlobalPosition::START,
                codec: CodecId::Json,
                state: bytes,
                saved_at: self.records.clock().now(),
            })
            .await
    }

    /// Shows `record` and tells the feed to carry out `command`.
    fn apply(&self, record: Record, command: Command) {
        {
            let mut state = self.state();
            state.record = record;
            state.command = command;
        }
        self.changes.send_modify(|generation| *generation += 1);
    }
}

/// The log as a durable JetStream consumer delivers it: a [`LogSource`] for
/// [`DaemonBuilder::start_from`](es_core::projection::daemon::DaemonBuilder::start_from). See
/// the [module documentation](self). Cheap to clone: clones share the consumer.
pub struct JetStreamLog<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for JetStreamLog<P> {
    fn clone(&self) -> Self {
        JetStreamLog {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P> fmt::Debug for JetStreamLog<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl<P: ProjectionStore + 'static> JetStreamLog<P> {
    /// Opens the stream and the durable consumer (creating it with `options` when it does
    /// not exist), and loads the feed's record from `records`, the store that keeps the read
    /// models.
    ///
    /// # Errors
    /// [`ConsumerError::Stream`], [`ConsumerError::Consumer`], and
    /// [`ConsumerError::Store`] when the record cannot be read.
    pub async fn open(
        jetstream: &Context,
        options: ConsumerOptions,
        records: P,
    ) -> Result<Self, ConsumerError> {
        let stream = jetstream
            .get_stream(&options.stream)
            .await
            .map_err(|source| ConsumerError::Stream {
                stream: options.stream.clone(),
                source: Box::new(source),
            })?;
        let consumer = stream
            .get_or_create_consumer(
                &options.durable,
                pull::Config {
                    durable_name: Some(options.durable.clone()),
                    description: Some("es-nats read models".to_owned()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    max_deliver: options.max_deliver,
                    max_ack_pending: options.max_ack_pending,
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(|source| ConsumerError::Consumer {
                durable: options.durable.clone(),
                source: Box::new(source),
            })?;
        let name = format!("{}{RECORD_SUFFIX}", options.durable);
        let record = match records.load_projection(&name).await? {
            Some(saved) => {
                serde_json::from_slice(&saved.state).map_err(|error| StoreError::Corrupt {
                    location: format!("saved record `{name}`"),
                    reason: error.to_string(),
                })?
            }
            None => Record::default(),
        };
        let acks = Acks::new();
        acks.spawn();
        Ok(JetStreamLog {
            inner: Arc::new(Inner {
                options,
                reader: Reader::new(stream),
                consumer,
                context: jetstream.clone(),
                records,
                state: Mutex::new(State {
                    record,
                    command: Command::None,
                    last_read: None,
                }),
                changes: watch::Sender::new(0),
                acks,
            }),
        })
    }

    /// The options it was opened with.
    #[must_use]
    pub fn options(&self) -> &ConsumerOptions {
        &self.inner.options
    }

    /// Whether the feed is parked, on what, and what was skipped.
    #[must_use]
    pub fn status(&self) -> FeedStatus {
        let state = self.inner.state();
        FeedStatus {
            parked: state.record.parked.clone(),
            skipped: state.record.skipped.values().cloned().collect(),
        }
    }

    /// The feed's status as recorded in `records` (for a `status` command in another
    /// process).
    ///
    /// # Errors
    /// [`ConsumerError::Store`] when the record cannot be read or does not decode.
    pub async fn saved_status(records: &P, durable: &str) -> Result<FeedStatus, ConsumerError> {
        let name = format!("{durable}{RECORD_SUFFIX}");
        let Some(saved) = records.load_projection(&name).await? else {
            return Ok(FeedStatus::default());
        };
        let record: Record =
            serde_json::from_slice(&saved.state).map_err(|error| StoreError::Corrupt {
                location: format!("saved record `{name}`"),
                reason: error.to_string(),
            })?;
        Ok(FeedStatus {
            parked: record.parked,
            skipped: record.skipped.into_values().collect(),
        })
    }

    /// Waits for the next change of the feed's status.
    pub async fn changed(&self) {
        let mut changes = self.inner.changes.subscribe();
        let _ = changes.changed().await;
    }

    /// Reads the message the feed is parked on again (after a fix); it parks again if the
    /// message still does not decode.
    ///
    /// # Errors
    /// [`ConsumerError::NotParked`], [`ConsumerError::Store`] if the record cannot be saved
    /// (then it is not resumed).
    pub async fn resume(&self) -> Result<(), ConsumerError> {
        let mut record = self.inner.state().record.clone();
        if record.parked.take().is_none() {
            return Err(ConsumerError::NotParked);
        }
        self.inner.save_record(&record).await?;
        tracing::info!(durable = self.inner.options.durable, "feed resumed");
        self.inner.apply(record, Command::Resume);
        Ok(())
    }

    /// Passes over exactly the message the feed is parked on (give its sequence, from the
    /// status, so a stale command cannot skip another), records it durably, and goes on with
    /// the next one.
    ///
    /// # Errors
    /// [`ConsumerError::NotParked`], [`ConsumerError::SkipMismatch`], and
    /// [`ConsumerError::Store`] when the skip cannot be recorded (then it is not skipped).
    pub async fn skip(&self, sequence: u64) -> Result<(), ConsumerError> {
        let mut record = self.inner.state().record.clone();
        let Some(parked) = record.parked.take() else {
            return Err(ConsumerError::NotParked);
        };
        if parked.sequence != sequence {
            return Err(ConsumerError::SkipMismatch {
                parked_at: parked.sequence,
                requested: sequence,
            });
        }
        record.skipped.insert(
            sequence,
            SkippedMessage {
                sequence,
                subject: parked.subject.clone(),
                error: parked.error.clone(),
                skipped_at: self.inner.records.clock().now(),
            },
        );
        // Durable before the feed moves on.
        self.inner.save_record(&record).await?;
        tracing::warn!(
            durable = self.inner.options.durable,
            sequence,
            subject = parked.subject,
            "message skipped by request"
        );
        self.inner.apply(record, Command::Skip(sequence));
        Ok(())
    }

    /// Waits until every message already durable is acknowledged and the acknowledgements
    /// have reached the broker (call it after the daemon's `shutdown`).
    pub async fn close(&self) {
        self.inner.acks.flushed().await;
        if let Err(error) = self.inner.context.client().flush().await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "flushing the acknowledgements failed; the broker delivers those messages again"
            );
        }
    }
}

impl<P: ProjectionStore + 'static> LogSource for JetStreamLog<P> {
    type Feed = JetStreamFeed<P>;

    fn feed(&self, after: GlobalPosition, page_size: usize) -> JetStreamFeed<P> {
        JetStreamFeed::new(Arc::clone(&self.inner), after, page_size)
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let cached = self.inner.state().last_read;
        let start = match cached {
            Some((position, sequence)) if position == after => sequence + 1,
            _ => self.inner.reader.sequence_after(after).await?,
        };
        let skipped = self.inner.state().record.skipped.clone();
        let (events, last) = self
            .inner
            .reader
            .read_after(start, after, limit.max(1), &skipped)
            .await?;
        if let (Some(event), Some(sequence)) = (events.last(), last) {
            self.inner.state().last_read = Some((event.global_position, sequence));
        }
        Ok(events)
    }

    async fn last_position(&self) -> Result<GlobalPosition, StoreError> {
        self.inner.reader.last_position().await
    }

    fn saved(&self, position: GlobalPosition) {
        self.inner.acks.saved(position);
    }
}
