//! The Order domain.
