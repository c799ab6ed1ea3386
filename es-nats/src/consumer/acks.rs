//! Acknowledgements: a message the durable consumer delivered is acknowledged once every read
//! model it feeds has durably saved a state that includes it, never before.
//!
//! The feed records, for each stream sequence it hands on, the position of the event (a
//! skipped message takes the position of the event before it). When the daemon reports a
//! saved position, every sequence whose position is at or below it becomes *durable*, and an
//! acknowledging task acknowledges the delivered messages up to that sequence.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::Message;
use es_core::GlobalPosition;
use tokio::sync::watch;

/// The acknowledgement ledger shared by the feed, the daemon's reports and the acknowledging
/// task.
pub(super) struct Acks {
    book: Mutex<Book>,
    /// The highest durable stream sequence (bumped also when a message arrives that is
    /// already durable, to wake the task).
    durable: watch::Sender<u64>,
    /// The highest sequence up to which every delivered message has been acknowledged.
    acked: watch::Sender<u64>,
}

#[derive(Default)]
struct Book {
    /// Sequences handed on and not yet durable, with their event's position, in order.
    handed: VecDeque<(u64, GlobalPosition)>,
    /// Delivered messages not acknowledged yet, by stream sequence.
    pending: BTreeMap<u64, Message>,
}

impl Acks {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Acks {
            book: Mutex::new(Book::default()),
            durable: watch::Sender::new(0),
            acked: watch::Sender::new(0),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The feed starts (again) at `next`: everything before it is durable.
    pub(super) fn start_at(&self, next: u64) {
        self.book().handed.clear();
        self.durable
            .send_modify(|durable| *durable = (*durable).max(next - 1));
    }

    /// The feed handed on `sequence`, whose event is at `position`.
    pub(super) fn handed(&self, sequence: u64, position: GlobalPosition) {
        self.book().handed.push_back((sequence, position));
    }

    /// A message the durable consumer delivered: kept until it is durable.
    pub(super) fn delivered(&self, sequence: u64, message: Message) {
        self.book().pending.insert(sequence, message);
        if sequence <= *self.durable.borrow() {
            self.durable.send_modify(|_| {});
        }
    }

    /// Every read model fed has durably saved up to `position`.
    pub(super) fn saved(&self, position: GlobalPosition) {
        let mut durable = None;
        {
            let mut book = self.book();
            while let Some(&(sequence, at)) = book.handed.front() {
                if at > position {
                    break;
                }
                durable = Some(sequence);
                book.handed.pop_front();
            }
        }
        if let Some(sequence) = durable {
            self.durable.send_if_modified(|durable| {
                let moved = sequence > *durable;
                *durable = (*durable).max(sequence);
                moved
            });
        }
    }

    /// Waits until every delivered message up to the durable sequence is acknowledged.
    pub(super) async fn flushed(&self) {
        let target = *self.durable.borrow();
        let mut acked = self.acked.subscribe();
        let _ = acked.wait_for(|acked| *acked >= target).await;
    }

    /// Starts the task that acknowledges durable messages; it ends with the ledger.
    pub(super) fn spawn(self: &Arc<Self>) {
        let ledger = Arc::downgrade(self);
        let mut durable = self.durable.subscribe();
        tokio::spawn(async move {
            loop {
                let up_to = *durable.borrow_and_update();
                let Some(acks) = ledger.upgrade() else {
                    return;
                };
                acks.acknowledge(up_to).await;
                drop(acks);
                if durable.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    async fn acknowledge(&self, up_to: u64) {
        let ready: Vec<(u64, Message)> = {
            let mut book = self.book();
            let later = book.pending.split_off(&(up_to + 1));
            std::mem::replace(&mut book.pending, later)
                .into_iter()
                .collect()
        };
        for (sequence, message) in ready {
            if let Err(error) = message.ack().await {
                // Not lost: the broker delivers it again after its ack wait, and it is
                // acknowledged then.
                tracing::warn!(
                    sequence,
                    error = &*error as &dyn std::error::Error,
                    "acknowledging a message failed"
                );
            }
        }
        self.acked.send_modify(|acked| *acked = (*acked).max(up_to));
    }
}
