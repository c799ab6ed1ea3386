use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CreatedV1;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = 2, upcast_from = CreatedV1)]
pub struct Created;

impl From<CreatedV1> for Created {
    fn from(_: CreatedV1) -> Self {
        Created
    }
}

fn main() {}
