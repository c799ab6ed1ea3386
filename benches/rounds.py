#!/usr/bin/env python3
"""Runs the in-memory benchmarks of benches/vs_cqrs.rs in interleaved rounds and summarises them.

cqrs-es's own speed moves by up to 1.5x between runs on a shared machine, so a ratio to it is
only worth quoting when both sides ran in the same run, and a single run says little. This
script runs one or more compiled bench binaries in turn, ROUNDS times (binary A, binary B,
A, B, ...), reads each run's results from criterion's directory right after it, and prints,
for every binary, mode and benchmark, the median commands/s over the rounds and the median and
range of the ratios to cqrs-es measured within each run. That is how BENCHMARKS.md's tables
"against cqrs-es" are made.

    cargo bench --bench vs_cqrs --no-run        # prints the binary's path
    cp target/release/deps/vs_cqrs-<hash> /tmp/before    # keep builds to compare
    python3 benches/rounds.py --rounds 3 /tmp/before /tmp/after

The binaries run from the workspace root with `--bench 'memory/.*/(FILTER)$' --warm-up-time 1
--measurement-time 4` and their standard output discarded (cqrs-es's MemStore prints two lines
per command). --filter replaces the default set of benchmarks; `VS_CQRS_ORDERS` and the other
variables of the bench pass through. The criterion directory is $CRITERION_HOME, else
$CARGO_TARGET_DIR/criterion, else target/criterion; --criterion-dir overrides it.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

# The same criterion directory as chart.py's (this script's folder is on the import path).
from chart import default_criterion_dir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILTER = (
    r"cqrs-es|by-hand|by-hand-sharded|es/shared\+cache\+deferred|es/shared\+cache"
    r"|es/daemon\+cache\+deferred|es/no-read-model\+cache"
)
BASELINE = "cqrs-es"


def results_since(directory, started):
    """{(mode, benchmark): commands per second} of the in-memory results written after
    `started` (the benchmarks of this run only, not older ones left in the directory)."""
    results = {}
    for estimates in directory.glob("vs_cqrs_memory_*/**/new/estimates.json"):
        if estimates.stat().st_mtime < started:
            continue
        described = json.loads((estimates.parent / "benchmark.json").read_text())
        commands = described["throughput"]["Elements"]
        median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
        mode = described["group_id"].rsplit("/", 1)[1]
        name = described["full_id"][len(described["group_id"]) + 1 :]
        results[(mode, name)] = commands / median_ns * 1e9
    return results


def run(binary, pattern, directory):
    started = time.time()
    subprocess.run(
        [
            binary,
            "--bench",
            pattern,
            "--warm-up-time",
            "1",
            "--measurement-time",
            "4",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    results = results_since(directory, started)
    if not results:
        sys.exit(f"{binary}: no in-memory result written under {directory}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs="+", help="compiled vs_cqrs bench binaries")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--filter", default=DEFAULT_FILTER, help="benchmarks, as a regex")
    parser.add_argument("--criterion-dir")
    args = parser.parse_args()
    directory = Path(args.criterion_dir) if args.criterion_dir else default_criterion_dir()
    pattern = f"memory/.*/({args.filter})$"

    # (binary, mode, benchmark) -> [(commands/s, ratio to cqrs-es in the same run)]
    seen = defaultdict(list)
    for round_number in range(1, args.rounds + 1):
        for binary in args.binaries:
            print(f"round {round_number}: {binary}", file=sys.stderr)
            results = run(binary, pattern, directory)
            for (mode, name), speed in results.items():
                baseline = results.get((mode, BASELINE))
                ratio = speed / baseline if baseline else None
                seen[(binary, mode, name)].append((speed, ratio))

    print(f"{'binary':24} {'mode':10} {'benchmark':28} {'median cmd/s':>13} "
          f"{'ratio to ' + BASELINE:>16} {'range':>13}  runs")
    for (binary, mode, name), runs in sorted(seen.items()):
        speeds = [speed for speed, _ in runs]
        ratios = [ratio for _, ratio in runs if ratio is not None]
        if ratios:
            median_ratio = f"{statistics.median(ratios):.2f}x"
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}x"
        else:
            median_ratio, spread = "-", "-"
        print(f"{Path(binary).name:24} {mode:10} {name:28} {statistics.median(speeds):>13,.0f} "
              f"{median_ratio:>16} {spread:>13}  {len(runs)}")


if __name__ == "__main__":
    main()
