//! The generated code names everything by absolute path and binds nothing a user's item can
//! capture: it compiles next to items that shadow the prelude, primitive types, `core`, `std`
//! and `es_core`, and next to constants named like its own bindings. Primitive types get their
//! own module: serde's derives do not survive a shadowed `u64` or `str`, ours must.

#![allow(dead_code, non_camel_case_types, non_upper_case_globals)]

mod shadowed {
    use ::es_core::{Aggregate as _, Apply, EventSet as _};
    use ::serde::{Deserialize, Serialize};

    struct Result;
    struct Option;
    struct Some;
    struct None;
    struct Ok;
    struct Err;
    struct Vec;
    struct String;
    struct Box;
    // `From`, `Clone`, `Debug`, `PartialEq`, `Default` are also derive macros and prelude
    // traits; shadow the type-namespace name only.
    type From = ();
    type Clone = ();
    type PartialEq = ();
    type Debug = ();
    type Event = ();
    type Aggregate = ();
    type EventSet = ();
    type CodecId = ();
    type DecodeError = ();

    mod core {}
    mod std {}
    mod es_core {}

    // Named like the bindings of the generated code: a binding pattern that named one of
    // these would turn into a constant pattern and fail to compile.
    const event: ::core::primitive::u8 = 0;
    const codec: ::core::primitive::u8 = 0;
    const payload: ::core::primitive::u8 = 0;
    const schema_version: ::core::primitive::u8 = 0;
    const event_type: ::core::primitive::u8 = 0;
    const hash: ::core::primitive::u8 = 0;

    #[derive(
        ::es_core::Event,
        Serialize,
        Deserialize,
        ::core::clone::Clone,
        ::core::fmt::Debug,
        ::core::cmp::PartialEq,
    )]
    #[event(name = "Opened")]
    pub struct OpenedV1;

    #[derive(
        ::es_core::Event,
        Serialize,
        Deserialize,
        ::core::clone::Clone,
        ::core::fmt::Debug,
        ::core::cmp::PartialEq,
    )]
    #[event(name = "Opened", version = 2, upcast_from = OpenedV1)]
    pub struct Opened {
        pub limit: ::core::primitive::u64,
    }

    impl ::core::convert::From<OpenedV1> for Opened {
        fn from(_: OpenedV1) -> Self {
            Opened { limit: 10 }
        }
    }

    #[derive(
        ::es_core::Event,
        Serialize,
        Deserialize,
        ::core::clone::Clone,
        ::core::fmt::Debug,
        ::core::cmp::PartialEq,
    )]
    pub struct Deposited(pub ::core::primitive::u64);

    #[derive(::es_core::Aggregate, ::core::default::Default, Serialize, Deserialize)]
    #[aggregate(events(Opened, Deposited), snapshot_every = 10)]
    pub struct Account {
        pub limit: ::core::primitive::u64,
        pub balance: ::core::primitive::u64,
    }

    impl Apply<Opened> for Account {
        fn apply(&mut self, opened: &Opened) {
            self.limit = opened.limit;
        }
    }

    impl Apply<Deposited> for Account {
        fn apply(&mut self, deposited: &Deposited) {
            self.balance += deposited.0;
        }
    }

    /// Replays a v1 `Opened` and a deposit, both stored as postcard, into a fresh account.
    pub fn replay() -> (::core::primitive::u64, ::core::primitive::u64) {
        let codec_id = ::es_core::CodecId::Postcard;
        let opened = codec_id.encode(&OpenedV1).unwrap();
        let deposited = codec_id.encode(&Deposited(5)).unwrap();
        let mut account = Account::default();
        for (name, version, bytes) in [("Opened", 1, opened), ("Deposited", 1, deposited)] {
            let decoded = AccountEvent::decode(name, version, codec_id, &bytes).unwrap();
            account.apply_event(&decoded);
        }
        (account.limit, account.balance)
    }
}

/// Shadowed primitive types, with handwritten serde impls (serde's derive needs the real ones).
mod primitives {
    use ::es_core::{Aggregate as _, Apply, EventSet as _};

    struct u8;
    struct u32;
    struct u64;
    struct str;

    /// Serializes a unit struct as `()`.
    macro_rules! unit_serde {
        ($type:ident) => {
            impl ::serde::Serialize for $type {
                fn serialize<S: ::serde::Serializer>(
                    &self,
                    serializer: S,
                ) -> ::core::result::Result<S::Ok, S::Error> {
                    serializer.serialize_unit()
                }
            }

            impl<'de> ::serde::Deserialize<'de> for $type {
                fn deserialize<D: ::serde::Deserializer<'de>>(
                    deserializer: D,
                ) -> ::core::result::Result<Self, D::Error> {
                    <() as ::serde::Deserialize>::deserialize(deserializer).map(|()| $type)
                }
            }
        };
    }

    #[derive(::es_core::Event, Clone, Debug, PartialEq)]
    #[event(version = 3)]
    pub struct Pinged;
    unit_serde!(Pinged);

    #[derive(::es_core::Aggregate, Default)]
    #[aggregate(events(Pinged), snapshot_every = 3)]
    pub struct Counter;
    unit_serde!(Counter);

    impl Apply<Pinged> for Counter {
        fn apply(&mut self, _: &Pinged) {}
    }

    /// Decodes a stored `Pinged` in both codecs and applies it.
    pub fn replay() -> ::core::primitive::usize {
        let mut counter = Counter;
        let mut applied = 0;
        for codec_id in [::es_core::CodecId::Json, ::es_core::CodecId::Postcard] {
            let bytes = codec_id.encode(&Pinged).unwrap();
            let decoded = CounterEvent::decode("Pinged", 3, codec_id, &bytes).unwrap();
            counter.apply_event(&decoded);
            applied += 1;
        }
        applied
    }
}

#[test]
fn derived_code_works_next_to_shadowing_items() {
    assert_eq!(shadowed::replay(), (10, 5));
}

#[test]
fn derived_code_works_next_to_shadowed_primitive_types() {
    assert_eq!(primitives::replay(), 2);
}
