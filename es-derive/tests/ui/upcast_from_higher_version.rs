use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Created", version = 3)]
pub struct CreatedV3;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Created", version = 2, upcast_from = CreatedV3)]
pub struct Created;

impl From<CreatedV3> for Created {
    fn from(_: CreatedV3) -> Self {
        Created
    }
}

fn main() {}
