//! Code generation from checked models. Nothing here can fail: every rejection happened in
//! `crate::valid`.

mod aggregate;
mod event;

pub(crate) use aggregate::aggregate;
pub(crate) use event::event;
