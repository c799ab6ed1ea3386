//! The snapshot fingerprint covers the whole serialized shape of the state, nested types
//! included, and the manual `snapshot_version`: a snapshot written under one shape or apply
//! logic is never loaded into another; the repository replays from events instead.

use es_core::{Aggregate, Apply, CodecId, Event, InMemory, Repository, SnapshotStore};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Opened;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Flagged {
    pub(crate) priority: u8,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Closed;

/// The same aggregate (same name, same events, same fields written the same way) in four
/// releases: only a nested type or the apply logic differs, which the struct's own tokens
/// cannot show.
macro_rules! ticket {
    ($(#[$attr:meta])* mod $name:ident { $($status:tt)* } open_status = $open:expr) => {
        pub(crate) mod $name {
            use super::*;

            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
            pub(crate) enum Status { $($status)* }

            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
            pub(crate) struct Detail {
                pub(crate) status: Status,
                pub(crate) priority: u8,
            }

            #[derive(Aggregate, Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
            #[aggregate(name = "ticket", events(Opened, Flagged, Closed), snapshot_every = 3)]
            $(#[$attr])*
            pub(crate) struct Ticket {
                pub(crate) detail: Detail,
                pub(crate) events: u32,
            }

            impl Apply<Opened> for Ticket {
                fn apply(&mut self, _: &Opened) {
                    self.detail.status = $open;
                    self.events += 1;
                }
            }
            impl Apply<Flagged> for Ticket {
                fn apply(&mut self, event: &Flagged) {
                    self.detail.priority = event.priority;
                    self.events += 1;
                }
            }
            impl Apply<Closed> for Ticket {
                fn apply(&mut self, _: &Closed) {
                    self.detail.status = Status::Closed;
                    self.events += 1;
                }
            }
        }
    };
}

ticket!(mod v1 { #[default] New, Open, Closed } open_status = Status::Open);
// A variant inserted before `Closed`: postcard stores variants by index, so a v1 snapshot of
// a closed ticket (index 2) would decode as `Escalated`.
ticket!(mod v2 { #[default] New, Open, Escalated, Closed } open_status = Status::Open);
// A variant added at the end: old bytes still decode, yet the shape changed.
ticket!(mod v3 { #[default] New, Open, Closed, Archived } open_status = Status::Open);
// The shape of v1, with apply logic that now means something else by "open", declared by
// bumping the manual key.
ticket!(
    #[aggregate(snapshot_version = 2)]
    mod v4 { #[default] New, Open, Closed } open_status = Status::New
);

fn fingerprint<A: Aggregate>() -> u64 {
    A::snapshot_fingerprint().expect("the ticket's state traces")
}

#[test]
fn a_changed_nested_enum_changes_the_snapshot_fingerprint_but_not_the_struct_tokens() {
    // The compile-time part alone sees the same struct: this is what used to let a snapshot
    // through.
    assert_eq!(
        v1::Ticket::SCHEMA_FINGERPRINT,
        v2::Ticket::SCHEMA_FINGERPRINT
    );
    assert_eq!(
        v1::Ticket::SCHEMA_FINGERPRINT,
        v3::Ticket::SCHEMA_FINGERPRINT
    );
    let all = [
        fingerprint::<v1::Ticket>(),
        fingerprint::<v2::Ticket>(),
        fingerprint::<v3::Ticket>(),
        fingerprint::<v4::Ticket>(),
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "every release has its own snapshot fingerprint");
        }
    }
    // Computed once per type: the same value every time.
    assert_eq!(fingerprint::<v1::Ticket>(), all[0]);
    assert_eq!(
        es_core::schema::trace_fingerprint::<v1::Ticket>(v1::Ticket::SCHEMA_FINGERPRINT),
        Ok(all[0]),
        "the cached value is the traced one"
    );
}

#[test]
fn snapshot_version_changes_only_the_fingerprint_it_is_meant_to() {
    assert_ne!(
        v1::Ticket::SCHEMA_FINGERPRINT,
        v4::Ticket::SCHEMA_FINGERPRINT
    );
    assert_ne!(fingerprint::<v1::Ticket>(), fingerprint::<v4::Ticket>());
}

/// Writes a closed ticket (4 events, a snapshot at 3) with release `Old`, then loads it with
/// release `New` from the same stores.
async fn written_by<Old: Aggregate, New: Aggregate>(codec: CodecId) -> (New, u64, u64) {
    let store = InMemory::new();
    let old = Repository::<Old, _>::new(store.clone())
        .with_snapshots(store.clone())
        .with_codec(codec);
    let mut root = old.load("t-1").await.unwrap();
    for event in [
        serde_json::json!({"Opened": null}),
        serde_json::json!({"Flagged": {"priority": 9}}),
        serde_json::json!({"Closed": null}),
        serde_json::json!({"Flagged": {"priority": 4}}),
    ] {
        root.record(event_of::<Old>(&event));
    }
    old.save(&mut root).await.unwrap();
    let snapshot = store
        .load_snapshot(&Old::stream_id("t-1"))
        .await
        .unwrap()
        .expect("the policy took a snapshot");
    assert_eq!(snapshot.fingerprint, fingerprint::<Old>());

    let new = Repository::<New, _>::new(store.clone())
        .with_snapshots(store.clone())
        .with_codec(codec);
    let loaded = new.load("t-1").await.unwrap().into_state();
    (loaded, new.snapshot_fallbacks(), store.snapshot_fallbacks())
}

/// The event `{"Name": payload}` as `A`'s event enum, through the event's own decoder.
fn event_of<A: Aggregate>(event: &serde_json::Value) -> A::Event {
    use es_core::EventSet;
    let (name, payload) = event.as_object().unwrap().iter().next().unwrap();
    let payload = if payload.is_null() {
        b"null".to_vec()
    } else {
        serde_json::to_vec(payload).unwrap()
    };
    A::Event::decode(name, 1, CodecId::Json, &payload).unwrap()
}

/// The state a full replay gives `A`.
async fn replayed<A: Aggregate>(codec: CodecId) -> A {
    let store = InMemory::new();
    let repository = Repository::<A, _>::new(store.clone()).with_codec(codec);
    let mut root = repository.load("t-1").await.unwrap();
    for event in [
        serde_json::json!({"Opened": null}),
        serde_json::json!({"Flagged": {"priority": 9}}),
        serde_json::json!({"Closed": null}),
        serde_json::json!({"Flagged": {"priority": 4}}),
    ] {
        root.record(event_of::<A>(&event));
    }
    repository.save(&mut root).await.unwrap();
    repository.load("t-1").await.unwrap().into_state()
}

#[tokio::test]
async fn a_variant_inserted_in_a_nested_enum_falls_back_to_replay_never_the_wrong_state() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let (loaded, fallbacks, store_fallbacks) =
            written_by::<v1::Ticket, v2::Ticket>(codec).await;
        assert_eq!(loaded.detail.status, v2::Status::Closed, "{codec}");
        assert_eq!(loaded, replayed::<v2::Ticket>(codec).await, "{codec}");
        assert_eq!((fallbacks, store_fallbacks), (1, 1), "{codec}: counted");
    }
    // What the fingerprint prevents: the v1 postcard bytes decode into v2 without an error,
    // as the wrong state.
    let closed = v1::Ticket {
        detail: v1::Detail {
            status: v1::Status::Closed,
            priority: 4,
        },
        events: 4,
    };
    let bytes = CodecId::Postcard.encode(&closed).unwrap();
    let misread: v2::Ticket = CodecId::Postcard.decode(&bytes).unwrap();
    assert_eq!(misread.detail.status, v2::Status::Escalated);
}

#[tokio::test]
async fn a_variant_added_at_the_end_of_a_nested_enum_falls_back_to_replay() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let (loaded, fallbacks, _) = written_by::<v1::Ticket, v3::Ticket>(codec).await;
        assert_eq!(loaded, replayed::<v3::Ticket>(codec).await, "{codec}");
        assert_eq!(fallbacks, 1, "{codec}");
    }
}

#[tokio::test]
async fn a_bumped_snapshot_version_falls_back_to_replay_under_the_new_apply_logic() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let (loaded, fallbacks, _) = written_by::<v1::Ticket, v4::Ticket>(codec).await;
        // v4's apply logic: opening leaves the status `New`; closing still closes.
        assert_eq!(loaded, replayed::<v4::Ticket>(codec).await, "{codec}");
        assert_eq!(fallbacks, 1, "{codec}");
    }
}

#[tokio::test]
async fn the_same_release_uses_its_own_snapshots() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let (loaded, fallbacks, _) = written_by::<v1::Ticket, v1::Ticket>(codec).await;
        assert_eq!(loaded, replayed::<v1::Ticket>(codec).await, "{codec}");
        assert_eq!(fallbacks, 0, "{codec}");
    }
}

/// A state holding a self-describing value: `serde_json::Value` asks the format to describe
/// itself (`deserialize_any`), which a tracer cannot answer.
#[derive(Aggregate, Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "note", events(Opened, Flagged), snapshot_every = 1)]
pub(crate) struct Note {
    pub(crate) extra: serde_json::Value,
    pub(crate) events: u32,
}

impl Apply<Opened> for Note {
    fn apply(&mut self, _: &Opened) {
        self.events += 1;
    }
}
impl Apply<Flagged> for Note {
    fn apply(&mut self, event: &Flagged) {
        self.extra = serde_json::json!({ "priority": event.priority });
        self.events += 1;
    }
}

#[tokio::test]
async fn a_state_that_cannot_be_traced_is_never_snapshotted() {
    let error = Note::snapshot_fingerprint().expect_err("serde_json::Value cannot be traced");
    assert!(error.type_name.ends_with("Note"), "{error}");
    assert!(
        error.to_string().contains("neither taken nor used"),
        "{error}"
    );

    let store = InMemory::new();
    let repository = Repository::<Note, _>::new(store.clone()).with_snapshots(store.clone());
    let mut root = repository.load("n-1").await.unwrap();
    root.record(Opened);
    root.record(Flagged { priority: 3 });
    repository.save(&mut root).await.unwrap();
    assert_eq!(
        store.load_snapshot(&Note::stream_id("n-1")).await.unwrap(),
        None,
        "no snapshot under a fingerprint that cannot see the shape"
    );
    let loaded = repository.load("n-1").await.unwrap();
    assert_eq!(loaded.state().events, 2);
    assert_eq!(loaded.state().extra["priority"], 3);
    assert_eq!(repository.snapshot_fallbacks(), 0);
}
