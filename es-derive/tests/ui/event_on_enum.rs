use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum OrderEvent {
    Created,
    Shipped,
}

fn main() {}
