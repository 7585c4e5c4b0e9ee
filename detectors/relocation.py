"""Relocation: where a moved VM settled, measured by its round-trip time before and after the move.

Light in fibre covers about 100 km per millisecond of round trip, so a VM moved to a farther site answers
pings later for good: its lowest RTT (the path without queueing) settles at a new level. ``Relocation``
keeps the lowest RTT of each recent quiet window (``window_s``, no unanswered ping, no ping episode: a
memory copy raises the floor too), and once a move is known (:meth:`moved`, called when its clock lag
confirms it) waits for ``settle_windows`` steady windows after it. Their lowest RTT against the one before
the move is the shift; beyond ``relocation_min_ms``, or with replies that cross another number of routers
(their TTL) than before, it is a relocation, and ``distance_km`` is how much farther the VM can at most be
(a longer route explains a shift as well: it is a bound, not a position). Either way the target's RTT has a
settled level again, which the ping heuristic re-learns (``level_ms``), so that the episode can end and the
next move is its own.

    >>> from migwatch.contract.records import PingSample
    >>> where = Relocation()
    >>> def ping(t, rtt):
    ...     return PingSample(target="vm", address="192.0.2.1", probe="p", seq=t, ts=float(t), rtt_ms=rtt)
    >>> for t in range(60):                        # a LAN neighbour: 0.4 ms
    ...     where.update(ping(t, 0.4 + (t % 3) * 0.02))
    >>> for t in range(60, 70):                    # moved at t=60 to a site 15 ms farther away
    ...     where.update(ping(t, 15.4 + (t % 3) * 0.02))
    >>> where.moved(before_ts=60.0, ts=66.0)       # its clock lag confirmed the move at t=66
    >>> for t in range(70, 90):
    ...     where.update(ping(t, 15.4 + (t % 3) * 0.02))
    >>> where.settled_ts, where.before_ms, where.after_ms, where.distance_km()
    (85.0, 0.4, 15.4, 1500.0)
"""

from __future__ import annotations

import math

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import PingSample

KM_PER_MS_RTT = 100.0  # ~200,000 km/s in fibre, there and back


class Relocation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target RTT floor before and after a move; ``update(sample)`` consumes one PingSample."""

    window_start: float | None = None
    w_min: float | None = None
    w_answered: int = 0
    w_lost: int = 0
    w_ttl: int | None = None
    ttl_calm: int | None = None  # the reply TTL of the last quiet window outside an episode
    floors: list[tuple[float, float]] = []  # (window start, lowest RTT) of recent quiet windows
    moved_ts: float | None = None  # a confirmed move whose new level is awaited
    before_ms: float | None = None
    after: list[float] = []  # lowest RTT of the steady windows since the move
    after_ms: float | None = None
    ttl_before: int | None = None
    ttl_after: int | None = None
    settled_ts: float | None = None  # when the level after the last move was known
    level_ms: float | None = None  # the settled level's typical RTT, for the ping baseline to re-learn

    def update(self, sample: PingSample, settings: DetectorSettings = DEFAULTS, *, calm: bool = True) -> None:
        """Consume one sample; ``calm`` False while the ping heuristic sees an episode."""
        ts, rtt = sample.ts, sample.rtt_ms
        start = self.window_start
        if start is None or not start <= ts < start + settings.window_s:
            if start is not None:
                self._close(start, settings, calm)
            self.window_start = math.floor(ts / settings.window_s) * settings.window_s
            self.w_min, self.w_answered, self.w_lost, self.w_ttl = None, 0, 0, None
        if rtt is None:
            self.w_lost += 1
        else:
            self.w_answered += 1
            self.w_ttl = sample.ttl
            self.w_min = rtt if self.w_min is None or rtt < self.w_min else self.w_min

    def moved(self, *, before_ts: float, ts: float) -> None:
        """A move is confirmed at ``ts``; the VM was still where it was until ``before_ts``."""
        floors = [low for start, low in self.floors if start < before_ts]
        self.before_ms = min(floors) if floors else None
        self.ttl_before = self.ttl_calm
        self.moved_ts, self.after = ts, []
        self.after_ms = self.settled_ts = self.level_ms = self.ttl_after = None

    def floor_ms(self) -> float | None:
        """The lowest RTT of the quiet windows kept: the path's round trip without queueing."""
        return min((low for _, low in self.floors), default=None)

    def shift_ms(self) -> float | None:
        """After minus before of the last settled move, when both are known."""
        if self.after_ms is None or self.before_ms is None:
            return None
        return self.after_ms - self.before_ms

    def relocated(self, settings: DetectorSettings = DEFAULTS) -> bool:
        shift = self.shift_ms()
        rerouted = self.ttl_before is not None and self.ttl_after is not None and self.ttl_before != self.ttl_after
        return shift is not None and (abs(shift) >= settings.relocation_min_ms or rerouted)

    def distance_km(self) -> float | None:
        """How much farther (negative: nearer) the VM can at most be after the move."""
        shift = self.shift_ms()
        return None if shift is None else round(shift * KM_PER_MS_RTT, 1)

    def _close(self, start: float, settings: DetectorSettings, calm: bool) -> None:
        low = self.w_min
        quiet = low is not None and not self.w_lost and self.w_answered >= settings.window_min_pings
        if not quiet or low is None:
            if self.moved_ts is not None:
                self.after = []  # the level is not steady yet
            return
        if calm:
            self.ttl_calm = self.w_ttl if self.w_ttl is not None else self.ttl_calm
            self.floors.append((start, low))
            del self.floors[: -settings.floor_windows]
        if self.moved_ts is None or start < self.moved_ts:
            return
        self.after.append(low)
        recent = self.after[-settings.settle_windows :]
        if len(recent) < settings.settle_windows:
            return
        level = sorted(recent)[len(recent) // 2]
        tolerance = max(settings.rtt_floor_ms, settings.rtt_relative_floor * level)
        if max(recent) - min(recent) <= tolerance:
            self.after_ms, self.level_ms, self.ttl_after = min(recent), level, self.w_ttl
            self.settled_ts = start + settings.window_s
            self.moved_ts, self.after = None, []
