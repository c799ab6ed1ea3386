use es_core::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Created;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Shipped;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "Created")]
pub struct Reopened;

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(events(Created, Shipped, Reopened))]
pub struct Order;

impl Apply<Created> for Order {
    fn apply(&mut self, _: &Created) {}
}

impl Apply<Shipped> for Order {
    fn apply(&mut self, _: &Shipped) {}
}

impl Apply<Reopened> for Order {
    fn apply(&mut self, _: &Reopened) {}
}

fn main() {}
