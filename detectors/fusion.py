"""Hybrid fusion: ping = early warning, time lag = certainty, into the contract's alert states.

| state | evidence |
|---|---|
| ``suspected`` | the ping pattern (raised mean RTT, outliers), a run of unanswered pings, a reply-TTL change, or a
  change of clock skew |
| ``likely`` | the ping pattern *and* unanswered pings in one episode, or a TTL or skew change with either |
| ``confirmed`` | a time lag of the VM's clock |

A bulk copy over the VM's link shows the pattern without lost pings or a lag (the paper's SCP control),
so it can reach ``suspected`` but never ``likely`` or ``confirmed``. One alert is sent per rise of the state
and one ``cleared`` after ``clear_after_s`` of quiet; an alert's ``event.id`` derives from the target, the
episode's first evidence and the state, so the same alert sent again has the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import Alert, AlertDetail, AlertEvent, AlertHost, AlertObserver, Evidence
from migwatch.detectors.learners import alert_features
from migwatch.detectors.ping import PingHeuristic
from migwatch.detectors.skew import ClockSkew
from migwatch.detectors.timelag import TimeLag
from migwatch.detectors.ttl import TtlChange

STATES = ("none", "suspected", "likely", "confirmed")
SEVERITY = {"suspected": 2, "likely": 3, "confirmed": 4, "cleared": 1}
# Likelihood per state: a floor, and a cap that corroborating evidence can raise it to.
LIKELIHOOD = {1: (0.35, 0.6), 2: (0.75, 0.89), 3: (0.92, 0.99)}
# The lowest that analysts' feedback can calibrate it to: a clock lag stays near certain whatever they said
# of look-alikes (a classifier taught only benign patterns says "benign" to everything).
CALIBRATED_FLOOR = {1: 0.05, 2: 0.5, 3: 0.92}
# Fixed namespace: the same alert gets the same event.id in every process and every replay.
EVENT_NAMESPACE = uuid.UUID("6f1d3f1e-8a43-5c1b-9d3e-6d6967776174")


def iso(ts: float) -> str:
    """UNIX seconds as the ISO 8601 UTC time ECS wants (milliseconds, ``Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Fusion(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target alert state: the highest state of the current episode and when its evidence was seen."""

    level: int = 0
    first_ts: float | None = None  # first evidence of the episode
    last_ts: float | None = None  # latest evidence of the episode
    likelihood: float = 0.0
    last_alert: str | None = None  # event.id of the last alert sent
    confirmed_lag_ts: float | None = None  # the clock lag that confirmed the current episode

    def assess(
        self,
        ts: float,
        *,
        identity: tuple[str, str, str],
        ping: PingHeuristic,
        ttl: TtlChange,
        lag: TimeLag,
        skew: ClockSkew | None = None,
        source_host: str | None = None,
        learner_score: float | None = None,
        feedback: Callable[[dict[str, float]], float | None] | None = None,
        settings: DetectorSettings = DEFAULTS,
    ) -> list[Alert]:
        """Fuse the detectors' evidence at event time ``ts``; the alerts to send (none, one rise, or a clear).

        ``identity`` is (target id, address, observer name); ``learner_score`` the window scorer's latest;
        ``feedback`` gives P(migration) for an alert's features once analysts have taught it (else None).
        """
        pattern = ping.in_episode(ts, settings)
        loss_in_pattern = (
            pattern
            and ping.unanswered > 0
            and ping.loss_last_ts is not None
            and ping.pattern_first_ts is not None
            and ping.loss_last_ts >= ping.pattern_first_ts
        )
        loss_run = (
            ping.max_run >= 2 and ping.loss_last_ts is not None and ts - ping.loss_last_ts <= settings.episode_gap_s
        )
        lag_seen = lag.lag_ts is not None and ts - lag.lag_ts <= settings.clear_after_s
        ttl_seen = ttl.changed_ts is not None and ts - ttl.changed_ts <= settings.clear_after_s
        skew_at = skew.changed_ts if skew is not None else None
        skew_seen = (
            skew is not None and skew.detected_ts is not None and ts - skew.detected_ts <= settings.clear_after_s
        )
        # Another lag after the one that confirmed this episode: the VM moved again (there and back, say).
        # It opens an episode of its own, with its own alerts, instead of hiding in the first until it clears.
        renewed_after = (
            self.confirmed_lag_ts if lag_seen and self.level == 3 and lag.lag_ts != self.confirmed_lag_ts else None
        )
        if renewed_after is not None:
            self.level, self.first_ts, self.likelihood = 0, None, 0.0
        # A new reply TTL (another subnet) or clock skew (another physical clock) says the VM may be
        # elsewhere; alone it has benign causes too.
        moved = ttl_seen or skew_seen
        if lag_seen:
            level = 3
        elif loss_in_pattern or (moved and (pattern or loss_run)):
            level = 2
        elif pattern or moved or loss_run:
            level = 1
        else:
            level = 0
        if level:
            # (first, last) time of each piece of evidence in force
            spans = [
                (first, last)
                for first, last, active in (
                    (ping.pattern_first_ts, ping.pattern_last_ts, pattern),
                    (ping.loss_last_ts, ping.loss_last_ts, loss_run or loss_in_pattern),
                    (lag.lag_ts, lag.lag_ts, lag_seen),
                    (ttl.changed_ts, ttl.changed_ts, ttl_seen),
                    (skew_at, skew.detected_ts if skew is not None else None, skew_seen),
                )
                if active and first is not None and last is not None
            ]
            if self.first_ts is None:
                self.first_ts = min(first for first, _ in spans if renewed_after is None or first > renewed_after)
            self.last_ts = max(last for _, last in spans)
        if level > self.level:
            evidence = Evidence(
                rtt_baseline_ms=ping.baseline.median,
                rtt_mean_ms=ping.mean_ms if pattern else None,
                rtt_max_ms=ping.max_ms if pattern else None,
                outliers=ping.outliers if pattern else None,
                unanswered=ping.unanswered if (loss_in_pattern or loss_run) else None,
                time_lag_ms=lag.lag_ms if lag_seen else None,
                ttl_change=ttl.change if ttl_seen else None,
                learner_score=learner_score,
            )
            if source_host is not None:
                evidence.source_host = source_host
            if skew is not None and skew.skew_ppm is not None:
                evidence.skew_ppm = round(skew.skew_ppm, 3)
            if skew_seen and skew is not None and skew.change_ppm is not None:
                evidence.skew_change_ppm = round(skew.change_ppm, 3)
            verdict = feedback(alert_features(evidence)) if feedback is not None else None
            if level == 1 and verdict is not None and verdict >= settings.feedback_likely_p:
                level = 2  # analysts taught us that this pattern is a migration
            self.level = level
            if level == 3:
                self.confirmed_lag_ts = lag.lag_ts
            floor, cap = LIKELIHOOD[level]
            bonus = 0.05 * pattern + 0.03 * (loss_in_pattern or loss_run) + 0.02 * moved + 0.1 * bool(source_host)
            likelihood = min(cap, floor + bonus + 0.05 * (learner_score or 0.0))
            if verdict is not None:  # calibrated by what analysts said of such alerts
                likelihood = max(CALIBRATED_FLOOR[level], (likelihood + verdict) / 2)
            self.likelihood = max(self.likelihood, likelihood)
            phase = ping.phase(ts, settings) or ("switched" if lag_seen or moved else None)
            return [self._alert(STATES[level], ts, identity, phase, evidence)]
        if self.level and self.last_ts is not None and ts - self.last_ts >= settings.clear_after_s:
            alert = self._alert("cleared", ts, identity, None, Evidence(rtt_baseline_ms=ping.baseline.median))
            self.level, self.first_ts, self.last_ts, self.likelihood = 0, None, None, 0.0
            self.confirmed_lag_ts = None
            return [alert]
        return []

    def _alert(
        self, state: str, ts: float, identity: tuple[str, str, str], phase: str | None, evidence: Evidence
    ) -> Alert:
        target, address, observer = identity
        assert self.first_ts is not None
        event_id = str(uuid.uuid5(EVENT_NAMESPACE, f"{target}|{self.first_ts!r}|{state}"))
        self.last_alert = event_id
        risk = 0.0 if state == "cleared" else round(100 * self.likelihood, 1)
        return Alert(
            timestamp=iso(ts),
            event=AlertEvent(
                id=event_id, severity=SEVERITY[state], risk_score=risk, risk_score_norm=risk, start=iso(self.first_ts)
            ),
            host=AlertHost(name=target, ip=[address]),
            observer=AlertObserver(name=observer),
            migwatch=AlertDetail(
                target=target,
                state=state,  # type: ignore[arg-type]
                likelihood=round(self.likelihood, 3),
                phase=phase,  # type: ignore[arg-type]
                detected_ts=ts,
                first_evidence_ts=self.first_ts,
                evidence=evidence,
            ),
        )
