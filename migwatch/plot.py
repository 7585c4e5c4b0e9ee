"""A chart of one target in the spirit of the paper's Figures 3 and 4: RTT over time with unanswered pings
marked, the clock offset below, labelled migrations shaded."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers

import matplotlib.pyplot as plt

from migwatch.contract.fields import FieldError
from migwatch.contract.labels import read_labels
from migwatch.contract.records import PingSample
from migwatch.contract.trace import iter_lines


def plot(
    trace: str | os.PathLike[str],
    target: str,
    out: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None = None,
) -> tuple[int, int]:
    """Write the chart as PNG; returns (pings, NTP answers) plotted. Samples of other targets are skipped
    while streaming, so a large trace is never held in memory."""
    ping_ts: list[float] = []
    rtts: list[float] = []
    lost_ts: list[float] = []
    clock_ts: list[float] = []
    offsets: list[float] = []
    for sample in iter_lines(trace):
        if sample.target != target:
            continue
        if isinstance(sample, PingSample):
            if sample.rtt_ms is None:
                lost_ts.append(sample.ts)
            else:
                ping_ts.append(sample.ts)
                rtts.append(sample.rtt_ms)
        elif sample.offset_ms is not None:
            clock_ts.append(sample.ts)
            offsets.append(sample.offset_ms)
    if not (ping_ts or lost_ts or clock_ts):
        raise FieldError(f"target: the trace has no samples of {target!r}")
    start = min(ping_ts[:1] + lost_ts[:1] + clock_ts[:1])
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6), height_ratios=(3, 2))
    top.plot([t - start for t in ping_ts], rtts, ".", markersize=3, color="tab:blue", label="RTT")
    if lost_ts:
        # As in the paper, unanswered pings sit below zero.
        top.plot([t - start for t in lost_ts], [-1.0] * len(lost_ts), "x", color="tab:red", label="unanswered")
    top.set_ylabel("RTT [ms]")
    top.set_yscale("symlog", linthresh=1.0)
    top.set_title(f"{target}: ping round-trip time and clock offset")
    bottom.plot([t - start for t in clock_ts], offsets, "o-", markersize=3, color="tab:green", label="offset")
    bottom.set_ylabel("clock offset [ms]")
    bottom.set_xlabel("time [s] since the target's first sample")
    if labels is not None:
        ground = read_labels(labels)
        for axis in (top, bottom):
            for migration in (m for m in ground.migrations if m.target == target):
                axis.axvspan(migration.start - start, migration.end - start, color="tab:orange", alpha=0.25)
            for episode in (b for b in ground.benign if b.target == target):
                axis.axvspan(episode.start - start, episode.end - start, color="grey", alpha=0.2)
        top.plot([], [], "s", color="tab:orange", alpha=0.4, label="migration (label)")
        top.plot([], [], "s", color="grey", alpha=0.4, label="benign (label)")
    top.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return len(ping_ts) + len(lost_ts), len(clock_ts)
