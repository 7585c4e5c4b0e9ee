"""A group of targets: routes each sample to its target's detectors and holds what needs all of them.

The group is the whole fleet in ``migwatch replay``/``eval`` and ``watch``; in a stream worker it is the
targets of one Kafka partition (:mod:`migwatch.streams.partitions`), so what needs many targets sees only
those.

Two things need more than one target. A step of every target's NTP offset at once is the probe's own
clock moving, not a migration: a time lag waits ``common_wait_s`` of event time for other targets'
steps, and counts only if fewer than ``common_fraction`` of the NTP targets (and fewer than
``common_min_targets``) stepped alike. And a VM's hypervisors, when watched (``hosts`` of its Target),
corroborate its ping pattern when they show a pattern at the same time: they name the source and the
destination (:mod:`~migwatch.detectors.hosts`). A hypervisor watched by another stream worker is seen
through the directory's ``hosts``, which that worker's reports fill.

The group knows what its :class:`Directory` holds (live mappings: the stream worker keeps them from the
compacted topics): the targets' records — each target's own detector settings (``detectors`` of its
Target), its site, labels and allowed hosts, which its alerts carry — and the maintenance windows, which
make a migration in one ``expected`` (:mod:`~migwatch.detectors.planned`).

    >>> from migwatch.contract.records import ClockSample
    >>> group = TargetGroup()
    >>> def clock(target, t, offset):
    ...     return ClockSample(target=target, address="192.0.2.1", probe="p", ts=float(t), offset_ms=offset,
    ...                        delay_ms=0.2)
    >>> alerts = []
    >>> for t in range(0, 300, 30):              # the probe's clock steps 50 ms at t=150: all targets lag
    ...     for i, target in enumerate(["a", "b", "c", "d"]):
    ...         alerts += group.update(clock(target, t + i, 0.0 if t < 150 else -50.0))
    >>> alerts, group.detectors["a"].lag.common_mode_ts
    ([], 150.0)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from migwatch.contract.config import AlertLinks
from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import Alert, ClockSample, Feedback, PingSample, Target
from migwatch.contract.silences import Silence
from migwatch.detectors.alert_text import finish
from migwatch.detectors.hosts import NO_HOSTS, HostNames, HostView, name_hosts, streaming
from migwatch.detectors.learners import FeedbackClassifier, WindowScorer, alert_features
from migwatch.detectors.planned import judge
from migwatch.detectors.target import TargetDetector

NO_LINKS = AlertLinks()


@dataclass(frozen=True)
class Directory:
    """What a group knows beyond its samples, by id: the targets' records, the maintenance windows, and
    hypervisors that another stream worker watches (what they showed)."""

    targets: Mapping[str, Target] = field(default_factory=dict)
    silences: Mapping[str, Silence] = field(default_factory=dict)
    hosts: Mapping[str, HostView] = field(default_factory=dict)

    @classmethod
    def of(
        cls, targets: list[Target] | tuple[Target, ...], silences: list[Silence] | tuple[Silence, ...] = ()
    ) -> Directory:
        """A fixed directory of a config's targets and silences."""
        return cls({t.id: t for t in targets}, {s.id: s for s in silences})


class CommonMode(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Recent offset steps of all targets, and when each target last answered NTP."""

    steps: list[tuple[float, str, float]] = []  # (ts, target, step_ms)
    clock_ts: dict[str, float] = {}


class TargetGroup:
    """The detectors of a group of targets by target id; ``update(sample) -> list[Alert]``."""

    def __init__(
        self,
        settings: DetectorSettings = DEFAULTS,
        observer: str = "migwatch",
        directory: Directory | None = None,
        links: AlertLinks = NO_LINKS,
    ) -> None:
        self.settings = settings
        self.observer = observer
        self.links = links
        self.directory = directory if directory is not None else Directory()
        self.targets = self.directory.targets
        self._own_settings: dict[str, tuple[Target, DetectorSettings]] = {}
        self.detectors: dict[str, TargetDetector] = {}
        self.common = CommonMode()
        self.scorer = WindowScorer(settings.learner, settings.learner_warmup)
        self.classifier = FeedbackClassifier()
        self.alerts: OrderedDict[str, dict[str, float]] = OrderedDict()
        # When each target's mean round trip was last raised. Derived from the detectors (rebuilt on restore),
        # so not part of the snapshot.
        self.raised: dict[str, float] = {}

    def update(self, sample: PingSample | ClockSample) -> list[Alert]:
        detector = self.detectors.get(sample.target)
        if detector is None:
            detector = self.detectors[sample.target] = TargetDetector()
        record = self.targets.get(sample.target)
        alerts = detector.update(sample, self.settings_of(record), self)
        if detector.ping.raised_last_ts == sample.ts:
            self.raised[sample.target] = sample.ts
        for alert in alerts:
            judge(alert, record, self.directory.silences.values())
            finish(alert, record, self.links)
        return alerts

    def settings_of(self, record: Target | None) -> DetectorSettings:
        """The settings a target's detectors run with: the group's, or with its own values over them."""
        if record is None or not record.detectors:
            return self.settings
        cached = self._own_settings.get(record.id)
        if cached is None or cached[0] is not record:  # a new record of the target brings its own values
            cached = self._own_settings[record.id] = (record, record.settings(self.settings))
        return cached[1]

    def learn(self, feedback: Feedback) -> bool:
        """Learn an analyst's verdict on an alert; False when the alert is not remembered here."""
        features = self.alerts.get(feedback.alert_id)
        if features is None:
            return False
        self.classifier.learn(features, feedback.label == "migration")
        return True

    # ------------------------------------------------------------------ what a target may ask (FleetContext)

    def clock_seen(self, target: str, ts: float, step_ms: float | None) -> None:
        self.common.clock_ts[target] = ts
        if step_ms is not None:
            horizon = ts - 4 * self.settings.common_wait_s
            self.common.steps = [step for step in self.common.steps if step[0] >= horizon]
            self.common.steps.append((ts, target, step_ms))

    def lag_wait_s(self) -> float:
        # Too few NTP targets to tell a common-mode step: waiting would only delay the alert.
        enough = len(self.common.clock_ts) >= self.settings.common_min_targets
        return self.settings.common_wait_s if enough else 0.0

    def common_mode(self, target: str, ts: float, step_ms: float) -> bool:
        settings = self.settings
        wait = settings.common_wait_s
        active = sum(1 for seen in self.common.clock_ts.values() if abs(seen - ts) <= 2 * wait)
        tolerance = max(settings.common_tolerance * abs(step_ms), 2.0)
        alike = {
            other
            for when, other, step in self.common.steps
            if abs(when - ts) <= wait and (step < 0) == (step_ms < 0) and abs(step - step_ms) <= tolerance
        }
        alike.add(target)
        return len(alike) >= settings.common_min_targets and len(alike) >= settings.common_fraction * active

    def host_names(
        self, target: str, ts: float, last_seen: str | None, vm_floor_ms: float | None, vm_after_ms: float | None
    ) -> HostNames:
        record = self.targets.get(target)
        if record is None or not record.hosts:
            return NO_HOSTS
        views: dict[str, HostView] = {}
        for host in record.hosts:
            view = self.host_view(host)
            if view is not None:
                views[host] = view
        settings = self.settings
        names = name_hosts(
            record.hosts, views, ts=ts, last_seen=last_seen, vm_floor_ms=vm_floor_ms, vm_after_ms=vm_after_ms,
            window_s=settings.host_window_s, clear_ms=settings.relocation_min_ms,
        )  # fmt: skip
        # Another worker's view of a host comes every third of host_window_s: a copy seen that late still counts.
        recent = 2 * settings.window_s + settings.host_window_s / 3
        copying = streaming(record.hosts, views, ts=ts, copy_min_s=settings.copy_min_s, recent_s=recent)
        # A host's uplink carries all its VMs' replies: while another VM of it shows a copy too, the host's
        # stream may be any of theirs, and names none (the lab's fleet: a neighbour's round trip rose with the
        # migrating VM's, 22-26 ms against 30-36).
        if not copying:
            return names
        shared = tuple(host for host in copying if self._shared_copy(host, target, ts))
        alone = tuple(host for host in copying if host not in shared)
        return msgspec.structs.replace(names, streaming=alone, shared=shared)

    def _shared_copy(self, host: str, target: str, ts: float) -> bool:
        """Whether another VM of ``host`` (among this group's) had its round trip raised during ``target``'s
        own raised run; forgets runs over ``clear_after_s`` old."""
        settings, shared, began = self.settings, False, self.detectors[target].ping.raised_first_ts
        for other, last in list(self.raised.items()):
            if ts - last > settings.clear_after_s:
                del self.raised[other]
            elif began is not None and other != target and last >= began:
                record = self.targets.get(other)
                shared = shared or (record is not None and host in record.hosts)
        return shared

    def host_view(self, host: str) -> HostView | None:
        """What a hypervisor showed: from its detectors here, else from another worker's report."""
        detector = self.detectors.get(host)
        return self.directory.hosts.get(host) if detector is None else view_of(host, detector)

    def score_window(self, features: dict[str, float]) -> float | None:
        return self.scorer.score_and_learn(features)

    def feedback_probability(self, features: dict[str, float]) -> float | None:
        if self.classifier.verdicts < self.settings.feedback_min:
            return None  # too few verdicts to trust
        return self.classifier.probability(features)

    def remember_alert(self, alert: Alert) -> None:
        if alert.migwatch.state == "cleared":
            return
        self.alerts[alert.event.id] = alert_features(alert.migwatch.evidence)
        while len(self.alerts) > self.settings.remembered_alerts:
            self.alerts.popitem(last=False)

    # ------------------------------------------------------------------------------------------ state

    def snapshot(self, *, with_detectors: bool = True) -> bytes:
        """The fleet's state as JSON: targets' detectors, the common-mode record, the learners.

        Without the detectors when they are kept elsewhere (the stream worker keeps one table row per target).
        """
        return msgspec.json.encode(
            {
                "detectors": self.detectors if with_detectors else {},
                "common": self.common,
                "scorer": self.scorer.state(),
                "classifier": self.classifier.state(),
                "alerts": self.alerts,
            }
        )

    @classmethod
    def restore(
        cls,
        raw: bytes,
        settings: DetectorSettings = DEFAULTS,
        observer: str = "migwatch",
        directory: Directory | None = None,
        links: AlertLinks = NO_LINKS,
    ) -> TargetGroup:
        state = msgspec.json.decode(raw, type=_FleetState)
        fleet = cls(settings, observer, directory, links)
        fleet.detectors, fleet.common = state.detectors, state.common
        fleet.scorer = WindowScorer.from_state(state.scorer)
        fleet.classifier = FeedbackClassifier.from_state(state.classifier)
        fleet.alerts = OrderedDict(state.alerts)
        for target, detector in fleet.detectors.items():
            if detector.ping.raised_last_ts is not None:
                fleet.raised[target] = detector.ping.raised_last_ts
        return fleet


def view_of(host: str, detector: TargetDetector) -> HostView:
    """What a hypervisor's detectors show: its last ping pattern and its lowest round trip."""
    ping = detector.ping
    return HostView(
        host=host, pattern_last_ts=ping.pattern_last_ts, floor_ms=detector.relocation.floor_ms(),
        copy_first_ts=ping.raised_first_ts, copy_last_ts=ping.raised_last_ts,
    )  # fmt: skip


class _FleetState(msgspec.Struct):
    detectors: dict[str, TargetDetector]
    common: CommonMode
    scorer: dict[str, Any]
    classifier: dict[str, Any]
    alerts: dict[str, dict[str, float]]
