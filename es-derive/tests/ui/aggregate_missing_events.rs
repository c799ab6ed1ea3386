use es_core::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "order")]
pub struct Order;

fn main() {}
