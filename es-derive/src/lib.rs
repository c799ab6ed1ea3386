//! Derive macros for [`es-core`](https://docs.rs/es-core): `#[derive(Event)]` and
//! `#[derive(Aggregate)]`. Use them through `es_core::{Event, Aggregate}`; generated code
//! refers only to `::es_core`, so a user crate needs no other dependency.
//!
//! # Attribute grammar
//!
//! Every key is optional except `events`; `?` marks an optional key.
//!
//! ```text
//! #[derive(Event)]      #[event(name = "Text"?, version = N?, upcast_from = Type?)]
//! #[derive(Aggregate)]  #[aggregate(events(Type, ...), name = "text"?, snapshot_every = N?,
//!                                   snapshot_version = N?, event_enum = Ident?)]
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `event(name)` | the type name | `Event::NAME`, the stable event type stored with every event |
//! | `event(version)` | `1` | `Event::SCHEMA_VERSION`, the schema version of the payload, from 1 |
//! | `event(upcast_from)` | none | the type of the previous schema version, converted with `From` |
//! | `aggregate(events)` | required | the event types, each once, with distinct names |
//! | `aggregate(name)` | the type name in `snake_case` | `Aggregate::TYPE`, the first half of its stream ids |
//! | `aggregate(snapshot_every)` | never | take a snapshot every `N` events (`N` > 0) |
//! | `aggregate(snapshot_version)` | `1` | bump when apply logic changes: older snapshots are ignored |
//! | `aggregate(event_enum)` | the type name + `Event` | the name of the generated enum |
//!
//! An unknown or repeated key, a value of the wrong kind, `version = 0`, an upcast chain that
//! does not lead down to an older version of the same name, or an event without an `Apply`
//! impl is a compile error at the offending token.
//!
//! # Example
//!
//! An event whose schema changed once, and an aggregate over it:
//!
//! ```
//! use es_core::{Aggregate, Apply, CodecId, Event, EventSet};
//! use serde::{Deserialize, Serialize};
//!
//! /// Version 1, still decoded from old payloads.
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "Deposited")]
//! struct DepositedV1 { amount: u32 }
//!
//! /// The current version: amounts grew to 64 bits and gained a currency.
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "Deposited", version = 2, upcast_from = DepositedV1)]
//! struct Deposited { amount: u64, currency: String }
//!
//! impl From<DepositedV1> for Deposited {
//!     fn from(old: DepositedV1) -> Self {
//!         Deposited { amount: old.amount.into(), currency: "EUR".to_owned() }
//!     }
//! }
//!
//! #[derive(Aggregate, Default, Serialize, Deserialize)]
//! #[aggregate(name = "account", events(Deposited), snapshot_every = 50, event_enum = Ledger)]
//! struct Account { balance: u64 }
//!
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, event: &Deposited) { self.balance += event.amount }
//! }
//!
//! // The generated enum, named by `event_enum`; its variants are named after the types.
//! let event = Ledger::from(Deposited { amount: 5, currency: "EUR".to_owned() });
//! assert_eq!((event.event_type(), event.schema_version()), ("Deposited", 2));
//! assert_eq!((Account::TYPE, Account::SNAPSHOT_EVERY), ("account", Some(50)));
//!
//! // A payload stored at version 1 decodes through `From`, in either codec.
//! let stored = CodecId::Postcard.encode(&DepositedV1 { amount: 7 })?;
//! let decoded = Ledger::decode("Deposited", 1, CodecId::Postcard, &stored)?;
//! let Ledger::Deposited(decoded) = decoded;
//! assert_eq!(decoded, Deposited { amount: 7, currency: "EUR".to_owned() });
//!
//! let mut account = Account::default();
//! account.apply_event(&Ledger::Deposited(decoded));
//! assert_eq!(account.balance, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it is built
//!
//! The pipeline: `attr` reads the attributes into typed models, `valid` checks them
//! (every error is reported here, spanned at the smallest token, and the model repaired where
//! a meaning remains), and `expand` generates code, which cannot fail.

mod attr;
mod errors;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

use crate::errors::Errors;

/// Implements `es_core::Event` for a struct.
///
/// ```text
/// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// #[event(name = "OrderCreated", version = 2, upcast_from = OrderCreatedV1)]
/// pub struct OrderCreated { /* ... */ }
/// ```
///
/// - `name = "..."`: `Event::NAME`, the stable event type stored with every event (default: the
///   type name).
/// - `version = N`: `Event::SCHEMA_VERSION`, the schema version of the payload, from 1 (default: 1);
///   not the stream version an event gets when it is appended.
/// - `upcast_from = Type`: the previous schema version, itself a `#[derive(Event)]` with the
///   same name and a lower version, converted with `From<Type> for Self`. Payloads stored at
///   older versions decode through the chain (`V1 -> V2 -> V3`); a version the chain does not
///   know is `DecodeError::UnknownSchemaVersion`. Both conditions are checked at compile time.
///
/// The struct also needs `Serialize`, `Deserialize`, `Clone`, `Debug` and `PartialEq`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let mut errors = Errors::default();
    let model = valid::event(&input, &mut errors);
    errors
        .finish(model.map(|model| expand::event(&model)))
        .into()
}

/// Implements `es_core::Aggregate` for a state struct and generates its event enum.
///
/// ```text
/// #[derive(Aggregate, Default, Serialize, Deserialize)]
/// #[aggregate(name = "order", events(OrderCreated, OrderShipped), snapshot_every = 100)]
/// pub struct Order { /* state */ }
///
/// impl Apply<OrderCreated> for Order { fn apply(&mut self, event: &OrderCreated) { /* ... */ } }
/// impl Apply<OrderShipped> for Order { fn apply(&mut self, event: &OrderShipped) { /* ... */ } }
/// ```
///
/// - `events(A, B, ...)`: the event types (each a `#[derive(Event)]`), required, each once,
///   with distinct `Event::NAME`s (checked at compile time).
/// - `name = "..."`: `Aggregate::TYPE`, the aggregate type, the first half of its stream ids
///   (default: the type name in `snake_case`).
/// - `snapshot_every = N`: take a snapshot every `N` events (default: never).
/// - `snapshot_version = N`: bump it (2, 3, ...) when apply logic changes what a state means
///   without changing its shape, so snapshots taken under the old logic are ignored
///   (default: 1; versions start at 1).
/// - `event_enum = Name`: the generated enum (default: the type name followed by `Event`).
///
/// Generated: `enum OrderEvent { OrderCreated(OrderCreated), ... }` with the aggregate's
/// visibility, `From<Each>` impls and `impl EventSet` (the payload is the event struct alone,
/// never the variant index), and `impl Aggregate`, whose `apply_event` dispatches to each
/// `Apply` impl and whose `SCHEMA_FINGERPRINT` hashes the state's fields, the event list
/// with each event's name and version, and `snapshot_version`. Its `snapshot_fingerprint`
/// adds the state's serde format, nested types included, traced once per type at run time.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let mut errors = Errors::default();
    let model = valid::aggregate(&input, &mut errors);
    errors
        .finish(model.map(|model| expand::aggregate(&model)))
        .into()
}
