use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderShipped")]
pub struct ShippedV1;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "OrderCreated", version = 2, upcast_from = ShippedV1)]
pub struct Created;

impl From<ShippedV1> for Created {
    fn from(_: ShippedV1) -> Self {
        Created
    }
}

fn main() {}
