"""Confirmation delay at longer NTP intervals, on the lab corpus (issue #20 item 5).

    python benchmarks/ntp_interval_delay.py [--corpus deploy/dev/corpus] [--intervals 10 30 64] [--phases 4]

The corpus is recorded with NTP every 5 s. A guest whose NTP answers every N s sees a subset of those
answers: per target, the first answer in each N-second slot of a grid shifted by a phase. Every migration
run's traces are thinned that way (at ``--phases`` phases spread over N, to average out where the switch
falls in the slot), replayed with the run's config, and scored as ``migwatch eval``: the delay of each
detected migration after its end, and the recall, overall and per run; and, what issue #20 item 1 asks, the
time from the first NTP answer after the switch (the first that can show the lag) to the confirmation
("after answer"). Pings are untouched. (Runs whose migrations follow each other closer than the NTP interval
cannot tell them apart: two lags within one interval are one step.)
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migwatch.contract.config import load
from migwatch.contract.labels import read_labels
from migwatch.contract.records import ClockSample, Sample
from migwatch.contract.trace import read_trace
from migwatch.detectors.evaluate import alert_keys, delay_summary, score
from migwatch.detectors.target_group import Directory, TargetGroup


def thinned(samples: list[Sample], interval_s: float, phase_s: float) -> Iterator[Sample]:
    """The samples with one NTP answer per target per ``interval_s`` slot (slots start at ``phase_s``)."""
    slot_of: dict[str, int] = {}
    for sample in samples:
        if isinstance(sample, ClockSample):
            slot = math.floor((sample.ts - phase_s) / interval_s)
            if slot_of.get(sample.target) == slot:
                continue
            slot_of[sample.target] = slot
        yield sample


def after_first_answer(samples: list[Sample], migrations: list[dict[str, Any]]) -> list[float]:
    """Seconds from each confirmed migration's first NTP answer after its end to its confirmation."""
    answers: dict[str, list[float]] = {}
    for sample in samples:
        if isinstance(sample, ClockSample):
            answers.setdefault(sample.target, []).append(sample.ts)
    waits = []
    for migration in migrations:
        times = answers.get(migration["target"], [])
        first = bisect.bisect_left(times, migration["end"])
        if migration["state"] == "confirmed" and first < len(times):
            waits.append(migration["detected_ts"] - times[first])
    return waits


def _quantiles(values: list[float]) -> tuple[float, ...]:
    """Median, p95 and max as ``migwatch eval`` reports delays; NaN for none."""
    return tuple(math.nan if value is None else value for value in delay_summary(values).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("deploy/dev/corpus"))
    parser.add_argument("--intervals", type=float, nargs="+", default=[5.0, 10.0, 30.0, 64.0])
    parser.add_argument("--phases", type=int, default=4)
    args = parser.parse_args()
    runs = sorted(p.parent for p in args.corpus.glob("*/labels.json") if read_labels(p).migrations)
    names = "  ".join(f"{run.name:>9}" for run in runs)
    print(f"{'NTP every':>9} {'pings':>6} {'migrations':>10} {'recall':>6} {'delay median':>12} {'p95':>7} {'max':>7}"
          f"  {'after answer p50':>16} {'p95':>6} {'max':>6}   recall per run: {names}")  # fmt: skip
    for interval in args.intervals:
        for pings in ("1000ms", "100ms"):
            delays: list[float] = []
            waits: list[float] = []
            found = total = 0
            per_run: list[str] = []
            for run in runs:
                run_found = run_total = 0
                labels = read_labels(run / "labels.json")
                config = load(run / f"config-{pings}.toml")
                samples = list(read_trace(run / f"trace-{pings}.jsonl.gz"))
                if not samples:  # a run still being recorded
                    continue
                for k in range(args.phases):
                    group = TargetGroup(config.detectors, "bench", Directory.of(config.targets, config.silences))
                    phase = samples[0].ts + k * interval / args.phases
                    seen = list(thinned(samples, interval, phase))
                    result = score(alert_keys(a for sample in seen for a in group.update(sample)), labels)
                    run_found, run_total = run_found + result["detected"], run_total + result["migrations"]
                    delays += [m["delay_s"] for m in result["per_migration"] if m["delay_s"] is not None]
                    waits += after_first_answer(seen, result["per_migration"])
                found, total = found + run_found, total + run_total
                per_run.append(f"{run_found / run_total:>9.2f}" if run_total else f"{'-':>9}")
            median, p95, worst = _quantiles(delays)
            wait_median, wait_p95, wait_max = _quantiles(waits)
            print(f"{interval:>8g}s {pings:>6} {total:>10} {found / total:>6.2f} {median:>+11.1f}s {p95:>+6.1f}s "
                  f"{worst:>+6.1f}s  {wait_median:>+15.1f}s {wait_p95:>+5.1f}s {wait_max:>+5.1f}s   "
                  f"{'  '.join(per_run)}")  # fmt: skip


if __name__ == "__main__":
    main()
