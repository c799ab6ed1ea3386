//! Command ids: deterministic event ids, so that running a command again after a lost reply
//! stores nothing new.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::types::StreamId;

/// The id of one command (one business request), chosen by whoever sends it and sent again
/// with every retry of that request.
///
/// Events saved for a command get ids derived from the command id, the stream and their index
/// in the command's batch ([`CommandId::event_id`]). A retry of the command produces the same
/// ids, and the store recognises a batch it already holds (its original outcome is returned,
/// nothing is stored again; see the [`EventStore`](crate::EventStore) contract). Use
/// [`Repository::update_with_command_id`](crate::Repository::update_with_command_id) or
/// [`Repository::save_with_command_id`](crate::Repository::save_with_command_id).
///
/// # The derived ids
///
/// A derived id is a UUID version 8 (the layout is this crate's): its first 12 bytes are from
/// SHA-1 of the command id and the stream (a name-based UUID v5 with the command id as
/// namespace, as in RFC 9562), its last 4 bytes the event's index in big-endian order, with
/// the version and variant bits set as RFC 9562 requires. Two events get the same id only if
/// they have the same command id, stream and index, or by a collision of 90 hash bits (about
/// one in 10^27 per pair). The index in plain sight lets a repository recognise the events
/// of a command from their ids alone ([`CommandId::event_index`]).
///
/// Unlike the UUID v7 ids of [`NewEvent::encode`](crate::NewEvent::encode), derived ids do not
/// sort by creation time. Nothing in this crate orders events by id (streams are ordered by
/// version, the log by position); but a reader that sorted event ids to recover creation order
/// would get an arbitrary order for these events, and a database index on event ids takes
/// them at random places instead of at its end (slightly more page splits than for v7 ids).
///
/// # Examples
///
/// ```
/// use es_core::{CommandId, StreamId};
///
/// let command = CommandId::new(uuid::Uuid::now_v7());
/// let stream = StreamId::new("order", "42");
/// let first = command.event_id(&stream, 0);
/// assert_eq!(first, command.event_id(&stream, 0)); // the same on every retry
/// assert_ne!(first, command.event_id(&stream, 1));
/// assert_ne!(first, command.event_id(&StreamId::new("order", "43"), 0));
/// assert_eq!(command.event_index(&stream, first), Some(0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandId(Uuid);

impl CommandId {
    /// The command id `id` (any UUID; a v7 or v4 chosen when the request is first made).
    #[must_use]
    pub const fn new(id: Uuid) -> Self {
        CommandId(id)
    }

    /// The command id as a UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The id of the event at `index` (from 0) of this command's batch for `stream`.
    #[must_use]
    pub fn event_id(&self, stream: &StreamId, index: u32) -> Uuid {
        let mut bytes = self.stream_hash(stream);
        bytes[12..].copy_from_slice(&index.to_be_bytes());
        Uuid::new_v8(bytes)
    }

    /// The index of `event_id` in this command's batch for `stream`, if it is one of its ids.
    #[must_use]
    pub fn event_index(&self, stream: &StreamId, event_id: Uuid) -> Option<u32> {
        let bytes = event_id.as_bytes();
        let index = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        (self.event_id(stream, index) == event_id).then_some(index)
    }

    /// 16 bytes whose first 12 identify (command, stream).
    fn stream_hash(&self, stream: &StreamId) -> [u8; 16] {
        // 0xFF separates the parts: UTF-8 text never holds that byte, so distinct
        // (type, id) pairs give distinct names.
        let mut name =
            Vec::with_capacity(16 + stream.aggregate_type().len() + stream.aggregate_id().len());
        name.extend_from_slice(b"es-core event");
        name.push(0xFF);
        name.extend_from_slice(stream.aggregate_type().as_bytes());
        name.push(0xFF);
        name.extend_from_slice(stream.aggregate_id().as_bytes());
        Uuid::new_v5(&self.0, &name).into_bytes()
    }
}

impl From<Uuid> for CommandId {
    fn from(id: Uuid) -> Self {
        CommandId(id)
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn idempotent_derived_ids_are_stable_distinct_and_recognised() {
        let command = CommandId::new(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
        let other = CommandId::new(Uuid::from_u128(1));
        let streams = [
            StreamId::new("order", "1"),
            StreamId::new("order", "2"),
            StreamId::new("order1", ""),
            StreamId::new("orde", "r1"),
        ];
        let mut seen = HashSet::new();
        for stream in &streams {
            for index in [0, 1, 2, 255, 256, u32::MAX] {
                let id = command.event_id(stream, index);
                assert_eq!(id.get_version_num(), 8);
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
                assert!(seen.insert(id), "{stream} #{index} repeats an id");
                assert_eq!(command.event_index(stream, id), Some(index));
                assert_eq!(other.event_index(stream, id), None);
                assert_ne!(other.event_id(stream, index), id);
            }
        }
        assert_eq!(command.event_index(&streams[0], Uuid::now_v7()), None);
        // The same inputs give the same id in every release (stored ids depend on it): this
        // value was computed independently (SHA-1 of the namespace bytes and the name, the
        // first 12 bytes, the index, then the version and variant bits).
        assert_eq!(
            command.event_id(&streams[0], 1).to_string(),
            "ee91201c-ea7b-8aff-93f1-63c300000001"
        );
    }
}
