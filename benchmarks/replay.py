"""Replay speed of the detectors and the size of per-target state (issue #4's targets).

    python benchmarks/replay.py [--targets 10000] [--seconds 100] [--state-targets 100000]

1. A synthetic trace of --targets targets pinged at 1 Hz for --seconds (NTP every 30 s): about a million
   samples with --targets 10000. In the same run it measures reading the trace alone (decode and sort: the
   baseline), the detectors alone on samples in memory, and the whole ``replay`` (read + detectors), all on
   one core, and prints samples/s and the ratios.
2. tracemalloc over --state-targets targets whose detectors have warmed up (baseline and NTP reference
   learned): bytes of Python heap per target, and the size of one target's JSON state.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import msgspec

from migwatch.contract.trace import TraceWriter, read_trace
from migwatch.detectors.target_group import TargetGroup
from migwatch.replay import replay
from migwatch_dev.synthetic import Episode, generate


def _speed(targets: int, seconds: float) -> None:
    names = [f"vm-{i:05d}" for i in range(targets)]
    episodes = [Episode("migration", names[i], seconds / 3, copy_s=seconds / 4) for i in range(0, targets, 97)]
    started = time.perf_counter()
    samples, _ = generate(episodes, names, seconds)
    print(f"generated {len(samples):,} samples over {targets:,} targets in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.jsonl.gz"
        with TraceWriter(trace) as writer:
            writer.write_all(samples)
        rates = {}
        started = time.perf_counter()
        count = sum(1 for _ in read_trace(trace))
        rates["read_trace only (baseline)"] = count / (time.perf_counter() - started)
        fleet = TargetGroup()
        started = time.perf_counter()
        alerts = sum(len(fleet.update(sample)) for sample in samples)
        rates["detectors only (samples in memory)"] = len(samples) / (time.perf_counter() - started)
        started = time.perf_counter()
        replayed = sum(1 for _ in replay(trace, quiet=True))
        rates["replay (read + detectors)"] = count / (time.perf_counter() - started)
    assert replayed == alerts, (replayed, alerts)
    baseline = rates["read_trace only (baseline)"]
    for name, rate in rates.items():
        print(f"{name:40s} {rate:10,.0f} samples/s   {rate / baseline:5.2f}x baseline   {rate / 100_000:5.2f}x target")
    print(f"alerts raised: {alerts}")


def _state(targets: int) -> None:
    names = [f"vm-{i:06d}" for i in range(targets)]
    samples, _ = generate([], names[:1], 100)  # one target's warm-up: 100 pings, 4 NTP answers
    fleet = TargetGroup()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for name in names:
        for sample in samples:
            fleet.update(msgspec.structs.replace(sample, target=name))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    heap = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    sizes = [len(msgspec.json.encode(fleet.detectors[name])) for name in names[:: max(1, targets // 1000)]]
    print(f"state of {targets:,} warmed-up targets: {heap / targets:,.0f} bytes of heap per target "
          f"(target <= 4096), JSON state {statistics.mean(sizes):,.0f} bytes per target")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--state-targets", type=int, default=100_000)
    args = parser.parse_args()
    _speed(args.targets, args.seconds)
    _state(args.state_targets)


if __name__ == "__main__":
    main()
