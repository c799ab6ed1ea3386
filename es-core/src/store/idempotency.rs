//! Idempotent appends: event ids are unique per store, and re-appending a batch that is
//! already stored returns its original outcome instead of a second copy.
//!
//! Every store decides the same way, with the functions here:
//!
//! 1. [`check_batch_ids`] before touching the store: a batch that repeats an id is refused.
//! 2. Look up which of the batch's ids are stored (each store with its own index), as
//!    [`StoredId`]s, under the same lock or transaction that will write the batch.
//! 3. [`match_stored_batch`]: no id stored → append as usual (version check, insert);
//!    every id stored, in the appended stream, at consecutive versions in batch order → the
//!    batch is a retry of a committed append, answer its original [`AppendOutcome`] whatever
//!    the expected version says (the stream has moved on by that very batch); anything else
//!    → [`StoreError::DuplicateEventIds`], and nothing is written.
//!
//! An append over several streams applies the same rule to each stream's part, and is a
//! retry only if every part is one.

use std::collections::{HashMap, HashSet};
use std::fmt;

use uuid::Uuid;

use crate::event::NewEvent;
use crate::store::{AppendOutcome, StoreError, StreamBatch};
use crate::types::{GlobalPosition, StreamId, Version};

/// Where a stored event sits: its id, stream, version and global position.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredId {
    /// The event id.
    pub event_id: Uuid,
    /// The stream holding the event.
    pub stream: StreamId,
    /// Its version in that stream.
    pub version: Version,
    /// Its global position.
    pub position: GlobalPosition,
}

/// An append was refused because some of its event ids are already stored (or repeated in
/// the batch), and the batch is not an exact retry of a stored one. Nothing was written.
///
/// This is never a race a reload can fix: the same batch will be refused again. Either the
/// ids were reused by mistake (give the events fresh ids), or a retry was built differently
/// from the attempt it repeats (a command re-run on a newer state produced other events);
/// [`DuplicateEventIds::duplicates`] says where each taken id is stored, to tell which.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DuplicateEventIds {
    /// The stream appended to.
    pub stream: StreamId,
    /// How many events the refused batch held.
    pub batch_len: usize,
    /// Each refused id, in batch order.
    pub duplicates: Vec<DuplicateEventId>,
}

/// One id of a refused batch that is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateEventId {
    /// The event id.
    pub event_id: Uuid,
    /// Its index in the refused batch (from 0).
    pub index: usize,
    /// Where it is stored; `None` when the batch itself holds the id more than once (this is
    /// a later occurrence).
    pub stored_at: Option<StoredId>,
}

impl fmt::Display for DuplicateEventIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        write!(
            f,
            "{} of the {} event id(s) appended to `{}` are taken, and the batch is not a retry \
             of a stored one:",
            self.duplicates.len(),
            self.batch_len,
            self.stream
        )?;
        for duplicate in self.duplicates.iter().take(SHOWN) {
            match &duplicate.stored_at {
                Some(stored) => write!(
                    f,
                    " {} (stored as version {} of `{}`)",
                    duplicate.event_id, stored.version, stored.stream
                )?,
                None => write!(f, " {} (twice in the batch)", duplicate.event_id)?,
            }
        }
        if self.duplicates.len() > SHOWN {
            write!(f, " and {} more", self.duplicates.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Refuses a batch that holds an event id more than once.
///
/// # Errors
/// [`StoreError::DuplicateEventIds`] naming each repeated occurrence.
pub(crate) fn check_batch_ids(stream: &StreamId, events: &[NewEvent]) -> Result<(), StoreError> {
    // The usual batch is a few events: comparing each pair costs less than hashing them.
    let distinct = match events {
        [] | [_] => true,
        _ if events.len() <= 16 => events
            .iter()
            .enumerate()
            .all(|(index, event)| events[..index].iter().all(|e| e.event_id != event.event_id)),
        _ => false,
    };
    if distinct {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(events.len());
    let duplicates: Vec<DuplicateEventId> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| !seen.insert(event.event_id))
        .map(|(index, event)| DuplicateEventId {
            event_id: event.event_id,
            index,
            stored_at: None,
        })
        .collect();
    if duplicates.is_empty() {
        Ok(())
    } else {
        Err(StoreError::DuplicateEventIds(DuplicateEventIds {
            stream: stream.clone(),
            batch_len: events.len(),
            duplicates,
        }))
    }
}

/// Decides what an append of a batch with `batch_ids` (in batch order, no id repeated) to
/// `stream` is, given `stored`: the stored events whose ids are among them (any order).
///
/// `Ok(None)`: no id is stored, append the batch. `Ok(Some(outcome))`: the batch is stored
/// exactly (every id, in `stream`, at consecutive versions in batch order); `outcome` is
/// what its append answered (the version and position of its last event).
///
/// # Errors
/// [`StoreError::DuplicateEventIds`] for any other overlap, naming every taken id.
pub(crate) fn match_stored_batch(
    stream: &StreamId,
    batch_ids: &[Uuid],
    stored: &[StoredId],
) -> Result<Option<AppendOutcome>, StoreError> {
    if stored.is_empty() {
        return Ok(None);
    }
    let by_id: HashMap<Uuid, &StoredId> = stored.iter().map(|s| (s.event_id, s)).collect();
    let first = batch_ids.first().and_then(|id| by_id.get(id));
    let exact = by_id.len() == batch_ids.len()
        && first.is_some_and(|first| {
            batch_ids
                .iter()
                .zip(first.version.get()..)
                .all(|(id, version)| {
                    by_id.get(id).is_some_and(|found| {
                        found.stream == *stream && found.version.get() == version
                    })
                })
        });
    if exact {
        let last = by_id[&batch_ids[batch_ids.len() - 1]];
        return Ok(Some(AppendOutcome {
            version: last.version,
            position: last.position,
        }));
    }
    let duplicates = batch_ids
        .iter()
        .enumerate()
        .filter_map(|(index, id)| {
            by_id.get(id).map(|stored| DuplicateEventId {
                event_id: *id,
                index,
                stored_at: Some((*stored).clone()),
            })
        })
        .collect();
    Err(StoreError::DuplicateEventIds(DuplicateEventIds {
        stream: stream.clone(),
        batch_len: batch_ids.len(),
        duplicates,
    }))
}

/// Refuses a multi-stream append that holds an event id more than once, in one batch or
/// across batches (the error names the batch of the later occurrence).
///
/// # Errors
/// [`StoreError::DuplicateEventIds`].
pub(crate) fn check_ids_across_batches(batches: &[StreamBatch]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for batch in batches {
        let duplicates: Vec<DuplicateEventId> = batch
            .events
            .iter()
            .enumerate()
            .filter(|(_, event)| !seen.insert(event.event_id))
            .map(|(index, event)| DuplicateEventId {
                event_id: event.event_id,
                index,
                stored_at: None,
            })
            .collect();
        if !duplicates.is_empty() {
            return Err(StoreError::DuplicateEventIds(DuplicateEventIds {
                stream: batch.stream.clone(),
                batch_len: batch.events.len(),
                duplicates,
            }));
        }
    }
    Ok(())
}

/// [`match_stored_batch`] for a multi-stream append of `batches` (each stream with its
/// batch's ids, in order): `Ok(None)` when no id of any batch is stored, `Ok(Some(outcomes))`
/// (one per batch, in order) when every batch is stored exactly.
///
/// # Errors
/// [`StoreError::DuplicateEventIds`] for the first batch that overlaps stored ids otherwise,
/// or, when some batches are stored exactly and others not at all, for the first stored one
/// (the append as a whole is not a retry).
pub(crate) fn match_stored_batches(
    batches: &[(&StreamId, Vec<Uuid>)],
    stored: &[StoredId],
) -> Result<Option<Vec<AppendOutcome>>, StoreError> {
    if stored.is_empty() {
        return Ok(None);
    }
    let by_id: HashMap<Uuid, &StoredId> = stored.iter().map(|s| (s.event_id, s)).collect();
    let mut outcomes = Vec::with_capacity(batches.len());
    for (stream, ids) in batches {
        let own: Vec<StoredId> = ids
            .iter()
            .filter_map(|id| by_id.get(id).map(|stored| (*stored).clone()))
            .collect();
        outcomes.push(match_stored_batch(stream, ids, &own)?);
    }
    if outcomes.iter().all(Option::is_some) {
        return Ok(Some(outcomes.into_iter().flatten().collect()));
    }
    // Some batches are stored exactly and others not at all: name the stored ones' ids.
    let Some(((stream, ids), _)) = batches
        .iter()
        .zip(&outcomes)
        .find(|(_, outcome)| outcome.is_some())
    else {
        return Ok(None);
    };
    let duplicates = ids
        .iter()
        .enumerate()
        .filter_map(|(index, id)| {
            by_id.get(id).map(|stored| DuplicateEventId {
                event_id: *id,
                index,
                stored_at: Some((*stored).clone()),
            })
        })
        .collect();
    Err(StoreError::DuplicateEventIds(DuplicateEventIds {
        stream: (*stream).clone(),
        batch_len: ids.len(),
        duplicates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: Uuid, stream: &StreamId, version: u64, position: u64) -> StoredId {
        StoredId {
            event_id: id,
            stream: stream.clone(),
            version: Version(version),
            position: GlobalPosition(position),
        }
    }

    fn ids(count: usize) -> Vec<Uuid> {
        (0..count).map(|_| Uuid::now_v7()).collect()
    }

    fn refused(result: Result<Option<AppendOutcome>, StoreError>) -> DuplicateEventIds {
        match result {
            Err(StoreError::DuplicateEventIds(error)) => error,
            other => panic!("expected DuplicateEventIds, got {other:?}"),
        }
    }

    #[test]
    fn idempotent_match_of_a_stored_batch_answers_its_last_event() {
        let stream = StreamId::new("order", "1");
        let batch = ids(3);
        // Stored in any order; positions need not be contiguous.
        let stored = [
            at(batch[2], &stream, 7, 40),
            at(batch[0], &stream, 5, 30),
            at(batch[1], &stream, 6, 33),
        ];
        let outcome = match_stored_batch(&stream, &batch, &stored).unwrap();
        assert_eq!(
            outcome,
            Some(AppendOutcome {
                version: Version(7),
                position: GlobalPosition(40)
            })
        );
        assert_eq!(match_stored_batch(&stream, &batch, &[]).unwrap(), None);
    }

    #[test]
    fn idempotent_partial_overlaps_are_refused_with_every_taken_id() {
        let stream = StreamId::new("order", "1");
        let other = StreamId::new("order", "2");
        let batch = ids(3);
        // Some ids stored.
        let error = refused(match_stored_batch(
            &stream,
            &batch,
            &[at(batch[1], &stream, 2, 2)],
        ));
        assert_eq!(error.batch_len, 3);
        assert_eq!(error.duplicates.len(), 1);
        assert_eq!(error.duplicates[0].index, 1);
        assert_eq!(error.duplicates[0].event_id, batch[1]);
        // All stored, in another stream.
        let error = refused(match_stored_batch(
            &stream,
            &batch,
            &[
                at(batch[0], &other, 1, 1),
                at(batch[1], &other, 2, 2),
                at(batch[2], &other, 3, 3),
            ],
        ));
        assert_eq!(error.duplicates.len(), 3);
        // All stored in the stream, but not in batch order.
        refused(match_stored_batch(
            &stream,
            &batch,
            &[
                at(batch[0], &stream, 2, 2),
                at(batch[1], &stream, 1, 1),
                at(batch[2], &stream, 3, 3),
            ],
        ));
        // All stored in the stream, with a gap.
        refused(match_stored_batch(
            &stream,
            &batch,
            &[
                at(batch[0], &stream, 1, 1),
                at(batch[1], &stream, 2, 2),
                at(batch[2], &stream, 4, 4),
            ],
        ));
    }

    #[test]
    fn idempotent_batch_repeating_an_id_is_refused() {
        let stream = StreamId::new("order", "1");
        let event = |id| NewEvent {
            event_id: id,
            event_type: "T".into(),
            schema_version: 1,
            codec: crate::codec::CodecId::Json,
            payload: Vec::new(),
            metadata: crate::event::Metadata::default(),
        };
        let [a, b] = [Uuid::now_v7(), Uuid::now_v7()];
        assert!(check_batch_ids(&stream, &[event(a), event(b)]).is_ok());
        let Err(StoreError::DuplicateEventIds(error)) =
            check_batch_ids(&stream, &[event(a), event(b), event(a)])
        else {
            panic!("a repeated id must be refused");
        };
        assert_eq!(error.duplicates.len(), 1);
        assert_eq!(error.duplicates[0].index, 2);
        assert_eq!(error.duplicates[0].stored_at, None);
        assert!(error.to_string().contains("twice in the batch"));
    }
}
