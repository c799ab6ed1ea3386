//! The apply dispatch `#[derive(Aggregate)]` generates against a handwritten `match` doing the
//! same work, in the same group:
//!
//! - `dispatch/order_histories`: 1,000 generated order histories (`order_example::load`,
//!   seed 1), each applied event by event to a fresh `Order`: the work a replay does after
//!   decoding.
//! - `dispatch/payment_processed_x1000`: one cheap event (two field writes) applied 1,000
//!   times, so the dispatch itself is as large a share of the time as it can be.
//!
//! - `dispatch/same_crate_x1000`: the same comparison on a small aggregate derived in this
//!   file, 1,000 cheap events of three types, so the generated dispatch and the handwritten one
//!   are both in the crate that calls them.
//!
//! `generated` calls [`Aggregate::apply_event`]; `handwritten` matches on the same enum and
//! calls the same `Apply` impls. The macro should cost nothing: both within a few percent.
//! The Order groups call across crates (`order-example` is a library): a function the compiler
//! does not inline across crates (the generated `apply_event`, a six-arm `match`) costs a call
//! there that the handwritten `match`, compiled in this crate, does not. `same_crate` separates
//! the two effects.
//!
//! Run with `cargo bench --bench dispatch` (about half a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use es_core::{Aggregate, AggregateRoot, Apply};
use order_example::load::Workload;
use order_example::{
    Money, Order, OrderCancelled, OrderCreated, OrderEvent, OrderItemAdded, OrderItemRemoved,
    OrderShipped, PaymentProcessed,
};

/// The baseline: what a person writes without the derive.
fn apply_by_hand(order: &mut Order, event: &OrderEvent) {
    match event {
        OrderEvent::OrderCreated(event) => Apply::<OrderCreated>::apply(order, event),
        OrderEvent::OrderItemAdded(event) => Apply::<OrderItemAdded>::apply(order, event),
        OrderEvent::OrderItemRemoved(event) => Apply::<OrderItemRemoved>::apply(order, event),
        OrderEvent::PaymentProcessed(event) => Apply::<PaymentProcessed>::apply(order, event),
        OrderEvent::OrderShipped(event) => Apply::<OrderShipped>::apply(order, event),
        OrderEvent::OrderCancelled(event) => Apply::<OrderCancelled>::apply(order, event),
    }
}

/// The events of `count` valid generated orders, one list per order.
fn histories(count: usize) -> Vec<Vec<OrderEvent>> {
    Workload::new(1)
        .take(count)
        .map(|script| {
            let mut root = AggregateRoot::<Order>::new(script.order_id.as_str());
            for command in script.batches.iter().flatten() {
                root.execute(|order| command.decide(order))
                    .expect("generated commands keep the business rules");
            }
            root.pending_events().to_vec()
        })
        .collect()
}

/// Applies each history to a fresh `Order` with `apply` (monomorphized, so inlined like the
/// real call), returning a sum that depends on every state.
fn replay_with(histories: &[Vec<OrderEvent>], apply: impl Fn(&mut Order, &OrderEvent)) -> u64 {
    let mut items = 0;
    for events in histories {
        let mut order = Order::default();
        for event in events {
            apply(&mut order, event);
        }
        items += black_box(&order).item_count();
    }
    items
}

fn order_histories(c: &mut Criterion) {
    let histories = histories(1_000);
    let events: usize = histories.iter().map(Vec::len).sum();
    assert_eq!(
        replay_with(&histories, Order::apply_event),
        replay_with(&histories, apply_by_hand)
    );

    let mut group = c.benchmark_group("dispatch/order_histories");
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function("generated", |b| {
        b.iter(|| replay_with(black_box(&histories), Order::apply_event));
    });
    group.bench_function("handwritten", |b| {
        b.iter(|| replay_with(black_box(&histories), apply_by_hand));
    });
    group.finish();
}

fn payment_processed(c: &mut Criterion) {
    const TIMES: u64 = 1_000;
    let event = OrderEvent::from(PaymentProcessed {
        amount: Money::from_minor_units(14_997),
    });

    let mut group = c.benchmark_group("dispatch/payment_processed_x1000");
    group.throughput(Throughput::Elements(TIMES));
    group.bench_function("generated", |b| {
        let mut order = Order::default();
        b.iter(|| {
            for _ in 0..TIMES {
                order.apply_event(black_box(&event));
            }
            black_box(&order).paid()
        });
    });
    group.bench_function("handwritten", |b| {
        let mut order = Order::default();
        b.iter(|| {
            for _ in 0..TIMES {
                apply_by_hand(&mut order, black_box(&event));
            }
            black_box(&order).paid()
        });
    });
    group.finish();
}

/// A small aggregate derived here, so both dispatches are compiled in this crate.
mod account {
    use es_core::{Aggregate, Apply, Event};
    use serde::{Deserialize, Serialize};

    /// Money came in.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Deposited {
        pub amount: u64,
    }

    /// Money went out.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Withdrawn {
        pub amount: u64,
    }

    /// The month ended.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct StatementIssued;

    /// A balance and how it moved.
    #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
    #[aggregate(name = "account", events(Deposited, Withdrawn, StatementIssued))]
    pub struct Account {
        pub balance: u64,
        pub movements: u64,
        pub statements: u64,
    }

    impl Apply<Deposited> for Account {
        fn apply(&mut self, event: &Deposited) {
            self.balance = self.balance.wrapping_add(event.amount);
            self.movements += 1;
        }
    }

    impl Apply<Withdrawn> for Account {
        fn apply(&mut self, event: &Withdrawn) {
            self.balance = self.balance.wrapping_sub(event.amount);
            self.movements += 1;
        }
    }

    impl Apply<StatementIssued> for Account {
        fn apply(&mut self, _: &StatementIssued) {
            self.statements += 1;
        }
    }

    /// The baseline.
    pub fn apply_by_hand(account: &mut Account, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(event) => Apply::<Deposited>::apply(account, event),
            AccountEvent::Withdrawn(event) => Apply::<Withdrawn>::apply(account, event),
            AccountEvent::StatementIssued(event) => {
                Apply::<StatementIssued>::apply(account, event);
            }
        }
    }

    /// 1,000 events, the three types mixed.
    pub fn events() -> Vec<AccountEvent> {
        (0..1_000_u64)
            .map(|index| match index % 10 {
                9 => StatementIssued.into(),
                n if n % 2 == 0 => Deposited { amount: index }.into(),
                _ => Withdrawn { amount: index / 2 }.into(),
            })
            .collect()
    }

    /// Applies `events` to a fresh account with `apply`.
    pub fn replay(events: &[AccountEvent], apply: impl Fn(&mut Account, &AccountEvent)) -> Account {
        let mut account = Account::default();
        for event in events {
            apply(&mut account, event);
        }
        account
    }

    /// The generated dispatch, as a plain function.
    pub fn apply_generated(account: &mut Account, event: &AccountEvent) {
        account.apply_event(event);
    }
}

fn same_crate(c: &mut Criterion) {
    let events = account::events();
    let generated = account::replay(&events, account::apply_generated);
    let handwritten = account::replay(&events, account::apply_by_hand);
    assert_eq!(
        (generated.balance, generated.movements, generated.statements),
        (
            handwritten.balance,
            handwritten.movements,
            handwritten.statements
        )
    );

    let mut group = c.benchmark_group("dispatch/same_crate_x1000");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("generated", |b| {
        b.iter(|| account::replay(black_box(&events), account::apply_generated));
    });
    group.bench_function("handwritten", |b| {
        b.iter(|| account::replay(black_box(&events), account::apply_by_hand));
    });
    group.finish();
}

fn configured() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

#[allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn benches`.
mod group {
    use super::{configured, order_histories, payment_processed, same_crate};

    criterion::criterion_group! {
        name = benches;
        config = configured();
        targets = order_histories, payment_processed, same_crate
    }
}

criterion_main!(group::benches);
