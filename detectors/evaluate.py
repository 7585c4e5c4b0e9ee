"""Scoring of CONTRACT section 4 (revised 2026-12-02): the detectors' alerts against a labelled trace.

Each alert belongs to one labelled episode of its target, migration or benign: the one with the latest
``start`` <= ``detected_ts`` + 2 s. Only ``likely`` and ``confirmed`` alerts count. A migration is detected
when a counted alert belongs to it no later than ``end`` + 120 s; its delay is the first such ``detected_ts``
minus ``end``. Any other counted alert is a false alarm: on a benign episode (even one that follows a
migration closely), on no episode, or too late.

    >>> from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel
    >>> labels = Labels(migrations=[MigrationLabel(target="vm", start=100.0, end=110.0)],
    ...                 benign=[BenignLabel(target="vm", start=150.0, end=152.0, kind="pause")])
    >>> alerts = [("vm", "suspected", 101.0), ("vm", "confirmed", 112.5), ("vm", "confirmed", 155.0)]
    >>> result = score(alerts, labels)
    >>> result["detected"], result["delay_s"]["median"], result["false_alarms"], result["precision"]
    (1, 2.5, 1, 0.5)
    >>> result["per_benign"]
    [{'target': 'vm', 'start': 150.0, 'end': 152.0, 'kind': 'pause', 'states': ['confirmed']}]
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable
from typing import Any

from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel

COUNTED = ("likely", "confirmed")
BEFORE_S = 2.0
AFTER_S = 120.0
_RANK = {"suspected": 1, "likely": 2, "confirmed": 3}

Episode = MigrationLabel | BenignLabel


class _Episodes:
    """Each target's labelled episodes by start: which one an alert belongs to."""

    def __init__(self, labels: Labels) -> None:
        self.by_target: dict[str, list[Episode]] = {}
        for episode in [*labels.migrations, *labels.benign]:
            self.by_target.setdefault(episode.target, []).append(episode)
        for episodes in self.by_target.values():
            episodes.sort(key=lambda episode: episode.start)
        self.starts = {target: [e.start for e in episodes] for target, episodes in self.by_target.items()}

    def owner(self, target: str, ts: float) -> Episode | None:
        """The episode with the latest start <= ts + BEFORE_S, or None."""
        index = bisect.bisect_right(self.starts.get(target, []), ts + BEFORE_S) - 1
        return self.by_target[target][index] if index >= 0 else None


def score(alerts: Iterable[tuple[str, str, float]], labels: Labels) -> dict[str, Any]:
    """``alerts`` as (target, state, detected_ts); returns the contract's result object."""
    episodes = _Episodes(labels)
    owned: dict[int, list[tuple[str, float]]] = {}  # id(episode) -> its alerts as (state, ts)
    counted = false_alarms = 0
    for target, state, ts in alerts:
        episode = episodes.owner(target, ts)
        if episode is not None and state != "cleared":
            owned.setdefault(id(episode), []).append((state, ts))
        if state not in COUNTED:
            continue
        counted += 1
        in_time = isinstance(episode, MigrationLabel) and ts <= episode.end + AFTER_S
        false_alarms += not in_time
    per_migration = [_migration_row(m, owned.get(id(m), [])) for m in labels.migrations]
    delays = [row["delay_s"] for row in per_migration if row["delay_s"] is not None]
    per_benign = [
        {
            "target": b.target,
            "start": b.start,
            "end": b.end,
            "kind": b.kind,
            "states": sorted({state for state, _ in owned.get(id(b), [])}, key=lambda s: (_RANK.get(s, 0), s)),
        }
        for b in labels.benign
    ]
    migrations = len(labels.migrations)
    return {
        "migrations": migrations,
        "detected": len(delays),
        "recall": len(delays) / migrations if migrations else 1.0,
        "alerts": counted,
        "false_alarms": false_alarms,
        "precision": (counted - false_alarms) / counted if counted else 1.0,
        "early": sum(1 for delay in delays if delay < 0),
        "delay_s": {
            "median": statistics.median(delays) if delays else None,
            "p95": _nearest_rank(delays, 0.95),
            "max": max(delays, default=None),
        },
        "per_migration": per_migration,
        "suspected_only": sum(1 for row in per_migration if row["delay_s"] is None and row["state"] == "suspected"),
        "benign_episodes": len(labels.benign),
        "benign_alerted": sum(1 for row in per_benign if any(state in COUNTED for state in row["states"])),
        "per_benign": per_benign,
    }


def _migration_row(migration: MigrationLabel, alerts: list[tuple[str, float]]) -> dict[str, Any]:
    hits = [(state, ts) for state, ts in alerts if ts <= migration.end + AFTER_S]
    detected = min((ts for state, ts in hits if state in COUNTED), default=None)
    best = max((state for state, _ in hits if state in _RANK), key=_RANK.__getitem__, default=None)
    return {
        "target": migration.target,
        "start": migration.start,
        "end": migration.end,
        "detected_ts": detected,
        "delay_s": None if detected is None else detected - migration.end,
        "state": best,
    }


def _nearest_rank(values: list[float], quantile: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


def table(result: dict[str, Any]) -> str:
    """The result as the readable table of ``migwatch eval`` without ``--json``."""
    delay = result["delay_s"]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:+.1f} s"

    lines = [
        f"migrations     {result['migrations']}",
        f"detected       {result['detected']}  (recall {result['recall']:.3f}; {result['early']} before the end; "
        f"{result['suspected_only']} only suspected)",
        f"alerts         {result['alerts']}  (false alarms {result['false_alarms']}; "
        f"precision {result['precision']:.3f})",
        f"benign         {result['benign_episodes']} episodes, "
        f"{result['benign_alerted']} with a likely/confirmed alert",
        f"delay          median {seconds(delay['median'])}, p95 {seconds(delay['p95'])}, max {seconds(delay['max'])}",
        "",
        f"{'target':20s} {'start':>16s} {'end':>16s} {'delay':>10s}  state",
    ]
    for row in result["per_migration"]:
        lines.append(
            f"{row['target']:20s} {row['start']:16.3f} {row['end']:16.3f} {seconds(row['delay_s']):>10s}  "
            f"{row['state'] or '-'}"
        )
    if result["per_benign"]:
        lines += ["", f"{'target':20s} {'start':>16s} {'end':>16s} {'benign kind':>14s}  states alerted"]
        for row in result["per_benign"]:
            lines.append(
                f"{row['target']:20s} {row['start']:16.3f} {row['end']:16.3f} {row['kind']:>14s}  "
                f"{', '.join(row['states']) or '-'}"
            )
    return "\n".join(lines)
