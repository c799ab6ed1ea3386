use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Created", version = 2)]
pub struct CreatedV2;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Created", version = 2, upcast_from = CreatedV2)]
pub struct Created;

impl From<CreatedV2> for Created {
    fn from(_: CreatedV2) -> Self {
        Created
    }
}

fn main() {}
