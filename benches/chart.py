#!/usr/bin/env python3
"""Draws docs/json-vs-postcard.png from the criterion output of `cargo bench --bench codecs`.

Every `payload/<EventType>` benchmark of benches/codecs.rs records its throughput as the
encoded size in bytes, so the criterion output holds both numbers the chart shows: the size
and the time of each event type, JSON against postcard, encoding and decoding through the
framework (`EventSet::encode`, `RecordedEvent::decode`).

    cargo bench --bench codecs
    python3 benches/chart.py                     # writes docs/json-vs-postcard.png
    python3 benches/chart.py --list              # also prints every criterion result
    python3 benches/chart.py --markdown          # also prints the tables of BENCHMARKS.md

The criterion directory is $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion, else
target/criterion (what criterion itself uses); --criterion-dir overrides it. Give it several
times (copies of the directory after separate runs) to use the median of each benchmark over
the runs. --markdown needs the results of the codecs, dispatch, replay, projections and store
benches. Needs matplotlib (`pip install matplotlib`).
"""

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The order the Order aggregate lists its events in.
EVENT_TYPES = [
    "OrderCreated",
    "OrderItemAdded",
    "OrderItemRemoved",
    "PaymentProcessed",
    "OrderShipped",
    "OrderCancelled",
]
CODECS = ["json", "postcard"]
COLORS = {"json": "#d1883b", "postcard": "#3b6fd1"}


def default_criterion_dir():
    if os.environ.get("CRITERION_HOME"):
        return Path(os.environ["CRITERION_HOME"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "criterion"
    return ROOT / "target" / "criterion"


def load_results(criterion_dir):
    """Every benchmark's latest result, by full id: (nanoseconds, throughput dict or None).

    The time is criterion's typical value: the slope of the linear fit when criterion made one,
    else the mean.
    """
    results = {}
    for benchmark_file in criterion_dir.glob("**/new/benchmark.json"):
        estimates_file = benchmark_file.with_name("estimates.json")
        if not estimates_file.exists():
            continue
        benchmark = json.loads(benchmark_file.read_text())
        estimates = json.loads(estimates_file.read_text())
        typical = estimates.get("slope") or estimates["mean"]
        results[benchmark["full_id"]] = (typical["point_estimate"], benchmark.get("throughput"))
    return results


def median_of(runs):
    """The median time of each benchmark over the runs that have it."""
    results = {}
    for full_id in set().union(*runs):
        measured = [run[full_id] for run in runs if full_id in run]
        time = statistics.median(nanoseconds for nanoseconds, _ in measured)
        results[full_id] = (time, measured[0][1])
    return results


def payload_numbers(results):
    """{event_type: {codec: (size_bytes, encode_ns, decode_ns)}}, failing on a missing result."""
    numbers = {}
    missing = []
    for event_type in EVENT_TYPES:
        for codec in CODECS:
            encode = results.get(f"payload/{event_type}/encode/{codec}")
            decode = results.get(f"payload/{event_type}/decode/{codec}")
            if encode is None or decode is None:
                missing.append(f"payload/{event_type}/*/{codec}")
                continue
            size = encode[1]["Bytes"]
            numbers.setdefault(event_type, {})[codec] = (size, encode[0], decode[0])
    if missing:
        sys.exit("missing criterion results (run `cargo bench --bench codecs`): " + ", ".join(missing))
    return numbers


def draw(numbers, output, run_count):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("Encoded size (bytes)", 0, "{:.0f}"),
        ("Encode time (ns)", 1, "{:.0f}"),
        ("Decode time (ns)", 2, "{:.0f}"),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    positions = range(len(EVENT_TYPES))
    width = 0.38
    for axis, (title, index, label) in zip(axes, panels):
        for offset, codec in zip((-width / 2, width / 2), CODECS):
            values = [numbers[event_type][codec][index] for event_type in EVENT_TYPES]
            bars = axis.bar(
                [p + offset for p in positions], values, width, label=codec, color=COLORS[codec]
            )
            axis.bar_label(bars, labels=[label.format(v) for v in values], fontsize=7, padding=2)
        axis.set_title(title)
        axis.set_xticks(list(positions))
        axis.set_xticklabels(EVENT_TYPES, rotation=30, ha="right", fontsize=8)
        axis.margins(y=0.15)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend()
    runs = f", median of {run_count} runs" if run_count > 1 else ""
    figure.suptitle(
        "Order event payloads, JSON vs postcard "
        f"(EventSet::encode / RecordedEvent::decode; cargo bench --bench codecs{runs})"
    )
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


def format_time(nanoseconds):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if nanoseconds >= scale:
            return f"{nanoseconds / scale:.3g} {unit}"
    return f"{nanoseconds:.3g} ns"


class Table:
    """A markdown table, printed as it is built."""

    def __init__(self, title, *columns):
        print(f"\n{title}\n")
        print("| " + " | ".join(columns) + " |")
        print("|---" + "|---:" * (len(columns) - 1) + "|")

    def row(self, *cells):
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


def percent(ratio):
    return f"{(ratio - 1) * 100:+.0f} %"


def times(ratio):
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def per_second(count, nanoseconds):
    return f"{count / nanoseconds * 1e9:,.0f}"


def print_markdown(runs):
    """The ratio and absolute tables of BENCHMARKS.md from the results of one or more runs.

    A time is the median over the runs; a ratio is the median of the ratios within each run,
    which cancels a machine that was slower during one whole run.
    """
    results = median_of(runs)

    def time(full_id):
        if full_id not in results:
            sys.exit(f"missing criterion result {full_id}: run every bench of BENCHMARKS.md")
        return results[full_id][0]

    def ratio(numerator, denominator):
        time(numerator), time(denominator)  # both measured somewhere
        return statistics.median(
            run[numerator][0] / run[denominator][0]
            for run in runs
            if numerator in run and denominator in run
        )

    def elements(full_id):
        return results[full_id][1]["Elements"]

    table = Table(
        "Framework codec path against a raw serde call on the same struct (time ratio - 1):",
        "Event", "encode JSON", "encode postcard", "decode JSON", "decode postcard",
    )
    columns = [(operation, codec) for operation in ("encode", "decode") for codec in CODECS]
    overheads = {column: [] for column in columns}
    for event_type in EVENT_TYPES:
        for operation, codec in columns:
            overheads[(operation, codec)].append(
                ratio(
                    f"payload/{event_type}/{operation}/{codec}",
                    f"payload/{event_type}/{operation}_raw_serde/{codec}",
                )
            )
    for index, event_type in enumerate(EVENT_TYPES):
        table.row(event_type, *(percent(overheads[column][index]) for column in columns))
    table.row("**geometric mean**", *(
        f"**{percent(math.exp(statistics.mean(map(math.log, overheads[column]))))}**"
        for column in columns
    ))

    table = Table(
        "postcard against JSON, through the framework (postcard time / JSON time):",
        "Event", "encode", "decode",
    )
    for event_type in EVENT_TYPES:
        table.row(
            event_type,
            times(ratio(f"payload/{event_type}/encode/postcard", f"payload/{event_type}/encode/json")),
            times(ratio(f"payload/{event_type}/decode/postcard", f"payload/{event_type}/decode/json")),
        )
    table.row(
        "whole envelope (OrderItemAdded)",
        times(ratio("envelope/OrderItemAdded/encode/postcard", "envelope/OrderItemAdded/encode/json")),
        times(ratio("envelope/OrderItemAdded/decode/postcard", "envelope/OrderItemAdded/decode/json")),
    )

    table = Table("Generated apply dispatch against a handwritten match (generated / handwritten):",
                  "Workload", "ratio", "generated", "handwritten")
    for group in ("order_histories", "payment_processed_x1000", "same_crate_x1000"):
        generated, handwritten = f"dispatch/{group}/generated", f"dispatch/{group}/handwritten"
        table.row(f"`{group}`", times(ratio(generated, handwritten)),
                  format_time(time(generated)), format_time(time(handwritten)))

    table = Table("Loading a 10,000-event Order (events only / with snapshot):",
                  "Store, codec", "speed-up, snapshot", "speed-up, snapshot + 99 events",
                  "events only", "snapshot", "snapshot + 99 events")
    for store in ("memory", "sqlite"):
        for codec in CODECS:
            full = f"replay/{store}/events_only/{codec}"
            snapshot = f"replay/{store}/snapshot/{codec}"
            tail = f"replay/{store}/snapshot_tail_99/{codec}"
            table.row(f"{store}, {codec}", times(ratio(full, snapshot)), times(ratio(full, tail)),
                      *(format_time(time(full_id)) for full_id in (full, snapshot, tail)))

    table = Table("Rebuilding the three Order read models from 1,000,000 events:",
                  "Store, codec", "events/s", "rebuild", "scan only", "scan / rebuild")
    for store in ("memory", "sqlite"):
        for codec in CODECS:
            rebuild = f"projections/{store}/rebuild/{codec}"
            scan = f"projections/{store}/scan_only/{codec}"
            table.row(f"{store}, {codec}", per_second(elements(rebuild), time(rebuild)),
                      format_time(time(rebuild)), format_time(time(scan)), f"{ratio(scan, rebuild):.0%}")

    table = Table("In-memory store:", "Operation", "time", "events/s")
    for full_id in ("store/memory/append/1", "store/memory/append/10", "store/memory/append/100",
                    "store/memory/read/read_stream_100", "store/memory/read/read_all_page_512",
                    "store/memory/read/scan_log_100k_in_pages_of_512"):
        table.row(f"`{full_id.removeprefix('store/memory/')}`", format_time(time(full_id)),
                  per_second(elements(full_id), time(full_id)))

    table = Table("Codecs, absolute (criterion's typical time; raw: the serde call on the struct):",
                  "Event", "encode JSON", "encode postcard", "decode JSON", "decode postcard",
                  "raw encode JSON", "raw encode postcard", "raw decode JSON", "raw decode postcard")
    for event_type in EVENT_TYPES:
        table.row(event_type, *(
            format_time(time(f"payload/{event_type}/{operation}/{codec}"))
            for operation in ("encode", "decode", "encode_raw_serde", "decode_raw_serde")
            for codec in CODECS
        ))
    table.row("whole envelope (OrderItemAdded)", *(
        format_time(time(f"envelope/OrderItemAdded/{operation}/{codec}"))
        for operation in ("encode", "decode") for codec in CODECS
    ), "", "", "", "")


def print_results(results):
    for full_id in sorted(results):
        nanoseconds, throughput = results[full_id]
        extra = ""
        if throughput and "Elements" in throughput:
            extra = f"  {throughput['Elements'] / nanoseconds * 1e9:,.0f} elements/s"
        elif throughput and "Bytes" in throughput:
            extra = f"  {throughput['Bytes']} bytes"
        print(f"{full_id:60} {format_time(nanoseconds):>12}{extra}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--criterion-dir", type=Path, action="append",
        help="criterion output (repeat for the median of several runs)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "json-vs-postcard.png")
    parser.add_argument("--list", action="store_true", help="print every criterion result")
    parser.add_argument("--markdown", action="store_true", help="print the tables of BENCHMARKS.md")
    arguments = parser.parse_args()
    directories = arguments.criterion_dir or [default_criterion_dir()]
    for directory in directories:
        if not directory.is_dir():
            sys.exit(f"{directory} does not exist: run `cargo bench --bench codecs`")
    runs = [load_results(directory) for directory in directories]
    results = median_of(runs)
    if arguments.list:
        print_results(results)
    if arguments.markdown:
        print_markdown(runs)
    draw(payload_numbers(results), arguments.output, len(runs))


if __name__ == "__main__":
    main()
