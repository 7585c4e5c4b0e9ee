"""All detectors of one target, fed one sample at a time: ``update(sample) -> list[Alert]``.

>>> from migwatch.contract.records import ClockSample, PingSample
>>> vm = TargetDetector()
>>> def ping(t, rtt):
...     return PingSample(target="web-01", address="192.0.2.10", probe="p", seq=t, ts=float(t), rtt_ms=rtt)
>>> def clock(t, offset):
...     return ClockSample(target="web-01", address="192.0.2.10", probe="p", ts=float(t), offset_ms=offset,
...                        delay_ms=0.2)
>>> alerts = []
>>> for t in range(120):
...     alerts += vm.update(ping(t, 0.3 + (t % 3) * 0.01))
...     if t % 30 == 0:
...         alerts += vm.update(clock(t, 0.02 * (t % 4)))
>>> for t in range(120, 135):       # memory copy, then two unanswered pings, then the switch
...     alerts += vm.update(ping(t, None if t in (131, 132) else 3.0))
>>> alerts += vm.update(clock(135, -480.0))
>>> [(a.migwatch.state, a.migwatch.detected_ts, a.migwatch.phase) for a in alerts]
[('suspected', 121.0, 'memory-copy'), ('likely', 131.0, 'stop-and-copy'), ('confirmed', 135.0, 'switched')]
>>> round(alerts[-1].migwatch.evidence.time_lag_ms, 1)
-480.0
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import Alert, ClockSample, PingSample
from migwatch.detectors.fusion import Fusion, Level, silence_alert
from migwatch.detectors.hosts import NO_HOSTS, HostNames
from migwatch.detectors.learners import squash
from migwatch.detectors.ping import PingHeuristic
from migwatch.detectors.relocation import Relocation
from migwatch.detectors.skew import ClockSkew
from migwatch.detectors.timelag import TimeLag
from migwatch.detectors.ttl import TtlChange
from migwatch.detectors.vanished import Vanished


class FleetContext(Protocol):
    """What a target's detectors may ask of the fleet around them (see :class:`~.target_group.TargetGroup`)."""

    observer: str

    def clock_seen(self, target: str, ts: float, step_ms: float | None) -> None: ...

    def lag_wait_s(self) -> float: ...

    def common_mode(self, target: str, ts: float, step_ms: float) -> bool: ...

    def host_names(
        self, target: str, ts: float, last_seen: str | None, vm_floor_ms: float | None, vm_after_ms: float | None
    ) -> HostNames: ...

    def score_window(self, features: dict[str, float]) -> float | None: ...

    def feedback_probability(self, features: dict[str, float]) -> float | None: ...

    def remember_alert(self, alert: Alert) -> None: ...


class TargetDetector(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The state of one watched target: ping heuristic, reply TTL, time lag and their fusion."""

    target: str = ""
    address: str = ""
    ping: PingHeuristic = msgspec.field(default_factory=PingHeuristic)
    ttl: TtlChange = msgspec.field(default_factory=TtlChange)
    lag: TimeLag = msgspec.field(default_factory=TimeLag)
    skew: ClockSkew = msgspec.field(default_factory=ClockSkew)
    relocation: Relocation = msgspec.field(default_factory=Relocation)
    fusion: Fusion = msgspec.field(default_factory=Fusion)
    vanished: Vanished = msgspec.field(default_factory=Vanished)
    last_host: str | None = None  # the hypervisor the VM moved to last, when its pings named it
    learner_score: float | None = None  # the highest window score of late
    learner_ts: float | None = None

    def update(
        self,
        sample: PingSample | ClockSample,
        settings: DetectorSettings = DEFAULTS,
        context: FleetContext | None = None,
    ) -> list[Alert]:
        self.target, self.address = sample.target, sample.address
        ts = sample.ts
        if isinstance(sample, PingSample):
            window = self.ping.update(sample, settings)
            self.ttl.update(sample, settings)
            self._follow_level(sample, settings)
            if window is not None and context is not None:
                self._learn_window(window, ts, context, settings)
        else:
            self._clock(sample, settings, context)
        self._resolve_lag(ts, context)
        since = self.vanished.answered_ts  # the silence's start, before an answer ends it
        gone = self.vanished.update(sample, settings.silent_after_s)
        alerts = [] if gone is None or since is None else [self._silence_alert(gone, ts, since, context)]
        if self.fusion.level == Level.NONE and self._quiet(ts, settings):
            return self._remembered(alerts, context)  # most samples of most targets: nothing for the fusion
        hosts = self._host_names(ts, context) if context is not None else NO_HOSTS
        recent = self.learner_ts is not None and ts - self.learner_ts <= settings.episode_gap_s
        alerts += self.fusion.assess(
            ts,
            identity=self._identity(context),
            ping=self.ping,
            ttl=self.ttl,
            lag=self.lag,
            skew=self.skew,
            relocation=self.relocation,
            hosts=hosts,
            learner_score=self.learner_score if recent else None,
            feedback=context.feedback_probability if context is not None else None,
            settings=settings,
        )
        fusion = self.fusion
        if fusion.level == Level.CONFIRMED and fusion.hosts.source is not None:
            # It left that host; where it went is known once a host or its settled round trip names it.
            self.last_host = fusion.hosts.destination
        return self._remembered(alerts, context)

    @staticmethod
    def _remembered(alerts: list[Alert], context: FleetContext | None) -> list[Alert]:
        if context is not None:
            for alert in alerts:
                context.remember_alert(alert)
        return alerts

    def _identity(self, context: FleetContext | None) -> tuple[str, str, str]:
        """(target id, address, observer name) of the alerts: built only when an alert may come (not per sample)."""
        return self.target, self.address, context.observer if context is not None else "migwatch"

    def _silence_alert(self, what: str, ts: float, since: float, context: FleetContext | None) -> Alert:
        return silence_alert(
            what, ts, self._identity(context), answered_ts=since, silent_s=round(ts - since, 3),
            baseline=self.ping.baseline.median,
        )  # fmt: skip

    def _clock(self, sample: ClockSample, settings: DetectorSettings, context: FleetContext | None) -> None:
        ts, ping, lag = sample.ts, self.ping, self.lag
        pending, level = lag.pending_ts, lag.rebased
        good = lag.update(sample, settings, ping.path_rtt_ms(), not ping.in_episode(ts, settings))
        if lag.rebased != level:
            self.skew.reset()
        settled = lag.lag_ts is None or ts - lag.lag_ts > settings.skew_settle_s
        if good and settled and lag.pending_ts is None:
            if lag.probe_shift_ms and sample.offset_ms is not None:  # the offset as the time lag corrected it
                sample = msgspec.structs.replace(sample, offset_ms=sample.offset_ms + lag.probe_shift_ms)
            self.skew.update(sample, settings)
        if context is not None and sample.error is None:
            new_step = lag.pending_step_ms if lag.pending_ts != pending else None
            context.clock_seen(self.target, ts, new_step)

    def _resolve_lag(self, ts: float, context: FleetContext | None) -> None:
        """A pending step that waited long enough: a lag of this VM's clock, or the probe's clock moving."""
        lag = self.lag
        if lag.pending_ts is None or lag.pending_step_ms is None:
            return
        # A probe that watches its own clock has taken its steps out already: no group to ask, nothing to wait for.
        group = None if lag.pending_vouched else context
        if group is not None and ts < lag.pending_ts + group.lag_wait_s():
            return
        common = group is not None and group.common_mode(self.target, lag.pending_ts, lag.pending_step_ms)
        before = lag.good_ts if lag.good_ts is not None else lag.pending_ts
        lag.resolve(common_mode=common)
        self.skew.reset()
        if not common and lag.lag_ts is not None:
            self.relocation.moved(before_ts=before, ts=lag.lag_ts)

    def _quiet(self, ts: float, settings: DetectorSettings) -> bool:
        """No detector has had evidence within the longest time the fusion looks back."""
        # Written out rather than all(...) over a tuple: this runs for every sample.
        gap, clear = settings.episode_gap_s, settings.clear_after_s
        horizon = ts - (gap if gap > clear else clear)
        ping = self.ping
        pattern, loss = ping.pattern_last_ts, ping.loss_last_ts
        lag, ttl, skew = self.lag.lag_ts, self.ttl.changed_ts, self.skew.detected_ts
        settled = self.relocation.settled_ts
        return (
            (settled is None or settled < horizon)
            and (pattern is None or pattern < horizon)
            and (loss is None or loss < horizon)
            and (lag is None or lag < horizon)
            and (ttl is None or ttl < horizon)
            and (skew is None or skew < horizon)
        )

    def _host_names(self, ts: float, context: FleetContext) -> HostNames:
        relocation, first = self.relocation, self.fusion.first_ts
        settled = relocation.settled_ts
        # The level the VM settled at after this episode's move, once known: where it answers from now.
        after = relocation.after_ms if settled is not None and first is not None and settled >= first else None
        return context.host_names(self.target, ts, self.last_host, relocation.floor_ms(), after)

    def _follow_level(self, sample: PingSample, settings: DetectorSettings) -> None:
        """Where a moved VM's round trip settles is its normal from then on: the ping baseline re-learns it."""
        relocation = self.relocation
        settled = relocation.settled_ts
        relocation.update(sample, settings, calm=not self.ping.in_episode(sample.ts, settings))
        if relocation.settled_ts != settled and relocation.level_ms is not None:
            self.ping.relearn(relocation.level_ms)

    def _learn_window(
        self, window: dict[str, float], ts: float, context: FleetContext, settings: DetectorSettings
    ) -> None:
        score = context.score_window(squash(window))
        if score is None:
            return
        stale = self.learner_ts is None or ts - self.learner_ts > settings.episode_gap_s
        if stale or score >= (self.learner_score or 0.0):
            self.learner_score, self.learner_ts = round(score, 4), ts
