//! The schema fingerprint of an aggregate's snapshots: what a snapshot's bytes depend on.
//!
//! A snapshot is only as good as the match between the bytes and the type they decode into.
//! postcard is not self-describing: a variant added to an enum nested three levels down in the
//! state decodes old bytes into the wrong values without an error. So the fingerprint a
//! snapshot is stored and checked under covers the full serialized shape of the state:
//!
//! - the compile-time part, [`Aggregate::SCHEMA_FINGERPRINT`], which the derive computes from
//!   the struct definition, the event list and the manual `snapshot_version` key (bump it when
//!   apply logic changes what a state means without changing its shape);
//! - the run-time part: the serde format of the state, traced once per type with
//!   [`serde-reflection`](serde_reflection) (every nested struct, enum, variant, field name
//!   and primitive type, in the order the codecs write them).
//!
//! A state whose `Deserialize` cannot be traced (it validates values the tracer makes up, or
//! asks the format to describe itself with `deserialize_any`, like `serde_json::Value`) gets
//! no fingerprint: the repository then takes and uses no snapshots of that type, and logs why
//! once at `warn`. A snapshot is an optimisation; a weak fingerprint is a way to load a state
//! that never happened, so it is never used.
//!
//! The traced shape is hashed through its own JSON form, so a release of `serde-reflection`
//! that describes formats differently changes every fingerprint: snapshots then fall back to
//! replay once and are replaced, never misread.

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::de::DeserializeOwned;
use serde_reflection::{Error as TraceError, Samples, Tracer, TracerConfig};

use crate::aggregate::Aggregate;

/// The state of an aggregate cannot be traced, so it has no snapshot fingerprint and is never
/// snapshotted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the serde format of `{type_name}` cannot be traced ({reason}), so its snapshots could not \
     be checked against its shape: snapshots of it are neither taken nor used"
)]
pub struct SchemaTraceError {
    /// The aggregate type.
    pub type_name: &'static str,
    /// What the tracer could not do.
    pub reason: String,
}

/// How many times the tracer may re-read the state before giving up: each pass discovers at
/// least one more variant of an enum, so only a state with thousands of variants gets here.
const MAX_PASSES: usize = 10_000;

/// The snapshot fingerprint of `A`: `compile_time` (its [`Aggregate::SCHEMA_FINGERPRINT`])
/// combined with the traced serde format of the state. Computed afresh on every call; the
/// repository uses the per-type cached [`Aggregate::snapshot_fingerprint`].
///
/// # Errors
/// [`SchemaTraceError`] when the state's `Deserialize` cannot be traced.
pub fn trace_fingerprint<A: DeserializeOwned>(compile_time: u64) -> Result<u64, SchemaTraceError> {
    let shape = trace_shape::<A>().map_err(|reason| SchemaTraceError {
        type_name: std::any::type_name::<A>(),
        reason,
    })?;
    let hash = crate::__private::fingerprint_extend(compile_time, &[0xfe]);
    Ok(crate::__private::fingerprint_extend(hash, shape.as_bytes()))
}

/// The traced serde format of `T` (the root format and every named container in it) as
/// canonical JSON text.
fn trace_shape<T: DeserializeOwned>() -> Result<String, String> {
    let samples = Samples::new();
    // The names of the enums found so far. The tracer only says an enum is incomplete when
    // asked by name, and names are learnt from the registry's complaint: restart with them.
    let mut enums: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut root = None;
        let mut complete = false;
        for _ in 0..MAX_PASSES {
            let (format, _) = tracer
                .trace_type_once::<T>(&samples)
                .map_err(|error| describe(&error))?;
            root.get_or_insert(format);
            // Every pass visits one more variant of each incomplete enum it reaches.
            let mut incomplete = false;
            for name in &enums {
                incomplete |= tracer.check_incomplete_enum(name).is_some();
            }
            if !incomplete {
                complete = true;
                break;
            }
        }
        if !complete {
            return Err(format!(
                "enum variants still unexplored after {MAX_PASSES} passes"
            ));
        }
        match tracer.registry() {
            Ok(registry) => {
                return serde_json::to_string(&(root, registry)).map_err(|error| error.to_string())
            }
            Err(TraceError::MissingVariants(names)) => {
                let before = enums.len();
                enums.extend(names);
                if enums.len() == before {
                    return Err("enum variants cannot all be reached".to_owned());
                }
            }
            Err(error) => return Err(describe(&error)),
        }
    }
}

fn describe(error: &TraceError) -> String {
    // The error's own text is one line; its explanation is a paragraph meant for the console.
    error.to_string()
}

/// The cached fingerprint of `A`, computed and (on failure) logged once per process.
pub(crate) fn cached<A: Aggregate>(
    cell: &OnceLock<Result<u64, SchemaTraceError>>,
) -> Result<u64, SchemaTraceError> {
    cell.get_or_init(compute::<A>).clone()
}

/// The cached fingerprint of `A` for aggregates implemented by hand (the derive gives each type
/// its own cell).
pub(crate) fn cached_by_type<A: Aggregate>() -> Result<u64, SchemaTraceError> {
    type Cache = Mutex<HashMap<TypeId, Result<u64, SchemaTraceError>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(found) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&TypeId::of::<A>())
    {
        return found.clone();
    }
    // Traced outside the lock: a state's `Deserialize` may itself be an aggregate's.
    let computed = compute::<A>();
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(TypeId::of::<A>())
        .or_insert(computed)
        .clone()
}

fn compute<A: Aggregate>() -> Result<u64, SchemaTraceError> {
    let result = trace_fingerprint::<A>(A::SCHEMA_FINGERPRINT);
    if let Err(error) = &result {
        tracing::warn!(
            aggregate = A::TYPE,
            error = error as &dyn std::error::Error,
            "snapshots disabled for this aggregate type"
        );
    }
    result
}
