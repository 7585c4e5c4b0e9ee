"""Scoring of CONTRACT section 4 (revised 2026-12-02): the detectors' alerts against a labelled trace.

Each alert belongs to one labelled episode of its target, migration or benign: the one with the latest
``start`` <= ``detected_ts`` + 2 s. Only ``likely`` and ``confirmed`` alerts count. A migration is detected
when a counted alert belongs to it no later than ``end`` + 120 s; its delay is the first such ``detected_ts``
minus ``end``. Any other counted alert is a false alarm: on a benign episode (even one that follows a
migration closely), on no episode, or too late.

Beyond the contract's figures (issue #20): ``confusion``, what each labelled episode was named, by its label's
kind (``migration`` or the benign kind): ``migration`` (a likely/confirmed alert), a look-alike's action
(``vm-paused``, ``vm-clock-step``, ``vm-rebooted``, ``vm-route-change``: the first such alert of the episode)
or ``none``. A migration named ``vm-paused`` is a migration missed as a pause; a pause named ``migration``, a
false alarm.

    >>> from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel
    >>> labels = Labels(migrations=[MigrationLabel(target="vm", start=100.0, end=110.0)],
    ...                 benign=[BenignLabel(target="vm", start=150.0, end=152.0, kind="pause")])
    >>> alerts = [("vm", "suspected", 101.0), ("vm", "confirmed", 112.5), ("vm", "confirmed", 155.0)]
    >>> result = score(alerts, labels)
    >>> result["detected"], result["delay_s"]["median"], result["false_alarms"], result["precision"]
    (1, 2.5, 1, 0.5)
    >>> result["per_benign"]
    [{'target': 'vm', 'start': 150.0, 'end': 152.0, 'kind': 'pause', 'states': ['confirmed'], 'named': 'migration'}]
    >>> score([("vm", "confirmed", 112.5), ("vm", "suspected", 154.0, "vm-paused")], labels)["confusion"]
    {'migration': {'migration': 1}, 'pause': {'vm-paused': 1}}
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable
from typing import Any

from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel
from migwatch.contract.records import Alert
from migwatch.detectors.lookalike import SEVERITY as LOOKALIKE_SEVERITY

COUNTED = ("likely", "confirmed")
MIGRATION_ACTIONS = ("vm-live-migration", "vm-relocated")
LONG_S = 20.0  # a migration this long had a memory copy worth warning during
LEAD_S = 5.0  # ... and a warning this long before its end is early enough to act on
# Actions that name an episode as something other than a migration: the look-alikes' (detectors/lookalike.py).
LOOKALIKES = tuple(LOOKALIKE_SEVERITY)
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


Key = tuple[str, str, float] | tuple[str, str, float, str]


def alert_keys(alerts: Iterable[Alert]) -> list[tuple[str, str, float, str]]:
    """What the scoring needs of each alert: (target, state, detected_ts, event.action)."""
    return [(a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts, a.event.action) for a in alerts]


def score(alerts: Iterable[Key], labels: Labels) -> dict[str, Any]:
    """``alerts`` as (target, state, detected_ts), optionally with the event.action (default a migration's);
    returns the contract's result object."""
    episodes = _Episodes(labels)
    owned: dict[int, list[tuple[str, float, str]]] = {}  # id(episode) -> its alerts as (state, ts, action)
    counted = false_alarms = 0
    for target, state, ts, *rest in alerts:
        action = rest[0] if rest else "vm-live-migration"
        episode = episodes.owner(target, ts)
        if episode is not None and state != "cleared":
            owned.setdefault(id(episode), []).append((state, ts, action))
        if state not in COUNTED or action not in MIGRATION_ACTIONS:
            continue
        counted += 1
        in_time = isinstance(episode, MigrationLabel) and ts <= episode.end + AFTER_S
        false_alarms += not in_time
    per_migration = [_migration_row(m, owned.get(id(m), [])) for m in labels.migrations]
    delays = [row["delay_s"] for row in per_migration if row["delay_s"] is not None]
    long = [row for row in per_migration if row["end"] - row["start"] >= LONG_S]
    per_benign = [_benign_row(b, owned.get(id(b), [])) for b in labels.benign]
    migrations = len(labels.migrations)
    return {
        "migrations": migrations,
        "detected": len(delays),
        "recall": len(delays) / migrations if migrations else 1.0,
        "alerts": counted,
        "false_alarms": false_alarms,
        "precision": (counted - false_alarms) / counted if counted else 1.0,
        "early": sum(1 for delay in delays if delay < 0),
        "early_warning": {
            "long_migrations": len(long),
            "warned": sum(1 for row in long if row["delay_s"] is not None and row["delay_s"] <= -LEAD_S),
        },
        "delay_s": delay_summary(delays),
        "per_migration": per_migration,
        "suspected_only": sum(1 for row in per_migration if row["delay_s"] is None and row["state"] == "suspected"),
        "benign_episodes": len(labels.benign),
        "benign_alerted": sum(1 for row in per_benign if row["named"] == "migration"),
        "per_benign": per_benign,
        "confusion": _confusion(per_migration, per_benign),
    }


def _benign_row(benign: BenignLabel, alerts: list[tuple[str, float, str]]) -> dict[str, Any]:
    return {
        "target": benign.target,
        "start": benign.start,
        "end": benign.end,
        "kind": benign.kind,
        "states": sorted({state for state, _, _ in alerts}, key=lambda s: (_RANK.get(s, 0), s)),
        "named": _named(alerts, math.inf),
    }


def _confusion(per_migration: list[dict[str, Any]], per_benign: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How many episodes of each labelled kind got each name."""
    confusion: dict[str, dict[str, int]] = {}
    named = [("migration", row["named"]) for row in per_migration] + [(row["kind"], row["named"]) for row in per_benign]
    for kind, name in named:
        row = confusion.setdefault(kind, {})
        row[name] = row.get(name, 0) + 1
    return {kind: dict(sorted(row.items())) for kind, row in sorted(confusion.items())}


def _named(alerts: list[tuple[str, float, str]], until: float) -> str:
    """What an episode was named by its alerts up to ``until``: a migration, a look-alike, or none."""
    mine = sorted((ts, state, action) for state, ts, action in alerts if ts <= until)
    if any(state in COUNTED and action in MIGRATION_ACTIONS for _, state, action in mine):
        return "migration"
    return next((action for _, _, action in mine if action in LOOKALIKES), "none")


def _migration_row(migration: MigrationLabel, alerts: list[tuple[str, float, str]]) -> dict[str, Any]:
    until = migration.end + AFTER_S
    hits = [(state, ts) for state, ts, action in alerts if ts <= until and action in MIGRATION_ACTIONS]
    detected = min((ts for state, ts in hits if state in COUNTED), default=None)
    best = max((state for state, _ in hits if state in _RANK), key=_RANK.__getitem__, default=None)
    return {
        "target": migration.target,
        "start": migration.start,
        "end": migration.end,
        "detected_ts": detected,
        "delay_s": None if detected is None else detected - migration.end,
        "state": best,
        "named": _named(alerts, until),
    }


def delay_summary(delays: list[float]) -> dict[str, float | None]:
    """Median, p95 (nearest rank) and max of ``delays``; None for none."""
    return {
        "median": statistics.median(delays) if delays else None,
        "p95": _nearest_rank(delays, 0.95),
        "max": max(delays, default=None),
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
        f"early warning  {result['early_warning']['warned']} of {result['early_warning']['long_migrations']} "
        f"migrations of {LONG_S:g} s or more at likely {LEAD_S:g} s or more before their end",
        "",
        f"{'target':20s} {'start':>16s} {'end':>16s} {'delay':>10s}  state",
    ]
    for row in result["per_migration"]:
        lines.append(
            f"{row['target']:20s} {row['start']:16.3f} {row['end']:16.3f} {seconds(row['delay_s']):>10s}  "
            f"{row['state'] or '-'}"
        )
    if result["per_benign"]:
        head = f"{'target':20s} {'start':>16s} {'end':>16s} {'benign kind':>14s}  {'named':<16s}"
        lines += ["", f"{head}  states alerted"]
        for row in result["per_benign"]:
            lines.append(
                f"{row['target']:20s} {row['start']:16.3f} {row['end']:16.3f} {row['kind']:>14s}  "
                f"{row['named']:<16s}  {', '.join(row['states']) or '-'}"
            )
    return "\n".join([*lines, "", *confusion_table(result["confusion"])])


def confusion_table(confusion: dict[str, dict[str, int]]) -> list[str]:
    """The confusion matrix as lines: one row per labelled kind, one column per name the detectors gave."""
    names = sorted({name for row in confusion.values() for name in row}, key=lambda n: (n != "migration", n))
    lines = ["labelled/named".ljust(16) + "".join(f" {name:>15s}" for name in names)]
    for kind, row in confusion.items():
        lines.append(f"{kind:<16s}" + "".join(f" {row.get(name, 0):>15d}" for name in names))
    return lines
