"""A chart of one target with the fleet page's look (issue #22), in the spirit of the paper's Figures 3 and 4:
RTT on a log scale over clock time, unanswered pings in a strip of their own below it (never a value on the
RTT axis), the clock offset under both, the hypervisors' RTT beside the VM's, labelled episodes shaded and
the detectors' alerts marked in their state's colour."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from migwatch.contract.codec import decode
from migwatch.contract.fields import FieldError
from migwatch.contract.labels import Labels, read_labels
from migwatch.contract.records import Alert, PingSample
from migwatch.contract.trace import iter_lines

# The fleet page's colours (streams/page.html).
STATE_COLOURS = {"suspected": "#e0c000", "likely": "#e07000", "confirmed": "#b00020", "cleared": "#4a7a4a"}
HOST_COLOURS = ("#7a3fb0", "#008b8b", "#8b4513")


@dataclass
class Series:
    """One target's samples: answered pings, unanswered ones, NTP offsets (times as datetimes, UTC)."""

    pings: list[tuple[datetime, float]] = field(default_factory=list)
    lost: list[datetime] = field(default_factory=list)
    offsets: list[tuple[datetime, float]] = field(default_factory=list)


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def read_series(trace: str | os.PathLike[str], targets: Iterable[str]) -> dict[str, Series]:
    """The samples of ``targets`` in the trace; the others are skipped while streaming, so a large trace is
    never held in memory."""
    found = {target: Series() for target in targets}
    for sample in iter_lines(trace):
        series = found.get(sample.target)
        if series is None:
            continue
        if isinstance(sample, PingSample):
            if sample.rtt_ms is None:
                series.lost.append(_when(sample.ts))
            elif sample.rtt_ms > 0:  # a log axis has no zero
                series.pings.append((_when(sample.ts), sample.rtt_ms))
        elif sample.offset_ms is not None:
            series.offsets.append((_when(sample.ts), sample.offset_ms))
    return found


def read_alerts(path: str | os.PathLike[str], target: str) -> list[Alert]:
    """The alerts of ``target`` in a JSON Lines file (``migwatch replay --out`` or the alerts topic)."""
    with open(path, "rb") as lines:
        alerts = [decode(Alert, line) for line in lines if line.strip()]
    return [alert for alert in alerts if alert.migwatch.target == target]


def figure_of(
    trace: str | os.PathLike[str],
    target: str,
    *,
    labels: str | os.PathLike[str] | None = None,
    alerts: str | os.PathLike[str] | None = None,
    hosts: Iterable[str] = (),
) -> tuple[Figure, int, int]:
    """The chart, and the pings and NTP answers of ``target`` it shows. ``hosts`` are drawn beside the
    target, and so are the source and destination hypervisors of its labelled migrations."""
    ground = read_labels(labels) if labels is not None else None
    beside = list(dict.fromkeys([*hosts, *(h for m in (ground.migrations if ground else []) if m.target == target
                                           for h in (m.source, m.destination) if isinstance(h, str))]))  # fmt: skip
    series = read_series(trace, [target, *beside])
    own = series[target]
    if not (own.pings or own.lost or own.offsets):
        raise FieldError(f"target: the trace has no samples of {target!r}")
    figure, (rtt, strip, offset) = plt.subplots(
        3, 1, sharex=True, figsize=(11, 6.4), height_ratios=(3, 0.25, 1.8), gridspec_kw={"hspace": 0.08}
    )
    for i, host in enumerate(h for h in beside if series[h].pings):
        times, values = zip(*series[host].pings, strict=True)
        rtt.plot(times, values, ".", markersize=2, color=HOST_COLOURS[i % len(HOST_COLOURS)], alpha=0.6,
                 label=f"RTT of hypervisor {host}")  # fmt: skip
    if own.pings:
        times, values = zip(*own.pings, strict=True)
        rtt.plot(times, values, ".", markersize=3, color="#1f5fbf", label=f"RTT of {target}")
    rtt.set_yscale("log")
    rtt.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.1, 1, 10: as on the page
    rtt.set_ylabel("RTT (ms, log)")
    rtt.set_title(f"{target}: round-trip time, unanswered pings and clock offset")
    rtt.grid(True, which="major", color="#eee")
    # Unanswered pings sit in a strip of their own: on a log axis they have no value.
    strip.vlines(own.lost, 0, 1, color="#b00020", linewidth=1.5, label="unanswered ping")
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_ylabel("lost", rotation=0, ha="right", va="center")
    if own.offsets:
        times, values = zip(*own.offsets, strict=True)
        offset.plot(times, values, "o-", markersize=3, color="#2a8a2a", label="clock offset")
    offset.set_ylabel("offset (ms)")
    offset.grid(True, color="#eee")
    offset.set_xlabel("time (UTC)")
    offset.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    _shade(figure, target, ground)
    if alerts is not None:
        _mark(figure, read_alerts(alerts, target))
    handles = [h for axis in (rtt, strip, offset) for h in axis.get_legend_handles_labels()[0]]
    rtt.legend(handles=handles, loc="upper left", fontsize="small", ncols=3)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.09)
    return figure, len(own.pings) + len(own.lost), len(own.offsets)


def _shade(figure: Figure, target: str, ground: Labels | None) -> None:
    """The labelled episodes: migrations hatched in the confirmed colour, benign ones grey."""
    if ground is None:
        return
    rtt, *_ = figure.axes
    for axis in figure.axes:
        for migration in (m for m in ground.migrations if m.target == target):
            axis.axvspan(_when(migration.start), _when(migration.end), color="#b00020", alpha=0.15, hatch="//")
        for episode in (b for b in ground.benign if b.target == target):
            axis.axvspan(_when(episode.start), _when(episode.end), color="grey", alpha=0.2)
    rtt.fill_between([], [], color="#b00020", alpha=0.15, hatch="//", label="migration (label)")
    rtt.fill_between([], [], color="grey", alpha=0.2, label="benign episode (label)")


def _mark(figure: Figure, alerts: list[Alert]) -> None:
    """Each alert: a dashed line in its state's colour at its detected time, named on the RTT axis."""
    rtt, *_ = figure.axes
    for alert in alerts:
        state, when = alert.migwatch.state, _when(alert.migwatch.detected_ts)
        for axis in figure.axes:
            axis.axvline(when, color=STATE_COLOURS.get(state, "#333"), linestyle="--", linewidth=1.2)
        rtt.annotate(f"{alert.event.action} {state}", (when, 1), xycoords=("data", "axes fraction"),
                     rotation=90, va="top", ha="right", fontsize=7, color=STATE_COLOURS.get(state, "#333"))  # fmt: skip
    for state in dict.fromkeys(alert.migwatch.state for alert in alerts):
        rtt.plot([], [], "--", color=STATE_COLOURS.get(state, "#333"), label=f"{state} alert")


def plot(
    trace: str | os.PathLike[str],
    target: str,
    out: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    alerts: str | os.PathLike[str] | None = None,
    hosts: Iterable[str] = (),
) -> tuple[int, int]:
    """Write the chart as PNG; returns (pings, NTP answers) plotted."""
    figure, pings, clocks = figure_of(trace, target, labels=labels, alerts=alerts, hosts=hosts)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return pings, clocks
