"""Scoring of CONTRACT section 4: the detectors' alerts against a labelled trace.

Only ``likely`` and ``confirmed`` alerts count. A migration is detected when an alert for its target has
``detected_ts`` in [start - 2 s, end + 120 s]; its delay is the first such ``detected_ts`` minus ``end``.
A counted alert in no such window of its target is a false alarm.

    >>> from migwatch.contract.labels import Labels, MigrationLabel
    >>> labels = Labels(migrations=[MigrationLabel(target="vm", start=100.0, end=110.0)])
    >>> result = score([("vm", "suspected", 101.0), ("vm", "confirmed", 112.5), ("vm", "likely", 900.0)], labels)
    >>> result["detected"], result["delay_s"]["median"], result["false_alarms"], result["precision"]
    (1, 2.5, 1, 0.5)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from migwatch.contract.labels import Labels

COUNTED = ("likely", "confirmed")
BEFORE_S = 2.0
AFTER_S = 120.0
_RANK = {"suspected": 1, "likely": 2, "confirmed": 3}


def score(alerts: Iterable[tuple[str, str, float]], labels: Labels) -> dict[str, Any]:
    """``alerts`` as (target, state, detected_ts); returns the contract's result object."""
    alerts = list(alerts)
    windows: dict[str, list[tuple[float, float]]] = {}
    for migration in labels.migrations:
        windows.setdefault(migration.target, []).append((migration.start - BEFORE_S, migration.end + AFTER_S))

    def in_window(target: str, ts: float) -> bool:
        return any(low <= ts <= high for low, high in windows.get(target, ()))

    counted = [(target, ts) for target, state, ts in alerts if state in COUNTED]
    false_alarms = sum(1 for target, ts in counted if not in_window(target, ts))
    per_migration = []
    delays = []
    suspected_only = 0
    for migration in labels.migrations:
        low, high = migration.start - BEFORE_S, migration.end + AFTER_S
        hits = [(ts, state) for target, state, ts in alerts if target == migration.target and low <= ts <= high]
        detected = min((ts for ts, state in hits if state in COUNTED), default=None)
        best = max((state for _, state in hits if state in _RANK), key=_RANK.__getitem__, default=None)
        delay = None if detected is None else detected - migration.end
        if delay is not None:
            delays.append(delay)
        elif best == "suspected":
            suspected_only += 1
        per_migration.append(
            {
                "target": migration.target,
                "start": migration.start,
                "end": migration.end,
                "detected_ts": detected,
                "delay_s": delay,
                "state": best,
            }
        )
    benign_alerted = sum(
        1
        for episode in labels.benign
        if any(t == episode.target and episode.start <= ts <= episode.end for t, ts in counted)
    )
    migrations = len(labels.migrations)
    return {
        "migrations": migrations,
        "detected": len(delays),
        "recall": len(delays) / migrations if migrations else 1.0,
        "alerts": len(counted),
        "false_alarms": false_alarms,
        "precision": (len(counted) - false_alarms) / len(counted) if counted else 1.0,
        "early": sum(1 for delay in delays if delay < 0),
        "delay_s": {
            "median": statistics.median(delays) if delays else None,
            "p95": _nearest_rank(delays, 0.95),
            "max": max(delays, default=None),
        },
        "per_migration": per_migration,
        "suspected_only": suspected_only,
        "benign_episodes": len(labels.benign),
        "benign_alerted": benign_alerted,
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
    return "\n".join(lines)
