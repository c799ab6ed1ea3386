use es_core::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Created;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Shipped;

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(events(Created, Shipped), snapshot_version = 4294967296)]
pub struct Order;

impl Apply<Created> for Order {
    fn apply(&mut self, _: &Created) {}
}

impl Apply<Shipped> for Order {
    fn apply(&mut self, _: &Shipped) {}
}

fn main() {}
