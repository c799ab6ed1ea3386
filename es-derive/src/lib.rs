//! derive macros (placeholder until the derive lands)
