"""Hybrid fusion: ping = early warning, time lag = certainty, into the contract's alert states.

| state | evidence |
|---|---|
| ``suspected`` | the ping pattern (raised mean RTT, outliers), a run of unanswered pings, a reply-TTL change, or a
  change of clock skew |
| ``likely`` | unanswered pings during a memory copy (a stop-and-copy), a memory copy that a hypervisor of the
  VM shows too (the stream leaving the host), a TTL change with unanswered pings, or a skew change or a
  relocation with the pattern |
| ``confirmed`` | a time lag of the VM's clock that :mod:`~migwatch.detectors.lookalike` takes for a move |

A bulk copy over the VM's link shows the pattern without lost pings or a lag (the paper's SCP control),
so it can reach ``suspected`` but never ``likely`` or ``confirmed``. Nor can a look-alike: a pause (its late
replies make a pattern only as it ends), a guest clock step, a reboot or a route change get alerts of their
own (:func:`lookalike_alert`). One alert is sent per rise of the state,
one ``vm-relocated`` alert when a confirmed move settled at a round trip beyond the noise from the old one
(:mod:`~migwatch.detectors.relocation`), and one ``cleared`` after ``clear_after_s`` of quiet; an alert's
``event.id`` derives from the target, the episode's first evidence and the state, so the same alert sent
again has the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.fields import is_ip, iso
from migwatch.contract.records import (
    Alert,
    AlertDetail,
    AlertEvent,
    AlertHost,
    AlertObserver,
    Evidence,
    RelocationEvidence,
)
from migwatch.detectors.hosts import NO_HOSTS, HostNames
from migwatch.detectors.learners import alert_features
from migwatch.detectors.lookalike import SEVERITY as LOOKALIKE_SEVERITY
from migwatch.detectors.ping import PingHeuristic
from migwatch.detectors.relocation import Relocation
from migwatch.detectors.skew import ClockSkew
from migwatch.detectors.timelag import TimeLag
from migwatch.detectors.ttl import TtlChange


class Level(IntEnum):
    """The alert states as a ladder: a target's level only rises within an episode (one alert per rise).

    >>> Level.LIKELY > Level.SUSPECTED, Level(3).state, msgspec.json.encode(Level.CONFIRMED)
    (True, 'confirmed', b'3')
    """

    NONE = 0
    SUSPECTED = 1
    LIKELY = 2
    CONFIRMED = 3

    @property
    def state(self) -> str:
        """The contract's name of the state (``migwatch.state``), ``none`` below ``suspected``."""
        return self.name.lower()


SEVERITY = {"suspected": 2, "likely": 3, "confirmed": 4, "cleared": 1}
# Likelihood per level: a floor, and a cap that corroborating evidence (the settings' bonus_*) can raise it to.
LIKELIHOOD = {Level.SUSPECTED: (0.35, 0.6), Level.LIKELY: (0.75, 0.89), Level.CONFIRMED: (0.92, 0.99)}
# The lowest that analysts' feedback can calibrate it to: a clock lag stays near certain whatever they said
# of look-alikes (a classifier taught only benign patterns says "benign" to everything).
CALIBRATED_FLOOR = {Level.SUSPECTED: 0.05, Level.LIKELY: 0.5, Level.CONFIRMED: 0.92}
# Fixed namespace: the same alert gets the same event.id in every process and every replay.
EVENT_NAMESPACE = uuid.UUID("6f1d3f1e-8a43-5c1b-9d3e-6d6967776174")


def _booting(ping: PingHeuristic, back_ts: float | None, settings: DetectorSettings) -> bool:
    """A VM back from a long silence raises its round trip, and its host's, by booting: a rise that began
    within ``episode_gap_s`` of its return is that, one that began after a quiet spell is a copy (a fresh
    guest migrated a minute after it booted, as in the lab's fleet)."""
    first = ping.raised_first_ts
    return back_ts is not None and first is not None and first - back_ts < settings.episode_gap_s


def _within(ts: float, seen: float | None, recent: float) -> bool:
    """Evidence seen at ``seen`` is in force at ``ts``: not older than ``recent``, and not from ts's future (a
    stream worker catching up may get one topic's samples ahead of the other's)."""
    return seen is not None and 0.0 <= ts - seen <= recent


def _at_or_before(ts: float | None, limit: float | None) -> bool:
    return ts is not None and limit is not None and ts <= limit


@dataclass(frozen=True)
class Signs:
    """The evidence in force at one event time, read off the detectors (the paper's signs, and ours)."""

    ping: PingHeuristic
    ttl: TtlChange
    lag: TimeLag
    skew: ClockSkew | None
    relocation: Relocation | None
    pattern: bool  # the ping pattern: raised mean RTT, high outliers
    loss_in_pattern: bool  # unanswered pings within that pattern's episode (stop-and-copy)
    loss_run: bool  # a run of unanswered pings, lately
    lag_seen: bool  # a time lag of the VM's clock, lately
    ttl_seen: bool  # a new reply TTL (another subnet), lately
    skew_seen: bool  # a new clock skew (another physical clock), lately
    relocated: bool  # a moved VM settled at another round trip, lately
    stream: bool = False  # the VM's memory copy while a hypervisor of it shows the stream (issue #20)
    stream_shared: bool = False  # ... while another VM of that hypervisor shows the copy too: it may be theirs

    @classmethod
    def read(
        cls,
        ts: float,
        *,
        ping: PingHeuristic,
        ttl: TtlChange,
        lag: TimeLag,
        skew: ClockSkew | None,
        relocation: Relocation | None = None,
        lag_is_move: bool = True,
        spent_lag_ts: float | None = None,
        hosts: HostNames = NO_HOSTS,
        back_ts: float | None = None,
        settings: DetectorSettings,
    ) -> Signs:
        pattern = ping.in_episode(ts, settings)
        loss_in_pattern = (
            pattern
            and ping.unanswered > 0
            and ping.loss_last_ts is not None
            and ping.pattern_first_ts is not None
            and ping.loss_last_ts >= ping.pattern_first_ts
            and ping.run_copying
            # Its host's VMs all lose a ping now and then to a copy on their link: a stop loses a run.
            and (not hosts.shared or ping.max_run >= 2)
        )
        loss_run = (
            ping.max_run >= 2 and ping.loss_last_ts is not None and ts - ping.loss_last_ts <= settings.episode_gap_s
        )
        recent = settings.clear_after_s
        settled = relocation.settled_ts if relocation is not None else None
        copy = ping.copying(ts, settings) and not _booting(ping, back_ts, settings)
        return cls(
            ping=ping, ttl=ttl, lag=lag, skew=skew, relocation=relocation, pattern=pattern,
            loss_in_pattern=loss_in_pattern, loss_run=loss_run,
            lag_seen=lag_is_move and _within(ts, lag.lag_ts, recent) and not _at_or_before(lag.lag_ts, spent_lag_ts),
            ttl_seen=_within(ts, ttl.changed_ts, recent),
            skew_seen=skew is not None and _within(ts, skew.detected_ts, recent),
            relocated=_within(ts, settled, recent) and relocation is not None and relocation.relocated(settings),
            stream=bool(hosts.streaming) and copy,
            stream_shared=bool(hosts.shared) and copy,
        )  # fmt: skip

    @property
    def loss(self) -> bool:
        return self.loss_in_pattern or self.loss_run

    @property
    def moved(self) -> bool:
        """A new reply TTL, clock skew or settled round trip says the VM may be elsewhere; alone each has
        benign causes too."""
        return self.ttl_seen or self.skew_seen or self.relocated

    def level(self) -> Level:
        """The paper's ladder: ping = early warning, time lag = certainty; a bulk copy (pattern without lost
        pings or lag) stays suspected."""
        if self.lag_seen:
            return Level.CONFIRMED
        # A new TTL with a couple of slow replies is a route change; with a stop it may be the switch.
        stop_and_move = self.moved and self.loss_run
        # The copy seen twice, from the VM and from a hypervisor it runs on: the stream leaves the host (a bulk
        # copy into the VM, or load on it, does not raise its host's round trip).
        if (
            self.loss_in_pattern
            or self.stream
            or stop_and_move
            or ((self.skew_seen or self.relocated) and self.pattern)
        ):
            return Level.LIKELY
        if self.pattern or self.moved or self.loss_run:
            return Level.SUSPECTED
        return Level.NONE

    def spans(self) -> list[tuple[float, float]]:
        """(first, last) event time of each piece of evidence in force."""
        ping, lag, ttl, skew = self.ping, self.lag, self.ttl, self.skew
        settled = self.relocation.settled_ts if self.relocation is not None else None
        return [
            (first, last)
            for first, last, active in (
                (ping.pattern_first_ts, ping.pattern_last_ts, self.pattern),
                (ping.raised_first_ts, ping.raised_last_ts, self.stream),
                (ping.loss_last_ts, ping.loss_last_ts, self.loss),
                (lag.lag_ts, lag.lag_ts, self.lag_seen),
                (ttl.changed_ts, ttl.changed_ts, self.ttl_seen),
                (skew.changed_ts if skew is not None else None, skew.detected_ts if skew is not None else None,
                 self.skew_seen),
                (settled, settled, self.relocated),
            )
            if active and first is not None and last is not None
        ]  # fmt: skip

    def evidence(self, hosts: HostNames, learner_score: float | None) -> Evidence:
        """The alert's evidence: each detector's figures where its sign is in force."""
        ping, skew = self.ping, self.skew
        evidence = Evidence(
            rtt_baseline_ms=ping.baseline.median,
            rtt_mean_ms=ping.mean_ms if self.pattern else None,
            rtt_max_ms=ping.max_ms if self.pattern else None,
            outliers=ping.outliers if self.pattern else None,
            unanswered=ping.unanswered if self.loss else None,
            time_lag_ms=self.lag.lag_ms if self.lag_seen else None,
            ttl_change=self.ttl.change if self.ttl_seen else None,
            learner_score=learner_score,
        )
        if hosts.source is not None:
            evidence.source_host = hosts.source
        if hosts.destination is not None:
            evidence.destination_host = hosts.destination
        if hosts.destination_allowed is not None:
            evidence.destination_allowed = hosts.destination_allowed
        if hosts.seen:
            evidence.hosts_seen = list(hosts.seen)
        if skew is not None and skew.skew_ppm is not None:
            evidence.skew_ppm = round(skew.skew_ppm, 3)
        if self.skew_seen and skew is not None and skew.change_ppm is not None:
            evidence.skew_change_ppm = round(skew.change_ppm, 3)
        return evidence

    def likelihood(
        self, level: Level, hosts: HostNames, learner_score: float | None, verdict: float | None,
        settings: DetectorSettings,
    ) -> float:  # fmt: skip
        """P(migration): the level's floor plus what corroborates it, up to the level's cap; then calibrated
        by what analysts said of such alerts (``verdict``), when they have said enough."""
        floor, cap = LIKELIHOOD[level]
        bonus = (
            settings.bonus_pattern * self.pattern
            + settings.bonus_loss * self.loss
            + settings.bonus_moved * self.moved
            + settings.bonus_source_host * (hosts.source is not None)
        )
        likelihood = min(cap, floor + bonus + settings.bonus_learner * (learner_score or 0.0))
        if verdict is not None:
            likelihood = max(CALIBRATED_FLOOR[level], (likelihood + verdict) / 2)
        return likelihood

    def where(self) -> RelocationEvidence | None:
        """The relocation's figures, while it is in force."""
        relocation = self.relocation
        if not self.relocated or relocation is None:
            return None
        before, after, settled = relocation.before_ms, relocation.after_ms, relocation.settled_ts
        shift, distance = relocation.shift_ms(), relocation.distance_km()
        assert before is not None and after is not None and settled is not None
        assert shift is not None and distance is not None
        return RelocationEvidence(
            rtt_min_before_ms=before, rtt_min_after_ms=after, shift_ms=round(shift, 3), distance_km_max=distance,
            settled_ts=settled, ttl_before=relocation.ttl_before, ttl_after=relocation.ttl_after,
        )  # fmt: skip


class Fusion(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target alert state: the highest level of the current episode and when its evidence was seen."""

    level: Level = Level.NONE
    first_ts: float | None = None  # first evidence of the episode
    last_ts: float | None = None  # latest evidence of the episode
    likelihood: float = 0.0
    last_alert: str | None = None  # event.id of the last alert sent
    confirmed_lag_ts: float | None = None  # the clock lag that confirmed the current episode
    spent_lag_ts: float | None = None  # the lag that confirmed an episode since renewed: it says nothing new
    relocated_ts: float | None = None  # the settled relocation already told (vm-relocated)
    # The hypervisors the episode was seen leaving and entering: a host's pattern ends with the copy, the
    # clock lag that confirms the move may come later.
    hosts: HostNames = NO_HOSTS

    def assess(
        self,
        ts: float,
        *,
        identity: tuple[str, str, str],
        ping: PingHeuristic,
        ttl: TtlChange,
        lag: TimeLag,
        skew: ClockSkew | None = None,
        relocation: Relocation | None = None,
        hosts: HostNames = NO_HOSTS,
        learner_score: float | None = None,
        feedback: Callable[[dict[str, float]], float | None] | None = None,
        lag_is_move: bool = True,
        back_ts: float | None = None,
        settings: DetectorSettings = DEFAULTS,
    ) -> list[Alert]:
        """Fuse the detectors' evidence at event time ``ts``; the alerts to send (none, one rise, or a clear).

        Evidence -> level -> likelihood -> alert. ``identity`` is (target id, address, observer name);
        ``learner_score`` the window scorer's latest; ``feedback`` gives P(migration) for an alert's features
        once analysts have taught it (else None); ``lag_is_move`` False when the last lag was a look-alike's;
        ``back_ts`` when the VM answered again after a long silence (a reboot's load is no memory copy).
        """

        def read() -> Signs:
            return Signs.read(
                ts, ping=ping, ttl=ttl, lag=lag, skew=skew, relocation=relocation, lag_is_move=lag_is_move,
                spent_lag_ts=self.spent_lag_ts, hosts=hosts, back_ts=back_ts, settings=settings,
            )  # fmt: skip

        signs = read()
        renewed_after = self._renew_on_new_move(signs, settings)
        if renewed_after is not None:
            signs = read()  # without the lag of the episode it renewed
        level = signs.level()
        if level:
            self._track(signs.spans(), renewed_after)
            hosts = self._episode_hosts(hosts)
        if level > self.level:
            evidence = signs.evidence(hosts, learner_score)
            verdict = feedback(alert_features(evidence)) if feedback is not None else None
            if level == Level.SUSPECTED and verdict is not None and verdict >= settings.feedback_likely_p:
                level = Level.LIKELY  # analysts taught us that this pattern is a migration
            self.level = level
            if level == Level.CONFIRMED:
                self.confirmed_lag_ts = lag.lag_ts
            likelihood = signs.likelihood(level, hosts, learner_score, verdict, settings)
            self.likelihood = max(self.likelihood, likelihood)
            phase = ping.phase(ts, settings) or ("switched" if signs.lag_seen or signs.moved else None)
            return [self._alert(level.state, ts, identity, phase, evidence, signs=signs)]
        settled = relocation.settled_ts if relocation is not None else None
        if self.level == Level.CONFIRMED and signs.relocated and self.relocated_ts != settled:
            self.relocated_ts = settled
            self.likelihood = max(self.likelihood, signs.likelihood(Level.CONFIRMED, hosts, learner_score,
                                                                    None, settings))  # fmt: skip
            evidence = signs.evidence(hosts, learner_score)
            return [self._alert("confirmed", ts, identity, "switched", evidence, signs=signs, action="vm-relocated")]
        return self._clear_if_quiet(ts, identity, ping, settings)

    def _clear_if_quiet(
        self, ts: float, identity: tuple[str, str, str], ping: PingHeuristic, settings: DetectorSettings
    ) -> list[Alert]:
        """The ``cleared`` alert once the episode has had no evidence for ``clear_after_s``; the state starts over."""
        if not self.level or self.last_ts is None or ts - self.last_ts < settings.clear_after_s:
            return []
        alert = self._alert("cleared", ts, identity, None, Evidence(rtt_baseline_ms=ping.baseline.median), signs=None)
        self.level, self.first_ts, self.last_ts, self.likelihood = Level.NONE, None, None, 0.0
        self.confirmed_lag_ts = self.relocated_ts = self.spent_lag_ts = None
        self.hosts = NO_HOSTS
        return [alert]

    def _episode_hosts(self, now: HostNames) -> HostNames:
        """The hosts named in this episode so far: the source as first named, the destination and whether it
        was allowed as last known (a settled round trip comes after the stream), every host that showed it."""
        known = self.hosts
        allowed = now.destination_allowed if now.destination_allowed is not None else known.destination_allowed
        self.hosts = HostNames(
            known.source or now.source, now.destination or known.destination, allowed,
            known.seen + tuple(host for host in now.seen if host not in known.seen),
        )  # fmt: skip
        return self.hosts

    def _renew_on_new_move(self, signs: Signs, settings: DetectorSettings) -> float | None:
        """Another lag ``renew_after_s`` or more after the one that confirmed this episode, or another memory copy
        seen with its hypervisor's stream since then (also one its other VMs show too): the VM moves again
        (there and back, say). It opens an episode of its own, with its own alerts, instead of hiding in the first
        until it clears; a lag sooner is the rest of the same stop, measured by an NTP answer during it. Returns
        the confirming lag's time when it did (evidence from before it belongs to the old episode)."""
        renewed_after = self.confirmed_lag_ts
        if renewed_after is None or self.level != Level.CONFIRMED:
            return None
        since = renewed_after + settings.renew_after_s
        lag_ts, copy_ts = signs.lag.lag_ts, signs.ping.raised_first_ts
        new_lag = signs.lag_seen and lag_ts is not None and lag_ts >= since
        new_copy = (signs.stream or signs.stream_shared) and copy_ts is not None and copy_ts >= since
        if not (new_lag or new_copy):
            return None
        self.level, self.first_ts, self.likelihood = Level.NONE, None, 0.0
        self.hosts = NO_HOSTS
        self.spent_lag_ts = renewed_after
        return renewed_after

    def _track(self, spans: list[tuple[float, float]], renewed_after: float | None) -> None:
        """The episode's first and latest evidence."""
        if self.first_ts is None:
            self.first_ts = min(first for first, _ in spans if renewed_after is None or first > renewed_after)
        self.last_ts = max(last for _, last in spans)

    def _alert(
        self, state: str, ts: float, identity: tuple[str, str, str], phase: str | None, evidence: Evidence,
        *, signs: Signs | None, action: str = "vm-live-migration",
    ) -> Alert:  # fmt: skip
        assert self.first_ts is not None
        event_id = self.last_alert = alert_id(identity[0], self.first_ts, state, action)
        where = signs.where() if signs is not None else None
        # Where a VM went beyond the noise is worth one more step of severity than that it moved.
        severity = min(4, SEVERITY[state] + (where is not None))
        alert = make_alert(
            state, ts, identity, event_id=event_id, severity=severity,
            likelihood=self.likelihood, first_ts=self.first_ts, phase=phase,
            evidence=evidence, action=action,
        )  # fmt: skip
        if where is not None:
            alert.migwatch.relocation = where
        return alert


def alert_id(target: str, first_ts: float, state: str, action: str) -> str:
    """``event.id``: from the target, its episode's first evidence, the state and the action, so the same alert
    sent again (a restart, a replay) has the same id. A migration's keep the ids they had before other actions
    existed: a SIEM that saw them drops them as repeats."""
    kind = state if action == "vm-live-migration" else f"{state}|{action}"
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{target}|{first_ts!r}|{kind}"))


def silence_alert(
    what: str, ts: float, identity: tuple[str, str, str], *, answered_ts: float, silent_s: float, baseline: float | None
) -> Alert:
    """The ``vm-silent`` alert of a VM that stopped answering (``what`` = ``silent``), or its ``cleared`` when
    it answers again (``answers``); see :mod:`~migwatch.detectors.vanished`. Not a migration state: it stays
    ``suspected`` (a vanished VM may have moved, or just stopped), at severity 3 — a SOC wants to know."""
    state = "suspected" if what == "silent" else "cleared"
    alert = make_alert(
        state, ts, identity, event_id=alert_id(identity[0], answered_ts, state, "vm-silent"),
        severity=3 if state == "suspected" else 1,
        likelihood=LIKELIHOOD[Level.SUSPECTED][0], first_ts=answered_ts,
        phase=None, evidence=Evidence(rtt_baseline_ms=baseline), action="vm-silent",
    )  # fmt: skip
    alert.migwatch.silent_s = silent_s
    return alert


# P(migration) of a look-alike's alert: named for what else it is, not ruled out (a migration that leaves no
# trace of its copy and stops long looks like a pause).
LOOKALIKE_LIKELIHOOD = 0.2


def lookalike_alert(
    action: str, ts: float, identity: tuple[str, str, str], *, first_ts: float, evidence: Evidence
) -> Alert:
    """The alert of a look-alike (:mod:`~migwatch.detectors.lookalike`): ``vm-paused``, ``vm-clock-step``,
    ``vm-rebooted`` or ``vm-route-change``, state ``suspected`` (never a likely or confirmed migration), at
    its kind's severity; ``first_ts`` is the evidence it was seen from (the lag, the new TTL)."""
    return make_alert(
        "suspected", ts, identity, event_id=alert_id(identity[0], first_ts, "suspected", action),
        severity=LOOKALIKE_SEVERITY[action], likelihood=LOOKALIKE_LIKELIHOOD, first_ts=first_ts, phase=None,
        evidence=evidence, action=action,
    )  # fmt: skip


def make_alert(
    state: str, ts: float, identity: tuple[str, str, str], *, event_id: str, severity: int, likelihood: float,
    first_ts: float, phase: str | None, evidence: Evidence, action: str,
) -> Alert:  # fmt: skip
    """An alert as the detectors know it; :mod:`~migwatch.detectors.alert_text` adds what a SIEM reads."""
    target, address, observer = identity
    likelihood = round(likelihood, 3)
    risk = 0.0 if state == "cleared" else likelihood  # a cleared alert says the risk is over
    detail = AlertDetail(
        target=target,
        address=address,
        state=state,  # type: ignore[arg-type]
        likelihood=likelihood,
        phase=phase,  # type: ignore[arg-type]
        detected_ts=ts,
        first_evidence_ts=first_ts,
        evidence=evidence,
    )
    event = AlertEvent(
        type=["end"] if state == "cleared" else ["change"],
        action=action,  # type: ignore[arg-type]
        id=event_id, severity=severity, risk_score=risk, risk_score_norm=round(100 * risk, 1),
        start=iso(first_ts),
    )  # fmt: skip
    host = AlertHost(name=target, ip=[address]) if is_ip(address) else AlertHost(name=target, hostname=address)
    return Alert(timestamp=iso(ts), event=event, host=host, observer=AlertObserver(name=observer), migwatch=detail)
