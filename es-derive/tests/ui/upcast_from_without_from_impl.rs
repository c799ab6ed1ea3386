use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Created")]
pub struct CreatedV1;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = 2, upcast_from = CreatedV1)]
pub struct Created;

fn main() {}
