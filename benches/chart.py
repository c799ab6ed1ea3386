#!/usr/bin/env python3
"""Draws docs/json-vs-postcard.png from the criterion output of `cargo bench --bench codecs`.

Every `payload/<EventType>` benchmark of benches/codecs.rs records its throughput as the
encoded size in bytes, so the criterion output holds both numbers the chart shows: the size
and the time of each event type, JSON against postcard, encoding and decoding through the
framework (`EventSet::encode`, `RecordedEvent::decode`).

    cargo bench --bench codecs
    python3 benches/chart.py                     # writes docs/json-vs-postcard.png
    python3 benches/chart.py --list              # also prints every criterion result

The criterion directory is $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion, else
target/criterion (what criterion itself uses); --criterion-dir overrides it. Needs matplotlib
(`pip install matplotlib`).
"""

import argparse
import json
import os
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


def draw(numbers, output):
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
    figure.suptitle(
        "Order event payloads, JSON vs postcard "
        "(EventSet::encode / RecordedEvent::decode; criterion, cargo bench --bench codecs)"
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
    parser.add_argument("--criterion-dir", type=Path, default=default_criterion_dir())
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "json-vs-postcard.png")
    parser.add_argument("--list", action="store_true", help="print every criterion result")
    arguments = parser.parse_args()
    if not arguments.criterion_dir.is_dir():
        sys.exit(f"{arguments.criterion_dir} does not exist: run `cargo bench --bench codecs`")
    results = load_results(arguments.criterion_dir)
    if arguments.list:
        print_results(results)
    draw(payload_numbers(results), arguments.output)


if __name__ == "__main__":
    main()
