//! Subscriptions on the PostgreSQL store: every append sends a `NOTIFY` on the store's
//! channel inside its transaction; one `LISTEN` connection per store (opened while a
//! subscription is alive, reopened if it drops) turns the notifications into wake-ups; each
//! subscription also polls slowly, so a lost notification only delays.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::checkout::Checkout;
use super::schema::{lock_key, SchemaName};
use super::{Postgres, Shared};
use crate::store::StoreError;
use crate::subscription::{
    EventFilter, LogPage, PageFuture, PageSource, Subscribe, Subscription, SubscriptionStats,
    Wakeups, SCAN_WINDOW,
};
use crate::types::GlobalPosition;

/// The first wait before reconnecting a lost `LISTEN` connection; it doubles up to
/// [`MAX_RECONNECT_DELAY`].
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(50);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The notification channel of the store in `schema`: `es_events_` and 16 hex digits of a
/// hash of the schema name, so stores in different schemas do not wake each other, and the
/// name fits PostgreSQL's 63-byte identifiers whatever the schema's length.
pub(super) fn channel(schema: &SchemaName) -> String {
    format!(
        "es_events_{:016x}",
        lock_key(&["notify", schema.as_str()]) as u64
    )
}

/// What every clone of a store shares for its subscriptions.
pub(super) struct Subscriptions {
    pub(super) wakeups: Arc<Wakeups>,
    /// The notification channel (see [`channel`]).
    pub(super) channel: String,
    /// How often a subscription reads the log while waiting for a notification.
    pub(super) poll_interval: Duration,
    config: tokio_postgres::Config,
    listener: Mutex<Listener>,
    /// Stops the listener task when the store is closed.
    shutdown: Notify,
}

enum Listener {
    Stopped,
    Running(JoinHandle<()>),
    Closed,
}

impl Subscriptions {
    pub(super) fn new(
        config: tokio_postgres::Config,
        schema: &SchemaName,
        poll_interval: Duration,
    ) -> Self {
        Subscriptions {
            wakeups: Arc::default(),
            channel: channel(schema),
            poll_interval,
            config,
            listener: Mutex::new(Listener::Stopped),
            shutdown: Notify::new(),
        }
    }

    fn listener(&self) -> MutexGuard<'_, Listener> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the listener task unless it runs, the store is closed, or no subscription is
    /// alive. Called from a subscription's read, so on the subscriber's runtime.
    fn ensure_listener(self: &Arc<Self>) {
        let mut listener = self.listener();
        let running = matches!(&*listener, Listener::Running(task) if !task.is_finished());
        if running || matches!(*listener, Listener::Closed) || self.wakeups.is_idle() {
            return;
        }
        *listener = Listener::Running(tokio::spawn(Arc::clone(self).listen()));
    }

    /// Stops the listener for good.
    pub(super) fn close(&self) {
        let previous = std::mem::replace(&mut *self.listener(), Listener::Closed);
        if let Listener::Running(_) = previous {
            self.shutdown.notify_one();
        }
    }

    /// Whether the listener should stop (no subscription is alive, or the store closed);
    /// marks it stopped if so, under the same lock [`Subscriptions::ensure_listener`] takes.
    fn stop_if_unneeded(&self) -> bool {
        let mut listener = self.listener();
        match *listener {
            Listener::Closed => true,
            _ if self.wakeups.is_idle() => {
                *listener = Listener::Stopped;
                true
            }
            _ => false,
        }
    }

    /// The listener task: keeps a `LISTEN` connection open while subscriptions are alive.
    async fn listen(self: Arc<Self>) {
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            if self.stop_if_unneeded() {
                return;
            }
            match self.listen_once().await {
                Ok(true) => return,
                Ok(false) => delay = FIRST_RECONNECT_DELAY,
                Err(error) => tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    channel = %self.channel,
                    "the PostgreSQL LISTEN connection failed; reconnecting"
                ),
            }
            // Until it is back, the subscriptions' polls carry on alone.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.notified() => return,
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    /// One `LISTEN` connection, until it fails (`Err`), closes (`Ok(false)`), or is no longer
    /// needed (`Ok(true)`).
    async fn listen_once(&self) -> Result<bool, tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let listen_sql = format!("LISTEN \"{}\"", self.channel);
        let mut listen = std::pin::pin!(client.batch_execute(&listen_sql));
        let mut listening = false;
        loop {
            tokio::select! {
                message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                    Some(Ok(AsyncMessage::Notification(_))) => self.wakeups.wake(),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(false),
                },
                result = &mut listen, if !listening => {
                    result?;
                    listening = true;
                    tracing::debug!(channel = %self.channel, "listening for appends");
                    // Commits made while nobody listened sent no wake-up that arrived.
                    self.wakeups.wake();
                }
                () = self.wakeups.idle() => {
                    if self.stop_if_unneeded() {
                        return Ok(true);
                    }
                }
                () = self.shutdown.notified() => return Ok(true),
            }
        }
    }
}

impl Shared {
    /// One page of the log after `after`: see [`PageSource::read_page`]. Never reads at or
    /// past the gap-safe bound.
    async fn read_page(
        &self,
        after: GlobalPosition,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let at_head = || LogPage {
            events: Vec::new(),
            scanned_to: after,
            at_head: true,
        };
        let Ok(after_sql) = i64::try_from(after.get()) else {
            return Ok(at_head());
        };
        let limit = limit.max(1);
        let checkout = Checkout::get(self).await?;
        let client = checkout.client();
        let bound = checkout.bounded(self.read_bound(client)).await?;
        // The last position readable now, and the last this read scans.
        let head = bound - 1;
        let window = i64::try_from(SCAN_WINDOW).unwrap_or(i64::MAX);
        let upper = if filter.is_all() {
            head
        } else {
            head.min(after_sql.saturating_add(window))
        };
        if upper <= after_sql {
            checkout.release();
            return Ok(at_head());
        }
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let (aggregate_types, event_types) = (filter.aggregate_types(), filter.event_types());
        let rows = checkout
            .bounded(async {
                let statement = client.prepare_cached(&self.sql.read_page).await?;
                client
                    .query(
                        &statement,
                        &[
                            &after_sql,
                            &upper,
                            &aggregate_types,
                            &event_types,
                            &limit_sql,
                        ],
                    )
                    .await
            })
            .await?;
        checkout.release();
        let events = Shared::events(&rows)?;
        let scanned_to = match events.last() {
            Some(last) if events.len() == limit => last.global_position,
            _ => GlobalPosition(upper as u64),
        };
        Ok(LogPage {
            events,
            scanned_to,
            at_head: scanned_to.get() >= head as u64,
        })
    }
}

impl PageSource for Postgres {
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a> {
        self.shared.subscriptions.ensure_listener();
        Box::pin(self.shared.read_page(after, filter, limit))
    }
}

impl Subscribe for Postgres {
    /// See [`Subscribe::subscribe`]. Woken by the `NOTIFY` each append sends, and polling
    /// every [`PostgresOptions::with_subscription_poll_interval`](super::PostgresOptions::with_subscription_poll_interval)
    /// meanwhile.
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        let subscriptions = &self.shared.subscriptions;
        Subscription::new(
            Arc::new(self.clone()),
            Arc::clone(&subscriptions.wakeups),
            after,
            filter,
        )
        .with_poll_interval(Some(subscriptions.poll_interval))
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        self.shared.subscriptions.wakeups.stats()
    }
}
