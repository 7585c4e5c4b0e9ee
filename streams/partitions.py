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
    >>> partitions = Partitions(tables, checkpoint_s=30.0)
    >>> def ping(t):
    ...     return PingSample(target="vm-1", address="192.0.2.1", probe="p", seq=t, ts=float(t), rtt_ms=0.4)
    >>> alerts = partitions.update(0, [ping(t) for t in range(10)])
    >>> partitions.checkpoint(0), sorted(tables.targets)   # a new target: written within checkpoint_s
    (1, [])
    >>> _ = partitions.update(0, [ping(t) for t in range(10, 60)])
    >>> partitions.checkpoint(0), sorted(tables.targets)   # then its row, and the fleet-wide part again
    (2, ['vm-1'])
    >>> partitions.drop([0]); Partitions(tables).update(0, [ping(60)]) == []     # a new owner carries on
    True
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from migwatch.contract.config import AlertLinks, Config
from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import (
    Alert,
    ClockSample,
    Feedback,
    HostView,
    LastAlert,
    PingSample,
    StatusChunk,
    Target,
    TargetStatus,
)
from migwatch.detectors.target import TargetDetector
from migwatch.detectors.target_group import NO_LINKS, Directory, TargetGroup, view_of
from migwatch.streams.charts import ChartWindow, phase_of
from migwatch.streams.tables import Tables

_detector_decoder = msgspec.json.Decoder(TargetDetector)
# A partition's statuses go out in this many messages (~10 targets each at 10,000 targets and 8 partitions,
# ~100 at 100,000, ~36 kB): few messages to send and to follow, each small enough to send again when one of
# its targets changes. A chunk must stay under the record cap (64 kB, ~170 statuses): up to ~20,000 targets
# a partition.
STATUS_CHUNKS = 128
STATUS_GAP_S = 1.0  # a chunk with news is sent at most this often
# Status chunks a worker sends a second, at most. Each is a produce through the same client as the alerts:
# 2,000 chunks at once (every chunk of 10,000 targets falling due together) held the alerts of a live run up
# by ~28 s (p50; 2.4 s without statuses). A worker's whole fleet is told within chunks / this many seconds.
STATUS_SENDS_PER_S = 32


@dataclass
class PartitionState:
    """One partition's TargetGroup and what of it is not yet written."""

    group: TargetGroup
    saved: dict[str, tuple[float, int]] = field(default_factory=dict)  # target -> (ts, level) of its row
    touched: dict[str, float] = field(default_factory=dict)  # target -> latest ts, not yet written
    # Targets updated since the last checkpoint call: only an update moves a target's ts or alert state, so
    # only these can have fallen due (all of `touched` is written when forced).
    updated: set[str] = field(default_factory=set)
    group_saved_ts: float | None = None
    latest_ts: float | None = None
    windows: dict[str, ChartWindow] = field(default_factory=dict)  # the open chart window of each target
    last_alert: dict[str, Alert] = field(default_factory=dict)
    hosts_updated: set[str] = field(default_factory=set)  # hypervisors with samples since the last report
    status_updated: set[str] = field(default_factory=set)  # targets with samples since their status was weighed
    # target -> what its last status told: (state, likelihood in 0.05 steps, last alert id, last host)
    status_told: dict[str, tuple[str, int, str | None, str | None]] = field(default_factory=dict)
    status_dirty: set[int] = field(default_factory=set)  # status chunks with news not yet sent
    status_sent: dict[int, float] = field(default_factory=dict)  # status chunk -> when it was last sent
    # Which round of updates a sample ran in, against what the rows written hold (migwatch.streams.commits).
    round: int = 0  # rounds of updates so far (start_round)
    written: dict[str, int] = field(default_factory=dict)  # target -> the round its last written row holds
    group_round: int = -1  # the round the last written partition row holds


class Partitions:
    """The partitions this worker owns, each with its TargetGroup; ``update(partition, samples) -> list[Alert]``
    (or ``start_round`` and ``update_one`` for samples of many partitions interleaved)."""

    def __init__(
        self,
        tables: Tables,
        settings: DetectorSettings = DEFAULTS,
        observer: str = "migwatch",
        *,
        checkpoint_s: float = 30.0,
        chart_window_s: float = 30.0,
        directory: Directory | None = None,
        links: AlertLinks = NO_LINKS,
        url: str = "",
    ) -> None:
        self.tables = tables
        self.url = url  # where a target's status says its chart is served (this worker's web address)
        self.links = links
        self.settings = settings
        self.observer = observer
        self.checkpoint_s = checkpoint_s
        self.chart_window_s = chart_window_s
        self.owned: dict[int, PartitionState] = {}  # partition -> its state, while this worker owns it
        given = directory if directory is not None else Directory()
        # A VM's hypervisor in another partition of this worker is seen at once, one elsewhere by its reports.
        self.directory = Directory(given.targets, given.silences, _WorkerHosts(self.owned, given.hosts))
        self.reported: dict[str, tuple[float | None, float | None, float | None]] = {}  # host -> what was told

    @classmethod
    def for_worker(cls, tables: Tables, config: Config, directory: Directory | None = None) -> Partitions:
        """Partitions with the config's detector settings and ``[worker]`` name, checkpoint and chart windows;
        ``directory`` what they know of targets, windows and hosts (default: the config's targets and silences)."""
        worker = config.worker
        return cls(
            tables, config.detectors, worker.name, checkpoint_s=worker.checkpoint_s,
            chart_window_s=worker.chart_window_s,
            directory=directory if directory is not None else Directory.of(config.targets, config.silences),
            links=config.alerts, url=worker.own_url,
        )  # fmt: skip

    def state_of(self, partition: int) -> PartitionState:
        state = self.owned.get(partition)
        if state is None:
            raw = self.tables.load_group(partition)
            group = (
                TargetGroup(self.settings, self.observer, self.directory, self.links)
                if raw is None
                else TargetGroup.restore(raw, self.settings, self.observer, self.directory, self.links)
            )
            state = self.owned[partition] = PartitionState(group)
        return state

    def update(self, partition: int, samples: Sequence[PingSample | ClockSample]) -> list[Alert]:
        """Run one partition's samples (in ``ts`` order) through its detectors, as one round; the alerts they
        raise."""
        self.start_round(partition)
        alerts: list[Alert] = []
        for sample in samples:
            alerts += self.update_one(partition, sample)
        return alerts

    def start_round(self, partition: int) -> int:
        """Begin the partition's next round of updates (the unit that checkpoints account for, see
        migwatch.streams.commits); its number."""
        state = self.state_of(partition)
        state.round += 1
        return state.round

    def update_one(self, partition: int, sample: PingSample | ClockSample) -> list[Alert]:
        """Run one sample through its partition's detectors in the partition's current round (a worker
        interleaves the samples of its partitions in ``ts`` order: a sample at a time, without a call per
        partition run); the alerts it raises."""
        state = self.owned[partition]
        group = state.group
        target, ts = sample.target, sample.ts
        if target not in group.detectors:
            self._load(state, target)
        raised = group.update(sample)
        if raised:
            state.last_alert[target] = raised[-1]
        state.touched[target] = ts
        state.updated.add(target)
        state.status_updated.add(target)
        if isinstance(sample, PingSample) and sample.kind == "host":
            state.hosts_updated.add(target)
        window = state.windows.get(target)
        if window is None or ts >= window.start + self.chart_window_s:
            if window is not None:
                self.tables.save_window(target, window)
            width = self.chart_window_s
            window = state.windows[target] = ChartWindow.containing(ts, width, phase_of(target, width))
        window.add(sample)
        window.mark(group.detectors[target].fusion.level, raised)
        if state.latest_ts is None or ts > state.latest_ts:
            state.latest_ts = ts
        return raised

    def _load(self, state: PartitionState, target: str) -> None:
        raw = self.tables.load_target(target)
        if raw is not None:
            detector = _detector_decoder.decode(raw)
            state.group.detectors[target] = detector
            # Known to be saved as it is: written again only when due.
            state.saved[target] = (_latest_ts(detector), detector.fusion.level)

    def checkpoint(self, partition: int, *, force: bool = False) -> int:
        """Write the rows that are due (all unwritten ones with ``force``); how many were written."""
        state = self.owned.get(partition)
        if state is None:
            return 0
        group, saved, every = state.group, state.saved, self.checkpoint_s
        written = 0
        candidates = list(state.touched) if force else [t for t in state.updated if t in state.touched]
        state.updated.clear()
        for target in candidates:
            ts = state.touched[target]
            detector = group.detectors.get(target)
            if detector is None:  # forgotten meanwhile
                del state.touched[target]
                continue
            level = detector.fusion.level
            last = saved.get(target)
            if last is None:
                # New here: nothing worth a write yet. Due within checkpoint_s, at a point of its own: targets
                # that came together (a probe's start) would otherwise fall due in the same batch, every
                # checkpoint_s, and their burst of writes stall the alerts of that batch.
                phase = zlib.crc32(target.encode()) / 2**32 * every
                last = saved[target] = (ts - phase, 0)
            if force or last[1] != level or ts - last[0] >= every:
                self.tables.save_target(target, msgspec.json.encode(detector))
                saved[target] = (ts, level)
                state.written[target] = state.round
                del state.touched[target]
                written += 1
        latest = state.latest_ts
        if latest is not None and (force or state.group_saved_ts is None or latest - state.group_saved_ts >= every):
            self.tables.save_group(partition, group.snapshot(with_detectors=False))
            state.group_saved_ts = latest
            state.group_round = state.round
            written += 1
        return written

    def durable(self, partition: int, target: str, round_: int) -> bool:
        """Whether the rows written hold what ``target``'s samples of the partition's ``round_`` did."""
        state = self.owned.get(partition)
        if state is None or state.group_round < round_:
            return False
        return target not in state.touched or state.written.get(target, -1) >= round_

    def host_reports(self, partition: int) -> list[HostView]:
        """What this partition's hypervisors showed, where it changed enough to tell the other workers: a
        pattern or a copy (its raised mean RTT) begun or ended, seen again after a third of ``host_window_s``, or
        another lowest RTT."""
        state = self.owned.get(partition)
        if state is None:
            return []
        reports = []
        every = self.settings.host_window_s / 3
        for host in state.hosts_updated:
            view = state.group.host_view(host)
            if view is None:
                continue
            last, floor = view.pattern_last_ts, None if view.floor_ms is None else round(view.floor_ms, 1)
            copy = view.copy_last_ts
            told = self.reported.get(host)
            news = told is None or told[1] != floor or _news(told[0], last, every) or _news(told[2], copy, every)
            if not news:
                continue
            self.reported[host] = (last, floor, copy)
            reports.append(view)
        state.hosts_updated.clear()
        return reports

    def learn(self, partition: int, feedback: Feedback) -> bool:
        """An analyst's verdict; False when the alert is not remembered by this partition."""
        state = self.state_of(partition)
        learned = state.group.learn(feedback)
        if learned and state.latest_ts is not None:
            state.group_saved_ts = None  # the learners changed: written at the next checkpoint
        return learned

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions that moved to another worker; if they come back they are read again."""
        for partition in partitions:
            self.owned.pop(partition, None)

    def target_count(self) -> int:
        return sum(len(state.group.detectors) for state in self.owned.values())

    def status(self) -> list[TargetStatus]:
        """Every target's current state by target id, for ``/status`` (this worker's targets)."""
        return sorted(
            (
                self.target_status(target, partition, detector)
                for partition, state in self.owned.items()
                for target, detector in state.group.detectors.items()
            ),
            key=_by_target,
        )

    def status_of(self, target: str) -> TargetStatus | None:
        """One target's status, None when this worker does not watch it."""
        for partition, state in self.owned.items():
            detector = state.group.detectors.get(target)
            if detector is not None:
                return self.target_status(target, partition, detector)
        return None

    def target_status(self, target: str, partition: int, detector: TargetDetector) -> TargetStatus:
        alert = self.owned[partition].last_alert.get(target)
        record = self.directory.targets.get(target)
        return target_status(target, partition, detector, alert, record=record, whoami=(self.observer, self.url))

    def status_reports(
        self, partition: int, every_s: float, now: float, budget: int, *, changed_only: bool = False
    ) -> list[StatusChunk]:
        """Up to ``budget`` status chunks of this partition to send to the fleet pages: first those with a
        target whose state, alert, host or likelihood (by 0.05) changed (at most once a STATUS_GAP_S each),
        then (unless ``changed_only``) those not sent for ``every_s`` (fresh round trips), oldest first.
        ``now`` is the worker's clock, not event time: a status does not change what the detectors raise."""
        state = self.owned.get(partition)
        if state is None or budget <= 0:
            return []
        detectors, told = state.group.detectors, state.status_told
        for target in state.status_updated:
            detector = detectors.get(target)
            if detector is None:
                continue
            fusion, alert = detector.fusion, state.last_alert.get(target)
            shown = (fusion.level.state, round(fusion.likelihood * 20), alert and alert.event.id, detector.last_host)
            if told.get(target) != shown:
                told[target] = shown
                state.status_dirty.add(status_chunk(target))
        state.status_updated.clear()
        sent = state.status_sent
        changed = sorted(c for c in state.status_dirty if now - sent.get(c, -math.inf) >= STATUS_GAP_S)
        stale = (
            []
            if changed_only
            else sorted(
                (c for c, when in sent.items() if now - when >= every_s and c not in state.status_dirty),
                key=sent.__getitem__,
            )
        )
        due = (changed + stale)[:budget]
        if not due:
            return []
        members: dict[int, list[TargetStatus]] = {c: [] for c in due}
        for target, detector in detectors.items():
            chunk = members.get(status_chunk(target))
            if chunk is not None:
                chunk.append(self.target_status(target, partition, detector))
        state.status_dirty.difference_update(due)
        sent.update(dict.fromkeys(due, now))
        return [StatusChunk(partition=partition, chunk=c, statuses=members[c]) for c in due]

    def silences(self, now: float) -> list[dict[str, Any]]:
        """The maintenance windows not yet over at ``now``, by start, for the fleet page."""
        windows = sorted((s for s in self.directory.silences.values() if s.end >= now), key=lambda s: (s.start, s.id))
        return [msgspec.to_builtins(window) for window in windows]

    def chart(self, target: str, count: int) -> list[dict[str, Any]] | None:
        """The points of a target's chart (up to ``count`` closed windows, then the open one), or None."""
        for state in self.owned.values():
            window = state.windows.get(target)
            if window is not None:
                return [w.point() for w in [*self.tables.history(target, window.start, count), window]]
        return None


class _WorkerHosts(Mapping[str, HostView]):
    """What the hypervisors showed: those in this worker's partitions from their detectors, the others from
    the other workers' reports."""

    def __init__(self, owned: dict[int, PartitionState], reported: Mapping[str, HostView]) -> None:
        self.owned, self.reported = owned, reported

    def __getitem__(self, host: str) -> HostView:
        for state in self.owned.values():
            detector = state.group.detectors.get(host)
            if detector is not None:
                return view_of(host, detector)
        return self.reported[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self.reported)

    def __len__(self) -> int:
        return len(self.reported)


def _by_target(status: TargetStatus) -> str:
    return status.target


def _latest_ts(detector: TargetDetector) -> float:
    candidates = (detector.ping.window_start, detector.lag.lag_ts, detector.fusion.last_ts)
    return max((ts for ts in candidates if ts is not None), default=0.0)


def status_chunk(target: str) -> int:
    """Which of its partition's STATUS_CHUNKS status messages tells ``target``'s status (stable: crc32)."""
    return zlib.crc32(target.encode()) % STATUS_CHUNKS


def target_status(
    target: str,
    partition: int,
    detector: TargetDetector,
    alert: Alert | None,
    *,
    record: Target | None = None,
    whoami: tuple[str, str] = ("", ""),
) -> TargetStatus:
    """A target's status now; ``whoami`` the worker's name and web address (where its chart is served)."""
    fusion, ping = detector.fusion, detector.ping
    return TargetStatus(
        target=target,
        address=detector.address,
        partition=partition,
        kind=record.kind if record is not None else None,
        site=record.site if record is not None else None,
        labels=dict(record.labels) if record is not None else {},
        allowed_hosts=list(record.hosts) if record is not None else [],
        last_host=detector.last_host,
        rtt_floor_ms=detector.relocation.floor_ms(),
        state=fusion.level.state,
        likelihood=round(fusion.likelihood, 4),
        last_rtt_ms=ping.last_rtt_ms,
        rtt_baseline_ms=ping.baseline.median,
        clock_offset_ms=detector.lag.offset_ms,
        time_lag_ms=detector.lag.lag_ms,
        last_alert=None
        if alert is None
        else LastAlert(
            id=alert.event.id,
            state=alert.migwatch.state,
            action=alert.event.action,
            detected_ts=alert.migwatch.detected_ts,
            likelihood=alert.migwatch.likelihood,
        ),
        worker=whoami[0],
        url=whoami[1],
        ts=max([*detector.ping_ts.values(), *detector.clock_ts.values()], default=_latest_ts(detector)),
    )


def _news(told: float | None, now: float | None, every: float) -> bool:
    """A sign's last time worth telling again: begun, ended, or seen ``every`` seconds after it was told."""
    if told is None or now is None:
        return told != now
    return now - told >= every
