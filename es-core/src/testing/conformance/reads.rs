//! Reads: stream ranges, time-bounded reads, paging through the global log, last position.

use super::{
    append_ok, assert_page, assert_positions_increase, batch, ids, last_position, new_ids,
    read_log, read_stream_all, stream, versions, Store,
};
use std::ops::ControlFlow;

use crate::clock::{Clock, ManualClock};
use crate::event::RecordedEvent;
use crate::store::{ExpectedVersion, VersionRange};
use crate::types::{GlobalPosition, StreamId, Timestamp, Version};

pub(super) async fn read_stream_returns_the_requested_range<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let stream = stream("ranges");
    let other = super::stream("neighbour");
    // Five events, with events of another stream between them so positions are not the
    // versions.
    for round in 0..5 {
        append_ok(&store, &stream, ExpectedVersion::Any, batch("ranged", 1)).await;
        append_ok(
            &store,
            &other,
            ExpectedVersion::Any,
            batch("neighbour", round + 1),
        )
        .await;
    }
    let all = read_stream_all(&store, &stream).await;
    assert_eq!(versions(&all), [1, 2, 3, 4, 5]);
    let log = read_log(&store).await;
    let from_log: Vec<RecordedEvent> = log.into_iter().filter(|e| e.stream == stream).collect();
    assert_eq!(
        all, from_log,
        "read_stream and read_all must return the same records"
    );

    let cases: [(VersionRange, &[u64]); 11] = [
        (VersionRange::all(), &[1, 2, 3, 4, 5]),
        (VersionRange::starting_at(Version(3)), &[3, 4, 5]),
        (VersionRange::starting_at(Version(5)), &[5]),
        (VersionRange::starting_at(Version(6)), &[]),
        (VersionRange::starting_at(Version(1000)), &[]),
        (VersionRange::up_to(Version(2)), &[1, 2]),
        (VersionRange::up_to(Version(10)), &[1, 2, 3, 4, 5]),
        (range(2, 4), &[2, 3, 4]),
        (range(3, 3), &[3]),
        (range(4, 2), &[]),
        (range(5, u64::MAX), &[5]),
    ];
    for (range, expected) in cases {
        let read = store
            .read_stream(&stream, range)
            .await
            .unwrap_or_else(|error| panic!("read_stream({range:?}) failed: {error:?}"));
        assert_eq!(
            versions(&read),
            expected,
            "read_stream must return the versions in the inclusive range {}..={}",
            range.from,
            range.to
        );
        let expected_records: Vec<&RecordedEvent> = all
            .iter()
            .filter(|e| expected.contains(&e.version.get()))
            .collect();
        assert_eq!(
            read.iter().collect::<Vec<_>>(),
            expected_records,
            "a range read returns the same records as a full read"
        );
    }
}

fn range(from: u64, to: u64) -> VersionRange {
    VersionRange {
        from: Version(from),
        to: Version(to),
    }
}

pub(super) async fn read_stream_of_an_unknown_stream_is_empty<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let unknown = stream("unknown");
    assert!(
        read_stream_all(&store, &unknown).await.is_empty(),
        "an empty store"
    );
    append_ok(
        &store,
        &stream("unknown-but-longer"),
        ExpectedVersion::NoStream,
        batch("x", 2),
    )
    .await;
    append_ok(
        &store,
        &StreamId::new("other-type", "unknown"),
        ExpectedVersion::NoStream,
        batch("x", 2),
    )
    .await;
    for candidate in [unknown, stream("unknown-but"), stream("")] {
        assert!(
            read_stream_all(&store, &candidate).await.is_empty(),
            "read_stream of `{candidate}`, which has no events, must be empty"
        );
        assert!(
            store
                .read_stream(&candidate, VersionRange::up_to(Version(3)))
                .await
                .expect("read_stream")
                .is_empty(),
            "read_stream of `{candidate}` with a bounded range must be empty"
        );
        assert!(
            store
                .read_stream_until(&candidate, Timestamp::MAX)
                .await
                .expect("read_stream_until")
                .is_empty(),
            "read_stream_until of `{candidate}` must be empty"
        );
    }
}

pub(super) async fn events_are_stamped_with_the_store_clock<S: Store>(
    store: S,
    clock: ManualClock,
) {
    let stream = stream("stamped");
    let mut expected_times = Vec::new();
    for (step, size) in [
        (0_i64, 2_usize),
        (1_000_000, 1),
        (1, 3),
        (86_400_000_000, 1),
    ] {
        clock.advance_micros(step);
        let now = clock.now();
        append_ok(
            &store,
            &stream,
            ExpectedVersion::Any,
            batch("stamped", size),
        )
        .await;
        expected_times.extend(std::iter::repeat_n(now, size));
    }
    let read = read_stream_all(&store, &stream).await;
    let times: Vec<Timestamp> = read.iter().map(|e| e.recorded_at).collect();
    assert_eq!(
        times, expected_times,
        "every event's recorded_at must be the store clock's time at its append, to the \
         microsecond"
    );
    let from_log: Vec<Timestamp> = read_log(&store)
        .await
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(
        from_log, expected_times,
        "read_all must return the same recorded_at"
    );
}

pub(super) async fn stream_times_never_run_backwards<S: Store>(store: S, clock: ManualClock) {
    let stream = stream("stepped-back");
    let other = super::stream("stepped-back-neighbour");
    let t0 = clock.now();
    append_ok(&store, &stream, ExpectedVersion::NoStream, batch("t0", 1)).await;
    clock.advance_micros(10_000_000);
    let t1 = clock.now();
    append_ok(&store, &stream, ExpectedVersion::Any, batch("t1", 2)).await;

    // The clock steps back five seconds (an NTP correction, or a node whose clock is behind).
    clock.advance_micros(-5_000_000);
    let stepped_back = clock.now();
    append_ok(&store, &stream, ExpectedVersion::Any, batch("back", 1)).await;
    append_ok(&store, &other, ExpectedVersion::NoStream, batch("other", 1)).await;

    let times: Vec<Timestamp> = read_stream_all(&store, &stream)
        .await
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(
        times,
        [t0, t1, t1, t1],
        "an event appended while the clock is behind the stream's last event must get the \
         stream's last time"
    );
    let neighbour = read_stream_all(&store, &other).await;
    assert_eq!(
        neighbour[0].recorded_at, stepped_back,
        "another stream is stamped with the clock's time"
    );
    let until = store
        .read_stream_until(&stream, stepped_back)
        .await
        .expect("read_stream_until");
    assert_eq!(
        versions(&until),
        [1],
        "read_stream_until must return a prefix of the stream"
    );
}

pub(super) async fn read_stream_until_includes_events_at_or_before_the_bound<S: Store>(
    store: S,
    clock: ManualClock,
) {
    let stream = stream("temporal");
    let other = super::stream("temporal-neighbour");
    let t1 = clock.now();
    let first = append_ok(&store, &stream, ExpectedVersion::NoStream, batch("t1", 1)).await;
    assert_eq!(first.version, Version(1));

    clock.advance_micros(1_000_000);
    let t2 = clock.now();
    append_ok(
        &store,
        &stream,
        ExpectedVersion::Exact(Version(1)),
        batch("t2", 1),
    )
    .await;
    append_ok(
        &store,
        &other,
        ExpectedVersion::Any,
        batch("neighbour at t2", 2),
    )
    .await;

    // One microsecond later: the store must keep microsecond precision.
    clock.advance_micros(1);
    let t3 = clock.now();
    append_ok(
        &store,
        &stream,
        ExpectedVersion::Exact(Version(2)),
        batch("t3", 2),
    )
    .await;

    let cases: [(Timestamp, &str, &[u64]); 10] = [
        (Timestamp::EPOCH, "the epoch", &[]),
        (t1.saturating_add_micros(-1), "just before t1", &[]),
        (t1, "exactly t1", &[1]),
        (t1.saturating_add_micros(500_000), "between t1 and t2", &[1]),
        (t2.saturating_add_micros(-1), "just before t2", &[1]),
        (t2, "exactly t2", &[1, 2]),
        (t3.saturating_add_micros(-1), "between t2 and t3", &[1, 2]),
        (t3, "exactly t3", &[1, 2, 3, 4]),
        (
            t3.saturating_add_micros(3_600_000_000),
            "an hour after t3",
            &[1, 2, 3, 4],
        ),
        (Timestamp::MAX, "the latest instant", &[1, 2, 3, 4]),
    ];
    let all = read_stream_all(&store, &stream).await;
    for (until, label, expected) in cases {
        let read = store
            .read_stream_until(&stream, until)
            .await
            .unwrap_or_else(|error| panic!("read_stream_until({label}) failed: {error:?}"));
        assert_eq!(
            versions(&read),
            expected,
            "read_stream_until({label}) must return the events recorded at or before it"
        );
        assert_eq!(
            read[..],
            all[..read.len()],
            "read_stream_until({label}) returns the same records as read_stream"
        );
    }
}

pub(super) async fn read_all_pages_through_the_log<S: Store>(store: S, _clock: ManualClock) {
    let a = stream("a");
    let b = stream("b");
    let c = stream("c");
    let mut appended = Vec::new();
    for (stream, size) in [(&a, 2), (&b, 1), (&c, 3), (&a, 1), (&b, 2)] {
        let events = batch(&format!("{stream}"), size);
        appended.extend(new_ids(&events));
        append_ok(&store, stream, ExpectedVersion::Any, events).await;
    }
    let everything = store
        .read_all(GlobalPosition::START, usize::MAX)
        .await
        .expect("read_all with an unbounded limit");
    assert_eq!(
        ids(&everything),
        appended,
        "read_all with a limit larger than the log must return all of it, in commit order"
    );
    assert_positions_increase(&everything, "read_all");
    assert_eq!(
        ids(&store
            .read_all(GlobalPosition::START, 1000)
            .await
            .expect("read_all")),
        appended,
        "read_all with limit 1000"
    );

    for limit in [1, 2, 3, 8, 9] {
        let mut paged = Vec::new();
        let mut after = GlobalPosition::START;
        loop {
            let page = store.read_all(after, limit).await.expect("read_all");
            assert_page(&page, after, limit);
            let Some(last) = page.last() else { break };
            after = last.global_position;
            paged.extend(page);
        }
        assert_eq!(
            paged, everything,
            "paging with limit {limit} must return every event once, in order"
        );

        // The same pages through one buffer: each read appends its page to what is there.
        let mut buffer = vec![everything[0].clone()];
        let mut after = GlobalPosition::START;
        loop {
            let before = buffer.len();
            store
                .read_all_into(after, limit, &mut buffer)
                .await
                .expect("read_all_into");
            assert_page(&buffer[before..], after, limit);
            let Some(last) = buffer[before..].last() else {
                break;
            };
            after = last.global_position;
        }
        assert_eq!(
            (&buffer[..1], &buffer[1..]),
            (&everything[..1], &everything[..]),
            "read_all_into with limit {limit} must append every event once, in order, after \
             what the buffer held"
        );
    }

    // From the middle: everything after that position.
    for (index, event) in everything.iter().enumerate() {
        let rest = store
            .read_all(event.global_position, usize::MAX)
            .await
            .expect("read_all");
        assert_eq!(
            rest[..],
            everything[index + 1..],
            "read_all after position {} must return the events after it",
            event.global_position
        );
    }

    let end = everything
        .last()
        .map(|e| e.global_position)
        .expect("events");
    for after in [end, GlobalPosition(end.get() + 1), GlobalPosition(u64::MAX)] {
        assert!(
            store
                .read_all(after, 10)
                .await
                .expect("read_all")
                .is_empty(),
            "read_all after {after}, at or past the end of the log, must be empty"
        );
    }
    assert!(
        store
            .read_all(GlobalPosition::START, 0)
            .await
            .expect("read_all")
            .is_empty(),
        "read_all with limit 0 must return nothing"
    );
}

pub(super) async fn lend_all_lends_what_read_all_reads<S: Store>(store: S, _clock: ManualClock) {
    for (stream, size) in [(stream("a"), 2), (stream("b"), 3), (stream("a"), 1)] {
        let events = batch(&format!("{stream}"), size);
        append_ok(&store, &stream, ExpectedVersion::Any, events).await;
    }
    let everything = store
        .read_all(GlobalPosition::START, usize::MAX)
        .await
        .expect("read_all");
    for limit in [1, 2, 4, usize::MAX] {
        let mut lent = Vec::new();
        let mut after = GlobalPosition::START;
        while let Some(flow) = store.lend_all(after, limit, &mut |event| {
            lent.push(event.clone());
            ControlFlow::<()>::Continue(())
        }) {
            let ControlFlow::Continue(count) = flow else {
                unreachable!("the visitor never breaks")
            };
            let page = &lent[lent.len() - count..];
            assert_page(page, after, limit);
            let Some(last) = page.last() else {
                assert_eq!(
                    lent, everything,
                    "lend_all with limit {limit} must lend every event once, in order"
                );
                break;
            };
            after = last.global_position;
        }
    }
    // A visitor that breaks is lent nothing after the event it broke on.
    let mut lent = 0;
    let flow = store.lend_all(GlobalPosition::START, usize::MAX, &mut |event| {
        lent += 1;
        if lent == 3 {
            ControlFlow::Break(event.global_position)
        } else {
            ControlFlow::Continue(())
        }
    });
    if let Some(flow) = flow {
        assert_eq!(
            (flow, lent),
            (ControlFlow::Break(everything[2].global_position), 3),
            "lend_all must stop at the event its visitor breaks on"
        );
    }
}

pub(super) async fn read_all_returns_interleaved_streams_in_commit_order<S: Store>(
    store: S,
    _clock: ManualClock,
) {
    let streams: Vec<StreamId> = ["x", "y", "z"].into_iter().map(stream).collect();
    let mut committed = Vec::new();
    let mut expected_versions = Vec::new();
    let mut stream_versions = [0_u64; 3];
    for round in 0..12_usize {
        let which = (round * 7) % 3;
        let size = 1 + round % 3;
        let events = batch(&format!("round {round}"), size);
        committed.extend(new_ids(&events));
        for _ in 0..size {
            stream_versions[which] += 1;
            expected_versions.push((streams[which].clone(), stream_versions[which]));
        }
        append_ok(&store, &streams[which], ExpectedVersion::Any, events).await;
    }
    let log = read_log(&store).await;
    assert_eq!(
        ids(&log),
        committed,
        "read_all must return events in commit order"
    );
    assert_positions_increase(&log, "interleaved streams");
    let seen: Vec<(StreamId, u64)> = log
        .iter()
        .map(|e| (e.stream.clone(), e.version.get()))
        .collect();
    assert_eq!(
        seen, expected_versions,
        "each event in the log carries its stream and version"
    );
}

pub(super) async fn last_position_tracks_the_log<S: Store>(store: S, _clock: ManualClock) {
    assert_eq!(
        last_position(&store).await,
        GlobalPosition::START,
        "an empty store's last_position must be GlobalPosition::START"
    );
    let stream = stream("tracked");
    let first = append_ok(&store, &stream, ExpectedVersion::NoStream, batch("one", 2)).await;
    assert_eq!(last_position(&store).await, first.position);

    let rejected = store
        .append(&stream, ExpectedVersion::NoStream, batch("rejected", 2))
        .await;
    assert!(
        rejected.is_err(),
        "NoStream on an existing stream must fail"
    );
    assert_eq!(
        last_position(&store).await,
        first.position,
        "a rejected append must not move last_position"
    );

    let second = append_ok(
        &store,
        &super::stream("another"),
        ExpectedVersion::NoStream,
        batch("two", 3),
    )
    .await;
    assert!(second.position > first.position);
    assert_eq!(last_position(&store).await, second.position);
    let log = read_log(&store).await;
    assert_eq!(
        log.last().map(|e| e.global_position),
        Some(last_position(&store).await),
        "last_position must be the position of the last event read_all returns"
    );
    assert!(
        store
            .read_all(last_position(&store).await, 10)
            .await
            .expect("read_all")
            .is_empty(),
        "nothing lies after last_position"
    );
}
