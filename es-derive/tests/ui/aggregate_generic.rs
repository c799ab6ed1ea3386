use es_core::{Aggregate, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Created;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Shipped;

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(events(Created, Shipped))]
pub struct Order<Id> {
    pub id: Id,
}

fn main() {}
