"""The stream worker's working state: one detector TargetGroup per Kafka partition, checkpointed to tables.

Faust tables make state durable: a write goes to a changelog topic that a worker replays when it takes the
partition over. A write costs about half a millisecond in Faust on our machines, many times the detectors'
work on a sample, so each partition's TargetGroup is kept in memory and a target's row is written only when its
alert state changes or ``checkpoint_s`` of event time has passed; the fleet-wide part of a partition
(common-mode record, learners, remembered alerts) is written on the same clock. Chart windows are written
once, when they close. After a crash a target resumes from its last checkpoint and Faust replays the
samples after the last committed offset.

    >>> from migwatch.contract.records import PingSample
    >>> from migwatch.streams.tables import MemoryTables
    >>> tables = MemoryTables()
    >>> shards = Partitions(tables, checkpoint_s=30.0)
    >>> def ping(t):
    ...     return PingSample(target="vm-1", address="192.0.2.1", probe="p", seq=t, ts=float(t), rtt_ms=0.4)
    >>> alerts = shards.update(0, [ping(t) for t in range(10)])
    >>> shards.checkpoint(0), sorted(tables.targets)   # a new target: written checkpoint_s after it came
    (1, [])
    >>> _ = shards.update(0, [ping(t) for t in range(10, 60)])
    >>> shards.checkpoint(0), sorted(tables.targets)   # then its row, and the fleet-wide part again
    (2, ['vm-1'])
    >>> shards.drop([0]); Partitions(tables).update(0, [ping(60)]) == []     # a new owner carries on
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from migwatch.contract.config import Config
from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import Alert, ClockSample, Feedback, PingSample
from migwatch.detectors.target import TargetDetector
from migwatch.detectors.target_group import TargetGroup
from migwatch.streams.charts import ChartWindow
from migwatch.streams.tables import Tables

_detector_decoder = msgspec.json.Decoder(TargetDetector)


@dataclass
class PartitionState:
    """One partition's TargetGroup and what of it is not yet written."""

    fleet: TargetGroup
    saved: dict[str, tuple[float, int]] = field(default_factory=dict)  # target -> (ts, level) of its row
    touched: dict[str, float] = field(default_factory=dict)  # target -> latest ts, not yet written
    # Targets updated since the last checkpoint call: only an update moves a target's ts or alert state, so
    # only these can have fallen due (all of `touched` is written when forced).
    updated: set[str] = field(default_factory=set)
    fleet_saved_ts: float | None = None
    latest_ts: float | None = None
    windows: dict[str, ChartWindow] = field(default_factory=dict)  # the open chart window of each target
    last_alert: dict[str, Alert] = field(default_factory=dict)


class Partitions:
    """The partitions this worker owns, each with its TargetGroup; ``update(partition, samples) -> list[Alert]``."""

    def __init__(
        self,
        tables: Tables,
        settings: DetectorSettings = DEFAULTS,
        observer: str = "migwatch",
        *,
        checkpoint_s: float = 30.0,
        chart_window_s: float = 30.0,
    ) -> None:
        self.tables = tables
        self.settings = settings
        self.observer = observer
        self.checkpoint_s = checkpoint_s
        self.chart_window_s = chart_window_s
        self.shards: dict[int, PartitionState] = {}

    @classmethod
    def for_worker(cls, tables: Tables, config: Config) -> Partitions:
        """Partitions with the config's detector settings and ``[worker]`` name, checkpoint and chart windows."""
        worker = config.worker
        return cls(
            tables, config.detectors, worker.name, checkpoint_s=worker.checkpoint_s,
            chart_window_s=worker.chart_window_s,
        )  # fmt: skip

    def shard(self, partition: int) -> PartitionState:
        shard = self.shards.get(partition)
        if shard is None:
            raw = self.tables.load_fleet(partition)
            fleet = (
                TargetGroup(self.settings, self.observer)
                if raw is None
                else TargetGroup.restore(raw, self.settings, self.observer)
            )
            shard = self.shards[partition] = PartitionState(fleet)
        return shard

    def update(self, partition: int, samples: Sequence[PingSample | ClockSample]) -> list[Alert]:
        """Run one partition's samples (in ``ts`` order) through its detectors; the alerts they raise."""
        shard = self.shard(partition)
        fleet, touched, updated, windows = shard.fleet, shard.touched, shard.updated, shard.windows
        width = self.chart_window_s
        alerts: list[Alert] = []
        for sample in samples:
            target, ts = sample.target, sample.ts
            if target not in fleet.detectors:
                self._load(shard, target)
            raised = fleet.update(sample)
            if raised:
                alerts += raised
                shard.last_alert[target] = raised[-1]
            touched[target] = ts
            updated.add(target)
            window = windows.get(target)
            if window is None or ts >= window.start + width:
                if window is not None:
                    self.tables.save_window(target, window)
                window = windows[target] = ChartWindow.containing(ts, width)
            window.add(sample)
            if shard.latest_ts is None or ts > shard.latest_ts:
                shard.latest_ts = ts
        return alerts

    def _load(self, shard: PartitionState, target: str) -> None:
        raw = self.tables.load_target(target)
        if raw is not None:
            detector = _detector_decoder.decode(raw)
            shard.fleet.detectors[target] = detector
            # Known to be saved as it is: written again only when due.
            shard.saved[target] = (_latest_ts(detector), detector.fusion.level)

    def checkpoint(self, partition: int, *, force: bool = False) -> int:
        """Write the rows that are due (all unwritten ones with ``force``); how many were written."""
        shard = self.shards.get(partition)
        if shard is None:
            return 0
        fleet, saved, every = shard.fleet, shard.saved, self.checkpoint_s
        written = 0
        candidates = list(shard.touched) if force else [t for t in shard.updated if t in shard.touched]
        shard.updated.clear()
        for target in candidates:
            ts = shard.touched[target]
            detector = fleet.detectors.get(target)
            if detector is None:  # forgotten meanwhile
                del shard.touched[target]
                continue
            level = detector.fusion.level
            last = saved.get(target)
            if last is None:  # new here: nothing worth a write yet, due checkpoint_s from now
                last = saved[target] = (ts, 0)
            if force or last[1] != level or ts - last[0] >= every:
                self.tables.save_target(target, msgspec.json.encode(detector))
                saved[target] = (ts, level)
                del shard.touched[target]
                written += 1
        latest = shard.latest_ts
        if latest is not None and (force or shard.fleet_saved_ts is None or latest - shard.fleet_saved_ts >= every):
            self.tables.save_fleet(partition, fleet.snapshot(with_detectors=False))
            shard.fleet_saved_ts = latest
            written += 1
        return written

    def learn(self, partition: int, feedback: Feedback) -> bool:
        """An analyst's verdict; False when the alert is not remembered by this partition."""
        shard = self.shard(partition)
        learned = shard.fleet.learn(feedback)
        if learned and shard.latest_ts is not None:
            shard.fleet_saved_ts = None  # the learners changed: written at the next checkpoint
        return learned

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions that moved to another worker; if they come back they are read again."""
        for partition in partitions:
            self.shards.pop(partition, None)

    def target_count(self) -> int:
        return sum(len(shard.fleet.detectors) for shard in self.shards.values())

    def status(self) -> list[dict[str, Any]]:
        """Every target's current state by target id, for ``/status`` and the fleet page."""
        return sorted(
            (
                target_status(target, partition, detector, shard.last_alert.get(target))
                for partition, shard in self.shards.items()
                for target, detector in shard.fleet.detectors.items()
            ),
            key=_by_target,
        )

    def chart(self, target: str, count: int) -> list[dict[str, Any]] | None:
        """The points of a target's chart (up to ``count`` closed windows, then the open one), or None."""
        for shard in self.shards.values():
            window = shard.windows.get(target)
            if window is not None:
                return [w.point() for w in [*self.tables.history(target, window.start, count), window]]
        return None


def _by_target(status: dict[str, Any]) -> str:
    return str(status["target"])


def _latest_ts(detector: TargetDetector) -> float:
    candidates = (detector.ping.window_start, detector.lag.lag_ts, detector.fusion.last_ts)
    return max((ts for ts in candidates if ts is not None), default=0.0)


def target_status(target: str, partition: int, detector: TargetDetector, alert: Alert | None) -> dict[str, Any]:
    fusion, ping = detector.fusion, detector.ping
    return {
        "target": target,
        "address": detector.address,
        "partition": partition,
        "state": fusion.level.state,
        "likelihood": round(fusion.likelihood, 4),
        "last_rtt_ms": ping.last_rtt_ms,
        "rtt_baseline_ms": ping.baseline.median,
        "clock_offset_ms": detector.lag.offset_ms,
        "time_lag_ms": detector.lag.lag_ms,
        "last_alert": None
        if alert is None
        else {
            "id": alert.event.id,
            "state": alert.migwatch.state,
            "detected_ts": alert.migwatch.detected_ts,
            "likelihood": alert.migwatch.likelihood,
        },
    }
