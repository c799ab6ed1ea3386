//! Subscriptions on the SQLite store: the writer thread wakes them after each commit, and a
//! watcher thread notices commits of other processes with `PRAGMA data_version`.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::rows::store_error;
use super::{reader, schema, Sqlite};
use crate::store::StoreError;
use crate::subscription::{
    EventFilter, PageFuture, PageSource, Subscribe, Subscription, SubscriptionStats, Wakeups,
};
use crate::types::GlobalPosition;

/// What every clone of a store shares for its subscriptions.
pub(super) struct Subscriptions {
    pub(super) wakeups: Arc<Wakeups>,
    path: PathBuf,
    location: Arc<str>,
    busy_timeout: Duration,
    check_interval: Duration,
    /// Whether the store is read-only: the watcher's connection is then read-only too.
    read_only: bool,
    watcher: Mutex<Watcher>,
}

/// The watcher thread's state.
enum Watcher {
    /// Not running (no subscription needed it yet, or the last one was dropped).
    Stopped,
    /// Running; a message asks it to close its connection and stop.
    Running(Sender<oneshot::Sender<()>>),
    /// The store was closed: never started again.
    Closed,
}

impl Subscriptions {
    pub(super) fn new(
        path: PathBuf,
        location: Arc<str>,
        busy_timeout: Duration,
        check_interval: Duration,
        read_only: bool,
    ) -> Self {
        Subscriptions {
            read_only,
            wakeups: Arc::default(),
            path,
            location,
            busy_timeout,
            check_interval,
            watcher: Mutex::new(Watcher::Stopped),
        }
    }

    fn watcher(&self) -> MutexGuard<'_, Watcher> {
        self.watcher.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the watcher thread unless it runs (or the store is closed).
    fn ensure_watcher(self: &Arc<Self>) {
        let mut watcher = self.watcher();
        if !matches!(*watcher, Watcher::Stopped) {
            return;
        }
        let (stop, stop_queue) = mpsc::channel();
        let shared = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("es-sqlite-watcher".to_owned())
            .spawn(move || shared.watch(&stop_queue));
        match started {
            Ok(_) => *watcher = Watcher::Running(stop),
            // Without the watcher, commits of this process still wake subscriptions; those of
            // other processes wait for the next subscription to try again.
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "the SQLite change watcher could not start"
            ),
        }
    }

    /// Stops the watcher for good, waiting until its connection is closed.
    pub(super) async fn close(&self) {
        let running = std::mem::replace(&mut *self.watcher(), Watcher::Closed);
        if let Watcher::Running(stop) = running {
            let (reply, closed) = oneshot::channel();
            if stop.send(reply).is_ok() {
                // An error means the thread already stopped: closed either way.
                drop(closed.await);
            }
        }
    }

    /// The watcher thread: checks `PRAGMA data_version` every interval while a subscription
    /// is alive, and wakes the subscriptions when another connection committed.
    fn watch(&self, stop: &mpsc::Receiver<oneshot::Sender<()>>) {
        let mut connection: Option<Connection> = None;
        let mut seen: Option<i64> = None;
        loop {
            match stop.recv_timeout(self.check_interval) {
                Ok(reply) => {
                    drop(connection.take());
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            {
                let mut watcher = self.watcher();
                if self.wakeups.is_idle() {
                    if matches!(*watcher, Watcher::Running(_)) {
                        *watcher = Watcher::Stopped;
                    }
                    return;
                }
            }
            if connection.is_none() {
                match self.open_connection() {
                    Ok(opened) => connection = Some(opened),
                    Err(error) => {
                        tracing::debug!(
                            error = &error as &dyn std::error::Error,
                            "the SQLite change watcher could not open its connection; retrying"
                        );
                        continue;
                    }
                }
            }
            let Some(open) = &connection else { continue };
            match open.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0)) {
                Ok(version) => {
                    if seen.is_some_and(|seen| seen != version) {
                        self.wakeups.wake();
                    }
                    seen = Some(version);
                }
                Err(error) => {
                    tracing::debug!(
                        error = &error as &dyn std::error::Error,
                        "the SQLite change check failed; reopening its connection"
                    );
                    // A new connection starts a new count: wake once, as a commit may have
                    // been missed meanwhile.
                    connection = None;
                    seen = None;
                    self.wakeups.wake();
                }
            }
        }
    }

    fn open_connection(&self) -> Result<Connection, StoreError> {
        if self.read_only {
            return schema::open_read_only(&self.path, self.busy_timeout, &self.location);
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| store_error(error, &self.location))?;
        schema::configure(&connection, self.busy_timeout, &self.location)?;
        connection
            .pragma_update(None, "query_only", true)
            .map_err(|error| store_error(error, &self.location))?;
        Ok(connection)
    }
}

impl PageSource for Sqlite {
    fn read_page<'a>(
        &'a self,
        after: GlobalPosition,
        filter: &'a EventFilter,
        limit: usize,
    ) -> PageFuture<'a> {
        let filter = filter.clone();
        Box::pin(self.query(move |connection, location| {
            reader::read_page(connection, after, &filter, limit, location)
        }))
    }
}

impl Subscribe for Sqlite {
    /// See [`Subscribe::subscribe`]. Commits of this process wake the subscription at once;
    /// those of other processes within the store's change-check interval
    /// ([`SqliteOptions::with_change_check_interval`](super::SqliteOptions::with_change_check_interval)).
    fn subscribe(&self, after: GlobalPosition, filter: EventFilter) -> Subscription {
        let subscription = Subscription::new(
            Arc::new(self.clone()),
            Arc::clone(&self.subscriptions.wakeups),
            after,
            filter,
        );
        // After the subscription is registered, so a watcher about to stop for want of
        // subscriptions sees it, or has stopped and is started again here.
        self.subscriptions.ensure_watcher();
        subscription
    }

    fn subscription_stats(&self) -> SubscriptionStats {
        self.subscriptions.wakeups.stats()
    }
}
