use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderCreated", schema_version = 2)]
pub struct OrderCreated;

fn main() {}
