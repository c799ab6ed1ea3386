//! Properties over random inputs: replay equivalence with snapshots, envelope round trips in
//! both codecs, and decoders that answer bad bytes with errors, never panics.

mod support;

use std::collections::BTreeMap;

use es_core::Codec;
use es_core::{
    Aggregate, CodecId, EventSet, EventStore, ExpectedVersion, GlobalPosition, InMemory, Json,
    ManualClock, Metadata, NewEvent, Postcard, RecordedEvent, Repository, SavedProjection,
    Snapshot, SnapshotStore, StreamId, Timestamp, Version,
};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use support::{deposited, opened, withdrawn, Account, AccountEvent};
use uuid::Uuid;

const CODECS: [CodecId; 2] = [CodecId::Json, CodecId::Postcard];

// ---------------------------------------------------------------------------------------------
// Strategies.

/// One step of an account's life, before it is made valid against the balance.
#[derive(Clone, Debug)]
enum Step {
    Deposit(u64, String),
    Withdraw(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..1_000_000_u64, "\\PC{0,12}")
            .prop_map(|(amount, reference)| Step::Deposit(amount, reference)),
        any::<u64>().prop_map(Step::Withdraw),
    ]
}

/// A valid history: the account is opened, then deposits and withdrawals that never overdraw.
fn history() -> impl Strategy<Value = Vec<AccountEvent>> {
    ("\\PC{0,16}", prop::collection::vec(step(), 0..40)).prop_map(|(owner, steps)| {
        let mut events = vec![opened(&owner)];
        let mut balance = 0_u64;
        for step in steps {
            match step {
                Step::Deposit(amount, reference) => {
                    balance += amount;
                    events.push(deposited(amount, &reference));
                }
                Step::Withdraw(raw) if balance > 0 => {
                    let amount = 1 + raw % balance;
                    balance -= amount;
                    events.push(withdrawn(amount));
                }
                Step::Withdraw(_) => {}
            }
        }
        events
    })
}

fn codec() -> impl Strategy<Value = CodecId> {
    prop_oneof![Just(CodecId::Json), Just(CodecId::Postcard)]
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp::from_micros)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    ("\\PC{0,12}", ".{0,12}").prop_map(|(aggregate_type, id)| StreamId::new(aggregate_type, id))
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (
        prop::option::of(uuid()),
        prop::option::of(uuid()),
        prop::collection::btree_map(".{0,8}", ".{0,16}", 0..5),
    )
        .prop_map(
            |(correlation_id, causation_id, extra): (_, _, BTreeMap<_, _>)| Metadata {
                correlation_id,
                causation_id,
                extra,
            },
        )
}

fn new_event() -> impl Strategy<Value = NewEvent> {
    (
        uuid(),
        ".{0,24}",
        any::<u32>(),
        codec(),
        bytes(),
        metadata(),
    )
        .prop_map(
            |(event_id, event_type, schema_version, codec, payload, metadata)| NewEvent {
                event_id,
                event_type: event_type.into(),
                schema_version,
                codec,
                payload,
                metadata,
            },
        )
}

fn recorded_event() -> impl Strategy<Value = RecordedEvent> {
    (
        new_event(),
        stream_id(),
        any::<u64>(),
        any::<u64>(),
        timestamp(),
    )
        .prop_map(
            |(event, stream, version, position, recorded_at)| RecordedEvent {
                event_id: event.event_id,
                stream,
                version: Version(version),
                global_position: GlobalPosition(position),
                recorded_at,
                event_type: event.event_type,
                schema_version: event.schema_version,
                codec: event.codec,
                metadata: event.metadata.into(),
                payload: event.payload.into(),
            },
        )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        stream_id(),
        any::<u64>(),
        any::<u64>(),
        codec(),
        bytes(),
        timestamp(),
    )
        .prop_map(
            |(stream, version, fingerprint, codec, state, taken_at)| Snapshot {
                stream,
                version: Version(version),
                fingerprint,
                codec,
                state,
                taken_at,
            },
        )
}

fn saved_projection() -> impl Strategy<Value = SavedProjection> {
    (".{0,16}", any::<u64>(), codec(), bytes(), timestamp()).prop_map(
        |(name, position, codec, state, saved_at)| SavedProjection {
            name,
            position: GlobalPosition(position),
            codec,
            state,
            saved_at,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn replay(events: &[AccountEvent]) -> Account {
    replay_onto(Account::default(), events)
}

fn replay_onto(mut state: Account, events: &[AccountEvent]) -> Account {
    for event in events {
        state.apply_event(event);
    }
    state
}

/// Asserts that `value` survives both codecs unchanged.
fn assert_round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for codec in CODECS {
        let bytes = codec
            .encode(value)
            .map_err(|e| TestCaseError::fail(format!("{codec} encode: {e}")))?;
        let back: T = codec
            .decode(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{codec} decode: {e:?}")))?;
        prop_assert_eq!(&back, value, "{} round trip", codec);
    }
    Ok(())
}

/// Asserts that every strict prefix of `value`'s encoding fails to decode, in both codecs.
fn assert_truncations_fail<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    for codec in CODECS {
        let bytes = codec.encode(value).expect("encodes");
        for len in 0..bytes.len() {
            let decoded = codec.decode::<T>(&bytes[..len]);
            prop_assert!(
                decoded.is_err(),
                "{} prefix of {} of {} bytes decoded as {:?}",
                codec,
                len,
                bytes.len(),
                decoded
            );
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

// ---------------------------------------------------------------------------------------------
// Replay equivalence.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The state rebuilt from all events equals the state restored from a snapshot taken after
    /// any `k` events (encoded and decoded in either codec) with the tail applied; and every
    /// event survives its stored form.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(events in history()) {
        let full = replay(&events);
        for codec in CODECS {
            for k in 0..=events.len() {
                let encoded = codec.encode(&replay(&events[..k])).expect("state encodes");
                let restored: Account = codec.decode(&encoded).expect("state decodes");
                prop_assert_eq!(replay_onto(restored, &events[k..]), full.clone(), "{} at {}", codec, k);
            }
            for event in &events {
                let stored = NewEvent::encode(event, codec).expect("event encodes");
                let decoded = AccountEvent::decode(
                    &stored.event_type,
                    stored.schema_version,
                    stored.codec,
                    &stored.payload,
                ).expect("event decodes");
                prop_assert_eq!(&decoded, event);
            }
        }
    }

    /// Through the repository and the in-memory store: a load using a snapshot at any version
    /// `k` gives the state and version of a load replaying every event.
    #[test]
    fn repository_loads_agree_with_and_without_snapshots(
        events in history(),
        k_seed in any::<usize>(),
        codec in codec(),
    ) {
        let k = k_seed % (events.len() + 1);
        runtime().block_on(async {
            let store = InMemory::with_clock(ManualClock::new(Timestamp::EPOCH));
            let stream = Account::stream_id("p");
            let stored: Vec<NewEvent> = events
                .iter()
                .map(|e| NewEvent::encode(e, codec).expect("event encodes"))
                .collect();
            store.append(&stream, ExpectedVersion::NoStream, stored).await.expect("append");
            let snapshots = InMemory::new();
            snapshots.save_snapshot(Snapshot {
                stream: stream.clone(),
                version: Version(k as u64),
                fingerprint: Account::snapshot_fingerprint().unwrap(),
                codec,
                state: codec.encode(&replay(&events[..k])).expect("state encodes"),
                taken_at: Timestamp::EPOCH,
            }).await.expect("snapshot saved");

            let plain = Repository::<Account, _>::new(store.clone()).load("p").await.expect("load");
            let with_snapshot = Repository::<Account, _>::new(store)
                .with_snapshots(snapshots);
            let loaded = with_snapshot.load("p").await.expect("load with snapshot");
            prop_assert_eq!(loaded.state(), plain.state());
            prop_assert_eq!(loaded.version(), Version(events.len() as u64));
            prop_assert_eq!(plain.state(), &replay(&events));
            prop_assert_eq!(with_snapshot.snapshot_fallbacks(), 0);
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// Envelope round trips.

proptest! {
    #[test]
    fn metadata_round_trips(value in metadata()) {
        assert_round_trips(&value)?;
    }

    #[test]
    fn new_event_round_trips(value in new_event()) {
        assert_round_trips(&value)?;
    }

    #[test]
    fn recorded_event_round_trips(value in recorded_event()) {
        assert_round_trips(&value)?;
    }

    #[test]
    fn snapshot_round_trips(value in snapshot()) {
        assert_round_trips(&value)?;
    }

    #[test]
    fn saved_projection_round_trips(value in saved_projection()) {
        assert_round_trips(&value)?;
    }

    #[test]
    fn stream_ids_versions_positions_and_timestamps_round_trip(
        stream in stream_id(),
        version in any::<u64>(),
        position in any::<u64>(),
        at in timestamp(),
    ) {
        assert_round_trips(&stream)?;
        assert_round_trips(&Version(version))?;
        assert_round_trips(&GlobalPosition(position))?;
        assert_round_trips(&at)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Bad bytes: errors, never panics.

proptest! {
    /// Random stored events (known or unknown types and versions, random payloads) decode to
    /// a value or a typed error; the call never panics.
    #[test]
    fn random_payloads_never_panic_the_event_decoder(
        mut event in recorded_event(),
        known_type in prop::sample::select(AccountEvent::EVENT_TYPES),
        use_known_type in any::<bool>(),
        schema_version in 0..4_u32,
    ) {
        if use_known_type {
            event.event_type = known_type.into();
            event.schema_version = schema_version;
        }
        let _ = event.decode::<AccountEvent>();
    }

    /// A payload cut short never decodes, in either codec, at any schema version.
    #[test]
    fn truncated_payloads_are_decode_errors(events in history(), codec in codec()) {
        for event in &events {
            let stored = NewEvent::encode(event, codec).expect("event encodes");
            for len in 0..stored.payload.len() {
                let result = AccountEvent::decode(
                    &stored.event_type,
                    stored.schema_version,
                    codec,
                    &stored.payload[..len],
                );
                prop_assert!(
                    result.is_err(),
                    "{} prefix of {} bytes of {:?} decoded as {:?}",
                    codec, len, event, result
                );
            }
        }
    }

    /// Random bytes fed to the envelope decoders give a value or an error, never a panic.
    #[test]
    fn random_bytes_never_panic_the_envelope_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Postcard::decode::<RecordedEvent>(&bytes);
        let _ = Postcard::decode::<NewEvent>(&bytes);
        let _ = Postcard::decode::<Snapshot>(&bytes);
        let _ = Postcard::decode::<SavedProjection>(&bytes);
        let _ = Postcard::decode::<Metadata>(&bytes);
        let _ = Json::decode::<RecordedEvent>(&bytes);
        let _ = Json::decode::<Snapshot>(&bytes);
        let _ = Postcard::decode::<Account>(&bytes);
        let _ = Json::decode::<Account>(&bytes);
    }

}

proptest! {
    // Every prefix of every encoding is decoded: fewer, larger cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Flipping bytes of a valid postcard envelope gives a value or an error, never a panic;
    /// cutting it short always gives an error.
    #[test]
    fn damaged_envelopes_are_errors_not_panics(
        event in recorded_event(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        assert_truncations_fail(&event)?;
        let mut bytes = Postcard::encode(&event).expect("encodes");
        for (index, mask) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= mask;
        }
        let _ = Postcard::decode::<RecordedEvent>(&bytes);
    }

    #[test]
    fn truncated_snapshots_and_projections_are_errors(
        snapshot in snapshot(),
        saved in saved_projection(),
        metadata in metadata(),
    ) {
        assert_truncations_fail(&snapshot)?;
        assert_truncations_fail(&saved)?;
        assert_truncations_fail(&metadata)?;
    }
}
