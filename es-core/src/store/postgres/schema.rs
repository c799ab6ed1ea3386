//! The database layout: the schema name, the SQL of every statement, and the migration that
//! creates the tables on connect.
//!
//! All tables live in one PostgreSQL schema whose name comes from configuration. The name is
//! checked to be a plain lowercase identifier before it is ever put in SQL text (and quoted
//! there as well); every value is a bound parameter.

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::IsolationLevel;

use super::errors::query_error;
use crate::store::StoreError;

/// The newest schema version this release reads and writes. Version 2 made event ids unique
/// (the constraint [`EVENT_ID_CONSTRAINT`]), version 3 added the `leases` table; an older store
/// is upgraded on connect.
pub(super) const SCHEMA_VERSION: u32 = 3;

/// The microseconds since the Unix epoch by the database server's clock: leases expire by it
/// alone, so the nodes' clocks may differ.
const SERVER_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// Sent in an append's transaction right before its insert: no sequential scans until the
/// transaction ends.
///
/// The insert is a prepared statement, and once it has run a few times PostgreSQL keeps one
/// generic plan for it until the table's statistics change (an `ANALYZE`, by hand or by
/// autovacuum). Planned while `events` is small, the insert's check that none of the batch's
/// event ids is stored becomes a sequential scan testing every stored row against every id of
/// the batch, and the plan stays so however large the table grows meanwhile: an append then
/// costs the table's size times the batch's (35 ms for 100 events to a young store of some
/// 10,000 rows, where a plain `INSERT` per event takes 5 ms in all). Even a fresh plan prefers
/// that scan up to tens of thousands of rows. Without sequential scans, the check probes the
/// event id index whatever the table's size.
///
/// Only after the in-flight mark: that statement reads the sequence, which only a sequential
/// scan can read, and a disabled scan's cost would make PostgreSQL compile the statement to
/// machine code (JIT) on every append, which takes far longer than running it. The statements
/// that follow read `events` by index either way.
pub(super) const INDEX_SCANS_ONLY: &str = "SET LOCAL enable_seqscan = off";

/// The unique constraint on `events.event_id` (schema version 2).
pub(super) const EVENT_ID_CONSTRAINT: &str = "events_event_id_key";

/// The value of the `format` row of the `meta` table, which marks a schema as an event store.
const FORMAT: &str = "es-core event store";

/// The tables of every schema version (version 3 adds `leases`).
const TABLES: [&str; 4] = ["events", "meta", "projections", "snapshots"];

/// A validated PostgreSQL schema name: 1 to 63 bytes of `a-z`, `0-9` and `_`, not starting
/// with a digit, and not `pg_`-prefixed (PostgreSQL reserves those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SchemaName(String);

impl SchemaName {
    /// Checks `name`.
    pub(super) fn parse(name: &str) -> Result<Self, StoreError> {
        let invalid = |why: &str| {
            Err(StoreError::Config(format!(
                "`{}` is not a valid schema name: {why}",
                name.escape_debug()
            )))
        };
        if name.is_empty() || name.len() > 63 {
            return invalid("it must be 1 to 63 characters long");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return invalid("use only lowercase letters `a-z`, digits and `_`");
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return invalid("it must not start with a digit");
        }
        if name.starts_with("pg_") {
            return invalid("the prefix `pg_` is reserved by PostgreSQL");
        }
        Ok(SchemaName(name.to_owned()))
    }

    /// The name as given.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an SQL identifier. Validation already excludes every character
    /// that needs escaping; the quotes keep reserved words (`user`, `order`) usable.
    fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// A 64-bit advisory-lock key for `parts`, stable across processes and releases (FNV-1a).
/// Parts are separated by `0xFF`, a byte UTF-8 text never contains, so distinct part lists
/// give distinct inputs.
pub(super) fn lock_key(parts: &[&str]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(b'e');
    feed(b's');
    for part in parts {
        feed(0xFF);
        part.bytes().for_each(&mut feed);
    }
    hash as i64
}

/// The columns of an event row, in the order [`super::rows::recorded_event`] reads them.
pub(super) const EVENT_COLUMNS: &str = "global_position, aggregate_type, aggregate_id, version, \
     event_id, event_type, schema_version, codec, payload, metadata::text, recorded_at";

/// Every statement the store runs, with the schema name filled in.
#[derive(Debug)]
pub(super) struct Sql {
    /// `$1` stream lock key: serializes appends to one stream until commit.
    pub lock_stream: String,
    /// `$1` sorted stream lock keys: locks every stream of a multi-stream append, in the
    /// array's order (ascending), so two such appends never wait on each other in a cycle.
    pub lock_streams: String,
    /// `$1` positions key: the session lock that makes one insert at a time take positions,
    /// so each append's events get one contiguous run of the global order.
    pub lock_positions: String,
    /// `$1` positions key: releases [`Sql::lock_positions`].
    pub unlock_positions: String,
    /// Checks every stream's expected version and inserts every batch of a multi-stream
    /// append, or nothing; returns `global_position, aggregate_type, aggregate_id, version`.
    pub append_streams: String,
    /// `$1, $2` aggregate types and ids: each stream's last version (or NULL), in order.
    pub stream_versions: String,
    /// `$1` in-flight tag: takes the shared lock that marks this transaction as holding
    /// positions from the next one the sequence hands out (see the module docs).
    pub mark_in_flight: String,
    /// Checks the expected version and inserts a batch; returns `global_position, version`
    /// of each inserted row (none on a version mismatch).
    pub append: String,
    /// `$1, $2` the stream: its last version, or NULL.
    pub stream_version: String,
    /// `$1` event ids: `event_id, aggregate_type, aggregate_id, version, global_position` of
    /// each one stored.
    pub find_event_ids: String,
    /// `$1, $2` stream, `$3..=$4` versions.
    pub read_stream: String,
    /// `$1, $2` stream, `$3` last version: the events from the version of the stream's
    /// snapshot (when it lies in `1..=$3`, else from 1) to `$3`.
    pub read_stream_from_snapshot: String,
    /// `$1, $2` stream, `$3` recorded at or before.
    pub read_stream_until: String,
    /// The position the sequence hands out next.
    pub next_position: String,
    /// `$1` in-flight tag: the low 32 bits of the first position of each append in flight.
    pub in_flight: String,
    /// `$1` after position, `$2` bound (exclusive), `$3` limit.
    pub read_all: String,
    /// `$1` bound (exclusive): the last position below it.
    pub last_position: String,
    /// `$1` after position, `$2` last position scanned (inclusive), `$3` aggregate types
    /// and `$4` event types (each empty: any), `$5` limit.
    pub read_page: String,
    /// Wakes the store's subscriptions once the transaction commits.
    pub notify: String,
    /// Upserts a snapshot unless a newer one is stored.
    pub save_snapshot: String,
    /// Upserts a snapshot whatever is stored (its version may be unreadable).
    pub replace_snapshot: String,
    /// `$1, $2` the stream.
    pub load_snapshot: String,
    /// Upserts a projection's state and checkpoint.
    pub save_projection: String,
    /// `$1` the projection name.
    pub load_projection: String,
    /// `$1` name, `$2` holder, `$3` lease time in microseconds: grants a free lease, raising
    /// its token; returns `token, expires_at`, or no row when it is held.
    pub acquire_lease: String,
    /// `$1` name, `$2` holder, `$3` token, `$4` lease time: extends a held lease; returns
    /// `expires_at`, or no row when it was lost.
    pub renew_lease: String,
    /// `$1` name, `$2` holder, `$3` token: releases a held lease (the token stays).
    pub release_lease: String,
    /// `$1` name: `holder, token, expires_at`.
    pub load_lease: String,
}

/// The snapshot upserts for the quoted schema `s`: the one that keeps a newer stored snapshot,
/// and the one that replaces whatever is stored.
fn snapshot_upserts(s: &str) -> (String, String) {
    let replace = format!(
        "INSERT INTO {s}.snapshots AS stored (aggregate_type, aggregate_id, version,
             fingerprint, codec, state, taken_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
         SET version = excluded.version, fingerprint = excluded.fingerprint,
             codec = excluded.codec, state = excluded.state, taken_at = excluded.taken_at"
    );
    let save = format!("{replace}\n WHERE stored.version <= excluded.version");
    (save, replace)
}

impl Sql {
    /// The statements for the tables in `schema`, notifying `channel` (a validated
    /// identifier) of appends.
    pub(super) fn new(schema: &SchemaName, channel: &str) -> Self {
        let s = schema.quoted();
        let next = format!(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
             FROM {s}.events_global_position_seq"
        );
        let (save_snapshot, replace_snapshot) = snapshot_upserts(&s);
        Sql {
            lock_stream: "SELECT pg_advisory_xact_lock($1)".to_owned(),
            // `unnest` yields the keys in array order and the aggregate calls the lock
            // function row by row as they come.
            lock_streams: "SELECT count(pg_advisory_xact_lock(key)) FROM unnest($1::bigint[]) AS key"
                .to_owned(),
            lock_positions: "SELECT pg_advisory_lock($1)".to_owned(),
            unlock_positions: "SELECT pg_advisory_unlock($1)".to_owned(),
            append_streams: append_streams(&s),
            stream_versions: stream_versions(&s),
            // Reads the next position, then locks on its low 32 bits: the lock is visible to
            // readers before this transaction takes any position, and its positions are at
            // least the one locked on.
            mark_in_flight: format!(
                "SELECT pg_advisory_xact_lock_shared($1::int4,
                     ((CASE WHEN is_called THEN last_value + 1 ELSE last_value END)
                         & 4294967295)::bit(32)::int4)
                 FROM {s}.events_global_position_seq"
            ),
            // `$3` is the kind of expectation (0 any, 1 no stream, 2 stream exists, 3 exact)
            // and `$4` the exact version. The statement's snapshot is taken after the stream
            // lock is held, so `current` is the stream's committed last version. `$5` is the
            // clock's time, raised to the stream's last `recorded_at` if the clock (or another
            // node's) is behind, so a stream's times never run backwards against its versions.
            append: append(&s),
            stream_version: format!(
                "SELECT max(version) FROM {s}.events WHERE aggregate_type = $1 AND aggregate_id = $2"
            ),
            find_event_ids: find_event_ids(&s),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version BETWEEN $3 AND $4
                 ORDER BY version"
            ),
            read_stream_from_snapshot: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version <= $3
                   AND version >= COALESCE((
                     SELECT version FROM {s}.snapshots
                     WHERE aggregate_type = $1 AND aggregate_id = $2 AND version BETWEEN 1 AND $3
                   ), 1)
                 ORDER BY version"
            ),
            read_stream_until: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3
                 ORDER BY version"
            ),
            next_position: next,
            in_flight: "SELECT objid::bigint FROM pg_locks
                 WHERE locktype = 'advisory' AND objsubid = 2 AND classid = $1::bigint::oid
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                .to_owned(),
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                 WHERE global_position > $1 AND global_position < $2
                 ORDER BY global_position
                 LIMIT $3"
            ),
            last_position: format!(
                "SELECT max(global_position) FROM {s}.events WHERE global_position < $1"
            ),
            read_page: read_page_sql(&s),
            // Delivered at commit, once per transaction however often it is sent.
            notify: format!("NOTIFY \"{channel}\""),
            save_snapshot,
            replace_snapshot,
            load_snapshot: format!(
                "SELECT version, fingerprint, codec, state, taken_at FROM {s}.snapshots
                 WHERE aggregate_type = $1 AND aggregate_id = $2"
            ),
            save_projection: format!(
                "INSERT INTO {s}.projections (name, position, codec, state, saved_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE
                 SET position = excluded.position, codec = excluded.codec,
                     state = excluded.state, saved_at = excluded.saved_at"
            ),
            load_projection: format!(
                "SELECT position, codec, state, saved_at FROM {s}.projections WHERE name = $1"
            ),
            acquire_lease: format!(
                "INSERT INTO {s}.leases AS held (name, holder, token, expires_at)
                 VALUES ($1, $2, 1, {SERVER_NOW} + $3)
                 ON CONFLICT (name) DO UPDATE
                 SET holder = excluded.holder, token = held.token + 1,
                     expires_at = excluded.expires_at
                 WHERE held.holder = '' OR held.expires_at <= {SERVER_NOW}
                 RETURNING token, expires_at"
            ),
            renew_lease: format!(
                "UPDATE {s}.leases SET expires_at = {SERVER_NOW} + $4
                 WHERE name = $1 AND holder = $2 AND token = $3 AND holder <> ''
                 RETURNING expires_at"
            ),
            release_lease: format!(
                "UPDATE {s}.leases SET holder = '', expires_at = -9223372036854775808
                 WHERE name = $1 AND holder = $2 AND token = $3 AND holder <> ''"
            ),
            load_lease: format!("SELECT holder, token, expires_at FROM {s}.leases WHERE name = $1"),
        }
    }
}

/// The filtered page read of subscriptions (see `Sql::read_page`) for the tables in `s`,
/// the quoted schema name. The filter lists are bound as arrays, so one prepared statement
/// serves every filter; the position range keeps the scan on the primary key.
fn read_page_sql(s: &str) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM {s}.events
         WHERE global_position > $1 AND global_position <= $2
           AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3::text[]))
           AND (cardinality($4::text[]) = 0 OR event_type = ANY($4::text[]))
         ORDER BY global_position
         LIMIT $5"
    )
}

/// The multi-stream insert (see [`Sql::append_streams`]) for the tables in `s` (quoted).
///
/// `$1..$4` one element per stream: aggregate type, id, expectation kind (as in `append`) and
/// exact version; `$5` the clock's time; `$6` each event's stream (1-based index into `$1`),
/// `$7` its place in its stream's batch (from 1), and `$8..$13` its columns. One time for the
/// whole append: the clock's, raised to the latest last time of the streams. Nothing is
/// inserted unless every check holds and no event id of the append is stored.
fn append_streams(s: &str) -> String {
    format!(
        "WITH streams AS (
             SELECT requested.number, requested.aggregate_type, requested.aggregate_id,
                 requested.kind, requested.exact, last.version, last.recorded_at
             FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[])
                 WITH ORDINALITY
                 AS requested(aggregate_type, aggregate_id, kind, exact, number)
             LEFT JOIN LATERAL (
                 SELECT version, recorded_at FROM {s}.events
                 WHERE aggregate_type = requested.aggregate_type
                   AND aggregate_id = requested.aggregate_id
                 ORDER BY version DESC LIMIT 1
             ) AS last ON true
         ), checked AS (
             SELECT bool_and(CASE kind
                     WHEN 0 THEN true
                     WHEN 1 THEN version IS NULL
                     WHEN 2 THEN version IS NOT NULL
                     ELSE COALESCE(version, 0) = exact
                 END) AS holds,
                 GREATEST($5::bigint, max(recorded_at)) AS recorded_at
             FROM streams
         )
         INSERT INTO {s}.events (aggregate_type, aggregate_id, version, event_id,
             event_type, schema_version, codec, payload, metadata, recorded_at)
         SELECT streams.aggregate_type, streams.aggregate_id,
             COALESCE(streams.version, 0) + batch.place, batch.event_id,
             batch.event_type, batch.schema_version, batch.codec, batch.payload,
             batch.metadata::json, checked.recorded_at
         FROM checked,
             unnest($6::bigint[], $7::bigint[], $8::uuid[], $9::text[], $10::bigint[],
                 $11::smallint[], $12::bytea[], $13::text[])
             WITH ORDINALITY
             AS batch(stream, place, event_id, event_type, schema_version, codec,
                 payload, metadata, ordinality)
         JOIN streams ON streams.number = batch.stream
         WHERE checked.holds
           AND NOT EXISTS (SELECT 1 FROM {s}.events WHERE event_id = ANY($8::uuid[]))
         ORDER BY batch.ordinality
         RETURNING global_position, aggregate_type, aggregate_id, version"
    )
}

/// The single-stream insert (see [`Sql::append`]) for the tables in `s` (quoted).
fn append(s: &str) -> String {
    format!(
        "WITH last AS (
             SELECT version, recorded_at FROM {s}.events
             WHERE aggregate_type = $1 AND aggregate_id = $2
             ORDER BY version DESC LIMIT 1
         ), current AS (
             SELECT max(version) AS version, max(recorded_at) AS recorded_at FROM last
         )
         INSERT INTO {s}.events (aggregate_type, aggregate_id, version, event_id,
             event_type, schema_version, codec, payload, metadata, recorded_at)
         SELECT $1, $2, COALESCE(current.version, 0) + batch.ordinality, batch.event_id,
             batch.event_type, batch.schema_version, batch.codec, batch.payload,
             batch.metadata::json, GREATEST($5::bigint, current.recorded_at)
         FROM current,
             unnest($6::uuid[], $7::text[], $8::bigint[], $9::smallint[], $10::bytea[],
                 $11::text[])
             WITH ORDINALITY
             AS batch(event_id, event_type, schema_version, codec, payload, metadata,
                 ordinality)
         WHERE CASE $3::smallint
             WHEN 0 THEN true
             WHEN 1 THEN current.version IS NULL
             WHEN 2 THEN current.version IS NOT NULL
             ELSE COALESCE(current.version, 0) = $4::bigint
         END
         AND NOT EXISTS (SELECT 1 FROM {s}.events WHERE event_id = ANY($6::uuid[]))
         ORDER BY batch.ordinality
         RETURNING global_position, version"
    )
}

/// Where each of the event ids `$1` is stored (see [`Sql::find_event_ids`]) for the tables in
/// `s` (quoted).
fn find_event_ids(s: &str) -> String {
    format!(
        "SELECT event_id, aggregate_type, aggregate_id, version, global_position
         FROM {s}.events WHERE event_id = ANY($1::uuid[])"
    )
}

/// Each stream's last version (see [`Sql::stream_versions`]) for the tables in `s` (quoted).
fn stream_versions(s: &str) -> String {
    format!(
        "SELECT (SELECT max(version) FROM {s}.events
                 WHERE aggregate_type = requested.aggregate_type
                   AND aggregate_id = requested.aggregate_id)
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
             AS requested(aggregate_type, aggregate_id, number)
         ORDER BY requested.number"
    )
}

/// The tables of the current schema version. Positions come from the identity sequence
/// `events_global_position_seq`, which the gap-safe read rule reads as well.
fn create_tables(schema: &SchemaName) -> String {
    let s = schema.quoted();
    format!(
        "CREATE TABLE {s}.meta (
             key text PRIMARY KEY,
             value text NOT NULL
         );
         CREATE TABLE {s}.events (
             global_position bigint PRIMARY KEY
                 GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME {s}.events_global_position_seq),
             aggregate_type text NOT NULL,
             aggregate_id text NOT NULL,
             version bigint NOT NULL CHECK (version > 0),
             event_id uuid NOT NULL,
             event_type text NOT NULL,
             schema_version bigint NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
             codec smallint NOT NULL,
             payload bytea NOT NULL,
             metadata json NOT NULL,
             recorded_at bigint NOT NULL,
             UNIQUE (aggregate_type, aggregate_id, version),
             CONSTRAINT {EVENT_ID_CONSTRAINT} UNIQUE (event_id)
         );
         COMMENT ON COLUMN {s}.events.recorded_at IS 'microseconds since the Unix epoch, UTC';
         CREATE TABLE {s}.snapshots (
             aggregate_type text NOT NULL,
             aggregate_id text NOT NULL,
             version bigint NOT NULL,
             fingerprint bigint NOT NULL,
             codec smallint NOT NULL,
             state bytea NOT NULL,
             taken_at bigint NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id)
         );
         CREATE TABLE {s}.projections (
             name text PRIMARY KEY,
             position bigint NOT NULL,
             codec smallint NOT NULL,
             state bytea NOT NULL,
             saved_at bigint NOT NULL
         );
         {}",
        create_leases(&s)
    )
}

/// The lease table (schema version 3) in the quoted schema `s`: one row per lease ever
/// granted, never deleted, so its fencing token only grows.
fn create_leases(s: &str) -> String {
    format!(
        "CREATE TABLE {s}.leases (
             name text PRIMARY KEY,
             holder text NOT NULL,
             token bigint NOT NULL CHECK (token > 0),
             expires_at bigint NOT NULL
         );
         COMMENT ON COLUMN {s}.leases.expires_at IS
             'microseconds since the Unix epoch, UTC, by the database server''s clock';
         COMMENT ON COLUMN {s}.leases.holder IS 'empty once released';"
    )
}

/// What connecting may change in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Changes {
    /// Create the store if it is missing; upgrade an older one.
    CreateOrUpgrade,
    /// Upgrade an older store; a missing one is [`StoreError::NotFound`].
    UpgradeOnly,
    /// Nothing at all (a read-only store); a missing one is [`StoreError::NotFound`].
    None,
}

/// Makes `schema` hold a store of [`SCHEMA_VERSION`]: creates it when it is missing or
/// empty, accepts it when it already is one, and rejects anything else.
///
/// Runs in one transaction under an advisory lock, so many nodes connecting at once create
/// the tables exactly once and never see a half-made schema. Only as far as `changes` allows: a store that is missing when it may not be created is
/// [`StoreError::NotFound`].
pub(super) async fn migrate(
    client: &mut Object,
    schema: &SchemaName,
    changes: Changes,
) -> Result<(), StoreError> {
    // READ COMMITTED whatever the server's default: the checks below must see what a node
    // that held the migration lock before this one committed, and under REPEATABLE READ or
    // SERIALIZABLE the transaction's snapshot would predate the lock wait.
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(query_error)?;
    match migrate_in(&transaction, schema, changes).await {
        Ok(()) => transaction.commit().await.map_err(query_error),
        Err(error) => {
            // Roll back before returning: the connection must not stay inside a transaction
            // that holds locks on the schema. A failure here changes nothing the caller can
            // act on (the first error says what went wrong), and closing the connection ends
            // the transaction anyway.
            let _ = transaction.rollback().await;
            Err(error)
        }
    }
}

/// The body of [`migrate`], inside its transaction.
async fn migrate_in(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    changes: Changes,
) -> Result<(), StoreError> {
    let location = || format!("PostgreSQL schema `{}`", schema.as_str());
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key(&["migrate", schema.as_str()])],
        )
        .await
        .map_err(query_error)?;

    let schema_exists = transaction
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(query_error)?
        .is_some();
    let tables: Vec<String> = transaction
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname::text = ANY($2)",
            &[&schema.as_str(), &&TABLES[..]],
        )
        .await
        .map_err(query_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();

    if tables.iter().any(|table| table == "meta") {
        let found = stored_version(transaction, schema).await?;
        // A read-only connection reads an older schema as it is (its upgrades add
        // constraints for writers) and never changes it.
        if found < SCHEMA_VERSION && changes != Changes::None {
            upgrade(transaction, schema, found).await?;
        }
        return Ok(());
    }

    if let Some(table) = tables.first() {
        return Err(StoreError::NotAStore {
            location: location(),
            reason: format!("it has a `{table}` table but no es-core `meta` table"),
        });
    }

    if changes != Changes::CreateOrUpgrade {
        return Err(StoreError::NotFound {
            location: location(),
            reason: if schema_exists {
                "the schema has no event store tables".to_owned()
            } else {
                "the schema does not exist".to_owned()
            },
        });
    }

    // Creating a schema needs the CREATE privilege on the database; a schema made ahead of
    // time by an administrator needs only CREATE on the schema.
    if !schema_exists {
        transaction
            .batch_execute(&format!("CREATE SCHEMA {}", schema.quoted()))
            .await
            .map_err(query_error)?;
    }
    transaction
        .batch_execute(&create_tables(schema))
        .await
        .map_err(query_error)?;
    transaction
        .execute(
            &format!(
                "INSERT INTO {}.meta (key, value) VALUES ('format', $1), ('schema_version', $2)",
                schema.quoted()
            ),
            &[&FORMAT, &SCHEMA_VERSION.to_string()],
        )
        .await
        .map_err(query_error)?;
    Ok(())
}

/// The schema version recorded in the `meta` table of the store in `schema`.
async fn stored_version(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
) -> Result<u32, StoreError> {
    let location = || format!("PostgreSQL schema `{}`", schema.as_str());
    let rows = transaction
        .query(
            &format!("SELECT key, value FROM {}.meta", schema.quoted()),
            &[],
        )
        .await
        .map_err(query_error)?;
    let value = |key: &str| {
        rows.iter()
            .find(|row| row.get::<_, &str>(0) == key)
            .map(|row| row.get::<_, String>(1))
    };
    if value("format").as_deref() != Some(FORMAT) {
        return Err(StoreError::NotAStore {
            location: location(),
            reason: "its `meta` table does not describe an es-core event store".to_owned(),
        });
    }
    let found = value("schema_version")
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or_else(|| StoreError::Corrupt {
            location: location(),
            reason: "the `meta` table has no valid `schema_version`".to_owned(),
        })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Upgrades the store in `schema` from version `from` to [`SCHEMA_VERSION`], inside the
/// migration's transaction (so a failure leaves it as it was).
///
/// 1 → 2: event ids become unique. If some id is stored twice already, the upgrade is
/// refused with [`StoreError::Migration`] naming (a few of) them. Adding the constraint
/// builds its index under a lock that blocks writes to `events` until the upgrade commits.
/// 2 → 3: the `leases` table is created.
async fn upgrade(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    from: u32,
) -> Result<(), StoreError> {
    let s = schema.quoted();
    if from < 2 {
        let repeated: Vec<String> = transaction
            .query(
                &format!(
                    "SELECT event_id::text, count(*) FROM {s}.events GROUP BY event_id
                     HAVING count(*) > 1 ORDER BY min(global_position) LIMIT 6"
                ),
                &[],
            )
            .await
            .map_err(query_error)?
            .iter()
            .map(|row| {
                format!(
                    "{} ({} copies)",
                    row.get::<_, String>(0),
                    row.get::<_, i64>(1)
                )
            })
            .collect();
        if !repeated.is_empty() {
            return Err(StoreError::Migration {
                location: format!("PostgreSQL schema `{}`", schema.as_str()),
                from,
                to: SCHEMA_VERSION,
                reason: format!(
                    "event ids must be unique, and some are stored more than once: {}{}; \
                     decide which copies to keep (a retried batch stored twice has the same ids \
                     at two places), delete the others, and connect again",
                    repeated
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if repeated.len() > 5 { ", ..." } else { "" },
                ),
            });
        }
        transaction
            .batch_execute(&format!(
                "ALTER TABLE {s}.events ADD CONSTRAINT {EVENT_ID_CONSTRAINT} UNIQUE (event_id)"
            ))
            .await
            .map_err(query_error)?;
    }
    if from < 3 {
        transaction
            .batch_execute(&create_leases(&s))
            .await
            .map_err(query_error)?;
    }
    transaction
        .execute(
            &format!("UPDATE {s}.meta SET value = $1 WHERE key = 'schema_version'"),
            &[&SCHEMA_VERSION.to_string()],
        )
        .await
        .map_err(query_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lowercase_names_are_accepted() {
        for name in [
            "event_store",
            "es",
            "_private",
            "tenant_42",
            &"a".repeat(63),
        ] {
            assert_eq!(SchemaName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn names_that_could_inject_or_collide_are_rejected() {
        for name in [
            "",
            "Events",
            "es; DROP TABLE x",
            "es\"",
            "es.events",
            "1st",
            "pg_catalog",
            "ünicode",
            "a b",
            &"a".repeat(64),
        ] {
            let error = SchemaName::parse(name).unwrap_err();
            assert!(
                matches!(error, StoreError::Config(_)),
                "{name:?} gave {error:?}"
            );
        }
    }

    #[test]
    fn lock_keys_differ_by_part_boundaries() {
        assert_ne!(lock_key(&["ab", "c"]), lock_key(&["a", "bc"]));
        assert_ne!(
            lock_key(&["stream", "s", "x"]),
            lock_key(&["positions", "s"])
        );
        assert_eq!(lock_key(&["a", "b"]), lock_key(&["a", "b"]));
    }
}
