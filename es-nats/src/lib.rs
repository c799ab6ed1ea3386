//! The event log of an es-core store, published to NATS JetStream exactly once and in order.
//!
//! - [`relay`]: publishes every committed event of a store, in global-position order, exactly
//!   once, to a JetStream stream, resuming from what the stream holds after any failure.
//! - [`envelope`]: a [`RecordedEvent`](es_core::RecordedEvent) as a NATS message (subject per
//!   aggregate type and id, the envelope fields as headers, the payload bytes as stored) and
//!   back, with a typed error for anything that is not an envelope.
//!
//! # Why a crate and not a feature of es-core
//!
//! The NATS client brings its own dependency tree (a protocol client, rustls types, URL and
//! time parsing, JetStream's API types) and its own release cadence and minimum Rust version.
//! As a separate crate it stays out of es-core's tree entirely: users of es-core who never run
//! a broker do not download, build or audit it, not even as an optional dependency in their
//! lock file, and es-core's feature matrix (sqlite, postgres, testing, metrics) does not grow a
//! dimension. es-nats depends only on es-core's public API (`Subscribe`, `RecordedEvent`), which
//! also proves that API is enough for a relay written outside the crate.
//!
//! # The NATS client
//!
//! `async-nats` 0.46, the newest release whose minimum Rust version (1.79) fits the
//! workspace's 1.85, with default features off and only `jetstream` on: the `server_2_10` and
//! later features make the client send stream and consumer settings that a 2.9 server (what
//! Debian bookworm ships) does not know, and the TLS crypto providers, nkeys, key-value, object
//! store, service API and websocket support are not needed here.

pub mod consumer;
pub mod envelope;
mod escape;
pub mod relay;
