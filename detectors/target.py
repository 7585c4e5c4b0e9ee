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
>>> vm.update(clock(135, -480.0))   # the same sample again (a worker's replay after a crash): taken already
[]
"""

from __future__ import annotations

import math
from typing import Protocol

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import Alert, ClockSample, Evidence, PingSample
from migwatch.detectors.fusion import Fusion, Level, lookalike_alert, silence_alert
from migwatch.detectors.hosts import NO_HOSTS, HostNames
from migwatch.detectors.learners import squash
from migwatch.detectors.lookalike import MIGRATION, LagKind, kind_of_lag
from migwatch.detectors.outage import Outage
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
    outage: Outage = msgspec.field(default_factory=Outage)
    copied: bool = False  # a memory copy came before the longest stop since the lag's reference
    back_ts: float | None = None  # when the VM answered again after a silence of reboot_min_s or more
    lag_kind: LagKind = MIGRATION  # what the last clock lag was
    last_host: str | None = None  # the hypervisor the VM moved to last, when its pings named it
    learner_score: float | None = None  # the highest window score of late
    learner_ts: float | None = None
    # The latest ts taken from each probe, pings and clock samples apart: a worker that restores this state
    # after a crash is given again the samples after its last committed offset, some of them already in here.
    ping_ts: dict[str, float] = msgspec.field(default_factory=dict)
    clock_ts: dict[str, float] = msgspec.field(default_factory=dict)

    def update(
        self,
        sample: PingSample | ClockSample,
        settings: DetectorSettings = DEFAULTS,
        context: FleetContext | None = None,
    ) -> list[Alert]:
        ts = sample.ts
        taken = self.ping_ts if isinstance(sample, PingSample) else self.clock_ts
        if taken.get(sample.probe, -math.inf) >= ts:
            return []  # taken before (a replay after a crash): it is in this state already
        taken[sample.probe] = ts
        self.target, self.address = sample.target, sample.address
        alerts: list[Alert] = []
        if isinstance(sample, PingSample):
            self._follow_stops(sample, settings)  # before the heuristic: a late reply's own rise is no copy
            window = self.ping.update(sample, settings)
            alerts += self._follow_route(sample, settings, context)
            self._follow_level(sample, settings)
            if window is not None and context is not None:
                self._learn_window(window, ts, context, settings)
        else:
            alerts += self._clock(sample, settings, context)
        alerts += self._resolve_lag(ts, settings, context)
        since = self.vanished.answered_ts  # the silence's start, before an answer ends it
        gone = self.vanished.update(sample, settings.silent_after_s)
        if gone is not None and since is not None:
            alerts.append(self._silence_alert(gone, ts, since, context))
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
            lag_is_move=self.lag_kind == MIGRATION,
            back_ts=self.back_ts,
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

    def _clock(self, sample: ClockSample, settings: DetectorSettings, context: FleetContext | None) -> list[Alert]:
        """One NTP answer: the time lag, the skew, and the guest's clock stepping forward (told at once)."""
        ts, ping, lag = sample.ts, self.ping, self.lag
        pending, level, jump = lag.pending_ts, lag.rebased, lag.jump_ts
        stopped_s = self.outage.longest_s  # before a good answer marks a new reference
        good = lag.update(sample, settings, ping.path_rtt_ms(), not ping.in_episode(ts, settings))
        if good:
            self._mark()
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
        if lag.jump_ts == jump or lag.jump_ts is None or lag.jump_ms is None:
            return []
        # Ahead after a long silence, the clock started afresh (a reboot: the lab's fresh guests jumped 4 s
        # forward); without one, the guest set it.
        kind = "vm-rebooted" if stopped_s >= settings.reboot_min_s else "vm-clock-step"
        return [self._lookalike(kind, ts, lag.jump_ts, settings, context, time_lag_ms=round(lag.jump_ms, 3))]

    def _resolve_lag(self, ts: float, settings: DetectorSettings, context: FleetContext | None) -> list[Alert]:
        """A pending step that waited long enough: a lag of this VM's clock (a move, or a look-alike's, told at
        once), or the probe's clock moving."""
        lag = self.lag
        if lag.pending_ts is None or lag.pending_step_ms is None:
            return []
        # A probe that watches its own clock has taken its steps out already: no group to ask, nothing to wait for.
        group = None if lag.pending_vouched else context
        if group is not None and ts < lag.pending_ts + group.lag_wait_s():
            return []
        common = group is not None and group.common_mode(self.target, lag.pending_ts, lag.pending_step_ms)
        before = lag.good_ts if lag.good_ts is not None else lag.pending_ts
        lag.resolve(common_mode=common)
        self.skew.reset()
        if common or lag.lag_ts is None or lag.lag_ms is None:
            return []
        self.lag_kind = kind_of_lag(lag.lag_ms, lag.lag_ts, self.outage, copy_before=self.copied, settings=settings)
        shown = round(self.outage.shown_s(), 3)
        self._mark()  # the lagged answer is the offsets' reference now
        if self.lag_kind == MIGRATION:
            self.relocation.moved(before_ts=before, ts=lag.lag_ts)
            return []
        return [
            self._lookalike(self.lag_kind, ts, lag.lag_ts, settings, context, time_lag_ms=lag.lag_ms, outage_s=shown)
        ]

    def _mark(self) -> None:
        """A new reference of the offsets: a later lag is judged against the stops the pings show from here."""
        self.outage.mark()
        self.copied = False

    def _follow_stops(self, sample: PingSample, settings: DetectorSettings) -> None:
        """The longest stop the pings allow since the lag's reference, and whether a memory copy was going on as
        it began (the VM's mean RTT raised up to it)."""
        outage = self.outage
        longest = outage.longest_s
        gap = outage.update(sample)
        if outage.longest_s != longest and outage.stop_ts is not None:
            self.copied = self.ping.copying(outage.stop_ts, settings)
        if gap is not None and gap >= settings.reboot_min_s:
            self.back_ts = outage.reply_ts

    def _follow_route(
        self, sample: PingSample, settings: DetectorSettings, context: FleetContext | None
    ) -> list[Alert]:
        """A new reply TTL without a stop of the VM (no run of unanswered pings lately) is a route change: told
        once as ``vm-route-change``; a clock lag after it still confirms a move to another subnet."""
        ttl, ping = self.ttl, self.ping
        changed = ttl.changed_ts
        ttl.update(sample, settings)
        if ttl.changed_ts == changed or ttl.changed_ts is None or ttl.change is None:
            return []
        loss = ping.loss_last_ts
        if ping.max_run >= 2 and loss is not None and ttl.changed_ts - loss <= settings.episode_gap_s:
            return []  # it stopped: the switch of a move, for the fusion to judge
        return [self._lookalike("vm-route-change", sample.ts, ttl.changed_ts, settings, context, ttl_change=ttl.change)]

    def _lookalike(
        self, action: str, ts: float, first_ts: float, settings: DetectorSettings, context: FleetContext | None,
        **figures: float | int,
    ) -> Alert:  # fmt: skip
        """A look-alike's alert, with the figures that named it and the unanswered pings of late."""
        ping = self.ping
        loss = ping.loss_last_ts
        recent = loss is not None and first_ts - loss <= settings.episode_gap_s
        lost = ping.unanswered if recent and ping.unanswered else None
        evidence = Evidence(rtt_baseline_ms=ping.baseline.median, unanswered=lost, **figures)
        return lookalike_alert(action, ts, self._identity(context), first_ts=first_ts, evidence=evidence)

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
