use es_core::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "order", events())]
pub struct Order;

fn main() {}
