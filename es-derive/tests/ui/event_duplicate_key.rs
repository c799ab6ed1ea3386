use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = 2)]
#[event(name = "Created", version = 3)]
pub struct Created;

fn main() {}
